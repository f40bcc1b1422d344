//! Assembly: the per-token values of a pass into explanations (answer text, scores, words,
//! warnings).

use super::*;

/// One pair's slices of the batch's per-token values.
pub(super) struct PerToken<'a> {
    pub(super) raw: &'a [f32],
    pub(super) score: &'a [f32],
    pub(super) grad_x_input: &'a [f32],
}

impl Engine {
    /// Each pair's explanation from the pass's values: the answer first, the next spans (with
    /// `top_k`) as its alternatives; or why it has none.
    pub(super) fn explanations(
        &self,
        batch: &[&Encoded],
        gradients: Gradients,
        values: &[RankValues],
    ) -> Vec<Result<Explanation>> {
        let Gradients {
            targets,
            logits,
            rows,
            ..
        } = gradients;
        batch
            .iter()
            .zip(targets)
            .zip(logits)
            .zip(rows)
            .enumerate()
            .map(|(p, (((enc, chosen), logits), rows))| {
                let mut explanations = chosen?
                    .into_iter()
                    .zip(values)
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
            .collect()
    }

    pub(super) fn build(
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

/// The answer cut from the context between the first and last context token of the span.
pub(super) fn answer(enc: &Encoded, span: Span, start: &[f32], end: &[f32]) -> Answer {
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

/// `start[s] + end[e]` (the logits taken) for a pair's target.
pub(super) fn objective_value(target: &Target, (start, end): &(Vec<f32>, Vec<f32>)) -> f32 {
    target.start_token.map_or(0.0, |s| start[s]) + target.end_token.map_or(0.0, |e| end[e])
}
