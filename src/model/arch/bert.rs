//! BertForQuestionAnswering: `bert.embeddings` (word, position, token type, LayerNorm),
//! `bert.encoder.layer.N`, `qa_outputs`.

use super::{bert_block, bert_fields, Architecture, Layout, Projection, TokenTypes, BERT_NAMES};
use crate::model::config::{ConfigError, Fields, ModelConfig};

pub const LAYOUT: Layout = Layout {
    prefix: "bert",
    block: bert_block,
    token_types: TokenTypes::Given,
    projection: Projection::None,
    names: BERT_NAMES,
};

pub fn config(fields: &Fields) -> Result<ModelConfig, ConfigError> {
    bert_fields(Architecture::Bert, fields, "gelu")
}
