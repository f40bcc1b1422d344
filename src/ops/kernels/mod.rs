//! Launchers of the CUDA kernels in `cuda/` (feature `cuda`): candle tensors in and out, on
//! candle's stream, so kernels and candle ops queue behind each other with no host round-trip.
//! Callers dispatch here for CUDA tensors; the same public functions on CPU tensors are the
//! kernels' CPU twins.

mod activation;
#[cfg(feature = "cudnn")]
pub mod cudnn;
pub mod gemm;
mod heads;
mod launch;
mod layer_norm;
mod saliency;
mod softmax;

use candle_core::{DType, Result};
pub use launch::poison_outputs;
use launch::Params;
use params::{
    ActivationParams, HeadsParams, LayerNormParams, NormaliseParams, RowsParams, SoftmaxParams,
    StreamingParams,
};

pub use activation::{activation_backward, bias_activation_forward};
pub use heads::{merge_heads, split_heads};
pub use layer_norm::{layer_norm_backward, layer_norm_forward};
pub use saliency::{gather_dot, gram_norms, normalise, streaming_norms};
pub use softmax::{masked_softmax_backward, masked_softmax_forward};

#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code
)]
pub mod params {
    include!(concat!(env!("OUT_DIR"), "/params.rs"));
}

// SAFETY: plain C structs of u32 fields, passed by value as kernel parameters.
unsafe impl cudarc::driver::DeviceRepr for StreamingParams {}
unsafe impl cudarc::driver::DeviceRepr for RowsParams {}
unsafe impl cudarc::driver::DeviceRepr for NormaliseParams {}
// SAFETY: plain C structs of u32, u64 and f32 fields, passed by value.
unsafe impl cudarc::driver::DeviceRepr for LayerNormParams {}
unsafe impl cudarc::driver::DeviceRepr for ActivationParams {}
unsafe impl cudarc::driver::DeviceRepr for SoftmaxParams {}
unsafe impl cudarc::driver::DeviceRepr for HeadsParams {}
impl Params for StreamingParams {}
impl Params for RowsParams {}
impl Params for NormaliseParams {}
impl Params for LayerNormParams {}
impl Params for ActivationParams {}
impl Params for SoftmaxParams {}
impl Params for HeadsParams {}

/// A kernel file's module: its name and its fatbin (see build.rs).
type Module = (&'static str, &'static [u8]);

macro_rules! fatbin {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".fatbin")),
        )
    };
}

const STREAMING: Module = fatbin!("streaming_norms");
const GRAM: Module = fatbin!("gram_norms");
const GATHER: Module = fatbin!("gather_dot");
const NORMALISE: Module = fatbin!("normalise");
const LAYER_NORM_FORWARD: Module = fatbin!("layer_norm_forward");
const LAYER_NORM_BACKWARD: Module = fatbin!("layer_norm_backward");
const BIAS_ACTIVATION: Module = fatbin!("bias_activation");
const ACTIVATION_BACKWARD: Module = fatbin!("activation_backward");
const SOFTMAX_FORWARD: Module = fatbin!("softmax_forward");
const SOFTMAX_BACKWARD: Module = fatbin!("softmax_backward");
const SPLIT_HEADS: Module = fatbin!("split_heads");
const MERGE_HEADS: Module = fatbin!("merge_heads");

const ROW_THREADS: u32 = params::ROW_THREADS;
const WARPS_PER_BLOCK: usize = ROW_THREADS as usize / 32;

/// Blocks of [`ROW_THREADS`] for one warp per row.
fn row_blocks(rows: usize) -> (usize, usize) {
    (rows.div_ceil(WARPS_PER_BLOCK), 1)
}

/// The kernel instantiation for this input type.
fn typed(name: &str, dtype: DType) -> Result<String> {
    let suffix = match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        other => candle_core::bail!("kernels take f32, f16 or bf16 inputs, not {other:?}"),
    };
    Ok(format!("{name}_{suffix}"))
}
