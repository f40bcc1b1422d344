//! The `spangrad` Python module: an `Explainer` over the Rust engine. Compute runs with the GIL
//! released; results are the CLI's JSON as Python objects, or NumPy arrays.

use std::path::Path;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{
    PyFileNotFoundError, PyMemoryError, PyOSError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use spangrad_rs::explain::{Given, InvalidOption, Refused, Scope, Sharded, OPTIONS};
use spangrad_rs::model::preset::Preset;
use spangrad_rs::{Error, ExplainOptions, Explainer as RustExplainer, Explanation, PairId, QaPair};

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
struct Explainer {
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
    /// value, echoed back), "answer" and "answer_start". Returns one dict per pair, in order,
    /// equal to the CLI's JSON explanation; a pair that cannot be explained (empty text, an
    /// answer not in the context, ...) gets {"index", "id", "error"} unless on_error="raise",
    /// which raises ValueError for the first such pair.
    #[pyo3(signature = (pairs, on_error = "return", **options))]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        pairs: &Bound<'py, PyAny>,
        on_error: &str,
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
        let good: Vec<QaPair> = read
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let mut results = compute(py, &explainer, &good)?.into_iter();
        let loads = py.import("json")?.getattr("loads")?;
        let mut out = Vec::with_capacity(read.len());
        for (index, pair) in read.iter().enumerate() {
            let (id, error) = match pair {
                Ok(pair) => match results.next().expect("one result per readable pair") {
                    Ok(explanation) => {
                        let text = serde_json::to_string(&explanation)
                            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
                        out.push(loads.call1((text,))?);
                        continue;
                    }
                    Err(e) if raise => return Err(to_py(e)),
                    Err(e) => (pair.id.clone(), e.to_string()),
                },
                Err(bad) if raise => return Err(PyValueError::new_err(bad.error.clone())),
                Err(bad) => (None, bad.error.clone()),
            };
            let failure = Failure { index, id, error };
            let text = serde_json::to_string(&failure)
                .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            out.push(loads.call1((text,))?);
        }
        PyList::new(py, out)
    }

    /// Explains questions[i] about contexts[i] (any sequences of str: lists, NumPy arrays,
    /// pandas Series) into arrays for dataframes: "scores" float32 [n, longest] (zero past each
    /// pair's "lengths"), "answer_start" / "answer_end" (token indices) and
    /// "answer_char_start" / "answer_char_end" (characters of the context; -1 when none or
    /// failed) as int64 [n]; "answer" and "error" (None when explained) as lists of str, and
    /// "tokens" as a list of lists of str.
    #[pyo3(signature = (questions, contexts, **options))]
    fn explain_arrays<'py>(
        &self,
        py: Python<'py>,
        questions: Vec<String>,
        contexts: Vec<String>,
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
        let results = compute(py, &explainer, &pairs)?;
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

/// The pairs explained with the GIL released: other Python threads run meanwhile.
fn compute(
    py: Python<'_>,
    explainer: &Sharded,
    pairs: &[QaPair],
) -> PyResult<Vec<spangrad_rs::Result<Explanation>>> {
    py.detach(|| explainer.explain_each(pairs)).map_err(to_py)
}

/// Keyword options: each by name, checked against its type and range; None keeps the default.
/// Per call (`Scope::Request`), the options fixed at load are refused.
fn given(options: Option<&Bound<'_, PyDict>>, scope: Scope) -> PyResult<Given> {
    let mut given = Given::default();
    for (key, value) in options.into_iter().flatten() {
        let name: String = key.extract()?;
        if value.is_none() {
            continue;
        }
        let unknown = |name: &str| {
            PyTypeError::new_err(format!(
                "unexpected keyword argument {name:?}; the options are {}",
                OPTIONS
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        let spec = ExplainOptions::spec(&name).ok_or_else(|| unknown(&name))?;
        let value = json_value(spec.name, &value)?;
        given
            .add(&name, value, scope)
            .map_err(|refused| match refused {
                Refused::Unknown(name) => unknown(&name),
                Refused::AtLoad(name) => PyTypeError::new_err(format!(
                "{name} is chosen when the model is loaded: give it to Explainer(...), not per \
                 call"
            )),
                Refused::Invalid(e) => option_error(e),
            })?;
    }
    Ok(given)
}

/// A keyword's value as JSON: bool, int, float or str.
fn json_value(name: &'static str, value: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    use pyo3::types::{PyBool, PyFloat, PyInt, PyString};
    if value.is_instance_of::<PyBool>() {
        return Ok(value.extract::<bool>()?.into());
    }
    if value.is_instance_of::<PyString>() {
        return Ok(value.extract::<String>()?.into());
    }
    if value.is_instance_of::<PyFloat>() {
        let x: f64 = value.extract()?;
        return serde_json::Number::from_f64(x)
            .map(serde_json::Value::Number)
            .ok_or_else(|| option_error(InvalidOption::says(name, format!(" {x} is not finite"))));
    }
    // An int, or an int-like value such as a NumPy integer.
    if value.is_instance_of::<PyInt>() || value.hasattr("__index__")? {
        if let Ok(n) = value.extract::<u64>() {
            return Ok(n.into());
        }
        if let Ok(n) = value.extract::<i64>() {
            return Ok(n.into());
        }
        return Err(option_error(InvalidOption::says(
            name,
            format!(" {value} is out of range"),
        )));
    }
    Err(PyTypeError::new_err(format!(
        "{name} takes a bool, int, float or str, not {}",
        value.get_type().name()?
    )))
}

/// Options as a dict of JSON values.
fn options_dict<'py>(py: Python<'py>, options: &ExplainOptions) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for spec in OPTIONS {
        dict.set_item(spec.name, json_to_py(py, &spec.get(options))?)?;
    }
    Ok(dict)
}

/// An option's value (a scalar) as Python's.
fn json_to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::IntoPyObjectExt;
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_bound_py_any(py)?,
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_bound_py_any(py)?,
            (None, Some(i)) => i.into_bound_py_any(py)?,
            _ => n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py)?,
        },
        Value::String(s) => s.into_bound_py_any(py)?,
        Value::Array(_) | Value::Object(_) => unreachable!("option values are scalars"),
    })
}

/// Every option: name, scope ("request" or "load"), default, help, and the range of numbers.
#[pyfunction]
fn options(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let items = OPTIONS
        .iter()
        .map(|spec| {
            let dict = PyDict::new(py);
            dict.set_item("name", spec.name)?;
            dict.set_item("scope", spec.scope.name())?;
            dict.set_item("default", json_to_py(py, &spec.default_value())?)?;
            dict.set_item("help", spec.summary())?;
            dict.set_item("minimum", spec.min)?;
            dict.set_item("maximum", spec.max)?;
            Ok(dict)
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

pyo3::create_exception!(
    spangrad,
    OptionError,
    PyValueError,
    "An option with a wrong value, alone or with the others; `option` names it."
);

/// The Python exception for an invalid option: an `OptionError` with the option's name.
fn option_error(e: InvalidOption) -> PyErr {
    Python::attach(|py| {
        let err = OptionError::new_err(Error::from(e.clone()).to_string());
        let _ = err.value(py).setattr("option", e.option);
        err
    })
}

/// The per-pair columns of `explain_arrays`.
struct Columns {
    lengths: Vec<i64>,
    start: Vec<i64>,
    end: Vec<i64>,
    char_start: Vec<i64>,
    char_end: Vec<i64>,
    answer: Vec<String>,
    error: Vec<Option<String>>,
    tokens: Vec<Vec<String>>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Self {
            lengths: Vec::with_capacity(n),
            start: Vec::with_capacity(n),
            end: Vec::with_capacity(n),
            char_start: Vec::with_capacity(n),
            char_end: Vec::with_capacity(n),
            answer: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
            tokens: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, e: &Explanation) {
        let char_index = |c: Option<usize>| c.map_or(-1, |c| c as i64);
        self.lengths.push(e.tokens.len() as i64);
        self.start.push(e.answer.token_start as i64);
        self.end.push(e.answer.token_end as i64);
        self.char_start.push(char_index(e.answer.char_start));
        self.char_end.push(char_index(e.answer.char_end));
        self.answer.push(e.answer.text.clone());
        self.error.push(None);
        self.tokens
            .push(e.tokens.iter().map(|t| t.text.clone()).collect());
    }

    fn push_failed(&mut self, error: &Error) {
        self.lengths.push(0);
        for column in [
            &mut self.start,
            &mut self.end,
            &mut self.char_start,
            &mut self.char_end,
        ] {
            column.push(-1);
        }
        self.answer.push(String::new());
        self.error.push(Some(error.to_string()));
        self.tokens.push(Vec::new());
    }
}

/// Uses at most `n` threads for compute (before the first explanation; later calls fail):
/// one per CPU a Ray actor or Spark task was given, say.
#[pyfunction]
fn set_threads(n: usize) -> PyResult<()> {
    if n == 0 {
        return Err(PyValueError::new_err("threads must be positive"));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .map_err(|e| {
            PyRuntimeError::new_err(format!(
                "cannot set the threads (set them before the first explanation): {e}"
            ))
        })
}

#[pymodule]
fn spangrad(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Unlike the CLI, the module leaves the host process's allocator settings alone.
    m.add_class::<Explainer>()?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(options, m)?)?;
    m.add("OptionError", m.py().get_type::<OptionError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// A pair whose data cannot be read (an id that is not JSON, text that is not Unicode): it
/// fails alone, as a bad line of the CLI's JSON lines does.
struct BadPair {
    error: String,
}

/// A pair with no explanation, as `explain` returns it.
#[derive(serde::Serialize)]
struct Failure {
    index: usize,
    id: Option<PairId>,
    error: String,
}

/// The pairs of a list of dicts; a pair that is not a mapping with str question and context
/// is a programming error, raised at once with its index. Data that cannot be read (a NaN id,
/// a lone surrogate) fails that pair alone.
fn read_pairs(py: Python<'_>, pairs: &Bound<'_, PyAny>) -> PyResult<Vec<Result<QaPair, BadPair>>> {
    if pairs.is_instance_of::<PyDict>() || pairs.extract::<String>().is_ok() {
        return Err(PyTypeError::new_err(
            "pairs must be a list of dicts, not a single dict or str (wrap it in a list)",
        ));
    }
    let dumps = py.import("json")?.getattr("dumps")?;
    let mapping = py.import("collections.abc")?.getattr("Mapping")?;
    let mut out = Vec::new();
    for (i, item) in pairs.try_iter()?.enumerate() {
        let item = item?;
        if !item.is_instance(&mapping)? {
            return Err(PyTypeError::new_err(format!(
                "pairs[{i}] must be a dict with \"question\" and \"context\", not {}",
                item.get_type().name()?
            )));
        }
        // Ok(Err(_)): a str that is not valid Unicode (a lone surrogate), which fails the pair.
        let text = |key: &str| -> PyResult<Result<String, BadPair>> {
            let value = item.get_item(key).map_err(|_| {
                PyValueError::new_err(format!(
                    "pairs[{i}] has no {key:?} (a dict with \"question\" and \"context\")"
                ))
            })?;
            if !value.is_instance_of::<pyo3::types::PyString>() {
                return Err(PyTypeError::new_err(format!(
                    "pairs[{i}][{key:?}] must be a str"
                )));
            }
            Ok(value.extract::<String>().map_err(|e| BadPair {
                error: format!("pairs[{i}][{key:?}] is not valid Unicode: {e}"),
            }))
        };
        let optional = |key: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
            match item.get_item(key) {
                Ok(v) if !v.is_none() => Ok(Some(v)),
                _ => Ok(None),
            }
        };
        let strict = PyDict::new(py);
        strict.set_item("allow_nan", false)?;
        // Through its JSON text, so that an int past 64 bits comes back as the same int.
        let id: Result<Option<PairId>, BadPair> = match optional("id")? {
            None => Ok(None),
            Some(v) => dumps
                .call((v,), Some(&strict))
                .and_then(|json| json.extract::<String>())
                .map_err(|e| e.to_string())
                .and_then(|json| PairId::from_json(&json).map_err(|e| e.to_string()))
                .map_err(|e| BadPair {
                    error: format!("pairs[{i}][\"id\"] is not JSON: {e}"),
                }),
        };
        let answer = optional("answer")?
            .map(|v| v.extract::<String>())
            .transpose()
            .map_err(|_| PyTypeError::new_err(format!("pairs[{i}][\"answer\"] must be a str")))?;
        let answer_start = optional("answer_start")?
            .map(|v| v.extract::<usize>())
            .transpose()
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "pairs[{i}][\"answer_start\"] must be a non-negative int"
                ))
            })?;
        let (question, context) = (text("question")?, text("context")?);
        out.push(id.and_then(|id| {
            Ok(QaPair {
                id,
                question: question?,
                context: context?,
                answer,
                answer_start,
            })
        }));
    }
    Ok(out)
}

/// The Python exception for a spangrad error; options are named by their keywords.
fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::InvalidOption(e) => option_error(e),
        Error::MissingFile { .. } => PyFileNotFoundError::new_err(message),
        Error::Io { .. } => PyOSError::new_err(message),
        Error::Hub { .. } => PyOSError::new_err(message),
        Error::OutOfMemory { .. } | Error::DeviceOutOfMemory(_) => PyMemoryError::new_err(message),
        Error::Device(_) | Error::Candle(_) | Error::NonFinite(_) => {
            PyRuntimeError::new_err(message)
        }
        _ => PyValueError::new_err(message),
    }
}
