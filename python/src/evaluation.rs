//! `Explainer.evaluate`'s result: every pair's metrics and the summary of them.

use pyo3::exceptions::{PyImportError, PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use spangrad_rs::evaluate::{EvaluateOptions, Evaluation as PairEvaluation, Summary};
use spangrad_rs::report;

/// An evaluation of several methods' explanations: `results` (per pair in order, a dict that
/// is the JSON line of `spangrad evaluate`, or a Failure) and `summary` (a dict: per method and
/// for the random baseline, the mean and spread of each metric and the mean curves). `table()`
/// is the summary as text, `summary_frame()` as a pandas DataFrame; in a notebook it shows as
/// the HTML page with the curves.
#[pyclass(module = "spangrad", frozen)]
pub struct Evaluation {
    results: Py<PyList>,
    summary: Summary,
    options: EvaluateOptions,
    model: String,
}

impl Evaluation {
    pub fn new(
        results: Py<PyList>,
        summary: Summary,
        options: EvaluateOptions,
        model: String,
    ) -> Self {
        Self {
            results,
            summary,
            options,
            model,
        }
    }

    fn page(&self) -> String {
        report::evaluation::html(&report::title(&self.model), &self.options, &self.summary)
    }
}

/// One pair's evaluation as the dict its JSON line reads as (ids and f32 scores exactly as
/// the CLI writes them).
pub fn pair_to_py<'py>(py: Python<'py>, e: &PairEvaluation) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, e)
}

fn json_to_py<'py, T: serde::Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    py.import("json")?.getattr("loads")?.call1((text,))
}

#[pymethods]
impl Evaluation {
    #[getter]
    fn results<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.results.bind(py).clone()
    }

    #[getter]
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.summary)
    }

    /// The summary table as text (as `spangrad evaluate` prints it).
    fn table(&self) -> String {
        self.summary.table()
    }

    /// The summary as a pandas DataFrame: a row per method and the random baseline, the
    /// means, standard deviations and counts of each metric.
    fn summary_frame<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pandas = py.import("pandas").map_err(|_| {
            PyImportError::new_err("summary_frame() needs pandas: pip install pandas")
        })?;
        let rows = PyList::empty(py);
        for row in &self.summary.rows {
            let dict = pyo3::types::PyDict::new(py);
            dict.set_item("method", &row.method)?;
            for (name, spread) in [
                ("aopc_comprehensiveness", row.aopc_comprehensiveness),
                ("aopc_sufficiency", row.aopc_sufficiency),
                ("loo_kendall_tau", row.loo_kendall_tau),
            ] {
                if let Some(s) = spread {
                    dict.set_item(name, s.mean)?;
                    dict.set_item(format!("{name}_std"), s.std)?;
                    dict.set_item(format!("{name}_count"), s.count)?;
                }
            }
            rows.append(dict)?;
        }
        pandas
            .getattr("DataFrame")?
            .call1((rows,))?
            .call_method1("set_index", ("method",))
    }

    /// The HTML page of the summary (tables and curves), as `spangrad evaluate --format html`.
    fn to_html(&self) -> String {
        self.page()
    }

    /// Writes the HTML page to `path`.
    fn save_html(&self, path: std::path::PathBuf) -> PyResult<()> {
        std::fs::write(&path, self.page())
            .map_err(|e| PyOSError::new_err(format!("cannot write {}: {e}", path.display())))
    }

    fn _repr_html_(&self) -> String {
        report::framed(&self.page())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let methods: Vec<&str> = self.options.methods.iter().map(|m| m.name()).collect();
        format!(
            "Evaluation(pairs={}, evaluated={}, methods={methods:?})",
            self.results.bind(py).len(),
            self.summary.pairs
        )
    }
}
