//! The sparse embedding-row terms of the one-hot gradient: gradient x input at chosen rows, and
//! the gradient of the embedding matrix restricted to the rows the tokens use. CUDA tensors go
//! to the kernels; CPU tensors take these plain versions, the kernels' twins.

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

/// `dE[v] = Σ_{n: ids[n] = v} G[n]`, `[vocab, hidden]` f32, each row summed in token order (so
/// every run gives the same bits); rows of unused ids are zero.
pub fn scatter_rows(grads: &Tensor, ids: &Tensor, vocab: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if grads.device().is_cuda() {
        return Ok(crate::kernels::scatter_rows(grads, ids, vocab)?);
    }
    let (_, hidden) = grads.dims2()?;
    let g = grads.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut de = vec![0f32; vocab * hidden];
    for (row, &id) in g.iter().zip(&ids.to_vec1::<u32>()?) {
        let target = de
            .get_mut(id as usize * hidden..(id as usize + 1) * hidden)
            .ok_or_else(|| candle_core::Error::Msg(format!("id {id} outside the vocabulary")))?;
        for (d, x) in target.iter_mut().zip(row) {
            *d += x;
        }
    }
    Ok(Tensor::from_vec(de, (vocab, hidden), grads.device())?)
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

    #[test]
    fn scatter_rows_equals_candles_index_add() -> Result<()> {
        let dev = Device::Cpu;
        let g = Tensor::randn(0f32, 1.0, (6, 3), &dev)?;
        let ids = Tensor::new(&[4u32, 1, 4, 0, 4, 1], &dev)?;
        let got = scatter_rows(&g, &ids, 7)?;
        let expected = Tensor::zeros((7, 3), DType::F32, &dev)?.index_add(&ids, &g, 0)?;
        let diff = (got - expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6);
        assert!(scatter_rows(&g, &Tensor::new(&[9u32, 0, 0, 0, 0, 0], &dev)?, 7).is_err());
        Ok(())
    }
}
