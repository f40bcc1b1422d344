//! Tokenisation of (question, context) pairs into model inputs with character offsets.

mod encode;
mod tokenizer;

pub use encode::{Encoded, Segment, Window};
pub use tokenizer::QaTokenizer;
