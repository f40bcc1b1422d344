//! The `spangrad` command line: `explain` (one pair, or JSON lines), `evaluate`, `bench`,
//! `bench-evaluate`, `serve` and `bench-serve`.

mod bench;
mod bench_evaluate;
mod bench_serve;
mod evaluate;
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
    about = "Gradient explanations for extractive QA models, and how faithful they are"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer a question about a context and score every input token by its one-hot gradient.
    Explain(explain::ExplainArgs),
    /// How faithful each method's explanations are: comprehensiveness, sufficiency and
    /// leave-one-out, by forward passes over perturbed inputs.
    Evaluate(evaluate::EvaluateArgs),
    /// End-to-end explanations per second and peak memory on a random-weight model.
    Bench(bench::BenchArgs),
    /// A full evaluation's pairs/s and forwards/s on a random-weight model, beside a
    /// ferret-style PyTorch loop.
    BenchEvaluate(bench_evaluate::BenchEvaluateArgs),
    /// An HTTP server: the model loaded once, concurrent requests batched together.
    Serve(serve::ServeArgs),
    /// Requests/s, pairs/s and latency of a server under N concurrent clients.
    BenchServe(bench_serve::BenchServeArgs),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(args) => explain::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchEvaluate(args) => bench_evaluate::run(args),
        Command::Serve(args) => serve::run(args),
        Command::BenchServe(args) => bench_serve::run(args),
    };
    match result {
        Ok(code) => code,
        // The reader of our output went away (`| head`): what could be written was; stop
        // quietly, as a program killed by SIGPIPE would.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            note(format_args!("error: {}", message(&e)));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, as `{:#}` writes them, with options named by their flags.
fn message(e: &anyhow::Error) -> String {
    e.chain()
        .map(|cause| match cause.downcast_ref::<spangrad::Error>() {
            Some(e) => e.render(spangrad::explain::Naming::Flag),
            None => cause.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};
    use serde_json::Value;
    use spangrad::explain::options::cli::flag_value;
    use spangrad::explain::options::schema::Kind;
    use spangrad::explain::{ExplainOptions, Scope, OPTIONS};

    use super::{Cli, Command};

    /// The options `spangrad explain` or `spangrad serve` reads from `args`.
    fn parsed(args: &[&str]) -> ExplainOptions {
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        match Cli::from_arg_matches(&matches).unwrap().command {
            Command::Explain(args) => args.options(),
            Command::Serve(args) => args.options.options,
            _ => unreachable!("explain or serve"),
        }
    }

    /// Every option is a flag of `spangrad explain`, and of `spangrad serve` but the one it
    /// names otherwise; no flag gives the option's default, and the default given as a flag
    /// gives it too.
    #[test]
    fn every_option_is_a_flag_with_its_default() {
        let defaults = ExplainOptions::default();
        for command in ["explain", "serve"] {
            assert_eq!(parsed(&["spangrad", command]), defaults, "{command}");
            for spec in OPTIONS {
                if command == "serve" && spec.name == "max_batch_tokens" {
                    // The server's own --max-batch-tokens sizes its batches.
                    continue;
                }
                let flag = spec.flag();
                let mut options = defaults.clone();
                let value = match flag_value(&spec.default_value()) {
                    Some(value) => value,
                    // An "auto" default: a value in range shows the flag is there.
                    None => {
                        let cli = Cli::command();
                        let arg = cli
                            .find_subcommand(command)
                            .and_then(|c| c.get_arguments().find(|a| a.get_id() == spec.name))
                            .unwrap_or_else(|| panic!("{command} has no {flag}"));
                        let value = match arg.get_possible_values().first() {
                            Some(named) => Value::String(named.get_name().into()),
                            None if spec.kind == Kind::Integer => {
                                (spec.min.unwrap_or(1.0).max(1.0) as u64).into()
                            }
                            None => spec.min.unwrap_or(1.0).max(1.0).into(),
                        };
                        spec.set(&mut options, value.clone()).unwrap();
                        flag_value(&value).unwrap()
                    }
                };
                let given = parsed(&["spangrad", command, &flag, &value]);
                assert_eq!(given, options, "{command} {flag} {value}");
                assert_eq!(spec.get(&given), spec.get(&options), "{command} {flag}");
            }
        }
    }

    /// The server's `options` object has every per-request option, with the same default;
    /// the others are chosen when it starts.
    #[test]
    fn every_request_option_is_in_the_server_schema_with_its_default() {
        let schema =
            serde_json::to_value(spangrad::explain::options::openapi::request_options()).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        for spec in OPTIONS {
            let property = properties.get(spec.name);
            match spec.scope {
                Scope::Request => {
                    let property = property.unwrap_or_else(|| panic!("{} missing", spec.name));
                    let default = property.get("default").cloned().unwrap_or(Value::Null);
                    assert_eq!(default, spec.default_value(), "{}", spec.name);
                }
                Scope::Load => assert!(property.is_none(), "{} is per server", spec.name),
            }
        }
        assert_eq!(schema["additionalProperties"], Value::Bool(false));
    }
}
