//! Loads a checkpoint's tokenizer: `tokenizer.json`, or a BERT WordPiece tokenizer rebuilt from
//! `vocab.txt` and `tokenizer_config.json`. Padding and truncation baked into a `tokenizer.json`
//! are turned off: spangrad decides lengths.

use std::path::Path;

use serde_json::Value;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// Cheap to clone: explainers under different options share one tokenizer.
#[derive(Clone)]
pub struct QaTokenizer {
    pub(super) inner: std::sync::Arc<Tokenizer>,
    pad_id: u32,
}

/// The subset of `tokenizer_config.json` that a vocab-only tokenizer needs.
struct TokenizerConfig {
    lowercase: bool,
    strip_accents: Option<bool>,
    chinese_chars: bool,
    special: [String; 4],
}

impl TokenizerConfig {
    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        let json = if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            serde_json::from_str(&text).map_err(|e| Error::Tokenizer {
                path: path.clone(),
                message: e.to_string(),
            })?
        } else {
            Value::Null
        };
        let flag = |key: &str| json.get(key).and_then(Value::as_bool);
        let token = |key: &str, default: &str| {
            json.get(key)
                .and_then(|v| {
                    v.as_str()
                        .or_else(|| v.get("content").and_then(Value::as_str))
                })
                .unwrap_or(default)
                .to_string()
        };
        Ok(Self {
            lowercase: flag("do_lower_case").unwrap_or(true),
            strip_accents: flag("strip_accents"),
            chinese_chars: flag("tokenize_chinese_chars").unwrap_or(true),
            special: [
                token("cls_token", "[CLS]"),
                token("sep_token", "[SEP]"),
                token("unk_token", "[UNK]"),
                token("pad_token", "[PAD]"),
            ],
        })
    }
}

impl QaTokenizer {
    pub fn load(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let (mut inner, config) = if json.is_file() {
            let tokenizer = Tokenizer::from_file(&json).map_err(|e| Error::Tokenizer {
                path: json.clone(),
                message: e.to_string(),
            })?;
            // Beside a tokenizer.json the config only names the padding token, which the
            // tokenizer usually names too: a broken config is no reason to refuse the model.
            (tokenizer, TokenizerConfig::read(dir).ok())
        } else if vocab.is_file() {
            let config = TokenizerConfig::read(dir)?;
            (word_piece(&vocab, &config)?, Some(config))
        } else {
            return Err(Error::MissingFile {
                what: "tokenizer (tokenizer.json or vocab.txt)",
                path: json,
            });
        };
        let baked_pad = inner.get_padding().map(|p| p.pad_id);
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| Error::Tokenizer {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        if inner.get_post_processor().is_none() {
            return Err(Error::Tokenizer {
                path: dir.to_path_buf(),
                message: "no post-processor: cannot add [CLS]/[SEP] around a question-context pair"
                    .into(),
            });
        }
        let pad_token = config.map_or_else(|| "[PAD]".to_string(), |c| c.special[3].clone());
        let pad_id = baked_pad
            .or_else(|| inner.token_to_id(&pad_token))
            .unwrap_or(0);
        Ok(Self {
            inner: inner.into(),
            pad_id,
        })
    }

    /// Number of ids the tokenizer can produce, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The `[MASK]` token's id, if the vocabulary has one.
    pub fn mask_id(&self) -> Option<u32> {
        self.inner.token_to_id("[MASK]")
    }
}

impl QaTokenizer {
    /// A BERT tokenizer over `vocab_size` made-up words, for random-weight benchmark models:
    /// `[PAD] [UNK] [CLS] [SEP] [MASK]`, then `w5`, `w6`, ... (so `w123` is token 123 and any
    /// text of such words has one token per word).
    pub fn synthetic(vocab_size: usize) -> Result<Self> {
        const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
        let fail = |message: String| Error::Tokenizer {
            path: "<synthetic>".into(),
            message,
        };
        if vocab_size <= SPECIAL.len() {
            return Err(fail(format!("a vocabulary of {vocab_size} has no words")));
        }
        let vocab: ahash::AHashMap<String, u32> = (0..vocab_size)
            .map(|i| {
                let word = SPECIAL
                    .get(i)
                    .map_or_else(|| format!("w{i}"), |s| s.to_string());
                (word, i as u32)
            })
            .collect();
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let config = TokenizerConfig {
            lowercase: true,
            strip_accents: None,
            chinese_chars: true,
            special: ["[CLS]", "[SEP]", "[UNK]", "[PAD]"].map(String::from),
        };
        Ok(Self {
            inner: bert_pipeline(model, &config, &fail)?.into(),
            pad_id: 0,
        })
    }
}

fn word_piece(vocab: &Path, config: &TokenizerConfig) -> Result<Tokenizer> {
    let fail = |message: String| Error::Tokenizer {
        path: vocab.to_path_buf(),
        message,
    };
    let path = vocab
        .to_str()
        .ok_or_else(|| fail("path is not UTF-8".into()))?;
    let model = WordPiece::from_file(path)
        .unk_token(config.special[2].clone())
        .build()
        .map_err(|e| fail(e.to_string()))?;
    bert_pipeline(model, config, &fail)
}

/// BERT's normaliser, pre-tokenizer and `[CLS] a [SEP] b [SEP]` around a WordPiece model.
fn bert_pipeline(
    model: WordPiece,
    config: &TokenizerConfig,
    fail: &dyn Fn(String) -> Error,
) -> Result<Tokenizer> {
    let [cls, sep, unk, pad] = &config.special;
    let id = |t: &str| {
        model_id(&model, t)
            .ok_or_else(|| fail(format!("special token {t} is not in the vocabulary")))
    };
    let processor = BertProcessing::new((sep.clone(), id(sep)?), (cls.clone(), id(cls)?));
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(
            true,
            config.chinese_chars,
            config.strip_accents,
            config.lowercase,
        )))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(processor));
    let specials: Vec<AddedToken> = [cls, sep, unk, pad]
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}

fn model_id(model: &WordPiece, token: &str) -> Option<u32> {
    use tokenizers::Model;
    model.token_to_id(token)
}
