//! The answer over a context split into windows, by the transformers question-answering
//! pipeline's rule (`select_starts_ends`, `decode_spans`, and the merging in `postprocess`):
//!
//! 1. per window, the start and end logits of every token but the context's and `[CLS]` are
//!    set to −10000, each softmaxed over the window, and `[CLS]`'s probabilities set to 0;
//! 2. candidates are spans `i ≤ j < i + max_answer_len` scored `p_start[i] · p_end[j]`; the
//!    window's best 12 (`2·top_k + 10`) whose ends are both context (or `[CLS]`) tokens are kept;
//! 3. each candidate's characters run from its first token's word's start to its last token's
//!    word's end (whole words), and candidates of the same text add their scores;
//! 4. the answer is the best-scoring text, the earliest on ties.
//!
//! The explanation then differentiates the window where the winning text was first found, at
//! that candidate's tokens.

use std::ops::Range;

use crate::text::{Encoded, Segment};

/// Candidates kept per window: the pipeline's `top_k * 2 + 10` for `top_k = 1`.
const PER_WINDOW: usize = 12;

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

/// The pipeline's answer over `windows` (their logits over their real tokens), and each
/// window's own best candidate.
pub fn answer(
    windows: &[&Encoded],
    logits: &[(Vec<f32>, Vec<f32>)],
    max_answer_len: usize,
) -> (Option<Candidate>, Vec<Option<Candidate>>) {
    let mut merged: Vec<Candidate> = Vec::new();
    let mut per_window = Vec::with_capacity(windows.len());
    for (w, (enc, (start, end))) in windows.iter().zip(logits).enumerate() {
        let candidates = window_candidates(w, enc, start, end, max_answer_len);
        per_window.push(candidates.first().cloned());
        for c in candidates {
            match merged.iter_mut().find(|m| m.text == c.text) {
                Some(m) => m.score += c.score,
                None => merged.push(c),
            }
        }
    }
    // The first of the best: a stable sort from the highest, as the pipeline's `sorted`.
    let best = merged
        .into_iter()
        .fold(None::<Candidate>, |best, c| match best {
            Some(b) if b.score >= c.score => Some(b),
            _ => Some(c),
        });
    (best, per_window)
}

fn window_candidates(
    window: usize,
    enc: &Encoded,
    start: &[f32],
    end: &[f32],
    max_answer_len: usize,
) -> Vec<Candidate> {
    let n = enc.len();
    // [CLS] (the first token) stays in the softmax, with probability 0 afterwards.
    let allowed = |i: usize| enc.segments[i] == Segment::Context || i == 0;
    let probabilities = |logits: &[f32]| {
        let masked: Vec<f64> = (0..n)
            .map(|i| {
                if allowed(i) {
                    logits[i] as f64
                } else {
                    -10000.0
                }
            })
            .collect();
        let max = masked.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = masked.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        let mut p: Vec<f64> = exp.iter().map(|e| e / sum).collect();
        p[0] = 0.0;
        p
    };
    let (ps, pe) = (probabilities(start), probabilities(end));
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
    scored.truncate(PER_WINDOW);
    scored
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
        .collect()
}

/// From the start of token `i`'s word to the end of token `j`'s word, in the window's context
/// tokens; a token without a word (`[CLS]`) keeps its own offsets.
fn word_chars(enc: &Encoded, i: usize, j: usize) -> Range<usize> {
    let word_span = |t: usize| {
        let Some(word) = enc.word_ids[t].filter(|_| enc.segments[t] == Segment::Context) else {
            return enc.offsets[t];
        };
        (0..enc.len())
            .filter(|&k| enc.segments[k] == Segment::Context && enc.word_ids[k] == Some(word))
            .map(|k| enc.offsets[k])
            .fold((usize::MAX, 0), |(a, b), (s, e)| (a.min(s), b.max(e)))
    };
    word_span(i).0..word_span(j).1
}
