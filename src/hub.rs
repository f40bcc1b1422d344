//! Model names: a local directory, or a Hugging Face Hub repository resolved through the
//! `hf-hub` cache (downloading only when `HF_HUB_OFFLINE` is not set, from `HF_ENDPOINT`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// Where hub models are cached, whether the network may be used, and how.
#[derive(Debug, Clone)]
pub struct HubCache {
    pub dir: PathBuf,
    pub offline: bool,
    /// The hub's address: `HF_ENDPOINT`, else `https://huggingface.co`.
    pub endpoint: String,
    /// How long connecting to the hub, or waiting for its answer, may take before the download
    /// fails (`SPANGRAD_HUB_TIMEOUT_SECS`, default 30): a server that accepts the connection and
    /// never answers would otherwise hang the run.
    pub timeout: Duration,
}

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Files a checkpoint needs: for each need, alternative sets of files in order of preference
/// (the first set wholly there is taken); an index (`*.index.json`) brings its shards.
const NEEDS: [&[&[&str]]; 3] = [
    &[&["config.json"]],
    &[
        &["tokenizer.json"],
        &["vocab.json", "merges.txt"],
        &["vocab.txt"],
    ],
    &[
        &["model.safetensors"],
        &["pytorch_model.bin"],
        &["model.safetensors.index.json"],
        &["pytorch_model.bin.index.json"],
    ],
];
const OPTIONAL: [&str; 2] = ["tokenizer_config.json", "special_tokens_map.json"];

/// The snapshot folder holding every needed file, each got by `get` (from the cache or the
/// network); on failure, why each alternative failed.
fn gather(
    get: &dyn Fn(&str) -> std::result::Result<PathBuf, String>,
) -> std::result::Result<PathBuf, String> {
    let mut snapshot = None;
    for need in NEEDS {
        let mut failures = Vec::new();
        let found = need.iter().find_map(|files| {
            match files
                .iter()
                .map(|f| get(f))
                .collect::<std::result::Result<Vec<_>, _>>()
            {
                Ok(paths) => Some(paths),
                Err(e) => {
                    failures.push(e);
                    None
                }
            }
        });
        let paths = found.ok_or_else(|| failures.join("; "))?;
        for index in paths
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".index.json"))
        {
            let shards = crate::model::shard_names(index).map_err(|e| e.to_string())?;
            for shard in shards {
                get(&shard)?;
            }
        }
        snapshot.get_or_insert_with(|| paths[0].parent().map(Path::to_path_buf));
    }
    snapshot
        .flatten()
        .ok_or_else(|| "the files have no folder".to_string())
}

impl HubCache {
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`; `HF_HUB_OFFLINE`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_hub::Cache::from_env().path().clone());
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
            .unwrap_or(false);
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let timeout = std::env::var("SPANGRAD_HUB_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(Duration::from_secs(30), Duration::from_secs);
        Self {
            dir,
            offline,
            endpoint,
            timeout,
        }
    }

    /// The hub at `endpoint` answers within the timeout (any HTTP status counts as an answer;
    /// what it means is left to the download). `hf-hub` sets no timeouts of its own.
    fn probe(&self, name: &str) -> Result<()> {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(self.timeout)
            .timeout_read(self.timeout)
            .timeout_write(self.timeout)
            .try_proxy_from_env(true)
            .build();
        let url = format!("{}/api/models/{name}", self.endpoint.trim_end_matches('/'));
        let why = match agent.get(&url).call() {
            Ok(_) | Err(ureq::Error::Status(..)) => return Ok(()),
            Err(ureq::Error::Transport(t)) => match t.kind() {
                ureq::ErrorKind::Dns => format!("cannot resolve the hub's host ({t})"),
                ureq::ErrorKind::ConnectionFailed => format!("cannot connect to the hub ({t})"),
                _ if t.to_string().contains("timed out") => format!(
                    "the hub did not answer within {} s ({t})",
                    self.timeout.as_secs()
                ),
                _ => format!("the hub could not be reached ({t})"),
            },
        };
        Err(self.error(
            name,
            format!(
                "{why} at {}; check the network or HF_ENDPOINT, or pass a local model directory",
                self.endpoint
            ),
        ))
    }

    /// A local directory as is; otherwise a hub repository id (`name` or `org/name`).
    pub fn resolve(&self, name: &str) -> Result<PathBuf> {
        let path = Path::new(name);
        if path.is_dir() {
            return Ok(path.to_path_buf());
        }
        // `models/x` where `models` is a local folder is a path, not a repository.
        let local_parent = path
            .parent()
            .is_some_and(|p| !p.as_os_str().is_empty() && p.is_dir());
        if !is_repo_id(name) || local_parent {
            return Err(Error::MissingFile {
                what: "model directory",
                path: path.to_path_buf(),
            });
        }
        match self.cached(name) {
            Some(dir) => Ok(dir),
            None if self.offline => Err(self.error(
                name,
                format!(
                    "it is not in the hub cache {} and HF_HUB_OFFLINE is set; pass a local model \
                     directory instead",
                    self.dir.display()
                ),
            )),
            None => self.download(name),
        }
    }

    fn cached(&self, name: &str) -> Option<PathBuf> {
        let repo = hf_hub::Cache::new(self.dir.clone()).model(name.to_string());
        gather(&|f| repo.get(f).ok_or_else(|| format!("{f} is not cached"))).ok()
    }

    fn download(&self, name: &str) -> Result<PathBuf> {
        self.probe(name)?;
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_endpoint(self.endpoint.clone())
            .with_cache_dir(self.dir.clone())
            .build()
            .map_err(|e| self.error(name, e.to_string()))?;
        let repo = api.model(name.to_string());
        let snapshot = gather(&|f| repo.get(f).map_err(|e| format!("{f}: {e}"))).map_err(|e| {
            self.error(
                name,
                format!(
                    "download failed ({e}); without network access pass a local model directory"
                ),
            )
        })?;
        for f in OPTIONAL {
            // Optional files only refine tokenisation; their absence is not an error.
            let _ = repo.get(f);
        }
        Ok(snapshot)
    }

    fn error(&self, name: &str, message: String) -> Error {
        Error::Hub {
            name: name.to_string(),
            message,
        }
    }
}

/// `name` or `org/name`, made of the characters the hub allows.
fn is_repo_id(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

#[cfg(test)]
mod tests {
    use super::is_repo_id;

    #[test]
    fn tells_repo_ids_from_paths() {
        assert!(is_repo_id("distilbert-base-cased-distilled-squad"));
        assert!(is_repo_id("deepset/roberta-base-squad2"));
        assert!(!is_repo_id("./models/x"));
        assert!(!is_repo_id("/abs/path"));
        assert!(!is_repo_id("a/b/c"));
    }
}
