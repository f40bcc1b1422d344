//! What a user can choose about an explanation.

use super::saliency::SaliencyKind;
use super::span::SpanMode;

pub const DEFAULT_MAX_LENGTH: usize = 384;

#[derive(Debug, Clone, PartialEq)]
pub struct ExplainOptions {
    pub span: SpanMode,
    pub saliency: SaliencyKind,
    /// Differentiate the end logit one token after the predicted end, as NeuralQA's code does.
    pub seed_compat: bool,
    /// Tokens per pair, special tokens included; `None`: 384, or less if the model's positions
    /// stop earlier.
    pub max_length: Option<usize>,
    pub max_answer_len: usize,
    /// Padded tokens (pairs x longest pair) per forward/backward pass: a larger batch is
    /// explained in several passes, with the same results (pairs never interact). `None`: one
    /// pass. Bounds the autograd's memory, which grows with the pass.
    pub max_batch_tokens: Option<usize>,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        Self {
            span: SpanMode::Best,
            saliency: SaliencyKind::Gram,
            seed_compat: false,
            max_length: None,
            max_answer_len: 15,
            max_batch_tokens: None,
        }
    }
}

/// One pair to explain, as read from JSON lines (`id` optional).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct QaPair {
    #[serde(default)]
    pub id: Option<String>,
    pub question: String,
    pub context: String,
}

impl QaPair {
    pub fn new(question: impl Into<String>, context: impl Into<String>) -> Self {
        Self {
            id: None,
            question: question.into(),
            context: context.into(),
        }
    }
}
