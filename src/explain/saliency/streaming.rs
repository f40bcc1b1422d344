//! The dense sum over the vocabulary, taken in blocks of embedding rows: memory is bounded by
//! one `[n, block]` product instead of `[n, vocab]` ([`ops::streaming_norms`]; on CUDA a fused
//! kernel squares and sums each tile of the product in registers).

use candle_core::Tensor;

use super::{gather_rows, Saliency, SaliencyKind};
use crate::error::{Error, Result};
use crate::ops;

pub struct Streaming {
    embeddings: Tensor,
    block: usize,
}

impl Streaming {
    pub const DEFAULT_BLOCK: usize = 4096;

    pub fn new(embeddings: Tensor, block: usize) -> Result<Self> {
        if block == 0 {
            return Err(Error::Usage("streaming block size must be positive".into()));
        }
        Ok(Self { embeddings, block })
    }
}

impl Saliency for Streaming {
    fn kind(&self) -> SaliencyKind {
        SaliencyKind::Streaming
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        gather_rows(&self.embeddings, ids)
    }

    fn norms(&self, grads: &Tensor) -> Result<Tensor> {
        ops::streaming_norms(grads, &self.embeddings, self.block)
    }
}
