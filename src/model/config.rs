//! The fields of a Hugging Face `config.json` that the two supported architectures need.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Bert,
    DistilBert,
}

impl std::fmt::Display for Architecture {
    /// The `model_type` of config.json.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bert => "bert",
            Self::DistilBert => "distilbert",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU (erf), `gelu` in both architectures.
    Gelu,
    /// The tanh approximation, `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
    Relu,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    /// BERT only; DistilBERT has no token-type embeddings.
    pub type_vocab_size: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
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
            ConfigError::Unknown(t) => Error::UnknownArchitecture(t),
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
        let fields = Fields(json);
        let config = match model_type {
            "bert" => {
                let position_type = fields.str_or("position_embedding_type", "absolute")?;
                if position_type != "absolute" {
                    return Err(ConfigError::Invalid(format!(
                        "position_embedding_type {position_type:?} is not supported (only \"absolute\")"
                    )));
                }
                Self {
                    architecture: Architecture::Bert,
                    vocab_size: fields.usize("vocab_size")?,
                    hidden_size: fields.usize("hidden_size")?,
                    num_layers: fields.usize("num_hidden_layers")?,
                    num_heads: fields.usize("num_attention_heads")?,
                    intermediate_size: fields.usize("intermediate_size")?,
                    max_position_embeddings: fields.usize("max_position_embeddings")?,
                    type_vocab_size: fields.usize("type_vocab_size")?,
                    activation: activation(&fields.str_or("hidden_act", "gelu")?)?,
                    layer_norm_eps: fields.f64_or("layer_norm_eps", 1e-12)?,
                }
            }
            "distilbert" => Self {
                architecture: Architecture::DistilBert,
                vocab_size: fields.usize("vocab_size")?,
                hidden_size: fields.usize("dim")?,
                num_layers: fields.usize("n_layers")?,
                num_heads: fields.usize("n_heads")?,
                intermediate_size: fields.usize("hidden_dim")?,
                max_position_embeddings: fields.usize("max_position_embeddings")?,
                type_vocab_size: 0,
                activation: activation(&fields.str_or("activation", "gelu")?)?,
                // Hard-coded in transformers' DistilBERT.
                layer_norm_eps: 1e-12,
            },
            other => return Err(ConfigError::Unknown(other.to_string())),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), ConfigError> {
        let positive = [
            ("vocabulary size", self.vocab_size),
            ("hidden size", self.hidden_size),
            ("number of layers", self.num_layers),
            ("number of heads", self.num_heads),
            ("intermediate size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{name} is 0")));
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

enum ConfigError {
    Unknown(String),
    Invalid(String),
}

struct Fields<'a>(&'a Value);

impl Fields<'_> {
    fn usize(&self, key: &str) -> std::result::Result<usize, ConfigError> {
        self.0
            .get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| ConfigError::Invalid(format!("missing or non-integer field {key:?}")))
    }

    fn str_or(&self, key: &str, default: &str) -> std::result::Result<String, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ConfigError::Invalid(format!(
                "field {key:?} is not a string"
            ))),
        }
    }

    fn f64_or(&self, key: &str, default: f64) -> std::result::Result<f64, ConfigError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| ConfigError::Invalid(format!("field {key:?} is not a number"))),
        }
    }
}

fn activation(name: &str) -> std::result::Result<Activation, ConfigError> {
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
