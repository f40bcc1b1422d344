//! `y = x Wᵀ + b` in one cuBLASLt call for half-precision tensors: the bias is added to the
//! f32 accumulator by the product's epilogue, before the one rounding to the output type, so
//! no pass of its own reads and writes `y` again (the twin: candle's matmul, then the bias).
//!
//! Row-major `y [m, n] = x [m, k] · Wᵀ` (W `[n, k]`) is column-major `yᵀ = W · xᵀ`: W's memory
//! read as a column-major `k × n` matrix is `Wᵀ`, so it enters transposed; x's is `xᵀ` as it
//! lies. The bias then runs along the rows of the column-major result, one per output.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::cuda_backend::DeviceId;
use candle_core::{DType, Result, Tensor};
use cudarc::cublaslt::{CudaBlasLT, Matmul, MatmulConfig};

use super::launch::{device, output_of, read, Output, View};

fn cublaslt(e: cudarc::cublaslt::result::CublasError) -> candle_core::Error {
    candle_core::Error::Msg(format!("cuBLASLt: {e:?}"))
}

/// One cuBLASLt handle (and its workspace) per device.
fn handle(dev: &candle_core::cuda_backend::CudaDevice) -> Result<Arc<CudaBlasLT>> {
    static HANDLES: Mutex<Option<HashMap<DeviceId, Arc<CudaBlasLT>>>> = Mutex::new(None);
    let mut handles = HANDLES.lock().unwrap_or_else(|e| e.into_inner());
    let handles = handles.get_or_insert_with(HashMap::new);
    if let Some(h) = handles.get(&dev.id()) {
        return Ok(h.clone());
    }
    let h = Arc::new(CudaBlasLT::new(dev.cuda_stream()).map_err(cublaslt)?);
    handles.insert(dev.id(), h.clone());
    Ok(h)
}

/// `x [m, k] · Wᵀ + bias` for `w [n, k]` and `bias [n]`, bf16 or f16, all contiguous.
pub fn linear_bias(x: &Tensor, w: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, k_w) = w.dims2()?;
    if k != k_w || bias.dims1()? != n || w.dtype() != x.dtype() || bias.dtype() != x.dtype() {
        candle_core::bail!(
            "linear_bias: x {:?}, W {:?} and bias {:?} do not make x·Wᵀ + b",
            x.dims(),
            w.dims(),
            bias.dims()
        );
    }
    let dev = device(x)?;
    let blas = handle(&dev)?;
    let cfg = MatmulConfig {
        transa: true,
        transb: false,
        transc: false,
        m: n as u64,
        n: m as u64,
        k: k as u64,
        alpha: 1.0,
        lda: k as i64,
        ldb: k as i64,
        beta: 0.0,
        ldc: n as i64,
        stride_a: None,
        stride_b: None,
        stride_c: None,
        stride_bias: None,
        batch_size: None,
    };
    let mut y = output_of(&dev, x.dtype(), m * n)?;
    let (xr, wr, br) = (read(x)?, read(w)?, read(bias)?);
    let (xv, wv, bv) = (xr.view()?, wr.view()?, br.view()?);
    // SAFETY: the layouts above are those of the contiguous tensors read, and y holds m·n.
    match (&xv, &wv, &bv, &mut y) {
        (View::BF16(x), View::BF16(w), View::BF16(b), Output::BF16(y)) => unsafe {
            blas.matmul(cfg, w, x, y, Some(b), None)
        },
        (View::F16(x), View::F16(w), View::F16(b), Output::F16(y)) => unsafe {
            blas.matmul(cfg, w, x, y, Some(b), None)
        },
        _ => candle_core::bail!(
            "linear_bias takes bf16 or f16 on the GPU, not {:?}",
            x.dtype()
        ),
    }
    .map_err(cublaslt)?;
    y.into_tensor(&dev, (m, n))
}

/// Whether [`linear_bias`] takes tensors of this dtype.
pub fn takes(dtype: DType) -> bool {
    matches!(dtype, DType::BF16 | DType::F16)
}
