//! `spangrad bench`: end-to-end explanations per second and peak heap memory on a random-weight
//! model of a standard shape, one row per saliency method, with the ratio against dense.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use spangrad::explain::Engine;
use spangrad::model::preset::Preset;
use spangrad::text::{Encoded, Segment};
use spangrad::{ExplainOptions, SaliencyKind};

use spangrad::memory;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value_t = Preset::DistilBertBase)]
    preset: Preset,
    /// Pairs per forward/backward pass.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Tokens per pair (16 of them question, 3 special).
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Methods to compare, comma-separated; the first is the baseline of the ratios.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "dense,gram")]
    saliency: Vec<SaliencyKind>,
    /// Timed batches per method (after one warm-up batch).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Padded tokens per forward/backward pass (the batch runs in several passes if larger).
    #[arg(long)]
    max_batch_tokens: Option<usize>,
    /// cpu, cuda or cuda:N [default: the first GPU when built with the cuda feature, else cpu].
    #[arg(long)]
    device: Option<String>,
    /// Append the table, with machine and date, to this markdown file (e.g. bench/RESULTS.md).
    #[arg(long)]
    record: Option<PathBuf>,
}

const QUESTION_TOKENS: usize = 16;

struct Row {
    saliency: SaliencyKind,
    setup_s: f64,
    batch_s: f64,
    peak_mib: f64,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = args.preset.config();
    if args.seq_len < QUESTION_TOKENS + 4 || args.seq_len > config.max_position_embeddings {
        bail!(
            "--seq-len must be between {} and {}",
            QUESTION_TOKENS + 4,
            config.max_position_embeddings
        );
    }
    if args.batch == 0 || args.iters == 0 || args.saliency.is_empty() {
        bail!("--batch, --iters and --saliency must be non-empty");
    }
    let device = spangrad::device::select(args.device.as_deref())?;
    let model = args.preset.random_model(&device, candle_core::DType::F32)?;
    let batch: Vec<Encoded> = (0..args.batch)
        .map(|b| synthetic_pair(b, args.seq_len, config.vocab_size))
        .collect();
    let mut rows = Vec::new();
    for &saliency in &args.saliency {
        let options = ExplainOptions {
            saliency,
            max_batch_tokens: args.max_batch_tokens,
            ..ExplainOptions::default()
        };
        let setup = Instant::now();
        let engine = Engine::new(model.clone(), options, 0)?;
        let setup_s = setup.elapsed().as_secs_f64();
        check(engine.explain(&batch)?)?;
        let before = memory::live_bytes(&device)?;
        memory::reset_peak(&device)?;
        let start = Instant::now();
        for _ in 0..args.iters {
            check(engine.explain(&batch)?)?;
        }
        let batch_s = start.elapsed().as_secs_f64() / args.iters as f64;
        let peak = memory::peak_bytes(&device)?.saturating_sub(before);
        rows.push(Row {
            saliency,
            setup_s,
            batch_s,
            peak_mib: peak as f64 / (1 << 20) as f64,
        });
    }
    let table = table(&args, &spangrad::device::name(&device), &rows);
    print!("{table}");
    if let Some(path) = &args.record {
        record(path, &table).with_context(|| format!("cannot append to {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn check(results: Vec<spangrad::Result<spangrad::Explanation>>) -> anyhow::Result<()> {
    for r in results {
        r?;
    }
    Ok(())
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
    }
}

fn table(args: &BenchArgs, device: &str, rows: &[Row]) -> String {
    let mut s = format!(
        "spangrad bench: {} (random weights), batch {} x {} tokens{}, {} timed batches, {device}\n\n\
         | saliency | setup (s) | s / batch | explanations / s | peak extra memory (MiB) | speed-up vs {} | memory vs {} |\n\
         |---|---|---|---|---|---|---|\n",
        args.preset.name(),
        args.batch,
        args.seq_len,
        args.max_batch_tokens
            .map_or(String::new(), |n| format!(" (passes of at most {n} tokens)")),
        args.iters,
        rows[0].saliency,
        rows[0].saliency,
    );
    for r in rows {
        s += &format!(
            "| {} | {:.2} | {:.3} | {:.2} | {:.1} | {:.2}x | {:.3}x |\n",
            r.saliency,
            r.setup_s,
            r.batch_s,
            args.batch as f64 / r.batch_s,
            r.peak_mib,
            rows[0].batch_s / r.batch_s,
            r.peak_mib / rows[0].peak_mib,
        );
    }
    s
}

fn record(path: &PathBuf, table: &str) -> std::io::Result<()> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(
        file,
        "\n### {} — {cpu}, {cores} cores\n\n```\n{}\n```\n\n{table}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        std::env::args().collect::<Vec<_>>().join(" "),
    )
}
