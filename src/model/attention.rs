//! Multi-head self-attention over saved Q, K, V: the forward and the input-gradient backward,
//! each device on its own fused path.
//!
//! Forward, per (pair, head): `S = Q Kᵀ`, `P = softmax(S/√d, mask)`, `C = P V`.
//! Backward, line by line in reverse: `dP = dC Vᵀ`, `dV = Pᵀ dC`,
//! `dS = softmax_backward(dP, P)` (scale and mask inside), `dQ = dS K`, `dK = dSᵀ Q`.
//!
//! On a GPU the products are cuBLAS batched GEMMs around the softmax kernels, and `P` is
//! saved. On the CPU one core runs a whole (pair, head) in its cache and only each row's
//! log-sum-exp is saved; the backward recomputes `P` ([`crate::ops::attention`]).
//! The backward takes any subset of query rows (all of them, or the two each pair's target
//! reads in the last layer): `dC`, `Q` and the saved rows are those rows', `K` and `V` every
//! key's.

use candle_core::{DType, Result, Tensor};

use super::saved::BatchShape;
use crate::{ops, profile};

/// What the backward needs of one layer's attention besides Q, K, V.
#[derive(Debug, Clone)]
pub enum AttentionSaved {
    /// The probabilities `[b, a, t, t]` (GPU).
    Probs(Tensor),
    /// Each query row's log-sum-exp of the scaled scores `[b, a, t]` f32 (CPU).
    LogSumExp(Tensor),
}

impl AttentionSaved {
    pub fn bytes(&self) -> usize {
        match self {
            Self::Probs(t) | Self::LogSumExp(t) => ops::bytes(t),
        }
    }

    /// The rows at `head_rows` (indices into `[b·a·t]`), as `[b, a, rows]`-shaped saves.
    pub fn select(&self, head_rows: &Tensor, b: usize, a: usize, rows: usize) -> Result<Self> {
        Ok(match self {
            Self::Probs(p) => {
                let t = p.dim(3)?;
                Self::Probs(
                    p.reshape((b * a * t, t))?
                        .index_select(head_rows, 0)?
                        .reshape((b, a, rows, t))?,
                )
            }
            Self::LogSumExp(l) => Self::LogSumExp(
                l.flatten_all()?
                    .index_select(head_rows, 0)?
                    .reshape((b, a, rows))?,
            ),
        })
    }
}

/// `[rows, k·hidden]` (rows `pair·queries + query`), plus `bias` `[k·hidden]` when given →
/// `[k, pairs, heads, queries, head_dim]`. One kernel on a GPU; candle's ops on the CPU (the
/// kernel's twin).
pub fn split_heads(
    x: &Tensor,
    bias: Option<&Tensor>,
    shape: &BatchShape,
    queries: usize,
) -> Result<Tensor> {
    profile::time(x.device(), "split heads", || {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return crate::kernels::split_heads(x, bias, queries, shape.heads, shape.head_dim());
        }
        split_heads_slow(x, bias, shape, queries)
    })
}

/// [`split_heads`] of candle ops (differentiable).
pub fn split_heads_slow(
    x: &Tensor,
    bias: Option<&Tensor>,
    shape: &BatchShape,
    queries: usize,
) -> Result<Tensor> {
    let (rows, width) = x.dims2()?;
    let k = width / shape.hidden;
    let x = match bias {
        Some(b) => x.broadcast_add(b)?,
        None => x.clone(),
    };
    x.reshape((rows / queries, queries, k, shape.heads, shape.head_dim()))?
        .permute((2, 0, 3, 1, 4))?
        .contiguous()
}

/// The inverse of [`split_heads`] for one to three tensors `[pairs, heads, queries,
/// head_dim]`: `[pairs·queries, k·heads·head_dim]`.
pub fn merge_heads(parts: &[Tensor]) -> Result<Tensor> {
    profile::time(parts[0].device(), "merge heads", || {
        #[cfg(feature = "cuda")]
        if parts[0].device().is_cuda() {
            return crate::kernels::merge_heads(parts);
        }
        merge_heads_slow(parts)
    })
}

/// [`merge_heads`] of candle ops (differentiable).
pub fn merge_heads_slow(parts: &[Tensor]) -> Result<Tensor> {
    let (pairs, heads, queries, head_dim) = parts[0].dims4()?;
    Tensor::stack(parts, 0)?
        .permute((1, 3, 0, 2, 4))?
        .contiguous()?
        .reshape((pairs * queries, parts.len() * heads * head_dim))
}

/// The context `[b, a, t, d]` and what the backward needs.
pub fn forward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    lengths: &Tensor,
    scale: f64,
) -> Result<(Tensor, AttentionSaved)> {
    if q.device().is_cpu() {
        return profile::time(q.device(), "attention forward (fused)", || {
            let dtype = q.dtype();
            let [q, k, v] = [q, k, v].map(|x| x.to_dtype(DType::F32));
            let (context, lse) = ops::attention_forward_cpu(&q?, &k?, &v?, lengths, scale)?;
            Ok((context.to_dtype(dtype)?, AttentionSaved::LogSumExp(lse)))
        });
    }
    let device = q.device();
    let scores = profile::time(device, "attention Q·Kᵀ", || ops::matmul(q, &k.t()?))?;
    let probs = ops::masked_softmax_forward(&scores, lengths, scale)?;
    let context = profile::time(device, "attention P·V", || ops::matmul(&probs, v))?;
    Ok((context, AttentionSaved::Probs(probs)))
}

/// `(dQ, dK, dV)` for the query rows of `dcontext`, `q` and `saved`.
pub fn backward(
    dcontext: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    saved: &AttentionSaved,
    lengths: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    match saved {
        AttentionSaved::LogSumExp(lse) => {
            profile::time(q.device(), "attention backward (fused)", || {
                let dtype = q.dtype();
                let [dc, q, k, v] = [dcontext, q, k, v].map(|x| x.to_dtype(DType::F32));
                let (dq, dk, dv) =
                    ops::attention_backward_cpu(&dc?, &q?, &k?, &v?, lse, lengths, scale)?;
                Ok((
                    dq.to_dtype(dtype)?,
                    dk.to_dtype(dtype)?,
                    dv.to_dtype(dtype)?,
                ))
            })
        }
        AttentionSaved::Probs(probs) => {
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
    }
}
