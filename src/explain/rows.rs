//! The sparse embedding-row term of the one-hot gradient: gradient x input at chosen rows. CUDA
//! tensors go to the kernel; CPU tensors take this plain version, the kernel's twin.

use candle_core::{DType, Tensor, D};

use crate::error::Result;

/// `out[n, k] = G[n] · E[ids[n, k]]`, f32, for `grads` `[n, hidden]`, `embeddings`
/// `[vocab, hidden]` (f32, f16 or bf16, accumulated in f32) and `ids` `[n, k]` u32.
pub fn gather_dot(grads: &Tensor, embeddings: &Tensor, ids: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if grads.device().is_cuda() {
        return Ok(crate::kernels::gather_dot(grads, embeddings, ids)?);
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
