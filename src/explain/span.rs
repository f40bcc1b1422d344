//! Choosing the answer span from start/end logits, and the logit the gradient is taken of.

use std::fmt;

use crate::error::{Error, Result};
use crate::text::Segment;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SpanMode {
    /// Maximise `start[i] + end[j]` over context tokens with `i ≤ j < i + max_answer_len`, as the
    /// transformers question-answering pipeline does.
    Best,
    /// The seed's independent argmaxes over all real tokens; the end may precede the start.
    Argmax,
}

impl SpanMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Best => "best",
            Self::Argmax => "argmax",
        }
    }
}

impl fmt::Display for SpanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// Logits are of the real tokens only (no padding). Ties go to the earliest position.
pub fn select(
    mode: SpanMode,
    start: &[f32],
    end: &[f32],
    segments: &[Segment],
    max_answer_len: usize,
) -> Span {
    match mode {
        SpanMode::Argmax => Span {
            start: argmax(start),
            end: argmax(end),
        },
        SpanMode::Best => {
            let in_context = |i: usize| segments[i] == Segment::Context;
            let mut best: Option<(f64, Span)> = None;
            for i in (0..start.len()).filter(|&i| in_context(i)) {
                for j in (i..start.len().min(i.saturating_add(max_answer_len)))
                    .take_while(|&j| in_context(j))
                {
                    let score = start[i] as f64 + end[j] as f64;
                    if best.is_none_or(|(b, _)| score > b) {
                        best = Some((score, Span { start: i, end: j }));
                    }
                }
            }
            best.expect("an encoded pair has at least one context token")
                .1
        }
    }
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// The token whose end logit is differentiated. The seed takes the one after the predicted end
/// (its helper's `+ 1` for slicing, reused as an index), which does not exist after the last token.
pub fn gradient_end(span: Span, len: usize, seed_compat: bool) -> Result<usize> {
    if !seed_compat {
        return Ok(span.end);
    }
    let end = span.end + 1;
    if end < len {
        Ok(end)
    } else {
        Err(Error::SeedCompatEndIsLast { end: span.end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Segment::{Context as C, Question as Q, Special as S};

    #[test]
    fn best_stays_in_the_context_and_respects_the_length_limit() {
        let seg = [S, Q, S, C, C, C, C, S];
        let start = [9.0, 9.0, 0.0, 1.0, 0.0, 0.0, 3.0, 9.0];
        let end = [9.0, 9.0, 0.0, 0.0, 0.5, 0.0, -5.0, 9.0];
        assert_eq!(
            select(SpanMode::Best, &start, &end, &seg, 15),
            Span { start: 3, end: 4 }
        );
        // With room for one token only, the best single-token answer wins.
        assert_eq!(
            select(SpanMode::Best, &start, &end, &seg, 1),
            Span { start: 3, end: 3 }
        );
        assert_eq!(
            select(SpanMode::Argmax, &start, &end, &seg, 15),
            Span { start: 0, end: 0 }
        );
        // A limit near usize::MAX means no limit, not an overflow.
        assert_eq!(
            select(SpanMode::Best, &start, &end, &seg, usize::MAX - 3),
            Span { start: 3, end: 4 }
        );
    }

    #[test]
    fn seed_compat_shifts_the_end_and_fails_past_the_last_token() {
        let span = Span { start: 1, end: 3 };
        assert_eq!(gradient_end(span, 5, false).unwrap(), 3);
        assert_eq!(gradient_end(span, 5, true).unwrap(), 4);
        assert!(matches!(
            gradient_end(span, 4, true),
            Err(Error::SeedCompatEndIsLast { end: 3 })
        ));
    }
}
