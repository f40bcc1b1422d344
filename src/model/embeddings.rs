//! Everything between the word embeddings and the first encoder block: position (and, for BERT,
//! token-type) embeddings and the embedding LayerNorm, `x = LN(words + positions + types)`.
//! The backward is the LayerNorm's alone: the word embeddings enter the sum with weight 1.

use candle_core::{Result, Tensor};

use super::layers::{Grad, LayerNorm};
use super::saved::BatchShape;
use crate::ops::LayerNormSaved;

#[derive(Debug, Clone)]
pub struct Embeddings {
    pub position: Tensor,
    /// `None` for DistilBERT, which has no token types.
    pub token_type: Option<Tensor>,
    pub norm: LayerNorm,
}

impl Embeddings {
    /// `positions + types` for every row, `[n, h]`; `token_types` `[n]` u32.
    fn offsets(&self, token_types: &Tensor, shape: &BatchShape) -> Result<Tensor> {
        let (b, t, h) = (shape.pairs, shape.tokens, shape.hidden);
        let positions = self
            .position
            .narrow(0, 0, t)?
            .unsqueeze(0)?
            .broadcast_as((b, t, h))?
            .reshape((b * t, h))?;
        match &self.token_type {
            Some(table) => positions + table.index_select(token_types, 0)?,
            None => Ok(positions),
        }
    }

    /// The norm's two inputs with padded rows set to zero. A padded row's values never reach a
    /// real row mathematically, but a NaN or infinity there (a position the pair itself does
    /// not reach) would, through the zero attention weight times it; zero rows keep every pass
    /// finite and each pair's result independent of its batch. `lengths` `[b]` u32.
    fn inputs(
        &self,
        words: &Tensor,
        token_types: &Tensor,
        lengths: &Tensor,
        shape: &BatchShape,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t, h) = (shape.pairs, shape.tokens, shape.hidden);
        let real = Tensor::arange(0u32, t as u32, words.device())?
            .unsqueeze(0)?
            .broadcast_lt(&lengths.reshape((b, 1))?)?
            .reshape((b * t, 1))?
            .broadcast_as((b * t, h))?;
        let zeros = words.zeros_like()?;
        Ok((
            real.where_cond(words, &zeros)?,
            real.where_cond(&self.offsets(token_types, shape)?, &zeros)?,
        ))
    }

    /// `words` `[n, h]` → the first block's input and the norm's saved statistics.
    pub fn forward(
        &self,
        words: &Tensor,
        token_types: &Tensor,
        lengths: &Tensor,
        shape: &BatchShape,
    ) -> Result<(Tensor, LayerNormSaved)> {
        let (words, offsets) = self.inputs(words, token_types, lengths, shape)?;
        self.norm.forward(&words, Some(&offsets), None)
    }

    /// The gradient of the word embeddings given the first block's input's.
    pub fn backward(&self, dx: &Grad, saved: &LayerNormSaved) -> Result<Tensor> {
        self.norm.backward(dx, saved)
    }

    /// The forward of candle ops (differentiable): the reference.
    pub fn forward_slow(
        &self,
        words: &Tensor,
        token_types: &Tensor,
        lengths: &Tensor,
        shape: &BatchShape,
    ) -> Result<Tensor> {
        let (words, offsets) = self.inputs(words, token_types, lengths, shape)?;
        self.norm.forward_slow(&(words + offsets)?)
    }
}
