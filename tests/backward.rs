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

/// The CPU's per-(pair, head) attention against candle ops and their autograd, over all query
/// rows and over a subset (the first and last rows, as the sparse last layer asks).
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
        let lengths = Tensor::new(lengths, &dev).unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let [q, k, v] = [0, 1, 2].map(|_| Var::from_tensor(&randn(&shape, &dev)).unwrap());
        let (context, lse) = ops::attention_forward_cpu(
            q.as_tensor(),
            k.as_tensor(),
            v.as_tensor(),
            &lengths,
            scale,
        )
        .unwrap();
        let slow =
            ops::attention_slow(q.as_tensor(), k.as_tensor(), v.as_tensor(), &lengths, scale)
                .unwrap();
        assert_close(&context, &slow, TOL, &what);
        assert_eq!(lse.dims(), [b, a, t]);

        // Only rows 0 and t - 1 of the context receive a gradient.
        let rows = Tensor::new(&[0u32, t as u32 - 1], &dev).unwrap();
        let mut mask = vec![0f32; t];
        mask[0] = 1.0;
        mask[t - 1] = 1.0;
        let mask = Tensor::from_vec(mask, (1, 1, t, 1), &dev).unwrap();
        let dcontext = randn(&shape, &dev).broadcast_mul(&mask).unwrap();
        let grads = (&slow * &dcontext)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let [gq, gk, gv] = [&q, &k, &v].map(|x| grads.get(x.as_tensor()).unwrap().clone());

        let (dq, dk, dv) = ops::attention_backward_cpu(
            &dcontext,
            q.as_tensor(),
            k.as_tensor(),
            v.as_tensor(),
            &lse,
            &lengths,
            scale,
        )
        .unwrap();
        for (got, want, name) in [(&dq, &gq, "dQ"), (&dk, &gk, "dK"), (&dv, &gv, "dV")] {
            assert_close(got, want, TOL, &format!("{what}: {name}, all rows"));
        }

        let pick = |x: &Tensor| x.index_select(&rows, 2).unwrap().contiguous().unwrap();
        let (dq, dk, dv) = ops::attention_backward_cpu(
            &pick(&dcontext),
            &pick(q.as_tensor()),
            k.as_tensor(),
            v.as_tensor(),
            &pick(&lse.unsqueeze(3).unwrap()).squeeze(3).unwrap(),
            &lengths,
            scale,
        )
        .unwrap();
        assert_close(&dq, &pick(&gq), TOL, &format!("{what}: dQ, two rows"));
        assert_close(&dk, &gk, TOL, &format!("{what}: dK, two rows"));
        assert_close(&dv, &gv, TOL, &format!("{what}: dV, two rows"));
    }
}
