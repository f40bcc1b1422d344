//! Launchers of `split_heads.cu` and `merge_heads.cu` (twins: the candle ops of
//! `model::attention` on the CPU).

use candle_core::{Result, Tensor};

use super::launch::{device, grid_stride_blocks, launch, output_of, read, vectorisable};
use super::{typed, HeadsParams, MERGE_HEADS, SPLIT_HEADS};

/// `x` `[rows, parts·heads·d]` (+ `bias` `[parts·heads·d]`) → `[parts, rows/queries, heads,
/// queries, d]`.
pub fn split_heads(
    x: &Tensor,
    bias: Option<&Tensor>,
    queries: usize,
    heads: usize,
    head_dim: usize,
) -> Result<Tensor> {
    let (rows, width) = x.dims2()?;
    let parts = width / (heads * head_dim);
    let dev = device(x)?;
    let inputs: Vec<&Tensor> = [Some(x), bias].into_iter().flatten().collect();
    let p = HeadsParams {
        rows: rows as u32,
        queries: queries as u32,
        parts: parts as u32,
        heads: heads as u32,
        head_dim: head_dim as u32,
        has_bias: bias.is_some().into(),
        vectorised: vectorisable(head_dim, &inputs),
    };
    let out = output_of(&dev, x.dtype(), x.elem_count())?;
    let (xr, br) = (read(x)?, read(bias.unwrap_or(x))?);
    let (xv, bv) = (xr.view()?, br.view()?);
    let name = typed("split_heads", x.dtype())?;
    launch!(dev, SPLIT_HEADS, name, grid_stride_blocks(x.elem_count()), 256; &xv, &bv, &out, &p)?;
    out.into_tensor(&dev, (parts, rows / queries, heads, queries, head_dim))
}

/// One to three tensors `[pairs, heads, queries, d]` → `[pairs·queries, parts·heads·d]`.
pub fn merge_heads(parts: &[Tensor]) -> Result<Tensor> {
    let (pairs, heads, queries, head_dim) = parts[0].dims4()?;
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.dims() != parts[0].dims()) {
        candle_core::bail!("merge_heads takes one to three tensors of one shape");
    }
    let dev = device(&parts[0])?;
    let rows = pairs * queries;
    let refs: Vec<&Tensor> = parts.iter().collect();
    let p = HeadsParams {
        rows: rows as u32,
        queries: queries as u32,
        parts: parts.len() as u32,
        heads: heads as u32,
        head_dim: head_dim as u32,
        has_bias: 0,
        vectorised: vectorisable(head_dim, &refs),
    };
    let total = parts.len() * parts[0].elem_count();
    let out = output_of(&dev, parts[0].dtype(), total)?;
    // Absent parts are passed as the first and never read.
    let reads = [0, 1, 2].map(|i| read(&parts[i.min(parts.len() - 1)]));
    let [ar, br, cr] = reads;
    let (ar, br, cr) = (ar?, br?, cr?);
    let (av, bv, cv) = (ar.view()?, br.view()?, cr.view()?);
    let name = typed("merge_heads", parts[0].dtype())?;
    launch!(dev, MERGE_HEADS, name, grid_stride_blocks(total), 256; &av, &bv, &cv, &out, &p)?;
    out.into_tensor(&dev, (rows, parts.len() * heads * head_dim))
}
