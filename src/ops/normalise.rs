//! Per-example max-normalisation of a batch's per-token values (concatenated; example `b` holds
//! `offsets[b]..offsets[b + 1]`). An example whose maximum is 0 gets zeros. The norms of the
//! one-hot saliency are normalised on the device (a kernel on CUDA, its twin here); the signed
//! attributions of the other methods on the host, where they are copied anyway.

use std::ops::Range;

use candle_core::Tensor;

use crate::error::Result;

/// `raw` `[tokens]` f32, `offsets` `[examples + 1]` u32 → scores `[tokens]`.
pub fn normalise(raw: &Tensor, offsets: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if raw.device().is_cuda() {
        return Ok(crate::ops::kernels::normalise(raw, offsets)?);
    }
    let device = raw.device().clone();
    let raw = raw.to_vec1::<f32>()?;
    let offsets = offsets.to_vec1::<u32>()?;
    let mut scores = vec![0f32; raw.len()];
    for bounds in offsets.windows(2) {
        let range = bounds[0] as usize..bounds[1] as usize;
        let max = raw[range.clone()].iter().copied().fold(0f32, f32::max);
        if max > 0.0 {
            for (s, r) in scores[range.clone()].iter_mut().zip(&raw[range]) {
                *s = r / max;
            }
        }
    }
    Ok(Tensor::from_vec(scores, raw.len(), &device)?)
}

/// Each pair's values divided by their largest magnitude (zeros when all are zero).
pub fn normalise_signed(raw: &[f32], rows: &[Range<usize>]) -> Vec<f32> {
    let mut scores = vec![0f32; raw.len()];
    for r in rows {
        let max = raw[r.clone()].iter().fold(0f32, |m, v| m.max(v.abs()));
        if max > 0.0 {
            for (s, v) in scores[r.clone()].iter_mut().zip(&raw[r.clone()]) {
                *s = v / max;
            }
        }
    }
    scores
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::{normalise, normalise_signed};

    #[test]
    fn each_example_is_divided_by_its_own_max() {
        let dev = Device::Cpu;
        let raw = Tensor::new(&[1f32, 4.0, 2.0, 0.0, 0.0, 3.0], &dev).unwrap();
        let offsets = Tensor::new(&[0u32, 3, 5, 6], &dev).unwrap();
        let scores = normalise(&raw, &offsets).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(scores, [0.25, 1.0, 0.5, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn signed_values_are_divided_by_their_largest_magnitude() {
        let scores = normalise_signed(&[1.0, -4.0, 2.0, 0.0, 0.0, -3.0], &[0..3, 3..5, 5..6]);
        assert_eq!(scores, [0.25, -1.0, 0.5, 0.0, 0.0, -1.0]);
    }
}
