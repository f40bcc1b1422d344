//! The head layout of attention: token rows `[pairs·queries, k·heads·head_dim]` to
//! `[k, pairs, heads, queries, head_dim]` and back. One kernel each on a GPU
//! ([`crate::ops::kernels`]); candle's ops on the CPU, which are the kernels' twins.

use candle_core::{Result, Tensor};

use crate::profile;

/// `[rows, k·hidden]` (rows `pair·queries + query`), plus `bias` `[k·hidden]` when given →
/// `[k, pairs, heads, queries, head_dim]`. One kernel on a GPU; candle's ops on the CPU (the
/// kernel's twin).
pub fn split_heads(
    x: &Tensor,
    bias: Option<&Tensor>,
    queries: usize,
    heads: usize,
    head_dim: usize,
) -> Result<Tensor> {
    profile::time(x.device(), "split heads", || {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return crate::ops::kernels::split_heads(x, bias, queries, heads, head_dim);
        }
        split_heads_slow(x, bias, queries, heads, head_dim)
    })
}

/// [`split_heads`] of candle ops (differentiable).
pub fn split_heads_slow(
    x: &Tensor,
    bias: Option<&Tensor>,
    queries: usize,
    heads: usize,
    head_dim: usize,
) -> Result<Tensor> {
    let (rows, width) = x.dims2()?;
    let k = width / (heads * head_dim);
    let x = match bias {
        Some(b) => x.broadcast_add(b)?,
        None => x.clone(),
    };
    x.reshape((rows / queries, queries, k, heads, head_dim))?
        .permute((2, 0, 3, 1, 4))?
        .contiguous()
}

/// The inverse of [`split_heads`] for one to three tensors `[pairs, heads, queries,
/// head_dim]`: `[pairs·queries, k·heads·head_dim]`.
pub fn merge_heads(parts: &[Tensor]) -> Result<Tensor> {
    profile::time(parts[0].device(), "merge heads", || {
        #[cfg(feature = "cuda")]
        if parts[0].device().is_cuda() {
            return crate::ops::kernels::merge_heads(parts);
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
