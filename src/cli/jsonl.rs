//! JSON lines in, JSON lines out, one for each input line, in order (the explanations of
//! `spangrad explain`, the evaluations of `spangrad evaluate`). A bad line (blank, not
//! UTF-8, not JSON, bad pair) is reported with its line number and the others go on; the exit
//! code tells if any failed.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use spangrad::explain::{Naming, OtherFields, PairFailure};
use spangrad::{PairId, QaPair};

use super::progress::Progress;

/// An input line in order; a queued pair waits in the batch.
enum Entry {
    Failed { line: usize, failure: PairFailure },
    Queued { line: usize, id: Option<PairId> },
}

/// What a JSON-lines run does with each batch of pairs.
pub trait Job {
    type Output: serde::Serialize;

    /// Each pair's result, in order; the outer error stops the run.
    fn run(&mut self, batch: &[QaPair]) -> anyhow::Result<Vec<spangrad::Result<Self::Output>>>;

    /// Whether the results go to stdout as JSON lines (not where a page goes there).
    fn json_lines(&self) -> bool;

    /// After the last line: the page or the summary.
    fn finish(self, out: &mut dyn Write) -> anyhow::Result<()>;
}

/// Runs `job` over the lines of `input`, `batch_size` pairs at a time.
pub fn run(
    mut job: impl Job,
    input: &Path,
    batch_size: usize,
    max_line_bytes: usize,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let open = || File::open(input).with_context(|| format!("cannot open {}", input.display()));
    // Only a regular file is read twice (once to count its lines for the progress bar): a pipe
    // (`--input <(cmd)`, /dev/stdin, a FIFO) would be drained by the count.
    let (mut reader, total): (Box<dyn BufRead>, _) = if input == Path::new("-") {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file = open()?;
        let regular = file.metadata().is_ok_and(|m| m.is_file());
        let total = if regular {
            Some(count_lines(open()?))
        } else {
            None
        };
        (Box::new(BufReader::new(file)), total)
    };
    let mut progress = Progress::new(total, quiet);
    let mut out = std::io::stdout().lock();
    let mut pending: Vec<Entry> = Vec::new();
    let mut batch: Vec<QaPair> = Vec::new();
    let (mut total, mut failed) = (0, 0);
    let mut bytes = Vec::new();
    for line in 1.. {
        let Some(fits) = read_line(&mut reader, &mut bytes, max_line_bytes)
            .with_context(|| format!("cannot read line {line}"))?
        else {
            break;
        };
        if line == 1 && bytes.starts_with(BOM) {
            bytes.drain(..BOM.len());
        }
        total += 1;
        let parsed = if fits {
            parse(&bytes)
        } else {
            Err(PairFailure::unread(
                None,
                format!(
                    "the line is over {max_line_bytes} bytes, more than any pair within \
                     --max-input-bytes takes: skipped unread"
                ),
                None,
            ))
        };
        let entry = match parsed {
            Err(failure) => Entry::Failed { line, failure },
            Ok(pair) => {
                let id = pair.id.clone();
                batch.push(pair);
                Entry::Queued { line, id }
            }
        };
        pending.push(entry);
        if batch.len() == batch_size {
            failed += flush(&mut job, &mut pending, &mut batch, &mut out, &mut progress)?;
        }
    }
    failed += flush(&mut job, &mut pending, &mut batch, &mut out, &mut progress)?;
    if failed > 0 {
        progress.note(format_args!("{failed} of {total} lines failed"));
    }
    job.finish(&mut out)?;
    progress.finish();
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The longest line read for pairs of at most `max_input_bytes` of text: JSON escapes take at
/// most 6 bytes per byte of text, and 64 KiB is room for the keys and the id.
pub fn line_limit(max_input_bytes: usize) -> usize {
    max_input_bytes.saturating_mul(6).saturating_add(64 << 10)
}

/// The next line (without its `\n`) into `line`, kept only up to `limit` bytes: the rest of a
/// longer line is read past, never held. `None` at the end of the input; `Some(false)` for a
/// line over the limit.
fn read_line(
    reader: &mut dyn BufRead,
    line: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<bool>> {
    line.clear();
    let (mut read_any, mut fits) = (false, true);
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(read_any.then_some(fits));
        }
        read_any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if fits && line.len() + chunk.len() <= limit {
            line.extend_from_slice(chunk);
        } else {
            fits = false;
            line.clear();
        }
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(fits));
        }
    }
}

/// The lines of a file: the output lines to come, for the progress bar. Counted in chunks,
/// holding no line.
fn count_lines(file: File) -> u64 {
    let mut reader = BufReader::new(file);
    let (mut lines, mut open) = (0, false);
    while let Ok(chunk) = reader.fill_buf() {
        if chunk.is_empty() {
            break;
        }
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        open = chunk.last() != Some(&b'\n');
        let used = chunk.len();
        reader.consume(used);
    }
    lines + u64::from(open)
}

/// The UTF-8 byte-order mark some editors put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A pair from one line (see [`QaPair::from_json`]); a line that is not text fails first.
fn parse(bytes: &[u8]) -> Result<QaPair, PairFailure> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| PairFailure::unread(None, format!("not UTF-8: {e}"), None))?;
    // Every line gets its output line, a blank one too, so outputs stay aligned with inputs.
    if text.trim().is_empty() {
        return Err(PairFailure::unread(None, "blank line: no pair", None));
    }
    QaPair::from_json(text, OtherFields::Ignored)
}

/// A result line: the result's fields, then its input line number.
#[derive(serde::Serialize)]
struct Numbered<'a, T> {
    #[serde(flatten)]
    result: &'a T,
    line: usize,
}

/// A line that has no result, and why.
#[derive(serde::Serialize)]
struct Failure {
    line: usize,
    #[serde(flatten)]
    failure: PairFailure,
}

/// Runs the queued pairs in one batch and writes every pending entry in order; each output
/// line carries its input line number, and the id exactly as given.
fn flush<J: Job>(
    job: &mut J,
    pending: &mut Vec<Entry>,
    batch: &mut Vec<QaPair>,
    out: &mut impl Write,
    progress: &mut Progress,
) -> anyhow::Result<usize> {
    let mut results = job.run(batch)?.into_iter();
    batch.clear();
    let (mut failed, mut written) = (0, 0);
    for entry in pending.drain(..) {
        let text = match entry {
            Entry::Failed { line, failure } => Err((line, failure)),
            Entry::Queued { line, id } => {
                match results.next().expect("one result per queued pair") {
                    // Serialised from the struct: through a `Value`, every f32 would be
                    // written with f64 digits.
                    Ok(result) => Ok(serde_json::to_string(&Numbered {
                        result: &result,
                        line,
                    })?),
                    Err(e) => Err((line, PairFailure::explaining(id, &e, Naming::Flag))),
                }
            }
        };
        let text = text.unwrap_or_else(|(line, failure)| {
            failed += 1;
            progress.note(format_args!("line {line}: {}", failure.error));
            serde_json::to_string(&Failure { line, failure }).expect("a failure serialises")
        });
        if job.json_lines() {
            // Serialised first, so that a closed stdout surfaces as the io::Error it is.
            writeln!(out, "{text}")?;
        }
        written += 1;
    }
    out.flush()?;
    progress.advance(written, failed as u64);
    Ok(failed)
}
