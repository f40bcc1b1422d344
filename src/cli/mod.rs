//! The `spangrad` command line: `explain` (one pair, or JSON lines), `bench`, `serve` and
//! `bench-serve`.

mod bench;
mod bench_serve;
mod explain;
mod jsonl;
mod progress;
mod render;
mod serve;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "spangrad",
    version,
    about = "Gradient explanations for extractive QA (BERT, DistilBERT)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer a question about a context and score every input token by its one-hot gradient.
    Explain(explain::ExplainArgs),
    /// End-to-end explanations per second and peak memory on a random-weight model.
    Bench(bench::BenchArgs),
    /// An HTTP server: the model loaded once, concurrent requests batched together.
    Serve(serve::ServeArgs),
    /// Requests/s, pairs/s and latency of a server under N concurrent clients.
    BenchServe(bench_serve::BenchServeArgs),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::BenchServe(args) => bench_serve::run(args),
    };
    match result {
        Ok(code) => code,
        // The reader of our output went away (`| head`): what could be written was; stop
        // quietly, as a program killed by SIGPIPE would.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            note(format_args!("error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A line on stderr. A closed stderr is not a reason to stop (or to panic, as `eprintln!`
/// does): the results on stdout matter more than the messages.
pub fn note(message: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{message}");
}
