//! The QA transformer in candle. It takes the word embeddings as an input tensor, so the
//! explanation can differentiate with respect to them (or a one-hot product) directly.

mod arch;
pub mod attention;
pub mod config;
mod embeddings;
mod encoder;
mod layers;
pub mod preset;
mod saved;
mod weights;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use arch::TokenTypes;

pub use config::{Activation, Architecture, ModelConfig};
use embeddings::Embeddings;
use encoder::EncoderLayer;
pub use encoder::TargetRows;
pub use layers::Grad;
use layers::{LayerNorm, Linear};
pub use saved::{BatchShape, LayerSaved, Saved};
pub use weights::shard_names;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct QaModel {
    config: ModelConfig,
    word_embeddings: Tensor,
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    qa_outputs: Linear,
}

/// The logits one pair's gradient is taken of: `start[start] + end[end]`, either left out when
/// `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Objective {
    pub start: Option<usize>,
    pub end: Option<usize>,
}

impl Objective {
    /// `start[s] + end[e]`.
    pub fn span(s: usize, e: usize) -> Self {
        Self {
            start: Some(s),
            end: Some(e),
        }
    }
}

/// Start and end logits, each `[batch, tokens]`.
pub struct Logits {
    pub start: Tensor,
    pub end: Tensor,
}

impl QaModel {
    /// Loads `config.json` and `model.safetensors` (or `pytorch_model.bin`) from a directory.
    /// Weights are converted to `dtype` once, here.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let (path, vb) = weights::open(dir, device, dtype)?;
        Self::from_var_builder(vb, &config).map_err(|e| {
            let message = crate::error::candle_message(&e);
            // The expected shapes come from config.json: say so where they disagree.
            let hint = if message.contains("shape mismatch") {
                format!(
                    " (the expected shape follows {})",
                    dir.join("config.json").display()
                )
            } else {
                String::new()
            };
            Error::Weights {
                path,
                message: format!("{message}{hint}"),
            }
        })
    }

    pub fn from_var_builder(vb: VarBuilder, config: &ModelConfig) -> candle_core::Result<Self> {
        let layout = config.architecture.layout();
        let body = if vb.contains_tensor(&format!(
            "{}.embeddings.word_embeddings.weight",
            layout.prefix
        )) {
            vb.pp(layout.prefix)
        } else {
            vb.clone()
        };
        let (e, h) = (config.embedding_size, config.hidden_size);
        let emb = body.pp("embeddings");
        let token_type = match layout.token_types {
            TokenTypes::None => None,
            TokenTypes::First => Some(
                emb.get((config.type_vocab_size, e), "token_type_embeddings.weight")?
                    .narrow(0, 0, 1)?,
            ),
            TokenTypes::Given => {
                Some(emb.get((config.type_vocab_size, e), "token_type_embeddings.weight")?)
            }
        };
        let projection = match layout.projection.name(config) {
            Some(name) => Some(Linear::load(body.pp(name), e, h)?),
            None => None,
        };
        let embeddings = Embeddings {
            position: emb.get(
                (config.max_position_embeddings, e),
                "position_embeddings.weight",
            )?,
            position_offset: config.position_offset,
            token_type,
            norm: LayerNorm::load(emb.pp("LayerNorm"), e, config.layer_norm_eps)?,
            projection,
        };
        // Shared blocks (ALBERT) are loaded once; their tensors are shared by every use.
        let mut loaded: Vec<((usize, usize), EncoderLayer)> = Vec::new();
        let mut layers = Vec::new();
        for block in config.blocks() {
            let layer = match loaded.iter().find(|(b, _)| *b == block) {
                Some((_, layer)) => layer.clone(),
                None => {
                    let layer = EncoderLayer::load(
                        body.pp((layout.block)(block.0, block.1)),
                        &layout.names,
                        config,
                    )?;
                    loaded.push((block, layer.clone()));
                    layer
                }
            };
            layers.push(layer);
        }
        Ok(Self {
            config: config.clone(),
            word_embeddings: emb.get((config.vocab_size, e), "word_embeddings.weight")?,
            embeddings,
            layers,
            qa_outputs: Linear::load(vb.pp("qa_outputs"), h, 2)?,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The word-embedding matrix `E`, `[vocab, embedding_size]`.
    pub fn word_embeddings(&self) -> &Tensor {
        &self.word_embeddings
    }

    pub fn device(&self) -> &Device {
        self.word_embeddings.device()
    }

    /// The dtype of the weights and activations.
    pub fn dtype(&self) -> DType {
        self.word_embeddings.dtype()
    }

    /// The shape of a padded batch of `pairs` x `tokens`.
    pub fn batch_shape(&self, pairs: usize, tokens: usize) -> BatchShape {
        BatchShape {
            pairs,
            tokens,
            hidden: self.config.hidden_size,
            embedding: self.config.embedding_size,
            heads: self.config.num_heads,
            intermediate: self.config.intermediate_size,
            layers: self.layers.len(),
        }
    }

    /// The forward pass, saving what [`QaModel::input_grad`] needs. `words` `[n, e]` word
    /// embeddings (`n = b·t`, pair-major), `token_types` `[n]` u32 (ignored without a table of
    /// several types),
    /// `lengths` `[b]` u32 real tokens per pair (the rest is padding).
    pub fn forward(
        &self,
        words: &Tensor,
        token_types: &Tensor,
        lengths: &Tensor,
        shape: &BatchShape,
    ) -> Result<(Logits, Saved)> {
        let (mut x, embedding_norm) =
            self.embeddings
                .forward(words, token_types, lengths, shape)?;
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (y, saved) = layer.forward(&x, lengths, shape)?;
            layers.push(saved);
            x = y;
        }
        let saved = Saved {
            shape: *shape,
            lengths: lengths.clone(),
            embedding_norm,
            layers,
        };
        Ok((
            self.logits(&self.qa_outputs.forward_slow(&x)?, shape)?,
            saved,
        ))
    }

    /// The forward alone: each layer's saved activations are dropped as soon as the next
    /// layer has its input, so a pass holds one layer's ([`BatchShape::infer_bytes`]).
    pub fn infer(
        &self,
        words: &Tensor,
        token_types: &Tensor,
        lengths: &Tensor,
        shape: &BatchShape,
    ) -> Result<Logits> {
        let (mut x, _) = self
            .embeddings
            .forward(words, token_types, lengths, shape)?;
        for layer in &self.layers {
            x = layer.forward(&x, lengths, shape)?.0;
        }
        self.logits(&self.qa_outputs.forward_slow(&x)?, shape)
    }

    /// `∂(start[s] + end[e]) / ∂words`, `[n, e]`, for each pair's objective (either logit may
    /// be left out; neither: a zero gradient). Consumes the saved activations, freeing each
    /// layer's as soon as its backward is done. The last layer runs on the target rows alone.
    pub fn input_grad(&self, mut saved: Saved, targets: &[Objective]) -> Result<Tensor> {
        let target = self.target_rows(targets, &saved.shape)?;
        let last = saved
            .layers
            .pop()
            .ok_or_else(|| candle_core::Error::Msg("the model has no encoder layer".into()))?;
        let layer = &self.layers[saved.layers.len()];
        let grad = layer.backward_rows(&last, &target, &saved.lengths, &saved.shape)?;
        drop(last);
        self.backward_from(saved, grad)
    }

    /// [`QaModel::input_grad`] with the last layer's backward over every row (the gradient
    /// scattered into a zero `[n, h]`): the reference of the sparse last layer, and what it saves.
    pub fn input_grad_full(&self, saved: Saved, targets: &[Objective]) -> Result<Tensor> {
        let shape = saved.shape;
        let target = self.target_rows(targets, &shape)?;
        let dy = Tensor::zeros((shape.rows(), shape.hidden), self.dtype(), self.device())?
            .index_add(&target.rows, &target.dy, 0)?;
        let grad = Grad {
            main: dy,
            residual: None,
        };
        self.backward_from(saved, grad)
    }

    /// The backward of the layers left in `saved`, last first, then of the embeddings, from
    /// the gradient at the last remaining layer's output.
    fn backward_from(&self, mut saved: Saved, mut grad: Grad) -> Result<Tensor> {
        while let Some(layer_saved) = saved.layers.pop() {
            let layer = &self.layers[saved.layers.len()];
            grad = layer.backward(&layer_saved, &grad, &saved.lengths, &saved.shape)?;
        }
        Ok(self.embeddings.backward(&grad, &saved.embedding_norm)?)
    }

    fn target_rows(&self, targets: &[Objective], shape: &BatchShape) -> Result<TargetRows> {
        let (t, a) = (shape.tokens, shape.heads);
        let mut rows = Vec::with_capacity(2 * targets.len());
        let mut head_rows = Vec::with_capacity(2 * a * targets.len());
        let mut select = Vec::with_capacity(4 * targets.len());
        for (p, target) in targets.iter().enumerate() {
            if [target.start, target.end]
                .iter()
                .flatten()
                .any(|&tok| tok >= t)
            {
                return Err(Error::Usage("gradient target outside the batch".into()));
            }
            // An absent logit keeps its slot, pointing at token 0 with weight 0.
            let tokens = [target.start.unwrap_or(0), target.end.unwrap_or(0)];
            let weight = |tok: Option<usize>| if tok.is_some() { 1f32 } else { 0.0 };
            rows.extend(tokens.map(|tok| (p * t + tok) as u32));
            for head in 0..a {
                head_rows.extend(tokens.map(|tok| ((p * a + head) * t + tok) as u32));
            }
            select.extend([weight(target.start), 0.0, 0.0, weight(target.end)]);
        }
        let device = self.device();
        let slots = rows.len();
        let select = Tensor::from_vec(select, (slots, 2), device)?.to_dtype(self.dtype())?;
        Ok(TargetRows {
            rows: Tensor::from_vec(rows, slots, device)?,
            head_rows: Tensor::from_vec(head_rows, slots * a, device)?,
            dy: crate::ops::matmul(&select, &self.qa_outputs.weight)?,
        })
    }

    fn logits(&self, logits: &Tensor, shape: &BatchShape) -> Result<Logits> {
        let logits = logits.reshape((shape.pairs, shape.tokens, 2))?;
        Ok(Logits {
            start: logits.narrow(2, 0, 1)?.squeeze(2)?,
            end: logits.narrow(2, 1, 1)?.squeeze(2)?,
        })
    }

    /// The same forward composed of candle ops, which candle's autograd differentiates: the
    /// reference of [`QaModel::forward`] and [`QaModel::input_grad`] in the tests.
    pub fn forward_slow(
        &self,
        words: &Tensor,
        token_types: &Tensor,
        lengths: &Tensor,
        shape: &BatchShape,
    ) -> Result<Logits> {
        let mut x = self
            .embeddings
            .forward_slow(words, token_types, lengths, shape)?;
        for layer in &self.layers {
            x = layer.forward_slow(&x, lengths, shape)?;
        }
        self.logits(&self.qa_outputs.forward_slow(&x)?, shape)
    }
}
