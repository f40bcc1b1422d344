//! DistilBertForQuestionAnswering: `distilbert.embeddings` (word, position, LayerNorm; no token
//! types), `distilbert.transformer.layer.N`, `qa_outputs`. Position embeddings are stored in the
//! checkpoint even when they were initialised as sinusoids.

use super::encoder::LayerNames;
use super::Layout;

pub const LAYOUT: Layout = Layout {
    prefix: "distilbert",
    layers: "transformer.layer",
    token_types: false,
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
