//! Multi-head self-attention over saved Q, K, V: the forward and the input-gradient backward.
//!
//! Forward, per (pair, head): `S = Q Kᵀ`, `P = softmax(S/√d, mask)`, `C = P V`.
//! Backward, line by line in reverse: `dP = dC Vᵀ`, `dV = Pᵀ dC`,
//! `dS = softmax_backward(dP, P)` (scale and mask inside), `dQ = dS K`, `dK = dSᵀ Q`.
//! The backward takes any subset of query rows (all of them, or the two each pair's target
//! reads in the last layer): `dC`, `Q` and `P` are those rows', `K` and `V` every key's.

use candle_core::{Result, Tensor};

use super::saved::BatchShape;
use crate::ops;

/// `[rows, k·hidden]` (rows `pair·queries + query`) → `[k, pairs, heads, queries, head_dim]`.
pub fn split_heads(x: &Tensor, shape: &BatchShape, queries: usize) -> Result<Tensor> {
    let (rows, width) = x.dims2()?;
    let k = width / shape.hidden;
    x.reshape((rows / queries, queries, k, shape.heads, shape.head_dim()))?
        .permute((2, 0, 3, 1, 4))?
        .contiguous()
}

/// The inverse of [`split_heads`] for a stack of `k` tensors `[pairs, heads, queries, head_dim]`.
pub fn merge_heads(parts: &[Tensor]) -> Result<Tensor> {
    let (pairs, heads, queries, head_dim) = parts[0].dims4()?;
    let stacked = Tensor::stack(parts, 0)?;
    stacked
        .permute((1, 3, 0, 2, 4))?
        .contiguous()?
        .reshape((pairs * queries, parts.len() * heads * head_dim))
}

/// `(C, P)`: the context `[pairs, heads, tokens, head_dim]` and the probabilities.
pub fn forward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    lengths: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let scores = ops::matmul(q, &k.t()?)?;
    let probs = ops::masked_softmax_forward(&scores, lengths, scale)?;
    Ok((ops::matmul(&probs, v)?, probs))
}

/// `(dQ, dK, dV)` for the query rows of `dcontext`, `q` and `probs`.
pub fn backward(
    dcontext: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probs: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dprobs = ops::matmul(dcontext, &v.t()?)?;
    let dv = ops::matmul(&probs.t()?, dcontext)?;
    let dscores = ops::masked_softmax_backward(&dprobs, probs, scale)?;
    let dq = ops::matmul(&dscores, k)?;
    let dk = ops::matmul(&dscores.t()?, q)?;
    Ok((dq, dk, dv))
}
