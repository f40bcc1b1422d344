//! Loads a checkpoint's tokenizer: `tokenizer.json` (WordPiece, byte-level BPE, Unigram), else
//! one rebuilt as transformers' converters build it: RoBERTa's byte-level BPE from `vocab.json`
//! and `merges.txt`, BERT's WordPiece from `vocab.txt`, each with `tokenizer_config.json`. A
//! SentencePiece `.model` alone is refused with the command that converts it. Padding and
//! truncation baked into a `tokenizer.json` are turned off: spangrad decides lengths.

use std::path::Path;

use serde_json::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};
use crate::files::present;

/// Cheap to clone: explainers under different options share one tokenizer.
#[derive(Clone)]
pub struct QaTokenizer {
    pub(super) inner: std::sync::Arc<Tokenizer>,
    /// The same without its post-processor: each text's tokens before the pair template. A
    /// post-processor runs even on a single text encoded without special tokens, and byte-level
    /// BPE's trims offsets there; trimmed again in the template, the offsets lost a character.
    pub(super) pieces: std::sync::Arc<Tokenizer>,
    pad_id: u32,
    mask_id: Option<u32>,
    pub(super) words: WordMarker,
}

/// How the tokenizer marks where a word begins: the word view joins a token to the word before
/// it when the token does not begin one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WordMarker {
    /// WordPiece: a continuing piece carries the prefix (`##`).
    Continuation(String),
    /// Byte-level BPE (`Ġ`, a space before the word) and SentencePiece's Metaspace (`▁`): a
    /// piece that begins a word carries the marker.
    Start(String),
}

impl WordMarker {
    /// Whether a token (as the tokenizer writes it) begins a word.
    pub fn begins_word(&self, token: &str) -> bool {
        match self {
            Self::Continuation(prefix) => !token.starts_with(prefix.as_str()),
            Self::Start(marker) => token.starts_with(marker.as_str()),
        }
    }

    /// The marker of a tokenizer, read from its pre-tokenizer (a `ByteLevel` or `Metaspace`
    /// anywhere in it) or its WordPiece model's prefix; `##` when it has neither.
    fn of(tokenizer: &Tokenizer) -> Self {
        fn find(value: &Value) -> Option<WordMarker> {
            match value {
                Value::Object(map) => match map.get("type").and_then(Value::as_str) {
                    Some("ByteLevel") => Some(WordMarker::Start("Ġ".into())),
                    Some("Metaspace") => Some(WordMarker::Start(
                        map.get("replacement")
                            .and_then(Value::as_str)
                            .unwrap_or("▁")
                            .into(),
                    )),
                    _ => map.values().find_map(find),
                },
                Value::Array(items) => items.iter().find_map(find),
                _ => None,
            }
        }
        let pre = tokenizer
            .get_pre_tokenizer()
            .and_then(|p| serde_json::to_value(p).ok());
        let model = serde_json::to_value(tokenizer.get_model()).ok();
        let prefix = model
            .as_ref()
            .filter(|m| m.get("type").and_then(Value::as_str) == Some("WordPiece"))
            .and_then(|m| {
                m.get("continuing_subword_prefix")?
                    .as_str()
                    .map(String::from)
            });
        pre.as_ref()
            .and_then(find)
            .unwrap_or_else(|| Self::Continuation(prefix.unwrap_or_else(|| "##".into())))
    }
}

/// The subset of `tokenizer_config.json` that a rebuilt tokenizer needs.
struct TokenizerConfig {
    lowercase: bool,
    strip_accents: Option<bool>,
    chinese_chars: bool,
    add_prefix_space: bool,
    /// The names it gives the special tokens, where it gives them.
    json: Value,
}

/// The special tokens of a pair template, by their role.
struct Specials {
    cls: String,
    sep: String,
    unk: String,
    pad: String,
    mask: String,
}

impl Specials {
    const BERT: [&'static str; 5] = ["[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"];
    const ROBERTA: [&'static str; 5] = ["<s>", "</s>", "<unk>", "<pad>", "<mask>"];

    fn all(&self) -> [&String; 5] {
        [&self.cls, &self.sep, &self.unk, &self.pad, &self.mask]
    }
}

impl TokenizerConfig {
    fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer_config.json");
        let json = if present(&path)? {
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
        Ok(Self {
            lowercase: flag("do_lower_case").unwrap_or(true),
            strip_accents: flag("strip_accents"),
            chinese_chars: flag("tokenize_chinese_chars").unwrap_or(true),
            add_prefix_space: flag("add_prefix_space").unwrap_or(false),
            json,
        })
    }

    /// The special tokens it names, the family's defaults (`[CLS]`... or `<s>`...) elsewhere.
    fn specials(&self, defaults: [&str; 5]) -> Specials {
        let token = |key: &str, default: &str| {
            self.json
                .get(key)
                .and_then(|v| {
                    v.as_str()
                        .or_else(|| v.get("content").and_then(Value::as_str))
                })
                .unwrap_or(default)
                .to_string()
        };
        let [cls, sep, unk, pad, mask] = defaults;
        Specials {
            cls: token("cls_token", cls),
            sep: token("sep_token", sep),
            unk: token("unk_token", unk),
            pad: token("pad_token", pad),
            mask: token("mask_token", mask),
        }
    }
}

/// SentencePiece model files that transformers' slow tokenizers read (ALBERT, XLM-R, CamemBERT,
/// DeBERTa-v3...).
const SENTENCEPIECE_FILES: [&str; 4] = [
    "spiece.model",
    "sentencepiece.bpe.model",
    "spm.model",
    "tokenizer.model",
];

impl QaTokenizer {
    pub fn load(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let (bpe_vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        let (mut inner, config) = if present(&json)? {
            let tokenizer = Tokenizer::from_file(&json).map_err(|e| Error::Tokenizer {
                path: json.clone(),
                message: e.to_string(),
            })?;
            // Beside a tokenizer.json the config only names the padding and mask tokens, which
            // the tokenizer usually knows too: a broken config is no reason to refuse the model.
            (tokenizer, TokenizerConfig::read(dir).ok())
        } else if present(&bpe_vocab)? && present(&merges)? {
            let config = TokenizerConfig::read(dir)?;
            (byte_level_bpe(&bpe_vocab, &merges, &config)?, Some(config))
        } else if present(&vocab)? {
            let config = TokenizerConfig::read(dir)?;
            (word_piece(&vocab, &config)?, Some(config))
        } else if let Some(model) = SENTENCEPIECE_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
        {
            return Err(Error::Tokenizer {
                path: model,
                message: format!(
                    "spangrad reads tokenizer.json, not SentencePiece models; write one beside \
                     it with transformers (and the sentencepiece package): python -c \"from \
                     transformers import AutoTokenizer; \
                     AutoTokenizer.from_pretrained('{dir}').save_pretrained('{dir}')\"",
                    dir = dir.display()
                ),
            });
        } else {
            return Err(Error::MissingFile {
                what: "tokenizer (tokenizer.json, vocab.json + merges.txt, or vocab.txt)",
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
                message: "no post-processor: cannot add the special tokens around a \
                          question-context pair"
                    .into(),
            });
        }
        // The config's names first, then either family's.
        let named = config.map(|c| c.specials(Specials::BERT));
        let id = |named: Option<&String>, defaults: [&str; 2]| {
            named
                .map(String::as_str)
                .into_iter()
                .chain(defaults)
                .find_map(|t| inner.token_to_id(t))
        };
        let pad_id = baked_pad
            .or_else(|| id(named.as_ref().map(|s| &s.pad), ["[PAD]", "<pad>"]))
            .unwrap_or(0);
        let mask_id = id(named.as_ref().map(|s| &s.mask), ["[MASK]", "<mask>"]);
        let words = WordMarker::of(&inner);
        Ok(Self {
            pieces: without_post_processor(&inner),
            inner: inner.into(),
            pad_id,
            mask_id,
            words,
        })
    }

    /// Number of ids the tokenizer can produce, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The mask token's id (`[MASK]`, `<mask>`), if the vocabulary has one.
    pub fn mask_id(&self) -> Option<u32> {
        self.mask_id
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
            add_prefix_space: false,
            json: Value::Null,
        };
        let inner = bert_pipeline(model, &config, &fail)?;
        Ok(Self {
            pieces: without_post_processor(&inner),
            inner: inner.into(),
            pad_id: 0,
            mask_id: Some(4),
            words: WordMarker::Continuation("##".into()),
        })
    }
}

fn without_post_processor(tokenizer: &Tokenizer) -> std::sync::Arc<Tokenizer> {
    let mut pieces = tokenizer.clone();
    pieces.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
    pieces.into()
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
        .unk_token(config.specials(Specials::BERT).unk)
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
    let specials = config.specials(Specials::BERT);
    let id = |t: &str| {
        model_id(&model, t)
            .ok_or_else(|| fail(format!("special token {t} is not in the vocabulary")))
    };
    let (cls, sep) = (&specials.cls, &specials.sep);
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
    add_specials(&mut tokenizer, &specials);
    Ok(tokenizer)
}

/// RoBERTa's tokenizer as transformers' `RobertaConverter` builds it from `vocab.json` and
/// `merges.txt`: byte-level BPE, `<s> a </s></s> b </s>` with offsets trimmed of spaces.
fn byte_level_bpe(vocab: &Path, merges: &Path, config: &TokenizerConfig) -> Result<Tokenizer> {
    let fail = |message: String| Error::Tokenizer {
        path: vocab.to_path_buf(),
        message,
    };
    let utf8 = |p: &Path| {
        p.to_str()
            .map(String::from)
            .ok_or_else(|| fail(format!("{} is not UTF-8", p.display())))
    };
    let model = BPE::from_file(&utf8(vocab)?, &utf8(merges)?)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let specials = config.specials(Specials::ROBERTA);
    let id = |t: &str| {
        use tokenizers::Model;
        model
            .token_to_id(t)
            .ok_or_else(|| fail(format!("special token {t} is not in vocab.json")))
    };
    let processor = RobertaProcessing::new(
        (specials.sep.clone(), id(&specials.sep)?),
        (specials.cls.clone(), id(&specials.cls)?),
    )
    .trim_offsets(true)
    .add_prefix_space(config.add_prefix_space);
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_pre_tokenizer(Some(
            ByteLevel::default().add_prefix_space(config.add_prefix_space),
        ))
        .with_decoder(Some(ByteLevelDecoder::default()))
        .with_post_processor(Some(processor));
    add_specials(&mut tokenizer, &specials);
    Ok(tokenizer)
}

/// The special tokens as added tokens, so text never splits them; the mask token takes the
/// space before it, as transformers adds it (`lstrip`).
/// Only tokens of the vocabulary are added: a new id would not match the embeddings.
fn add_specials(tokenizer: &mut Tokenizer, specials: &Specials) {
    use tokenizers::Model;
    let added: Vec<AddedToken> = specials
        .all()
        .iter()
        .filter(|t| tokenizer.get_model().token_to_id(t).is_some())
        .map(|t| AddedToken::from(t.to_string(), true).lstrip(*t == &specials.mask))
        .collect();
    tokenizer.add_special_tokens(&added);
}

fn model_id(model: &WordPiece, token: &str) -> Option<u32> {
    use tokenizers::Model;
    model.token_to_id(token)
}
