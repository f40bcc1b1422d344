//! spangrad: gradient explanations for extractive question answering (BERT, DistilBERT,
//! RoBERTa, XLM-RoBERTa, CamemBERT, ELECTRA, ALBERT).
//!
//! For each (question, context) pair: the answer span, and per token the L2 norm over the
//! vocabulary of the gradient of `start[s] + end[e]` with respect to the one-hot input,
//! normalised by its maximum (NeuralQA's "explain" view), computed without ever building the
//! `[tokens, vocab]` one-hot unless the dense baseline is asked for.
//!
//! ```
//! use spangrad::{ExplainOptions, Explainer, QaPair};
//!
//! let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bert-tiny");
//! let device = spangrad::device::default_device();
//! let explainer = Explainer::from_dir(model.as_ref(), ExplainOptions::default(), &device)?;
//! let pair = QaPair::new("Who wrote the novel?", "Jane Austen wrote it in 1813.");
//! let explanation = explainer.explain_one(&pair)?;
//! assert!(!explanation.answer.text.is_empty());
//! let top = explanation.tokens.iter().map(|t| t.score).fold(0.0, f32::max);
//! assert_eq!(top, 1.0); // scores are normalised by their maximum
//! # Ok::<(), spangrad::Error>(())
//! ```

pub mod device;
pub mod error;
pub mod evaluate;
pub mod explain;
pub mod files;
pub mod hub;
pub mod memory;
pub mod model;
pub mod ops;
pub mod profile;
pub mod report;
#[cfg(feature = "serve")]
pub mod serve;
pub mod text;

pub use error::{Error, Field, Result};
pub use explain::{
    BatchTokens, ExplainOptions, Explainer, Explanation, PairId, Precision, QaPair, SaliencyKind,
    SpanMode, DEFAULT_MAX_LENGTH,
};
