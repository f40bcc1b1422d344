//! The weights of the building blocks and the few lines each block's forward and backward need.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::ops::{self, LayerNormSaved};
use crate::profile;

/// `y = x Wᵀ + b` over the last dimension; `weight` `[out, in]`, `bias` `[out]`. The fast path
/// takes the product alone and leaves the bias to the fused op that follows (LayerNorm,
/// activation), which adds it as it reads the product.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
    /// `Wᵀ` `[in, out]` where the device reads it faster ([`ops::linear_weight_t`]).
    weight_t: Option<Tensor>,
}

impl Linear {
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Self::new(
            vb.get((out_dim, in_dim), "weight")?,
            vb.get(out_dim, "bias")?,
        )
    }

    fn new(weight: Tensor, bias: Tensor) -> Result<Self> {
        let weight_t = ops::linear_weight_t(&weight)?;
        Ok(Self {
            weight,
            bias,
            weight_t,
        })
    }

    /// One layer computing all of `parts`' outputs, concatenated (fusion at load).
    pub fn concat(parts: &[Linear]) -> Result<Self> {
        let weights: Vec<&Tensor> = parts.iter().map(|p| &p.weight).collect();
        let biases: Vec<&Tensor> = parts.iter().map(|p| &p.bias).collect();
        Self::new(Tensor::cat(&weights, 0)?, Tensor::cat(&biases, 0)?)
    }

    /// The outputs `start..start + len` only (for input gradients: no transposed copy).
    pub fn outputs(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self {
            weight: self.weight.narrow(0, start, len)?,
            bias: self.bias.narrow(0, start, len)?,
            weight_t: None,
        })
    }

    /// `x Wᵀ` for `x` `[rows, in]`, without the bias.
    pub fn product(&self, x: &Tensor) -> Result<Tensor> {
        ops::linear_product(x, &self.weight, self.weight_t.as_ref())
    }

    /// `x Wᵀ + b` for `x` `[rows, in]` ([`ops::linear_forward`]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::linear_forward(x, &self.weight, self.weight_t.as_ref(), &self.bias)
    }

    /// The input gradient `dy W`, `[rows, out]` → `[rows, in]`.
    pub fn input_grad(&self, dy: &Tensor) -> Result<Tensor> {
        profile::time(dy.device(), "linear backward dy·W", || {
            ops::matmul(dy, &self.weight)
        })
    }

    /// `x Wᵀ + b` of candle ops, for a tensor of any rank: the reference forward.
    pub fn forward_slow(&self, x: &Tensor) -> Result<Tensor> {
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

/// LayerNorm parameters over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    /// Accepts both the current (`weight`/`bias`) and the TF-era (`gamma`/`beta`) names.
    pub fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
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

    /// `LN(x + residual + bias)`, saving what the backward needs.
    pub fn forward(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        bias: Option<&Tensor>,
    ) -> Result<(Tensor, LayerNormSaved)> {
        ops::layer_norm_forward(x, residual, bias, &self.gamma, &self.beta, self.eps)
    }

    /// The gradient of the norm's input given its output's, as the sum of the two terms.
    pub fn backward(&self, dy: &Grad, saved: &LayerNormSaved) -> Result<Tensor> {
        ops::layer_norm_backward(&dy.main, dy.residual.as_ref(), saved, &self.gamma)
    }

    pub fn forward_slow(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm_slow(x, None, None, &self.gamma, &self.beta, self.eps)
    }
}

/// A gradient `[rows, hidden]` kept as two terms whose sum it is, a matmul's output and a
/// residual branch: the LayerNorm backward that reads it next adds them on the fly, so a
/// residual sum costs no pass of its own.
pub struct Grad {
    pub main: Tensor,
    pub residual: Option<Tensor>,
}
