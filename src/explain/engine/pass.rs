//! The pass: forward, the spans to explain, and backward to the word embeddings.

use super::*;

impl Engine {
    pub(super) fn explain_pass(
        &self,
        batch: &[&Encoded],
        stages: Option<&mut StageTimes>,
    ) -> Result<Vec<Result<Explanation>>> {
        self.explain_pass_with(batch, stages, None)
    }

    pub(super) fn explain_pass_with(
        &self,
        batch: &[&Encoded],
        mut stages: Option<&mut StageTimes>,
        noise: Option<&[Tensor]>,
    ) -> Result<Vec<Result<Explanation>>> {
        let gradients = self.gradients_timed(batch, stages.as_deref_mut())?;
        let clock = Instant::now();
        let values = self.attributions(&gradients, batch, noise)?;
        if let Some(stages) = stages {
            stages.saliency += clock.elapsed();
        }
        Ok(self.explanations(batch, gradients, &values))
    }

    /// A batch padded into one pass's model inputs (its real rows still to be filled in).
    pub(super) fn layout(&self, batch: &[&Encoded]) -> Result<PassLayout> {
        let inputs: Vec<Input<'_>> = batch.iter().map(|&e| Input::from(e)).collect();
        self.layout_of(&inputs)
    }

    fn layout_of(&self, batch: &[Input<'_>]) -> Result<PassLayout> {
        let device = self.model.device();
        let b = batch.len();
        let t = batch.iter().map(|e| e.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id; b * t];
        let mut types = vec![0u32; b * t];
        for (i, input) in batch.iter().enumerate() {
            let row = i * t..i * t + input.len();
            ids[row.clone()].copy_from_slice(input.ids);
            types[row].copy_from_slice(input.types);
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

    /// The start and end logits of every pair over its real tokens, the forward alone (the
    /// windows of a long context are scored this way before one is explained).
    pub fn logits(&self, batch: &[&Encoded]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let inputs: Vec<Input<'_>> = batch.iter().map(|&e| Input::from(e)).collect();
        self.infer(&inputs)
    }

    /// The start and end logits of every input over its tokens, in its order, by forward
    /// passes alone: inputs of equal length run together, in passes as `max_batch_tokens`
    /// says (`auto` sizes them by [`crate::model::BatchShape::infer_bytes`]); a pass the
    /// device cannot hold is split in two and retried.
    pub fn infer(&self, inputs: &[Input<'_>]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].len()));
        let sorted: Vec<Input<'_>> = order.iter().map(|&i| inputs[i]).collect();
        let fits = self.fitting(Need::Forward)?;
        let mut out: Vec<(Vec<f32>, Vec<f32>)> = vec![Default::default(); inputs.len()];
        for range in passes(sorted.iter().map(Input::len), fits) {
            for (&i, logits) in order[range.clone()]
                .iter()
                .zip(self.infer_splitting(&sorted[range])?)
            {
                out[i] = logits;
            }
        }
        Ok(out)
    }

    fn infer_splitting(&self, pass: &[Input<'_>]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        match self.infer_pass(pass) {
            Err(e) if e.is_out_of_memory() && pass.len() > 1 => {
                let (first, second) = pass.split_at(pass.len() / 2);
                let mut logits = self.infer_splitting(first)?;
                logits.extend(self.infer_splitting(second)?);
                Ok(logits)
            }
            other => other,
        }
    }

    fn infer_pass(&self, pass: &[Input<'_>]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        let layout = self.layout_of(pass)?;
        let logits =
            self.model
                .infer(&layout.words, &layout.types, &layout.lengths, &layout.shape)?;
        let start = logits.start.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let end = logits.end.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        Ok(pass
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let n = input.len();
                (start[i][..n].to_vec(), end[i][..n].to_vec())
            })
            .collect())
    }

    /// `∂y/∂words` at `copies` stacked variants of the pass's words (`words`
    /// `[copies·n, h]`), each with the same objectives: `[copies·n, h]`.
    pub(super) fn grads_at(
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

    /// Forward, span choice and backward: `∂(start[s] + end[e]) / ∂(word embeddings)`.
    pub fn gradients(&self, batch: &[Encoded]) -> Result<Gradients> {
        let batch: Vec<&Encoded> = batch.iter().collect();
        self.gradients_timed(&batch, None)
    }

    pub(super) fn gradients_timed(
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
    pub(super) fn choices(
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
}

/// Every pair's objective of the given rank (none where a pair has no such target).
pub(super) fn objectives(targets: &[Result<Vec<(Choice, Target)>>], rank: usize) -> Vec<Objective> {
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
