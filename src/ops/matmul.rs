//! Matrix products: cuBLAS (through candle) on the GPU, the gemm crate on the CPU, called here
//! directly:
//! - 2-D products run as one gemm call on every core, written into a buffer that is never
//!   zeroed first (candle's product zeroes its output on the calling thread, a serial pass as
//!   long as the product's output; 4.5% of the CPU time of a bert-base pass on the Xeon), with
//!   a linear layer's bias written first and the product accumulated onto it;
//! - batched products are attention's many small `[t, d] x [d, t]` products, which candle
//!   multiplies one after another with both cores splitting each (40 GFLOP/s for `Q Kᵀ` at
//!   8 x 384 tokens here); one single-threaded product per core runs 3x faster.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use candle_core::{DType, Layout, Result, Tensor};
use rayon::prelude::*;

use super::cpu;

/// `a · b`, batched over leading dimensions (the same on both sides). On the GPU cuBLAS
/// multiplies f16/bf16 with f32 accumulation; the CPU gemm has no bf16 and accumulates f16 in
/// f16, so on the CPU half operands are multiplied in f32 and the product rounded once, as
/// cuBLAS does.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !a.device().is_cpu() {
        return a.matmul(b);
    }
    let dtype = a.dtype();
    if matches!(dtype, DType::F16 | DType::BF16) {
        let product = matmul(&a.to_dtype(DType::F32)?, &b.to_dtype(DType::F32)?)?;
        return product.to_dtype(dtype);
    }
    if dtype != DType::F32 {
        return a.matmul(b);
    }
    if a.rank() == 2 {
        return product_f32(a, b, None);
    }
    let batch: usize = a.dims()[..a.rank().saturating_sub(2)].iter().product();
    if a.rank() < 3 || batch < 2 {
        return a.matmul(b);
    }
    batched_f32(a, b)
}

/// The layout of a linear layer's `Wᵀ` the device's product reads fastest, made once at load:
/// on the CPU a contiguous copy, because the gemm crate packs a transposed right operand on
/// every call, which made `x Wᵀ` 2.3x slower for a 32-token pass (70 vs 158 GFLOP/s, 2
/// cores); `None` where the product reads `W` as it is (cuBLAS reads either layout at full
/// speed).
pub fn linear_weight_t(weight: &Tensor) -> Result<Option<Tensor>> {
    if weight.device().is_cpu() {
        Ok(Some(weight.t()?.contiguous()?))
    } else {
        Ok(None)
    }
}

/// `x Wᵀ` for `x` `[rows, in]` and `weight` `[out, in]`, through `weight_t` when
/// [`linear_weight_t`] made one.
pub fn linear_product(x: &Tensor, weight: &Tensor, weight_t: Option<&Tensor>) -> Result<Tensor> {
    crate::profile::time(x.device(), "linear forward x·Wᵀ", || match weight_t {
        Some(wt) => matmul(x, wt),
        None => matmul(x, &weight.t()?),
    })
}

/// `x Wᵀ + b`: on a GPU in half precision one cuBLASLt product whose epilogue adds the bias
/// ([`super::kernels::gemm`]); on the CPU in f32 one gemm call that accumulates the product
/// onto the bias rows ([`product_f32`]); elsewhere the product, then the bias.
pub fn linear_forward(
    x: &Tensor,
    weight: &Tensor,
    weight_t: Option<&Tensor>,
    bias: &Tensor,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && super::kernels::gemm::takes(x.dtype()) {
        return crate::profile::time(x.device(), "linear forward x·Wᵀ + b (cuBLASLt)", || {
            super::kernels::gemm::linear_bias(x, weight, bias)
        });
    }
    if let (true, DType::F32, 2, Some(wt)) = (x.device().is_cpu(), x.dtype(), x.rank(), weight_t) {
        return crate::profile::time(x.device(), "linear forward x·Wᵀ + b", || {
            product_f32(x, wt, Some(bias))
        });
    }
    linear_product(x, weight, weight_t)?.broadcast_add(bias)
}

/// `a · b`, plus `bias` `[n]` on every row when given, for f32 matrices of any strides: one
/// gemm call on every core, into a buffer no pass zeroes. With a bias its rows are written
/// first (a write pass, split between the cores) and gemm adds the product onto them, which
/// replaces the zeroing and the bias's own read-and-write pass.
fn product_f32(a: &Tensor, b: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let ((m, k), (k_b, n)) = (a.dims2()?, b.dims2()?);
    if k != k_b || b.dtype() != DType::F32 {
        candle_core::bail!(
            "matmul: shapes {:?} and {:?} do not match",
            a.dims(),
            b.dims()
        );
    }
    let bias_read = cpu::optional(bias)?;
    let bias = bias_read.as_ref().map(|r| r.slice::<f32>()).transpose()?;
    if bias.is_some_and(|b| b.len() != n) {
        candle_core::bail!("linear: the bias must be [{n}]");
    }
    let (ar, br) = (cpu::read_strided(a), cpu::read_strided(b));
    let (lhs, rhs) = (
        Mat::of(ar.strided::<f32>()?)?,
        Mat::of(br.strided::<f32>()?)?,
    );
    let write = |out: &mut [MaybeUninit<f32>]| {
        match bias {
            Some(bias) => out
                .par_chunks_mut(cpu::rows_per_task(n) * n)
                .for_each(|rows| {
                    for row in rows.chunks_mut(n) {
                        row.iter_mut().zip(bias).for_each(|(o, &b)| _ = o.write(b));
                    }
                }),
            // An empty inner dimension: gemm writes nothing, and the product is zero.
            None if k == 0 => out.par_iter_mut().for_each(|o| _ = o.write(0.0)),
            None => {}
        }
        if k == 0 || m * n == 0 {
            return;
        }
        // SAFETY: `lhs` and `rhs` lie inside their storage (checked by `Mat::of`); `out` holds
        // the `m x n` product, and gemm reads it only when told to (`read_dst`), after the
        // bias was written into every element.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr().cast::<f32>(),
                1,
                n as isize,
                bias.is_some(),
                lhs.data.as_ptr(),
                lhs.col_stride as isize,
                lhs.row_stride as isize,
                rhs.data.as_ptr(),
                rhs.col_stride as isize,
                rhs.row_stride as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            )
        }
    };
    // SAFETY: every element is written, by the fill or by gemm (which writes the whole product,
    // reading the bias first when there is one).
    let out = unsafe { cpu::written(m * n, write) };
    cpu::tensor(out, (m, n))
}

/// A `[.., rows, cols]` operand: its storage, one uniform batch stride, and each matrix's
/// shape and strides.
struct Operand<'a> {
    data: &'a [f32],
    offset: usize,
    batch_stride: usize,
    matrix: (usize, usize, usize, usize),
}

impl<'a> Operand<'a> {
    fn new(data: &'a [f32], layout: &Layout) -> Result<Self> {
        let dims = layout.dims();
        let strides = layout.stride();
        let rank = dims.len();
        // The leading dimensions must collapse into one: each stride the next one times its size.
        for i in 0..rank - 3 {
            if dims[i + 1] > 1 && strides[i] != strides[i + 1] * dims[i + 1] {
                candle_core::bail!("matmul: batch dimensions are not uniformly strided");
            }
        }
        let operand = Self {
            data,
            offset: layout.start_offset(),
            batch_stride: strides[rank - 3],
            matrix: (
                dims[rank - 2],
                dims[rank - 1],
                strides[rank - 2],
                strides[rank - 1],
            ),
        };
        let batch: usize = dims[..rank - 2].iter().product();
        let (rows, cols, rs, cs) = operand.matrix;
        let last =
            operand.offset + (batch - 1) * operand.batch_stride + (rows - 1) * rs + (cols - 1) * cs;
        if last >= data.len() {
            candle_core::bail!("matmul: operand layout runs past its storage");
        }
        Ok(operand)
    }

    /// Matrix `i` of the batch (in bounds: checked by `new`).
    fn at(&self, i: usize) -> Mat<'a> {
        let (rows, cols, row_stride, col_stride) = self.matrix;
        Mat {
            data: &self.data[self.offset + i * self.batch_stride..],
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }
}

/// An f32 matrix in a slice, row-major or any strided view of one.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// The row-major `rows x cols` matrix at the start of `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::rows_of(data, rows, cols, cols)
    }

    /// `rows x cols` at the start of `data`, each row `row_stride` elements after the last:
    /// a block of columns of a wider row-major matrix.
    pub fn rows_of(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            rows * cols == 0 || (rows - 1) * row_stride + cols <= data.len(),
            "matrix larger than its slice"
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// A 2-D tensor's matrix in its storage.
    fn of((data, layout): (&'a [f32], &Layout)) -> Result<Self> {
        let (&[rows, cols], &[row_stride, col_stride]) = (layout.dims(), layout.stride()) else {
            candle_core::bail!("matmul: expected a matrix, got shape {:?}", layout.dims());
        };
        let data = &data[layout.start_offset()..];
        if rows * cols > 0 && (rows - 1) * row_stride + (cols - 1) * col_stride >= data.len() {
            candle_core::bail!("matmul: operand layout runs past its storage");
        }
        Ok(Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// This matrix copied into `buffer` row-major: a strided block read once, for products
    /// that would read it strided many times.
    pub fn copied<'b>(self, buffer: &'b mut [f32]) -> Mat<'b> {
        let (rows, cols) = (self.rows, self.cols);
        for (i, out) in buffer[..rows * cols]
            .chunks_exact_mut(cols.max(1))
            .enumerate()
        {
            let row = &self.data[i * self.row_stride..];
            if self.col_stride == 1 {
                out.copy_from_slice(&row[..cols]);
            } else {
                out.iter_mut()
                    .enumerate()
                    .for_each(|(j, o)| *o = row[j * self.col_stride]);
            }
        }
        Mat::new(buffer, rows, cols)
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// A `rows x cols` destination, row-major with row stride `row_stride`, that one task writes.
pub struct MatMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    row_stride: usize,
    _buffer: PhantomData<&'a mut [f32]>,
}

impl<'a> MatMut<'a> {
    /// The row-major `rows x cols` matrix at the start of `data`.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix larger than its slice");
        Self {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            row_stride: cols,
            _buffer: PhantomData,
        }
    }
}

/// An output buffer that parallel tasks write in disjoint blocks of rows and columns (a
/// (pair, head)'s rows and head columns of a token-layout matrix), uninitialised until they
/// have.
pub struct Blocks<'a> {
    ptr: *mut f32,
    len: usize,
    _buffer: PhantomData<&'a mut [MaybeUninit<f32>]>,
}

// SAFETY: tasks write through `Blocks` only in disjoint blocks (the contract of `block`).
unsafe impl Sync for Blocks<'_> {}

impl<'a> Blocks<'a> {
    pub fn new(buffer: &'a mut [MaybeUninit<f32>]) -> Self {
        Self {
            ptr: buffer.as_mut_ptr().cast(),
            len: buffer.len(),
            _buffer: PhantomData,
        }
    }

    /// The `rows x cols` block at `offset`, rows `row_stride` apart.
    ///
    /// # Safety
    /// No two blocks in use at the same time share an element.
    pub unsafe fn block(
        &self,
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> MatMut<'a> {
        assert!(
            rows * cols == 0 || offset + (rows - 1) * row_stride + cols <= self.len,
            "block outside its buffer"
        );
        MatMut {
            // SAFETY: in bounds, as asserted.
            ptr: unsafe { self.ptr.add(offset) },
            rows,
            cols,
            row_stride,
            _buffer: PhantomData,
        }
    }
}

/// `dst = a · b` on the calling thread, every element of `dst` written (it may be
/// uninitialised before): the building block of the CPU's per-(pair, head) attention, which
/// runs one such product per core.
pub fn gemm_into(dst: MatMut, a: Mat, b: Mat) {
    assert!(
        a.cols == b.rows && dst.rows == a.rows && dst.cols == b.cols,
        "gemm_into: shapes differ"
    );
    if dst.rows * dst.cols == 0 {
        return;
    }
    if a.cols == 0 {
        for i in 0..dst.rows {
            // SAFETY: row `i` of `dst` lies inside its buffer (checked where `dst` was made).
            unsafe { std::ptr::write_bytes(dst.ptr.add(i * dst.row_stride), 0, dst.cols) };
        }
        return;
    }
    // SAFETY: every `Mat` lies inside its slice (checked by its constructors; a transpose
    // reaches the same elements), `dst` is exclusively this task's, and gemm writes it without
    // reading it (`read_dst` false).
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.ptr,
            1,
            dst.row_stride as isize,
            false,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

fn batched_f32(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let rank = a.rank();
    let (m, k) = (a.dims()[rank - 2], a.dims()[rank - 1]);
    let n = b.dims()[rank - 1];
    if b.rank() != rank || b.dims()[..rank - 2] != a.dims()[..rank - 2] || b.dims()[rank - 2] != k {
        candle_core::bail!(
            "matmul: shapes {:?} and {:?} do not match",
            a.dims(),
            b.dims()
        );
    }
    let (ar, br) = (cpu::read_strided(a), cpu::read_strided(b));
    let (a_data, a_layout) = ar.strided::<f32>()?;
    let (b_data, b_layout) = br.strided::<f32>()?;
    let (lhs, rhs) = (
        Operand::new(a_data, a_layout)?,
        Operand::new(b_data, b_layout)?,
    );
    let batch: usize = a.dims()[..rank - 2].iter().product();
    let mut out = vec![0f32; batch * m * n];
    if m * n > 0 {
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|(i, c)| gemm_into(MatMut::new(c, m, n), lhs.at(i), rhs.at(i)));
    }
    let mut dims = a.dims().to_vec();
    dims[rank - 1] = n;
    cpu::tensor(out, dims)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::matmul;

    #[test]
    fn batched_products_equal_candles_for_strided_operands() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (2, 3, 5, 4), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 3, 7, 4), &dev).unwrap();
        let stacked = Tensor::randn(0f32, 1.0, (3, 2, 3, 7, 4), &dev).unwrap();
        // Transposed right operand, transposed left operand, a slice of a stacked tensor.
        let cases = [
            (q.clone(), k.t().unwrap()),
            (k.t().unwrap(), k.clone()),
            (q.clone(), stacked.get(1).unwrap().t().unwrap()),
        ];
        for (a, b) in cases {
            let got = matmul(&a, &b).unwrap();
            let want = a
                .contiguous()
                .unwrap()
                .matmul(&b.contiguous().unwrap())
                .unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        }
        let k_half = k.to_dtype(candle_core::DType::BF16).unwrap();
        let q_half = q.to_dtype(candle_core::DType::BF16).unwrap();
        let got = matmul(&q_half, &k_half.t().unwrap()).unwrap();
        assert_eq!(got.dtype(), candle_core::DType::BF16);
        assert_eq!(got.dims(), [2, 3, 5, 7]);
    }
}
