//! The numerical core: a padded batch of encoded pairs through forward, span choice, backward
//! to the word embeddings, saliency and normalisation. Knows nothing of tokenizers.

use std::borrow::Borrow;
use std::ops::Range;

use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};

use super::explanation::{Answer, Explanation, Target, TokenExplanation};
use super::method::{self, Baseline, Method};
use super::normalise::normalise;
use super::options::{name, BatchTokens, ExplainOptions, InvalidOption, Precision};
use super::pipeline::{self, Choice};
use super::rows;
use super::saliency::Saliency;
use super::span::{self, Span};
use super::words::{self, char_slice};
use crate::error::{Error, Result};
use crate::model::{Objective, QaModel};
use crate::text::{Encoded, Segment};

/// Padded tokens of an `auto` pass on the CPU. Larger passes stop paying there: distilbert-base
/// x 384, f32, 2 cores gave 2.1–2.7 pairs/s from 2 to 32 pairs per pass but 1.95 at 64 (the
/// forward 2.7x its time at 32), and a server at 64 clients ran 18% faster with passes of 4,096
/// tokens than of 8,192 (bench/RESULTS.md). A single pair over it still runs, alone.
pub const CPU_AUTO_PASS_TOKENS: usize = 4096;

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
        let fits = self.pass_fits()?;
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

    /// Whether `pairs` padded to `longest` tokens make one pass, as `max_batch_tokens` says:
    /// `auto` fits the memory, and on the CPU stops at [`CPU_AUTO_PASS_TOKENS`].
    fn pass_fits(&self) -> Result<impl Fn(usize, usize) -> bool + '_> {
        let available = self.available_memory()?;
        let cpu = self.model.device().is_cpu();
        Ok(
            move |pairs: usize, longest: usize| match self.options.max_batch_tokens {
                BatchTokens::Fixed(n) => pairs * longest <= n,
                BatchTokens::Unlimited => true,
                BatchTokens::Auto => {
                    self.pass_bytes(pairs, longest) <= available
                        && (!cpu || pairs * longest <= CPU_AUTO_PASS_TOKENS)
                }
            },
        )
    }

    /// Bytes a pass may use: the limit of the options, else what the device has free.
    fn available_memory(&self) -> Result<usize> {
        match self.options.memory_limit_bytes() {
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
        let Some(limit) = self.options.memory_limit_bytes() else {
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
        stages: Option<&mut StageTimes>,
    ) -> Result<Vec<Result<Explanation>>> {
        self.explain_pass_with(batch, stages, None)
    }

    /// SmoothGrad with the noise given rather than drawn: `noise[p]` is pair `p`'s
    /// `[samples, tokens, hidden]` draws. One pass (no splitting by memory), for reproducing
    /// draws made elsewhere (the reference fixtures).
    pub fn explain_with_noise(
        &self,
        batch: &[Encoded],
        noise: &[Tensor],
    ) -> Result<Vec<Result<Explanation>>> {
        if self.options.method != Method::Smoothgrad || noise.len() != batch.len() {
            return Err(Error::Usage(
                "explain_with_noise takes method smoothgrad and one noise tensor per pair".into(),
            ));
        }
        let batch: Vec<&Encoded> = batch.iter().collect();
        self.explain_pass_with(&batch, None, Some(noise))
    }

    fn explain_pass_with(
        &self,
        batch: &[&Encoded],
        mut stages: Option<&mut StageTimes>,
        noise: Option<&[Tensor]>,
    ) -> Result<Vec<Result<Explanation>>> {
        let gradients = self.gradients_timed(batch, stages.as_deref_mut())?;
        let clock = Instant::now();
        let embeddings = self.model.word_embeddings();
        let own_rows = gradients.ids.unsqueeze(1)?;
        let mut offsets: Vec<u32> = gradients.rows.iter().map(|r| r.start as u32).collect();
        offsets.push(gradients.rows.last().map_or(0, |r| r.end as u32));
        let offsets = Tensor::new(offsets, embeddings.device())?;
        let method = self.options.method;
        // Per rank: every real token's attribution, score and gradient x input, and for
        // integrated gradients each pair's objective at the baseline.
        let mut values = Vec::with_capacity(gradients.grads.len());
        for (rank, grads) in gradients.grads.iter().enumerate() {
            let grad_x_input = rows::gather_dot(grads, embeddings, &own_rows)?.squeeze(1)?;
            let objectives = objectives(&gradients.targets, rank);
            let (raw, at_baseline) = match method {
                Method::OnehotNorm => (self.saliency.norms(grads)?, None),
                Method::GradXInput => (grad_x_input.clone(), None),
                Method::GradNorm => (norms(grads)?, None),
                Method::IntegratedGradients => {
                    let (raw, at_baseline) =
                        self.integrated_gradients(&gradients.pass, batch, &objectives)?;
                    (raw, Some(at_baseline))
                }
                Method::Smoothgrad => (
                    self.smoothgrad(&gradients.pass, batch, &objectives, noise)?,
                    None,
                ),
            };
            // The only copies back: everything above is queued on the model's device.
            let (raw_host, scores) = if method == Method::OnehotNorm {
                let scores = normalise(&raw, &offsets)?;
                (raw.to_vec1::<f32>()?, scores.to_vec1::<f32>()?)
            } else {
                let raw = raw.to_vec1::<f32>()?;
                let scores = normalise_signed(&raw, &gradients.rows);
                (raw, scores)
            };
            values.push(RankValues {
                raw: raw_host,
                score: scores,
                grad_x_input: grad_x_input.to_vec1::<f32>()?,
                at_baseline,
            });
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
            .enumerate()
            .map(|(p, (((enc, chosen), logits), rows))| {
                let mut explanations = chosen?
                    .into_iter()
                    .zip(&values)
                    .map(|((choice, target), v)| {
                        let per_token = PerToken {
                            raw: &v.raw[rows.clone()],
                            score: &v.score[rows.clone()],
                            grad_x_input: &v.grad_x_input[rows.clone()],
                        };
                        let completeness = v.at_baseline.as_ref().map(|at_baseline| {
                            let total: f32 = per_token.raw.iter().sum();
                            let gain = objective_value(&target, &logits) - at_baseline[p];
                            total - gain
                        });
                        let mut e = self.build(enc, &choice, target, &logits, per_token)?;
                        e.completeness_error = completeness;
                        Ok(e)
                    })
                    .collect::<Result<Vec<_>>>()?
                    .into_iter();
                let mut first = explanations.next().ok_or(Error::NonFinite("logits"))?;
                first.alternatives = explanations.collect();
                Ok(first)
            })
            .collect())
    }

    /// A batch padded into one pass's model inputs (its real rows still to be filled in).
    fn layout(&self, batch: &[&Encoded]) -> Result<PassLayout> {
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
        let ids = Tensor::from_vec(ids, b * t, device)?;
        Ok(PassLayout {
            words: self.saliency.embed(&ids)?,
            ids,
            types: Tensor::from_vec(types, b * t, device)?,
            lengths: Tensor::from_vec(lengths, b, device)?,
            shape: self.model.batch_shape(b, t),
            real_rows: Tensor::zeros(0, DType::U32, device)?,
        })
    }

    /// The start and end logits of every pair over its real tokens, in passes as
    /// `max_batch_tokens` says, the forward alone (the windows of a long context are scored
    /// this way before one is explained).
    pub fn logits(&self, batch: &[&Encoded]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let fits = self.pass_fits()?;
        let mut out = Vec::with_capacity(batch.len());
        for range in passes(batch.iter().map(|e| e.len()), fits) {
            let pass = &batch[range];
            let layout = self.layout(pass)?;
            let (logits, _) =
                self.model
                    .forward(&layout.words, &layout.types, &layout.lengths, &layout.shape)?;
            let start = logits.start.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            let end = logits.end.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            for (i, enc) in pass.iter().enumerate() {
                out.push((start[i][..enc.len()].to_vec(), end[i][..enc.len()].to_vec()));
            }
        }
        Ok(out)
    }

    /// `∂y/∂words` at `copies` stacked variants of the pass's words (`words`
    /// `[copies·n, h]`), each with the same objectives: `[copies·n, h]`.
    fn grads_at(
        &self,
        pass: &PassLayout,
        words: &Tensor,
        copies: usize,
        objectives: &[Objective],
    ) -> Result<Tensor> {
        let repeat = |t: &Tensor| Tensor::cat(&vec![t; copies], 0);
        let shape = self
            .model
            .batch_shape(pass.shape.pairs * copies, pass.shape.tokens);
        let all: Vec<Objective> = (0..copies)
            .flat_map(|_| objectives.iter().copied())
            .collect();
        let (_, saved) = self.model.forward(
            words,
            &repeat(&pass.types)?,
            &repeat(&pass.lengths)?,
            &shape,
        )?;
        self.model.input_grad(saved, &all)
    }

    /// How many copies of a pass fit in one (the memory the options allow), at least 1.
    fn copies_per_pass(&self, pass: &PassLayout, wanted: usize) -> Result<usize> {
        let available = self.available_memory()?;
        let (b, t) = (pass.shape.pairs, pass.shape.tokens);
        Ok((1..=wanted)
            .take_while(|&c| self.pass_bytes(b * c, t) <= available)
            .last()
            .unwrap_or(1))
    }

    /// Integrated-gradients attributions of every real token, `[tokens]` f32, and each pair's
    /// objective at the baseline.
    fn integrated_gradients(
        &self,
        pass: &PassLayout,
        batch: &[&Encoded],
        objectives: &[Objective],
    ) -> Result<(Tensor, Vec<f32>)> {
        let x = &pass.words;
        let (n, h) = x.dims2()?;
        let base = self.baseline(pass, batch)?;
        let diff = (x - &base)?;
        let rule = method::gauss_legendre(self.options.steps);
        let per_pass = self.copies_per_pass(pass, rule.len())?;
        let device = x.device();
        let mut sum = Tensor::zeros((n, h), DType::F32, device)?;
        for chunk in rule.chunks(per_pass) {
            let points = chunk
                .iter()
                .map(|&(alpha, _)| &base + (&diff * alpha)?)
                .collect::<candle_core::Result<Vec<_>>>()?;
            let grads = self
                .grads_at(pass, &Tensor::cat(&points, 0)?, chunk.len(), objectives)?
                .to_dtype(DType::F32)?
                .reshape((chunk.len(), n, h))?;
            let weights: Vec<f32> = chunk.iter().map(|&(_, w)| w as f32).collect();
            let weights = Tensor::from_vec(weights, (chunk.len(), 1, 1), device)?;
            sum = (sum + grads.broadcast_mul(&weights)?.sum(0)?)?;
        }
        let attribution = (diff.to_dtype(DType::F32)? * sum)?
            .sum(1)?
            .index_select(&pass.real_rows, 0)?;
        let (logits, _) = self
            .model
            .forward(&base, &pass.types, &pass.lengths, &pass.shape)?;
        let (start, end) = (
            logits.start.to_dtype(DType::F32)?.to_vec2::<f32>()?,
            logits.end.to_dtype(DType::F32)?.to_vec2::<f32>()?,
        );
        let at_baseline = objectives
            .iter()
            .enumerate()
            .map(|(p, o)| o.start.map_or(0.0, |s| start[p][s]) + o.end.map_or(0.0, |e| end[p][e]))
            .collect();
        Ok((attribution, at_baseline))
    }

    /// The integrated-gradients baseline `[n, h]`: every token but the special ones replaced by
    /// the pad or mask token's embedding, or zeros.
    fn baseline(&self, pass: &PassLayout, batch: &[&Encoded]) -> Result<Tensor> {
        let token = match self.options.baseline {
            Baseline::Zero => return Ok(pass.words.zeros_like()?),
            Baseline::Pad => self.pad_id,
            Baseline::Mask => self.mask_id.ok_or_else(|| {
                Error::from(InvalidOption::says(
                    name::baseline,
                    " mask: the vocabulary has no [MASK] token",
                ))
            })?,
        };
        let t = pass.shape.tokens;
        let mut ids = vec![self.pad_id; batch.len() * t];
        for (p, enc) in batch.iter().enumerate() {
            for (i, (&id, segment)) in enc.ids.iter().zip(&enc.segments).enumerate() {
                ids[p * t + i] = if *segment == Segment::Special {
                    id
                } else {
                    token
                };
            }
        }
        let ids = Tensor::from_vec(ids, batch.len() * t, pass.ids.device())?;
        self.saliency.embed(&ids)
    }

    /// SmoothGrad: the norm over the hidden size of the gradient averaged over noisy copies of
    /// the word embeddings, `[tokens]` f32. The noise is drawn per pair from the seed and the
    /// pair's tokens (so a pair gets the same draws in any batch), or given.
    fn smoothgrad(
        &self,
        pass: &PassLayout,
        batch: &[&Encoded],
        objectives: &[Objective],
        given: Option<&[Tensor]>,
    ) -> Result<Tensor> {
        let (n, h) = pass.words.dims2()?;
        let (t, samples) = (pass.shape.tokens, self.options.samples);
        let device = pass.words.device();
        // [samples, n, h]: each pair's draws in its real rows, zeros on padding.
        let mut noise = vec![0f32; samples * n * h];
        for (p, enc) in batch.iter().enumerate() {
            let len = enc.len();
            let draws: Vec<f32> = match given {
                Some(given) => {
                    let g = &given[p];
                    if g.dims() != [samples, len, h] {
                        return Err(Error::Usage(format!(
                            "pair {p}: noise must be [{samples}, {len}, {h}], not {:?}",
                            g.dims()
                        )));
                    }
                    g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?
                }
                None => draw_noise(
                    self.options.seed,
                    &enc.ids,
                    samples * len * h,
                    self.options.noise_std,
                ),
            };
            for k in 0..samples {
                let from = &draws[k * len * h..(k + 1) * len * h];
                let at = (k * n + p * t) * h;
                noise[at..at + len * h].copy_from_slice(from);
            }
        }
        let noise =
            Tensor::from_vec(noise, (samples, n, h), device)?.to_dtype(pass.words.dtype())?;
        let per_pass = self.copies_per_pass(pass, samples)?;
        let mut sum = Tensor::zeros((n, h), DType::F32, device)?;
        for start in (0..samples).step_by(per_pass) {
            let c = per_pass.min(samples - start);
            let words = noise
                .narrow(0, start, c)?
                .broadcast_add(&pass.words)?
                .reshape((c * n, h))?;
            let grads = self
                .grads_at(pass, &words, c, objectives)?
                .to_dtype(DType::F32)?
                .reshape((c, n, h))?;
            sum = (sum + grads.sum(0)?)?;
        }
        let mean = (sum / samples as f64)?;
        Ok(norms(&mean)?.index_select(&pass.real_rows, 0)?)
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
        let (b, t) = (
            batch.len(),
            batch.iter().map(|e| e.len()).max().unwrap_or(0),
        );
        let mut pass = self.layout(batch)?;
        let (logits, saved) =
            self.model
                .forward(&pass.words, &pass.types, &pass.lengths, &pass.shape)?;
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
                self.choices(enc, enc.requested, s, e)
                    .into_iter()
                    .map(|choice| {
                        let span = choice.span;
                        span::gradient_end(span, n, self.options.seed_compat).map(|end_token| {
                            let target = Target::new(self.options.target, span.start, end_token);
                            (choice, target)
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
        pass.real_rows = Tensor::from_vec(real_rows, rows.last().map_or(0, |r| r.end), device)?;
        let mut grads = Vec::with_capacity(ranks);
        let mut saved = Some(saved);
        for rank in 0..ranks {
            let objectives = objectives(&targets, rank);
            // The last backward takes the saved activations themselves, freeing them as it goes.
            let saved = if rank + 1 == ranks {
                saved.take().expect("present until the last rank")
            } else {
                saved.clone().expect("present until the last rank")
            };
            let grad = self.model.input_grad(saved, &objectives)?;
            grads.push(grad.index_select(&pass.real_rows, 0)?);
        }
        let gradients = Gradients {
            targets,
            logits: per_pair_logits,
            grads,
            ids: pass.ids.index_select(&pass.real_rows, 0)?,
            rows,
            pass,
        };
        if let Some(stages) = stages {
            device.synchronize()?;
            stages.forward += forward_done;
            stages.backward += clock.elapsed() - forward_done;
        }
        Ok(gradients)
    }

    /// The answers a pair's explanation is about: the span the user gave; else the model's
    /// answer (and, with `top_k`, the next best) by the transformers pipeline's rule, or by the
    /// seed's rules (`--span argmax`, `--seed-compat`: the largest `start + end`, tokens as
    /// they are).
    fn choices(
        &self,
        enc: &Encoded,
        requested: Option<(usize, usize)>,
        start: &[f32],
        end: &[f32],
    ) -> Vec<Choice> {
        let o = &self.options;
        let segments = &enc.segments;
        match (requested, o.span) {
            (Some((s, e)), span::SpanMode::Best)
                if !o.seed_compat && segments[s] == Segment::Context =>
            {
                // A given text that whole words make is explained at its best span, as the
                // model's own answer of that text would be. (A window's "no answer" asks for
                // the first token, which stays as it is.)
                let chars = enc.offsets[s].0..enc.offsets[e].1;
                let span = pipeline::best_span_of(enc, start, end, chars, o.max_answer_len)
                    .unwrap_or(Span { start: s, end: e });
                vec![Choice::plain(span)]
            }
            (Some((s, e)), _) => vec![Choice::plain(Span { start: s, end: e })],
            (None, span::SpanMode::Best) if !o.seed_compat => {
                let decision = pipeline::decide(
                    &[enc],
                    &[(start, end)],
                    o.max_answer_len,
                    o.top_k,
                    o.handle_impossible_answer,
                );
                decision
                    .picks
                    .iter()
                    .map(|pick| Choice::of(pick, decision.null).1)
                    .collect()
            }
            (None, mode) => vec![Choice::plain(span::select(
                mode,
                start,
                end,
                segments,
                o.max_answer_len,
            ))],
        }
    }

    fn build(
        &self,
        enc: &Encoded,
        choice: &Choice,
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
        let span = choice.span;
        let mut answer = answer(enc, span, start, end);
        choice.apply(&mut answer);
        let o = &self.options;
        let rank = (o.span == span::SpanMode::Best && !choice.impossible)
            .then(|| span::rank(start, end, &enc.segments, o.max_answer_len, span));
        let model_answer = enc
            .requested
            .is_some()
            .then(|| self.choices(enc, None, start, end))
            .and_then(|choices| choices.into_iter().next())
            .filter(|best| best.span != span)
            .map(|best| {
                let mut a = self::answer(enc, best.span, start, end);
                best.apply(&mut a);
                a
            });
        // Only a span the model chose can hold no context token: a given answer (or a
        // window's pick) has text, or is "no answer".
        if answer.text.is_empty() && enc.requested.is_none() && !choice.impossible {
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
            method: self.options.method,
            completeness_error: None,
            precision: self.precision,
            seed_compat: self.options.seed_compat,
            truncated: enc.truncated,
            window: enc.window,
            rank,
            model_answer,
            words: words::merge(enc, &tokens),
            tokens,
            warnings,
            alternatives: Vec::new(),
            windows: Vec::new(),
        })
    }
}

/// One rank's per-token values over the real tokens of the pass.
struct RankValues {
    raw: Vec<f32>,
    score: Vec<f32>,
    grad_x_input: Vec<f32>,
    /// Integrated gradients: each pair's objective at the baseline.
    at_baseline: Option<Vec<f32>>,
}

/// Every pair's objective of the given rank (none where a pair has no such target).
fn objectives(targets: &[Result<Vec<(Choice, Target)>>], rank: usize) -> Vec<Objective> {
    targets
        .iter()
        .map(|t| {
            t.as_ref()
                .ok()
                .and_then(|v| v.get(rank))
                .map_or_else(Objective::default, |(_, target)| target.objective())
        })
        .collect()
}

/// `start[s] + end[e]` (the logits taken) for a pair's target.
fn objective_value(target: &Target, (start, end): &(Vec<f32>, Vec<f32>)) -> f32 {
    target.start_token.map_or(0.0, |s| start[s]) + target.end_token.map_or(0.0, |e| end[e])
}

/// The L2 norm of each row, in f32: `[rows, h]` → `[rows]`.
fn norms(x: &Tensor) -> Result<Tensor> {
    Ok(x.to_dtype(DType::F32)?.sqr()?.sum(1)?.sqrt()?)
}

/// Each pair's values divided by their largest magnitude (zeros when all are zero).
fn normalise_signed(raw: &[f32], rows: &[Range<usize>]) -> Vec<f32> {
    let mut scores = vec![0f32; raw.len()];
    for r in rows {
        let max = raw[r.clone()].iter().fold(0f32, |m, v| m.max(v.abs()));
        if max > 0.0 {
            for (s, v) in scores[r.clone()].iter_mut().zip(&raw[r.clone()]) {
                *s = v / max;
            }
        }
    }
    scores
}

/// `count` normal draws of standard deviation `std`, from `seed` and the pair's token ids.
fn draw_noise(seed: u64, ids: &[u32], count: usize, std: f64) -> Vec<f32> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    // FNV-1a over the ids, so a pair's noise does not depend on its place in a batch.
    let pair = ids.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &id| {
        (h ^ u64::from(id)).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ pair);
    let normal = rand_distr::Normal::new(0.0, std).expect("a finite, non-negative deviation");
    (0..count).map(|_| normal.sample(&mut rng) as f32).collect()
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
        probability: None,
        impossible: false,
        null_score: None,
        best_span_probability: None,
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
