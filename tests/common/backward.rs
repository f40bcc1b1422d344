//! Test bodies that run on any device (tests/backward.rs on the CPU, tests/gpu.rs on a GPU):
//! each fused op and the whole input-gradient backward against candle's autograd through the
//! `*_slow` twins, on fresh random inputs of awkward sizes.

use candle_core::{DType, Device, Tensor, Var};
use spangrad::model::preset::{random_model, RandomWeights};
use spangrad::model::{Activation, Architecture, ModelConfig, Objective, QaModel};
use spangrad::ops;

/// f32 tolerance of every comparison with autograd (relative, in the L2 norm).
pub const TOL: f64 = 1e-5;

pub fn randn(shape: &[usize], dev: &Device) -> Tensor {
    // Shifted so that no input is centred on zero by accident.
    (Tensor::randn(0f32, 1.0, shape, dev).unwrap() + 0.1).unwrap()
}

/// `‖a − b‖ / ‖b‖` in f64; fails on any non-finite element of `a`.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    rel_err_floor(a, b, 0.0)
}

/// `‖a − b‖ / max(‖b‖, floor)`: for values of order one that may happen to be near zero (a
/// single logit), where `‖b‖` alone would turn rounding into a large relative error.
fn rel_err_floor(a: &Tensor, b: &Tensor, floor: f64) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let flat = |t: &Tensor| {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    };
    let (a, b) = (flat(a), flat(b));
    assert!(a.iter().all(|v| v.is_finite()), "non-finite output");
    let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(floor * floor).max(1e-300)).sqrt()
}

pub fn assert_close(got: &Tensor, want: &Tensor, tol: f64, what: &str) {
    let e = rel_err(got, want);
    assert!(
        e < tol,
        "{what}: relative error {e:.3e} (tolerance {tol:.0e})"
    );
}

/// The gradient of `Σ y ⊙ r` with respect to each of `vars`.
fn autograd(y: &Tensor, r: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
    let grads = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    vars.iter()
        .map(|v| {
            grads
                .get(v.as_tensor())
                .expect("gradient reached the input")
                .clone()
        })
        .collect()
}

pub fn layer_norm_matches_autograd(dev: &Device) {
    for (rows, hidden) in [(1, 7), (5, 37), (33, 100), (3, 768)] {
        for fused in [false, true] {
            let x = Var::from_tensor(&randn(&[rows, hidden], dev)).unwrap();
            let r = Var::from_tensor(&randn(&[rows, hidden], dev)).unwrap();
            let bias = randn(&[hidden], dev);
            let gamma = randn(&[hidden], dev);
            let beta = randn(&[hidden], dev);
            let (residual, b) = if fused {
                (Some(r.as_tensor()), Some(&bias))
            } else {
                (None, None)
            };
            let what = format!("layer norm {rows}x{hidden}, residual and bias {fused}");
            let (y, saved) =
                ops::layer_norm_forward(x.as_tensor(), residual, b, &gamma, &beta, 1e-12).unwrap();
            let slow =
                ops::layer_norm_slow(x.as_tensor(), residual, b, &gamma, &beta, 1e-12).unwrap();
            assert_close(&y, &slow, TOL, &what);
            // The output's gradient arrives as two terms; the backward adds them.
            let (d1, d2) = (randn(&[rows, hidden], dev), randn(&[rows, hidden], dev));
            let dx = ops::layer_norm_backward(&d1, Some(&d2), &saved, &gamma).unwrap();
            let vars: Vec<&Var> = if fused { vec![&x, &r] } else { vec![&x] };
            for g in autograd(&slow, &(&d1 + &d2).unwrap(), &vars) {
                assert_close(&dx, &g, TOL, &what);
            }
        }
    }
}

pub fn activations_match_autograd(dev: &Device) {
    for act in [Activation::Gelu, Activation::GeluTanh, Activation::Relu] {
        for (rows, width) in [(1, 7), (9, 37), (4, 3072)] {
            let x = Var::from_tensor(&(randn(&[rows, width], dev) * 3.0).unwrap()).unwrap();
            let bias = randn(&[width], dev);
            let what = format!("{act:?} {rows}x{width}");
            let (u, a) = ops::bias_activation_forward(x.as_tensor(), &bias, act).unwrap();
            let slow = ops::bias_activation_slow(x.as_tensor(), &bias, act).unwrap();
            assert_close(&u, &x.as_tensor().broadcast_add(&bias).unwrap(), TOL, &what);
            assert_close(&a, &slow, TOL, &what);
            let dout = randn(&[rows, width], dev);
            let du = ops::activation_backward(&dout, &u, act).unwrap();
            assert_close(&du, &autograd(&slow, &dout, &[&x])[0], TOL, &what);
        }
    }
}

pub fn softmax_matches_autograd(dev: &Device) {
    let cases: [(&[usize], &[u32]); 4] = [
        (&[2, 3, 5, 7], &[7, 4]),
        (&[1, 1, 1, 1], &[1]),
        (&[3, 2, 9, 9], &[9, 1, 5]),
        (&[2, 4, 2, 300], &[300, 131]),
    ];
    for (shape, lengths) in cases {
        let what = format!("softmax {shape:?} lengths {lengths:?}");
        let lengths = Tensor::new(lengths, dev).unwrap();
        let s = Var::from_tensor(&(randn(shape, dev) * 4.0).unwrap()).unwrap();
        let scale = 0.37;
        let p = ops::masked_softmax_forward(s.as_tensor(), &lengths, scale).unwrap();
        let slow = ops::masked_softmax_slow(s.as_tensor(), &lengths, scale).unwrap();
        assert_close(&p, &slow, TOL, &what);
        let dp = randn(shape, dev);
        let ds = ops::masked_softmax_backward(&dp, &p, scale).unwrap();
        assert_close(&ds, &autograd(&slow, &dp, &[&s])[0], TOL, &what);
    }
    // A row with no real key is all zeros, never NaN.
    let s = randn(&[1, 2, 3, 4], dev);
    let p = ops::masked_softmax_forward(&s, &Tensor::new(&[0u32], dev).unwrap(), 1.0).unwrap();
    let p = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(p.iter().all(|&v| v == 0.0), "{p:?}");
}

/// A config of awkward sizes: hidden 21 over 3 heads of 7, intermediate 37; each
/// architecture's own embeddings (RoBERTa's positions from 2 and one token type, ELECTRA's and
/// ALBERT's narrow embeddings projected up, ALBERT's blocks shared by two groups of two).
pub fn awkward_config(
    architecture: Architecture,
    layers: usize,
    activation: Activation,
) -> ModelConfig {
    let bert = ModelConfig {
        architecture,
        vocab_size: 53,
        embedding_size: 21,
        hidden_size: 21,
        num_layers: layers,
        num_heads: 3,
        intermediate_size: 37,
        max_position_embeddings: 16,
        position_offset: 0,
        type_vocab_size: 2,
        activation,
        layer_norm_eps: 1e-12,
        layer_groups: layers,
        inner_group_num: 1,
    };
    match architecture {
        Architecture::DistilBert => ModelConfig {
            type_vocab_size: 0,
            ..bert
        },
        Architecture::Roberta | Architecture::XlmRoberta | Architecture::Camembert => ModelConfig {
            max_position_embeddings: 18,
            position_offset: 2,
            type_vocab_size: 1,
            layer_norm_eps: 1e-5,
            ..bert
        },
        Architecture::Electra => ModelConfig {
            embedding_size: 13,
            ..bert
        },
        Architecture::Albert => ModelConfig {
            embedding_size: 10,
            layer_groups: layers.min(2),
            inner_group_num: 2,
            ..bert
        },
        Architecture::Bert => bert,
    }
}

/// Every random choice of one batch: ids, token types, lengths and targets.
pub struct RandomBatch {
    pub lengths: Vec<usize>,
    pub tokens: usize,
    pub ids: Tensor,
    pub types: Tensor,
    pub targets: Vec<Objective>,
}

impl RandomBatch {
    /// Pairs of `lengths` tokens padded to the longest; the targets cover start < end,
    /// start = end, end < start and one pair without a target (when there are three or more).
    pub fn new(lengths: &[usize], vocab: usize, dev: &Device) -> Self {
        let t = *lengths.iter().max().unwrap();
        let mut ids = vec![0u32; lengths.len() * t];
        let mut types = vec![0u32; lengths.len() * t];
        let mut seed = 12345u64;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        let mut targets = Vec::new();
        for (p, &len) in lengths.iter().enumerate() {
            for i in 0..len {
                ids[p * t + i] = next(vocab) as u32;
                types[p * t + i] = u32::from(i > len / 2);
            }
            targets.push(match p % 5 {
                0 => Objective::span(next(len), next(len)),
                1 => Objective::span(len - 1, len - 1),
                2 if lengths.len() >= 3 => Objective::default(),
                3 => Objective {
                    start: None,
                    end: Some(next(len)),
                },
                _ => Objective {
                    start: Some(len - 1),
                    end: None,
                },
            });
        }
        let n = lengths.len() * t;
        Self {
            lengths: lengths.to_vec(),
            tokens: t,
            ids: Tensor::from_vec(ids, n, dev).unwrap(),
            types: Tensor::from_vec(types, n, dev).unwrap(),
            targets,
        }
    }

    pub fn lengths_tensor(&self, dev: &Device) -> Tensor {
        let l: Vec<u32> = self.lengths.iter().map(|&l| l as u32).collect();
        Tensor::new(l, dev).unwrap()
    }

    /// `start[s] + end[e]` summed over the pairs with a target.
    pub fn objective(&self, start: &Tensor, end: &Tensor) -> Tensor {
        let (b, t) = (self.lengths.len(), self.tokens);
        let mut ms = vec![0f32; b * t];
        let mut me = vec![0f32; b * t];
        for (p, target) in self.targets.iter().enumerate() {
            if let Some(s) = target.start {
                ms[p * t + s] += 1.0;
            }
            if let Some(e) = target.end {
                me[p * t + e] += 1.0;
            }
        }
        let dev = start.device();
        let ms = Tensor::from_vec(ms, (b, t), dev)
            .unwrap()
            .to_dtype(start.dtype())
            .unwrap();
        let me = Tensor::from_vec(me, (b, t), dev)
            .unwrap()
            .to_dtype(start.dtype())
            .unwrap();
        ((start * ms).unwrap().sum_all().unwrap() + (end * me).unwrap().sum_all().unwrap()).unwrap()
    }
}

/// The model's saved-activation forward and hand-written backward against candle's autograd
/// through the slow forward; the sparse last layer against the full backward; zeros on padding.
pub fn model_gradient_matches_autograd(dev: &Device) {
    let weights = RandomWeights {
        std: 0.3,
        norm_std: 0.2,
    };
    let cases: [(Architecture, usize, Activation, &[usize]); 9] = [
        (Architecture::Bert, 1, Activation::Gelu, &[7, 3, 1, 5]),
        (Architecture::DistilBert, 3, Activation::Relu, &[9, 9, 2]),
        (Architecture::Bert, 2, Activation::GeluTanh, &[1]),
        (Architecture::DistilBert, 2, Activation::Gelu, &[1, 1]),
        (Architecture::Bert, 3, Activation::Gelu, &[16, 11, 4, 13, 8]),
        (Architecture::Roberta, 2, Activation::Gelu, &[16, 5, 1]),
        (Architecture::Electra, 2, Activation::Gelu, &[9, 4, 12]),
        (
            Architecture::Albert,
            3,
            Activation::GeluTanh,
            &[7, 16, 1, 3],
        ),
        (Architecture::Albert, 1, Activation::GeluTanh, &[5]),
    ];
    for (arch, layers, act, lengths) in cases {
        let what = format!("{arch:?}, {layers} layers, {act:?}, lengths {lengths:?}");
        let config = awkward_config(arch, layers, act);
        let model = random_model(&config, weights, dev, DType::F32).unwrap();
        let batch = RandomBatch::new(lengths, config.vocab_size, dev);
        let lengths_t = batch.lengths_tensor(dev);
        let shape = model.batch_shape(lengths.len(), batch.tokens);
        let words = model.word_embeddings().index_select(&batch.ids, 0).unwrap();

        let (logits, saved) = model
            .forward(&words, &batch.types, &lengths_t, &shape)
            .unwrap();
        assert_eq!(
            saved.bytes(),
            shape.saved_bytes(DType::F32, dev),
            "{what}: saved bytes"
        );
        let grad = model.input_grad(saved, &batch.targets).unwrap();

        let var = Var::from_tensor(&words).unwrap();
        let slow = model
            .forward_slow(var.as_tensor(), &batch.types, &lengths_t, &shape)
            .unwrap();
        // Logits are of order one: measured against at least 1 per logit, not against a
        // single logit that may happen to be near zero.
        let floor = (logits.start.elem_count() as f64).sqrt();
        for (got, want, name) in [
            (&logits.start, &slow.start, "start"),
            (&logits.end, &slow.end, "end"),
        ] {
            let e = rel_err_floor(got, want, floor);
            assert!(e < TOL, "{what}: {name} logits: relative error {e:.3e}");
        }
        let grads = batch.objective(&slow.start, &slow.end).backward().unwrap();
        let reference = grads
            .get(var.as_tensor())
            .expect("gradient reached the words");
        assert_close(
            &grad,
            reference,
            TOL,
            &format!("{what}: gradient vs autograd"),
        );

        let (_, saved) = model
            .forward(&words, &batch.types, &lengths_t, &shape)
            .unwrap();
        let full = model.input_grad_full(saved, &batch.targets).unwrap();
        assert_close(
            &grad,
            &full,
            TOL,
            &format!("{what}: sparse vs full last layer"),
        );

        let rows = grad.to_vec2::<f32>().unwrap();
        for (p, &len) in lengths.iter().enumerate() {
            for row in &rows[p * batch.tokens + len..(p + 1) * batch.tokens] {
                assert!(
                    row.iter().all(|&v| v == 0.0),
                    "{what}: padding has a gradient"
                );
            }
        }
    }
}

/// The whole pass in f16 and bf16 against f32, on one model loaded three times.
pub fn half_precision_tracks_f32(dir: &std::path::Path, dev: &Device) {
    let batch_lengths = [12, 5, 9];
    let mut reference = None;
    for (dtype, tol) in [(DType::F32, 0.0), (DType::F16, 2e-2), (DType::BF16, 8e-2)] {
        let model = QaModel::load(dir, dev, dtype).unwrap();
        let batch = RandomBatch::new(&batch_lengths, model.config().vocab_size, dev);
        let shape = model.batch_shape(batch_lengths.len(), batch.tokens);
        let words = model.word_embeddings().index_select(&batch.ids, 0).unwrap();
        let (_, saved) = model
            .forward(&words, &batch.types, &batch.lengths_tensor(dev), &shape)
            .unwrap();
        // Whichever attention ran (cuDNN's in half precision where it is on), the formula
        // that sizes passes counts what it saved.
        assert_eq!(
            saved.bytes(),
            shape.saved_bytes(dtype, dev),
            "{dtype:?}: saved bytes"
        );
        let grad = model.input_grad(saved, &batch.targets).unwrap();
        assert_eq!(grad.dtype(), dtype);
        match &reference {
            None => reference = Some(grad),
            Some(f32_grad) => assert_close(&grad, f32_grad, tol, &format!("{dtype:?} vs f32")),
        }
    }
}
