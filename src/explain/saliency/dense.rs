//! The naive method, kept as the honest baseline: the forward multiplies a materialised one-hot
//! `[n, vocab]` by `E`, and the gradient with respect to that one-hot, `G · Eᵀ`, is materialised
//! in full before its row norms are taken.

use candle_core::{Tensor, D};

use super::{Saliency, SaliencyKind};
use crate::error::Result;

pub struct Dense {
    embeddings: Tensor,
}

impl Dense {
    pub fn new(embeddings: Tensor) -> Self {
        Self { embeddings }
    }
}

impl Saliency for Dense {
    fn kind(&self) -> SaliencyKind {
        SaliencyKind::Dense
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let vocab = self.embeddings.dim(0)? as u32;
        let columns = Tensor::arange(0u32, vocab, ids.device())?.unsqueeze(0)?;
        let one_hot = ids
            .unsqueeze(1)?
            .broadcast_eq(&columns)?
            .to_dtype(self.embeddings.dtype())?;
        Ok(one_hot.matmul(&self.embeddings)?)
    }

    fn norms(&self, grads: &Tensor) -> Result<Tensor> {
        let one_hot_grad = grads.matmul(&self.embeddings.t()?)?;
        Ok(one_hot_grad.sqr()?.sum(D::Minus1)?.sqrt()?)
    }
}
