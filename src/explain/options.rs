//! What a user can choose about an explanation.

use candle_core::{DType, Device};

use super::explanation::TargetKind;
use super::method::{Baseline, Method};
use super::saliency::SaliencyKind;
use super::span::SpanMode;

pub const DEFAULT_MAX_LENGTH: usize = 384;

#[derive(Debug, Clone, PartialEq)]
pub struct ExplainOptions {
    pub span: SpanMode,
    /// Which logits of the span are differentiated.
    pub target: TargetKind,
    /// How tokens are scored.
    pub method: Method,
    /// Integrated gradients: integration points (Gauss–Legendre).
    pub steps: usize,
    /// Integrated gradients: the baseline.
    pub baseline: Baseline,
    /// SmoothGrad: noisy copies per pair.
    pub samples: usize,
    /// SmoothGrad: the noise's standard deviation, on the word embeddings.
    pub noise_std: f64,
    /// SmoothGrad: the noise's seed (each pair's draws also depend on its tokens, not on its
    /// batch).
    pub seed: u64,
    pub saliency: SaliencyKind,
    /// Differentiate the end logit one token after the predicted end, as NeuralQA's code does.
    pub seed_compat: bool,
    /// Tokens per pair, special tokens included; `None`: 384, or less if the model's positions
    /// stop earlier.
    pub max_length: Option<usize>,
    pub max_answer_len: usize,
    /// Overlap of the windows a long context is split into, in tokens (the transformers
    /// pipeline's `doc_stride`); `None`: its default, `min(max_length / 2, 128)`; `Some(0)`: no
    /// windows, the context is cut to the first (the seed's behaviour, flagged `truncated`).
    pub doc_stride: Option<usize>,
    /// Which windows of a split context are explained.
    pub explain_windows: ExplainWindows,
    /// SQuAD 2.0's "no answer": the transformers pipeline's `handle_impossible_answer` (the
    /// first token's `p_start · p_end`, its minimum over the windows, wins over a better-scoring
    /// text); `best` spans only.
    pub handle_impossible_answer: bool,
    /// Explain the `top_k` best spans (the best is the answer, the others `alternatives`);
    /// `best` spans only.
    pub top_k: usize,
    /// How a batch is cut into forward/backward passes (pairs never interact: the results
    /// are the same).
    pub max_batch_tokens: BatchTokens,
    /// Bytes a pass may use; `None`: what the device has free. Passes estimated above it are
    /// split, as are passes the device itself cannot fit.
    pub memory_limit: Option<usize>,
    /// Weights and activations; `None`: [`Precision::default_for`] the device.
    pub precision: Option<Precision>,
    /// The largest question + context, in bytes, that is tokenised: tokenisation holds the
    /// whole text (a 10 MB context took 1.6 GB), so a larger pair fails alone, before it.
    pub max_input_bytes: usize,
}

/// The most integration steps or SmoothGrad samples: Captum's tutorials use 50 and 20.
pub const MAX_PASSES: usize = 10_000;

/// The largest SmoothGrad deviation: word embeddings are of order 1, and far larger noise
/// overflows the activations (1e308 passed as finite and failed in the pass).
pub const MAX_NOISE_STD: f64 = 1e3;

/// The most spans explained per pair (each is a backward pass).
pub const MAX_TOP_K: usize = 100;

/// 1 MiB: about 250,000 words, far past any window of a BERT-sized model.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 1 << 20;

/// The fewest tokens a pair can have: `[CLS]`, a question token, `[SEP]`, a context token,
/// `[SEP]`.
pub const MIN_MAX_LENGTH: usize = 5;

impl ExplainOptions {
    /// The options that are wrong whatever the model, named by their command-line flags.
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |m: String| Err(crate::Error::InvalidOption(m));
        if self.max_answer_len == 0 {
            return invalid("--max-answer-len must be positive".into());
        }
        if self.max_batch_tokens == BatchTokens::Fixed(0) {
            return invalid("--max-batch-tokens must be positive".into());
        }
        if self.steps == 0 || self.samples == 0 {
            return invalid("--steps and --samples must be positive".into());
        }
        for (flag, value) in [("--steps", self.steps), ("--samples", self.samples)] {
            if value > MAX_PASSES {
                return invalid(format!("{flag} takes at most {MAX_PASSES}"));
            }
        }
        if self.top_k > MAX_TOP_K {
            return invalid(format!("--top-k takes at most {MAX_TOP_K}"));
        }
        if !(0.0..=MAX_NOISE_STD).contains(&self.noise_std) {
            return invalid(format!("--noise-std must be between 0 and {MAX_NOISE_STD}"));
        }
        if self.top_k == 0 {
            return invalid("--top-k must be positive".into());
        }
        if self.top_k > 1 && (self.span != SpanMode::Best || self.seed_compat) {
            return invalid("--top-k takes --span best without --seed-compat".into());
        }
        if self.handle_impossible_answer && (self.span != SpanMode::Best || self.seed_compat) {
            return invalid(
                "--handle-impossible-answer takes --span best without --seed-compat".into(),
            );
        }
        if self.max_input_bytes == 0 {
            return invalid("--max-input-bytes must be positive".into());
        }
        if self.memory_limit == Some(0) {
            return invalid("--memory-limit-mib must be positive".into());
        }
        match self.max_length {
            Some(n) if n < MIN_MAX_LENGTH => invalid(format!(
                "--max-length {n} is too small: a pair takes at least {MIN_MAX_LENGTH} tokens \
                 ([CLS] question [SEP] context [SEP])"
            )),
            _ => Ok(()),
        }
    }
}

/// The dtype of the weights and activations (weights are converted once, at load). LayerNorm
/// statistics, softmax sums, matmul accumulation and the saliency are f32 in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// The precision of tensors of `dtype`, if it is one of the three.
    pub fn of(dtype: DType) -> Option<Self> {
        [Self::F32, Self::Bf16, Self::F16]
            .into_iter()
            .find(|p| p.dtype() == dtype)
    }

    /// bf16 on a GPU (tensor cores, half the memory), f32 on the CPU, where half precision
    /// is slower (no AMX; candle's CPU matmul has no bf16, so half operands are multiplied
    /// in f32).
    pub fn default_for(device: &Device) -> Self {
        if device.is_cuda() {
            Self::Bf16
        } else {
            Self::F32
        }
    }
}

impl Default for ExplainOptions {
    fn default() -> Self {
        Self {
            span: SpanMode::Best,
            target: TargetKind::Span,
            method: Method::OnehotNorm,
            steps: 50,
            baseline: Baseline::Pad,
            samples: 20,
            noise_std: 0.1,
            seed: 0,
            saliency: SaliencyKind::Gram,
            seed_compat: false,
            max_length: None,
            max_answer_len: 15,
            top_k: 1,
            handle_impossible_answer: false,
            doc_stride: None,
            explain_windows: ExplainWindows::Best,
            max_batch_tokens: BatchTokens::Auto,
            memory_limit: None,
            precision: None,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// Which windows of a context split by `doc_stride` are explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExplainWindows {
    /// The window of the answer (the pipeline's best span over all windows).
    #[default]
    Best,
    /// Every window, each for its own best span, besides the answer's.
    All,
}

/// The size of a forward/backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchTokens {
    /// As many pairs as fit the memory (the limit, or the device's free memory), by the
    /// activation-memory formula of [`crate::model::BatchShape::peak_bytes`].
    Auto,
    /// At most this many padded tokens (pairs x longest pair).
    Fixed(usize),
    /// The whole batch in one pass.
    Unlimited,
}

impl std::str::FromStr for BatchTokens {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "all" => Ok(Self::Unlimited),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .map(Self::Fixed)
                .ok_or_else(|| format!("{n:?} is not a positive number, `auto` or `all`")),
        }
    }
}

/// One pair to explain, as read from JSON lines (`id` optional: any JSON value, echoed back as
/// given; `null` is no id).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct QaPair {
    #[serde(default)]
    #[cfg_attr(feature = "serve", schema(value_type = Option<serde_json::Value>))]
    pub id: Option<super::PairId>,
    /// Not empty, nor only whitespace.
    #[cfg_attr(feature = "serve", schema(min_length = 1, pattern = r"\S"))]
    pub question: String,
    /// Not empty, nor only whitespace.
    #[cfg_attr(feature = "serve", schema(min_length = 1, pattern = r"\S"))]
    pub context: String,
    /// An answer to explain instead of the model's: why would it, or would it not, pick this?
    #[serde(default)]
    pub answer: Option<String>,
    /// Where `answer` starts in the context, in characters (default: its first occurrence).
    #[serde(default)]
    pub answer_start: Option<usize>,
}

impl QaPair {
    pub fn new(question: impl Into<String>, context: impl Into<String>) -> Self {
        Self {
            id: None,
            question: question.into(),
            context: context.into(),
            answer: None,
            answer_start: None,
        }
    }

    /// The same pair, explained for `answer` (at its first occurrence in the context).
    pub fn with_answer(self, answer: impl Into<String>) -> Self {
        Self {
            answer: Some(answer.into()),
            ..self
        }
    }
}
