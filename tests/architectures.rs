//! What the architectures beyond BERT bring to loading: RoBERTa's tokenizer rebuilt from
//! `vocab.json` + `merges.txt`, sharded weights, weight names without the architecture's
//! prefix, RoBERTa's position limit; each against the fixture that transformers wrote.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use common::*;
use spangrad::{ExplainOptions, Explainer, QaPair};

/// Tokens, offsets and logits of every fixture pair through `dir` equal transformers' for the
/// fixture model `arch`.
fn assert_same_model(arch: &str, dir: &Path) {
    let expected = expected(arch);
    let options = ExplainOptions {
        doc_stride: Some(0),
        ..ExplainOptions::default()
    };
    let explainer = Explainer::from_dir(dir, options, &Device::Cpu).unwrap();
    for (p, e) in expected
        .pairs
        .iter()
        .zip(explainer.explain(&pairs(&expected)).unwrap())
    {
        let tokens: Vec<&str> = e.tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(tokens, p.tokens, "{arch} {}", dir.display());
        let offsets: Vec<(usize, usize)> = e
            .tokens
            .iter()
            .map(|t| (t.char_start, t.char_end))
            .collect();
        assert_eq!(offsets, p.offsets, "{arch}");
        let starts: Vec<f32> = e.tokens.iter().map(|t| t.start_logit).collect();
        let ends: Vec<f32> = e.tokens.iter().map(|t| t.end_logit).collect();
        assert!(max_abs_diff(&starts, &p.start_logits) < 1e-5, "{arch}");
        assert!(max_abs_diff(&ends, &p.end_logits) < 1e-5, "{arch}");
    }
}

/// deepset/roberta-base-squad2's layout: `vocab.json` + `merges.txt` and no tokenizer.json,
/// weights in safetensors shards behind an index.
#[test]
fn roberta_from_vocab_json_merges_and_shards() {
    let dir = fixture("roberta-tiny-bpe");
    assert!(!dir.join("tokenizer.json").exists() && !dir.join("model.safetensors").exists());
    assert!(dir.join("model.safetensors.index.json").is_file());
    assert_same_model("roberta", &dir);
}

/// A copy of a fixture whose weights are renamed by `rename` (dropped where it gives `None`).
fn renamed(name: &str, rename: impl Fn(&str) -> Option<String>) -> tempfile::TempDir {
    let tmp = copy_fixture(name);
    let path = tmp.path().join("model.safetensors");
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .filter_map(|(k, t)| rename(&k).map(|k| (k, t)))
        .collect();
    candle_core::safetensors::save(&tensors, &path).unwrap();
    tmp
}

#[test]
fn weight_names_without_the_architecture_prefix() {
    for (arch, dir, prefix) in [
        ("roberta", "roberta-tiny", "roberta."),
        ("electra", "electra-tiny", "electra."),
        ("albert", "albert-tiny", "albert."),
    ] {
        let bare = renamed(dir, |k| {
            Some(k.strip_prefix(prefix).unwrap_or(k).to_string())
        });
        assert_same_model(arch, bare.path());
    }
}

/// A missing shared block or projection is named in the error.
#[test]
fn a_missing_albert_group_or_projection_is_named() {
    for missing in [
        "albert.encoder.albert_layer_groups.1.albert_layers.1.ffn.weight",
        "albert.encoder.embedding_hidden_mapping_in.weight",
    ] {
        let dir = renamed("albert-tiny", |k| (k != missing).then(|| k.to_string()));
        let options = ExplainOptions::default();
        let e = Explainer::from_dir(dir.path(), options, &Device::Cpu)
            .err()
            .expect("a weight is missing");
        assert!(e.to_string().contains(missing), "{e}");
    }
}

/// RoBERTa's positions start after the padding index: 130 position embeddings hold 128
/// tokens, which is where the default length is clamped, and a longer one is refused.
#[test]
fn roberta_positions_bound_the_length() {
    let dir = fixture("roberta-tiny");
    let cut = ExplainOptions {
        doc_stride: Some(0),
        ..ExplainOptions::default()
    };
    let explainer = Explainer::from_dir(&dir, cut, &Device::Cpu).unwrap();
    assert_eq!(explainer.max_length(), 128);
    let long = ExplainOptions {
        max_length: Some(129),
        ..ExplainOptions::default()
    };
    let e = Explainer::from_dir(&dir, long, &Device::Cpu).err().unwrap();
    assert!(e.to_string().contains("128 tokens"), "{e}");
    // A pair of exactly 128 tokens runs (position 129, the last row, is used).
    let context = "word ".repeat(400);
    let exact = explainer
        .explain_one(&QaPair::new("What?", context.trim()))
        .unwrap();
    assert!(exact.truncated);
    assert_eq!(exact.tokens.len(), 128);
    assert!(exact.tokens.iter().all(|t| t.start_logit.is_finite()));
}

/// The server prices a pair from its text before tokenising it: the bound never exceeds the
/// tokens the pair takes, in every tokenizer (WordPiece, byte-level BPE, Unigram), in one
/// window or split, and comes within a factor of 2 of them for a long English context.
#[test]
fn the_token_bound_from_the_text_never_exceeds_the_tokens() {
    let texts = [
        "Jane Austen wrote Pride and Prejudice in 1813.",
        "naïve café — “quoted”, don't; x=1+2 (ok?) 東京 ok",
        "   spaced\tout\n\nwords   ",
        "!!! ??? ... ---",
        "a",
    ];
    for arch in [
        "bert-tiny",
        "distilbert-tiny",
        "roberta-tiny",
        "xlm-roberta-tiny",
        "camembert-tiny",
        "electra-tiny",
        "albert-tiny",
    ] {
        for (max_length, stride) in [(128, 32), (32, 8), (16, 0)] {
            let options = ExplainOptions {
                max_length: Some(max_length),
                doc_stride: Some(stride),
                ..ExplainOptions::default()
            };
            let explainer = explainer(arch, options);
            for (i, question) in texts.iter().enumerate() {
                for repeat in [1, 7, 60] {
                    let context = texts[(i + 1) % texts.len()].repeat(repeat);
                    let pair = QaPair::new(*question, context);
                    let Ok(tokens) = explainer.tokens(&pair) else {
                        continue;
                    };
                    let least = explainer.min_tokens(&pair);
                    assert!(
                        least <= tokens,
                        "{arch} {max_length}/{stride}: {least} > {tokens}"
                    );
                }
            }
            let long = QaPair::new("Who wrote it?", texts[0].repeat(400));
            let (least, tokens) = (
                explainer.min_tokens(&long),
                explainer.tokens(&long).unwrap(),
            );
            assert!(least <= tokens, "{arch}: {least} > {tokens}");
            // BERT's fixtures carry a full WordPiece vocabulary; the others' tokenizers,
            // trained on a few sentences, cut words into many pieces.
            if ["bert-tiny", "distilbert-tiny"].contains(&arch) {
                assert!(2 * least > tokens, "{arch}: {least} of {tokens}");
            }
        }
    }
}
