//! The post-LayerNorm transformer block that BERT and DistilBERT share; only the weight names
//! differ, so each architecture passes its own [`LayerNames`].

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::config::{Activation, ModelConfig};
use super::layers::{softmax, LayerNorm, Linear};

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
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
    activation: Activation,
    num_heads: usize,
}

impl EncoderLayer {
    pub fn load(
        vb: VarBuilder,
        names: &LayerNames,
        config: &ModelConfig,
    ) -> candle_core::Result<Self> {
        let h = config.hidden_size;
        let i = config.intermediate_size;
        let eps = config.layer_norm_eps;
        Ok(Self {
            query: Linear::load(vb.pp(names.query), h, h)?,
            key: Linear::load(vb.pp(names.key), h, h)?,
            value: Linear::load(vb.pp(names.value), h, h)?,
            attention_out: Linear::load(vb.pp(names.attention_out), h, h)?,
            attention_norm: LayerNorm::load(vb.pp(names.attention_norm), h, eps)?,
            ffn_in: Linear::load(vb.pp(names.ffn_in), h, i)?,
            ffn_out: Linear::load(vb.pp(names.ffn_out), i, h)?,
            ffn_norm: LayerNorm::load(vb.pp(names.ffn_norm), h, eps)?,
            activation: config.activation,
            num_heads: config.num_heads,
        })
    }

    /// `x`: `[batch, tokens, hidden]`; `mask_bias`: `[batch, 1, 1, tokens]`, 0 for real tokens
    /// and a large negative number for padding.
    pub fn forward(&self, x: &Tensor, mask_bias: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let head_dim = h / self.num_heads;
        let heads = |y: Tensor| {
            y.reshape((b, t, self.num_heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.query.forward(x)?)?;
        let k = heads(self.key.forward(x)?)?;
        let v = heads(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?.broadcast_add(mask_bias)?;
        let context = softmax(&scores)?
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, t, h))?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + x)?)?;
        let ffn = self
            .ffn_out
            .forward(&self.activation.forward(&self.ffn_in.forward(&attended)?)?)?;
        self.ffn_norm.forward(&(ffn + attended)?)
    }
}

/// Additive attention bias from a `[batch, tokens]` mask of ones (real) and zeros (padding).
pub fn mask_bias(mask: &Tensor) -> candle_core::Result<Tensor> {
    let (b, t) = mask.dims2()?;
    ((1.0 - mask)? * f32::MIN as f64)?.reshape((b, 1, 1, t))
}
