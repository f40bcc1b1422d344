//! The fused ops against their `*_slow` twins (candle's composed ops, what the autograd path
//! ran) at bert-base shapes: LayerNorm forward and backward, bias + GELU forward and backward,
//! masked softmax forward and backward, and on the CPU the per-(pair, head) attention against
//! candle's matmul + softmax + matmul. CPU: 8 x 384 tokens, f32; GPU (cuda feature, a device
//! present, SPANGRAD_BENCH_DEVICE not `cpu`): 64 x 384 tokens, bf16. Each pair of versions is
//! validated against the other before it is timed.

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, Criterion, Throughput};
use spangrad::model::Activation;
use spangrad::ops;

const HIDDEN: usize = 768;
const INTERMEDIATE: usize = 3072;
const HEADS: usize = 12;
const TOKENS: usize = 384;

fn bench_device() -> Device {
    match std::env::var("SPANGRAD_BENCH_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        _ => spangrad::device::default_device(),
    }
}

struct Setup {
    device: Device,
    dtype: DType,
    pairs: usize,
}

impl Setup {
    fn new() -> Self {
        let device = bench_device();
        let (dtype, pairs) = if device.is_cuda() {
            (DType::BF16, 64)
        } else {
            (DType::F32, 8)
        };
        Self {
            device,
            dtype,
            pairs,
        }
    }

    fn randn(&self, shape: &[usize]) -> Tensor {
        (Tensor::randn(0f32, 1.0, shape, &self.device).unwrap() + 0.1)
            .unwrap()
            .to_dtype(self.dtype)
            .unwrap()
    }

    fn rows(&self) -> usize {
        self.pairs * TOKENS
    }

    fn sync<T>(&self, value: T) -> T {
        self.device.synchronize().unwrap();
        value
    }
}

fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap();
    let norm = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
            .sqrt()
    };
    norm(&diff) / norm(&b.to_dtype(DType::F64).unwrap())
}

fn validate(name: &str, fused: &Tensor, slow: &Tensor, dtype: DType) {
    let tol = if dtype == DType::F32 { 1e-5 } else { 2e-2 };
    let err = relative_error(fused, slow);
    assert!(err < tol, "{name}: fused and slow differ by {err:.2e}");
    println!("{name}: fused vs slow, relative difference {err:.2e}");
}

fn layer_norm(c: &mut Criterion) {
    let s = Setup::new();
    let n = s.rows();
    let [x, r, d] = [0; 3].map(|_| s.randn(&[n, HIDDEN]));
    let [bias, gamma, beta] = [0; 3].map(|_| s.randn(&[HIDDEN]));
    let (y, saved) =
        ops::layer_norm_forward(&x, Some(&r), Some(&bias), &gamma, &beta, 1e-12).unwrap();
    let slow = ops::layer_norm_slow(&x, Some(&r), Some(&bias), &gamma, &beta, 1e-12).unwrap();
    validate("layer_norm_forward", &y, &slow, s.dtype);
    let mut group = c.benchmark_group(format!("layer_norm/{n}x{HIDDEN}"));
    group.throughput(Throughput::Elements((n * HIDDEN) as u64));
    group.bench_function("forward (fused)", |b| {
        b.iter(|| {
            s.sync(
                ops::layer_norm_forward(&x, Some(&r), Some(&bias), &gamma, &beta, 1e-12).unwrap(),
            )
        })
    });
    group.bench_function("forward (slow twin)", |b| {
        b.iter(|| {
            s.sync(ops::layer_norm_slow(&x, Some(&r), Some(&bias), &gamma, &beta, 1e-12).unwrap())
        })
    });
    group.bench_function("backward (fused, residual gradient added)", |b| {
        b.iter(|| s.sync(ops::layer_norm_backward(&d, Some(&r), &saved, &gamma).unwrap()))
    });
    if s.dtype == DType::F32 {
        group.bench_function("backward (slow twin: autograd)", |b| {
            b.iter(|| {
                let xv = Var::from_tensor(&x).unwrap();
                let y = ops::layer_norm_slow(
                    xv.as_tensor(),
                    Some(&r),
                    Some(&bias),
                    &gamma,
                    &beta,
                    1e-12,
                )
                .unwrap();
                s.sync((y * &d).unwrap().sum_all().unwrap().backward().unwrap())
            })
        });
    }
    group.finish();
}

fn activation(c: &mut Criterion) {
    let s = Setup::new();
    let n = s.rows();
    let [x, d] = [0; 2].map(|_| s.randn(&[n, INTERMEDIATE]));
    let bias = s.randn(&[INTERMEDIATE]);
    let act = Activation::Gelu;
    let (u, a) = ops::bias_activation_forward(&x, &bias, act).unwrap();
    validate(
        "bias_activation_forward",
        &a,
        &ops::bias_activation_slow(&x, &bias, act).unwrap(),
        s.dtype,
    );
    let mut group = c.benchmark_group(format!("bias_gelu/{n}x{INTERMEDIATE}"));
    group.throughput(Throughput::Elements((n * INTERMEDIATE) as u64));
    group.bench_function("forward (fused)", |b| {
        b.iter(|| s.sync(ops::bias_activation_forward(&x, &bias, act).unwrap()))
    });
    group.bench_function("forward (slow twin)", |b| {
        b.iter(|| s.sync(ops::bias_activation_slow(&x, &bias, act).unwrap()))
    });
    group.bench_function("backward (fused)", |b| {
        b.iter(|| s.sync(ops::activation_backward(&d, &u, act).unwrap()))
    });
    drop(a);
    group.finish();
}

fn softmax(c: &mut Criterion) {
    let s = Setup::new();
    let shape = [s.pairs, HEADS, TOKENS, TOKENS];
    let [scores, dp] = [0; 2].map(|_| s.randn(&shape));
    let lengths = Tensor::new(vec![TOKENS as u32 - 7; s.pairs], &s.device).unwrap();
    let scale = 0.125;
    let p = ops::masked_softmax_forward(&scores, &lengths, scale).unwrap();
    validate(
        "masked_softmax_forward",
        &p,
        &ops::masked_softmax_slow(&scores, &lengths, scale).unwrap(),
        s.dtype,
    );
    let mut group = c.benchmark_group(format!("masked_softmax/{shape:?}"));
    group.throughput(Throughput::Elements(scores.elem_count() as u64));
    group.bench_function("forward (fused)", |b| {
        b.iter(|| s.sync(ops::masked_softmax_forward(&scores, &lengths, scale).unwrap()))
    });
    group.bench_function("forward (slow twin)", |b| {
        b.iter(|| s.sync(ops::masked_softmax_slow(&scores, &lengths, scale).unwrap()))
    });
    group.bench_function("backward (fused)", |b| {
        b.iter(|| s.sync(ops::masked_softmax_backward(&dp, &p, scale).unwrap()))
    });
    group.finish();
}

/// The CPU's fused attention against candle's matmul, softmax and matmul.
fn cpu_attention(c: &mut Criterion) {
    let s = Setup::new();
    if !s.device.is_cpu() {
        return;
    }
    let shape = [s.pairs, HEADS, TOKENS, HIDDEN / HEADS];
    let [q, k, v, dc] = [0; 4].map(|_| s.randn(&shape));
    let lengths = Tensor::new(vec![TOKENS as u32 - 7; s.pairs], &s.device).unwrap();
    let scale = 0.125;
    let (context, lse) = ops::attention_forward_cpu(&q, &k, &v, &lengths, scale).unwrap();
    validate(
        "attention_forward_cpu",
        &context,
        &ops::attention_slow(&q, &k, &v, &lengths, scale).unwrap(),
        s.dtype,
    );
    let mut group = c.benchmark_group(format!("attention/{shape:?}"));
    group.sample_size(10);
    group.bench_function("forward (fused per pair-head)", |b| {
        b.iter(|| ops::attention_forward_cpu(&q, &k, &v, &lengths, scale).unwrap())
    });
    group.bench_function("forward (slow twin)", |b| {
        b.iter(|| ops::attention_slow(&q, &k, &v, &lengths, scale).unwrap())
    });
    group.bench_function("backward (fused, recomputing P)", |b| {
        b.iter(|| ops::attention_backward_cpu(&dc, &q, &k, &v, &lse, &lengths, scale).unwrap())
    });
    group.finish();
}

criterion_group!(benches, layer_norm, activation, softmax, cpu_attention);

fn main() {
    // As the binary does: freed buffers stay mapped, so each iteration does not fault its
    // outputs' pages back in.
    spangrad::memory::keep_freed_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
