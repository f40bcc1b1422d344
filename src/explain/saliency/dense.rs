//! The naive method, kept as the honest baseline: the forward multiplies a materialised one-hot
//! `[n, vocab]` by `E`, and the gradient with respect to that one-hot, `G · Eᵀ`, is materialised
//! in full before its row norms are taken.

use candle_core::{DType, Tensor, D};

use super::{Saliency, SaliencyKind};
use crate::error::Result;
use crate::ops;

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
        Ok(ops::matmul(&one_hot, &self.embeddings)?)
    }

    /// The product in the model's dtype (as autocast would run it), squared and summed in f32.
    fn norms(&self, grads: &Tensor) -> Result<Tensor> {
        let one_hot_grad = ops::matmul(grads, &self.embeddings.t()?)?.to_dtype(DType::F32)?;
        Ok(one_hot_grad.sqr()?.sum(D::Minus1)?.sqrt()?)
    }
}
