//! The dense sum over the vocabulary, taken in blocks of embedding rows: memory is bounded by
//! one `[n, block]` product instead of `[n, vocab]`. On CUDA a fused kernel squares and sums
//! each tile of the product in registers; this CPU path is its twin.

use candle_core::{DType, Tensor, D};

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
        #[cfg(feature = "cuda")]
        if grads.device().is_cuda() {
            return Ok(crate::kernels::streaming_norms(grads, &self.embeddings)?);
        }
        let vocab = self.embeddings.dim(0)?;
        let mut squares = Tensor::zeros(grads.dim(0)?, DType::F32, grads.device())?;
        for start in (0..vocab).step_by(self.block) {
            let rows = self
                .embeddings
                .narrow(0, start, self.block.min(vocab - start))?;
            let part = ops::matmul(grads, &rows.t()?)?
                .to_dtype(DType::F32)?
                .sqr()?
                .sum(D::Minus1)?;
            squares = (squares + part)?;
        }
        Ok(squares.sqrt()?)
    }
}
