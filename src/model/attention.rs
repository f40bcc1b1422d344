//! Multi-head self-attention over the fused QKV product: the forward and the input-gradient
//! backward, each device on its own fused path.
//!
//! Forward, per (pair, head): `S = Q Kᵀ`, `P = softmax(S/√d, mask)`, `C = P V`.
//! Backward, line by line in reverse: `dP = dC Vᵀ`, `dV = Pᵀ dC`,
//! `dS = softmax_backward(dP, P)` (scale and mask inside), `dQ = dS K`, `dK = dSᵀ Q`.
//!
//! Three paths, one per [`Kind`] ([`crate::ops::attention_kind`] chooses by device): the CPU's
//! per-(pair, head) fused attention in token layout (each row's log-sum-exp saved), cuDNN's
//! fused attention (the context and its statistics saved), and spangrad's GPU kernels in head
//! layout (`P` saved).
//!
//! The last layer's backward takes only the query rows its target reads: `dC` and `Q` are
//! those rows', `K` and `V` every key's.

use candle_core::{DType, Result, Tensor};

use super::layers::Linear;
use super::saved::BatchShape;
pub use crate::ops::attention_kind::{kind, switch, Kind};
use crate::{ops, profile};

/// What the backward needs of one layer's attention.
#[derive(Debug, Clone)]
pub enum AttentionSaved {
    /// [`Kind::Kernels`]: Q, K, V `[3, b, a, t, d]` and the probabilities `[b, a, t, t]`.
    Probs { qkv: Tensor, probs: Tensor },
    /// [`Kind::PerHead`]: the QKV product `[n, 3h]` (bias added) and each query row's
    /// log-sum-exp of the scaled scores `[b, a, t]` f32.
    LogSumExp { qkv: Tensor, lse: Tensor },
    /// [`Kind::Cudnn`]: the QKV product `[n, 3h]` (bias added), the context `[n, h]` and
    /// cuDNN's statistics of each query row `[b, a, t]` f32.
    Fused {
        qkv: Tensor,
        context: Tensor,
        stats: Tensor,
    },
}

impl AttentionSaved {
    pub fn bytes(&self) -> usize {
        match self {
            Self::Probs { qkv, probs: extra } | Self::LogSumExp { qkv, lse: extra } => {
                ops::bytes(qkv) + ops::bytes(extra)
            }
            Self::Fused {
                qkv,
                context,
                stats,
            } => ops::bytes(qkv) + ops::bytes(context) + ops::bytes(stats),
        }
    }
}

/// [`ops::split_heads`] by the batch's heads.
fn split_heads(
    x: &Tensor,
    bias: Option<&Tensor>,
    shape: &BatchShape,
    queries: usize,
) -> Result<Tensor> {
    ops::split_heads(x, bias, queries, shape.heads, shape.head_dim())
}

/// The context `[n, h]` of `x` `[n, h]` under the fused query, key and value projection
/// `qkv` (`[3h, h]`), and what the backward needs.
pub fn forward(
    x: &Tensor,
    qkv: &Linear,
    lengths: &Tensor,
    shape: &BatchShape,
    scale: f64,
) -> Result<(Tensor, AttentionSaved)> {
    let kind = kind(x.dtype(), x.device());
    if kind == Kind::Cudnn {
        let product = qkv.forward(x)?;
        let fused =
            ops::attention_kind::cudnn_forward(&product, lengths, shape.tokens, shape.heads, scale);
        match fused {
            Ok((context, stats)) => {
                let saved = AttentionSaved::Fused {
                    qkv: product,
                    context: context.clone(),
                    stats,
                };
                return Ok((context, saved));
            }
            // The engine answers running out of memory by splitting the pass, on cuDNN still.
            Err(e) if crate::error::is_out_of_memory(&e) => return Err(e),
            Err(e) => switch::cudnn_failed(&e, shape.pairs, shape.tokens),
        }
    }
    let device = x.device();
    if kind == Kind::PerHead {
        let product = qkv.forward(x)?;
        let (context, lse) = profile::time(device, "attention forward (fused)", || {
            let (context, lse) = ops::attention_forward_cpu(
                &product.to_dtype(DType::F32)?,
                lengths,
                shape.heads,
                scale,
            )?;
            Ok((context.to_dtype(x.dtype())?, lse))
        })?;
        let saved = AttentionSaved::LogSumExp { qkv: product, lse };
        return Ok((context, saved));
    }
    let qkv = split_heads(&qkv.product(x)?, Some(&qkv.bias), shape, shape.tokens)?;
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let scores = profile::time(device, "attention Q·Kᵀ", || ops::matmul(&q, &k.t()?))?;
    let probs = ops::masked_softmax_forward(&scores, lengths, scale)?;
    let context = profile::time(device, "attention P·V", || ops::matmul(&probs, &v))?;
    Ok((
        ops::merge_heads(&[context])?,
        AttentionSaved::Probs { qkv, probs },
    ))
}

/// The QKV product's gradient `[n, 3h]` (dQ, dK, dV side by side) given the context's
/// `dcontext` `[n, h]`.
pub fn backward(
    dcontext: &Tensor,
    saved: &AttentionSaved,
    lengths: &Tensor,
    shape: &BatchShape,
    scale: f64,
) -> Result<Tensor> {
    let (qkv, probs) = match saved {
        AttentionSaved::Fused {
            qkv,
            context,
            stats,
        } => {
            return ops::attention_kind::cudnn_backward(
                dcontext,
                qkv,
                context,
                stats,
                lengths,
                shape.tokens,
                shape.heads,
                scale,
            )
        }
        AttentionSaved::LogSumExp { qkv, lse } => {
            return profile::time(dcontext.device(), "attention backward (fused)", || {
                let [dcontext_f32, qkv_f32] = [dcontext, qkv].map(|x| x.to_dtype(DType::F32));
                let dqkv = ops::attention_backward_cpu(
                    &dcontext_f32?,
                    &qkv_f32?,
                    lse,
                    lengths,
                    shape.heads,
                    scale,
                )?;
                dqkv.to_dtype(dcontext.dtype())
            })
        }
        AttentionSaved::Probs { qkv, probs } => (qkv, probs),
    };
    let dcontext = split_heads(dcontext, None, shape, shape.tokens)?.squeeze(0)?;
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let (dq, dk, dv) = heads_backward(&dcontext, &q, &k, &v, probs, scale)?;
    ops::merge_heads(&[dq, dk, dv])
}

/// The backward for the query rows `rows` alone (two slots per pair, `[2b]` u32 token rows;
/// `head_rows` the same rows of each (pair, head) in head layout, `[b·a·2]`), given their
/// context gradient `[2b, h]`: `(dQ [2b, h], [dK dV] [n, 2h])`. Exact: the other rows' terms
/// are zero.
pub fn backward_rows(
    dcontext: &Tensor,
    saved: &AttentionSaved,
    (rows, head_rows): (&Tensor, &Tensor),
    lengths: &Tensor,
    shape: &BatchShape,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let (b, a, t, d) = (shape.pairs, shape.heads, shape.tokens, shape.head_dim());
    let slots = dcontext.dim(0)? / b;
    let select = |x: &Tensor, width: usize| -> Result<Tensor> {
        x.reshape((b * a * t, width))?
            .index_select(head_rows, 0)?
            .reshape((b, a, slots, width))
    };
    let (qkv, probs) = match saved {
        AttentionSaved::LogSumExp { qkv, lse } => {
            return profile::time(dcontext.device(), "attention backward (fused)", || {
                let dtype = dcontext.dtype();
                let lse_rows = select(lse, 1)?.squeeze(3)?;
                let [dcontext, q_rows, qkv] =
                    [dcontext, &qkv.index_select(rows, 0)?, qkv].map(|x| x.to_dtype(DType::F32));
                let (dq, dkv) = ops::attention_backward_rows_cpu(
                    &dcontext?,
                    &q_rows?,
                    &qkv?,
                    &lse_rows,
                    lengths,
                    shape.heads,
                    scale,
                )?;
                Ok((dq.to_dtype(dtype)?, dkv.to_dtype(dtype)?))
            })
        }
        AttentionSaved::Probs { qkv, probs } => (qkv.clone(), Some(select(probs, t)?)),
        AttentionSaved::Fused { qkv, .. } => (split_heads(qkv, None, shape, t)?, None),
    };
    let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
    let q_rows = select(&q, d)?;
    let probs = match probs {
        Some(probs) => probs,
        // cuDNN saved no probabilities: the rows' are recomputed by spangrad's kernels. Two
        // rows a pair cost 2/t of the whole attention, and need no second kind of cuDNN graph.
        None => ops::masked_softmax_forward(&ops::matmul(&q_rows, &k.t()?)?, lengths, scale)?,
    };
    let dcontext = split_heads(dcontext, None, shape, slots)?.squeeze(0)?;
    let (dq, dk, dv) = heads_backward(&dcontext, &q_rows, &k, &v, &probs, scale)?;
    Ok((ops::merge_heads(&[dq])?, ops::merge_heads(&[dk, dv])?))
}

/// `(dQ, dK, dV)` in head layout for the query rows of `dcontext`, `q` and their
/// probabilities `probs`.
fn heads_backward(
    dcontext: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probs: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let device = q.device();
    let (dprobs, dv) = profile::time(device, "attention backward dP, dV", || {
        Ok((
            ops::matmul(dcontext, &v.t()?)?,
            ops::matmul(&probs.t()?, dcontext)?,
        ))
    })?;
    let dscores = ops::masked_softmax_backward(&dprobs, probs, scale)?;
    profile::time(device, "attention backward dQ, dK", || {
        Ok((
            ops::matmul(&dscores, k)?,
            dv,
            ops::matmul(&dscores.t()?, q)?,
        ))
    })
    .map(|(dq, dv, dk)| (dq, dk, dv))
}
