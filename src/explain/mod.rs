//! From encoded pairs to explanations: forward, span choice, backward to the word embeddings,
//! one-hot-gradient saliency, normalisation and word merging.

mod engine;
mod explainer;
pub mod explanation;
pub mod method;
pub mod options;
mod pair;
mod pair_id;
pub mod pipeline;
pub mod saliency;
mod sharded;
pub mod span;
pub mod words;

pub use engine::{Engine, Gradients, Input, StageTimes};
pub use explainer::{Explainer, PairPlan};
pub use explanation::{Answer, Explanation, Target, TargetKind, TokenExplanation, WordExplanation};
pub use method::{Baseline, Method};
pub use options::{
    BatchTokens, ExplainOptions, ExplainWindows, Given, InvalidOption, Naming, OptionSpec, Phrase,
    Precision, Refused, Scope, DEFAULT_MAX_INPUT_BYTES, DEFAULT_MAX_LENGTH, OPTIONS,
};
pub use pair::{OtherFields, PairFailure, QaPair};
pub use pair_id::PairId;
pub use saliency::{Saliency, SaliencyKind};
pub use sharded::Sharded;
pub use span::{Span, SpanMode};
