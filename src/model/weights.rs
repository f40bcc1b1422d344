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
