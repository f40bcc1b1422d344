//! The attention softmax with its scale and padding mask fused in. Scores `s` are
//! `[batch, heads, queries, keys]`; keys at or past `lengths[b]` are padding.
//!
//! Forward, per row: `p_j = exp(c·s_j − m) / Σ_k exp(c·s_k − m)` over the real keys
//! (`m` their maximum, `c` the scale, 1/√d), `p_j = 0` exactly on padding (the additive mask
//! of transformers, −∞ or the dtype's minimum, gives the same zeros). A row with no real key is
//! all zeros, never NaN.
//! Backward, from the forward: `ds_j = c · p_j · (dp_j − Σ_k p_k·dp_k)`; padding gets 0 because
//! its `p` is 0.

use candle_core::{DType, Result, Tensor, D};
use rayon::prelude::*;

use crate::profile;

use super::cpu::{self, with_elem, Elem};

/// `p` for scores `[batch, heads, queries, keys]` and `lengths` `[batch]` u32.
pub fn masked_softmax_forward(scores: &Tensor, lengths: &Tensor, scale: f64) -> Result<Tensor> {
    let (batch, _, _, _) = scores.dims4()?;
    if lengths.dims1()? != batch || lengths.dtype() != DType::U32 {
        candle_core::bail!("masked_softmax_forward: lengths must be u32 [{batch}]");
    }
    profile::time(scores.device(), "softmax forward", || {
        #[cfg(feature = "cuda")]
        if scores.device().is_cuda() {
            return crate::ops::kernels::masked_softmax_forward(scores, lengths, scale as f32);
        }
        with_elem!(scores.dtype(), T => forward_cpu::<T>(scores, lengths, scale as f32))
    })
}

/// The gradient of the scores given `dp` and the saved `p` (one shape and dtype).
pub fn masked_softmax_backward(dp: &Tensor, p: &Tensor, scale: f64) -> Result<Tensor> {
    if dp.dims() != p.dims() || dp.dtype() != p.dtype() || dp.rank() != 4 {
        candle_core::bail!("masked_softmax_backward: dp and p must be one 4-d shape and dtype");
    }
    profile::time(dp.device(), "softmax backward", || {
        #[cfg(feature = "cuda")]
        if dp.device().is_cuda() {
            return crate::ops::kernels::masked_softmax_backward(dp, p, scale as f32);
        }
        with_elem!(dp.dtype(), T => backward_cpu::<T>(dp, p, scale as f32))
    })
}

/// The forward composed of candle ops (differentiable), with the mask as an additive bias of
/// the dtype's minimum as transformers writes it: the reference of the fused versions.
pub fn masked_softmax_slow(scores: &Tensor, lengths: &Tensor, scale: f64) -> Result<Tensor> {
    let (batch, _, _, keys) = scores.dims4()?;
    let key = Tensor::arange(0u32, keys as u32, scores.device())?.reshape((1, keys))?;
    let padding = key
        .broadcast_ge(&lengths.reshape((batch, 1))?)?
        .to_dtype(DType::F32)?;
    let bias = (padding * f32::MIN as f64)?
        .to_dtype(scores.dtype())?
        .reshape((batch, 1, 1, keys))?;
    candle_nn::ops::softmax(&(scores * scale)?.broadcast_add(&bias)?, D::Minus1)
}

fn forward_cpu<T: Elem>(scores: &Tensor, lengths: &Tensor, scale: f32) -> Result<Tensor> {
    let (_, heads, queries, keys) = scores.dims4()?;
    let (sr, lr) = (cpu::read(scores)?, cpu::read(lengths)?);
    let (s, lengths) = (sr.slice::<T>()?, lr.slice::<u32>()?);
    let mut p = vec![T::of(0.0); s.len()];
    let rows_per_example = heads * queries;
    p.par_chunks_mut(keys)
        .zip(s.par_chunks(keys))
        .enumerate()
        .with_min_len(cpu::rows_per_task(keys))
        .for_each(|(row, (p, s))| {
            let real = (lengths[row / rows_per_example] as usize).min(keys);
            forward_row::<T>(&s[..real], scale, &mut p[..real]);
        });
    cpu::tensor(p, scores.shape())
}

cpu::simd_fn! {
/// Writes the probabilities of the real keys `s` (the caller zeroes the padding's) and
/// returns the row's log-sum-exp of the scaled scores (0 for a row with no real key).
pub fn forward_row<T>(s: &[T], scale: f32, p: &mut [T]) -> f32 {
    if s.is_empty() {
        return 0.0;
    }
    let m = cpu::max(s) * scale;
    let sum = cpu::sum_map(s, |v| cpu::exp(v * scale - m));
    let inv = 1.0 / sum;
    for (p, s) in p.iter_mut().zip(s) {
        *p = T::of(cpu::exp(s.f32() * scale - m) * inv);
    }
    m + sum.ln()
}
}

fn backward_cpu<T: Elem>(dp: &Tensor, p: &Tensor, scale: f32) -> Result<Tensor> {
    let keys = dp.dim(D::Minus1)?;
    let (dr, pr) = (cpu::read(dp)?, cpu::read(p)?);
    let (dps, ps) = (dr.slice::<T>()?, pr.slice::<T>()?);
    let mut ds = vec![T::of(0.0); dps.len()];
    ds.par_chunks_mut(keys)
        .zip(dps.par_chunks(keys).zip(ps.par_chunks(keys)))
        .with_min_len(cpu::rows_per_task(keys))
        .for_each(|(ds, (dp, p))| backward_row::<T>(dp, p, scale, ds));
    cpu::tensor(ds, dp.shape())
}

cpu::simd_fn! {
/// `ds = scale · p ⊙ (dp − p·dp)` for one row.
pub fn backward_row<T>(dp: &[T], p: &[T], scale: f32, ds: &mut [T]) {
    let dot = cpu::sum_zip(p, dp, |a, b| a * b);
    for ((ds, dp), p) in ds.iter_mut().zip(dp).zip(p) {
        *ds = T::of(scale * p.f32() * (dp.f32() - dot));
    }
}
}
