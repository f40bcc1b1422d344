//! Opens a checkpoint's weights: `model.safetensors`, else `pytorch_model.bin`, else either
//! sharded (`model.safetensors.index.json`, `pytorch_model.bin.index.json`: the shards its
//! `weight_map` names, beside it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::error::{Error, Result};
use crate::files::present;

/// Tensors are converted to `dtype` as they are read.
pub fn open(dir: &Path, device: &Device, dtype: DType) -> Result<(PathBuf, VarBuilder<'static>)> {
    let safetensors = dir.join("model.safetensors");
    let pickle = dir.join("pytorch_model.bin");
    let fail = |path: &Path, e: candle_core::Error| Error::Weights {
        path: path.to_path_buf(),
        message: crate::error::candle_message(&e),
    };
    if present(&safetensors)? {
        let bytes = read_safetensors(&safetensors)?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, dtype, device)
            .map_err(|e| fail(&safetensors, e))?;
        return Ok((safetensors, vb));
    }
    if present(&pickle)? {
        let vb = VarBuilder::from_pth(&pickle, dtype, device).map_err(|e| fail(&pickle, e))?;
        return Ok((pickle, vb));
    }
    for (index, safe) in [
        ("model.safetensors.index.json", true),
        ("pytorch_model.bin.index.json", false),
    ] {
        let index = dir.join(index);
        if !present(&index)? {
            continue;
        }
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for shard in shards(&index)? {
            let loaded = if safe {
                candle_core::safetensors::load_buffer(&read_safetensors(&shard)?, &Device::Cpu)
                    .map_err(|e| fail(&shard, e))?
            } else {
                candle_core::pickle::read_all(&shard)
                    .map_err(|e| fail(&shard, e))?
                    .into_iter()
                    .collect()
            };
            tensors.extend(loaded);
        }
        return Ok((index, VarBuilder::from_tensors(tensors, dtype, device)));
    }
    Err(Error::MissingFile {
        what: "model weights (model.safetensors, pytorch_model.bin, or a sharded index \
               model.safetensors.index.json)",
        path: safetensors,
    })
}

/// A safetensors file's bytes, its parameters checked to be floats.
fn read_safetensors(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    check_parameter_dtypes(&bytes).map_err(|message| Error::Weights {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(bytes)
}

/// The shard files an index names (each once, in order), which must lie beside it.
fn shards(index: &Path) -> Result<Vec<PathBuf>> {
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files = Vec::new();
    for name in shard_names(index)? {
        let path = dir.join(name);
        if !present(&path)? {
            return Err(Error::MissingFile {
                what: "weight shard",
                path,
            });
        }
        files.push(path);
    }
    Ok(files)
}

/// The file names an index's `weight_map` names, each once, in order: plain names, the shards
/// beside the index.
pub fn shard_names(index: &Path) -> Result<Vec<String>> {
    let bad = |message: String| Error::Weights {
        path: index.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(index).map_err(|source| Error::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| bad("no \"weight_map\" object".into()))?;
    let mut files: Vec<String> = Vec::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .filter(|f| !f.is_empty() && Path::new(f).file_name() == Some(std::ffi::OsStr::new(f)))
            .ok_or_else(|| {
                bad(format!(
                    "{name} maps to {file}, not a file name beside the index"
                ))
            })?;
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
    }
    if files.is_empty() {
        return Err(bad("the weight_map names no shard".into()));
    }
    Ok(files)
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
