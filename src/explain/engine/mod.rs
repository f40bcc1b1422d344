//! The numerical core: a padded batch of encoded pairs through forward, span choice, backward
//! to the word embeddings, saliency and normalisation. Knows nothing of tokenizers.

use std::borrow::Borrow;
use std::ops::Range;

use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};

use super::explanation::{Answer, Explanation, Target, TokenExplanation};
use super::method::{self, Baseline, Method};
use super::options::{name, phrases, BatchTokens, ExplainOptions, InvalidOption, Precision};
use super::pipeline::{self, Choice};
use super::saliency::Saliency;
use super::span::{self, Span};
use super::words::{self, char_slice};
use crate::error::{Error, Result};
use crate::model::{Objective, QaModel};
use crate::ops;
use crate::text::{Encoded, Segment};

mod assembly;
mod methods;
mod pass;
mod planning;

use methods::RankValues;
use pass::objectives;
use planning::{passes, Need};

#[derive(Clone)]
pub struct Engine {
    model: QaModel,
    precision: Precision,
    saliency: std::sync::Arc<dyn Saliency>,
    options: ExplainOptions,
    pad_id: u32,
    /// The `[MASK]` token, for the integrated-gradients `mask` baseline.
    mask_id: Option<u32>,
}

/// Time spent per stage over one or more batches: the forward (with the copy of the logits to
/// the host), the backward to the word embeddings, and the saliency with normalisation and the
/// copy of the scores.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub forward: Duration,
    pub backward: Duration,
    pub saliency: Duration,
}

/// The backward pass of one batch, before saliency.
pub struct Gradients {
    /// Per pair: the answers explained with their gradient targets, the answer first (more
    /// with `top_k`), or why there is none.
    pub targets: Vec<Result<Vec<(Choice, Target)>>>,
    /// Per pair: its start and end logits over its real tokens.
    pub logits: Vec<(Vec<f32>, Vec<f32>)>,
    /// Per rank: `∂y/∂(word embeddings)` of every pair's target of that rank (zero for a pair
    /// with fewer), for the real tokens of every pair, concatenated: `[tokens, hidden]`.
    pub grads: Vec<Tensor>,
    /// The ids of those tokens: `[tokens]`.
    pub ids: Tensor,
    /// Per pair: its rows in `grads`.
    pub rows: Vec<Range<usize>>,
    /// The pass as the model took it, for methods that run it again at other inputs.
    pass: PassLayout,
}

/// One pair's tokens as the model takes them: a pair's encoding, or a perturbed copy of its
/// ids.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub ids: &'a [u32],
    /// Token types, as many as `ids`.
    pub types: &'a [u32],
}

impl Input<'_> {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl<'a> From<&'a Encoded> for Input<'a> {
    fn from(enc: &'a Encoded) -> Self {
        Self {
            ids: &enc.ids,
            types: &enc.type_ids,
        }
    }
}

/// One padded pass as the model takes it.
struct PassLayout {
    /// `[n]` u32, padded with the pad id.
    ids: Tensor,
    /// `[n]` u32.
    types: Tensor,
    /// `[b]` u32.
    lengths: Tensor,
    shape: crate::model::BatchShape,
    /// The rows of real tokens, `[tokens]` u32.
    real_rows: Tensor,
    /// The word embeddings fed to the model, `[n, h]`.
    words: Tensor,
}

impl Engine {
    /// `pad_id` fills the padded positions of a batch (they never influence the result).
    pub fn new(model: QaModel, options: ExplainOptions, pad_id: u32) -> Result<Self> {
        options.validate()?;
        let saliency = options.saliency.build(model.word_embeddings())?.into();
        let precision = Precision::of(model.dtype()).ok_or_else(|| {
            Error::Usage(format!(
                "weights of dtype {:?}: f32, bf16 or f16",
                model.dtype()
            ))
        })?;
        Ok(Self {
            model,
            precision,
            saliency,
            options,
            pad_id,
            mask_id: None,
        })
    }

    pub fn options(&self) -> &ExplainOptions {
        &self.options
    }

    pub fn model(&self) -> &QaModel {
        &self.model
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The same engine (the model and the saliency's precomputation shared) scoring tokens
    /// by `method`.
    pub fn with_method(&self, method: Method) -> Self {
        let mut engine = self.clone();
        engine.options.method = method;
        engine
    }

    /// The same model under other options: the saliency's precomputation is kept unless
    /// `options` asks for another kind. The precision is the loaded weights'.
    pub fn with_options(&self, options: ExplainOptions) -> Result<Self> {
        options.validate()?;
        if options.dtype.is_some_and(|p| p != self.precision) {
            return Err(InvalidOption::says(
                name::dtype,
                format!(": the model is loaded in {}", self.precision.name()),
            )
            .into());
        }
        let saliency = if options.saliency == self.options.saliency {
            self.saliency.clone()
        } else {
            options.saliency.build(self.model.word_embeddings())?.into()
        };
        Ok(Self {
            saliency,
            options,
            ..self.clone()
        })
    }

    /// The `[MASK]` token's id, for the integrated-gradients `mask` baseline.
    pub fn with_mask_id(self, mask_id: Option<u32>) -> Self {
        Self { mask_id, ..self }
    }

    /// The id that replaces a token an evaluation removes: `[MASK]`, or the pad token where
    /// the vocabulary has no mask token.
    pub fn mask_or_pad_id(&self) -> u32 {
        self.mask_id.unwrap_or(self.pad_id)
    }

    /// A batch, results in its order. Pairs are sorted by length (longest first) and cut into
    /// padded passes as `max_batch_tokens` says; a pass the memory cannot hold is split in two
    /// and retried, down to single pairs. A pair that cannot be explained (no gradient target,
    /// or too large alone) gets its own error; the others are unaffected.
    pub fn explain<E: Borrow<Encoded>>(&self, batch: &[E]) -> Result<Vec<Result<Explanation>>> {
        self.explain_staged(batch, None)
    }

    /// As [`Engine::explain`], adding the time each stage took to `stages` (the device is
    /// synchronised between stages, so the stages' sum is a little above the plain run's time).
    pub fn explain_timed<E: Borrow<Encoded>>(
        &self,
        batch: &[E],
        stages: &mut StageTimes,
    ) -> Result<Vec<Result<Explanation>>> {
        self.explain_staged(batch, Some(stages))
    }

    fn explain_staged<E: Borrow<Encoded>>(
        &self,
        batch: &[E],
        mut stages: Option<&mut StageTimes>,
    ) -> Result<Vec<Result<Explanation>>> {
        let batch: Vec<&Encoded> = batch.iter().map(Borrow::borrow).collect();
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(batch[i].len()));
        let sorted: Vec<&Encoded> = order.iter().map(|&i| batch[i]).collect();
        let fits = self.fitting(Need::Backward)?;
        let mut results: Vec<Option<Result<Explanation>>> =
            (0..batch.len()).map(|_| None).collect();
        for pass in passes(sorted.iter().map(|e| e.len()), fits) {
            let explained = self.explain_splitting(&sorted[pass.clone()], stages.as_deref_mut())?;
            for (&i, result) in order[pass].iter().zip(explained) {
                results[i] = Some(result);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every pair is in one pass"))
            .collect())
    }
}
