//! dense vs streaming vs gram one-hot-gradient norms at bert-base shapes (hidden 768, vocabulary
//! 30,522) on random data. On the CPU: 384 and 8 x 384 tokens; on a GPU (cuda feature, a device
//! present, SPANGRAD_BENCH_DEVICE not `cpu`): 64 x 384 and 256 x 384 tokens. Each size is first
//! validated (the methods must agree), then timed by criterion (synchronising the device), then
//! summarised: median time, FLOP rate of the vocabulary product, peak extra memory, speed-up.

use std::time::Instant;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spangrad::explain::saliency::{Dense, Gram, Saliency, Streaming};
use spangrad::memory;

#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

const HIDDEN: usize = 768;
const VOCAB: usize = 30_522;

fn bench_device() -> Device {
    match std::env::var("SPANGRAD_BENCH_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        _ => spangrad::device::default_device(),
    }
}

fn sizes(device: &Device) -> [usize; 2] {
    if device.is_cuda() {
        [64 * 384, 256 * 384]
    } else {
        [384, 8 * 384]
    }
}

fn methods(embeddings: &Tensor) -> Vec<Box<dyn Saliency>> {
    vec![
        Box::new(Dense::new(embeddings.clone())),
        Box::new(Streaming::new(embeddings.clone(), Streaming::DEFAULT_BLOCK).unwrap()),
        Box::new(Gram::new(embeddings).unwrap()),
    ]
}

fn run(method: &dyn Saliency, grads: &Tensor) -> Tensor {
    let out = method.norms(grads).unwrap();
    grads.device().synchronize().unwrap();
    out
}

/// Median seconds of `reps` synchronised runs, and the peak extra memory of one.
fn measure(method: &dyn Saliency, grads: &Tensor, reps: usize) -> (f64, f64) {
    let device = grads.device();
    let before = memory::live_bytes(device).unwrap();
    memory::reset_peak(device).unwrap();
    drop(run(method, grads));
    let peak = memory::peak_bytes(device).unwrap().saturating_sub(before);
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            drop(run(method, grads));
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[reps / 2], peak as f64 / (1 << 20) as f64)
}

fn validate(methods: &[Box<dyn Saliency>], grads: &Tensor) {
    let reference = run(methods[0].as_ref(), grads).to_vec1::<f32>().unwrap();
    for m in &methods[1..] {
        let got = run(m.as_ref(), grads).to_vec1::<f32>().unwrap();
        let worst = got
            .iter()
            .zip(&reference)
            .map(|(a, b)| ((a - b) / b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{} differs from dense by {worst}", m.kind());
    }
}

fn saliency(c: &mut Criterion) {
    let device = bench_device();
    let embeddings = Tensor::randn(0f32, 0.05, (VOCAB, HIDDEN), &device).unwrap();
    let methods = methods(&embeddings);
    let mut summary = String::from(
        "\n| device | tokens | method | median | GFLOP/s of G·Eᵀ | peak extra memory | speed-up vs dense |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut group = c.benchmark_group("saliency");
    group.sample_size(10);
    for tokens in sizes(&device) {
        let grads = Tensor::randn(0f32, 1.0, (tokens, HIDDEN), &device).unwrap();
        validate(&methods, &grads);
        group.throughput(Throughput::Elements(tokens as u64));
        let mut dense_time = 0.0;
        for m in &methods {
            group.bench_with_input(BenchmarkId::new(m.kind().name(), tokens), &grads, |b, g| {
                b.iter(|| run(m.as_ref(), g))
            });
            let (time, peak) = measure(m.as_ref(), &grads, 5);
            if m.kind().name() == "dense" {
                dense_time = time;
            }
            let flops = 2.0 * (tokens * HIDDEN * VOCAB) as f64 / time / 1e9;
            summary += &format!(
                "| {} | {tokens} | {} | {:.3} ms | {flops:.0} | {peak:.1} MiB | {:.2}x |\n",
                spangrad::device::name(&device),
                m.kind(),
                time * 1e3,
                dense_time / time,
            );
        }
    }
    group.finish();
    println!("{summary}");
}

fn gram_setup(c: &mut Criterion) {
    let device = bench_device();
    let embeddings = Tensor::randn(0f32, 0.05, (VOCAB, HIDDEN), &device).unwrap();
    let mut group = c.benchmark_group("gram_setup");
    group.sample_size(10);
    group.bench_function("EtE_once_per_model", |b| {
        b.iter(|| {
            let gram = Gram::new(&embeddings).unwrap();
            device.synchronize().unwrap();
            gram
        })
    });
    group.finish();
}

criterion_group!(benches, saliency, gram_setup);
criterion_main!(benches);
