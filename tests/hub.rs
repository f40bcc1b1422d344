//! Model names resolved through a prepared Hugging Face Hub cache (no network here).

mod common;

use std::path::PathBuf;

use common::*;
use spangrad::hub::HubCache;
use spangrad::{Error, ExplainOptions, Explainer, QaPair};

#[test]
fn a_cached_repository_resolves_to_its_snapshot_offline() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = prepare_cache(cache.path(), "spangrad/tiny-distilbert", "distilbert-tiny");
    let hub = HubCache {
        dir: cache.path().to_path_buf(),
        offline: true,
        ..HubCache::from_env()
    };
    let dir = hub.resolve("spangrad/tiny-distilbert").unwrap();
    assert_eq!(dir, snapshot);
    let explainer =
        Explainer::from_dir(&dir, ExplainOptions::default(), &candle_core::Device::Cpu).unwrap();
    let e = explainer
        .explain_one(&QaPair::new("Name?", "Bob."))
        .unwrap();
    assert_eq!(
        e.answer.text,
        expected("distilbert").pairs[4].pipeline.answer
    );
}

/// deepset/roberta-base-squad2's layout in the cache: vocab.json + merges.txt, sharded
/// safetensors behind an index. A snapshot missing a shard is not taken as cached.
#[test]
fn a_cached_roberta_with_shards_and_bpe_files_resolves() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = prepare_cache(
        cache.path(),
        "deepset/roberta-tiny-squad2",
        "roberta-tiny-bpe",
    );
    let hub = HubCache {
        dir: cache.path().to_path_buf(),
        offline: true,
        ..HubCache::from_env()
    };
    let dir = hub.resolve("deepset/roberta-tiny-squad2").unwrap();
    assert_eq!(dir, snapshot);
    let explainer =
        Explainer::from_dir(&dir, ExplainOptions::default(), &candle_core::Device::Cpu).unwrap();
    let p = &expected("roberta").pairs[0];
    let e = explainer
        .explain_one(&QaPair::new(&p.question, &p.context))
        .unwrap();
    assert_eq!(e.answer.text, p.pipeline.answer);

    let shard = std::fs::read_dir(&snapshot)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-of-00002.safetensors"))
        .expect("a shard");
    std::fs::remove_file(shard).unwrap();
    let e = hub.resolve("deepset/roberta-tiny-squad2").unwrap_err();
    assert!(matches!(e, Error::Hub { .. }), "{e}");
}

#[test]
fn an_uncached_repository_offline_says_to_pass_a_directory() {
    let cache = tempfile::tempdir().unwrap();
    let hub = HubCache {
        dir: cache.path().to_path_buf(),
        offline: true,
        ..HubCache::from_env()
    };
    let e = hub
        .resolve("distilbert-base-cased-distilled-squad")
        .unwrap_err();
    assert!(matches!(e, Error::Hub { .. }), "{e}");
    assert!(
        e.to_string().contains("pass a local model directory"),
        "{e}"
    );
}

#[test]
fn an_incomplete_cache_entry_is_not_used() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = prepare_cache(cache.path(), "org/partial", "bert-tiny");
    std::fs::remove_file(snapshot.join("model.safetensors")).unwrap();
    let hub = HubCache {
        dir: cache.path().to_path_buf(),
        offline: true,
        ..HubCache::from_env()
    };
    assert!(matches!(hub.resolve("org/partial"), Err(Error::Hub { .. })));
}

#[test]
fn a_path_that_does_not_exist_is_not_sent_to_the_hub() {
    let hub = HubCache {
        dir: PathBuf::from("/nonexistent"),
        offline: false,
        ..HubCache::from_env()
    };
    let e = hub.resolve("./no/such/model").unwrap_err();
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
}

/// A hub that accepts the connection and never answers fails the resolution within the
/// timeout, naming the endpoint (HF_ENDPOINT), instead of hanging.
#[test]
fn a_hub_that_never_answers_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let hub = HubCache {
        dir: cache.path().to_path_buf(),
        offline: false,
        endpoint: format!("http://{address}"),
        timeout: std::time::Duration::from_secs(2),
    };
    let start = std::time::Instant::now();
    let e = hub.resolve("spangrad/never-answers").unwrap_err();
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
    assert!(matches!(e, Error::Hub { .. }), "{e}");
    assert!(e.to_string().contains(&address.to_string()), "{e}");
    assert!(e.to_string().contains("did not answer within 2 s"), "{e}");
}

/// A host that does not resolve, or a port where nothing listens, is said to be that, at once:
/// not a timeout.
#[test]
fn an_unreachable_hub_says_why() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    for (endpoint, why) in [
        (
            "http://no-such-host.invalid".to_string(),
            "cannot resolve the hub's host",
        ),
        (format!("http://{closed}"), "cannot connect to the hub"),
    ] {
        let hub = HubCache {
            dir: cache.path().to_path_buf(),
            offline: false,
            endpoint,
            timeout: std::time::Duration::from_secs(30),
        };
        let start = std::time::Instant::now();
        let e = hub.resolve("spangrad/unreachable").unwrap_err();
        assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
        assert!(e.to_string().contains(why), "{e}");
        assert!(!e.to_string().contains("did not answer"), "{e}");
    }
}

/// `tests/x`, where `tests` is a local folder (tests run in the repository root), is a missing
/// local path, not a repository.
#[test]
fn a_missing_path_under_a_local_folder_is_not_a_repository() {
    assert!(std::path::Path::new("tests").is_dir());
    let cache = tempfile::tempdir().unwrap();
    let hub = HubCache {
        dir: cache.path().to_path_buf(),
        offline: true,
        ..HubCache::from_env()
    };
    let e = hub.resolve("tests/no-such-model").unwrap_err();
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
}
