//! The post-LayerNorm transformer block that every supported architecture shares; only the
//! weight names differ, so each architecture passes its own [`LayerNames`].
//!
//! Forward (one block, `x` `[n, h]`):
//! ```text
//! Q, K, V = x Wqkvᵀ + bqkv                       saved
//! C       = attention(Q, K, V, mask)               P or its statistics saved
//! x1      = LN1(C Woᵀ + bo + x)                    x̂, rstd saved
//! u       = x1 W1ᵀ + b1                            saved
//! y       = LN2(act(u) W2ᵀ + b2 + x1)              x̂, rstd saved
//! ```
//! Backward, each line from the forward line above it, in reverse; `dy` arrives as two terms:
//! ```text
//! ds2 = LN2_backward(dy)                 the gradient of act(u) W2ᵀ + b2 + x1
//! du  = act_backward(ds2 W2, u)
//! ds1 = LN1_backward(du W1 + ds2)        x1's gradient from both of its uses
//! dQ, dK, dV = attention_backward(ds1 Wo)
//! dx  = [dQ dK dV] Wqkv + ds1            returned as the two terms
//! ```

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::attention;
use super::config::{Activation, ModelConfig};
use super::layers::{Grad, LayerNorm, Linear};
use super::saved::{BatchShape, LayerSaved};
use crate::ops;

/// Where each weight of one block lives, relative to the block's prefix.
pub struct LayerNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attention_out: &'static str,
    pub attention_norm: &'static str,
    pub ffn_in: &'static str,
    pub ffn_out: &'static str,
    pub ffn_norm: &'static str,
}

#[derive(Debug, Clone)]
pub struct EncoderLayer {
    /// Query, key and value projections in one `[3h, h]` matrix.
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
    activation: Activation,
    /// `1/√d`.
    scale: f64,
}

/// The rows of a batch that the gradient target reads: two slots per pair (start, end).
pub struct TargetRows {
    /// Row `p·t + token` of each slot, `[2b]` u32 (a slot may repeat a row: start = end).
    pub rows: Tensor,
    /// The slots' rows of each (pair, head) in head layout, `(p·a + head)·t + token`, ordered
    /// (pair, head, slot): `[b·a·2]` u32.
    pub head_rows: Tensor,
    /// The gradient arriving at the last layer's output in those rows, `[2b, h]`.
    pub dy: Tensor,
}

impl EncoderLayer {
    pub fn load(vb: VarBuilder, names: &LayerNames, config: &ModelConfig) -> Result<Self> {
        let h = config.hidden_size;
        let i = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let qkv = Linear::concat(&[
            Linear::load(vb.pp(names.query), h, h)?,
            Linear::load(vb.pp(names.key), h, h)?,
            Linear::load(vb.pp(names.value), h, h)?,
        ])?;
        Ok(Self {
            qkv,
            attention_out: Linear::load(vb.pp(names.attention_out), h, h)?,
            attention_norm: LayerNorm::load(vb.pp(names.attention_norm), h, eps)?,
            ffn_in: Linear::load(vb.pp(names.ffn_in), h, i)?,
            ffn_out: Linear::load(vb.pp(names.ffn_out), i, h)?,
            ffn_norm: LayerNorm::load(vb.pp(names.ffn_norm), h, eps)?,
            activation: config.activation,
            scale: 1.0 / ((h / config.num_heads) as f64).sqrt(),
        })
    }

    /// `x` `[n, h]` → the block's output `[n, h]` and what its backward needs.
    pub fn forward(
        &self,
        x: &Tensor,
        lengths: &Tensor,
        shape: &BatchShape,
    ) -> Result<(Tensor, LayerSaved)> {
        let (context, attention) = attention::forward(x, &self.qkv, lengths, shape, self.scale)?;
        let (attended, attention_norm) = self.attention_norm.forward(
            &self.attention_out.product(&context)?,
            Some(x),
            Some(&self.attention_out.bias),
        )?;
        let (ffn_pre, activated) = ops::bias_activation_forward(
            &self.ffn_in.product(&attended)?,
            &self.ffn_in.bias,
            self.activation,
        )?;
        let (y, ffn_norm) = self.ffn_norm.forward(
            &self.ffn_out.product(&activated)?,
            Some(&attended),
            Some(&self.ffn_out.bias),
        )?;
        let saved = LayerSaved {
            attention,
            attention_norm,
            ffn_pre,
            ffn_norm,
        };
        Ok((y, saved))
    }

    /// The input gradient of the block given its output's.
    pub fn backward(
        &self,
        saved: &LayerSaved,
        dy: &Grad,
        lengths: &Tensor,
        shape: &BatchShape,
    ) -> Result<Grad> {
        let ds2 = self.ffn_norm.backward(dy, &saved.ffn_norm)?;
        let du = ops::activation_backward(
            &self.ffn_out.input_grad(&ds2)?,
            &saved.ffn_pre,
            self.activation,
        )?;
        let ds1 = self.attention_norm.backward(
            &Grad {
                main: self.ffn_in.input_grad(&du)?,
                residual: Some(ds2),
            },
            &saved.attention_norm,
        )?;
        let dqkv = attention::backward(
            &self.attention_out.input_grad(&ds1)?,
            &saved.attention,
            lengths,
            shape,
            self.scale,
        )?;
        Ok(Grad {
            main: self.qkv.input_grad(&dqkv)?,
            residual: Some(ds1),
        })
    }

    /// The input gradient when the output's gradient is non-zero only in `target`'s rows (the
    /// last block under a start + end logit target). The feed-forward sublayer, the attention
    /// output and the query projection run on those rows alone; keys and values still reach
    /// every token. Exact: the other rows' terms are zero.
    pub fn backward_rows(
        &self,
        saved: &LayerSaved,
        target: &TargetRows,
        lengths: &Tensor,
        shape: &BatchShape,
    ) -> Result<Grad> {
        let ffn_norm = saved.ffn_norm.select(&target.rows)?;
        let attention_norm = saved.attention_norm.select(&target.rows)?;
        let ds2 = ops::layer_norm_backward(&target.dy, None, &ffn_norm, &self.ffn_norm.gamma)?;
        let du = ops::activation_backward(
            &self.ffn_out.input_grad(&ds2)?,
            &saved.ffn_pre.index_select(&target.rows, 0)?,
            self.activation,
        )?;
        let ds1 = ops::layer_norm_backward(
            &self.ffn_in.input_grad(&du)?,
            Some(&ds2),
            &attention_norm,
            &self.attention_norm.gamma,
        )?;
        let (dq, dkv) = attention::backward_rows(
            &self.attention_out.input_grad(&ds1)?,
            &saved.attention,
            (&target.rows, &target.head_rows),
            lengths,
            shape,
            self.scale,
        )?;
        let h = shape.hidden;
        let main = self.qkv.outputs(h, 2 * h)?.input_grad(&dkv)?;
        let at_rows = (self.qkv.outputs(0, h)?.input_grad(&dq)? + ds1)?;
        let residual = Tensor::zeros((shape.rows(), h), at_rows.dtype(), at_rows.device())?
            .index_add(&target.rows, &at_rows, 0)?;
        Ok(Grad {
            main,
            residual: Some(residual),
        })
    }

    /// The forward of candle ops (differentiable): the reference. `x` `[n, h]`.
    pub fn forward_slow(&self, x: &Tensor, lengths: &Tensor, shape: &BatchShape) -> Result<Tensor> {
        let qkv = ops::split_heads_slow(
            &self.qkv.forward_slow(x)?,
            None,
            shape.tokens,
            shape.heads,
            shape.head_dim(),
        )?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let context =
            ops::merge_heads_slow(&[ops::attention_slow(&q, &k, &v, lengths, self.scale)?])?;
        let attended = self
            .attention_norm
            .forward_slow(&(self.attention_out.forward_slow(&context)? + x)?)?;
        let activated = ops::bias_activation_slow(
            &attended.matmul(&self.ffn_in.weight.t()?)?,
            &self.ffn_in.bias,
            self.activation,
        )?;
        self.ffn_norm
            .forward_slow(&(self.ffn_out.forward_slow(&activated)? + attended)?)
    }
}
