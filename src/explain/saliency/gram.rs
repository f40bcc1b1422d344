//! `raw² = G (EᵀE) Gᵀ` per row: the `hidden × hidden` Gram matrix replaces the vocabulary-sized
//! product. `G·EᵀE` is a matmul (cuBLAS on CUDA); the row dot, clamp and root are one op
//! ([`ops::gram_norms`]).

use candle_core::{DType, Tensor};

use super::{gather_rows, Saliency, SaliencyKind};
use crate::error::Result;
use crate::ops;

pub struct Gram {
    embeddings: Tensor,
    gram: Tensor,
}

impl Gram {
    /// Token rows per `G·EᵀE` product: bounds the intermediate to `ROWS × hidden` floats
    /// whatever the batch.
    pub const ROWS: usize = 4096;

    /// Computes `EᵀE` (in f32) once; it is reused for every batch explained with this model.
    pub fn new(embeddings: &Tensor) -> Result<Self> {
        let e = embeddings.to_dtype(DType::F32)?;
        let gram = e.t()?.matmul(&e)?;
        Ok(Self {
            embeddings: embeddings.clone(),
            gram,
        })
    }

    fn quadratic_form(&self, grads: &Tensor) -> Result<Tensor> {
        let gm = grads.to_dtype(DType::F32)?.matmul(&self.gram)?;
        ops::gram_norms(&gm, grads)
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
        let n = grads.dim(0)?;
        let parts = (0..n)
            .step_by(Self::ROWS)
            .map(|start| self.quadratic_form(&grads.narrow(0, start, Self::ROWS.min(n - start))?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    }
}
