//! Every kind of bad input gives an error that names the problem: no panic, no NaN.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use common::*;
use spangrad::{Error, ExplainOptions, Explainer, QaPair};

fn load(dir: &Path) -> Result<Explainer, Error> {
    Explainer::from_dir(dir, ExplainOptions::default(), &Device::Cpu)
}

fn load_err(dir: &Path) -> Error {
    match load(dir) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e,
    }
}

/// Rewrites the fixture's weights with `edit` applied to every tensor.
fn edit_weights(dir: &Path, edit: impl Fn(&str, Tensor) -> Tensor) {
    let path = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let edited: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            let t = edit(&name, t);
            (name, t)
        })
        .collect();
    candle_core::safetensors::save(&edited, &path).unwrap();
}

#[test]
fn missing_model_directory() {
    let e = load_err(Path::new("/nonexistent/model"));
    assert!(
        matches!(
            e,
            Error::MissingFile {
                what: "model directory",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("/nonexistent/model"));
}

#[test]
fn missing_config() {
    let dir = copy_fixture("bert-tiny");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let e = load_err(dir.path());
    assert!(e.to_string().contains("model config not found"), "{e}");
}

#[test]
fn corrupt_config() {
    let dir = copy_fixture("bert-tiny");
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Config { .. }), "{e}");
    assert!(e.to_string().contains("config.json"));
}

#[test]
fn unknown_architecture() {
    let dir = copy_fixture("bert-tiny");
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"bert\"", "\"gpt2\"")).unwrap();
    let e = load_err(dir.path());
    assert!(
        matches!(&e, Error::UnknownArchitecture { model_type, .. } if model_type == "gpt2"),
        "{e}"
    );
    for supported in [
        "bert",
        "distilbert",
        "roberta",
        "xlm-roberta",
        "electra",
        "albert",
    ] {
        assert!(e.to_string().contains(supported), "{e}");
    }
}

#[test]
fn missing_weights() {
    let dir = copy_fixture("distilbert-tiny");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = load_err(dir.path());
    assert!(e.to_string().contains("model weights"), "{e}");
}

#[test]
fn corrupt_weights() {
    let dir = copy_fixture("distilbert-tiny");
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00garbage",
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Weights { .. }), "{e}");
}

#[test]
fn weights_that_do_not_fit_the_config() {
    let dir = copy_fixture("bert-tiny");
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Weights { .. }), "{e}");
    assert!(
        e.to_string().contains("layer.2"),
        "the missing tensor is named: {e}"
    );
}

/// A vocabulary size in config.json that the embeddings do not have is reported against
/// config.json; an integer-typed parameter is refused, not converted.
#[test]
fn config_shape_disagreements_and_integer_weights_are_named() {
    let dir = copy_fixture("bert-tiny");
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"vocab_size\": 30522", "\"vocab_size\": 30000"),
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(e.to_string().contains("config.json"), "{e}");

    let dir = copy_fixture("bert-tiny");
    edit_weights(dir.path(), |name, t| {
        if name == "qa_outputs.bias" {
            (t * 1e9)
                .unwrap()
                .to_dtype(candle_core::DType::I64)
                .unwrap()
        } else {
            t
        }
    });
    let e = load_err(dir.path());
    assert!(
        e.to_string().contains("qa_outputs.bias is stored as I64"),
        "{e}"
    );
}

#[test]
fn missing_tokenizer() {
    let dir = copy_fixture("bert-tiny");
    for f in ["tokenizer.json", "vocab.txt"] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    let e = load_err(dir.path());
    assert!(
        e.to_string().contains(
            "tokenizer (tokenizer.json, vocab.json + merges.txt, or vocab.txt) not found"
        ),
        "{e}"
    );
}

/// A SentencePiece model alone (as ALBERT and XLM-R checkpoints once shipped) is refused with
/// the command that writes tokenizer.json.
#[test]
fn a_sentencepiece_model_alone_names_the_conversion() {
    let dir = copy_fixture("albert-tiny");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    std::fs::write(dir.path().join("spiece.model"), b"\x0a\x03abc").unwrap();
    let e = load_err(dir.path());
    let message = e.to_string();
    assert!(matches!(e, Error::Tokenizer { .. }), "{message}");
    assert!(message.contains("spiece.model"), "{message}");
    assert!(
        message.contains("AutoTokenizer.from_pretrained(")
            && message.contains(".save_pretrained(")
            && message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

/// A shard that the index names but that is not there, and an index that names none.
#[test]
fn broken_shard_indexes() {
    let dir = copy_fixture("roberta-tiny-bpe");
    let index = dir.path().join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let shard = json["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(dir.path().join(&shard)).unwrap();
    let e = load_err(dir.path());
    assert!(e.to_string().contains("weight shard not found"), "{e}");
    assert!(e.to_string().contains(&shard), "{e}");
    std::fs::write(
        &index,
        r#"{"weight_map": {"a": "../elsewhere.safetensors"}}"#,
    )
    .unwrap();
    let e = load_err(dir.path());
    assert!(
        e.to_string().contains("not a file name beside the index"),
        "{e}"
    );
}

#[test]
fn corrupt_tokenizer() {
    let dir = copy_fixture("bert-tiny");
    std::fs::write(dir.path().join("tokenizer.json"), "[1, 2").unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, Error::Tokenizer { .. }), "{e}");
}

#[test]
fn tokenizer_vocabulary_that_does_not_match_the_embeddings() {
    let dir = copy_fixture("bert-tiny-pt");
    let path = dir.path().join("vocab.txt");
    let vocab = std::fs::read_to_string(&path).unwrap();
    let fewer: Vec<&str> = vocab.lines().take(30_000).collect();
    std::fs::write(&path, fewer.join("\n")).unwrap();
    let e = load_err(dir.path());
    assert!(
        matches!(
            e,
            Error::VocabMismatch {
                tokenizer: 30_000,
                embeddings: 30_522
            }
        ),
        "{e}"
    );
}

#[test]
fn empty_question_or_context() {
    let explainer = explainer("bert-tiny", ExplainOptions::default());
    for (q, c, what) in [
        ("", "Some context.", "question"),
        ("Why?", " \n\t", "context"),
    ] {
        let e = explainer.explain_one(&QaPair::new(q, c)).unwrap_err();
        assert!(matches!(e, Error::EmptyInput(w) if w == what), "{e}");
    }
}

#[test]
fn a_question_that_leaves_no_room_for_the_context() {
    let options = ExplainOptions {
        max_length: Some(8),
        ..ExplainOptions::default()
    };
    let explainer = explainer("bert-tiny", options);
    let e = explainer
        .explain_one(&QaPair::new("who wrote this rather long question", "Bob."))
        .unwrap_err();
    assert!(
        matches!(e, Error::QuestionTooLong { max_length: 8, .. }),
        "{e}"
    );
    // One context token still fits: the context is truncated, not rejected.
    let ok = explainer
        .explain_one(&QaPair::new("who wrote it", "Jane Austen wrote it."))
        .unwrap();
    assert!(ok.truncated);
    assert_eq!(ok.tokens.len(), 8);
}

#[test]
fn max_length_beyond_the_position_embeddings() {
    let options = ExplainOptions {
        max_length: Some(201),
        ..ExplainOptions::default()
    };
    let e = Explainer::from_dir(&fixture("distilbert-tiny"), options, &Device::Cpu)
        .err()
        .unwrap();
    assert!(e.to_string().contains("the 200 tokens"), "{e}");
}

#[test]
fn zero_gradient_gives_zero_scores_and_a_warning() {
    // With a zero QA head the logits are constant and the gradient vanishes.
    let dir = copy_fixture("bert-tiny");
    edit_weights(dir.path(), |name, t| {
        if name == "qa_outputs.weight" {
            t.zeros_like().unwrap()
        } else {
            t
        }
    });
    let e = load(dir.path())
        .unwrap()
        .explain_one(&QaPair::new("Who?", "Jane Austen."))
        .unwrap();
    assert!(e.tokens.iter().all(|t| t.score == 0.0 && t.raw == 0.0));
    assert!(e.words.iter().all(|w| w.score == 0.0));
    assert!(
        e.warnings.iter().any(|w| w.contains("zero")),
        "{:?}",
        e.warnings
    );
}

#[test]
fn non_finite_weights_are_reported_not_returned() {
    let dir = copy_fixture("bert-tiny");
    edit_weights(dir.path(), |name, t| {
        if name == "qa_outputs.bias" {
            (t * f64::NAN).unwrap()
        } else {
            t
        }
    });
    let e = load(dir.path())
        .unwrap()
        .explain_one(&QaPair::new("Who?", "Jane Austen."))
        .unwrap_err();
    assert!(matches!(e, Error::NonFinite(_)), "{e}");
}

/// A NaN in one position embedding poisons only the pairs long enough to use it: they fail
/// alone, the shorter pairs in the same pass are explained as without it.
#[test]
fn a_pair_with_non_finite_logits_fails_alone() {
    let dir = copy_fixture("bert-tiny");
    let short = QaPair::new("Who?", "Jane Austen.");
    let long = QaPair::new(
        "Who wrote the novel?",
        "The novel was written by Jane Austen in 1813 and published in London by Egerton.",
    );
    let clean = load(dir.path())
        .unwrap()
        .explain(std::slice::from_ref(&short))
        .unwrap();
    edit_weights(dir.path(), |name, t| {
        if name.ends_with("position_embeddings.weight") {
            let rows = t.dim(0).unwrap();
            let mut mask = vec![1f32; rows];
            mask[12] = f32::NAN;
            let mask = Tensor::from_vec(mask, (rows, 1), &Device::Cpu).unwrap();
            t.broadcast_mul(&mask).unwrap()
        } else {
            t
        }
    });
    let explainer = load(dir.path()).unwrap();
    assert!(explainer.encode(&short).unwrap().len() <= 12);
    assert!(explainer.encode(&long).unwrap().len() > 12);
    let results = explainer.explain_each(&[long, short]).unwrap();
    assert!(
        matches!(results[0], Err(Error::NonFinite(_))),
        "{:?}",
        results[0].as_ref().err()
    );
    let short_result = results[1].as_ref().unwrap();
    assert!(max_abs_diff(&scores(short_result), &scores(&clean[0])) < 1e-5);
}

/// A pair over the byte limit fails before tokenisation; the others in the batch do not.
#[test]
fn oversized_inputs_fail_alone_before_tokenisation() {
    let options = ExplainOptions {
        max_input_bytes: 4096,
        ..ExplainOptions::default()
    };
    let explainer = explainer("bert-tiny", options);
    let huge = QaPair::new("Who?", "word ".repeat(10_000_000 / 5));
    let fine = QaPair::new("Who wrote it?", "Jane Austen wrote it.");
    let results = explainer.explain_each(&[huge, fine]).unwrap();
    assert!(
        matches!(
            results[0],
            Err(Error::InputTooLarge {
                bytes: 10_000_004,
                limit: 4096,
                ..
            })
        ),
        "{:?}",
        results[0].as_ref().err()
    );
    assert!(results[1].is_ok());
}

/// Beside a tokenizer.json, a corrupt tokenizer_config.json is ignored (it only names the pad
/// token); a vocab.txt-only tokenizer needs it, and names it in the error.
#[test]
fn a_corrupt_tokenizer_config_blocks_only_the_tokenizer_that_needs_it() {
    for (fixture_dir, loads) in [("bert-tiny", true), ("bert-tiny-pt", false)] {
        let dir = copy_fixture(fixture_dir);
        std::fs::write(dir.path().join("tokenizer_config.json"), "{not json").unwrap();
        match load(dir.path()) {
            Ok(explainer) => {
                assert!(loads, "{fixture_dir}");
                explainer
                    .explain_one(&QaPair::new("Who?", "Jane Austen."))
                    .unwrap();
            }
            Err(e) => {
                assert!(!loads, "{fixture_dir}: {e}");
                assert!(e.to_string().contains("tokenizer_config.json"), "{e}");
            }
        }
    }
}

#[test]
fn zero_sized_options_are_rejected() {
    for options in [
        ExplainOptions {
            max_batch_tokens: spangrad::BatchTokens::Fixed(0),
            ..ExplainOptions::default()
        },
        ExplainOptions {
            max_answer_len: 0,
            ..ExplainOptions::default()
        },
        ExplainOptions {
            max_length: Some(4),
            ..ExplainOptions::default()
        },
        ExplainOptions {
            memory_limit_mib: Some(0.0),
            ..ExplainOptions::default()
        },
    ] {
        let e = Explainer::from_dir(&fixture("bert-tiny"), options, &Device::Cpu)
            .err()
            .unwrap();
        assert!(matches!(e, Error::InvalidOption(_)), "{e}");
    }
}

/// `load_err` with a deadline: a load that blocks (a FIFO read) fails the test instead of
/// hanging it.
fn load_err_within(dir: &Path, seconds: u64) -> Error {
    let (send, receive) = std::sync::mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = send.send(load(&dir).err());
    });
    receive
        .recv_timeout(std::time::Duration::from_secs(seconds))
        .expect("the load returned")
        .expect("the load failed")
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
}

/// A model file that is a FIFO (whose read would block forever), or a tokenizer.json that is a
/// FIFO or a symlink loop (which would fall back to vocab.txt), is an error naming it.
#[test]
fn checkpoint_files_that_are_not_regular_files() {
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        let dir = copy_fixture("bert-tiny");
        let path = dir.path().join(name);
        std::fs::remove_file(&path).unwrap();
        mkfifo(&path);
        let e = load_err_within(dir.path(), 20);
        assert!(
            matches!(&e, Error::NotAFile(p) if p == &path),
            "{name}: {e}"
        );
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
    let dir = copy_fixture("bert-tiny");
    let path = dir.path().join("tokenizer.json");
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&path, &path).unwrap();
    let e = load_err_within(dir.path(), 20);
    assert!(matches!(&e, Error::Io { path: p, .. } if p == &path), "{e}");
}
