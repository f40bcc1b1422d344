//! The `spangrad` command line: `explain` (one pair, or JSON lines) and `bench`.

mod bench;
mod explain;
mod jsonl;
mod render;

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
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
