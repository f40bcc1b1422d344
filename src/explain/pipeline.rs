//! The answer over a context split into windows, by the transformers question-answering
//! pipeline's rule (`select_starts_ends`, `decode_spans`, and the merging in `postprocess`):
//!
//! 1. per window, the start and end logits of every token but the context's and `[CLS]` are
//!    set to −10000, each softmaxed over the window, and `[CLS]`'s probabilities set to 0;
//! 2. candidates are spans `i ≤ j < i + max_answer_len` scored `p_start[i] · p_end[j]`; the
//!    window's best 12 (`2·top_k + 10`) whose ends are both context (or `[CLS]`) tokens are kept;
//! 3. each candidate's characters run from its first token's word's start to its last token's
//!    word's end (whole words), and candidates of the same text (ignoring case) add their
//!    scores;
//! 4. with `handle_impossible_answer`, the "no answer" scores `p_start[0] · p_end[0]` (before
//!    step 1 zeroes them), its minimum over the windows;
//! 5. the answers are the texts (and "no answer") by score, the earliest on ties, "no answer"
//!    after every text of its score.
//!
//! The explanation then differentiates the window where the winning text was first found, at
//! that candidate's tokens (its best span of that text), or for "no answer" `start[0] + end[0]`
//! in the window of the minimum.

use std::ops::Range;

use super::explanation::Answer;
use super::span::Span;
use crate::text::{Encoded, Segment};

/// Candidates kept per window: the pipeline's `top_k * 2 + 10`.
fn per_window(top_k: usize) -> usize {
    top_k.saturating_mul(2).saturating_add(10)
}

/// One candidate answer of a windowed pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Which window, and the span's first and last token in it.
    pub window: usize,
    pub start: usize,
    pub end: usize,
    /// The summed probability score of every candidate with this text.
    pub score: f64,
    /// Characters of the context, aligned to whole words.
    pub chars: Range<usize>,
    pub text: String,
}

/// One of the pipeline's answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Pick {
    Text(Candidate),
    /// "No answer", in the window of the smallest null score.
    Null {
        window: usize,
        score: f64,
    },
}

/// What the pipeline's rule says of a pair over its windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Its `top_k` answers, best first.
    pub picks: Vec<Pick>,
    /// With `handle_impossible_answer`: the null score and the best text's score.
    pub null: Option<NullScores>,
    /// Each window's own best candidate.
    pub per_window: Vec<Option<Candidate>>,
}

/// The two scores the "no answer" decision compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NullScores {
    /// `min` over the windows of `p_start[0] · p_end[0]`.
    pub null_score: f64,
    /// The best answer text's summed score (`None`: no candidate at all).
    pub best_span_score: Option<f64>,
}

/// The pipeline's `top_k` answers over `windows` (their logits over their real tokens), and
/// each window's own best candidate.
pub fn decide(
    windows: &[&Encoded],
    logits: &[(&[f32], &[f32])],
    max_answer_len: usize,
    top_k: usize,
    handle_impossible_answer: bool,
) -> Decision {
    let mut merged: Vec<Candidate> = Vec::new();
    let mut per_window = Vec::with_capacity(windows.len());
    let mut null: Option<(usize, f64)> = None;
    for (w, (enc, (start, end))) in windows.iter().zip(logits).enumerate() {
        let scored = window_candidates(w, enc, start, end, max_answer_len, top_k);
        if null.is_none_or(|(_, score)| scored.null_score < score) {
            null = Some((w, scored.null_score));
        }
        per_window.push(scored.candidates.first().cloned());
        for c in scored.candidates {
            let key = c.text.to_lowercase();
            match merged.iter_mut().find(|m| m.text.to_lowercase() == key) {
                Some(m) => m.score += c.score,
                None => merged.push(c),
            }
        }
    }
    // A stable sort from the highest, as the pipeline's `sorted`; "no answer" comes last
    // among equal scores.
    merged.sort_by(|a, b| b.score.total_cmp(&a.score));
    let best_span_score = merged.first().map(|c| c.score);
    let mut picks: Vec<Pick> = merged.into_iter().map(Pick::Text).collect();
    let null = null
        .filter(|_| handle_impossible_answer)
        .map(|(window, score)| {
            let at = picks
                .iter()
                .position(|p| matches!(p, Pick::Text(c) if c.score < score))
                .unwrap_or(picks.len());
            picks.insert(at, Pick::Null { window, score });
            NullScores {
                null_score: score,
                best_span_score,
            }
        });
    picks.truncate(top_k);
    Decision {
        picks,
        null,
        per_window,
    }
}

/// An explained answer as the rule chose it: its token span, and what the rule says of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub span: Span,
    /// The whole-word characters and text, where the rule chose the answer.
    pub text: Option<(Range<usize>, String)>,
    /// The rule's score of the answer (summed over candidates of its text).
    pub probability: Option<f64>,
    /// The "no answer" answer: the span is `(0, 0)`.
    pub impossible: bool,
    pub null: Option<NullScores>,
}

impl Choice {
    /// A span alone (a user's, the seed's rules).
    pub fn plain(span: Span) -> Self {
        Self {
            span,
            text: None,
            probability: None,
            impossible: false,
            null: None,
        }
    }

    /// The choice of a pick, and the window it is explained in.
    pub fn of(pick: &Pick, null: Option<NullScores>) -> (usize, Self) {
        match pick {
            Pick::Text(c) => (
                c.window,
                Self {
                    span: Span {
                        start: c.start,
                        end: c.end,
                    },
                    text: Some((c.chars.clone(), c.text.clone())),
                    probability: Some(c.score),
                    impossible: false,
                    null,
                },
            ),
            Pick::Null { window, score } => (
                *window,
                Self {
                    span: Span { start: 0, end: 0 },
                    text: None,
                    probability: Some(*score),
                    impossible: true,
                    null,
                },
            ),
        }
    }

    /// Writes what the rule says into an answer cut from the span's tokens.
    pub fn apply(&self, answer: &mut Answer) {
        if self.impossible {
            answer.text.clear();
            answer.char_start = None;
            answer.char_end = None;
        } else if let Some((chars, text)) = &self.text {
            answer.text = text.clone();
            answer.char_start = Some(chars.start);
            answer.char_end = Some(chars.end);
        }
        answer.impossible = self.impossible;
        answer.probability = self.probability;
        answer.null_score = self.null.map(|n| n.null_score);
        answer.best_span_probability = self.null.and_then(|n| n.best_span_score);
    }
}

/// One window's candidates, best first, and its null score.
struct Scored {
    candidates: Vec<Candidate>,
    null_score: f64,
}

fn window_candidates(
    window: usize,
    enc: &Encoded,
    start: &[f32],
    end: &[f32],
    max_answer_len: usize,
    top_k: usize,
) -> Scored {
    let n = enc.len();
    let allowed = |i: usize| in_softmax(enc, i);
    let (mut ps, mut pe) = (probabilities(enc, start), probabilities(enc, end));
    let null_score = ps[0] * pe[0];
    ps[0] = 0.0;
    pe[0] = 0.0;
    let mut scored: Vec<(f64, usize, usize)> = Vec::new();
    for (i, p_start) in ps.iter().enumerate() {
        for (j, p_end) in pe
            .iter()
            .enumerate()
            .take(n.min(i.saturating_add(max_answer_len)))
            .skip(i)
        {
            scored.push((p_start * p_end, i, j));
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.truncate(per_window(top_k));
    let candidates = scored
        .into_iter()
        .filter(|&(_, i, j)| allowed(i) && allowed(j))
        .map(|(score, i, j)| {
            let chars = word_chars(enc, i, j);
            let text = enc
                .context
                .chars()
                .skip(chars.start)
                .take(chars.end - chars.start)
                .collect();
            Candidate {
                window,
                start: i,
                end: j,
                score,
                chars,
                text,
            }
        })
        .collect();
    Scored {
        candidates,
        null_score,
    }
}

/// Whether token `i` is in the pipeline's softmax: the context's tokens and the first
/// (`[CLS]`, which stays in the softmax with probability 0 afterwards).
fn in_softmax(enc: &Encoded, i: usize) -> bool {
    enc.segments[i] == Segment::Context || i == 0
}

/// The pipeline's softmax of a window's start (or end) logits: over its context tokens and its
/// first token, every other token's logit set to −10000.
pub fn probabilities(enc: &Encoded, logits: &[f32]) -> Vec<f64> {
    let masked: Vec<f64> = (0..enc.len())
        .map(|i| {
            if in_softmax(enc, i) {
                logits[i] as f64
            } else {
                -10000.0
            }
        })
        .collect();
    let max = masked.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = masked.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// From the start of token `i`'s word to the end of token `j`'s word, in the window's context
/// tokens. Where either token has no word (`[CLS]`), both keep their own offsets, as the
/// pipeline falls back when its word lookup fails.
fn word_chars(enc: &Encoded, i: usize, j: usize) -> Range<usize> {
    let word = |t: usize| enc.word_ids[t].filter(|_| enc.segments[t] == Segment::Context);
    let (Some(first), Some(last)) = (word(i), word(j)) else {
        return enc.offsets[i].0..enc.offsets[j].1;
    };
    let chars = |w: u32| {
        (0..enc.len())
            .filter(|&k| word(k) == Some(w))
            .map(|k| enc.offsets[k])
            .fold((usize::MAX, 0), |(a, b), (s, e)| (a.min(s), b.max(e)))
    };
    chars(first).0..chars(last).1
}

/// The best-scoring candidate span (`start[i] + end[j]`, `i ≤ j < i + max_answer_len`, context
/// tokens) whose whole-word characters are `chars`: where a given answer's text is one the
/// rule can answer, the span its explanation differentiates.
pub fn best_span_of(
    enc: &Encoded,
    start: &[f32],
    end: &[f32],
    chars: Range<usize>,
    max_answer_len: usize,
) -> Option<Span> {
    // Candidates come in order of position: the first of the highest score wins.
    super::span::candidates(start, end, &enc.segments, max_answer_len)
        .filter(|(_, span)| word_chars(enc, span.start, span.end) == chars)
        .fold(
            None,
            |best: Option<(f64, Span)>, (score, span)| match best {
                Some((b, _)) if b >= score => best,
                _ => Some((score, span)),
            },
        )
        .map(|(_, span)| span)
}
