//! Fixtures written by tools/reference/make_fixtures.py (HF transformers in PyTorch).
#![allow(dead_code)]

pub mod backward;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use spangrad::{ExplainOptions, Explainer, QaPair};

/// The GPU to test on, with kernel outputs poisoned (NaN) so an unwritten element fails. Without
/// one (no GPU answers, or a build without the `cuda` feature) the test says so past libtest's
/// capture and does nothing, unless `SPANGRAD_REQUIRE_GPU=1` (the GPU check), where it fails.
pub fn gpu(test: &str) -> Option<candle_core::Device> {
    use std::io::Write;
    match spangrad::device::parse("cuda") {
        Ok(device) => {
            #[cfg(feature = "cuda")]
            spangrad::ops::kernels::poison_outputs(true);
            Some(device)
        }
        Err(e) if std::env::var_os("SPANGRAD_REQUIRE_GPU").is_some_and(|v| v != "0") => {
            panic!("{test}: SPANGRAD_REQUIRE_GPU is set and no GPU answers: {e}")
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no GPU to test on ({e})");
            None
        }
    }
}

/// One test per device for a body that takes the device, as candle's `test_device!`:
/// `test_device!(body, cpu_test, gpu_test)`; the GPU one as [`gpu`] says.
#[macro_export]
macro_rules! test_device {
    ($body:expr, $cpu:ident, $gpu:ident) => {
        #[test]
        fn $cpu() {
            $body(&candle_core::Device::Cpu);
        }

        #[test]
        fn $gpu() {
            if let Some(device) = common::gpu(stringify!($gpu)) {
                $body(&device);
            }
        }
    };
}

/// `SPANGRAD_FIXTURES` (for test binaries run away from the source tree, as on the GPU machine),
/// else `tests/fixtures` of this checkout.
pub fn fixture(name: &str) -> PathBuf {
    std::env::var_os("SPANGRAD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
        .join(name)
}

/// (architecture, model directory) of every fixture model.
pub const MODELS: [(&str, &str); 7] = [
    ("bert", "bert-tiny"),
    ("distilbert", "distilbert-tiny"),
    ("roberta", "roberta-tiny"),
    ("xlm-roberta", "xlm-roberta-tiny"),
    ("camembert", "camembert-tiny"),
    ("electra", "electra-tiny"),
    ("albert", "albert-tiny"),
];

#[derive(Deserialize)]
pub struct Expected {
    pub model: String,
    pub max_answer_len: usize,
    pub pairs: Vec<ExpectedPair>,
    pub seed_compat_crash: Option<PairText>,
    /// The transformers QA pipeline on contexts longer than one window.
    pub windows: Vec<ExpectedWindowed>,
}

#[derive(Deserialize)]
pub struct ExpectedWindowed {
    pub question: String,
    pub context: String,
    pub max_length: usize,
    pub doc_stride: usize,
    pub answer: String,
    pub start: usize,
    pub end: usize,
    /// The same with `handle_impossible_answer`.
    pub impossible_answer: PipelineAnswer,
}

/// One answer of the transformers QA pipeline.
#[derive(Deserialize, Debug, Clone)]
pub struct PipelineAnswer {
    pub answer: String,
    pub start: usize,
    pub end: usize,
    pub score: f64,
    /// With `handle_impossible_answer`: the null score and whether "no answer" won.
    #[serde(default)]
    pub null_score: Option<f64>,
    #[serde(default)]
    pub impossible: Option<bool>,
}

#[derive(Deserialize)]
pub struct PairText {
    pub question: String,
    pub context: String,
}

#[derive(Deserialize)]
pub struct ExpectedPair {
    pub question: String,
    pub context: String,
    pub max_length: usize,
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    pub tokens: Vec<String>,
    pub offsets: Vec<(usize, usize)>,
    pub sequence_ids: Vec<Option<usize>>,
    pub start_logits: Vec<f32>,
    pub end_logits: Vec<f32>,
    /// What the model was given (zeros where the architecture takes no token types).
    pub model_token_type_ids: Vec<u32>,
    pub spans: HashMap<String, (usize, usize)>,
    pub answer_best: ExpectedAnswer,
    /// The transformers QA pipeline: its answer, with `handle_impossible_answer`, with
    /// `top_k = 3`.
    pub pipeline: PipelineAnswer,
    pub pipeline_impossible: PipelineAnswer,
    pub pipeline_top3: Vec<PipelineAnswer>,
    /// The token span the pipeline's answer came from (pairs of one window).
    pub pipeline_span: Option<(usize, usize)>,
    pub targets: HashMap<String, ExpectedTarget>,
}

#[derive(Deserialize)]
pub struct ExpectedAnswer {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum ExpectedTarget {
    Ok(Box<TargetResult>),
    Err { error: String },
}

#[derive(Deserialize)]
pub struct TargetResult {
    pub start: usize,
    pub end: usize,
    pub raw: Vec<f32>,
    pub score: Vec<f32>,
    pub grad_x_input: Vec<f32>,
    pub grad: Vec<Vec<f32>>,
    pub words: Vec<ExpectedWord>,
    /// The other attribution methods, by Captum (the `best` target only).
    #[serde(default)]
    pub methods: Option<ExpectedMethods>,
}

#[derive(Deserialize)]
pub struct ExpectedMethods {
    pub grad_x_input: Vec<f32>,
    pub grad_norm: Vec<f32>,
    pub integrated_gradients: HashMap<String, ExpectedIntegratedGradients>,
    pub smoothgrad: Option<ExpectedSmoothGrad>,
}

#[derive(Deserialize)]
pub struct ExpectedIntegratedGradients {
    pub steps: usize,
    pub attribution: Vec<f32>,
    pub delta: f32,
}

#[derive(Deserialize)]
pub struct ExpectedSmoothGrad {
    pub std: f64,
    /// `[samples][tokens][hidden]`.
    pub noise: Vec<Vec<Vec<f32>>>,
    pub raw: Vec<f32>,
}

#[derive(Deserialize)]
pub struct ExpectedWord {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub score: f32,
}

pub fn expected(arch: &str) -> Expected {
    let path = fixture("expected").join(format!("{arch}.json"));
    let text = std::fs::read_to_string(&path).expect("fixture present");
    serde_json::from_str(&text).expect("fixture parses")
}

/// The fixture's pairs, as the library takes them.
pub fn pairs(expected: &Expected) -> Vec<QaPair> {
    expected
        .pairs
        .iter()
        .map(|p| QaPair::new(p.question.clone(), p.context.clone()))
        .collect()
}

/// An explainer of a fixture model. The fixtures record the seed's behaviour, the context cut
/// to one window: unless the options say otherwise, so does this explainer (`doc_stride` 0).
pub fn explainer(dir: &str, options: ExplainOptions) -> Explainer {
    let options = ExplainOptions {
        doc_stride: options.doc_stride.or(Some(0)),
        ..options
    };
    Explainer::from_dir(&fixture(dir), options, &candle_core::Device::Cpu)
        .unwrap_or_else(|e| panic!("loading {dir}: {e}"))
}

/// The expected result of a gradient target that exists.
pub fn target<'a>(p: &'a ExpectedPair, label: &str) -> &'a TargetResult {
    match &p.targets[label] {
        ExpectedTarget::Ok(t) => t,
        ExpectedTarget::Err { error } => panic!("target {label} failed in the reference: {error}"),
    }
}

/// Normalised scores of every token.
pub fn scores(e: &spangrad::Explanation) -> Vec<f32> {
    e.tokens.iter().map(|t| t.score).collect()
}

/// Largest absolute difference, asserting equal lengths.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A writable copy of a fixture model.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    tmp
}

/// Lays out `models--org--name/{refs/main, snapshots/<commit>/...}` as hf-hub does.
pub fn prepare_cache(root: &Path, repo: &str, fixture_dir: &str) -> PathBuf {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo_dir = root.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), commit).unwrap();
    let snapshot = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    for entry in std::fs::read_dir(fixture(fixture_dir)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, snapshot.join(path.file_name().unwrap())).unwrap();
    }
    snapshot
}
