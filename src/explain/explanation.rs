//! The serialisable result for one (question, context) pair.

use serde::{Deserialize, Serialize, Serializer};

use super::method::Method;
use super::options::Precision;
use super::saliency::SaliencyKind;
use super::span::SpanMode;
use crate::model::Objective;
use crate::text::{Segment, Window};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Explanation {
    /// The pair's id as it was given (any JSON value), if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "serve", schema(value_type = Option<serde_json::Value>))]
    pub id: Option<super::PairId>,
    pub answer: Answer,
    /// The tokens whose start and end logits were differentiated.
    pub target: Target,
    pub span_mode: SpanMode,
    pub saliency: SaliencyKind,
    /// How tokens were scored (`raw` and `score` of every token).
    pub method: Method,
    /// Integrated gradients only: `Σ attribution − (y(x) − y(baseline))`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "optional_decimal"
    )]
    pub completeness_error: Option<f32>,
    /// The dtype of the weights and activations that computed it.
    pub precision: Precision,
    pub seed_compat: bool,
    /// Whether the context was cut to fit the maximum length.
    pub truncated: bool,
    /// The window of a split context this explanation differentiates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Where the explained span stands among the `best` mode's candidate spans by
    /// `start + end` (equal scores share a rank): 1 for the top span, which is the model's
    /// answer unless candidates of another text add up to more; `None` with `argmax` spans and
    /// for "no answer".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    /// The model's own answer, when the explained span is another (an answer the user gave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_answer: Option<Answer>,
    pub tokens: Vec<TokenExplanation>,
    pub words: Vec<WordExplanation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// With `top_k`: the next best spans, each explained the same way, best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "serve", schema(no_recursion))]
    pub alternatives: Vec<Explanation>,
    /// With `explain_windows: all`: every window of a split context, each for its own best
    /// span.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "serve", schema(no_recursion))]
    pub windows: Vec<Explanation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Answer {
    /// Cut from the original context by character offsets; empty when the span holds no context
    /// token (possible with `argmax` spans).
    pub text: String,
    /// Character span in the context, `None` when the text is empty.
    pub char_start: Option<usize>,
    pub char_end: Option<usize>,
    pub token_start: usize,
    pub token_end: usize,
    #[serde(serialize_with = "decimal")]
    pub start_logit: f32,
    #[serde(serialize_with = "decimal")]
    pub end_logit: f32,
    /// `start_logit + end_logit`.
    #[serde(serialize_with = "decimal")]
    pub score: f32,
    /// The transformers QA pipeline's score of this answer: `p_start · p_end` (softmaxes over
    /// the window's context and first token), summed over the candidates of its text; for "no
    /// answer", the null score. Absent where the answer is not the rule's (`--span argmax`,
    /// `--seed-compat`, an answer the user gave).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// "No answer" won (`--handle-impossible-answer`): the text is empty and the explanation
    /// differentiates `start[0] + end[0]`, the logits of the first token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub impossible: bool,
    /// With `--handle-impossible-answer`: the null score, `p_start[0] · p_end[0]`, its
    /// minimum over the windows...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_score: Option<f64>,
    /// ...and the best answer text's score, which it is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_span_probability: Option<f64>,
}

/// The logits whose gradient is explained: the start logit at `start_token` plus the end logit
/// at `end_token`, or one of them alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Target {
    pub kind: TargetKind,
    pub start_token: Option<usize>,
    pub end_token: Option<usize>,
}

impl Target {
    /// The target of `kind` for a span starting at `start` whose end logit is read at `end`.
    pub fn new(kind: TargetKind, start: usize, end: usize) -> Self {
        Self {
            kind,
            start_token: matches!(kind, TargetKind::Span | TargetKind::Start).then_some(start),
            end_token: matches!(kind, TargetKind::Span | TargetKind::End).then_some(end),
        }
    }

    pub fn objective(&self) -> Objective {
        Objective {
            start: self.start_token,
            end: self.end_token,
        }
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Span => "span",
            Self::Start => "start",
            Self::End => "end",
        })
    }
}

/// Which logits of the chosen span are differentiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// `start[s] + end[e]`, NeuralQA's target.
    #[default]
    Span,
    /// `start[s]` alone: what makes the answer begin where it does.
    Start,
    /// `end[e]` alone: what makes it end where it does.
    End,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct TokenExplanation {
    pub text: String,
    pub token_type: u32,
    pub segment: Segment,
    /// Character offsets in the token's own string (question or context); 0..0 for specials.
    pub char_start: usize,
    pub char_end: usize,
    #[serde(serialize_with = "decimal")]
    pub start_logit: f32,
    #[serde(serialize_with = "decimal")]
    pub end_logit: f32,
    /// `raw / max |raw|` over the example's tokens.
    #[serde(serialize_with = "decimal")]
    pub score: f32,
    /// The method's attribution (`onehot-norm`: `‖∂y/∂onehot‖₂` over the vocabulary).
    #[serde(serialize_with = "decimal")]
    pub raw: f32,
    /// `G · E[id]`: the one-hot gradient at the token's own id.
    #[serde(serialize_with = "decimal")]
    pub grad_x_input: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct WordExplanation {
    pub text: String,
    pub segment: Segment,
    pub char_start: usize,
    pub char_end: usize,
    /// Mean score of the word's pieces.
    #[serde(serialize_with = "decimal")]
    pub score: f32,
}

/// An f32 as the f64 of its shortest decimal: JSON gets the f32's own text (`0.1`), and
/// serialisers that widen to f64 (Python's floats) the value that text reads as, not the f32's
/// binary expansion (`0.10000000149011612`).
pub(crate) fn decimal<S: Serializer>(x: &f32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(widened(*x))
}

/// [`decimal`] for each of a list.
pub(crate) fn decimals<S: Serializer>(xs: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(xs.iter().map(|&x| widened(x)))
}

fn optional_decimal<S: Serializer>(x: &Option<f32>, serializer: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => serializer.serialize_some(&widened(*x)),
        None => serializer.serialize_none(),
    }
}

fn widened(x: f32) -> f64 {
    if !x.is_finite() {
        return f64::from(x);
    }
    ryu::Buffer::new()
        .format_finite(x)
        .parse()
        .expect("ryu writes a number")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Widening changes no value a JSON reader gets, as f32 or as f64 (only the notation of
    /// 1e-6 to 1e-5 and 1e13 to 1e16, where f64's rule for exponents differs from f32's).
    #[test]
    fn widened_floats_read_as_the_f32() {
        let mut bits: u32 = 0x1234_5678;
        let mut samples = vec![
            0.0f32,
            -0.0,
            0.1,
            1e-5,
            1.2345e-6,
            3.4e38,
            f32::MIN_POSITIVE,
        ];
        for _ in 0..100_000 {
            // xorshift: bit patterns of every exponent.
            bits ^= bits << 13;
            bits ^= bits >> 17;
            bits ^= bits << 5;
            samples.push(f32::from_bits(bits));
        }
        for x in samples.into_iter().filter(|x| x.is_finite()) {
            let f32_text = serde_json::to_string(&x).unwrap();
            let widened_text = serde_json::to_string(&widened(x)).unwrap();
            // std parses exactly (serde_json without `float_roundtrip` may miss by an ulp).
            let read = |text: &str| text.parse::<f64>().unwrap();
            assert_eq!(read(&f32_text), read(&widened_text), "{x:e}");
            assert_eq!(read(&f32_text), widened(x), "{x:e}");
            assert_eq!(widened(x) as f32, x);
        }
    }
}
