//! Results as Python objects built from the Rust values, with no JSON in between: an
//! `Explanation` per explained pair, a `Failure` per other, and a `Report` page of them.

use std::sync::Arc;

use numpy::PyArray1;
use pyo3::exceptions::{PyImportError, PyOSError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde::Serialize;
use spangrad_rs::explain::PairFailure;
use spangrad_rs::report::{self, ReportPair};
use spangrad_rs::{Explanation as RustExplanation, PairId};

/// What an explanation explains: its pair's text, and the model (for a report's title).
pub struct Source {
    pub question: String,
    pub context: String,
    pub model: Arc<str>,
}

/// One pair's explanation. Its attributes are the fields of `spangrad explain --format json`
/// (`to_dict()` is that JSON, `to_json()` its text); `tokens_frame()` and `words_frame()` are
/// pandas DataFrames; in a notebook it shows as the HTML report.
#[pyclass(module = "spangrad", frozen)]
pub struct Explanation {
    inner: RustExplanation,
    source: Arc<Source>,
}

impl Explanation {
    pub fn new(inner: RustExplanation, source: Arc<Source>) -> Self {
        Self { inner, source }
    }

    fn nested(&self, explanations: &[RustExplanation]) -> Vec<Explanation> {
        explanations
            .iter()
            .map(|e| Explanation::new(e.clone(), self.source.clone()))
            .collect()
    }
}

#[pymethods]
impl Explanation {
    /// The pair's id, as given; None when it had none.
    #[getter]
    fn id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        id_to_py(py, self.inner.id.as_ref())
    }

    /// The explained answer: "text", "char_start", "char_end", "token_start", "token_end",
    /// the logits and "score", and the pipeline's "probability" where it applies.
    #[getter]
    fn answer<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.answer)
    }

    /// The model's own answer, when the explained one is another (an answer given); else None.
    #[getter]
    fn model_answer<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.model_answer)
    }

    /// The logits differentiated: "kind", "start_token", "end_token".
    #[getter]
    fn target<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.target)
    }

    #[getter]
    fn span_mode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.span_mode)
    }

    #[getter]
    fn saliency<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.saliency)
    }

    #[getter]
    fn method<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.method)
    }

    /// Integrated gradients only: sum of attributions minus (y(x) - y(baseline)); else None.
    #[getter]
    fn completeness_error(&self) -> Option<f32> {
        self.inner.completeness_error
    }

    /// The dtype that computed it: "f32", "bf16" or "f16".
    #[getter]
    fn precision<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.precision)
    }

    #[getter]
    fn seed_compat(&self) -> bool {
        self.inner.seed_compat
    }

    /// Whether the context was cut to fit the maximum length.
    #[getter]
    fn truncated(&self) -> bool {
        self.inner.truncated
    }

    /// The window of a split context explained, or None.
    #[getter]
    fn window<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.window)
    }

    /// The span's rank among the candidates (1: the top one), or None.
    #[getter]
    fn rank(&self) -> Option<usize> {
        self.inner.rank
    }

    /// One dict per token: "text", "segment", "char_start", "char_end", the logits, "score",
    /// "raw", "grad_x_input" (as tokens_frame()'s columns).
    #[getter]
    fn tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.tokens)
    }

    /// One dict per word: "text", "segment", "char_start", "char_end", "score".
    #[getter]
    fn words<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.words)
    }

    #[getter]
    fn warnings(&self) -> Vec<String> {
        self.inner.warnings.clone()
    }

    /// With top_k: the next best spans, each an Explanation.
    #[getter]
    fn alternatives(&self) -> Vec<Explanation> {
        self.nested(&self.inner.alternatives)
    }

    /// With explain_windows="all": every window of a split context, each an Explanation.
    #[getter]
    fn windows(&self) -> Vec<Explanation> {
        self.nested(&self.inner.windows)
    }

    /// The tokens' scores (raw / max |raw|), float32.
    #[getter]
    fn scores<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        let scores: Vec<f32> = self.inner.tokens.iter().map(|t| t.score).collect();
        PyArray1::from_vec(py, scores)
    }

    /// The pair's question.
    #[getter]
    fn question(&self) -> &str {
        &self.source.question
    }

    /// The pair's context.
    #[getter]
    fn context(&self) -> &str {
        &self.source.context
    }

    /// As `spangrad explain --format json` writes it (without JSON lines' "line").
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let dict = to_py(py, &self.inner)?;
        if self.inner.id.is_some() {
            // A pair's id is kept as its JSON text, which Python reads into its value.
            dict.set_item("id", self.id(py)?)?;
        }
        Ok(dict)
    }

    /// The CLI's JSON text.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// The tokens as a pandas DataFrame, a row per token.
    fn tokens_frame<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        frame(py, self.tokens(py)?, "tokens_frame")
    }

    /// The words as a pandas DataFrame, a row per word.
    fn words_frame<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        frame(py, self.words(py)?, "words_frame")
    }

    /// The HTML report of this explanation, framed for a notebook.
    fn _repr_html_(&self) -> String {
        report::framed(&page(&[self], None))
    }

    fn __repr__(&self) -> PyResult<String> {
        let id = match &self.inner.id {
            Some(id) => format!("id={id}, "),
            None => String::new(),
        };
        Ok(format!(
            "Explanation({id}answer={:?}, score={}, method={:?}, tokens={})",
            self.inner.answer.text,
            self.inner.answer.score,
            self.inner.method.to_string(),
            self.inner.tokens.len()
        ))
    }
}

/// A pair with no explanation: where it was ("index" in the list), its "id", why ("error"),
/// and the pair's field at fault ("field": "context", "answer_start"...; or None).
#[pyclass(module = "spangrad", frozen)]
pub struct Failure {
    #[pyo3(get)]
    index: usize,
    failure: PairFailure,
}

impl Failure {
    pub fn new(index: usize, failure: PairFailure) -> Self {
        Self { index, failure }
    }
}

#[pymethods]
impl Failure {
    #[getter]
    fn id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        id_to_py(py, self.failure.id.as_ref())
    }

    #[getter]
    fn error(&self) -> &str {
        &self.failure.error
    }

    #[getter]
    fn field(&self) -> Option<&str> {
        self.failure.field.as_deref()
    }

    /// {"index", "id", "error", "field"}: the CLI's failed line, with "index" for "line".
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("index", self.index)?;
        dict.set_item("id", self.id(py)?)?;
        dict.set_item("error", self.error())?;
        dict.set_item("field", self.field())?;
        Ok(dict)
    }

    fn to_json(&self) -> PyResult<String> {
        #[derive(Serialize)]
        struct Indexed<'a> {
            index: usize,
            #[serde(flatten)]
            failure: &'a PairFailure,
        }
        let indexed = Indexed {
            index: self.index,
            failure: &self.failure,
        };
        serde_json::to_string(&indexed).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        let id = match &self.failure.id {
            Some(id) => format!(", id={id}"),
            None => String::new(),
        };
        format!(
            "Failure(index={}{id}, error={:?})",
            self.index, self.failure.error
        )
    }
}

/// A page of explanations, as `spangrad explain --format html` writes it: shown in a
/// notebook, or saved. Failures in the list are left out; explanations of one pair by several
/// methods share its section, with a toggle between them.
#[pyclass(module = "spangrad", frozen)]
pub struct Report {
    /// The page.
    #[pyo3(get)]
    html: String,
}

#[pymethods]
impl Report {
    /// explanations: what explain() returned (or any list of its Explanations). title: the
    /// page's heading (default: "spangrad: " and the model).
    #[new]
    #[pyo3(signature = (explanations, title = None))]
    fn new(explanations: &Bound<'_, PyAny>, title: Option<&str>) -> PyResult<Self> {
        let mut held: Vec<Bound<'_, Explanation>> = Vec::new();
        for item in explanations.try_iter()? {
            let item = item?;
            if let Ok(e) = item.cast::<Explanation>() {
                held.push(e.clone());
            } else if !item.is_instance_of::<Failure>() {
                return Err(PyTypeError::new_err(format!(
                    "a report takes Explanations (and skips Failures), not {}",
                    item.get_type().name()?
                )));
            }
        }
        let explained: Vec<&Explanation> = held.iter().map(|e| e.get()).collect();
        Ok(Self {
            html: page(&explained, title),
        })
    }

    /// Writes the page to `path`.
    fn save(&self, path: std::path::PathBuf) -> PyResult<()> {
        std::fs::write(&path, &self.html)
            .map_err(|e| PyOSError::new_err(format!("cannot write {}: {e}", path.display())))
    }

    fn _repr_html_(&self) -> String {
        report::framed(&self.html)
    }

    fn __repr__(&self) -> String {
        format!("Report({} bytes of HTML)", self.html.len())
    }
}

/// Writes the HTML report of `explanations` (failures left out) to `path`.
#[pyfunction]
#[pyo3(signature = (explanations, path, title = None))]
pub fn save_html(
    explanations: &Bound<'_, PyAny>,
    path: std::path::PathBuf,
    title: Option<&str>,
) -> PyResult<()> {
    Report::new(explanations, title)?.save(path)
}

/// The report of `explained`: a section per pair (the explanations of one pair by several
/// methods together), in order of first appearance.
fn page(explained: &[&Explanation], title: Option<&str>) -> String {
    let mut groups: Vec<(&Source, Vec<RustExplanation>)> = Vec::new();
    for e in explained {
        let source = &*e.source;
        let group = groups.iter_mut().find(|(s, es)| {
            s.question == source.question
                && s.context == source.context
                && es[0].id == e.inner.id
                && es.iter().all(|x| x.method != e.inner.method)
        });
        match group {
            Some((_, es)) => es.push(e.inner.clone()),
            None => groups.push((source, vec![e.inner.clone()])),
        }
    }
    let pairs: Vec<ReportPair> = groups
        .iter()
        .map(|(source, explanations)| ReportPair {
            question: &source.question,
            context: &source.context,
            explanations,
        })
        .collect();
    let title = match (title, explained.first()) {
        (Some(title), _) => title.to_string(),
        (None, Some(e)) => report::title(&e.source.model),
        (None, None) => "spangrad".to_string(),
    };
    report::html(&title, &pairs)
}

/// A Rust value as Python's: structs as dicts, sequences as lists, f32s as the float of their
/// decimal (as the CLI's JSON reads).
fn to_py<'py, T: Serialize + ?Sized>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    pythonize::pythonize(py, value).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// An id as the Python value its JSON text reads as (an int past 64 bits stays that int).
pub fn id_to_py<'py>(py: Python<'py>, id: Option<&PairId>) -> PyResult<Bound<'py, PyAny>> {
    match id {
        Some(id) => py.import("json")?.getattr("loads")?.call1((id.json(),)),
        None => Ok(py.None().into_bound(py)),
    }
}

/// `rows` (a list of dicts) as a pandas DataFrame.
fn frame<'py>(py: Python<'py>, rows: Bound<'py, PyAny>, what: &str) -> PyResult<Bound<'py, PyAny>> {
    let pandas = py.import("pandas").map_err(|_| {
        PyImportError::new_err(format!("{what}() needs pandas: pip install pandas"))
    })?;
    let rows = rows.cast_into::<PyList>()?;
    pandas.getattr("DataFrame")?.call1((rows,))
}
