//! What each supported architecture changes around the shared encoder: the fields of its
//! `config.json`, where its weights live, and its embeddings (positions, token types, a
//! projection of narrow word embeddings up to the hidden size). One file per architecture.

mod albert;
mod bert;
mod distilbert;
mod electra;
mod roberta;

use super::config::{ConfigError, Fields, ModelConfig};
use super::encoder::LayerNames;

/// The `model_type` of a supported checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    Bert,
    DistilBert,
    Roberta,
    XlmRoberta,
    Camembert,
    Electra,
    Albert,
}

impl Architecture {
    pub const ALL: [Self; 7] = [
        Self::Bert,
        Self::DistilBert,
        Self::Roberta,
        Self::XlmRoberta,
        Self::Camembert,
        Self::Electra,
        Self::Albert,
    ];

    /// The `model_type` of config.json.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::DistilBert => "distilbert",
            Self::Roberta => "roberta",
            Self::XlmRoberta => "xlm-roberta",
            Self::Camembert => "camembert",
            Self::Electra => "electra",
            Self::Albert => "albert",
        }
    }

    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.model_type() == model_type)
    }

    pub(super) fn layout(self) -> &'static Layout {
        match self {
            Self::Bert => &bert::LAYOUT,
            Self::DistilBert => &distilbert::LAYOUT,
            Self::Roberta | Self::XlmRoberta | Self::Camembert => &roberta::LAYOUT,
            Self::Electra => &electra::LAYOUT,
            Self::Albert => &albert::LAYOUT,
        }
    }

    /// The model's config from config.json's fields.
    pub(super) fn config(self, fields: &Fields) -> Result<ModelConfig, ConfigError> {
        match self {
            Self::Bert => bert::config(fields),
            Self::DistilBert => distilbert::config(fields),
            Self::Roberta | Self::XlmRoberta | Self::Camembert => roberta::config(self, fields),
            Self::Electra => electra::config(fields),
            Self::Albert => albert::config(fields),
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

/// Where one architecture keeps its weights, relative to the checkpoint's root.
pub struct Layout {
    /// Prefix of the body in a QA checkpoint; absent in checkpoints of the bare model.
    pub prefix: &'static str,
    /// The weights of group `g`'s inner layer `j` ([`ModelConfig::blocks`]), under the body.
    pub block: fn(usize, usize) -> String,
    pub token_types: TokenTypes,
    /// The linear map of the embeddings up to the hidden size, under the body.
    pub projection: Projection,
    pub names: LayerNames,
}

/// Which token types the embeddings add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypes {
    /// No table (DistilBERT).
    None,
    /// The table's first row to every token, whatever the tokenizer's type ids: the model
    /// takes none (RoBERTa's tokenizers name no `token_type_ids` input, so transformers
    /// passes zeros).
    First,
    /// The tokenizer's type ids (the question 0, the context 1).
    Given,
}

/// Whether and where the embeddings are projected to the hidden size after their LayerNorm.
pub enum Projection {
    None,
    /// Only when `embedding_size != hidden_size` (ELECTRA).
    WhenNarrow(&'static str),
    /// Always (ALBERT).
    Always(&'static str),
}

impl Projection {
    /// The weights' prefix, if this config has a projection.
    pub fn name(&self, config: &ModelConfig) -> Option<&'static str> {
        match *self {
            Self::None => None,
            Self::WhenNarrow(name) => (config.embedding_size != config.hidden_size).then_some(name),
            Self::Always(name) => Some(name),
        }
    }
}

/// The BERT-style block names (BERT, RoBERTa, ELECTRA).
const BERT_NAMES: LayerNames = LayerNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_out: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    ffn_norm: "output.LayerNorm",
};

/// One group per layer, one layer per group: `encoder.layer.N`.
fn bert_block(group: usize, _inner: usize) -> String {
    format!("encoder.layer.{group}")
}

/// The fields BERT, RoBERTa, ELECTRA and ALBERT share (`hidden_size`, `num_hidden_layers`...),
/// with `embedding_size` equal to the hidden size and no sharing of layers.
fn bert_fields(
    architecture: Architecture,
    fields: &Fields,
    default_activation: &str,
) -> Result<ModelConfig, ConfigError> {
    let position_type = fields.str_or("position_embedding_type", "absolute")?;
    if position_type != "absolute" {
        return Err(ConfigError::Invalid(format!(
            "position_embedding_type {position_type:?} is not supported (only \"absolute\")"
        )));
    }
    let hidden_size = fields.usize("hidden_size")?;
    let num_layers = fields.usize("num_hidden_layers")?;
    Ok(ModelConfig {
        architecture,
        vocab_size: fields.usize("vocab_size")?,
        embedding_size: hidden_size,
        hidden_size,
        num_layers,
        num_heads: fields.usize("num_attention_heads")?,
        intermediate_size: fields.usize("intermediate_size")?,
        max_position_embeddings: fields.usize("max_position_embeddings")?,
        position_offset: 0,
        type_vocab_size: fields.usize("type_vocab_size")?,
        activation: super::config::activation(&fields.str_or("hidden_act", default_activation)?)?,
        layer_norm_eps: fields.f64_or("layer_norm_eps", 1e-12)?,
        layer_groups: num_layers,
        inner_group_num: 1,
    })
}
