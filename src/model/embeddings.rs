//! Everything between the word embeddings and the first encoder block: position (and, for BERT,
//! token-type) embeddings and the embedding LayerNorm.

use candle_core::{Module, Tensor};

use super::layers::LayerNorm;

#[derive(Debug, Clone)]
pub struct Embeddings {
    pub position: Tensor,
    /// `None` for DistilBERT, which has no token types.
    pub token_type: Option<Tensor>,
    pub norm: LayerNorm,
}

impl Embeddings {
    /// `words`: `[batch, tokens, hidden]` word embeddings; `token_types`: `[batch, tokens]` u32.
    pub fn forward(&self, words: &Tensor, token_types: &Tensor) -> candle_core::Result<Tensor> {
        let (_, t, _) = words.dims3()?;
        let mut x = words.broadcast_add(&self.position.narrow(0, 0, t)?)?;
        if let Some(table) = &self.token_type {
            let (b, t) = token_types.dims2()?;
            let types = table
                .index_select(&token_types.flatten_all()?, 0)?
                .reshape((b, t, ()))?;
            x = (x + types)?;
        }
        self.norm.forward(&x)
    }
}
