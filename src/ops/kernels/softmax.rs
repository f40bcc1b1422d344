//! Launchers of `softmax_forward.cu` and `softmax_backward.cu` (twins in `ops::softmax`).

use candle_core::{Result, Tensor};

use super::launch::{device, launch, output_of, read, vectorisable};
use super::{row_blocks, typed, SoftmaxParams, ROW_THREADS, SOFTMAX_BACKWARD, SOFTMAX_FORWARD};

pub fn masked_softmax_forward(scores: &Tensor, lengths: &Tensor, scale: f32) -> Result<Tensor> {
    let (_, heads, queries, keys) = scores.dims4()?;
    let rows = scores.elem_count() / keys;
    let dev = device(scores)?;
    let p = SoftmaxParams {
        rows: rows as u32,
        keys: keys as u32,
        rows_per_example: (heads * queries) as u32,
        scale,
        vectorised: vectorisable(keys, &[scores]),
    };
    let probs = output_of(&dev, scores.dtype(), scores.elem_count())?;
    let (sr, lr) = (read(scores)?, read(lengths)?);
    let (sv, lv) = (sr.view()?, lr.view()?);
    let name = typed("masked_softmax_forward", scores.dtype())?;
    launch!(dev, SOFTMAX_FORWARD, name, row_blocks(rows), ROW_THREADS; &sv, &lv, &probs, &p)?;
    probs.into_tensor(&dev, scores.shape())
}

pub fn masked_softmax_backward(dp: &Tensor, p: &Tensor, scale: f32) -> Result<Tensor> {
    let keys = dp.dim(3)?;
    let rows = dp.elem_count() / keys;
    let dev = device(dp)?;
    let params = SoftmaxParams {
        rows: rows as u32,
        keys: keys as u32,
        rows_per_example: 1,
        scale,
        vectorised: vectorisable(keys, &[dp, p]),
    };
    let ds = output_of(&dev, dp.dtype(), dp.elem_count())?;
    let (dr, pr) = (read(dp)?, read(p)?);
    let (dv, pv) = (dr.view()?, pr.view()?);
    let name = typed("masked_softmax_backward", dp.dtype())?;
    launch!(dev, SOFTMAX_BACKWARD, name, row_blocks(rows), ROW_THREADS; &dv, &pv, &ds, &params)?;
    ds.into_tensor(&dev, dp.shape())
}
