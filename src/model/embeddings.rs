//! Everything between the word embeddings and the first encoder block: position (and, where the
//! architecture has them, token-type) embeddings, the embedding LayerNorm and, for narrow word
//! embeddings (ELECTRA, ALBERT), the projection up to the hidden size:
//! `x = LN(words + positions + types) Wpᵀ + bp`. The word embeddings enter the sum with weight
//! 1, so the backward is the projection's input gradient and the LayerNorm's.

use candle_core::{Result, Tensor};

use super::layers::{Grad, LayerNorm, Linear};
use super::saved::BatchShape;
use crate::ops::LayerNormSaved;

#[derive(Debug, Clone)]
pub struct Embeddings {
    /// `[max_position_embeddings, e]`.
    pub position: Tensor,
    /// The position of a pair's first token (RoBERTa's `padding_idx + 1`).
    pub position_offset: usize,
    /// `[types, e]`; `None` for DistilBERT. A table of one row is added to every token
    /// (RoBERTa's, or the first row where the architecture takes no type ids).
    pub token_type: Option<Tensor>,
    pub norm: LayerNorm,
    /// `e → h`, where the word embeddings are narrower than the hidden size.
    pub projection: Option<Linear>,
}

impl Embeddings {
    /// `positions + types` for every row, `[n, e]`; `token_types` `[n]` u32.
    fn offsets(&self, token_types: &Tensor, shape: &BatchShape) -> Result<Tensor> {
        let (b, t) = (shape.pairs, shape.tokens);
        let e = self.position.dim(1)?;
        let positions = self
            .position
            .narrow(0, self.position_offset, t)?
            .unsqueeze(0)?
            .broadcast_as((b, t, e))?
            .reshape((b * t, e))?;
        match &self.token_type {
            Some(table) if table.dim(0)? == 1 => positions.broadcast_add(table),
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
        let (b, t) = (shape.pairs, shape.tokens);
        let e = words.dim(1)?;
        let real = Tensor::arange(0u32, t as u32, words.device())?
            .unsqueeze(0)?
            .broadcast_lt(&lengths.reshape((b, 1))?)?
            .reshape((b * t, 1))?
            .broadcast_as((b * t, e))?;
        let zeros = words.zeros_like()?;
        Ok((
            real.where_cond(words, &zeros)?,
            real.where_cond(&self.offsets(token_types, shape)?, &zeros)?,
        ))
    }

    /// `words` `[n, e]` → the first block's input `[n, h]` and the norm's saved statistics.
    pub fn forward(
        &self,
        words: &Tensor,
        token_types: &Tensor,
        lengths: &Tensor,
        shape: &BatchShape,
    ) -> Result<(Tensor, LayerNormSaved)> {
        let (words, offsets) = self.inputs(words, token_types, lengths, shape)?;
        let (x, saved) = self.norm.forward(&words, Some(&offsets), None)?;
        match &self.projection {
            Some(p) => Ok((p.product(&x)?.broadcast_add(&p.bias)?, saved)),
            None => Ok((x, saved)),
        }
    }

    /// The gradient of the word embeddings `[n, e]` given the first block's input's.
    pub fn backward(&self, dx: &Grad, saved: &LayerNormSaved) -> Result<Tensor> {
        match &self.projection {
            None => self.norm.backward(dx, saved),
            Some(p) => {
                let dx = match &dx.residual {
                    Some(residual) => (&dx.main + residual)?,
                    None => dx.main.clone(),
                };
                let dnorm = Grad {
                    main: p.input_grad(&dx)?,
                    residual: None,
                };
                self.norm.backward(&dnorm, saved)
            }
        }
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
        let x = self.norm.forward_slow(&(words + offsets)?)?;
        match &self.projection {
            Some(p) => p.forward_slow(&x),
            None => Ok(x),
        }
    }
}
