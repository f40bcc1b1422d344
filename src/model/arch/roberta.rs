//! RobertaForQuestionAnswering, and XLM-RoBERTa and CamemBERT, the same network under other
//! names: `roberta.embeddings` (word, position, one token type, LayerNorm),
//! `roberta.encoder.layer.N` as BERT's, `qa_outputs`.
//!
//! Positions count from the padding index: transformers gives a real token the position
//! `padding_idx + 1 + i` (`create_position_ids_from_input_ids`), so of `max_position_embeddings`
//! rows, `padding_idx + 1` are never used by a real token (514 rows hold 512 tokens). The single
//! token type is added to every token, whatever type ids the tokenizer makes.

use super::{bert_block, bert_fields, Architecture, Layout, Projection, TokenTypes, BERT_NAMES};
use crate::model::config::{ConfigError, Fields, ModelConfig};

pub const LAYOUT: Layout = Layout {
    prefix: "roberta",
    block: bert_block,
    token_types: TokenTypes::First,
    projection: Projection::None,
    names: BERT_NAMES,
};

pub fn config(architecture: Architecture, fields: &Fields) -> Result<ModelConfig, ConfigError> {
    let config = bert_fields(architecture, fields, "gelu")?;
    let padding_idx = fields.usize_or("pad_token_id", 1)?;
    Ok(ModelConfig {
        position_offset: padding_idx + 1,
        ..config
    })
}
