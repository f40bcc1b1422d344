//! LayerNorm over the hidden dimension, with what feeds it fused in: `y = LN(x + residual + bias)`
//! (BERT's post-norm blocks add the sublayer's output bias and the residual stream right before
//! the norm).
//!
//! Forward, per row: `z = x + r + b`, `μ = mean z`, `rstd = 1/√(var z + ε)`, `x̂ = (z − μ)·rstd`,
//! `y = γ ⊙ x̂ + β`; it saves `x̂` and `rstd`.
//! Backward (input gradient only), from the forward line by line: `g = γ ⊙ dy`,
//! `dz = rstd · (g − mean g − x̂ · mean(g ⊙ x̂))`, and `dz` is the gradient of `x`, of `r` and
//! (summed over rows) of `b`. The gradient reaching `y` often arrives as two terms (a matmul's
//! output and a residual branch): the backward adds them as it reads them.

use std::mem::MaybeUninit;

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use crate::profile;

use super::cpu::{self, with_elem, Elem};

/// What the backward needs: `xhat` `[rows, hidden]` (the model's dtype), `rstd` `[rows]` f32.
#[derive(Debug, Clone)]
pub struct LayerNormSaved {
    pub xhat: Tensor,
    pub rstd: Tensor,
}

impl LayerNormSaved {
    /// The saved rows at `rows` (`[k]` u32).
    pub fn select(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            xhat: self.xhat.index_select(rows, 0)?,
            rstd: self.rstd.index_select(rows, 0)?,
        })
    }

    pub fn bytes(&self) -> usize {
        super::bytes(&self.xhat) + super::bytes(&self.rstd)
    }
}

/// `LN(x + residual + bias)` for `x` `[rows, hidden]` (residual of the same shape, bias, gamma
/// and beta `[hidden]`, all of one dtype): the output and what the backward needs.
pub fn layer_norm_forward(
    x: &Tensor,
    residual: Option<&Tensor>,
    bias: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, LayerNormSaved)> {
    let (rows, hidden) = x.dims2()?;
    check_vectors(
        x,
        &[Some(gamma), Some(beta), bias],
        hidden,
        "layer_norm_forward",
    )?;
    if let Some(r) = residual {
        check_same(x, r, "layer_norm_forward: residual")?;
    }
    profile::time(x.device(), "layer norm forward", || {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return crate::ops::kernels::layer_norm_forward(
                x, residual, bias, gamma, beta, eps as f32,
            );
        }
        with_elem!(x.dtype(), T => forward_cpu::<T>(x, residual, bias, gamma, beta, eps as f32, rows, hidden))
    })
}

/// The gradient of `x` (and of the residual) given the gradient of `y` as `dout + dresidual`.
pub fn layer_norm_backward(
    dout: &Tensor,
    dresidual: Option<&Tensor>,
    saved: &LayerNormSaved,
    gamma: &Tensor,
) -> Result<Tensor> {
    let (rows, hidden) = dout.dims2()?;
    check_same(dout, &saved.xhat, "layer_norm_backward: saved x̂")?;
    if let Some(r) = dresidual {
        check_same(dout, r, "layer_norm_backward: residual gradient")?;
    }
    if saved.rstd.dims1()? != rows || saved.rstd.dtype() != DType::F32 {
        candle_core::bail!("layer_norm_backward: rstd must be f32 [{rows}]");
    }
    check_vectors(dout, &[Some(gamma)], hidden, "layer_norm_backward")?;
    profile::time(dout.device(), "layer norm backward", || {
        #[cfg(feature = "cuda")]
        if dout.device().is_cuda() {
            return crate::ops::kernels::layer_norm_backward(dout, dresidual, saved, gamma);
        }
        with_elem!(dout.dtype(), T => backward_cpu::<T>(dout, dresidual, saved, gamma, rows, hidden))
    })
}

/// The same forward composed of candle ops, which candle's autograd differentiates: the
/// reference of the fused versions.
pub fn layer_norm_slow(
    x: &Tensor,
    residual: Option<&Tensor>,
    bias: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let mut z = x.clone();
    if let Some(r) = residual {
        z = (z + r)?;
    }
    if let Some(b) = bias {
        z = z.broadcast_add(b)?;
    }
    candle_nn::ops::layer_norm_slow(&z, gamma, beta, eps as f32)
}

fn check_same(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    if a.dims() != b.dims() || a.dtype() != b.dtype() {
        candle_core::bail!(
            "{what}: expected {:?} {:?}, got {:?} {:?}",
            a.dims(),
            a.dtype(),
            b.dims(),
            b.dtype()
        );
    }
    Ok(())
}

fn check_vectors(x: &Tensor, vectors: &[Option<&Tensor>], hidden: usize, what: &str) -> Result<()> {
    for v in vectors.iter().flatten() {
        if v.dims() != [hidden] || v.dtype() != x.dtype() {
            candle_core::bail!(
                "{what}: parameter vectors must be [{hidden}] {:?}",
                x.dtype()
            );
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn forward_cpu<T: Elem>(
    x: &Tensor,
    residual: Option<&Tensor>,
    bias: Option<&Tensor>,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    rows: usize,
    hidden: usize,
) -> Result<(Tensor, LayerNormSaved)> {
    let (xr, gr, br) = (cpu::read(x)?, cpu::read(gamma)?, cpu::read(beta)?);
    let (rr, biasr) = (cpu::optional(residual)?, cpu::optional(bias)?);
    let (x, gamma, beta) = (xr.slice::<T>()?, gr.slice::<T>()?, br.slice::<T>()?);
    let residual = rr.as_ref().map(|r| r.slice::<T>()).transpose()?;
    let bias = biasr.as_ref().map(|b| b.slice::<T>()).transpose()?;
    let mut rstd = vec![0f32; rows];
    let mut xhat = Vec::new();
    // SAFETY: the rows cover `y` and `xhat`, and `forward_row` writes every element of both.
    let y = unsafe {
        cpu::written(rows * hidden, |y| {
            xhat = cpu::written(rows * hidden, |xhat| {
                y.par_chunks_mut(hidden)
                    .zip(xhat.par_chunks_mut(hidden))
                    .zip(rstd.par_iter_mut())
                    .enumerate()
                    .with_min_len(cpu::rows_per_task(hidden))
                    .for_each_init(
                        || vec![0f32; hidden],
                        |z, (row, ((y, xhat), rstd))| {
                            let span = row * hidden..(row + 1) * hidden;
                            let residual = residual.map(|r| &r[span.clone()]);
                            forward_row::<T>(
                                &x[span], residual, bias, gamma, beta, eps, z, y, xhat, rstd,
                            )
                        },
                    )
            })
        })
    };
    Ok((
        cpu::tensor(y, (rows, hidden))?,
        LayerNormSaved {
            xhat: cpu::tensor(xhat, (rows, hidden))?,
            rstd: cpu::tensor(rstd, rows)?,
        },
    ))
}

cpu::simd_fn! {
fn forward_row<T>(
    x: &[T],
    residual: Option<&[T]>,
    bias: Option<&[T]>,
    gamma: &[T],
    beta: &[T],
    eps: f32,
    z: &mut [f32],
    y: &mut [MaybeUninit<T>],
    xhat: &mut [MaybeUninit<T>],
    rstd: &mut f32,
) {
    for (z, x) in z.iter_mut().zip(x) {
        *z = x.f32();
    }
    if let Some(r) = residual {
        for (z, r) in z.iter_mut().zip(r) {
            *z += r.f32();
        }
    }
    if let Some(b) = bias {
        for (z, b) in z.iter_mut().zip(b) {
            *z += b.f32();
        }
    }
    let n = z.len() as f32;
    let mean = cpu::sum_map(z, |v| v) / n;
    let var = cpu::sum_map(z, |v| (v - mean) * (v - mean)) / n;
    let r = 1.0 / (var + eps).sqrt();
    *rstd = r;
    for (((z, y), xhat), (g, b)) in z.iter().zip(y).zip(xhat).zip(gamma.iter().zip(beta)) {
        let xh = (z - mean) * r;
        xhat.write(T::of(xh));
        y.write(T::of(xh * g.f32() + b.f32()));
    }
}
}

fn backward_cpu<T: Elem>(
    dout: &Tensor,
    dresidual: Option<&Tensor>,
    saved: &LayerNormSaved,
    gamma: &Tensor,
    rows: usize,
    hidden: usize,
) -> Result<Tensor> {
    let (dr, xr, sr, gr) = (
        cpu::read(dout)?,
        cpu::read(&saved.xhat)?,
        cpu::read(&saved.rstd)?,
        cpu::read(gamma)?,
    );
    let resr = cpu::optional(dresidual)?;
    let (dout, xhat, rstd, gamma) = (
        dr.slice::<T>()?,
        xr.slice::<T>()?,
        sr.slice::<f32>()?,
        gr.slice::<T>()?,
    );
    let dres = resr.as_ref().map(|r| r.slice::<T>()).transpose()?;
    // SAFETY: the rows cover `dx`, and `backward_row` writes every element.
    let dx = unsafe {
        cpu::written(rows * hidden, |dx| {
            dx.par_chunks_mut(hidden)
                .enumerate()
                .with_min_len(cpu::rows_per_task(hidden))
                .for_each_init(
                    || vec![0f32; hidden],
                    |g, (row, dx)| {
                        let span = row * hidden..(row + 1) * hidden;
                        let dres = dres.map(|r| &r[span.clone()]);
                        backward_row::<T>(
                            &dout[span.clone()],
                            dres,
                            &xhat[span],
                            rstd[row],
                            gamma,
                            g,
                            dx,
                        )
                    },
                )
        })
    };
    cpu::tensor(dx, (rows, hidden))
}

cpu::simd_fn! {
fn backward_row<T>(
    dout: &[T],
    dres: Option<&[T]>,
    xhat: &[T],
    rstd: f32,
    gamma: &[T],
    g: &mut [f32],
    dx: &mut [MaybeUninit<T>],
) {
    for (g, d) in g.iter_mut().zip(dout) {
        *g = d.f32();
    }
    if let Some(r) = dres {
        for (g, r) in g.iter_mut().zip(r) {
            *g += r.f32();
        }
    }
    for (g, gm) in g.iter_mut().zip(gamma) {
        *g *= gm.f32();
    }
    let n = g.len() as f32;
    let mean_g = cpu::sum_map(g, |v| v) / n;
    let mean_gx = cpu::sum_zip(g, xhat, |a, b| a * b) / n;
    for ((dx, g), xh) in dx.iter_mut().zip(g.iter()).zip(xhat) {
        dx.write(T::of(rstd * (g - mean_g - xh.f32() * mean_gx)));
    }
}
}
