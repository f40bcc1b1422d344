//! ElectraForQuestionAnswering: `electra.embeddings` (word, position, token type, LayerNorm) of
//! width `embedding_size`, `electra.embeddings_project` up to the hidden size when the two
//! differ, `electra.encoder.layer.N` as BERT's, `qa_outputs`.

use super::{bert_block, bert_fields, Architecture, Layout, Projection, TokenTypes, BERT_NAMES};
use crate::model::config::{ConfigError, Fields, ModelConfig};

pub const LAYOUT: Layout = Layout {
    prefix: "electra",
    block: bert_block,
    token_types: TokenTypes::Given,
    projection: Projection::WhenNarrow("embeddings_project"),
    names: BERT_NAMES,
};

pub fn config(fields: &Fields) -> Result<ModelConfig, ConfigError> {
    let config = bert_fields(Architecture::Electra, fields, "gelu")?;
    Ok(ModelConfig {
        embedding_size: fields.usize_or("embedding_size", config.hidden_size)?,
        ..config
    })
}
