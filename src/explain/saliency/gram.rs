//! `raw² = G (EᵀE) Gᵀ` per row: the `hidden × hidden` Gram matrix replaces the vocabulary-sized
//! product. Rounding can push a tiny square below zero, hence the clamp before the root.

use candle_core::{Tensor, D};

use super::{gather_rows, Saliency, SaliencyKind};
use crate::error::Result;

pub struct Gram {
    embeddings: Tensor,
    gram: Tensor,
}

impl Gram {
    /// Computes `EᵀE` once; it is reused for every batch explained with this model.
    pub fn new(embeddings: &Tensor) -> Result<Self> {
        let gram = embeddings.t()?.matmul(embeddings)?;
        Ok(Self {
            embeddings: embeddings.clone(),
            gram,
        })
    }
}

impl Saliency for Gram {
    fn kind(&self) -> SaliencyKind {
        SaliencyKind::Gram
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        gather_rows(&self.embeddings, ids)
    }

    fn norms(&self, grads: &Tensor) -> Result<Tensor> {
        let squares = (grads.matmul(&self.gram)? * grads)?.sum(D::Minus1)?;
        Ok(squares.clamp(0f32, f32::INFINITY)?.sqrt()?)
    }
}
