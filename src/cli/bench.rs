//! `spangrad bench`: end-to-end explanations per second on a random-weight model of a standard
//! shape, one row per saliency method, with the time per stage and the peak memory; with
//! `--pytorch PYTHON`, PyTorch doing the same work (tools/reference/bench_pytorch.py) on the
//! same machine, in the same run, in the same table.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context};
use spangrad::explain::{Engine, StageTimes};
use spangrad::model::attention;
use spangrad::model::preset::Preset;
use spangrad::text::{Encoded, Segment};
use spangrad::{memory, BatchTokens, ExplainOptions, Precision, SaliencyKind};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value_t = Preset::DistilBertBase)]
    preset: Preset,
    /// Pairs per batch.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Tokens per pair (16 of them question, 3 special).
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Pairs of lengths spread evenly from 64 tokens to `--seq-len`, as SQuAD's are spread,
    /// instead of all of `--seq-len`. Each side pads as it does in use: spangrad each pass to
    /// its longest pair, PyTorch the batch to its longest with an attention mask, as HF does.
    #[arg(long)]
    mixed: bool,
    /// Methods to compare, comma-separated; the first is the baseline of the ratios.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "dense,gram")]
    saliency: Vec<SaliencyKind>,
    /// Timed batches per method (after one warm-up batch).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Padded tokens per forward/backward pass, `auto` or `all` (see `spangrad explain`).
    #[arg(long, default_value = "auto")]
    max_batch_tokens: BatchTokens,
    /// cpu, cuda or cuda:N [default: the first GPU when built with the cuda feature, else cpu].
    #[arg(long)]
    device: Option<String>,
    /// Weights and activations [default: bf16 on a GPU, f32 on the CPU].
    #[arg(long, value_enum)]
    dtype: Option<Precision>,
    /// A Python with torch and transformers: runs tools/reference/bench_pytorch.py at the same
    /// preset, shapes, device, dtype (bf16: autocast) and iterations, and adds its rows.
    #[arg(long)]
    pytorch: Option<PathBuf>,
    /// The PyTorch methods (seed, best-norm, best-gram).
    #[arg(long, default_value = "seed,best-norm,best-gram")]
    pytorch_methods: String,
    /// CPU threads of the PyTorch run [default: the threads spangrad uses].
    #[arg(long)]
    pytorch_threads: Option<usize>,
    /// Append the table, with machine and date, to this markdown file (e.g. bench/RESULTS.md).
    #[arg(long)]
    record: Option<PathBuf>,
}

const QUESTION_TOKENS: usize = 16;

struct Row {
    method: String,
    batch_s: f64,
    stages: Option<StageTimes>,
    /// Peak extra memory over the use before the warm-up: the GPU pool's high watermark, or
    /// on the CPU the live bytes (spangrad: counted by the allocator; PyTorch: its resident set
    /// with glibc made to unmap every freed block over 64 KiB, so it follows live bytes).
    peak_mib: f64,
    /// CPU: the peak resident set over the one before the warm-up, allocators as they run.
    rss_mib: Option<f64>,
    /// Why the method did not run (PyTorch's dense one-hot out of memory).
    failed: Option<String>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = args.preset.config();
    if args.seq_len < QUESTION_TOKENS + 4 || args.seq_len > config.max_tokens() {
        bail!(
            "--seq-len must be between {} and {}",
            QUESTION_TOKENS + 4,
            config.max_tokens()
        );
    }
    if args.batch == 0 || args.iters == 0 || args.saliency.is_empty() {
        bail!("--batch, --iters and --saliency must be non-empty");
    }
    let device = spangrad::device::select(args.device.as_deref())?;
    let precision = args
        .dtype
        .unwrap_or_else(|| Precision::default_for(&device));
    let model = args.preset.random_model(&device, precision.dtype())?;
    let shape = model.batch_shape(args.batch, args.seq_len);
    let batch: Vec<Encoded> = lengths(&args)
        .into_iter()
        .enumerate()
        .map(|(b, len)| synthetic_pair(b, len, config.vocab_size))
        .collect();
    let mut rows = Vec::new();
    let mut profiles = Vec::new();
    for &saliency in &args.saliency {
        let options = ExplainOptions {
            saliency,
            max_batch_tokens: args.max_batch_tokens,
            ..ExplainOptions::default()
        };
        let engine = Engine::new(model.clone(), options, 0)?;
        let before = memory::live_bytes(&device)?;
        memory::reset_peak(&device)?;
        memory::reset_rss_peak();
        let rss_before = memory::rss_bytes().0;
        check(engine.explain(&batch)?)?;
        // The warm-up's op times are dropped.
        spangrad::profile::take_report();
        let mut stages = StageTimes::default();
        let start = Instant::now();
        for _ in 0..args.iters {
            check(engine.explain_timed(&batch, &mut stages)?)?;
        }
        let batch_s = start.elapsed().as_secs_f64() / args.iters as f64;
        let peak = memory::peak_bytes(&device)?.saturating_sub(before);
        if let Some(report) = spangrad::profile::take_report() {
            profiles.push(format!(
                "\nOps of spangrad {saliency} over {} batches (SPANGRAD_PROFILE: synchronised \
                 after each op, so slower than the table above):\n\n{report}",
                args.iters
            ));
        }
        rows.push(Row {
            method: format!("spangrad {saliency}"),
            batch_s,
            stages: Some(stages),
            peak_mib: mib(peak),
            rss_mib: device
                .is_cpu()
                .then(|| mib(memory::rss_bytes().1.saturating_sub(rss_before))),
            failed: None,
        });
    }
    if let Some(python) = &args.pytorch {
        rows.extend(pytorch_rows(python, &args, &device, precision)?);
    }
    let device_name = spangrad::device::name(&device);
    let mut table = table(&args, &device_name, precision, &rows);
    table += &format!(
        "\nSaved activations of one pass by the formula ({} x {} tokens, {}): {:.1} MiB; \
         estimated pass peak {:.1} MiB.\n",
        args.batch,
        args.seq_len,
        precision.name(),
        mib(shape.saved_bytes(precision.dtype(), &device)),
        mib(shape.peak_bytes(precision.dtype(), &device)),
    );
    table += &format!(
        "Attention: {}.\n",
        attention::kind(precision.dtype(), &device).describe()
    );
    table.extend(profiles);
    print!("{table}");
    if let Some(path) = &args.record {
        record(path, &table).with_context(|| format!("cannot append to {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn check(results: Vec<spangrad::Result<spangrad::Explanation>>) -> anyhow::Result<()> {
    for r in results {
        r?;
    }
    Ok(())
}

/// tools/reference/bench_pytorch.py, beside this binary's source tree or the working directory.
/// `tools/reference/<name>`, from the source tree or the working directory.
pub(super) fn reference_script(name: &str) -> anyhow::Result<PathBuf> {
    let relative = Path::new("tools/reference").join(name);
    [
        Path::new(env!("CARGO_MANIFEST_DIR")).join(&relative),
        relative.clone(),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .with_context(|| {
        format!(
            "{} not found (run from the repository root)",
            relative.display()
        )
    })
}

fn pytorch_rows(
    python: &Path,
    args: &BenchArgs,
    device: &candle_core::Device,
    precision: Precision,
) -> anyhow::Result<Vec<Row>> {
    let dtype = match precision {
        Precision::F32 => "f32",
        Precision::Bf16 => "bf16",
        Precision::F16 => bail!("the PyTorch comparison runs f32 or bf16 (autocast)"),
    };
    let threads = args
        .pytorch_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let device_arg = if device.is_cuda() { "cuda" } else { "cpu" };
    let output = Command::new(python)
        .arg(reference_script("bench_pytorch.py")?)
        .args([
            "--preset",
            args.preset.name(),
            "--device",
            device_arg,
            "--dtype",
            dtype,
        ])
        .args([
            "--batch",
            &args.batch.to_string(),
            "--seq-len",
            &args.seq_len.to_string(),
        ])
        .args([
            "--iters",
            &args.iters.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .args(["--methods", &args.pytorch_methods])
        .args(args.mixed.then(|| {
            let lengths: Vec<String> = lengths(args).iter().map(usize::to_string).collect();
            format!("--lengths={}", lengths.join(","))
        }))
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "the PyTorch benchmark failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let field = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        let method = v.get("method").and_then(|m| m.as_str()).unwrap_or("?");
        let versions = v.get("versions").and_then(|m| m.as_str()).unwrap_or("");
        let failed = v.get("error").map(|e| {
            let e = e.as_str().unwrap_or("failed");
            match (v.get("needed_mib"), v.get("free_mib")) {
                (Some(n), Some(f)) => format!("{e}: needs {n} MiB, {f} MiB free"),
                _ => e.to_string(),
            }
        });
        rows.push(Row {
            method: format!("PyTorch {method} ({versions})"),
            batch_s: field("s_per_batch"),
            stages: None,
            peak_mib: field("peak_extra_mib"),
            rss_mib: v
                .get("peak_extra_rss_mib")
                .and_then(serde_json::Value::as_f64),
            failed,
        });
    }
    Ok(rows)
}

/// The pairs' lengths: all `--seq-len`, or with `--mixed` spread evenly from 64 (or less
/// where `--seq-len` is) to `--seq-len`.
fn lengths(args: &BenchArgs) -> Vec<usize> {
    if !args.mixed || args.batch == 1 {
        return vec![args.seq_len; args.batch];
    }
    let shortest = 64.clamp(QUESTION_TOKENS + 4, args.seq_len);
    (0..args.batch)
        .map(|b| shortest + (args.seq_len - shortest) * b / (args.batch - 1))
        .collect()
}

/// `[CLS]` 16 question tokens `[SEP]` context `[SEP]`, with ids spread over the vocabulary.
fn synthetic_pair(b: usize, len: usize, vocab: usize) -> Encoded {
    let segments: Vec<Segment> = (0..len)
        .map(|i| match i {
            0 => Segment::Special,
            i if i == QUESTION_TOKENS + 1 || i == len - 1 => Segment::Special,
            i if i <= QUESTION_TOKENS => Segment::Question,
            _ => Segment::Context,
        })
        .collect();
    let ids = (0..len)
        .map(|i| (1000 + (i * 7919 + b * 104_729) % (vocab - 1000)) as u32)
        .collect();
    Encoded {
        question: String::new(),
        context: String::new(),
        ids,
        type_ids: (0..len)
            .map(|i| u32::from(i > QUESTION_TOKENS + 1))
            .collect(),
        tokens: vec![String::new(); len],
        offsets: vec![(0, 0); len],
        segments,
        truncated: false,
        requested: None,
        word_ids: (0..len as u32).map(Some).collect(),
        word_start: vec![true; len],
        window: None,
    }
}

fn table(args: &BenchArgs, device: &str, precision: Precision, rows: &[Row]) -> String {
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = format!(
        "spangrad bench: {} (random weights), batch {} x {}{} tokens, {}, {} timed batches, \
         {device} ({threads} threads), passes: {:?}\n\n\
         | method | s / batch | explanations / s | forward (s) | backward (s) | saliency (s) | \
         peak extra memory (MiB) | peak extra RSS (MiB) | speed-up vs {} |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        args.preset.name(),
        args.batch,
        if args.mixed {
            format!("{}..", lengths(args)[0])
        } else {
            String::new()
        },
        args.seq_len,
        precision.name(),
        args.iters,
        args.max_batch_tokens,
        rows[0].method,
    );
    let per_batch = |d: std::time::Duration| format!("{:.3}", d.as_secs_f64() / args.iters as f64);
    for r in rows {
        let (f, b, sal) = r.stages.map_or_else(
            || ("—".into(), "—".into(), "—".into()),
            |st| {
                (
                    per_batch(st.forward),
                    per_batch(st.backward),
                    per_batch(st.saliency),
                )
            },
        );
        let rss = r.rss_mib.map_or_else(|| "—".into(), |m| format!("{m:.1}"));
        if let Some(why) = &r.failed {
            s += &format!("| {} | {why} | — | — | — | — | — | — | — |\n", r.method);
            continue;
        }
        s += &format!(
            "| {} | {:.4} | {:.2} | {f} | {b} | {sal} | {:.1} | {rss} | {:.2}x |\n",
            r.method,
            r.batch_s,
            args.batch as f64 / r.batch_s,
            r.peak_mib,
            rows[0].batch_s / r.batch_s,
        );
    }
    s += "\nPeak extra memory, over the use before the warm-up: on a GPU the memory pool's high \
          watermark (spangrad) or torch.cuda.max_memory_allocated (PyTorch); on the CPU live \
          bytes: the counting allocator's peak (spangrad), the resident-set peak of a run with \
          glibc unmapping every freed block over 64 KiB (PyTorch). Peak extra RSS: the resident \
          set of the timed process, allocators as they run (each method's first run in its \
          process).\n";
    s
}

pub(super) fn record(path: &Path, table: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(
        file,
        "\n### {} — {}\n\n```\n{}\n```\n\n{table}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        spangrad::device::cpu_description(),
        std::env::args().collect::<Vec<_>>().join(" "),
    )
}
