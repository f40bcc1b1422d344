//! The one-hot-gradient norm `raw[n] = ‖∂y/∂onehot[n]‖₂ = ‖G[n] · Eᵀ‖₂`, three ways.
//!
//! `dense` is the naive method (it materialises the `[tokens, vocab]` one-hot and its gradient)
//! and stays as the baseline; `streaming` does the same sum over vocabulary blocks; `gram` uses
//! `‖G Eᵀ‖² = G (EᵀE) Gᵀ` with the `hidden × hidden` Gram matrix computed once per model.

mod dense;
mod gram;
mod streaming;

use std::fmt;

use candle_core::Tensor;

pub use dense::Dense;
pub use gram::Gram;
pub use streaming::Streaming;

use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SaliencyKind {
    Dense,
    Streaming,
    Gram,
}

impl SaliencyKind {
    pub const ALL: [SaliencyKind; 3] = [Self::Dense, Self::Streaming, Self::Gram];

    pub fn name(self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::Streaming => "streaming",
            Self::Gram => "gram",
        }
    }

    /// Builds the implementation for an embedding matrix `[vocab, hidden]`.
    pub fn build(self, embeddings: &Tensor) -> Result<Box<dyn Saliency>> {
        Ok(match self {
            Self::Dense => Box::new(Dense::new(embeddings.clone())),
            Self::Streaming => Box::new(Streaming::new(
                embeddings.clone(),
                Streaming::DEFAULT_BLOCK,
            )?),
            Self::Gram => Box::new(Gram::new(embeddings)?),
        })
    }
}

impl fmt::Display for SaliencyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub trait Saliency: Send + Sync {
    fn kind(&self) -> SaliencyKind;

    /// The word embeddings fed to the model for token ids `[n]`: `[n, hidden]`.
    fn embed(&self, ids: &Tensor) -> Result<Tensor>;

    /// `‖G[n] · Eᵀ‖₂` for each row of `grads` `[n, hidden]`: `[n]`.
    fn norms(&self, grads: &Tensor) -> Result<Tensor>;
}

/// Row lookup, what every method but the dense baseline uses for the forward.
fn gather_rows(embeddings: &Tensor, ids: &Tensor) -> Result<Tensor> {
    Ok(embeddings.index_select(ids, 0)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    /// Plain f64 loops over the vocabulary: the obviously-correct reference.
    fn reference_norms(e: &[Vec<f32>], g: &[Vec<f32>]) -> Vec<f64> {
        g.iter()
            .map(|gn| {
                e.iter()
                    .map(|ev| {
                        let dot: f64 = gn.iter().zip(ev).map(|(a, b)| *a as f64 * *b as f64).sum();
                        dot * dot
                    })
                    .sum::<f64>()
                    .sqrt()
            })
            .collect()
    }

    #[test]
    fn all_methods_match_an_f64_loop_on_awkward_shapes() -> Result<()> {
        let dev = Device::Cpu;
        // Vocabulary not a multiple of the streaming block, hidden not a multiple of 8.
        for (n, v, h) in [(1, 7, 3), (5, 1031, 37), (13, 300, 20)] {
            let e = (Tensor::randn(0f32, 1.0, (v, h), &dev)? + 0.3)?;
            let g = Tensor::randn(0f32, 1.0, (n, h), &dev)?;
            let expected = reference_norms(&e.to_vec2()?, &g.to_vec2()?);
            let methods: Vec<Box<dyn Saliency>> = vec![
                Box::new(Dense::new(e.clone())),
                Box::new(Streaming::new(e.clone(), 64)?),
                Box::new(Gram::new(&e)?),
            ];
            for m in methods {
                let got = m.norms(&g)?.to_vec1::<f32>()?;
                for (a, b) in got.iter().zip(&expected) {
                    let rel = (*a as f64 - b).abs() / b.max(1e-30);
                    assert!(rel < 1e-5, "{}: {a} vs {b} ({n}x{v}x{h})", m.kind());
                }
            }
        }
        Ok(())
    }

    /// Half-precision gradients and embeddings give f32 norms (accumulated in f32) close to
    /// the f32 ones, by every method.
    #[test]
    fn every_method_takes_half_precision_and_returns_f32() -> Result<()> {
        let dev = Device::Cpu;
        let e = (Tensor::randn(0f32, 1.0, (700, 24), &dev)? + 0.3)?;
        let g = Tensor::randn(0f32, 1.0, (9, 24), &dev)?;
        let expected = Gram::new(&e)?.norms(&g)?;
        for dtype in [DType::F16, DType::BF16] {
            let (e, g) = (e.to_dtype(dtype)?, g.to_dtype(dtype)?);
            let methods: Vec<Box<dyn Saliency>> = vec![
                Box::new(Dense::new(e.clone())),
                Box::new(Streaming::new(e.clone(), 64)?),
                Box::new(Gram::new(&e)?),
            ];
            for m in methods {
                let got = m.norms(&g)?;
                assert_eq!(got.dtype(), DType::F32, "{} {dtype:?}", m.kind());
                let diff = ((&got - &expected)?.abs()? / &expected)?
                    .max_all()?
                    .to_scalar::<f32>()?;
                assert!(diff < 2e-2, "{} {dtype:?}: {diff}", m.kind());
            }
        }
        Ok(())
    }

    #[test]
    fn dense_embedding_is_the_one_hot_product() -> Result<()> {
        let dev = Device::Cpu;
        let e = Tensor::randn(0f32, 1.0, (11, 4), &dev)?;
        let ids = Tensor::new(&[3u32, 0, 10, 3], &dev)?;
        let dense = Dense::new(e.clone()).embed(&ids)?;
        let rows = gather_rows(&e, &ids)?;
        assert_eq!(dense.to_vec2::<f32>()?, rows.to_vec2::<f32>()?);
        Ok(())
    }
}
