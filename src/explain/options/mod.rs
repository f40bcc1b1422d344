//! What a user can choose about an explanation: every option, defined once below. The
//! command line's flags, the server's `options` object (and its OpenAPI schema) and Python's
//! keywords are made from [`OPTIONS`], with the same names and defaults.

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "serve")]
pub mod openapi;
pub mod phrases;
pub mod schema;

use candle_core::{DType, Device};
use serde_json::Value;

pub use crate::error::{InvalidOption, Naming, Phrase};
use schema::{named_value, options};
pub use schema::{OptionSpec, Scope};

use super::explanation::TargetKind;
use super::method::{Baseline, Method};
use super::saliency::SaliencyKind;
use super::span::SpanMode;

pub const DEFAULT_MAX_LENGTH: usize = 384;

options! {
    /// How the answer span is chosen: the best valid span in the context (as the transformers
    /// pipeline), or the seed's independent argmaxes of start and end.
    span: SpanMode = SpanMode::Best, Request;
    /// Which logits of the span are explained: start + end (NeuralQA's target), or one alone.
    target: TargetKind = TargetKind::Span, Request;
    /// How tokens are scored (see the README for each formula and its peer equivalent).
    method: Method = Method::OnehotNorm, Request;
    /// integrated-gradients: integration points (Gauss-Legendre, as Captum).
    steps: usize = 50, Request, min 1, max MAX_PASSES;
    /// integrated-gradients: the baseline replacing every non-special token.
    baseline: Baseline = Baseline::Pad, Request;
    /// smoothgrad: noisy copies per pair.
    samples: usize = 20, Request, min 1, max MAX_PASSES;
    /// smoothgrad: the noise's standard deviation on the word embeddings.
    noise_std: f64 = 0.1, Request, min 0, max MAX_NOISE_STD;
    /// The seed of smoothgrad's noise and of evaluate's random orders (each pair's draws also
    /// depend on its tokens, not on its batch).
    seed: u64 = 0, Request;
    /// How the vocabulary norm of the one-hot gradient is computed (same numbers): gram
    /// (fastest), streaming (blocks of the vocabulary), dense (the naive baseline).
    saliency: SaliencyKind = SaliencyKind::Gram, Request;
    /// Reproduce NeuralQA exactly: differentiate the end logit of the token after the
    /// predicted end.
    seed_compat: bool = false, Request;
    /// Tokens per pair, special tokens included [default: 384, or the model's limit if lower].
    max_length: Option<usize> = None, Request, min MIN_MAX_LENGTH;
    /// Longest answer considered by span best, in tokens.
    max_answer_len: usize = 15, Request, min 1;
    /// Overlap, in tokens, of the windows a context longer than max length is split into, as
    /// the transformers QA pipeline's doc_stride; 0 cuts the context to the first window
    /// instead [default: min(max length / 2, 128)].
    doc_stride: Option<usize> = None, Request;
    /// Which windows of a split context are explained: the answer's, or all (each for its own
    /// best span, in `windows`).
    explain_windows: ExplainWindows = ExplainWindows::Best, Request;
    /// Explain the N best spans (span best): the answer, then the runners-up.
    top_k: usize = 1, Request, min 1, max MAX_TOP_K;
    /// SQuAD 2.0 models: answer "no answer" (an empty text) when the first token's
    /// p_start · p_end beats the best span's, as the transformers pipeline's option of the same
    /// name; the explanation then differentiates start[0] + end[0].
    handle_impossible_answer: bool = false, Request;
    /// Padded tokens (pairs x longest) per forward/backward pass, `auto` (as many as the
    /// device's free memory holds, by the activation-memory formula) or `all` (one pass per
    /// batch). Passes never change the results; a pass that runs out of memory is split.
    max_batch_tokens: BatchTokens = BatchTokens::Auto, Load, min 1;
    /// Memory a pass may use, in MiB (fractions too) [default: what the device has free].
    memory_limit_mib: Option<f64> = None, Load, min 1e-3;
    /// Weights and activations (statistics and the saliency are f32 whatever this is)
    /// [default: bf16 on a GPU, f32 on the CPU].
    dtype: Option<Precision> = None, Load;
    /// The largest question + context, in bytes; a larger pair fails alone, before it is
    /// tokenised (tokenisation holds the whole text: a 10 MB context took 1.6 GB).
    max_input_bytes: usize = DEFAULT_MAX_INPUT_BYTES, Load, min 1;
}

/// Bytes in a MiB, for [`ExplainOptions::memory_limit_mib`].
pub const MIB: f64 = (1u64 << 20) as f64;

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
    /// The options that are wrong whatever the model: out of their range, or wrong together.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        for spec in OPTIONS {
            spec.check(self)?;
        }
        let best_only = |option| {
            Err(InvalidOption::new(
                option,
                Phrase::option(option)
                    .then(" takes ")
                    .then_option(name::span)
                    .then(" best without ")
                    .then_option(name::seed_compat),
            ))
        };
        let best = self.span == SpanMode::Best && !self.seed_compat;
        if self.top_k > 1 && !best {
            return best_only(name::top_k);
        }
        if self.handle_impossible_answer && !best {
            return best_only(name::handle_impossible_answer);
        }
        Ok(())
    }

    /// The option called `name`, if there is one.
    pub fn spec(name: &str) -> Option<&'static OptionSpec> {
        OPTIONS.iter().find(|spec| spec.name == name)
    }

    /// Bytes a pass may use, from [`Self::memory_limit_mib`].
    pub fn memory_limit_bytes(&self) -> Option<usize> {
        // Exact for a limit given as bytes / 2^20 (`as` saturates past usize::MAX).
        self.memory_limit_mib.map(|m| (m * MIB) as usize)
    }
}

/// Options given by name with JSON values, over a base: a server request's `options`,
/// Python's keywords. Each value is checked against its option's type and range when given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Given(Vec<(&'static str, Value)>);

/// Why an option given by name is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// No option has this name.
    Unknown(String),
    /// The option is chosen when the model is loaded, not per call.
    AtLoad(&'static str),
    Invalid(InvalidOption),
}

impl Given {
    /// Adds `name: value`, an option of `scope` (a [`Scope::Load`] option is refused per
    /// request).
    pub fn add(&mut self, name: &str, value: Value, scope: Scope) -> Result<(), Refused> {
        let spec = ExplainOptions::spec(name).ok_or_else(|| Refused::Unknown(name.into()))?;
        if scope == Scope::Request && spec.scope == Scope::Load {
            return Err(Refused::AtLoad(spec.name));
        }
        spec.set(&mut ExplainOptions::default(), value.clone())
            .map_err(Refused::Invalid)?;
        self.0.retain(|(n, _)| *n != spec.name);
        self.0.push((spec.name, value));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `base` with these options over it, checked as a whole.
    pub fn apply(&self, base: &ExplainOptions) -> Result<ExplainOptions, InvalidOption> {
        let mut options = base.clone();
        for (name, value) in &self.0 {
            let spec = ExplainOptions::spec(name).expect("checked when given");
            spec.set(&mut options, value.clone())?;
        }
        options.validate()?;
        Ok(options)
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

/// The size of a forward/backward pass: in JSON, `"auto"`, `"all"` or a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Value", into = "Value")]
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

impl TryFrom<Value> for BatchTokens {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        match &value {
            Value::String(s) => s.parse(),
            Value::Number(n) => n.to_string().parse(),
            other => Err(format!(
                "{other} is not a positive integer, `auto` or `all`"
            )),
        }
    }
}

impl From<BatchTokens> for Value {
    fn from(tokens: BatchTokens) -> Self {
        match tokens {
            BatchTokens::Auto => "auto".into(),
            BatchTokens::Unlimited => "all".into(),
            BatchTokens::Fixed(n) => n.into(),
        }
    }
}

impl schema::OptionValue for BatchTokens {
    type Flag = Self;
    const KIND: schema::Kind = schema::Kind::Named;
    fn from_flag(flag: Self) -> Self {
        flag
    }
    fn number(&self) -> Option<f64> {
        match self {
            Self::Fixed(n) => Some(*n as f64),
            Self::Auto | Self::Unlimited => None,
        }
    }
    #[cfg(feature = "serve")]
    fn named_schema() -> Option<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let names = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["auto", "all"]));
        let count = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1));
        Some(OneOfBuilder::new().item(names).item(count).into())
    }
}

named_value!(
    SpanMode,
    TargetKind,
    Method,
    Baseline,
    SaliencyKind,
    ExplainWindows,
    Precision
);
