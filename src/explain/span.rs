//! Choosing the answer span from start/end logits, and the logit the gradient is taken of.

use std::fmt;

use crate::error::Result;
use crate::text::Segment;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
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
        SpanMode::Best => top(start, end, segments, max_answer_len, 1)
            .into_iter()
            .next()
            .expect("an encoded pair has at least one context token"),
    }
}

/// The `best` mode's candidates: spans of context tokens `i ≤ j < i + max_answer_len`, with
/// their score `start[i] + end[j]`, in order of `i` then `j`.
pub(super) fn candidates<'a>(
    start: &'a [f32],
    end: &'a [f32],
    segments: &'a [Segment],
    max_answer_len: usize,
) -> impl Iterator<Item = (f64, Span)> + 'a {
    let in_context = |i: usize| segments[i] == Segment::Context;
    (0..start.len())
        .filter(move |&i| in_context(i))
        .flat_map(move |i| {
            (i..start.len().min(i.saturating_add(max_answer_len)))
                .take_while(move |&j| in_context(j))
                .map(move |j| (start[i] as f64 + end[j] as f64, Span { start: i, end: j }))
        })
}

/// The `k` best candidate spans, best first; equal scores keep the earlier span first.
pub fn top(
    start: &[f32],
    end: &[f32],
    segments: &[Segment],
    max_answer_len: usize,
    k: usize,
) -> Vec<Span> {
    let mut all: Vec<(f64, Span)> = candidates(start, end, segments, max_answer_len).collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    all.into_iter().take(k).map(|(_, s)| s).collect()
}

/// Where `span` stands among the candidates: 1 + how many score higher. A span that is no
/// candidate (too long, or outside the context) is ranked against them all the same.
pub fn rank(
    start: &[f32],
    end: &[f32],
    segments: &[Segment],
    max_answer_len: usize,
    span: Span,
) -> usize {
    let score = start[span.start] as f64 + end[span.end] as f64;
    1 + candidates(start, end, segments, max_answer_len)
        .filter(|(s, _)| *s > score)
        .count()
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
        Err(super::options::phrases::seed_compat_end_is_last(span.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
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
    fn top_spans_come_best_first_and_ranks_count_the_better_ones() {
        let seg = [S, Q, S, C, C, C, C, S];
        let start = [9.0, 9.0, 0.0, 1.0, 0.0, 0.0, 3.0, 9.0];
        let end = [9.0, 9.0, 0.0, 0.0, 0.5, 0.0, -5.0, 9.0];
        let spans = top(&start, &end, &seg, 15, 3);
        assert_eq!(
            spans,
            [
                Span { start: 3, end: 4 },
                Span { start: 3, end: 3 },
                Span { start: 3, end: 5 }
            ]
        );
        assert_eq!(spans[0], select(SpanMode::Best, &start, &end, &seg, 15));
        // Equal scores share a rank: (3, 3) and (3, 5) both score 1.
        let ranks: Vec<usize> = spans
            .iter()
            .map(|s| rank(&start, &end, &seg, 15, *s))
            .collect();
        assert_eq!(ranks, [1, 2, 2]);
        assert_eq!(rank(&start, &end, &seg, 15, Span { start: 6, end: 6 }), 7);
        assert_eq!(top(&start, &end, &seg, 15, 100).len(), 10);
    }

    #[test]
    fn seed_compat_shifts_the_end_and_fails_past_the_last_token() {
        let span = Span { start: 1, end: 3 };
        assert_eq!(gradient_end(span, 5, false).unwrap(), 3);
        assert_eq!(gradient_end(span, 5, true).unwrap(), 4);
        assert!(matches!(
            gradient_end(span, 4, true),
            Err(Error::SeedCompatEndIsLast { end: 3, .. })
        ));
    }
}
