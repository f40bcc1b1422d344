//! Half-precision fidelity: explains the same pairs with a checkpoint in f32 and in f16/bf16
//! and compares, per pair, the token scores (Spearman rank correlation, overlap of the top 5
//! tokens, largest absolute difference) and the answer span.
//!
//! ```sh
//! python tools/reference/make_minilm_qa.py     # real MiniLM encoder + seeded QA head
//! cargo run --release --example fidelity -- --model ~/.cache/spangrad/minilm-qa \
//!     --pairs tests/fixtures/fidelity-pairs.jsonl
//! ```
//! With `--device cuda` the half-precision runs use cuBLAS and the CUDA kernels; the f32
//! reference runs on the same device.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use spangrad::{ExplainOptions, Explainer, Explanation, Precision, QaPair};

#[derive(Parser)]
struct Args {
    /// A checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// JSON lines of {"question", "context"} (the fixture files' `pairs` also work: see --fixture).
    #[arg(long, required_unless_present = "fixture")]
    pairs: Option<PathBuf>,
    /// Take the pairs of a tests/fixtures/expected/*.json file instead.
    #[arg(long)]
    fixture: Option<PathBuf>,
    #[arg(long, value_enum, value_delimiter = ',', default_value = "bf16,f16")]
    dtype: Vec<Precision>,
    #[arg(long)]
    device: Option<String>,
    /// Pairs per pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pairs = read_pairs(&args)?;
    let device = spangrad::device::select(args.device.as_deref())?;
    let explain = |precision| -> anyhow::Result<Vec<Explanation>> {
        let options = ExplainOptions {
            dtype: Some(precision),
            ..ExplainOptions::default()
        };
        let explainer = Explainer::from_dir(&args.model, options, &device)?;
        let mut out = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(args.batch_size) {
            out.extend(explainer.explain(chunk)?);
        }
        Ok(out)
    };
    let reference = explain(Precision::F32)?;
    println!(
        "fidelity against f32: {} pairs, {}, {}\n",
        pairs.len(),
        args.model.display(),
        spangrad::device::name(&device)
    );
    println!(
        "| dtype | Spearman median | Spearman min | top-5 overlap median | top-5 overlap min | \
         same span | max abs score difference | the same, pairs of the same span |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for &precision in &args.dtype {
        let half = explain(precision)?;
        let mut spearman = Vec::new();
        let mut top5 = Vec::new();
        let mut same_span = 0;
        let mut max_diff = 0f32;
        let mut max_diff_same = 0f32;
        for (h, f) in half.iter().zip(&reference) {
            let (hs, fs) = (scores(h), scores(f));
            spearman.push(spearman_rho(&hs, &fs));
            top5.push(top_k_overlap(&hs, &fs, 5));
            let same = (h.target, h.answer.token_start, h.answer.token_end)
                == (f.target, f.answer.token_start, f.answer.token_end);
            let diff = hs
                .iter()
                .zip(&fs)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            same_span += usize::from(same);
            max_diff = max_diff.max(diff);
            if same {
                max_diff_same = max_diff_same.max(diff);
            }
        }
        println!(
            "| {} | {:.4} | {:.4} | {:.2} | {:.2} | {}/{} ({:.1}%) | {:.4} | {:.4} |",
            precision.name(),
            median(&mut spearman),
            spearman.iter().copied().fold(f64::INFINITY, f64::min),
            median(&mut top5),
            top5.iter().copied().fold(f64::INFINITY, f64::min),
            same_span,
            pairs.len(),
            100.0 * same_span as f64 / pairs.len() as f64,
            max_diff,
            max_diff_same,
        );
    }
    Ok(())
}

fn read_pairs(args: &Args) -> anyhow::Result<Vec<QaPair>> {
    if let Some(path) = &args.fixture {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let json: serde_json::Value = serde_json::from_str(&text)?;
        let pairs = json["pairs"]
            .as_array()
            .context("a fixture file has `pairs`")?;
        return pairs
            .iter()
            .map(|p| Ok(serde_json::from_value(p.clone())?))
            .collect();
    }
    let path = args.pairs.as_ref().context("--pairs or --fixture")?;
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

fn scores(e: &Explanation) -> Vec<f32> {
    e.tokens.iter().map(|t| t.score).collect()
}

/// Ranks with ties given their mean rank.
fn ranks(x: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0f64; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            r[k] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    r
}

/// Pearson correlation of the ranks.
fn spearman_rho(a: &[f32], b: &[f32]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        return if va == vb { 1.0 } else { 0.0 };
    }
    cov / (va * vb).sqrt()
}

/// The share of `b`'s `k` highest-scoring tokens that are among `a`'s.
fn top_k_overlap(a: &[f32], b: &[f32], k: usize) -> f64 {
    let top = |x: &[f32]| {
        let mut idx: Vec<usize> = (0..x.len()).collect();
        idx.sort_by(|&i, &j| x[j].total_cmp(&x[i]));
        idx.truncate(k);
        idx
    };
    let (ta, tb) = (top(a), top(b));
    tb.iter().filter(|i| ta.contains(i)).count() as f64 / tb.len().max(1) as f64
}

fn median(x: &mut [f64]) -> f64 {
    x.sort_by(f64::total_cmp);
    let n = x.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        x[n / 2]
    } else {
        (x[n / 2 - 1] + x[n / 2]) / 2.0
    }
}
