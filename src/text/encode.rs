//! `[CLS] question [SEP] context [SEP]`, truncating the context only.

use tokenizers::{Encoding, PostProcessor, TruncationDirection};

use super::QaTokenizer;
use crate::error::{Error, Result};

/// Which input string a token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

impl QaTokenizer {
    pub fn encode(&self, question: &str, context: &str, max_length: usize) -> Result<Encoded> {
        let question_enc = self.encode_text(question, "question")?;
        let mut context_enc = self.encode_text(context, "context")?;
        let question_len = question_enc.len();
        let specials = self
            .inner
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        let room = max_length
            .checked_sub(question_enc.len() + specials)
            .filter(|&room| room > 0)
            .ok_or(Error::QuestionTooLong {
                question_tokens: question_enc.len(),
                max_length,
            })?;
        let truncated = context_enc.len() > room;
        context_enc.truncate(room, 0, TruncationDirection::Right);
        let enc = self
            .inner
            .post_process(question_enc, Some(context_enc), true)
            .map_err(|e| Error::Encoding(e.to_string()))?;
        // Post-processors do not keep sequence ids reliably: the first `question_len` ordinary
        // tokens are the question's, the rest the context's.
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
        Ok(Encoded {
            question: question.to_string(),
            context: context.to_string(),
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            tokens: enc.get_tokens().to_vec(),
            offsets: enc.get_offsets().to_vec(),
            segments,
            truncated,
            requested: None,
        })
    }

    fn encode_text(&self, text: &str, what: &'static str) -> Result<Encoding> {
        if text.trim().is_empty() {
            return Err(Error::EmptyInput(what));
        }
        let enc = self
            .inner
            .encode_char_offsets(text, false)
            .map_err(|e| Error::Encoding(e.to_string()))?;
        if enc.is_empty() {
            return Err(Error::EmptyInput(what));
        }
        Ok(enc)
    }
}
