//! The ops, forward and input-gradient backward, for the saved-activation pass, and the
//! saliency's. Device dispatch happens here only.
//!
//! One op per file, each with its CPU implementation (row-parallel on rayon, vectorised for the
//! CPU's widest vector unit at run time), its CUDA kernel launch (feature `cuda`, kernels in
//! `cuda/`), and a `*_slow` twin composed of candle ops that candle's autograd differentiates:
//! the tests' reference for both. Every op takes f32, f16 or bf16 tensors and computes in f32.
//! Matrix products go through [`matmul`]: cuBLAS (candle's) on the GPU, the gemm crate on the
//! CPU.

pub mod activation;
pub mod attention;
pub mod attention_kind;
mod cpu;
pub mod heads;
/// The ops' CUDA backend: launches of the kernels in `cuda/` (built by build.rs).
#[cfg(feature = "cuda")]
pub mod kernels;
pub mod layer_norm;
mod matmul;
pub mod normalise;
pub mod saliency;
pub mod softmax;

use candle_core::Tensor;

pub use activation::{
    activation_backward, bias_activation_forward, bias_activation_slow, Activation,
};
pub use attention::{
    attention_backward_cpu, attention_backward_rows_cpu, attention_forward_cpu, attention_slow,
};
pub use cpu::{vector_unit, VectorUnit};
pub use heads::{merge_heads, merge_heads_slow, split_heads, split_heads_slow};
pub use layer_norm::{layer_norm_backward, layer_norm_forward, layer_norm_slow, LayerNormSaved};
pub use matmul::{linear_forward, linear_product, linear_weight_t, matmul};
pub use normalise::{normalise, normalise_signed};
pub use saliency::{gather_dot, gram_norms, streaming_norms};
pub use softmax::{masked_softmax_backward, masked_softmax_forward, masked_softmax_slow};

/// Bytes of a tensor's elements.
pub fn bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}
