//! spangrad: gradient explanations for extractive question answering (BERT, DistilBERT).
//!
//! For each (question, context) pair: the answer span, and per token the L2 norm over the
//! vocabulary of the gradient of `start[s] + end[e]` with respect to the one-hot input,
//! normalised by its maximum (NeuralQA's "explain" view), computed without ever building the
//! `[tokens, vocab]` one-hot unless the dense baseline is asked for.

pub mod error;
pub mod explain;
pub mod hub;
pub mod memory;
pub mod model;
pub mod text;

pub use error::{Error, Result};
pub use explain::{
    ExplainOptions, Explainer, Explanation, QaPair, SaliencyKind, SpanMode, DEFAULT_MAX_LENGTH,
};
