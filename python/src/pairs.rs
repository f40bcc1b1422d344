//! Pairs from Python: each dict read by the one pair reader of every front
//! ([`QaPair::from_json`]) from its JSON text, so that a pair means, and fails, the same here
//! as on a JSON line or in a request to the server.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use spangrad_rs::explain::{OtherFields, PairFailure};
use spangrad_rs::QaPair;

/// The pairs of `pairs`, a sequence of dicts. A single dict or str in its place is a
/// programming error, raised at once; a pair that cannot be read (not a dict, no context, an
/// id that is not JSON, a lone surrogate) fails alone.
pub fn read_pairs(
    py: Python<'_>,
    pairs: &Bound<'_, PyAny>,
) -> PyResult<Vec<Result<QaPair, PairFailure>>> {
    if pairs.is_instance_of::<PyDict>() || pairs.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "pairs must be a list of dicts, not a single dict or str (wrap it in a list)",
        ));
    }
    let json = py.import("json")?;
    let dumps = json.getattr("dumps")?;
    // Strict JSON (no NaN), and text as it is: Rust reads it directly.
    let strict = PyDict::new(py);
    strict.set_item("allow_nan", false)?;
    strict.set_item("ensure_ascii", false)?;
    let mapping = py.import("collections.abc")?.getattr("Mapping")?;
    let dict = py.import("builtins")?.getattr("dict")?;
    let mut out = Vec::new();
    for item in pairs.try_iter()? {
        let mut item = item?;
        // Another mapping (a pandas row's to_dict is a dict; a MappingProxy is not): as a dict.
        if !item.is_instance_of::<PyDict>() && item.is_instance(&mapping)? {
            item = dict.call1((item,))?;
        }
        let text = match dumps.call((&item,), Some(&strict)) {
            Ok(text) => text,
            Err(e) => {
                out.push(Err(PairFailure::unread(
                    None,
                    format!("invalid pair: not JSON: {}", e.value(py)),
                    None,
                )));
                continue;
            }
        };
        let pair = match text.extract::<String>() {
            Ok(text) => QaPair::from_json(&text, OtherFields::Ignored),
            Err(e) => Err(PairFailure::unread(
                None,
                format!(
                    "invalid pair: its text is not valid Unicode (a lone surrogate such as \
                     \\ud800?): {}",
                    e.value(py)
                ),
                None,
            )),
        };
        out.push(pair);
    }
    Ok(out)
}
