//! The `Explainer` class: a checkpoint loaded once, explaining pairs into `Explanation`s or
//! arrays.

use std::path::Path;
use std::sync::Arc;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyImportError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use spangrad_rs::explain::{Naming, PairFailure, Scope, Sharded};
use spangrad_rs::model::preset::Preset;
use spangrad_rs::{
    ExplainOptions, Explainer as RustExplainer, Explanation as RustExplanation, QaPair,
};

use spangrad_rs::evaluate::{EvaluateOptions, Evaluator, Tally, DEFAULT_RANDOM_ORDERS};

use crate::arrays::Columns;
use crate::errors::{option_error, pair_error, to_py};
use crate::evaluation::{pair_to_py, Evaluation};
use crate::options::{given, options_dict};
use crate::pairs::read_pairs;
use crate::results::{Explanation, Failure, Source};

/// Explains extractive question answering with gradients: the answer span of each
/// (question, context) pair and, per token, the L2 norm over the vocabulary of the gradient of
/// start[s] + end[e] with respect to the one-hot input, normalised by its maximum.
///
/// model: a local checkpoint directory (config.json, weights, tokenizer) or a Hugging Face Hub
///     model id, resolved through the hub cache (offline with HF_HUB_OFFLINE=1).
/// device: "cpu", "cuda", "cuda:N", or a list "cuda:0,cuda:1" (a model per device, each batch
///     shared out over them).
/// **options: any of spangrad.options(), by name, with the command line's defaults (the flag
///     is the name in kebab case: top_k is --top-k); None keeps the default. Those of scope
///     "request" can also be given per call, to explain().
#[pyclass(module = "spangrad", frozen)]
pub struct Explainer {
    inner: Sharded,
    model: String,
    device: String,
}

#[pymethods]
impl Explainer {
    #[new]
    #[pyo3(signature = (model, device = "cpu", **options))]
    fn new(
        py: Python<'_>,
        model: &str,
        device: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let options = given(options, Scope::Load)?
            .apply(&ExplainOptions::default())
            .map_err(option_error)?;
        let devices = spangrad_rs::device::select_all(Some(device)).map_err(to_py)?;
        let inner = py
            .detach(|| {
                let dir = if Path::new(model).is_dir() {
                    model.into()
                } else {
                    spangrad_rs::hub::HubCache::from_env().resolve(model)?
                };
                Sharded::from_dir(&dir, options, &devices)
            })
            .map_err(to_py)?;
        Ok(Self {
            inner,
            model: model.to_string(),
            device: device.to_string(),
        })
    }

    /// A random-weight model of a standard shape ("distilbert-base", "bert-base",
    /// "roberta-base" or "xlm-roberta-base") with a
    /// made-up vocabulary (words w5, w6, ...: one token each), for benchmarks: its answers mean
    /// nothing, its cost is the real model's. Takes the options of the constructor.
    #[staticmethod]
    #[pyo3(signature = (preset, device = "cpu", **options))]
    fn preset(
        py: Python<'_>,
        preset: &str,
        device: &str,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let which = Preset::from_name(preset).ok_or_else(|| {
            let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
            PyValueError::new_err(format!("unknown preset {preset:?}: {}", names.join(", ")))
        })?;
        let options = given(options, Scope::Load)?
            .apply(&ExplainOptions::default())
            .map_err(option_error)?;
        let devices = spangrad_rs::device::select_all(Some(device)).map_err(to_py)?;
        let shards = py
            .detach(|| {
                devices
                    .iter()
                    .map(|d| RustExplainer::preset(which, options.clone(), d))
                    .collect::<spangrad_rs::Result<Vec<_>>>()
            })
            .map_err(to_py)?;
        Ok(Self {
            inner: Sharded::new(shards).map_err(to_py)?,
            model: format!("preset:{preset}"),
            device: device.to_string(),
        })
    }

    /// The options in force, by name, as JSON values (None for an "auto" left unset).
    #[getter]
    fn options<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        options_dict(py, self.inner.first().engine().options())
    }

    /// Explains pairs: a list of dicts with "question", "context" and optional "id" (any JSON
    /// value, echoed back), "answer" and "answer_start" (other keys are left alone). Returns,
    /// in order, an Explanation per pair (its to_dict() is the CLI's JSON) or, for a pair that
    /// cannot be read or explained, a Failure ({"index", "id", "error", "field"}); with
    /// on_error="raise", the first such pair raises PairError instead. progress: True for a
    /// tqdm bar, or a callable given (done, total) as the pairs are explained.
    #[pyo3(signature = (pairs, on_error = "return", progress = None, **options))]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        pairs: &Bound<'py, PyAny>,
        on_error: &str,
        progress: Option<&Bound<'py, PyAny>>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let explainer = self.under(options)?;
        let raise = match on_error {
            "return" => false,
            "raise" => true,
            other => {
                return Err(PyValueError::new_err(format!(
                    "on_error={other:?}: \"return\" or \"raise\""
                )))
            }
        };
        let read = read_pairs(py, pairs)?;
        if raise {
            if let Some((index, failure)) = read
                .iter()
                .enumerate()
                .find_map(|(i, r)| Some((i, r.as_ref().err()?)))
            {
                return Err(pair_error(py, index, failure));
            }
        }
        // The readable pairs, in order, and where each read failed.
        let mut good = Vec::with_capacity(read.len());
        let mut slots: Vec<Option<PairFailure>> = Vec::with_capacity(read.len());
        for r in read {
            match r {
                Ok(pair) => {
                    good.push(pair);
                    slots.push(None);
                }
                Err(failure) => slots.push(Some(failure)),
            }
        }
        let results = compute(py, &explainer, &good, progress)?;
        let mut explained = good.into_iter().zip(results);
        let model: Arc<str> = self.model.as_str().into();
        let mut out: Vec<Bound<'py, PyAny>> = Vec::with_capacity(slots.len());
        for (index, slot) in slots.into_iter().enumerate() {
            let failure = match slot {
                None => match explained.next().expect("one result per readable pair") {
                    (pair, Ok(explanation)) => {
                        let source = Source {
                            question: pair.question,
                            context: pair.context,
                            model: model.clone(),
                        };
                        let explanation = Explanation::new(explanation, Arc::new(source));
                        out.push(Bound::new(py, explanation)?.into_any());
                        continue;
                    }
                    (pair, Err(e)) => {
                        let failure = PairFailure::explaining(pair.id, &e, Naming::Name);
                        if raise {
                            return Err(match to_py(e) {
                                err if err.is_instance_of::<PyValueError>(py) => {
                                    pair_error(py, index, &failure)
                                }
                                err => err,
                            });
                        }
                        failure
                    }
                },
                Some(failure) => failure,
            };
            out.push(Bound::new(py, Failure::new(index, failure))?.into_any());
        }
        PyList::new(py, out)
    }

    /// Explains questions[i] about contexts[i] (any sequences of str: lists, NumPy arrays,
    /// pandas Series) into arrays for dataframes: "scores" float32 [n, longest] (zero past each
    /// pair's "lengths"), "answer_start" / "answer_end" (token indices) and
    /// "answer_char_start" / "answer_char_end" (characters of the context; -1 when none or
    /// failed) as int64 [n]; "answer" and "error" (None when explained) as lists of str, and
    /// "tokens" as a list of lists of str.
    #[pyo3(signature = (questions, contexts, progress = None, **options))]
    fn explain_arrays<'py>(
        &self,
        py: Python<'py>,
        questions: Vec<String>,
        contexts: Vec<String>,
        progress: Option<&Bound<'py, PyAny>>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let explainer = self.under(options)?;
        if questions.len() != contexts.len() {
            return Err(PyValueError::new_err(format!(
                "{} questions but {} contexts",
                questions.len(),
                contexts.len()
            )));
        }
        let pairs: Vec<QaPair> = questions
            .into_iter()
            .zip(contexts)
            .map(|(q, c)| QaPair::new(q, c))
            .collect();
        let results = compute(py, &explainer, &pairs, progress)?;
        let n = results.len();
        let longest = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|e| e.tokens.len()))
            .max()
            .unwrap_or(0);
        let mut scores = vec![0f32; n * longest];
        let mut columns = Columns::with_capacity(n);
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(e) => {
                    for (j, t) in e.tokens.iter().enumerate() {
                        scores[i * longest + j] = t.score;
                    }
                    columns.push(e);
                }
                Err(error) => columns.push_failed(error),
            }
        }
        let out = PyDict::new(py);
        out.set_item(
            "scores",
            PyArray1::from_vec(py, scores).reshape([n, longest])?,
        )?;
        out.set_item("lengths", PyArray1::from_vec(py, columns.lengths))?;
        out.set_item("answer_start", PyArray1::from_vec(py, columns.start))?;
        out.set_item("answer_end", PyArray1::from_vec(py, columns.end))?;
        out.set_item(
            "answer_char_start",
            PyArray1::from_vec(py, columns.char_start),
        )?;
        out.set_item("answer_char_end", PyArray1::from_vec(py, columns.char_end))?;
        out.set_item("answer", columns.answer)?;
        out.set_item("error", columns.error)?;
        out.set_item("tokens", columns.tokens)?;
        Ok(out)
    }

    /// How faithful each method's explanations are (see the README's "Evaluating
    /// explanations"): every pair explained by every method, then comprehensiveness and
    /// sufficiency over the top 10..100% of tokens, and the leave-one-out Kendall tau, each
    /// beside a seeded random ranking's (averaged over random_orders). pairs as for
    /// explain(); methods: names as spangrad.options() lists them [default: all five];
    /// metrics: "comprehensiveness", "sufficiency", "loo" [default: all]. Runs on the first
    /// device. Returns an Evaluation: results per pair (a dict, or a Failure) and the summary.
    #[pyo3(signature = (pairs, methods = None, metrics = None, random_orders = DEFAULT_RANDOM_ORDERS, progress = None, **options))]
    #[allow(clippy::too_many_arguments)]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        pairs: &Bound<'py, PyAny>,
        methods: Option<Vec<String>>,
        metrics: Option<Vec<String>>,
        random_orders: usize,
        progress: Option<&Bound<'py, PyAny>>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Evaluation> {
        let explainer = self.under(options)?;
        let defaults = EvaluateOptions::default();
        let evaluate = EvaluateOptions {
            methods: match methods {
                Some(m) => parse_names("methods", m)?,
                None => defaults.methods,
            },
            metrics: match metrics {
                Some(m) => parse_names("metrics", m)?,
                None => defaults.metrics,
            },
            random_orders,
        };
        let evaluator = Evaluator::new(explainer.first(), evaluate).map_err(to_py)?;
        let read = read_pairs(py, pairs)?;
        let good: Vec<QaPair> = read
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let mut progress = Progress::new(py, progress, good.len())?;
        let mut evaluated = Vec::with_capacity(good.len());
        // Each pair costs hundreds of forwards: small steps keep Ctrl-C and progress prompt.
        for chunk in good.chunks(PAIRS_PER_STEP / 8) {
            evaluated.extend(
                py.detach(|| evaluator.evaluate_each(chunk))
                    .map_err(to_py)?,
            );
            py.check_signals()?;
            progress.advance(evaluated.len())?;
        }
        progress.close()?;
        let mut tally = Tally::default();
        let mut evaluated = good.into_iter().zip(evaluated);
        let out = PyList::empty(py);
        for (index, r) in read.into_iter().enumerate() {
            let failure = match r {
                Err(failure) => failure,
                Ok(_) => match evaluated.next().expect("one result per readable pair") {
                    (_, Ok(e)) => {
                        tally.add(&e);
                        out.append(pair_to_py(py, &e)?)?;
                        continue;
                    }
                    (pair, Err(e)) => PairFailure::explaining(pair.id, &e, Naming::Name),
                },
            };
            out.append(Bound::new(py, Failure::new(index, failure))?)?;
        }
        Ok(Evaluation::new(
            out.unbind(),
            tally.summary(),
            evaluator.options().clone(),
            self.model.clone(),
        ))
    }

    /// The model as given.
    #[getter]
    fn model(&self) -> &str {
        &self.model
    }

    #[getter]
    fn device(&self) -> &str {
        &self.device
    }

    /// "f32", "bf16" or "f16".
    #[getter]
    fn dtype(&self) -> &'static str {
        self.inner.first().engine().precision().name()
    }

    /// Tokens per window.
    #[getter]
    fn max_length(&self) -> usize {
        self.inner.first().max_length()
    }

    fn __repr__(&self) -> String {
        format!(
            "Explainer(model={:?}, device={:?}, dtype={:?}, max_length={})",
            self.model,
            self.device,
            self.dtype(),
            self.max_length()
        )
    }
}

impl Explainer {
    /// The model under the per-call options (itself when there are none).
    fn under(&self, options: Option<&Bound<'_, PyDict>>) -> PyResult<Sharded> {
        let given = given(options, Scope::Request)?;
        if given.is_empty() {
            return Ok(self.inner.clone());
        }
        let options = given
            .apply(self.inner.first().engine().options())
            .map_err(option_error)?;
        self.inner.with_options(options).map_err(to_py)
    }
}

/// Names (of methods, of metrics) as the values they name.
fn parse_names<T: serde::de::DeserializeOwned>(what: &str, names: Vec<String>) -> PyResult<Vec<T>> {
    if names.is_empty() {
        return Err(PyValueError::new_err(format!("{what}: give at least one")));
    }
    let values = names.into_iter().map(serde_json::Value::String).collect();
    serde_json::from_value(serde_json::Value::Array(values))
        .map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
}

/// Pairs per step of a long list, per device: between steps, Ctrl-C is seen and progress
/// told; within one, the engine batches as it would the whole list.
const PAIRS_PER_STEP: usize = 64;

/// The pairs explained with the GIL released (other Python threads run meanwhile), in steps
/// that report to `progress`: a callable given (done, total), or True for a tqdm bar.
fn compute(
    py: Python<'_>,
    explainer: &Sharded,
    pairs: &[QaPair],
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<spangrad_rs::Result<RustExplanation>>> {
    let mut progress = Progress::new(py, progress, pairs.len())?;
    let step = PAIRS_PER_STEP * explainer.devices();
    let mut results = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(step) {
        results.extend(py.detach(|| explainer.explain_each(chunk)).map_err(to_py)?);
        py.check_signals()?;
        progress.advance(results.len())?;
    }
    progress.close()?;
    Ok(results)
}

/// Where progress goes: nowhere, a callable, or a tqdm bar.
enum Progress<'py> {
    Silent,
    Callback {
        call: Bound<'py, PyAny>,
        total: usize,
    },
    Bar(Bound<'py, PyAny>),
}

impl<'py> Progress<'py> {
    fn new(py: Python<'py>, progress: Option<&Bound<'py, PyAny>>, total: usize) -> PyResult<Self> {
        let Some(progress) = progress else {
            return Ok(Self::Silent);
        };
        if progress.is_instance_of::<pyo3::types::PyBool>() {
            if !progress.extract::<bool>()? {
                return Ok(Self::Silent);
            }
            let tqdm = py.import("tqdm.auto").map_err(|_| {
                PyImportError::new_err(
                    "progress=True shows a tqdm bar: pip install tqdm (or pass a callable, \
                     given (done, total))",
                )
            })?;
            let options = PyDict::new(py);
            options.set_item("total", total)?;
            options.set_item("unit", "pair")?;
            return Ok(Self::Bar(tqdm.getattr("tqdm")?.call((), Some(&options))?));
        }
        if !progress.is_callable() {
            return Err(PyTypeError::new_err(
                "progress is True, False, None or a callable given (done, total)",
            ));
        }
        Ok(Self::Callback {
            call: progress.clone(),
            total,
        })
    }

    fn advance(&mut self, done: usize) -> PyResult<()> {
        match self {
            Self::Silent => Ok(()),
            Self::Callback { call, total } => call.call1((done, *total)).map(drop),
            Self::Bar(bar) => {
                let shown: usize = bar.getattr("n")?.extract()?;
                bar.call_method1("update", (done - shown,)).map(drop)
            }
        }
    }

    fn close(self) -> PyResult<()> {
        match self {
            Self::Bar(bar) => bar.call_method0("close").map(drop),
            _ => Ok(()),
        }
    }
}
