//! The QA transformer in candle. It takes the word embeddings as an input tensor, so the
//! explanation can differentiate with respect to them (or a one-hot product) directly.

mod bert;
pub mod config;
mod distilbert;
mod embeddings;
mod encoder;
mod layers;
pub mod preset;
mod weights;

use std::path::Path;

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;

pub use config::{Activation, Architecture, ModelConfig};
use embeddings::Embeddings;
use encoder::{EncoderLayer, LayerNames};
use layers::{LayerNorm, Linear};

use crate::error::{Error, Result};

/// Where one architecture keeps its weights.
pub struct Layout {
    /// Prefix of the body in a QA checkpoint; absent in checkpoints of the bare model.
    prefix: &'static str,
    layers: &'static str,
    token_types: bool,
    names: LayerNames,
}

#[derive(Debug, Clone)]
pub struct QaModel {
    config: ModelConfig,
    word_embeddings: Tensor,
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    qa_outputs: Linear,
}

/// Start and end logits, each `[batch, tokens]`.
pub struct Logits {
    pub start: Tensor,
    pub end: Tensor,
}

impl QaModel {
    /// Loads `config.json` and `model.safetensors` (or `pytorch_model.bin`) from a directory.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let (path, vb) = weights::open(dir, device)?;
        Self::from_var_builder(vb, &config).map_err(|e| Error::Weights {
            path,
            message: e.to_string(),
        })
    }

    pub fn from_var_builder(vb: VarBuilder, config: &ModelConfig) -> candle_core::Result<Self> {
        let layout = match config.architecture {
            Architecture::Bert => &bert::LAYOUT,
            Architecture::DistilBert => &distilbert::LAYOUT,
        };
        let body = if vb.contains_tensor(&format!(
            "{}.embeddings.word_embeddings.weight",
            layout.prefix
        )) {
            vb.pp(layout.prefix)
        } else {
            vb.clone()
        };
        let h = config.hidden_size;
        let emb = body.pp("embeddings");
        let token_type = if layout.token_types {
            Some(emb.get((config.type_vocab_size, h), "token_type_embeddings.weight")?)
        } else {
            None
        };
        let embeddings = Embeddings {
            position: emb.get(
                (config.max_position_embeddings, h),
                "position_embeddings.weight",
            )?,
            token_type,
            norm: LayerNorm::load(emb.pp("LayerNorm"), h, config.layer_norm_eps)?,
        };
        let layers = (0..config.num_layers)
            .map(|i| {
                EncoderLayer::load(
                    body.pp(format!("{}.{i}", layout.layers)),
                    &layout.names,
                    config,
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            word_embeddings: emb.get((config.vocab_size, h), "word_embeddings.weight")?,
            embeddings,
            layers,
            qa_outputs: Linear::load(vb.pp("qa_outputs"), h, 2)?,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The word-embedding matrix `E`, `[vocab, hidden]`.
    pub fn word_embeddings(&self) -> &Tensor {
        &self.word_embeddings
    }

    pub fn device(&self) -> &Device {
        self.word_embeddings.device()
    }

    /// `words`: `[batch, tokens, hidden]` word embeddings; `token_types`: `[batch, tokens]` u32
    /// (ignored by DistilBERT); `mask`: `[batch, tokens]` f32, 1 for real tokens, 0 for padding.
    pub fn forward(&self, words: &Tensor, token_types: &Tensor, mask: &Tensor) -> Result<Logits> {
        let bias = encoder::mask_bias(mask)?;
        let mut x = self.embeddings.forward(words, token_types)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias)?;
        }
        let logits = self.qa_outputs.forward(&x)?;
        Ok(Logits {
            start: logits.narrow(2, 0, 1)?.squeeze(2)?,
            end: logits.narrow(2, 1, 1)?.squeeze(2)?,
        })
    }
}
