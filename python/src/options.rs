//! The options as keywords: read by the one options schema, written back as Python values.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use spangrad_rs::explain::{Given, InvalidOption, Refused, Scope, OPTIONS};
use spangrad_rs::ExplainOptions;

use crate::errors::option_error;

/// Keyword options: each by name, checked against its type and range; None keeps the default.
/// Per call (`Scope::Request`), the options fixed at load are refused.
pub fn given(options: Option<&Bound<'_, PyDict>>, scope: Scope) -> PyResult<Given> {
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
pub fn options_dict<'py>(
    py: Python<'py>,
    options: &ExplainOptions,
) -> PyResult<Bound<'py, PyDict>> {
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
pub fn options(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
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
