//! The one-hot saliency's kernels: the Gram quadratic form's row norms, the streaming sum over
//! the vocabulary, and gradient x input at chosen embedding rows. CUDA tensors go to the fused
//! kernels (kernels/saliency.rs); CPU tensors take these plain versions, the kernels' twins.

use candle_core::{DType, Tensor, D};

use crate::error::Result;
use crate::ops;

/// `sqrt(max(0, Σ_j gm[i, j] g[i, j]))` per row: the row norms of `g`'s quadratic form, given
/// `gm = g · EᵀE` (f32, `[n, hidden]`). Rounding can push a tiny square below zero, hence the
/// clamp before the root.
pub fn gram_norms(gm: &Tensor, g: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if g.device().is_cuda() {
        return Ok(crate::ops::kernels::gram_norms(gm, g)?);
    }
    let squares = (gm * g.to_dtype(DType::F32)?)?.sum(D::Minus1)?;
    Ok(squares.clamp(0f32, f32::INFINITY)?.sqrt()?)
}

/// `‖grads[n] · Eᵀ‖₂` per row, over the vocabulary in blocks of `block` embedding rows: memory
/// is bounded by one `[n, block]` product instead of `[n, vocab]`.
pub fn streaming_norms(grads: &Tensor, embeddings: &Tensor, block: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if grads.device().is_cuda() {
        return Ok(crate::ops::kernels::streaming_norms(grads, embeddings)?);
    }
    let vocab = embeddings.dim(0)?;
    let mut squares = Tensor::zeros(grads.dim(0)?, DType::F32, grads.device())?;
    for start in (0..vocab).step_by(block) {
        let rows = embeddings.narrow(0, start, block.min(vocab - start))?;
        let part = ops::matmul(grads, &rows.t()?)?
            .to_dtype(DType::F32)?
            .sqr()?
            .sum(D::Minus1)?;
        squares = (squares + part)?;
    }
    Ok(squares.sqrt()?)
}

/// `out[n, k] = G[n] · E[ids[n, k]]`, f32, for `grads` `[n, hidden]`, `embeddings`
/// `[vocab, hidden]` (f32, f16 or bf16, accumulated in f32) and `ids` `[n, k]` u32.
pub fn gather_dot(grads: &Tensor, embeddings: &Tensor, ids: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if grads.device().is_cuda() {
        return Ok(crate::ops::kernels::gather_dot(grads, embeddings, ids)?);
    }
    let (n, k) = ids.dims2()?;
    let rows = embeddings
        .to_dtype(DType::F32)?
        .index_select(&ids.flatten_all()?, 0)?
        .reshape((n, k, ()))?;
    let grads = grads.to_dtype(DType::F32)?.unsqueeze(1)?;
    Ok(rows.broadcast_mul(&grads)?.sum(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn gather_dot_is_the_row_dot_product() -> Result<()> {
        let dev = Device::Cpu;
        let g = Tensor::randn(0f32, 1.0, (4, 5), &dev)?;
        let e = Tensor::randn(0f32, 1.0, (9, 5), &dev)?;
        let ids = Tensor::new(&[[0u32, 8], [3, 3], [8, 1], [2, 0]], &dev)?;
        let got = gather_dot(&g, &e, &ids)?.to_vec2::<f32>()?;
        let (g, e, ids) = (
            g.to_vec2::<f32>()?,
            e.to_vec2::<f32>()?,
            ids.to_vec2::<u32>()?,
        );
        for n in 0..4 {
            for k in 0..2 {
                let dot: f32 = g[n]
                    .iter()
                    .zip(&e[ids[n][k] as usize])
                    .map(|(a, b)| a * b)
                    .sum();
                assert!((got[n][k] - dot).abs() < 1e-5);
            }
        }
        Ok(())
    }
}
