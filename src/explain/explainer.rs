//! The text front of the engine: a checkpoint's tokenizer and model, pairs in, explanations out.

use std::path::Path;

use candle_core::Device;

use super::engine::Engine;
use super::explanation::Explanation;
use super::options::{ExplainOptions, Precision, QaPair, DEFAULT_MAX_LENGTH};
use crate::error::{Error, Result};
use crate::model::QaModel;
use crate::text::{Encoded, QaTokenizer, Segment};

pub struct Explainer {
    engine: Engine,
    tokenizer: QaTokenizer,
    max_length: usize,
    max_input_bytes: usize,
}

impl Explainer {
    /// Loads the model and tokenizer of a local checkpoint directory.
    pub fn from_dir(dir: &Path, options: ExplainOptions, device: &Device) -> Result<Self> {
        options.validate()?;
        if !dir.is_dir() {
            return Err(Error::MissingFile {
                what: "model directory",
                path: dir.to_path_buf(),
            });
        }
        let precision = options
            .precision
            .unwrap_or_else(|| Precision::default_for(device));
        let model = QaModel::load(dir, device, precision.dtype())?;
        let tokenizer = QaTokenizer::load(dir)?;
        Self::new(model, tokenizer, options)
    }

    pub fn new(model: QaModel, tokenizer: QaTokenizer, options: ExplainOptions) -> Result<Self> {
        let rows = model.word_embeddings().dim(0)?;
        if tokenizer.vocab_size() != rows {
            return Err(Error::VocabMismatch {
                tokenizer: tokenizer.vocab_size(),
                embeddings: rows,
            });
        }
        let positions = model.config().max_position_embeddings;
        let max_length = match options.max_length {
            None => DEFAULT_MAX_LENGTH.min(positions),
            Some(n) if n > positions => {
                return Err(Error::InvalidOption(format!(
                    "--max-length {n} exceeds the model's {positions} position embeddings"
                )))
            }
            Some(n) => n,
        };
        let pad_id = tokenizer.pad_id();
        let max_input_bytes = options.max_input_bytes;
        Ok(Self {
            engine: Engine::new(model, options, pad_id)?.with_mask_id(tokenizer.mask_id()),
            tokenizer,
            max_length,
            max_input_bytes,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The effective maximum length in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn encode(&self, pair: &QaPair) -> Result<Encoded> {
        let bytes = pair.question.len() + pair.context.len();
        if bytes > self.max_input_bytes {
            return Err(Error::InputTooLarge {
                bytes,
                limit: self.max_input_bytes,
            });
        }
        let mut encoded = self
            .tokenizer
            .encode(&pair.question, &pair.context, self.max_length)?;
        if let Some(answer) = &pair.answer {
            encoded.requested = Some(requested_tokens(&encoded, answer, pair.answer_start)?);
        }
        Ok(encoded)
    }

    pub fn explain_one(&self, pair: &QaPair) -> Result<Explanation> {
        self.explain(std::slice::from_ref(pair))
            .map(|mut v| v.remove(0))
    }

    /// Explains all pairs, failing on the first pair that cannot be explained;
    /// [`Explainer::explain_each`] reports errors per pair instead.
    pub fn explain(&self, pairs: &[QaPair]) -> Result<Vec<Explanation>> {
        self.explain_each(pairs)?.into_iter().collect()
    }

    /// Explains all pairs (in passes as the options say), each with its own result: a pair
    /// that cannot be encoded or explained fails alone. The outer error is a failure of the
    /// whole computation (the device, the model).
    pub fn explain_each(&self, pairs: &[QaPair]) -> Result<Vec<Result<Explanation>>> {
        let encoded: Vec<Result<Encoded>> = pairs.iter().map(|p| self.encode(p)).collect();
        let valid: Vec<Encoded> = encoded
            .iter()
            .filter_map(|e| e.as_ref().ok().cloned())
            .collect();
        let mut explained = self.engine.explain(&valid)?.into_iter();
        Ok(encoded
            .into_iter()
            .zip(pairs)
            .map(|(enc, pair)| {
                let explanation =
                    enc.and_then(|_| explained.next().expect("one result per encoded pair"))?;
                Ok(Explanation {
                    id: pair.id.clone(),
                    ..explanation
                })
            })
            .collect())
    }
}

/// The first and last context token of `answer` in `enc`'s context: at character
/// `answer_start` when given, else its first occurrence.
fn requested_tokens(
    enc: &Encoded,
    answer: &str,
    answer_start: Option<usize>,
) -> Result<(usize, usize)> {
    let bad = |why: String| Err(Error::Answer(why));
    if answer.trim().is_empty() {
        return bad("the answer is empty".into());
    }
    let chars: Vec<char> = enc.context.chars().collect();
    let needle: Vec<char> = answer.chars().collect();
    let matches_at = |a: usize| chars.get(a..a + needle.len()) == Some(&needle[..]);
    let start = match answer_start {
        Some(a) if matches_at(a) => a,
        Some(a) => {
            return bad(format!(
                "the context does not read {answer:?} at character {a}"
            ))
        }
        None => match (0..chars.len()).find(|&a| matches_at(a)) {
            Some(a) => a,
            None => return bad(format!("{answer:?} is not in the context")),
        },
    };
    let end = start + needle.len();
    let covered: Vec<usize> = (0..enc.len())
        .filter(|&i| enc.segments[i] == Segment::Context)
        .filter(|&i| enc.offsets[i].1 > start && enc.offsets[i].0 < end)
        .collect();
    match (covered.first(), covered.last()) {
        (Some(&s), Some(&e)) if enc.offsets[e].1 >= end => Ok((s, e)),
        _ => bad(format!(
            "{answer:?} (characters {start}..{end}) lies past the tokens that fit --max-length"
        )),
    }
}
