//! The fused ops against their `*_slow` twins (candle's composed ops, what the autograd path
//! ran) at bert-base shapes: LayerNorm forward and backward, bias + GELU forward and backward,
//! masked softmax forward and backward, the head split and merge, the linear products, and
//! attention: on the CPU the per-(pair, head) attention against candle's matmul + softmax +
//! matmul, on a GPU cuDNN's (feature `cudnn`, where it opens). CPU: 8 x 384 tokens, f32; GPU
//! (cuda feature, a device present, SPANGRAD_BENCH_DEVICE not `cpu`): 64 x 384 tokens, bf16.
//! Each pair of versions is validated against the other before it is timed.
//!
//! Memory-bound kernels report bytes per second (criterion's `thrpt`, each kernel's reads and
//! writes counted once: set it beside the card's bandwidth); products report FLOP/s as
//! elements per second (`Gelem/s` = GFLOP/s).

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, Criterion, Throughput};
use spangrad::model::Activation;
use spangrad::ops;
#[cfg(feature = "cudnn")]
use spangrad::ops::attention_kind::switch;

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

    /// Bytes of `elements` activations.
    fn bytes(&self, elements: usize) -> u64 {
        (elements * self.dtype.size_in_bytes()) as u64
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
    // Reads x and the residual, writes y and x̂ (rstd is 1/h of a row).
    group.throughput(Throughput::Bytes(s.bytes(4 * n * HIDDEN) + 4 * n as u64));
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
    // Reads both gradient terms and x̂, writes dx.
    group.throughput(Throughput::Bytes(s.bytes(4 * n * HIDDEN) + 4 * n as u64));
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
    // Forward: reads x, writes u and act(u); backward: reads dy and u, writes du.
    group.throughput(Throughput::Bytes(s.bytes(3 * n * INTERMEDIATE)));
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
    // Forward: reads S, writes P.
    group.throughput(Throughput::Bytes(s.bytes(2 * scores.elem_count())));
    group.bench_function("forward (fused)", |b| {
        b.iter(|| s.sync(ops::masked_softmax_forward(&scores, &lengths, scale).unwrap()))
    });
    group.bench_function("forward (slow twin)", |b| {
        b.iter(|| s.sync(ops::masked_softmax_slow(&scores, &lengths, scale).unwrap()))
    });
    // Backward: reads dP and P, writes dS.
    group.throughput(Throughput::Bytes(s.bytes(3 * scores.elem_count())));
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
    let d = HIDDEN / HEADS;
    let shape = [s.pairs, HEADS, TOKENS, d];
    let qkv = s.randn(&[s.rows(), 3 * HIDDEN]);
    let dc = s.randn(&[s.rows(), HIDDEN]);
    let lengths = Tensor::new(vec![TOKENS as u32 - 7; s.pairs], &s.device).unwrap();
    let scale = 0.125;
    let (context, lse) = ops::attention_forward_cpu(&qkv, &lengths, HEADS, scale).unwrap();
    let heads = ops::split_heads_slow(&qkv, None, TOKENS, HEADS, d).unwrap();
    let [q, k, v] = [0, 1, 2].map(|i| heads.get(i).unwrap());
    validate(
        "attention_forward_cpu",
        &context,
        &ops::merge_heads_slow(&[ops::attention_slow(&q, &k, &v, &lengths, scale).unwrap()])
            .unwrap(),
        s.dtype,
    );
    let mut group = c.benchmark_group(format!("attention/{shape:?}"));
    group.sample_size(10);
    group.bench_function("forward (fused per pair-head, token layout)", |b| {
        b.iter(|| ops::attention_forward_cpu(&qkv, &lengths, HEADS, scale).unwrap())
    });
    group.bench_function("forward (slow twin)", |b| {
        b.iter(|| ops::attention_slow(&q, &k, &v, &lengths, scale).unwrap())
    });
    group.bench_function("backward (fused, recomputing P)", |b| {
        b.iter(|| ops::attention_backward_cpu(&dc, &qkv, &lse, &lengths, HEADS, scale).unwrap())
    });
    group.finish();
}

/// The QKV product into head layout (bias added) and the context back, as the encoder runs
/// them on spangrad's kernels.
fn heads(c: &mut Criterion) {
    use spangrad::ops::{merge_heads, merge_heads_slow, split_heads, split_heads_slow};
    let s = Setup::new();
    let n = s.rows();
    let d = HIDDEN / HEADS;
    let qkv = s.randn(&[n, 3 * HIDDEN]);
    let bias = s.randn(&[3 * HIDDEN]);
    let split = split_heads(&qkv, Some(&bias), TOKENS, HEADS, d).unwrap();
    validate(
        "split_heads",
        &split,
        &split_heads_slow(&qkv, Some(&bias), TOKENS, HEADS, d).unwrap(),
        s.dtype,
    );
    let context = split.get(0).unwrap();
    validate(
        "merge_heads",
        &merge_heads(std::slice::from_ref(&context)).unwrap(),
        &merge_heads_slow(std::slice::from_ref(&context)).unwrap(),
        s.dtype,
    );
    let mut group = c.benchmark_group(format!("heads/{n}x{HIDDEN}"));
    // Reads and writes the three projections.
    group.throughput(Throughput::Bytes(s.bytes(2 * 3 * n * HIDDEN)));
    group.bench_function("split Q, K, V + bias (fused)", |b| {
        b.iter(|| s.sync(split_heads(&qkv, Some(&bias), TOKENS, HEADS, d).unwrap()))
    });
    group.bench_function("split Q, K, V + bias (slow twin)", |b| {
        b.iter(|| s.sync(split_heads_slow(&qkv, Some(&bias), TOKENS, HEADS, d).unwrap()))
    });
    group.throughput(Throughput::Bytes(s.bytes(2 * n * HIDDEN)));
    group.bench_function("merge the context (fused)", |b| {
        b.iter(|| s.sync(merge_heads(std::slice::from_ref(&context)).unwrap()))
    });
    group.finish();
}

/// The encoder's four products and their input gradients at the model's shapes (x Wᵀ with
/// the weight's layout as the engine keeps it), in FLOP/s.
fn linear(c: &mut Criterion) {
    let s = Setup::new();
    let n = s.rows();
    let mut group = c.benchmark_group(format!("linear/{n} rows (elements = FLOPs)"));
    group.sample_size(10);
    for (name, inputs, outputs) in [
        ("QKV", HIDDEN, 3 * HIDDEN),
        ("attention out", HIDDEN, HIDDEN),
        ("FFN in", HIDDEN, INTERMEDIATE),
        ("FFN out", INTERMEDIATE, HIDDEN),
    ] {
        let x = s.randn(&[n, inputs]);
        let w = s.randn(&[outputs, inputs]);
        let dy = s.randn(&[n, outputs]);
        // The engine keeps Wᵀ contiguous on the CPU (see `model::layers::Linear`).
        let wt = if s.device.is_cpu() {
            w.t().unwrap().contiguous().unwrap()
        } else {
            w.t().unwrap()
        };
        group.throughput(Throughput::Elements((2 * n * inputs * outputs) as u64));
        group.bench_function(format!("{name} {inputs}->{outputs}: x·Wᵀ"), |b| {
            b.iter(|| s.sync(ops::matmul(&x, &wt).unwrap()))
        });
        group.bench_function(format!("{name} {inputs}->{outputs}: dy·W"), |b| {
            b.iter(|| s.sync(ops::matmul(&dy, &w).unwrap()))
        });
        #[cfg(feature = "cuda")]
        if s.device.is_cuda() {
            use spangrad::ops::kernels::gemm::linear_bias;
            let bias = s.randn(&[outputs]);
            let fused = linear_bias(&x, &w, &bias).unwrap();
            let twin = ops::matmul(&x, &wt).unwrap().broadcast_add(&bias).unwrap();
            validate(&format!("linear_bias {name}"), &fused, &twin, s.dtype);
            group.bench_function(
                format!("{name} {inputs}->{outputs}: x·Wᵀ + b (cuBLASLt)"),
                |b| b.iter(|| s.sync(linear_bias(&x, &w, &bias).unwrap())),
            );
        }
    }
    group.finish();
}

/// cuDNN's fused attention, forward and backward, on the fused QKV product, as the encoder
/// calls it (feature `cudnn`; skipped where cuDNN does not open).
#[cfg(feature = "cudnn")]
fn cudnn_attention(c: &mut Criterion) {
    use spangrad::ops::kernels::cudnn;
    let s = Setup::new();
    if s.device.is_cpu() {
        return;
    }
    let setting = std::env::var(switch::VARIABLE).ok();
    if let Err(why) = cudnn::load(switch::requested(setting.as_deref()).flatten()) {
        println!("cudnn_attention: skipped, {why}");
        return;
    }
    let n = s.rows();
    let d = HIDDEN / HEADS;
    let scale = 1.0 / (d as f64).sqrt();
    let qkv = s.randn(&[n, 3 * HIDDEN]);
    let dout = s.randn(&[n, HIDDEN]);
    let lengths = Tensor::new(vec![TOKENS as u32; s.pairs], &s.device).unwrap();
    let (o, stats) = cudnn::attention_forward(&qkv, &lengths, TOKENS, HEADS, scale).unwrap();
    // Q Kᵀ and P V: 4·b·a·t²·d; the backward's five products 2.5 times that.
    let flops = 4 * s.pairs * HEADS * TOKENS * TOKENS * d;
    let mut group = c.benchmark_group(format!(
        "cudnn_attention/{}x{HEADS}x{TOKENS}x{d} (elements = FLOPs)",
        s.pairs
    ));
    group.throughput(Throughput::Elements(flops as u64));
    group.bench_function("forward", |b| {
        b.iter(|| s.sync(cudnn::attention_forward(&qkv, &lengths, TOKENS, HEADS, scale).unwrap()))
    });
    group.throughput(Throughput::Elements((flops * 5 / 2) as u64));
    group.bench_function("backward", |b| {
        b.iter(|| {
            s.sync(
                cudnn::attention_backward(&qkv, &o, &stats, &dout, &lengths, TOKENS, HEADS, scale)
                    .unwrap(),
            )
        })
    });
    group.finish();
    let (graphs, ms) = cudnn::graphs_built();
    println!("cudnn_attention: {graphs} graphs built in {ms:.0} ms");
}

#[cfg(not(feature = "cudnn"))]
fn cudnn_attention(_: &mut Criterion) {}

criterion_group!(
    benches,
    layer_norm,
    activation,
    softmax,
    heads,
    linear,
    cpu_attention,
    cudnn_attention
);

fn main() {
    // As the binary does: freed buffers stay mapped, so each iteration does not fault its
    // outputs' pages back in.
    spangrad::memory::keep_freed_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
