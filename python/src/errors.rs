//! spangrad's errors as Python exceptions.

use pyo3::exceptions::{
    PyFileNotFoundError, PyMemoryError, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use spangrad_rs::explain::{InvalidOption, PairFailure};
use spangrad_rs::Error;

use crate::results::id_to_py;

pyo3::create_exception!(
    spangrad,
    OptionError,
    PyValueError,
    "An option with a wrong value, alone or with the others; `option` names it."
);

pyo3::create_exception!(
    spangrad,
    PairError,
    PyValueError,
    "A pair that cannot be explained (on_error=\"raise\"): `index`, `id` and `field` (the \
     pair's field at fault, or None) say which and where."
);

/// The Python exception for a spangrad error; options are named by their keywords.
pub fn to_py(e: Error) -> PyErr {
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

/// The Python exception for an invalid option: an `OptionError` with the option's name.
pub fn option_error(e: InvalidOption) -> PyErr {
    Python::attach(|py| {
        let err = OptionError::new_err(Error::from(e.clone()).to_string());
        let _ = err.value(py).setattr("option", e.option);
        err
    })
}

/// The exception for the pair at `index` that failed: a `PairError` that says where.
pub fn pair_error(py: Python<'_>, index: usize, failure: &PairFailure) -> PyErr {
    let err = PairError::new_err(format!("pairs[{index}]: {}", failure.error));
    let value = err.value(py);
    let set = || -> PyResult<()> {
        value.setattr("index", index)?;
        value.setattr("id", id_to_py(py, failure.id.as_ref())?)?;
        value.setattr("field", failure.field.as_deref())
    };
    match set() {
        Ok(()) => err,
        Err(e) => e,
    }
}
