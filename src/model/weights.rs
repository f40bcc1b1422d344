//! Opens a checkpoint's weights: `model.safetensors`, else `pytorch_model.bin`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::error::{Error, Result};

/// Tensors are converted to `dtype` as they are read.
pub fn open(dir: &Path, device: &Device, dtype: DType) -> Result<(PathBuf, VarBuilder<'static>)> {
    let safetensors = dir.join("model.safetensors");
    let pickle = dir.join("pytorch_model.bin");
    let fail = |path: &Path, e: candle_core::Error| Error::Weights {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if safetensors.is_file() {
        let bytes = std::fs::read(&safetensors).map_err(|source| Error::Io {
            path: safetensors.clone(),
            source,
        })?;
        check_parameter_dtypes(&bytes).map_err(|message| Error::Weights {
            path: safetensors.clone(),
            message,
        })?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, dtype, device)
            .map_err(|e| fail(&safetensors, e))?;
        Ok((safetensors, vb))
    } else if pickle.is_file() {
        let vb = VarBuilder::from_pth(&pickle, dtype, device).map_err(|e| fail(&pickle, e))?;
        Ok((pickle, vb))
    } else if dir.join("model.safetensors.index.json").is_file() {
        Err(Error::Weights {
            path: dir.to_path_buf(),
            message: "sharded checkpoints are not supported; merge the shards into one \
                      model.safetensors"
                .into(),
        })
    } else {
        Err(Error::MissingFile {
            what: "model weights (model.safetensors or pytorch_model.bin)",
            path: safetensors,
        })
    }
}

/// Parameters (names ending in `weight`, `bias`, `gamma`, `beta`) must be stored as floats: an
/// integer tensor would be converted value by value and load as nonsense (a QA bias stored as
/// I32 gave logits near ±1e9). Reads only the safetensors header; a malformed header is left to
/// the safetensors reader to report.
fn check_parameter_dtypes(bytes: &[u8]) -> std::result::Result<(), String> {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    else {
        return Ok(());
    };
    let Some(header) = bytes.get(8..8usize.saturating_add(len as usize)) else {
        return Ok(());
    };
    let Ok(serde_json::Value::Object(entries)) = serde_json::from_slice(header) else {
        return Ok(());
    };
    for (name, entry) in &entries {
        let is_parameter = ["weight", "bias", "gamma", "beta"]
            .iter()
            .any(|suffix| name.ends_with(&format!(".{suffix}")));
        let dtype = entry.get("dtype").and_then(|d| d.as_str()).unwrap_or("F32");
        if is_parameter && !matches!(dtype, "F16" | "BF16" | "F32" | "F64") {
            return Err(format!(
                "{name} is stored as {dtype}; model parameters must be floating point"
            ));
        }
    }
    Ok(())
}
