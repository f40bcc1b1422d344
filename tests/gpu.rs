//! Every CUDA kernel against its CPU twin on fresh random inputs of awkward sizes, with kernel
//! outputs poisoned (NaN) before each run so an unwritten element fails; the ops and the whole
//! input-gradient backward against candle's autograd run on the GPU by tests/backward.rs (one
//! test per body and device); here the fixture explanations on the GPU against the CPU. Without
//! the `cuda` feature or a GPU each test prints why it is skipped, or fails where
//! `SPANGRAD_REQUIRE_GPU=1`.

mod common;

use std::io::Write;

use candle_core::{DType, Device, Tensor};
use common::*;
use spangrad::explain::saliency::{Dense, Gram, Saliency, Streaming};
use spangrad::model::Activation;
use spangrad::ops;
use spangrad::ops::{gather_dot, normalise};
use spangrad::{ExplainOptions, Explainer, Precision, SaliencyKind, SpanMode};

/// A test of one body on the GPU, as [`common::gpu`] says.
macro_rules! gpu_test {
    ($name:ident, |$gpu:ident| $body:block) => {
        #[test]
        fn $name() {
            let Some($gpu) = gpu(stringify!($name)) else {
                return;
            };
            $body
        }
    };
}

/// (tokens, vocabulary, hidden): one token, sizes off every tile, hidden not a multiple of 32.
const SHAPES: [(usize, usize, usize); 4] = [
    (1, 300, 37),
    (130, 4099, 64),
    (257, 2177, 100),
    (70, 30_522, 768),
];

const DTYPES: [(DType, f64); 3] = [(DType::F32, 1e-5), (DType::F16, 1e-2), (DType::BF16, 1e-2)];

/// `‖a − b‖ / ‖b‖`; NaN anywhere (an unwritten, poisoned element) fails.
fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    let a = a
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let b = b
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert_eq!(a.len(), b.len());
    assert!(
        a.iter().all(|v| v.is_finite()),
        "non-finite output: an element was not written"
    );
    let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(1e-300)).sqrt()
}

/// `‖t‖₂` in f64; NaN anywhere (an unwritten, poisoned element) fails.
fn l2(t: &Tensor) -> f64 {
    let v = t
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    assert!(
        v.iter().all(|x| x.is_finite()),
        "non-finite output: an element was not written"
    );
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The GPU result is within `tol` of its CPU twin.
fn assert_close(got: &Tensor, twin: &Tensor, tol: f64, what: String) {
    let err = relative_error(got, twin);
    assert!(err <= tol, "{what}: relative error {err} > {tol}");
}

/// Random CPU data rounded to `dtype`: the GPU gets it in `dtype`, the CPU twin in f32.
fn random(shape: impl Into<candle_core::Shape>, dtype: DType, gpu: &Device) -> (Tensor, Tensor) {
    let x = (Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap() + 0.1)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    (x.to_device(gpu).unwrap(), x.to_dtype(DType::F32).unwrap())
}

fn random_ids(shape: (usize, usize), vocab: usize, gpu: &Device) -> (Tensor, Tensor) {
    let ids = Tensor::rand(0f32, vocab as f32, shape, &Device::Cpu)
        .unwrap()
        .floor()
        .unwrap()
        .clamp(0f32, (vocab - 1) as f32)
        .unwrap()
        .to_dtype(DType::U32)
        .unwrap();
    (ids.to_device(gpu).unwrap(), ids)
}

gpu_test!(streaming_and_gram_kernels_match_their_cpu_twins, |gpu| {
    for (tokens, vocab, hidden) in SHAPES {
        for (dtype, tol) in DTYPES {
            let (g_gpu, g_cpu) = random((tokens, hidden), dtype, &gpu);
            let (e_gpu, e_cpu) = random((vocab, hidden), dtype, &gpu);
            let twin = Streaming::new(e_cpu.clone(), 512)
                .unwrap()
                .norms(&g_cpu)
                .unwrap();
            let got = Streaming::new(e_gpu.clone(), 512)
                .unwrap()
                .norms(&g_gpu)
                .unwrap();
            assert_close(
                &got,
                &twin,
                tol,
                format!("streaming {dtype:?} {tokens}x{vocab}x{hidden}"),
            );
            let twin = Gram::new(&e_cpu).unwrap().norms(&g_cpu).unwrap();
            let got = Gram::new(&e_gpu).unwrap().norms(&g_gpu).unwrap();
            assert_close(
                &got,
                &twin,
                tol,
                format!("gram {dtype:?} {tokens}x{vocab}x{hidden}"),
            );
        }
    }
});

gpu_test!(dense_on_the_gpu_matches_the_cpu, |gpu| {
    for (tokens, vocab, hidden) in SHAPES {
        let (g_gpu, g_cpu) = random((tokens, hidden), DType::F32, &gpu);
        let (e_gpu, e_cpu) = random((vocab, hidden), DType::F32, &gpu);
        let twin = Dense::new(e_cpu.clone()).norms(&g_cpu).unwrap();
        let got = Dense::new(e_gpu.clone()).norms(&g_gpu).unwrap();
        assert_close(
            &got,
            &twin,
            1e-5,
            format!("dense {tokens}x{vocab}x{hidden}"),
        );
        let (ids_gpu, ids_cpu) = random_ids((tokens, 1), vocab, &gpu);
        let twin = Dense::new(e_cpu)
            .embed(&ids_cpu.squeeze(1).unwrap())
            .unwrap();
        let got = Dense::new(e_gpu)
            .embed(&ids_gpu.squeeze(1).unwrap())
            .unwrap();
        assert_close(
            &got,
            &twin,
            0.0,
            "the one-hot product picks rows exactly".into(),
        );
    }
});

gpu_test!(gather_dot_matches_its_cpu_twin, |gpu| {
    for (tokens, vocab, hidden) in SHAPES {
        for (dtype, tol) in DTYPES {
            let (g_gpu, g_cpu) = random((tokens, hidden), dtype, &gpu);
            let (e_gpu, e_cpu) = random((vocab, hidden), dtype, &gpu);
            for k in [1, 3] {
                let (ids_gpu, ids_cpu) = random_ids((tokens, k), vocab, &gpu);
                let twin = gather_dot(&g_cpu, &e_cpu, &ids_cpu).unwrap();
                let got = gather_dot(&g_gpu, &e_gpu, &ids_gpu).unwrap();
                // Relative to Σ|g·e| rather than to the dot products themselves: a single dot
                // product that cancels to near zero is rounded differently by the two summation
                // orders (one token at 37 dimensions failed 1e-5 that way on an H100).
                let scale =
                    gather_dot(&g_cpu.abs().unwrap(), &e_cpu.abs().unwrap(), &ids_cpu).unwrap();
                let diff = (got.to_device(&Device::Cpu).unwrap() - &twin).unwrap();
                let err = l2(&diff) / l2(&scale);
                assert!(
                    err <= tol,
                    "{dtype:?} k={k} {tokens}x{vocab}x{hidden}: {err} > {tol}"
                );
            }
        }
    }
});

gpu_test!(normalise_matches_its_cpu_twin, |gpu| {
    let lengths = [1usize, 384, 0, 1000, 37];
    let mut offsets = vec![0u32];
    for l in lengths {
        offsets.push(offsets.last().unwrap() + l as u32);
    }
    let total = *offsets.last().unwrap() as usize;
    let raw = Tensor::rand(0f32, 5.0, total, &Device::Cpu).unwrap();
    // The last example is all zeros: it must get zeros, not NaN.
    let zeros = Tensor::zeros(37, DType::F32, &Device::Cpu).unwrap();
    let raw = Tensor::cat(&[raw.narrow(0, 0, total - 37).unwrap(), zeros], 0).unwrap();
    let offsets = Tensor::new(offsets, &Device::Cpu).unwrap();
    let twin = normalise(&raw, &offsets).unwrap();
    let got = normalise(
        &raw.to_device(&gpu).unwrap(),
        &offsets.to_device(&gpu).unwrap(),
    )
    .unwrap();
    assert_eq!(
        got.to_vec1::<f32>().unwrap(),
        twin.to_vec1::<f32>().unwrap()
    );
});

gpu_test!(fixture_explanations_on_the_gpu_equal_the_cpu, |gpu| {
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        let pairs = pairs(&expected);
        for saliency in SaliencyKind::ALL {
            let options = ExplainOptions {
                saliency,
                span: SpanMode::Best,
                dtype: Some(Precision::F32),
                ..ExplainOptions::default()
            };
            let on_gpu = Explainer::from_dir(&fixture(dir), options.clone(), &gpu).unwrap();
            let on_cpu = Explainer::from_dir(&fixture(dir), options, &Device::Cpu).unwrap();
            let (g, c) = (
                on_gpu.explain(&pairs).unwrap(),
                on_cpu.explain(&pairs).unwrap(),
            );
            for ((g, c), p) in g.iter().zip(&c).zip(&expected.pairs) {
                assert_eq!(g.answer.text, c.answer.text, "{arch} {saliency}");
                assert!(
                    max_abs_diff(&scores(g), &scores(c)) < 1e-4,
                    "{arch} {saliency}"
                );
                if p.pipeline_span.is_some() {
                    assert!(
                        max_abs_diff(&scores(g), &target(p, "pipeline").score) < 1e-4,
                        "{arch} {saliency}"
                    );
                }
            }
        }
    }
});

gpu_test!(evaluations_on_the_gpu_equal_the_cpu, |gpu| {
    use spangrad::evaluate::{EvaluateOptions, Evaluator};
    use spangrad::explain::Method;
    for (arch, dir) in MODELS {
        let pairs = pairs(&expected(arch));
        let options = ExplainOptions {
            dtype: Some(Precision::F32),
            ..ExplainOptions::default()
        };
        let evaluate = EvaluateOptions {
            methods: vec![Method::OnehotNorm, Method::GradXInput],
            ..EvaluateOptions::default()
        };
        let evaluated = |device: &Device| {
            let explainer = Explainer::from_dir(&fixture(dir), options.clone(), device).unwrap();
            Evaluator::new(&explainer, evaluate.clone())
                .unwrap()
                .evaluate_each(&pairs)
                .unwrap()
        };
        for (g, c) in evaluated(&gpu).into_iter().zip(evaluated(&Device::Cpu)) {
            let (Ok(g), Ok(c)) = (g, c) else { continue };
            assert_eq!(g.eligible, c.eligible, "{arch}");
            assert!((g.probability - c.probability).abs() < 1e-4, "{arch}");
            let (gr, cr) = (g.random.unwrap(), c.random.unwrap());
            assert_eq!(
                gr.rankings, cr.rankings,
                "{arch}: the random orders are the pair's"
            );
            let close = |a: Option<f64>, b: Option<f64>| (a.unwrap() - b.unwrap()).abs() < 1e-4;
            assert!(close(
                gr.metrics.aopc_comprehensiveness,
                cr.metrics.aopc_comprehensiveness
            ));
            assert!(close(
                gr.metrics.aopc_sufficiency,
                cr.metrics.aopc_sufficiency
            ));
            for (gm, cm) in g.methods.iter().zip(&c.methods) {
                assert!(max_abs_diff(&gm.scores, &cm.scores) < 1e-4, "{arch}");
                // Scores within 1e-4 rank alike but where two are that close.
                let rank = |s: &[f32]| {
                    let all: Vec<usize> = (0..s.len()).collect();
                    spangrad::evaluate::metrics::ranking(s, &all)
                };
                if rank(&gm.scores) == rank(&cm.scores) {
                    let (a, b) = (&gm.metrics, &cm.metrics);
                    assert!(
                        close(a.aopc_comprehensiveness, b.aopc_comprehensiveness),
                        "{arch}"
                    );
                    assert!(close(a.aopc_sufficiency, b.aopc_sufficiency), "{arch}");
                }
            }
        }
    }
});

/// (rows, width) off every warp and block boundary.
const ROW_SHAPES: [(usize, usize); 4] = [(1, 7), (33, 100), (257, 768), (5, 3072)];

gpu_test!(layer_norm_kernels_match_their_cpu_twins, |gpu| {
    for (rows, hidden) in ROW_SHAPES {
        for (dtype, tol) in DTYPES {
            for fused in [false, true] {
                let what = format!("layer norm {dtype:?} {rows}x{hidden} fused {fused}");
                let [x, r, d, dr] = [0; 4].map(|_| random((rows, hidden), dtype, &gpu));
                let [bias, gamma, beta] = [0; 3].map(|_| random(hidden, dtype, &gpu));
                let on = |x: &Tensor, r: &Tensor, b: &Tensor, g: &Tensor, be: &Tensor| {
                    let (r, b) = if fused {
                        (Some(r), Some(b))
                    } else {
                        (None, None)
                    };
                    ops::layer_norm_forward(x, r, b, g, be, 1e-12).unwrap()
                };
                let (y_g, saved_g) = on(&x.0, &r.0, &bias.0, &gamma.0, &beta.0);
                let (y_c, saved_c) = on(&x.1, &r.1, &bias.1, &gamma.1, &beta.1);
                assert_close(&y_g, &y_c, tol, format!("{what}: y"));
                assert_close(&saved_g.xhat, &saved_c.xhat, tol, format!("{what}: x̂"));
                assert_close(&saved_g.rstd, &saved_c.rstd, tol, format!("{what}: rstd"));
                let dres = |t: &Tensor| fused.then(|| t.clone());
                let dx_g = ops::layer_norm_backward(&d.0, dres(&dr.0).as_ref(), &saved_g, &gamma.0)
                    .unwrap();
                let dx_c = ops::layer_norm_backward(&d.1, dres(&dr.1).as_ref(), &saved_c, &gamma.1)
                    .unwrap();
                assert_close(&dx_g, &dx_c, tol, format!("{what}: dx"));
            }
        }
    }
});

gpu_test!(activation_kernels_match_their_cpu_twins, |gpu| {
    for act in [Activation::Gelu, Activation::GeluTanh, Activation::Relu] {
        for (rows, width) in ROW_SHAPES {
            for (dtype, tol) in DTYPES {
                let what = format!("{act:?} {dtype:?} {rows}x{width}");
                let [x, d] = [0; 2].map(|_| random((rows, width), dtype, &gpu));
                let bias = random(width, dtype, &gpu);
                let (u_g, a_g) = ops::bias_activation_forward(&x.0, &bias.0, act).unwrap();
                let (u_c, a_c) = ops::bias_activation_forward(&x.1, &bias.1, act).unwrap();
                assert_close(&u_g, &u_c, tol, format!("{what}: u"));
                assert_close(&a_g, &a_c, tol, format!("{what}: act(u)"));
                let du_g = ops::activation_backward(&d.0, &u_g, act).unwrap();
                let du_c = ops::activation_backward(&d.1, &u_c, act).unwrap();
                assert_close(&du_g, &du_c, tol, format!("{what}: du"));
            }
        }
    }
});

gpu_test!(softmax_kernels_match_their_cpu_twins, |gpu| {
    let cases: [([usize; 4], &[u32]); 4] = [
        ([2, 3, 5, 7], &[7, 0]),
        ([1, 12, 384, 384], &[200]),
        ([3, 2, 2, 513], &[513, 1, 300]),
        ([4, 1, 33, 33], &[33, 32, 31, 1]),
    ];
    for (shape, lengths) in cases {
        for (dtype, tol) in DTYPES {
            let what = format!("softmax {dtype:?} {shape:?} lengths {lengths:?}");
            let lengths_c = Tensor::new(lengths, &Device::Cpu).unwrap();
            let lengths_g = lengths_c.to_device(&gpu).unwrap();
            let [s, d] = [0; 2].map(|_| random(&shape[..], dtype, &gpu));
            let p_g = ops::masked_softmax_forward(&s.0, &lengths_g, 0.125).unwrap();
            let p_c = ops::masked_softmax_forward(&s.1, &lengths_c, 0.125).unwrap();
            assert_close(&p_g, &p_c, tol, format!("{what}: p"));
            let ds_g = ops::masked_softmax_backward(&d.0, &p_g, 0.125).unwrap();
            let ds_c = ops::masked_softmax_backward(&d.1, &p_c, 0.125).unwrap();
            assert_close(&ds_g, &ds_c, tol, format!("{what}: ds"));
        }
    }
});

gpu_test!(bf16_explanations_on_the_gpu_track_f32, |gpu| {
    for (arch, dir) in MODELS {
        let expected = expected(arch);
        let pairs = pairs(&expected);
        let run = |precision, device: &Device| {
            let options = ExplainOptions {
                dtype: Some(precision),
                ..ExplainOptions::default()
            };
            Explainer::from_dir(&fixture(dir), options, device)
                .unwrap()
                .explain(&pairs)
                .unwrap()
        };
        let (half, full) = (
            run(Precision::Bf16, &gpu),
            run(Precision::F32, &Device::Cpu),
        );
        let worst = half
            .iter()
            .zip(&full)
            .map(|(h, f)| max_abs_diff(&scores(h), &scores(f)))
            .fold(0f32, f32::max);
        let _ = writeln!(
            std::io::stderr(),
            "{arch}: bf16 on the GPU vs f32, largest score difference {worst:.4}"
        );
        assert!(
            worst < 0.05,
            "{arch}: bf16 scores differ from f32 by {worst}"
        );
    }
});

gpu_test!(head_layout_kernels_match_their_cpu_twins, |gpu| {
    use spangrad::ops::{merge_heads, split_heads};
    // (pairs, queries, heads, head_dim, parts): odd head sizes take the scalar path.
    for (pairs, queries, heads, head_dim, parts) in [
        (2, 5, 3, 7, 3),
        (3, 2, 12, 64, 3),
        (4, 33, 2, 64, 1),
        (1, 1, 1, 8, 2),
    ] {
        let width = parts * heads * head_dim;
        for (dtype, tol) in DTYPES {
            let what = format!("heads {dtype:?} {pairs}x{queries}, {parts} x {heads} x {head_dim}");
            let x = random((pairs * queries, width), dtype, &gpu);
            let bias = random(width, dtype, &gpu);
            for with_bias in [false, true] {
                let b = |t: &Tensor| with_bias.then(|| t.to_dtype(dtype).unwrap());
                let got = split_heads(&x.0, b(&bias.0).as_ref(), queries, heads, head_dim).unwrap();
                let twin = split_heads(
                    &x.1.to_dtype(dtype).unwrap(),
                    b(&bias.1).as_ref(),
                    queries,
                    heads,
                    head_dim,
                )
                .unwrap();
                assert_close(&got, &twin, tol, format!("{what}: split, bias {with_bias}"));
                let parts_gpu: Vec<Tensor> = (0..parts).map(|i| got.get(i).unwrap()).collect();
                let parts_cpu: Vec<Tensor> = (0..parts).map(|i| twin.get(i).unwrap()).collect();
                let merged = merge_heads(&parts_gpu).unwrap();
                assert_close(
                    &merged,
                    &merge_heads(&parts_cpu).unwrap(),
                    0.0,
                    format!("{what}: merge"),
                );
            }
        }
    }
});

#[cfg(feature = "cuda")]
gpu_test!(cublaslt_linear_with_bias_matches_its_cpu_twin, |gpu| {
    use spangrad::ops::kernels::gemm::linear_bias;
    // (rows, inputs, outputs): one row, sizes off every tile and off 8-element alignment.
    for (m, k, n) in [
        (1, 64, 96),
        (37, 100, 300),
        (130, 768, 2304),
        (257, 3072, 768),
    ] {
        for (dtype, tol) in [(DType::BF16, 1e-2), (DType::F16, 5e-3)] {
            let what = format!("x·Wᵀ + b {dtype:?} [{m}, {k}] x [{n}, {k}]");
            let (x_g, x_c) = random((m, k), dtype, &gpu);
            let (w_g, w_c) = random((n, k), dtype, &gpu);
            let (b_g, b_c) = random(n, dtype, &gpu);
            let got = linear_bias(&x_g, &w_g, &b_g).unwrap();
            assert_eq!(got.dtype(), dtype);
            let want = x_c
                .matmul(&w_c.t().unwrap())
                .unwrap()
                .broadcast_add(&b_c)
                .unwrap();
            assert_close(&got, &want, tol, what);
        }
    }
});

// cuDNN's fused attention (feature `cudnn`) against attention of candle ops and its autograd,
// reading Q, K, V from one `[b·t, 3h]` product and writing token layout, as the encoder
// calls it: padded pairs, a pair of one token, odd head counts, head sizes 16 to 128. Without
// cuDNN it says so, and fails where `SPANGRAD_REQUIRE_CUDNN=1` (the GPU check).
#[cfg(feature = "cudnn")]
gpu_test!(cudnn_attention_matches_autograd, |gpu| {
    use candle_core::Var;
    use spangrad::ops::attention_kind::switch;
    use spangrad::ops::kernels::cudnn;

    let setting = std::env::var(switch::VARIABLE).ok();
    if let Err(why) = cudnn::load(switch::requested(setting.as_deref()).flatten()) {
        assert!(
            std::env::var_os("SPANGRAD_REQUIRE_CUDNN").is_none(),
            "cuDNN is required here: {why}"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED cudnn_attention_matches_autograd: {why}"
        );
        return;
    }
    // (pairs, heads, tokens, head_dim, lengths)
    let cases: [(usize, usize, usize, usize, &[u32]); 5] = [
        (3, 3, 37, 64, &[37, 20, 1]),
        (2, 12, 384, 64, &[384, 150]),
        (1, 2, 1, 32, &[1]),
        (4, 5, 130, 128, &[130, 129, 64, 2]),
        (2, 2, 64, 16, &[64, 3]),
    ];
    for (b, a, t, d, lengths) in cases {
        for (dtype, tol) in [(DType::BF16, 2e-2), (DType::F16, 1e-2)] {
            let what = format!("cuDNN attention {dtype:?} b={b} a={a} t={t} d={d} {lengths:?}");
            let h = a * d;
            let scale = 1.0 / (d as f64).sqrt();
            let lengths_c = Tensor::new(lengths, &Device::Cpu).unwrap();
            let lengths_g = lengths_c.to_device(&gpu).unwrap();
            // Padded rows carry no gradient in the engine (their outputs reach nothing real).
            let real: Vec<f32> = (0..b * t)
                .map(|r| f32::from((r % t) < lengths[r / t] as usize))
                .collect();
            let real = Tensor::from_vec(real, (b * t, 1), &Device::Cpu).unwrap();
            let (qkv_g, qkv_c) = random((b * t, 3 * h), dtype, &gpu);
            let dout_c = random((b * t, h), dtype, &gpu)
                .1
                .broadcast_mul(&real)
                .unwrap();
            let dout_g = dout_c.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();

            let (o, stats) = cudnn::attention_forward(&qkv_g, &lengths_g, t, a, scale).unwrap();
            let dqkv =
                cudnn::attention_backward(&qkv_g, &o, &stats, &dout_g, &lengths_g, t, a, scale)
                    .unwrap();

            let heads = qkv_c
                .reshape((b, t, 3, a, d))
                .unwrap()
                .permute((2, 0, 3, 1, 4))
                .unwrap()
                .contiguous()
                .unwrap();
            let [q, k, v] = [0, 1, 2].map(|i| Var::from_tensor(&heads.get(i).unwrap()).unwrap());
            let context = ops::attention_slow(
                q.as_tensor(),
                k.as_tensor(),
                v.as_tensor(),
                &lengths_c,
                scale,
            )
            .unwrap()
            .permute((0, 2, 1, 3))
            .unwrap()
            .reshape((b * t, h))
            .unwrap();
            // cuDNN writes zeros past each pair's length; the twin's padded rows are unused.
            let context = context.broadcast_mul(&real).unwrap();
            assert_close(&o, &context, tol, format!("{what}: context"));
            let grads = (&context * &dout_c)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let [dq, dk, dv] = [&q, &k, &v].map(|x| grads.get(x.as_tensor()).unwrap().clone());
            let want = Tensor::stack(&[dq, dk, dv], 0)
                .unwrap()
                .permute((1, 3, 0, 2, 4))
                .unwrap()
                .reshape((b * t, 3 * h))
                .unwrap();
            assert_close(&dqkv, &want, tol, format!("{what}: dQ, dK, dV"));
        }
    }
    let (graphs, ms) = cudnn::graphs_built();
    let _ = writeln!(
        std::io::stderr(),
        "cuDNN attention: {graphs} graphs built in {ms:.0} ms"
    );
});
