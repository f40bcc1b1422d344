//! What the CPU implementations of the ops share: element types, borrowed slices of candle
//! tensors, row-parallel loops, the vector-unit dispatch and vectorisable `exp` / `erf`.

use std::mem::MaybeUninit;

use candle_core::{Device, Layout, Result, Shape, Storage, StorageRef, Tensor, WithDType};
use half::{bf16, f16};

/// An element type the ops store (arithmetic is always f32).
pub trait Elem: WithDType + Copy + Send + Sync {
    fn f32(self) -> f32;
    fn of(x: f32) -> Self;
}

impl Elem for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn of(x: f32) -> Self {
        x
    }
}

impl Elem for f16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn of(x: f32) -> Self {
        f16::from_f32(x)
    }
}

impl Elem for bf16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn of(x: f32) -> Self {
        bf16::from_f32(x)
    }
}

/// `with_elem!(dtype, T => expr)`: `expr` instantiated for the element type of `dtype`.
macro_rules! with_elem {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F16 => {
                type $T = half::f16;
                $body
            }
            candle_core::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            other => candle_core::bail!("the ops take f32, f16 or bf16 tensors, not {other:?}"),
        }
    };
}
pub(crate) use with_elem;

/// A contiguous CPU tensor's storage, borrowed for as long as its slices are in use.
pub struct Read<'a> {
    storage: StorageRef<'a>,
    layout: &'a Layout,
}

pub fn read(t: &Tensor) -> Result<Read<'_>> {
    if !t.is_contiguous() {
        candle_core::bail!("the ops take contiguous tensors");
    }
    let (storage, layout) = t.storage_and_layout();
    Ok(Read { storage, layout })
}

impl Read<'_> {
    pub fn slice<T: WithDType>(&self) -> Result<&[T]> {
        let Storage::Cpu(cpu) = &*self.storage else {
            candle_core::bail!("a CPU op was given a tensor that is not on the CPU");
        };
        let all = cpu.as_slice::<T>()?;
        let start = self.layout.start_offset();
        Ok(&all[start..start + self.layout.shape().elem_count()])
    }
}

impl Read<'_> {
    /// The whole storage and the tensor's layout in it, for strided access.
    pub fn strided<T: WithDType>(&self) -> Result<(&[T], &Layout)> {
        let Storage::Cpu(cpu) = &*self.storage else {
            candle_core::bail!("a CPU op was given a tensor that is not on the CPU");
        };
        Ok((cpu.as_slice::<T>()?, self.layout))
    }
}

/// A CPU tensor's storage, contiguous or not (read it with [`Read::strided`]).
pub fn read_strided(t: &Tensor) -> Read<'_> {
    let (storage, layout) = t.storage_and_layout();
    Read { storage, layout }
}

/// The elements of an optional tensor, or `None`.
pub fn optional<'a>(t: Option<&'a Tensor>) -> Result<Option<Read<'a>>> {
    t.map(read).transpose()
}

/// A vector of `len` elements that `write` fills through its spare capacity, never zeroed
/// first: `vec![0; len]` zeroes on the calling thread, a serial pass as long as the output
/// (glibc's calloc must clear reused memory), where the ops' own writes are split between the
/// cores.
///
/// # Safety
/// `write` writes every element of the slice it is given.
pub unsafe fn written<T>(len: usize, write: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    write(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: every element was written (the caller's contract).
    unsafe { out.set_len(len) };
    out
}

pub fn tensor<T: WithDType>(data: Vec<T>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}

/// Rows per rayon task: enough work to amortise the task, few enough to balance two cores.
pub fn rows_per_task(width: usize) -> usize {
    (16_384 / width.max(1)).max(1)
}

/// `simd_fn! { fn name<T>(args) { body } }` defines `name<T: Elem>(args)`, which runs `body`
/// compiled for the widest vector unit the CPU has (AVX-512, AVX2 + FMA, or the baseline),
/// chosen at run time. The body's loops, and the `#[inline(always)]` helpers it calls, are
/// vectorised for that unit.
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident<$T:ident>($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $crate::ops::cpu::simd_fn! {
            $(#[$meta])* $vis fn $name<$T>($($arg: $ty),*) -> () $body
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident<$T:ident>($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments, clippy::unused_unit)]
        $vis fn $name<$T: $crate::ops::cpu::Elem>($($arg: $ty),*) -> $ret {
            #[inline(always)]
            #[allow(clippy::too_many_arguments, clippy::unused_unit)]
            fn body<$T: $crate::ops::cpu::Elem>($($arg: $ty),*) -> $ret $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")]
                #[allow(clippy::too_many_arguments, clippy::unused_unit)]
                fn avx512<$T: $crate::ops::cpu::Elem>($($arg: $ty),*) -> $ret {
                    body::<$T>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma,f16c")]
                #[allow(clippy::too_many_arguments, clippy::unused_unit)]
                fn avx2<$T: $crate::ops::cpu::Elem>($($arg: $ty),*) -> $ret {
                    body::<$T>($($arg),*)
                }
                match $crate::ops::cpu::vector_unit() {
                    // SAFETY: the unit's features were detected on this CPU.
                    $crate::ops::cpu::VectorUnit::Avx512 => return unsafe { avx512::<$T>($($arg),*) },
                    // SAFETY: as above.
                    $crate::ops::cpu::VectorUnit::Avx2 => return unsafe { avx2::<$T>($($arg),*) },
                    $crate::ops::cpu::VectorUnit::Baseline => {}
                }
            }
            body::<$T>($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorUnit {
    Avx512,
    Avx2,
    Baseline,
}

impl VectorUnit {
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "AVX-512",
            Self::Avx2 => "AVX2 + FMA",
            Self::Baseline => "no vector extension",
        }
    }
}

/// The widest vector unit of this CPU that the ops have code for (detected once).
pub fn vector_unit() -> VectorUnit {
    static UNIT: std::sync::OnceLock<VectorUnit> = std::sync::OnceLock::new();
    *UNIT.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
            {
                return VectorUnit::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return VectorUnit::Avx2;
            }
        }
        VectorUnit::Baseline
    })
}

/// Lanes of the partial sums in reductions: as wide as an AVX-512 register, so the loop
/// vectorises, and a better-conditioned sum than one running total.
const LANES: usize = 16;

/// `Σ f(x[i])` in f32.
#[inline(always)]
pub fn sum_map<T: Elem>(x: &[T], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += f(c[i].f32());
        }
    }
    tail.iter()
        .fold(acc.iter().sum::<f32>(), |s, v| s + f(v.f32()))
}

/// `Σ f(a[i], b[i])` in f32.
#[inline(always)]
pub fn sum_zip<A: Elem, B: Elem>(a: &[A], b: &[B], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let split = a.len() - a.len() % LANES;
    for (ca, cb) in a[..split]
        .chunks_exact(LANES)
        .zip(b[..split].chunks_exact(LANES))
    {
        for i in 0..LANES {
            acc[i] += f(ca[i].f32(), cb[i].f32());
        }
    }
    let head = acc.iter().sum::<f32>();
    a[split..]
        .iter()
        .zip(&b[split..])
        .fold(head, |s, (x, y)| s + f(x.f32(), y.f32()))
}

/// The largest element (−∞ for an empty slice).
#[inline(always)]
pub fn max<T: Elem>(x: &[T]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            let v = c[i].f32();
            acc[i] = if v > acc[i] { v } else { acc[i] };
        }
    }
    tail.iter()
        .map(|v| v.f32())
        .chain(acc)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// `eˣ` to about 1 ulp (Cephes' `expf`: Cody–Waite reduction, degree-5 polynomial), written
/// without branches so that loops over it vectorise. 0 below −87.3, ∞ above 88.7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to the nearest integer n and leaves it in the low mantissa bits.
    const SHIFT: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.7);
    let shifted = xc * LOG2E + SHIFT;
    let n = shifted - SHIFT;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2ⁿ as 2^⌊n/2⌋ · 2^⌈n/2⌉, each built in the exponent bits: n reaches −126 and 128 at
    // the ends of the range, where 2ⁿ alone is not a normal float.
    let n = shifted.to_bits() as i32 - SHIFT.to_bits() as i32;
    let half = n >> 1;
    let pow2 = |k: i32| f32::from_bits(((k + 127).clamp(1, 254) as u32) << 23);
    let y = e * pow2(half) * pow2(n - half);
    if x < -87.3 {
        0.0
    } else if x > 88.7 {
        f32::INFINITY
    } else {
        y
    }
}

/// `erf(x)` with absolute error below 2e-7: `1 − erfc`, erfc by the Chebyshev fit of
/// Numerical Recipes (`erfcc`, fractional error < 1.2e-7), branch-free.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let mut p = 0.170_872_77f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_9;
    p = p * t - 1.135_204;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_7;
    p = p * t - 1.265_512_2;
    let erfc = t * exp(-z * z + p);
    let e = 1.0 - erfc;
    if x < 0.0 {
        -e
    } else {
        e
    }
}

/// `tanh(x)` from `exp`, branch-free; exact limits ±1.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp(-2.0 * x.abs());
    let t = (1.0 - e) / (1.0 + e);
    if x < 0.0 {
        -t
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_erf_tanh_match_libm() {
        let mut worst = (0f64, 0f64, 0f64);
        for i in -17_400..=17_700 {
            let x = i as f32 * 0.005;
            let e = (exp(x) as f64 - (x as f64).exp()).abs() / (x as f64).exp();
            let r = (erf(x) as f64 - libm_erf(x as f64)).abs();
            let t = (tanh(x) as f64 - (x as f64).tanh()).abs();
            worst = (worst.0.max(e), worst.1.max(r), worst.2.max(t));
        }
        assert!(worst.0 < 3e-7, "exp relative error {}", worst.0);
        assert!(worst.1 < 3e-7, "erf absolute error {}", worst.1);
        assert!(worst.2 < 3e-7, "tanh absolute error {}", worst.2);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!((erf(10.0), erf(-10.0)), (1.0, -1.0));
        assert_eq!((tanh(50.0), tanh(-50.0)), (1.0, -1.0));
    }

    /// erf in f64 by its Taylor series (|x| < 3) or the continued fraction of erfc.
    fn libm_erf(x: f64) -> f64 {
        let z = x.abs();
        let v = if z < 3.0 {
            let mut term = z;
            let mut sum = z;
            for n in 1..200 {
                term *= -z * z / n as f64;
                sum += term / (2 * n + 1) as f64;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (z + f);
            }
            1.0 - (-z * z).exp() / (std::f64::consts::PI.sqrt() * (z + f))
        };
        v.copysign(x)
    }

    #[test]
    fn reductions_cover_tails() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 - 7.0).collect();
        assert_eq!(sum_map(&x, |v| v), x.iter().sum::<f32>());
        assert_eq!(max(&x), 29.0);
        assert_eq!(
            sum_zip(&x, &x, |a, b| a * b),
            x.iter().map(|v| v * v).sum::<f32>()
        );
        assert_eq!(max::<f32>(&[]), f32::NEG_INFINITY);
    }
}
