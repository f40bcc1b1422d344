//! Scaled, masked attention fused per (pair, head) on the CPU, the way flash attention works
//! on a GPU: one core takes a pair-head's `S = Q Kᵀ`, softmax and `P V` through a
//! `[queries, keys]` buffer that stays in its cache, and keeps only each row's log-sum-exp
//! `L`. The backward recomputes `P = exp(S/√d − L)` (one more `Q Kᵀ`, 1/6 of attention's
//! products) instead of keeping `[pairs, heads, tokens, tokens]` probabilities for every layer.
//!
//! Token layout throughout, as cuDNN's attention works on a GPU: Q, K and V are read strided
//! out of the QKV product `[b·t, 3h]` (head `j` in columns `j·d..(j+1)·d` of each third), and
//! the context and the gradients are written strided in token layout, so no pass moves heads
//! between layouts (the split and the merge were 5% of a bert-base pass on the Xeon).
//!
//! Backward per pair-head, from the forward lines: `P = exp(c·Q Kᵀ − L)` on real keys,
//! `dP = dC Vᵀ`, `dV = Pᵀ dC`, `dS = c·P ⊙ (dP − rowsum(P ⊙ dP))`, `dQ = dS K`, `dK = dSᵀ Q`.
//! Query rows may be a subset (the last layer's target rows): `dC`, `Q` and `L` are theirs.
//!
//! f32 only (the CPU path computes half precision in f32, see [`super::matmul`]); `lengths`
//! `[pairs]` u32.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use super::cpu;
use super::matmul::{gemm_into, Blocks, Mat, MatMut};
use super::softmax;

/// The sizes of one pass: pairs, tokens per pair, heads, head size.
#[derive(Clone, Copy)]
struct Sizes {
    pairs: usize,
    tokens: usize,
    heads: usize,
    head_dim: usize,
}

impl Sizes {
    /// Of a QKV product `[pairs·tokens, 3h]`.
    fn of(qkv: &Tensor, lengths: &Tensor, heads: usize) -> Result<Self> {
        let (rows, width) = qkv.dims2()?;
        let pairs = lengths.dims1()?;
        if qkv.dtype() != DType::F32 || lengths.dtype() != DType::U32 {
            candle_core::bail!("attention on the CPU takes an f32 QKV product and u32 lengths");
        }
        if heads == 0 || width % (3 * heads) != 0 || pairs == 0 || rows % pairs != 0 {
            candle_core::bail!(
                "attention: a QKV product [{rows}, {width}] is not {pairs} pairs of {heads} heads"
            );
        }
        Ok(Self {
            pairs,
            tokens: rows / pairs,
            heads,
            head_dim: width / (3 * heads),
        })
    }

    fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Q, K and V of `head` in `pair` (`part` 0, 1, 2), read strided out of the QKV product.
    fn part<'a>(&self, qkv: &'a [f32], part: usize, pair: usize, head: usize) -> Mat<'a> {
        let (t, h, d) = (self.tokens, self.hidden(), self.head_dim);
        let start = pair * t * 3 * h + part * h + head * d;
        Mat::rows_of(&qkv[start..], t, d, 3 * h)
    }
}

/// A token-layout output that the (pair, head) tasks write in their own blocks: rows
/// `row_stride` elements apart, head `j`'s block at columns `column + j·d`.
struct Sink<'a, 'b> {
    blocks: &'b Blocks<'a>,
    row_stride: usize,
    column: usize,
}

impl<'a> Sink<'a, '_> {
    /// The `rows x d` block of `head` over the rows from `first_row`.
    ///
    /// # Safety
    /// No other task writes the same rows and head of this sink at the same time.
    unsafe fn head(&self, first_row: usize, rows: usize, head: usize, d: usize) -> MatMut<'a> {
        let offset = first_row * self.row_stride + self.column + head * d;
        // SAFETY: passed on to the caller.
        unsafe { self.blocks.block(offset, rows, d, self.row_stride) }
    }
}

/// A vector of `len` f32s that parallel tasks fill in blocks, never zeroed first.
///
/// # Safety
/// `write` writes every element.
unsafe fn written(len: usize, write: impl FnOnce(&Blocks)) -> Vec<f32> {
    // SAFETY: passed on to the caller.
    unsafe { cpu::written(len, |out| write(&Blocks::new(out))) }
}

/// `(C, L)`: the context `[b·t, h]` in token layout and each query row's log-sum-exp
/// `[b, a, t]`, of the QKV product `qkv` `[b·t, 3h]` (bias added).
pub fn attention_forward_cpu(
    qkv: &Tensor,
    lengths: &Tensor,
    heads: usize,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let sizes = Sizes::of(qkv, lengths, heads)?;
    let Sizes {
        pairs: b,
        tokens: t,
        heads: a,
        head_dim: d,
    } = sizes;
    let h = sizes.hidden();
    let (qr, lr) = (cpu::read(qkv)?, cpu::read(lengths)?);
    let (qkv, lens) = (qr.slice::<f32>()?, lr.slice::<u32>()?);
    let scale = scale as f32;
    let mut lse = vec![0f32; b * a * t];
    let write = |blocks: &Blocks| {
        let context = Sink {
            blocks,
            row_stride: h,
            column: 0,
        };
        let buffers = || {
            (
                [(); 2].map(|_| vec![0f32; t * t]),
                [(); 3].map(|_| vec![0f32; t * d]),
            )
        };
        lse.par_chunks_mut(t).enumerate().for_each_init(
            buffers,
            |([scores, probs], [q, k, v]), (block, lse)| {
                let (pair, head) = (block / a, block % a);
                let real = (lens[pair] as usize).min(t);
                let [q, k, v] = [(0, q), (1, k), (2, v)]
                    .map(|(part, buffer)| sizes.part(qkv, part, pair, head).copied(buffer));
                gemm_into(MatMut::new(scores, t, t), q, k.t());
                for (i, lse) in lse.iter_mut().enumerate() {
                    let row = i * t..(i + 1) * t;
                    let p = &mut probs[row.clone()];
                    *lse = softmax::forward_row::<f32>(&scores[row][..real], scale, &mut p[..real]);
                    p[real..].fill(0.0);
                }
                // SAFETY: each task writes its own (pair, head) block.
                let out = unsafe { context.head(pair * t, t, head, d) };
                gemm_into(out, Mat::new(probs, t, t), v);
            },
        );
    };
    // SAFETY: the (pair, head) blocks cover the context, each written whole by `gemm_into`.
    let context = unsafe { written(b * t * h, write) };
    Ok((
        cpu::tensor(context, (b * t, h))?,
        cpu::tensor(lse, (b, a, t))?,
    ))
}

/// The QKV product's gradient `[b·t, 3h]` (dQ, dK, dV side by side, token layout) given the
/// context's `dcontext` `[b·t, h]`, from the forward's `qkv` and `lse`.
pub fn attention_backward_cpu(
    dcontext: &Tensor,
    qkv: &Tensor,
    lse: &Tensor,
    lengths: &Tensor,
    heads: usize,
    scale: f64,
) -> Result<Tensor> {
    let sizes = Sizes::of(qkv, lengths, heads)?;
    let (n, h) = (sizes.pairs * sizes.tokens, sizes.hidden());
    let (dcr, kvr, lr, lenr) = (
        cpu::read(dcontext)?,
        cpu::read(qkv)?,
        cpu::read(lse)?,
        cpu::read(lengths)?,
    );
    let kv = kvr.slice::<f32>()?;
    let inputs = Inputs::new(
        sizes,
        dcr.slice()?,
        (kv, 3 * h),
        kv,
        lr.slice()?,
        lenr.slice()?,
    )?;
    let write = |blocks: &Blocks| {
        let sink = |column| Sink {
            blocks,
            row_stride: 3 * h,
            column,
        };
        backward(&inputs, scale, [sink(0), sink(h), sink(2 * h)]);
    };
    // SAFETY: the (pair, head) blocks of dQ, dK and dV cover the product's gradient, each
    // written whole by `gemm_into`.
    let dqkv = unsafe { written(n * 3 * h, write) };
    cpu::tensor(dqkv, (n, 3 * h))
}

/// The backward for `r` query rows of each pair alone (the last layer's target rows): given
/// their context gradient `dcontext` `[b·r, h]`, their rows `q` `[b·r, ≥h]` of the QKV product
/// (Q in the first `h` columns) and log-sum-exps `lse` `[b, a, r]`, `(dQ [b·r, h], [dK dV]
/// [b·t, 2h])`. Exact: the other rows' terms are zero.
pub fn attention_backward_rows_cpu(
    dcontext: &Tensor,
    q: &Tensor,
    qkv: &Tensor,
    lse: &Tensor,
    lengths: &Tensor,
    heads: usize,
    scale: f64,
) -> Result<(Tensor, Tensor)> {
    let sizes = Sizes::of(qkv, lengths, heads)?;
    let (b, t, h) = (sizes.pairs, sizes.tokens, sizes.hidden());
    let (rows, q_width) = q.dims2()?;
    let (dcr, qr, kvr, lr, lenr) = (
        cpu::read(dcontext)?,
        cpu::read(q)?,
        cpu::read(qkv)?,
        cpu::read(lse)?,
        cpu::read(lengths)?,
    );
    let inputs = Inputs::new(
        sizes,
        dcr.slice()?,
        (qr.slice()?, q_width),
        kvr.slice()?,
        lr.slice()?,
        lenr.slice()?,
    )?;
    let mut dq = Vec::<f32>::with_capacity(rows * h);
    let write = |kv: &Blocks| {
        let q_blocks = Blocks::new(&mut dq.spare_capacity_mut()[..rows * h]);
        let sinks = [
            Sink {
                blocks: &q_blocks,
                row_stride: h,
                column: 0,
            },
            Sink {
                blocks: kv,
                row_stride: 2 * h,
                column: 0,
            },
            Sink {
                blocks: kv,
                row_stride: 2 * h,
                column: h,
            },
        ];
        backward(&inputs, scale, sinks);
    };
    // SAFETY: as in `attention_backward_cpu`, for the dK and dV blocks here and the dQ blocks.
    let dkv = unsafe { written(b * t * 2 * h, write) };
    // SAFETY: every (pair, head) block of dQ was written whole.
    unsafe { dq.set_len(rows * h) };
    Ok((
        cpu::tensor(dq, (rows, h))?,
        cpu::tensor(dkv, (b * t, 2 * h))?,
    ))
}

/// What the backward reads, checked: `rows` query rows a pair.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    sizes: Sizes,
    rows: usize,
    dcontext: &'a [f32],
    /// The query rows of the QKV product (or the rows' own), Q in the first `h` of `q_width`
    /// columns.
    q: &'a [f32],
    q_width: usize,
    qkv: &'a [f32],
    lse: &'a [f32],
    lengths: &'a [u32],
}

impl<'a> Inputs<'a> {
    fn new(
        sizes: Sizes,
        dcontext: &'a [f32],
        (q, q_width): (&'a [f32], usize),
        qkv: &'a [f32],
        lse: &'a [f32],
        lengths: &'a [u32],
    ) -> Result<Self> {
        let (b, a, h) = (sizes.pairs, sizes.heads, sizes.hidden());
        let rows = dcontext.len() / (b * h);
        if dcontext.len() != b * rows * h
            || q_width < h
            || q.len() != b * rows * q_width
            || lse.len() != b * a * rows
        {
            candle_core::bail!(
                "attention backward on the CPU: the query rows' tensors do not match"
            );
        }
        Ok(Self {
            sizes,
            rows,
            dcontext,
            q,
            q_width,
            qkv,
            lse,
            lengths,
        })
    }
}

/// The shared backward: dQ, dK and dV of every (pair, head) written into `sinks`.
fn backward(inputs: &Inputs, scale: f64, [dq_sink, dk_sink, dv_sink]: [Sink; 3]) {
    let Inputs {
        sizes,
        rows: r,
        dcontext,
        q,
        q_width,
        qkv,
        lse,
        lengths,
    } = *inputs;
    let Sizes {
        pairs: b,
        tokens: t,
        heads: a,
        head_dim: d,
    } = sizes;
    let h = sizes.hidden();
    let scale = scale as f32;
    let buffers = || {
        (
            [(); 3].map(|_| vec![0f32; r * t]),
            [(); 2].map(|_| vec![0f32; r * d]),
            [(); 2].map(|_| vec![0f32; t * d]),
        )
    };
    (0..b * a).into_par_iter().for_each_init(
        buffers,
        |([probs, dprobs, dscores], [q_rows, dc], [k, v]), block| {
            let (pair, head) = (block / a, block % a);
            let real = (lengths[pair] as usize).min(t);
            let qm = Mat::rows_of(&q[pair * r * q_width + head * d..], r, d, q_width);
            let dcm = Mat::rows_of(&dcontext[pair * r * h + head * d..], r, d, h);
            let (qm, dcm) = (qm.copied(q_rows), dcm.copied(dc));
            let km = sizes.part(qkv, 1, pair, head).copied(k);
            let vm = sizes.part(qkv, 2, pair, head).copied(v);
            gemm_into(MatMut::new(probs, r, t), qm, km.t());
            for (i, &l) in lse[block * r..(block + 1) * r].iter().enumerate() {
                recompute_row::<f32>(&mut probs[i * t..(i + 1) * t], real, scale, l);
            }
            gemm_into(MatMut::new(dprobs, r, t), dcm, vm.t());
            // SAFETY: each task writes its own (pair, head) block of each sink.
            let (dq, dk, dv) = unsafe {
                (
                    dq_sink.head(pair * r, r, head, d),
                    dk_sink.head(pair * t, t, head, d),
                    dv_sink.head(pair * t, t, head, d),
                )
            };
            gemm_into(dv, Mat::new(probs, r, t).t(), dcm);
            for ((dp, p), ds) in dprobs
                .chunks(t)
                .zip(probs.chunks(t))
                .zip(dscores.chunks_mut(t))
            {
                softmax::backward_row::<f32>(dp, p, scale, ds);
            }
            gemm_into(dq, Mat::new(dscores, r, t), km);
            gemm_into(dk, Mat::new(dscores, r, t).t(), qm);
        },
    );
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
