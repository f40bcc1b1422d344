//! Building blocks shared by both architectures. Every op here has a backward in candle:
//! candle-nn's fused `layer_norm` / `softmax_last_dim` do not, and would silently cut the gradient.

use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;

use super::config::Activation;

/// `y = x Wᵀ + b` over the last dimension of a tensor of any rank.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get((out_dim, in_dim), "weight")?,
            bias: vb.get(out_dim, "bias")?,
        })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let in_dim = dims.pop().expect("linear input has at least one dimension");
        let rows = dims.iter().product::<usize>();
        let y = x
            .reshape((rows, in_dim))?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?;
        dims.push(self.bias.dim(0)?);
        y.reshape(dims)
    }
}

/// LayerNorm over the last dimension, composed of differentiable ops.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Accepts both the current (`weight`/`bias`) and the TF-era (`gamma`/`beta`) names.
    pub fn load(vb: VarBuilder, dim: usize, eps: f64) -> candle_core::Result<Self> {
        let (w, b) = if vb.contains_tensor("gamma") {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(Self {
            gamma: vb.get(dim, w)?,
            beta: vb.get(dim, b)?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm_slow(x, &self.gamma, &self.beta, self.eps as f32)
    }
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
        }
    }
}

/// Softmax over the last dimension (differentiable, unlike `softmax_last_dim`).
pub fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}
