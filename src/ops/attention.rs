//! Scaled, masked attention fused per (pair, head) on the CPU, the way flash attention works
//! on a GPU: one core takes a pair-head's `S = Q Kᵀ`, softmax and `P V` through a
//! `[queries, keys]` buffer that stays in its cache, and keeps only each row's log-sum-exp
//! `L`. The backward recomputes `P = exp(S/√d − L)` (one more `Q Kᵀ`, 1/6 of attention's
//! products) instead of keeping `[pairs, heads, tokens, tokens]` probabilities for every layer.
//!
//! Backward per pair-head, from the forward lines: `P = exp(c·Q Kᵀ − L)` on real keys,
//! `dP = dC Vᵀ`, `dV = Pᵀ dC`, `dS = c·P ⊙ (dP − rowsum(P ⊙ dP))`, `dQ = dS K`, `dK = dSᵀ Q`.
//! Query rows may be a subset (the last layer's target rows): `dC`, `Q` and `L` are theirs.
//!
//! f32 only (the CPU path computes half precision in f32, see [`super::matmul`]); tensors
//! `[pairs, heads, rows, head_dim]` contiguous, `lengths` `[pairs]` u32.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use super::cpu;
use super::matmul::{gemm_into, Mat};
use super::softmax;

/// `(C, L)`: the context `[b, a, t, d]` and each query row's log-sum-exp `[b, a, t]`.
pub fn attention_forward_cpu(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    lengths: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let (b, a, t, d) = check(q, k, v, lengths)?;
    let (qr, kr, vr, lr) = (
        cpu::read(q)?,
        cpu::read(k)?,
        cpu::read(v)?,
        cpu::read(lengths)?,
    );
    let (qs, ks, vs, lens) = (
        qr.slice::<f32>()?,
        kr.slice::<f32>()?,
        vr.slice::<f32>()?,
        lr.slice::<u32>()?,
    );
    let scale = scale as f32;
    let mut context = vec![0f32; b * a * t * d];
    let mut lse = vec![0f32; b * a * t];
    context
        .par_chunks_mut(t * d)
        .zip(lse.par_chunks_mut(t))
        .enumerate()
        .for_each_init(
            || (vec![0f32; t * t], vec![0f32; t * t]),
            |(scores, probs), (block, (context, lse))| {
                let real = (lens[block / a] as usize).min(t);
                let span = block * t * d..(block + 1) * t * d;
                let (qm, km) = (
                    Mat::new(&qs[span.clone()], t, d),
                    Mat::new(&ks[span.clone()], t, d),
                );
                let vm = Mat::new(&vs[span], t, d);
                gemm_into(scores, qm, km.t());
                for (i, lse) in lse.iter_mut().enumerate() {
                    let row = i * t..(i + 1) * t;
                    let p = &mut probs[row.clone()];
                    *lse = softmax::forward_row::<f32>(&scores[row][..real], scale, &mut p[..real]);
                    p[real..].fill(0.0);
                }
                gemm_into(context, Mat::new(probs, t, t), vm);
            },
        );
    Ok((
        cpu::tensor(context, (b, a, t, d))?,
        cpu::tensor(lse, (b, a, t))?,
    ))
}

/// `(dQ, dK, dV)` given the context's gradient for the query rows `q`, with their saved
/// log-sum-exps `lse` `[b, a, rows]`; `k`, `v` hold every key.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_cpu(
    dcontext: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    lse: &Tensor,
    lengths: &Tensor,
    scale: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (b, a, t, d) = check(k, k, v, lengths)?;
    let rows = q.dim(2)?;
    if q.dims() != [b, a, rows, d] || dcontext.dims() != q.dims() || lse.dims() != [b, a, rows] {
        candle_core::bail!("attention_backward_cpu: query-row tensors do not match");
    }
    let (dcr, qr, kr, vr) = (
        cpu::read(dcontext)?,
        cpu::read(q)?,
        cpu::read(k)?,
        cpu::read(v)?,
    );
    let (lr, lenr) = (cpu::read(lse)?, cpu::read(lengths)?);
    let (dcs, qs, ks, vs) = (
        dcr.slice::<f32>()?,
        qr.slice::<f32>()?,
        kr.slice::<f32>()?,
        vr.slice::<f32>()?,
    );
    let (ls, lens) = (lr.slice::<f32>()?, lenr.slice::<u32>()?);
    let scale = scale as f32;
    let mut dq = vec![0f32; b * a * rows * d];
    let mut dk = vec![0f32; b * a * t * d];
    let mut dv = vec![0f32; b * a * t * d];
    let buffer = || vec![0f32; rows * t];
    dq.par_chunks_mut(rows * d)
        .zip(dk.par_chunks_mut(t * d))
        .zip(dv.par_chunks_mut(t * d))
        .enumerate()
        .for_each_init(
            || (buffer(), buffer(), buffer()),
            |(probs, dprobs, dscores), (block, ((dq, dk), dv))| {
                let real = (lens[block / a] as usize).min(t);
                let own = block * rows * d..(block + 1) * rows * d;
                let keys = block * t * d..(block + 1) * t * d;
                let qm = Mat::new(&qs[own.clone()], rows, d);
                let dcm = Mat::new(&dcs[own], rows, d);
                let (km, vm) = (Mat::new(&ks[keys.clone()], t, d), Mat::new(&vs[keys], t, d));
                gemm_into(probs, qm, km.t());
                for (i, &l) in ls[block * rows..(block + 1) * rows].iter().enumerate() {
                    recompute_row::<f32>(&mut probs[i * t..(i + 1) * t], real, scale, l);
                }
                gemm_into(dprobs, dcm, vm.t());
                gemm_into(dv, Mat::new(probs, rows, t).t(), dcm);
                for ((dp, p), ds) in dprobs
                    .chunks(t)
                    .zip(probs.chunks(t))
                    .zip(dscores.chunks_mut(t))
                {
                    softmax::backward_row::<f32>(dp, p, scale, ds);
                }
                gemm_into(dq, Mat::new(dscores, rows, t), km);
                gemm_into(dk, Mat::new(dscores, rows, t).t(), qm);
            },
        );
    Ok((
        cpu::tensor(dq, (b, a, rows, d))?,
        cpu::tensor(dk, (b, a, t, d))?,
        cpu::tensor(dv, (b, a, t, d))?,
    ))
}

fn check(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    lengths: &Tensor,
) -> Result<(usize, usize, usize, usize)> {
    let (b, a, t, d) = k.dims4()?;
    if q.dims4()?.0 != b
        || v.dims() != k.dims()
        || [q, k, v].iter().any(|x| x.dtype() != DType::F32)
    {
        candle_core::bail!("attention on the CPU takes f32 Q, K, V of matching shapes");
    }
    if lengths.dims1()? != b || lengths.dtype() != DType::U32 {
        candle_core::bail!("attention: lengths must be u32 [{b}]");
    }
    Ok((b, a, t, d))
}

cpu::simd_fn! {
/// Overwrites the scores `s` of one query row with `exp(scale·s − lse)` on the `real` keys
/// and 0 on the padding.
fn recompute_row<T>(s: &mut [T], real: usize, scale: f32, lse: f32) {
    let (keys, padding) = s.split_at_mut(real);
    for x in keys.iter_mut() {
        *x = T::of(cpu::exp(x.f32() * scale - lse));
    }
    padding.fill(T::of(0.0));
}
}

/// Attention composed of candle ops (differentiable): `softmax(Q Kᵀ·scale, mask) V`, the
/// reference of the fused versions on both devices.
pub fn attention_slow(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    lengths: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let probs = softmax::masked_softmax_slow(&q.matmul(&k.t()?)?, lengths, scale)?;
    probs.matmul(v)
}
