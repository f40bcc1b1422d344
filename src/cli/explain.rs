//! `spangrad explain`: one pair from the arguments, or JSON lines from a file.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use spangrad::explain::options::cli::{Flags, OptionArgs};
use spangrad::explain::options::name;
use spangrad::explain::{Method, Sharded};
use spangrad::hub::HubCache;
use spangrad::report::ReportPair;
use spangrad::Explanation;
use spangrad::{ExplainOptions, QaPair};

use super::progress::Progress;
use super::{jsonl, render};

pub const DEFAULT_MODEL: &str = "distilbert-base-cased-distilled-squad";

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// A self-contained HTML page (with --input: one page for all pairs, instead of JSON lines).
    Html,
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// A local checkpoint directory, or a Hugging Face Hub model id (looked up in the hub cache;
    /// downloaded unless HF_HUB_OFFLINE is set).
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// The question (with --context; or give --input).
    #[arg(long, requires = "context")]
    question: Option<String>,
    /// The passage the answer is taken from (cut to --max-length tokens).
    #[arg(long, requires = "question")]
    context: Option<String>,
    /// JSON lines with `question`, `context` and optional `id` (`-` reads standard input);
    /// writes one JSON line per input line, errors included.
    #[arg(long, conflicts_with_all = ["question", "context"])]
    input: Option<PathBuf>,
    /// Output for a single pair (JSON lines input always gives JSON lines).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// How tokens are scored (see the README for each formula and its peer equivalent).
    /// Several, comma-separated, for an HTML report that toggles between them (text and JSON
    /// take the first).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ExplainOptions::default().method])]
    method: Vec<Method>,
    /// Also write the HTML report to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Explain this answer instead of the model's: why would it, or would it not, pick it?
    /// (A JSON-lines pair may carry its own `answer`.)
    #[arg(long, requires = "question")]
    answer: Option<String>,
    /// Where --answer starts in the context, in characters [default: its first occurrence].
    #[arg(long, requires = "answer")]
    answer_start: Option<usize>,
    /// cpu, cuda or cuda:N [default: the first GPU when built with the cuda feature, else cpu];
    /// a list (cuda:0,cuda:1) loads the model on each and shares every batch out over them.
    #[arg(long)]
    device: Option<String>,
    /// No progress bar and no summary line on stderr (errors are still reported).
    #[arg(long, short)]
    quiet: bool,
    /// Pairs read per batch with `--input`, per device.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    #[command(flatten)]
    options: OptionArgs<ExplainFlags>,
}

/// `spangrad explain` takes every option as a flag; `--method` (above) takes several.
pub struct ExplainFlags;

impl Flags for ExplainFlags {
    const LEFT_OUT: &'static [&'static str] = &[name::method];
}

impl ExplainArgs {
    /// The options the flags give, for the first method.
    pub(super) fn options(&self) -> ExplainOptions {
        ExplainOptions {
            method: self.method[0],
            ..self.options.options.clone()
        }
    }
}

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    if stdout_was_closed() {
        bail!("standard output is closed: there is nowhere to write the explanations");
    }
    let options = args.options();
    let single = match (&args.input, args.question, args.context) {
        (Some(_), ..) => None,
        (None, Some(q), Some(c)) => Some(QaPair {
            answer: args.answer.clone(),
            answer_start: args.answer_start,
            ..QaPair::new(q, c)
        }),
        _ => bail!("give --question and --context, or --input FILE"),
    };
    // Option errors name the flag, before anything is loaded.
    options.validate().map_err(spangrad::Error::from)?;
    if args.method.len() > 1 && args.format != Format::Html && args.html.is_none() {
        bail!("several --method values need an HTML report (--format html or --html FILE)");
    }
    let devices = spangrad::device::select_all(args.device.as_deref())?;
    let dir = HubCache::from_env().resolve(&args.model)?;
    let max_input_bytes = options.max_input_bytes;
    let explainer = Sharded::from_dir(&dir, options, &devices).map_err(|e| match e {
        spangrad::Error::InvalidOption(_) => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("cannot load model {}", args.model)),
    })?;
    // One explainer per method, sharing the model.
    let explainers: Vec<Sharded> = args
        .method
        .iter()
        .map(|&m| explainer.with_method(m))
        .collect();
    let report = Report {
        title: spangrad::report::title(&args.model),
        to_stdout: args.format == Format::Html,
        file: args.html.clone(),
    };
    let Some(pair) = single else {
        let input = args.input.expect("checked above");
        let job = ExplainJob {
            kept: report.wanted().then(Vec::new),
            explainers: &explainers,
            report: &report,
        };
        return jsonl::run(
            job,
            &input,
            args.batch_size as usize * devices.len(),
            jsonl::line_limit(max_input_bytes),
            args.quiet,
        );
    };
    let mut progress = Progress::without_bar(args.quiet);
    let explanations = explainers
        .iter()
        .map(|e| e.explain_one(&pair))
        .collect::<spangrad::Result<Vec<_>>>()?;
    progress.advance(1, 0);
    let explanation = &explanations[0];
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            writeln!(out, "{}", serde_json::to_string_pretty(explanation)?)?;
        }
        Format::Text => render::text(&mut out, explanation, &pair, &args.model)?,
        Format::Html => {}
    }
    report.write(&mut out, &[(pair, explanations.clone())])?;
    for w in &explanation.warnings {
        super::note(format_args!("warning: {w}"));
    }
    progress.finish();
    Ok(ExitCode::SUCCESS)
}

/// JSON lines of explanations by the first method; the HTML report gets every method's.
struct ExplainJob<'a> {
    explainers: &'a [Sharded],
    report: &'a Report,
    /// The pairs explained, for the report.
    kept: Option<Vec<(QaPair, Vec<Explanation>)>>,
}

impl jsonl::Job for ExplainJob<'_> {
    type Output = Explanation;

    fn run(&mut self, batch: &[QaPair]) -> anyhow::Result<Vec<spangrad::Result<Explanation>>> {
        let firsts = self.explainers[0].explain_each(batch)?;
        if let Some(kept) = &mut self.kept {
            // The other methods, for the report only.
            let others = self.explainers[1..]
                .iter()
                .map(|e| e.explain_each(batch))
                .collect::<spangrad::Result<Vec<_>>>()?;
            for (i, (pair, first)) in batch.iter().zip(&firsts).enumerate() {
                let Ok(first) = first else { continue };
                let mut all = vec![first.clone()];
                all.extend(others.iter().filter_map(|o| o[i].as_ref().ok().cloned()));
                kept.push((pair.clone(), all));
            }
        }
        Ok(firsts)
    }

    fn json_lines(&self) -> bool {
        !self.report.to_stdout
    }

    fn finish(self, out: &mut dyn Write) -> anyhow::Result<()> {
        match &self.kept {
            Some(kept) => self.report.write(out, kept),
            None => Ok(()),
        }
    }
}

/// Whether the program started with stdout closed (`>&-`). Rust's runtime then puts
/// `/dev/null`, opened read-write, on the descriptor, and every write would vanish while the run
/// reported every pair done; a shell's `> /dev/null` opens it write-only, which is left alone.
fn stdout_was_closed() -> bool {
    // SAFETY: F_GETFL and fstat read the descriptor's state into a local struct.
    unsafe {
        let flags = libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFL);
        if flags == -1 {
            return true;
        }
        if flags & libc::O_ACCMODE != libc::O_RDWR {
            return false;
        }
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(libc::STDOUT_FILENO, &mut stat) == 0
            && stat.st_mode & libc::S_IFMT == libc::S_IFCHR
            && stat.st_rdev == libc::makedev(1, 3)
    }
}

/// Where the HTML report goes: stdout (`--format html`) and/or a file (`--html`).
pub struct Report {
    pub title: String,
    pub to_stdout: bool,
    pub file: Option<PathBuf>,
}

impl Report {
    pub fn wanted(&self) -> bool {
        self.to_stdout || self.file.is_some()
    }

    /// Writes the page of `pairs` (each with its explanations, one per method) where asked.
    pub fn write(
        &self,
        out: &mut dyn Write,
        pairs: &[(QaPair, Vec<Explanation>)],
    ) -> anyhow::Result<()> {
        if !self.wanted() {
            return Ok(());
        }
        let items: Vec<ReportPair> = pairs
            .iter()
            .map(|(p, e)| ReportPair {
                question: &p.question,
                context: &p.context,
                explanations: e,
            })
            .collect();
        let page = spangrad::report::html(&self.title, &items);
        if self.to_stdout {
            out.write_all(page.as_bytes())?;
        }
        if let Some(path) = &self.file {
            std::fs::write(path, &page)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}
