//! DistilBertForQuestionAnswering: `distilbert.embeddings` (word, position, LayerNorm; no token
//! types), `distilbert.transformer.layer.N`, `qa_outputs`. Position embeddings are stored in the
//! checkpoint even when they were initialised as sinusoids.

use super::{Architecture, Layout, Projection, TokenTypes};
use crate::model::config::{activation, ConfigError, Fields, ModelConfig};
use crate::model::encoder::LayerNames;

pub const LAYOUT: Layout = Layout {
    prefix: "distilbert",
    block: |layer, _| format!("transformer.layer.{layer}"),
    token_types: TokenTypes::None,
    projection: Projection::None,
    names: LayerNames {
        query: "attention.q_lin",
        key: "attention.k_lin",
        value: "attention.v_lin",
        attention_out: "attention.out_lin",
        attention_norm: "sa_layer_norm",
        ffn_in: "ffn.lin1",
        ffn_out: "ffn.lin2",
        ffn_norm: "output_layer_norm",
    },
};

pub fn config(fields: &Fields) -> Result<ModelConfig, ConfigError> {
    let hidden_size = fields.usize("dim")?;
    let num_layers = fields.usize("n_layers")?;
    Ok(ModelConfig {
        architecture: Architecture::DistilBert,
        vocab_size: fields.usize("vocab_size")?,
        embedding_size: hidden_size,
        hidden_size,
        num_layers,
        num_heads: fields.usize("n_heads")?,
        intermediate_size: fields.usize("hidden_dim")?,
        max_position_embeddings: fields.usize("max_position_embeddings")?,
        position_offset: 0,
        type_vocab_size: 0,
        activation: activation(&fields.str_or("activation", "gelu")?)?,
        // Hard-coded in transformers' DistilBERT.
        layer_norm_eps: 1e-12,
        layer_groups: num_layers,
        inner_group_num: 1,
    })
}
