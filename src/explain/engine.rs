//! The numerical core: a padded batch of encoded pairs through forward, span choice, backward
//! to the word embeddings, saliency and normalisation. Knows nothing of tokenizers.

use std::ops::Range;

use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};

use super::explanation::{Answer, Explanation, Target, TokenExplanation};
use super::normalise::normalise;
use super::options::{BatchTokens, ExplainOptions, Precision};
use super::rows;
use super::saliency::Saliency;
use super::span::{self, Span};
use super::words::{self, char_slice};
use crate::error::{Error, Result};
use crate::model::{Objective, QaModel};
use crate::text::{Encoded, Segment};

pub struct Engine {
    model: QaModel,
    precision: Precision,
    saliency: Box<dyn Saliency>,
    options: ExplainOptions,
    pad_id: u32,
}

/// One pair's slices of the batch's per-token values.
struct PerToken<'a> {
    raw: &'a [f32],
    score: &'a [f32],
    grad_x_input: &'a [f32],
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
    /// Per pair: the spans explained with their gradient targets, the answer first (more with
    /// `top_k`), or why there is none.
    pub targets: Vec<Result<Vec<(Span, Target)>>>,
    /// Per pair: its start and end logits over its real tokens.
    pub logits: Vec<(Vec<f32>, Vec<f32>)>,
    /// Per rank: `∂y/∂(word embeddings)` of every pair's target of that rank (zero for a pair
    /// with fewer), for the real tokens of every pair, concatenated: `[tokens, hidden]`.
    pub grads: Vec<Tensor>,
    /// The ids of those tokens: `[tokens]`.
    pub ids: Tensor,
    /// Per pair: its rows in `grads`.
    pub rows: Vec<Range<usize>>,
}

impl Engine {
    /// `pad_id` fills the padded positions of a batch (they never influence the result).
    pub fn new(model: QaModel, options: ExplainOptions, pad_id: u32) -> Result<Self> {
        options.validate()?;
        let saliency = options.saliency.build(model.word_embeddings())?;
        let precision = Precision::of(model.dtype()).ok_or_else(|| {
            Error::InvalidOption(format!(
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
        })
    }

    /// A batch, results in its order. Pairs are sorted by length (longest first) and cut into
    /// padded passes as `max_batch_tokens` says; a pass the memory cannot hold is split in two
    /// and retried, down to single pairs. A pair that cannot be explained (no gradient target,
    /// or too large alone) gets its own error; the others are unaffected.
    pub fn explain(&self, batch: &[Encoded]) -> Result<Vec<Result<Explanation>>> {
        self.explain_staged(batch, None)
    }

    /// As [`Engine::explain`], adding the time each stage took to `stages` (the device is
    /// synchronised between stages, so the stages' sum is a little above the plain run's time).
    pub fn explain_timed(
        &self,
        batch: &[Encoded],
        stages: &mut StageTimes,
    ) -> Result<Vec<Result<Explanation>>> {
        self.explain_staged(batch, Some(stages))
    }

    fn explain_staged(
        &self,
        batch: &[Encoded],
        mut stages: Option<&mut StageTimes>,
    ) -> Result<Vec<Result<Explanation>>> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(batch[i].len()));
        let sorted: Vec<&Encoded> = order.iter().map(|&i| &batch[i]).collect();
        let available = self.available_memory()?;
        let fits = |pairs: usize, longest: usize| match self.options.max_batch_tokens {
            BatchTokens::Fixed(n) => pairs * longest <= n,
            BatchTokens::Unlimited => true,
            BatchTokens::Auto => self.pass_bytes(pairs, longest) <= available,
        };
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

    /// Bytes a pass may use: the limit of the options, else what the device has free.
    fn available_memory(&self) -> Result<usize> {
        match self.options.memory_limit {
            Some(limit) => Ok(limit),
            None if self.options.max_batch_tokens == BatchTokens::Auto => {
                // Room for the device's other work (cuBLAS workspaces, the allocator's slack).
                Ok(crate::memory::available_bytes(self.model.device())? / 10 * 9)
            }
            None => Ok(usize::MAX),
        }
    }

    /// The estimated peak memory of a pass of `pairs` padded to `longest` tokens.
    pub fn pass_bytes(&self, pairs: usize, longest: usize) -> usize {
        self.model
            .batch_shape(pairs, longest)
            .peak_bytes(self.model.dtype(), self.model.device())
    }

    /// One pass, split in halves while the memory cannot hold it.
    fn explain_splitting(
        &self,
        batch: &[&Encoded],
        mut stages: Option<&mut StageTimes>,
    ) -> Result<Vec<Result<Explanation>>> {
        let outcome = self
            .check_memory(batch)
            .and_then(|()| self.explain_pass(batch, stages.as_deref_mut()));
        match outcome {
            Err(e) if e.is_out_of_memory() && batch.len() > 1 => {
                let (first, second) = batch.split_at(batch.len() / 2);
                let mut results = self.explain_splitting(first, stages.as_deref_mut())?;
                results.extend(self.explain_splitting(second, stages)?);
                Ok(results)
            }
            Err(e) if e.is_out_of_memory() => Ok(vec![Err(e)]),
            other => other,
        }
    }

    /// With a memory limit, a pass estimated above it fails as the device would.
    fn check_memory(&self, batch: &[&Encoded]) -> Result<()> {
        let Some(limit) = self.options.memory_limit else {
            return Ok(());
        };
        let longest = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        let needed = self.pass_bytes(batch.len(), longest);
        if needed > limit {
            return Err(Error::OutOfMemory {
                what: format!("a pass of {} pairs of {longest} tokens", batch.len()),
                needed_mib: needed >> 20,
                available_mib: limit >> 20,
            });
        }
        Ok(())
    }

    fn explain_pass(
        &self,
        batch: &[&Encoded],
        mut stages: Option<&mut StageTimes>,
    ) -> Result<Vec<Result<Explanation>>> {
        let gradients = self.gradients_timed(batch, stages.as_deref_mut())?;
        let clock = Instant::now();
        let embeddings = self.model.word_embeddings();
        let own_rows = gradients.ids.unsqueeze(1)?;
        let mut offsets: Vec<u32> = gradients.rows.iter().map(|r| r.start as u32).collect();
        offsets.push(gradients.rows.last().map_or(0, |r| r.end as u32));
        let offsets = Tensor::new(offsets, embeddings.device())?;
        // Per rank: raw norms, scores and gradient x input of every real token.
        let mut values = Vec::with_capacity(gradients.grads.len());
        for grads in &gradients.grads {
            let raw = self.saliency.norms(grads)?;
            let grad_x_input = rows::gather_dot(grads, embeddings, &own_rows)?.squeeze(1)?;
            let scores = normalise(&raw, &offsets)?;
            // The only copies back: everything above is queued on the model's device.
            values.push((
                raw.to_vec1::<f32>()?,
                scores.to_vec1::<f32>()?,
                grad_x_input.to_vec1::<f32>()?,
            ));
        }
        if let Some(stages) = stages {
            stages.saliency += clock.elapsed();
        }
        let Gradients {
            targets,
            logits,
            rows,
            ..
        } = gradients;
        Ok(batch
            .iter()
            .zip(targets)
            .zip(logits)
            .zip(rows)
            .map(|(((enc, chosen), logits), rows)| {
                let mut explanations = chosen?
                    .into_iter()
                    .zip(&values)
                    .map(|((span, target), (raw, score, gxi))| {
                        let per_token = PerToken {
                            raw: &raw[rows.clone()],
                            score: &score[rows.clone()],
                            grad_x_input: &gxi[rows.clone()],
                        };
                        self.build(enc, span, target, &logits, per_token)
                    })
                    .collect::<Result<Vec<_>>>()?
                    .into_iter();
                let mut first = explanations.next().ok_or(Error::NonFinite("logits"))?;
                first.alternatives = explanations.collect();
                Ok(first)
            })
            .collect())
    }

    /// Forward, span choice and backward: `∂(start[s] + end[e]) / ∂(word embeddings)`.
    pub fn gradients(&self, batch: &[Encoded]) -> Result<Gradients> {
        let batch: Vec<&Encoded> = batch.iter().collect();
        self.gradients_timed(&batch, None)
    }

    fn gradients_timed(
        &self,
        batch: &[&Encoded],
        stages: Option<&mut StageTimes>,
    ) -> Result<Gradients> {
        let clock = Instant::now();
        let device = self.model.device();
        let b = batch.len();
        let t = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id; b * t];
        let mut types = vec![0u32; b * t];
        for (i, enc) in batch.iter().enumerate() {
            let row = i * t..i * t + enc.len();
            ids[row.clone()].copy_from_slice(&enc.ids);
            types[row].copy_from_slice(&enc.type_ids);
        }
        let lengths: Vec<u32> = batch.iter().map(|e| e.len() as u32).collect();
        let shape = self.model.batch_shape(b, t);
        let ids = Tensor::from_vec(ids, b * t, device)?;
        let (logits, saved) = self.model.forward(
            &self.saliency.embed(&ids)?,
            &Tensor::from_vec(types, b * t, device)?,
            &Tensor::from_vec(lengths, b, device)?,
            &shape,
        )?;
        let start = logits.start.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let end = logits.end.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let forward_done = clock.elapsed();

        let mut targets = Vec::with_capacity(b);
        let mut per_pair_logits = Vec::with_capacity(b);
        let mut real_rows = Vec::new();
        let mut rows = Vec::with_capacity(b);
        for (i, enc) in batch.iter().enumerate() {
            let n = enc.len();
            let (s, e) = (&start[i][..n], &end[i][..n]);
            // A pair whose logits are not finite fails alone: pairs never mix in the pass, so
            // the others' results are unaffected (its own rows get no gradient target).
            let chosen = if s.iter().chain(e).all(|v| v.is_finite()) {
                self.spans(enc, s, e)
                    .into_iter()
                    .map(|span| {
                        span::gradient_end(span, n, self.options.seed_compat).map(|end_token| {
                            (
                                span,
                                Target::new(self.options.target, span.start, end_token),
                            )
                        })
                    })
                    .collect()
            } else {
                Err(Error::NonFinite("logits"))
            };
            targets.push(chosen);
            per_pair_logits.push((s.to_vec(), e.to_vec()));
            rows.push(real_rows.len()..real_rows.len() + n);
            real_rows.extend((i * t..i * t + n).map(|r| r as u32));
        }

        // One backward per rank of the explained spans, all from the same forward.
        let ranks = targets
            .iter()
            .filter_map(|t| t.as_ref().ok().map(Vec::len))
            .max()
            .unwrap_or(1)
            .max(1);
        let real_rows = Tensor::from_vec(real_rows, rows.last().map_or(0, |r| r.end), device)?;
        let mut grads = Vec::with_capacity(ranks);
        let mut saved = Some(saved);
        for rank in 0..ranks {
            let objectives: Vec<Objective> = targets
                .iter()
                .map(|t| {
                    t.as_ref()
                        .ok()
                        .and_then(|v| v.get(rank))
                        .map_or_else(Objective::default, |(_, target)| target.objective())
                })
                .collect();
            // The last backward takes the saved activations themselves, freeing them as it goes.
            let saved = if rank + 1 == ranks {
                saved.take().expect("present until the last rank")
            } else {
                saved.clone().expect("present until the last rank")
            };
            let grad = self.model.input_grad(saved, &objectives)?;
            grads.push(grad.index_select(&real_rows, 0)?);
        }
        let gradients = Gradients {
            targets,
            logits: per_pair_logits,
            grads,
            ids: ids.index_select(&real_rows, 0)?,
            rows,
        };
        if let Some(stages) = stages {
            device.synchronize()?;
            stages.forward += forward_done;
            stages.backward += clock.elapsed() - forward_done;
        }
        Ok(gradients)
    }

    /// The spans a pair's explanation is about: the one the user gave, else the model's answer
    /// and, with `top_k`, the next best.
    fn spans(&self, enc: &Encoded, start: &[f32], end: &[f32]) -> Vec<Span> {
        let o = &self.options;
        match (enc.requested, o.span) {
            (Some((s, e)), _) => vec![Span { start: s, end: e }],
            (None, span::SpanMode::Best) => {
                span::top(start, end, &enc.segments, o.max_answer_len, o.top_k)
            }
            (None, mode) => vec![span::select(
                mode,
                start,
                end,
                &enc.segments,
                o.max_answer_len,
            )],
        }
    }

    fn build(
        &self,
        enc: &Encoded,
        span: Span,
        target: Target,
        (start, end): &(Vec<f32>, Vec<f32>),
        values: PerToken,
    ) -> Result<Explanation> {
        let PerToken {
            raw,
            score,
            grad_x_input,
        } = values;
        if !raw.iter().chain(grad_x_input).all(|v| v.is_finite()) {
            return Err(Error::NonFinite("gradient"));
        }
        let mut warnings = Vec::new();
        if raw.iter().all(|&r| r == 0.0) {
            warnings
                .push("the gradient is zero for every token: all scores are set to 0".to_string());
        }
        let tokens: Vec<TokenExplanation> = (0..enc.len())
            .map(|i| TokenExplanation {
                text: enc.tokens[i].clone(),
                token_type: enc.type_ids[i],
                segment: enc.segments[i],
                char_start: enc.offsets[i].0,
                char_end: enc.offsets[i].1,
                start_logit: start[i],
                end_logit: end[i],
                score: score[i],
                raw: raw[i],
                grad_x_input: grad_x_input[i],
            })
            .collect();
        let answer = answer(enc, span, start, end);
        let o = &self.options;
        let rank = (o.span == span::SpanMode::Best)
            .then(|| span::rank(start, end, &enc.segments, o.max_answer_len, span));
        let model_answer = enc
            .requested
            .is_some()
            .then(|| span::select(o.span, start, end, &enc.segments, o.max_answer_len))
            .filter(|&best| best != span)
            .map(|best| self::answer(enc, best, start, end));
        if answer.text.is_empty() {
            warnings.push(format!(
                "the predicted span (tokens {}..={}) holds no context token: the answer is empty",
                span.start, span.end
            ));
        }
        Ok(Explanation {
            id: None,
            answer,
            target,
            span_mode: self.options.span,
            saliency: self.saliency.kind(),
            precision: self.precision,
            seed_compat: self.options.seed_compat,
            truncated: enc.truncated,
            rank,
            model_answer,
            words: words::merge(enc, &tokens),
            tokens,
            warnings,
            alternatives: Vec::new(),
        })
    }
}

/// Consecutive ranges of pairs for which `fits(pairs, longest)`; a pair that does not fit alone
/// gets a pass of its own.
fn passes(
    lengths: impl Iterator<Item = usize>,
    fits: impl Fn(usize, usize) -> bool,
) -> Vec<Range<usize>> {
    let mut passes: Vec<Range<usize>> = Vec::new();
    let mut longest = 0;
    for (i, len) in lengths.enumerate() {
        let grown = longest.max(len);
        match passes.last_mut() {
            Some(pass) if fits(pass.len() + 1, grown) => {
                pass.end = i + 1;
                longest = grown;
            }
            _ => {
                passes.push(i..i + 1);
                longest = len;
            }
        }
    }
    passes
}

/// The answer cut from the context between the first and last context token of the span.
fn answer(enc: &Encoded, span: Span, start: &[f32], end: &[f32]) -> Answer {
    let context_tokens: Vec<usize> = (span.start..=span.end)
        .filter(|&i| enc.segments[i] == Segment::Context)
        .collect();
    let chars = context_tokens
        .first()
        .zip(context_tokens.last())
        .map(|(&a, &b)| (enc.offsets[a].0, enc.offsets[b].1));
    Answer {
        text: chars.map_or_else(String::new, |(a, b)| {
            char_slice(&enc.context, a, b).to_string()
        }),
        char_start: chars.map(|c| c.0),
        char_end: chars.map(|c| c.1),
        token_start: span.start,
        token_end: span.end,
        start_logit: start[span.start],
        end_logit: end[span.end],
        score: start[span.start] + end[span.end],
    }
}

#[cfg(test)]
mod tests {
    use super::passes;

    #[test]
    fn passes_fill_the_token_budget_in_order() {
        let lengths = [10, 20, 5, 40, 40, 100, 3];
        let budget = |tokens: usize| move |pairs: usize, longest: usize| pairs * longest <= tokens;
        assert_eq!(
            passes(lengths.into_iter(), budget(usize::MAX)),
            vec![(0..7)]
        );
        // 3 x 20 = 60 fits, 4 x 40 = 160 does not; a pair over the budget stands alone.
        assert_eq!(
            passes(lengths.into_iter(), budget(80)),
            [0..3, 3..5, 5..6, 6..7]
        );
        assert_eq!(
            passes(lengths.into_iter(), budget(1)),
            [0..1, 1..2, 2..3, 3..4, 4..5, 5..6, 6..7]
        );
        assert!(passes(std::iter::empty(), budget(10)).is_empty());
    }
}
