//! The feed-forward activation with its input bias fused in: `u = x + b`, `a = act(u)`; the
//! forward saves `u`. Backward: `du = da ⊙ act'(u)`, with
//! - erf GELU, `act(u) = u·Φ(u)`: `act'(u) = Φ(u) + u·φ(u)`;
//! - tanh GELU, `act(u) = ½u(1 + tanh k(u + 0.044715u³))`, `k = √(2/π)`:
//!   `act'(u) = ½(1 + t) + ½u(1 − t²)·k(1 + 3·0.044715u²)`;
//! - ReLU: `act'(u) = [u > 0]`.

use std::mem::MaybeUninit;

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use crate::profile;

use super::cpu::{self, with_elem, Elem};

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π), the standard normal density at 0.
const NORMAL_PEAK: f32 = 0.398_942_3;

/// The feed-forward activation a model's config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU (erf), `gelu` in both architectures.
    Gelu,
    /// The tanh approximation, `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
    Relu,
}

impl Activation {
    /// The id the CUDA kernels switch on (`cuda/params.h`).
    pub fn code(self) -> u32 {
        match self {
            Activation::Gelu => 0,
            Activation::GeluTanh => 1,
            Activation::Relu => 2,
        }
    }

    #[inline(always)]
    fn value(self, u: f32) -> f32 {
        match self {
            Activation::Gelu => 0.5 * u * (1.0 + cpu::erf(u * FRAC_1_SQRT_2)),
            Activation::GeluTanh => {
                0.5 * u * (1.0 + cpu::tanh(SQRT_2_OVER_PI * (u + GELU_CUBIC * u * u * u)))
            }
            Activation::Relu => u.max(0.0),
        }
    }

    #[inline(always)]
    fn derivative(self, u: f32) -> f32 {
        match self {
            Activation::Gelu => {
                let cdf = 0.5 * (1.0 + cpu::erf(u * FRAC_1_SQRT_2));
                cdf + u * NORMAL_PEAK * cpu::exp(-0.5 * u * u)
            }
            Activation::GeluTanh => {
                let t = cpu::tanh(SQRT_2_OVER_PI * (u + GELU_CUBIC * u * u * u));
                0.5 * (1.0 + t)
                    + 0.5 * u * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * u * u)
            }
            Activation::Relu => {
                if u > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// `(u, act(u))` with `u = x + bias`, for `x` `[rows, width]` and `bias` `[width]` of one dtype.
pub fn bias_activation_forward(
    x: &Tensor,
    bias: &Tensor,
    act: Activation,
) -> Result<(Tensor, Tensor)> {
    let (_, width) = x.dims2()?;
    if bias.dims() != [width] || bias.dtype() != x.dtype() {
        candle_core::bail!(
            "bias_activation_forward: bias must be [{width}] {:?}",
            x.dtype()
        );
    }
    profile::time(x.device(), "bias + activation forward", || {
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return crate::ops::kernels::bias_activation_forward(x, bias, act);
        }
        with_elem!(x.dtype(), T => forward_cpu::<T>(x, bias, act))
    })
}

/// `dout ⊙ act'(u)`, for `dout` and the saved `u` of one shape and dtype.
pub fn activation_backward(dout: &Tensor, u: &Tensor, act: Activation) -> Result<Tensor> {
    if dout.dims() != u.dims() || dout.dtype() != u.dtype() {
        candle_core::bail!(
            "activation_backward: gradient and saved input differ in shape or dtype"
        );
    }
    profile::time(dout.device(), "activation backward", || {
        #[cfg(feature = "cuda")]
        if dout.device().is_cuda() {
            return crate::ops::kernels::activation_backward(dout, u, act);
        }
        with_elem!(dout.dtype(), T => backward_cpu::<T>(dout, u, act))
    })
}

/// The forward composed of candle ops (differentiable): the reference of the fused versions.
pub fn bias_activation_slow(x: &Tensor, bias: &Tensor, act: Activation) -> Result<Tensor> {
    let u = x.broadcast_add(bias)?;
    match act {
        Activation::Gelu => u.gelu_erf(),
        Activation::GeluTanh => u.gelu(),
        Activation::Relu => u.relu(),
    }
}

/// Elements per rayon task of the element-wise loops.
const CHUNK: usize = 8192;

fn forward_cpu<T: Elem>(x: &Tensor, bias: &Tensor, act: Activation) -> Result<(Tensor, Tensor)> {
    let (xr, br) = (cpu::read(x)?, cpu::read(bias)?);
    let (xs, bias_s) = (xr.slice::<T>()?, br.slice::<T>()?);
    let width = bias_s.len();
    let chunk = width * (CHUNK / width).max(1);
    let mut a = Vec::new();
    // SAFETY: the chunks cover `u` and `a`, and `forward_chunk` writes every element of both.
    let u = unsafe {
        cpu::written(xs.len(), |u| {
            a = cpu::written(xs.len(), |a| {
                u.par_chunks_mut(chunk)
                    .zip(a.par_chunks_mut(chunk))
                    .zip(xs.par_chunks(chunk))
                    .for_each(|((u, a), x)| forward_chunk::<T>(x, bias_s, act, u, a))
            })
        })
    };
    Ok((cpu::tensor(u, x.shape())?, cpu::tensor(a, x.shape())?))
}

fn backward_cpu<T: Elem>(dout: &Tensor, u: &Tensor, act: Activation) -> Result<Tensor> {
    let (dr, ur) = (cpu::read(dout)?, cpu::read(u)?);
    let (d, us) = (dr.slice::<T>()?, ur.slice::<T>()?);
    // SAFETY: the chunks cover `du`, and `backward_chunk` writes every element.
    let du = unsafe {
        cpu::written(d.len(), |du| {
            du.par_chunks_mut(CHUNK)
                .zip(d.par_chunks(CHUNK).zip(us.par_chunks(CHUNK)))
                .for_each(|(du, (d, u))| backward_chunk::<T>(d, u, act, du))
        })
    };
    cpu::tensor(du, dout.shape())
}

cpu::simd_fn! {
/// Whole rows of `x`, so the bias pattern starts at column 0; writes all of `u` and `a`.
fn forward_chunk<T>(
    x: &[T],
    bias: &[T],
    act: Activation,
    u: &mut [MaybeUninit<T>],
    a: &mut [MaybeUninit<T>],
) {
    let width = bias.len();
    for ((u, a), x) in u.chunks_mut(width).zip(a.chunks_mut(width)).zip(x.chunks(width)) {
        for (((u, a), x), b) in u.iter_mut().zip(a.iter_mut()).zip(x).zip(bias) {
            let v = x.f32() + b.f32();
            u.write(T::of(v));
            a.write(T::of(act.value(v)));
        }
    }
}
}

cpu::simd_fn! {
/// Writes all of `du`.
fn backward_chunk<T>(dout: &[T], u: &[T], act: Activation, du: &mut [MaybeUninit<T>]) {
    for ((du, d), u) in du.iter_mut().zip(dout).zip(u) {
        du.write(T::of(d.f32() * act.derivative(u.f32())));
    }
}
}
