//! The `spangrad` Python module: an `Explainer` over the Rust engine. Compute runs with the GIL
//! released; results are `Explanation` objects built from the Rust values, or NumPy arrays.

mod arrays;
mod errors;
mod evaluation;
mod explainer;
mod options;
mod pairs;
mod results;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use errors::{OptionError, PairError};
use explainer::Explainer;
use results::{save_html, Explanation, Failure, Report};

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
    m.add_function(wrap_pyfunction!(options::options, m)?)?;
    m.add_class::<Explanation>()?;
    m.add_class::<Failure>()?;
    m.add_class::<Report>()?;
    m.add_class::<evaluation::Evaluation>()?;
    m.add_function(wrap_pyfunction!(save_html, m)?)?;
    m.add("OptionError", m.py().get_type::<OptionError>())?;
    m.add("PairError", m.py().get_type::<PairError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
