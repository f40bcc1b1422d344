//! BertForQuestionAnswering: `bert.embeddings` (word, position, token type, LayerNorm),
//! `bert.encoder.layer.N`, `qa_outputs`.

use super::encoder::LayerNames;
use super::Layout;

pub const LAYOUT: Layout = Layout {
    prefix: "bert",
    layers: "encoder.layer",
    token_types: true,
    names: LayerNames {
        query: "attention.self.query",
        key: "attention.self.key",
        value: "attention.self.value",
        attention_out: "attention.output.dense",
        attention_norm: "attention.output.LayerNorm",
        ffn_in: "intermediate.dense",
        ffn_out: "output.dense",
        ffn_norm: "output.LayerNorm",
    },
};
