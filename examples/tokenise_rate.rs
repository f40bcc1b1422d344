//! How fast pairs are read and tokenised on one core: the data-loading side of a pipeline that
//! feeds GPUs (see "Many GPUs or a cluster" in the README). Reads JSON lines, then plans every
//! pair (WordPiece, windows of a long context) as `explain` does, for a few seconds.
//!
//! cargo run --release --example tokenise_rate [-- MODEL_DIR PAIRS.jsonl]

use std::time::{Duration, Instant};

use spangrad::{ExplainOptions, Explainer, QaPair};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .unwrap_or_else(|| format!("{root}/tests/fixtures/distilbert-tiny"));
    let input = args
        .next()
        .unwrap_or_else(|| format!("{root}/tests/fixtures/fidelity-pairs.jsonl"));
    let explainer = Explainer::from_dir(
        model.as_ref(),
        ExplainOptions::default(),
        &candle_core::Device::Cpu,
    )?;
    let text = std::fs::read_to_string(&input)?;
    let start = Instant::now();
    let (mut pairs, mut tokens, mut bytes) = (0usize, 0usize, 0usize);
    while start.elapsed() < Duration::from_secs(3) {
        for line in text.lines() {
            let pair: QaPair = serde_json::from_str(line)?;
            tokens += explainer.tokens(&pair)?;
            bytes += line.len();
            pairs += 1;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{pairs} pairs ({:.1} MB of JSON lines) in {seconds:.2} s on one core: {:.0} pairs/s, \
         {:.0} tokens/s ({:.0} tokens per pair, windows of {} tokens)",
        bytes as f64 / 1e6,
        pairs as f64 / seconds,
        tokens as f64 / seconds,
        tokens as f64 / pairs as f64,
        explainer.max_length()
    );
    Ok(())
}
