//! dense vs streaming vs gram one-hot-gradient norms at bert-base shapes (hidden 768, vocabulary
//! 30,522) for 384 and 8 x 384 tokens of random gradients. Before timing, each method's peak
//! extra heap memory is measured once and printed.

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spangrad::explain::saliency::{Dense, Gram, Saliency, Streaming};
use spangrad::memory;

#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;

const HIDDEN: usize = 768;
const VOCAB: usize = 30_522;

fn methods(embeddings: &Tensor) -> Vec<Box<dyn Saliency>> {
    vec![
        Box::new(Dense::new(embeddings.clone())),
        Box::new(Streaming::new(embeddings.clone(), Streaming::DEFAULT_BLOCK).unwrap()),
        Box::new(Gram::new(embeddings).unwrap()),
    ]
}

fn peak_extra_mib(method: &dyn Saliency, grads: &Tensor) -> f64 {
    let before = memory::live_bytes();
    memory::reset_peak();
    let out = method.norms(grads).unwrap();
    drop(out);
    (memory::peak_bytes() - before) as f64 / (1 << 20) as f64
}

fn saliency(c: &mut Criterion) {
    let dev = Device::Cpu;
    let embeddings = Tensor::randn(0f32, 0.05, (VOCAB, HIDDEN), &dev).unwrap();
    let methods = methods(&embeddings);
    let mut group = c.benchmark_group("saliency");
    group.sample_size(10);
    for tokens in [384, 8 * 384] {
        let grads = Tensor::randn(0f32, 1.0, (tokens, HIDDEN), &dev).unwrap();
        group.throughput(Throughput::Elements(tokens as u64));
        for m in &methods {
            eprintln!(
                "saliency/{}/{tokens}: peak extra heap {:.1} MiB",
                m.kind(),
                peak_extra_mib(m.as_ref(), &grads)
            );
            group.bench_with_input(BenchmarkId::new(m.kind().name(), tokens), &grads, |b, g| {
                b.iter(|| m.norms(g).unwrap())
            });
        }
    }
    group.finish();
}

fn gram_setup(c: &mut Criterion) {
    let embeddings = Tensor::randn(0f32, 0.05, (VOCAB, HIDDEN), &Device::Cpu).unwrap();
    let mut group = c.benchmark_group("gram_setup");
    group.sample_size(10);
    group.bench_function("EtE_once_per_model", |b| {
        b.iter(|| Gram::new(&embeddings).unwrap())
    });
    group.finish();
}

criterion_group!(benches, saliency, gram_setup);
criterion_main!(benches);
