//! The encoder's ops, forward and input-gradient backward, for the saved-activation pass.
//!
//! One op per file, each with its CPU implementation (row-parallel on rayon, vectorised for the
//! CPU's widest vector unit at run time), its CUDA kernel launch (feature `cuda`, kernels in
//! `cuda/`), and a `*_slow` twin composed of candle ops that candle's autograd differentiates:
//! the tests' reference for both. Every op takes f32, f16 or bf16 tensors and computes in f32.
//! Matrix products are candle's (cuBLAS on the GPU, the gemm crate on the CPU), through
//! [`matmul`].

pub mod activation;
pub mod attention;
mod cpu;
pub mod heads;
pub mod layer_norm;
mod matmul;
pub mod softmax;

use candle_core::Tensor;

pub use activation::{
    activation_backward, bias_activation_forward, bias_activation_slow, Activation,
};
pub use attention::{attention_backward_cpu, attention_forward_cpu, attention_slow};
pub use heads::{merge_heads, merge_heads_slow, split_heads, split_heads_slow};
pub use layer_norm::{layer_norm_backward, layer_norm_forward, layer_norm_slow, LayerNormSaved};
pub use matmul::matmul;
pub use softmax::{masked_softmax_backward, masked_softmax_forward, masked_softmax_slow};

/// Bytes of a tensor's elements.
pub fn bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}
