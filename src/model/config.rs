//! The fields of a Hugging Face `config.json` that the encoder needs, read by each
//! architecture's own file (`arch/`).

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

pub use super::arch::Architecture;
pub use crate::ops::Activation;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    /// The width of the word embeddings `E` `[vocab, embedding_size]`: the hidden size, or less
    /// where the embeddings are projected up (ELECTRA, ALBERT).
    pub embedding_size: usize,
    pub hidden_size: usize,
    /// `num_hidden_layers`: applications of a block (ALBERT shares blocks between them).
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    /// The position id of the first token (RoBERTa's `padding_idx + 1`; 0 elsewhere).
    pub position_offset: usize,
    /// 0: no token-type embeddings (DistilBERT); 1: one type added to every token (RoBERTa).
    pub type_vocab_size: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    /// ALBERT's `num_hidden_groups` groups of `inner_group_num` blocks each; elsewhere one
    /// group per layer of one block.
    pub layer_groups: usize,
    pub inner_group_num: usize,
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        if !crate::files::present(path)? {
            return Err(Error::MissingFile {
                what: "model config",
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::MissingFile {
                what: "model config",
                path: path.to_path_buf(),
            },
            _ => Error::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let json: Value = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_json(&json).map_err(|message| match message {
            ConfigError::Unknown(t) => Error::UnknownArchitecture {
                model_type: t,
                known: Architecture::ALL.map(|a| a.model_type()).join(", "),
            },
            ConfigError::Invalid(message) => Error::Config {
                path: path.to_path_buf(),
                message,
            },
        })
    }

    fn from_json(json: &Value) -> std::result::Result<Self, ConfigError> {
        let model_type = json
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| ConfigError::Invalid("no \"model_type\" field".into()))?;
        let architecture = Architecture::from_model_type(model_type)
            .ok_or_else(|| ConfigError::Unknown(model_type.to_string()))?;
        let config = architecture.config(&Fields(json))?;
        config.validate()?;
        Ok(config)
    }

    /// The most tokens a pair may have: the position embeddings past the offset.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.position_offset)
    }

    /// Which block each of the `num_layers` applications runs, as (group, inner layer), in
    /// order: layer `i` runs every inner layer of group `⌊i·groups / num_layers⌋`.
    pub fn blocks(&self) -> Vec<(usize, usize)> {
        (0..self.num_layers)
            .flat_map(|i| {
                let group = i * self.layer_groups / self.num_layers;
                (0..self.inner_group_num).map(move |j| (group, j))
            })
            .collect()
    }

    fn validate(&self) -> std::result::Result<(), ConfigError> {
        let positive = [
            ("vocabulary size", self.vocab_size),
            ("hidden size", self.hidden_size),
            ("number of layers", self.num_layers),
            ("number of heads", self.num_heads),
            ("intermediate size", self.intermediate_size),
            ("embedding size", self.embedding_size),
            ("inner_group_num", self.inner_group_num),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{name} is 0")));
        }
        if self.max_tokens() == 0 {
            return Err(ConfigError::Invalid(format!(
                "max_position_embeddings {} leaves no position for a token (positions start at {})",
                self.max_position_embeddings, self.position_offset
            )));
        }
        if self.hidden_size % self.num_heads != 0 {
            return Err(ConfigError::Invalid(format!(
                "hidden size {} is not a multiple of the number of heads {}",
                self.hidden_size, self.num_heads
            )));
        }
        Ok(())
    }
}

pub(super) enum ConfigError {
    Unknown(String),
    Invalid(String),
}

pub(super) struct Fields<'a>(&'a Value);

impl Fields<'_> {
    pub(super) fn usize(&self, key: &str) -> std::result::Result<usize, ConfigError> {
        self.0
            .get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| ConfigError::Invalid(format!("missing or non-integer field {key:?}")))
    }

    pub(super) fn usize_or(
        &self,
        key: &str,
        default: usize,
    ) -> std::result::Result<usize, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(_) => self.usize(key),
        }
    }

    pub(super) fn str_or(
        &self,
        key: &str,
        default: &str,
    ) -> std::result::Result<String, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ConfigError::Invalid(format!(
                "field {key:?} is not a string"
            ))),
        }
    }

    pub(super) fn f64_or(&self, key: &str, default: f64) -> std::result::Result<f64, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| ConfigError::Invalid(format!("field {key:?} is not a number"))),
        }
    }
}

pub(super) fn activation(name: &str) -> std::result::Result<Activation, ConfigError> {
    match name {
        "gelu" => Ok(Activation::Gelu),
        "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
        "relu" => Ok(Activation::Relu),
        other => Err(ConfigError::Invalid(format!(
            "activation {other:?} is not supported (gelu, gelu_new, relu)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_distilbert_field_names() {
        let json = serde_json::json!({
            "model_type": "distilbert", "vocab_size": 10, "dim": 8, "n_layers": 2,
            "n_heads": 2, "hidden_dim": 16, "max_position_embeddings": 32, "activation": "relu"
        });
        let c = ModelConfig::from_json(&json).ok().unwrap();
        assert_eq!(c.architecture, Architecture::DistilBert);
        assert_eq!((c.hidden_size, c.num_layers, c.num_heads), (8, 2, 2));
        assert_eq!(c.activation, Activation::Relu);
    }

    #[test]
    fn rejects_heads_that_do_not_divide_hidden() {
        let json = serde_json::json!({
            "model_type": "distilbert", "vocab_size": 10, "dim": 9, "n_layers": 2,
            "n_heads": 2, "hidden_dim": 16, "max_position_embeddings": 32
        });
        assert!(matches!(
            ModelConfig::from_json(&json),
            Err(ConfigError::Invalid(m)) if m.contains("multiple")
        ));
    }
}
