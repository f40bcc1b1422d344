//! `spangrad evaluate`: how faithful each method's explanations are, pair by pair in JSON
//! lines, and in a summary table (text on stderr, or an HTML page with the curves).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use spangrad::evaluate::{
    EvaluateOptions, Evaluation, Evaluator, Metric, Summary, Tally, DEFAULT_RANDOM_ORDERS,
    MAX_RANDOM_ORDERS,
};
use spangrad::explain::options::cli::{Flags, OptionArgs};
use spangrad::explain::options::name;
use spangrad::explain::{Explainer, Method};
use spangrad::hub::HubCache;
use spangrad::QaPair;

use super::explain::DEFAULT_MODEL;
use super::jsonl;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON line per input line; the summary table on stderr.
    Json,
    /// The summary as a self-contained HTML page (tables and curves) instead of JSON lines.
    Html,
}

#[derive(clap::Args)]
pub struct EvaluateArgs {
    /// A local checkpoint directory, or a Hugging Face Hub model id.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// JSON lines with `question`, `context` and optional `id` and `answer` (`-` reads
    /// standard input); writes one JSON line per input line, errors included.
    #[arg(long)]
    input: PathBuf,
    /// The methods compared [default: all five].
    #[arg(long, value_enum, value_delimiter = ',')]
    method: Vec<Method>,
    /// The metrics computed (leave-one-out costs one forward per eligible token).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Metric::ALL)]
    metrics: Vec<Metric>,
    /// Random rankings averaged for the chance baseline (seeded by --seed); 0: none.
    #[arg(long, default_value_t = DEFAULT_RANDOM_ORDERS as u64,
          value_parser = clap::value_parser!(u64).range(0..=MAX_RANDOM_ORDERS as u64))]
    random_orders: u64,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Also write the HTML summary to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// cpu, cuda or cuda:N [default: the first GPU when built with the cuda feature, else cpu].
    #[arg(long)]
    device: Option<String>,
    /// No progress bar and no summary table on stderr (errors are still reported).
    #[arg(long, short)]
    quiet: bool,
    /// Pairs explained and perturbed together.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    #[command(flatten)]
    options: OptionArgs<EvaluateFlags>,
}

/// `spangrad evaluate` takes the explanations' options as flags, but those that explain more
/// than one span per pair, and the seed's end token (the pipeline scores no such span).
pub struct EvaluateFlags;

impl Flags for EvaluateFlags {
    const LEFT_OUT: &'static [&'static str] = &[
        name::method,
        name::top_k,
        name::explain_windows,
        name::seed_compat,
    ];
}

impl EvaluateArgs {
    fn evaluate_options(&self) -> EvaluateOptions {
        EvaluateOptions {
            methods: if self.method.is_empty() {
                EvaluateOptions::default().methods
            } else {
                self.method.clone()
            },
            metrics: self.metrics.clone(),
            random_orders: self.random_orders as usize,
        }
    }
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<ExitCode> {
    let options = args.options.options.clone();
    options.validate().map_err(spangrad::Error::from)?;
    let evaluate = args.evaluate_options();
    evaluate.validate()?;
    let device = spangrad::device::select(args.device.as_deref())?;
    let dir = HubCache::from_env().resolve(&args.model)?;
    let max_input_bytes = options.max_input_bytes;
    let explainer = Explainer::from_dir(&dir, options, &device).map_err(|e| match e {
        spangrad::Error::InvalidOption(_) => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("cannot load model {}", args.model)),
    })?;
    let evaluator = Evaluator::new(&explainer, evaluate)?;
    let job = EvaluateJob {
        evaluator: &evaluator,
        tally: Tally::default(),
        args: &args,
    };
    jsonl::run(
        job,
        &args.input,
        args.batch_size as usize,
        jsonl::line_limit(max_input_bytes),
        args.quiet,
    )
}

struct EvaluateJob<'a> {
    evaluator: &'a Evaluator,
    tally: Tally,
    args: &'a EvaluateArgs,
}

impl jsonl::Job for EvaluateJob<'_> {
    type Output = Evaluation;

    fn run(&mut self, batch: &[QaPair]) -> anyhow::Result<Vec<spangrad::Result<Evaluation>>> {
        let results = self.evaluator.evaluate_each(batch)?;
        for e in results.iter().flatten() {
            self.tally.add(e);
        }
        Ok(results)
    }

    fn json_lines(&self) -> bool {
        self.args.format == Format::Json
    }

    fn finish(self, out: &mut dyn Write) -> anyhow::Result<()> {
        let summary = self.tally.summary();
        let args = self.args;
        if !args.quiet && summary.pairs > 0 {
            super::note(format_args!("{}", summary.table()));
        }
        if let Some(path) = &args.summary {
            std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if args.format == Format::Html || args.html.is_some() {
            let page = page(&args.model, self.evaluator.options(), &summary);
            if args.format == Format::Html {
                out.write_all(page.as_bytes())?;
            }
            if let Some(path) = &args.html {
                std::fs::write(path, &page)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
        Ok(())
    }
}

fn page(model: &str, options: &EvaluateOptions, summary: &Summary) -> String {
    spangrad::report::evaluation::html(&spangrad::report::title(model), options, summary)
}
