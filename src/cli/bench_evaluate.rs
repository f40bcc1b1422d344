//! `spangrad bench-evaluate`: a full evaluation's speed on a random-weight model of a standard
//! shape (every pair explained by the methods, then its perturbed inputs' forwards), in pairs
//! per second and forwards per second; with `--pytorch PYTHON`, the ferret-style PyTorch loop
//! (tools/reference/bench_evaluate_pytorch.py) doing the same work in the same run.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context};
use spangrad::evaluate::{EvaluateOptions, Evaluator, Metric, DEFAULT_RANDOM_ORDERS};
use spangrad::explain::Method;
use spangrad::model::preset::Preset;
use spangrad::{ExplainOptions, Explainer, Precision, QaPair};

use super::bench::record;

#[derive(clap::Args)]
pub struct BenchEvaluateArgs {
    #[arg(long, value_enum, default_value_t = Preset::BertBase)]
    preset: Preset,
    /// Pairs evaluated (after the warm-up pairs).
    #[arg(long, default_value_t = 2)]
    pairs: usize,
    /// Untimed pairs first, each side (0 where one pair takes minutes).
    #[arg(long, default_value_t = 1)]
    warm_up: usize,
    /// Tokens per pair (16 of them question, 3 special).
    #[arg(long, default_value_t = 384)]
    seq_len: usize,
    /// The methods [default: all five].
    #[arg(long, value_enum, value_delimiter = ',')]
    method: Vec<Method>,
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Metric::ALL)]
    metrics: Vec<Metric>,
    #[arg(long, default_value_t = DEFAULT_RANDOM_ORDERS)]
    random_orders: usize,
    /// cpu, cuda or cuda:N [default: the first GPU when built with the cuda feature, else cpu].
    #[arg(long)]
    device: Option<String>,
    #[arg(long, value_enum)]
    dtype: Option<Precision>,
    /// A Python with torch and transformers: runs the ferret-style loop at the same preset,
    /// shapes, methods and metrics, and adds its row.
    #[arg(long)]
    pytorch: Option<PathBuf>,
    /// CPU threads of the PyTorch run [default: the threads spangrad uses].
    #[arg(long)]
    pytorch_threads: Option<usize>,
    /// Append the table, with machine and date, to this markdown file.
    #[arg(long)]
    record: Option<PathBuf>,
}

const QUESTION_TOKENS: usize = 16;

struct Row {
    who: String,
    s_per_pair: f64,
    explain_s: f64,
    perturb_s: f64,
    forwards: usize,
}

pub fn run(args: BenchEvaluateArgs) -> anyhow::Result<ExitCode> {
    if args.pairs == 0 || args.seq_len < QUESTION_TOKENS + 4 {
        bail!(
            "--pairs must be positive and --seq-len at least {}",
            QUESTION_TOKENS + 4
        );
    }
    let device = spangrad::device::select(args.device.as_deref())?;
    let options = ExplainOptions {
        dtype: args.dtype,
        max_length: Some(args.seq_len),
        doc_stride: Some(0),
        ..ExplainOptions::default()
    };
    let explainer = Explainer::preset(args.preset, options, &device)?;
    let evaluate = EvaluateOptions {
        methods: if args.method.is_empty() {
            EvaluateOptions::default().methods
        } else {
            args.method.clone()
        },
        metrics: args.metrics.clone(),
        random_orders: args.random_orders,
    };
    let evaluator = Evaluator::new(&explainer, evaluate.clone())?;
    let vocab = args.preset.config().vocab_size;
    let w = args.warm_up;
    let pairs: Vec<QaPair> = (0..w + args.pairs)
        .map(|k| pair(k, args.seq_len, vocab))
        .collect();
    if w > 0 {
        evaluate_timed(&evaluator, &pairs[..w])?;
    }
    // The warm-up's op times are dropped.
    spangrad::profile::take_report();
    let clock = Instant::now();
    let (explain_s, perturb_s, forwards) = evaluate_timed(&evaluator, &pairs[w..])?;
    let total = clock.elapsed().as_secs_f64();
    if let Some(report) = spangrad::profile::take_report() {
        eprintln!("per-op profile (SPANGRAD_PROFILE=1) of the timed pairs:\n{report}");
    }
    let mut rows = vec![Row {
        who: format!("spangrad {}", env!("CARGO_PKG_VERSION")),
        s_per_pair: total / args.pairs as f64,
        explain_s,
        perturb_s,
        forwards,
    }];
    if let Some(python) = &args.pytorch {
        rows.push(pytorch_row(python, &args, &evaluate, &device)?);
    }
    let precision = explainer.engine().precision();
    let table = table(
        &args,
        &evaluate,
        &spangrad::device::name(&device),
        precision,
        &rows,
    );
    print!("{table}");
    if let Some(path) = &args.record {
        record(path, &table).with_context(|| format!("cannot append to {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The pairs evaluated: explanations by every method (timed), then the perturbations'
/// forwards (timed): the seconds of each and the forwards run.
fn evaluate_timed(evaluator: &Evaluator, pairs: &[QaPair]) -> anyhow::Result<(f64, f64, usize)> {
    let explainer = evaluator.explainer();
    let plans = pairs
        .iter()
        .map(|p| explainer.plan(p))
        .collect::<spangrad::Result<Vec<_>>>()?;
    let plans: Vec<_> = plans.iter().collect();
    let clock = Instant::now();
    let explained = evaluator
        .options()
        .methods
        .iter()
        .map(|&m| explainer.with_method(m).explain_plans(&plans))
        .collect::<spangrad::Result<Vec<_>>>()?;
    let explain_s = clock.elapsed().as_secs_f64();
    let mut columns: Vec<_> = explained.into_iter().map(Vec::into_iter).collect();
    let per_pair = (0..plans.len())
        .map(|_| {
            columns
                .iter_mut()
                .map(|m| m.next().expect("one explanation per plan"))
                .collect()
        })
        .collect();
    let clock = Instant::now();
    let evaluated = evaluator.evaluate_explained(&plans, per_pair)?;
    let perturb_s = clock.elapsed().as_secs_f64();
    let mut forwards = 0;
    for e in evaluated {
        forwards += e.context("a synthetic pair failed")?.forwards;
    }
    Ok((explain_s, perturb_s, forwards))
}

/// 16 question words and a context of synthetic tokens (`w<id>`, one token each), ids spread
/// over the vocabulary as `spangrad bench`'s.
fn pair(k: usize, len: usize, vocab: usize) -> QaPair {
    let word = |i: usize| format!("w{}", 1000 + (i * 7919 + k * 104_729) % (vocab - 1000));
    let question: Vec<String> = (1..=QUESTION_TOKENS).map(word).collect();
    let context: Vec<String> = (QUESTION_TOKENS + 2..len - 1).map(word).collect();
    QaPair::new(question.join(" "), context.join(" "))
}

fn pytorch_row(
    python: &PathBuf,
    args: &BenchEvaluateArgs,
    evaluate: &EvaluateOptions,
    device: &candle_core::Device,
) -> anyhow::Result<Row> {
    if evaluate.methods != Method::ALL {
        bail!("the PyTorch loop runs the five methods: leave --method out");
    }
    let script = super::bench::reference_script("bench_evaluate_pytorch.py")?;
    let threads = args
        .pytorch_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let metrics: Vec<&str> = evaluate.metrics.iter().map(|m| m.name()).collect();
    let output = Command::new(python)
        .arg(&script)
        .args(["--preset", args.preset.name()])
        .args(["--pairs", &args.pairs.to_string()])
        .args(["--warm-up", &args.warm_up.to_string()])
        .args(["--seq-len", &args.seq_len.to_string()])
        .args(["--random-orders", &evaluate.random_orders.to_string()])
        .args(["--metrics", &metrics.join(",")])
        .args(["--threads", &threads.to_string()])
        .args(["--device", if device.is_cpu() { "cpu" } else { "cuda" }])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "the PyTorch loop failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let v: serde_json::Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("the PyTorch loop printed no result")?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(Row {
        who: format!(
            "PyTorch {} ({})",
            v["method"].as_str().unwrap_or("loop"),
            v["versions"].as_str().unwrap_or("")
        ),
        s_per_pair: f("s_per_pair"),
        explain_s: f("explain_s"),
        perturb_s: f("perturb_s"),
        forwards: v["forwards"].as_u64().unwrap_or(0) as usize,
    })
}

fn table(
    args: &BenchEvaluateArgs,
    evaluate: &EvaluateOptions,
    device: &str,
    precision: Precision,
    rows: &[Row],
) -> String {
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    let methods: Vec<&str> = evaluate.methods.iter().map(|m| m.name()).collect();
    let metrics: Vec<&str> = evaluate.metrics.iter().map(|m| m.name()).collect();
    let mut s = format!(
        "spangrad bench-evaluate: {} (random weights), {} pairs x {} tokens, {}, {device} \
         ({threads} threads); methods {}; metrics {}; {} random orders\n\n\
         | who | s / pair | pairs / s | explanations (s) | perturbations (s) | forwards | \
         forwards / s | speed-up |\n|---|---|---|---|---|---|---|---|\n",
        args.preset.name(),
        args.pairs,
        args.seq_len,
        precision.name(),
        methods.join(","),
        metrics.join(","),
        evaluate.random_orders,
    );
    let slowest = rows.iter().map(|r| r.s_per_pair).fold(f64::NAN, f64::max);
    for r in rows {
        s += &format!(
            "| {} | {:.3} | {:.4} | {:.3} | {:.3} | {} | {:.1} | {:.2}x |\n",
            r.who,
            r.s_per_pair,
            1.0 / r.s_per_pair,
            r.explain_s,
            r.perturb_s,
            r.forwards,
            r.forwards as f64 / r.perturb_s,
            slowest / r.s_per_pair,
        );
    }
    s += "\nspangrad runs each distinct input once (a pair's rankings often share inputs) and \
          batches the forwards of all pairs, methods and bins by the memory; the loop runs \
          every input, in batches of 8. Speed-up: over the slowest row.\n";
    s
}
