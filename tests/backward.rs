//! The hand-written input-gradient backward against candle's autograd on the CPU: every fused
//! op, the CPU's fused attention, and the whole model on random models of awkward sizes (odd
//! head size, one layer, a single token, padding); half precision against f32. Each body runs
//! once per device (`*_cpu`, `*_gpu`).

mod common;

use candle_core::{Device, Tensor, Var};
use common::backward::{self, assert_close, randn, TOL};
use common::fixture;
use spangrad::ops;

test_device!(
    backward::layer_norm_matches_autograd,
    layer_norm_matches_autograd_cpu,
    layer_norm_matches_autograd_gpu
);
test_device!(
    backward::activations_match_autograd,
    activations_match_autograd_cpu,
    activations_match_autograd_gpu
);
test_device!(
    backward::softmax_matches_autograd,
    softmax_matches_autograd_cpu,
    softmax_matches_autograd_gpu
);
test_device!(
    backward::model_gradient_matches_autograd,
    model_gradient_matches_autograd_cpu,
    model_gradient_matches_autograd_gpu
);
test_device!(
    |dev| backward::half_precision_tracks_f32(&fixture("bert-tiny"), dev),
    half_precision_tracks_f32_cpu,
    half_precision_tracks_f32_gpu
);

/// The CPU's per-(pair, head) attention, in token layout, against candle ops and their
/// autograd in head layout, over all query rows and over a subset (the first and last rows, as
/// the sparse last layer asks).
#[test]
fn cpu_attention_matches_autograd_on_all_rows_and_a_subset() {
    let dev = Device::Cpu;
    let cases: [([usize; 4], &[u32]); 3] = [
        ([2, 3, 7, 5], &[7, 4]),
        ([3, 2, 33, 8], &[33, 2, 20]),
        ([1, 4, 2, 64], &[1]),
    ];
    for (shape @ [b, a, t, d], lengths) in cases {
        let what = format!("attention {shape:?} lengths {lengths:?}");
        let h = a * d;
        let lengths = Tensor::new(lengths, &dev).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let qkv = Var::from_tensor(&randn(&[b * t, 3 * h], &dev)).unwrap();
        let (context, lse) =
            ops::attention_forward_cpu(qkv.as_tensor(), &lengths, a, scale).unwrap();
        let heads = ops::split_heads_slow(qkv.as_tensor(), None, t, a, d).unwrap();
        let [q, k, v] = [0, 1, 2].map(|i| heads.get(i).unwrap());
        let slow =
            ops::merge_heads_slow(&[ops::attention_slow(&q, &k, &v, &lengths, scale).unwrap()])
                .unwrap();
        assert_close(&context, &slow, TOL, &what);
        assert_eq!(lse.dims(), [b, a, t]);

        // Only rows 0 and t - 1 of each pair's context receive a gradient.
        let rows: Vec<u32> = (0..b as u32)
            .flat_map(|p| [p * t as u32, p * t as u32 + t as u32 - 1])
            .collect();
        let rows = Tensor::new(rows.as_slice(), &dev).unwrap();
        let mut mask = vec![0f32; b * t];
        for p in 0..b {
            mask[p * t] = 1.0;
            mask[p * t + t - 1] = 1.0;
        }
        let mask = Tensor::from_vec(mask, (b * t, 1), &dev).unwrap();
        let dcontext = randn(&[b * t, h], &dev).broadcast_mul(&mask).unwrap();
        let grads = (&slow * &dcontext)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let want = grads.get(qkv.as_tensor()).unwrap();

        let dqkv =
            ops::attention_backward_cpu(&dcontext, qkv.as_tensor(), &lse, &lengths, a, scale)
                .unwrap();
        assert_close(&dqkv, want, TOL, &format!("{what}: dQKV, all rows"));

        let pick = |x: &Tensor| x.index_select(&rows, 0).unwrap();
        let head_rows: Vec<u32> = (0..b * a)
            .flat_map(|block| [block * t, block * t + t - 1])
            .map(|r| r as u32)
            .collect();
        let head_rows = Tensor::new(head_rows.as_slice(), &dev).unwrap();
        let lse_rows = lse
            .reshape((b * a * t, 1))
            .unwrap()
            .index_select(&head_rows, 0)
            .unwrap()
            .reshape((b, a, 2))
            .unwrap();
        let (dq, dkv) = ops::attention_backward_rows_cpu(
            &pick(&dcontext),
            &pick(qkv.as_tensor()),
            qkv.as_tensor(),
            &lse_rows,
            &lengths,
            a,
            scale,
        )
        .unwrap();
        let want_q = pick(&want.narrow(1, 0, h).unwrap().contiguous().unwrap());
        assert_close(&dq, &want_q, TOL, &format!("{what}: dQ, two rows"));
        let want_kv = want.narrow(1, h, 2 * h).unwrap();
        assert_close(&dkv, &want_kv, TOL, &format!("{what}: dK dV, two rows"));
    }
}
