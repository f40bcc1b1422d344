//! AlbertForQuestionAnswering: `albert.embeddings` (word, position, token type, LayerNorm) of
//! width `embedding_size`, always projected up by `albert.encoder.embedding_hidden_mapping_in`,
//! then `num_hidden_layers` applications of shared blocks: layer `i` runs every inner layer of
//! group `⌊i·G / L⌋`, `albert.encoder.albert_layer_groups.{g}.albert_layers.{j}` (as transformers'
//! `AlbertTransformer`). Each block is BERT's post-LayerNorm block under other names.

use super::{bert_fields, Architecture, Layout, Projection, TokenTypes};
use crate::model::config::{ConfigError, Fields, ModelConfig};
use crate::model::encoder::LayerNames;

pub const LAYOUT: Layout = Layout {
    prefix: "albert",
    block: |group, inner| format!("encoder.albert_layer_groups.{group}.albert_layers.{inner}"),
    token_types: TokenTypes::Given,
    projection: Projection::Always("encoder.embedding_hidden_mapping_in"),
    names: LayerNames {
        query: "attention.query",
        key: "attention.key",
        value: "attention.value",
        attention_out: "attention.dense",
        attention_norm: "attention.LayerNorm",
        ffn_in: "ffn",
        ffn_out: "ffn_output",
        ffn_norm: "full_layer_layer_norm",
    },
};

pub fn config(fields: &Fields) -> Result<ModelConfig, ConfigError> {
    let config = bert_fields(Architecture::Albert, fields, "gelu_new")?;
    let groups = fields.usize_or("num_hidden_groups", 1)?;
    if groups == 0 || groups > config.num_layers {
        return Err(ConfigError::Invalid(format!(
            "num_hidden_groups {groups} must be between 1 and num_hidden_layers {}",
            config.num_layers
        )));
    }
    Ok(ModelConfig {
        embedding_size: fields.usize_or("embedding_size", 128)?,
        layer_groups: groups,
        inner_group_num: fields.usize_or("inner_group_num", 1)?,
        ..config
    })
}
