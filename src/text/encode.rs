//! A (question, context) pair in the tokenizer's pair template (`[CLS] q [SEP] c [SEP]`,
//! `<s> q </s></s> c </s>`), truncating the context only.

use tokenizers::{Encoding, PostProcessor, TruncationDirection};

use super::QaTokenizer;
use crate::error::{Error, Phrase, Result};

/// Which input string a token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Segment {
    Special,
    Question,
    Context,
}

/// One encoded pair. Offsets count characters (Unicode scalar values, as Python strings do) in
/// the token's own string, the question or the context; special tokens have `(0, 0)`.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub question: String,
    pub context: String,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub tokens: Vec<String>,
    pub offsets: Vec<(usize, usize)>,
    pub segments: Vec<Segment>,
    /// Whether context tokens were dropped to fit the maximum length.
    pub truncated: bool,
    /// A span to explain instead of the model's own answer (first and last token), when the
    /// user gave one.
    pub requested: Option<(usize, usize)>,
    /// Each token's word in its own string (the tokenizer's pre-tokenised words), for aligning
    /// answers to whole words as the transformers pipeline does.
    pub word_ids: Vec<Option<u32>>,
    /// Whether each token begins a word by the tokenizer's own marker (no `##`; a leading `Ġ`
    /// or `▁`): the word view of the scores.
    pub word_start: Vec<bool>,
    /// Which window of the context this is, when the context was split (`--doc-stride`).
    pub window: Option<Window>,
}

/// One window of a context split into overlapping windows, as the transformers
/// question-answering pipeline splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "serve", derive(utoipa::ToSchema))]
pub struct Window {
    /// 0-based, of `count`.
    pub index: usize,
    pub count: usize,
    /// The window's context tokens within the whole context's tokens.
    pub token_start: usize,
    pub token_end: usize,
    /// The characters of the context the window covers.
    pub char_start: usize,
    pub char_end: usize,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The string a token's offsets index into, if it has one.
    pub fn source(&self, segment: Segment) -> Option<&str> {
        match segment {
            Segment::Question => Some(&self.question),
            Segment::Context => Some(&self.context),
            Segment::Special => None,
        }
    }
}

/// An `Encoded` from a post-processed pair; the first `question_len` ordinary tokens are the
/// question's (post-processors do not keep sequence ids reliably), the rest the context's.
fn assemble(
    question: &str,
    context: &str,
    enc: &Encoding,
    question_len: usize,
    tokenizer: &QaTokenizer,
) -> Encoded {
    // By id, as transformers' `convert_ids_to_tokens`: an unknown piece reads `<unk>`, not
    // the text it stands for (Unigram models keep the text).
    let tokens: Vec<String> = enc
        .get_ids()
        .iter()
        .zip(enc.get_tokens())
        .map(|(&id, token)| {
            tokenizer
                .inner
                .id_to_token(id)
                .unwrap_or_else(|| token.clone())
        })
        .collect();
    let word_start = tokens
        .iter()
        .map(|t| tokenizer.words.begins_word(t))
        .collect();
    let mut ordinary = 0;
    let segments = enc
        .get_special_tokens_mask()
        .iter()
        .map(|&special| {
            if special == 1 {
                return Segment::Special;
            }
            ordinary += 1;
            if ordinary <= question_len {
                Segment::Question
            } else {
                Segment::Context
            }
        })
        .collect();
    Encoded {
        question: question.to_string(),
        context: context.to_string(),
        ids: enc.get_ids().to_vec(),
        type_ids: enc.get_type_ids().to_vec(),
        tokens,
        offsets: enc.get_offsets().to_vec(),
        segments,
        truncated: false,
        requested: None,
        word_ids: enc.get_word_ids().to_vec(),
        word_start,
        window: None,
    }
}

impl QaTokenizer {
    /// The pair in its template in at most `max_length` tokens, the context cut to
    /// fit (`truncated` says so).
    pub fn encode(&self, question: &str, context: &str, max_length: usize) -> Result<Encoded> {
        let mut windows = self.encode_windows(question, context, max_length, 0)?;
        let count = windows.len();
        let mut first = windows.swap_remove(0);
        first.truncated = count > 1;
        first.window = None;
        Ok(first)
    }

    /// The context in overlapping windows of at most `max_length` tokens each with the
    /// question, consecutive windows sharing `stride` context tokens: the transformers
    /// question-answering pipeline's `doc_stride` (its tokenizer's `truncation="only_second"`,
    /// `return_overflowing_tokens`). One window when the context fits.
    pub fn encode_windows(
        &self,
        question: &str,
        context: &str,
        max_length: usize,
        stride: usize,
    ) -> Result<Vec<Encoded>> {
        let question_enc = self.encode_text(question, "question")?;
        let mut context_enc = self.encode_text(context, "context")?;
        let question_len = question_enc.len();
        let specials = self.pair_specials();
        let room = max_length
            .checked_sub(question_enc.len() + specials)
            .filter(|&room| room > 0)
            .ok_or(Error::QuestionTooLong {
                question_tokens: question_enc.len(),
                max_length,
            })?;
        if stride >= room {
            // Named as an option by the caller that chose the stride.
            let message = Phrase::text(format!(
                "a stride of {stride} tokens leaves no new context per window: with the \
                 question, each window holds {room} context tokens"
            ));
            return Err(Error::DocStride {
                stride,
                room,
                message,
            });
        }
        let total = context_enc.len();
        context_enc.truncate(room, stride, TruncationDirection::Right);
        let overflowing = context_enc.take_overflowing();
        let count = 1 + overflowing.len();
        std::iter::once(context_enc)
            .chain(overflowing)
            .enumerate()
            .map(|(index, window)| {
                let token_start = (index * (room - stride)).min(total);
                let token_end = (token_start + window.len()).min(total);
                let enc = self
                    .inner
                    .post_process(question_enc.clone(), Some(window), true)
                    .map_err(|e| Error::Encoding(e.to_string()))?;
                let mut encoded = assemble(question, context, &enc, question_len, self);
                let context_offsets = (0..encoded.len())
                    .filter(|&i| encoded.segments[i] == Segment::Context)
                    .map(|i| encoded.offsets[i]);
                let (char_start, char_end) = context_offsets
                    .fold(None, |span: Option<(usize, usize)>, (a, b)| {
                        Some(span.map_or((a, b), |(s, _)| (s, b)))
                    })
                    .unwrap_or((0, 0));
                encoded.window = Some(Window {
                    index,
                    count,
                    token_start,
                    token_end,
                    char_start,
                    char_end,
                });
                Ok(encoded)
            })
            .collect()
    }

    /// The special tokens of a pair's template (`[CLS] q [SEP] c [SEP]`: 3).
    pub fn pair_specials(&self) -> usize {
        self.inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true))
    }

    fn encode_text(&self, text: &str, what: &'static str) -> Result<Encoding> {
        if text.trim().is_empty() {
            return Err(Error::EmptyInput(what));
        }
        let enc = self
            .pieces
            .encode_char_offsets(text, false)
            .map_err(|e| Error::Encoding(e.to_string()))?;
        if enc.is_empty() {
            return Err(Error::EmptyInput(what));
        }
        Ok(enc)
    }
}
