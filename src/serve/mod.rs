//! `spangrad serve`: the model loaded once behind HTTP, concurrent requests' pairs batched
//! together on one compute thread.
//!
//! - [`api`]: the request and response bodies, and reading a body;
//! - [`routes`]: the axum router, authorisation and the OpenAPI document;
//! - [`batcher`]: the queue and the compute thread;
//! - [`connection`]: the accept loop, and each connection's idle and header clocks;
//! - [`backend`]: what the server drives (an [`crate::Explainer`]);
//! - [`metrics`]: Prometheus counters and histograms.

pub mod api;
pub mod backend;
mod batcher;
mod connection;
pub mod error;
mod metrics;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::Notify;

pub use backend::{plan, Backend, ExplainerBackend, Priced};
use batcher::Batcher;
use error::ApiError;
use metrics::Metrics;

/// The server's limits; every field is a `spangrad serve` flag.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Tokens per batch, and so per request (every window of every pair, times the method's
    /// passes).
    pub max_batch_tokens: usize,
    /// The work of one `POST /v1/evaluate` request, counted as `max_batch_tokens` counts it
    /// (a forward pass a third of a gradient's); it runs as a batch of its own when over
    /// `max_batch_tokens`.
    pub max_evaluate_tokens: usize,
    /// How long the first request of a batch waits for others to join it.
    pub max_wait: Duration,
    /// Pairs waiting for the device before requests are refused with 429.
    pub max_queue: usize,
    pub max_pairs_per_request: usize,
    pub max_body_bytes: usize,
    /// From arrival to answer; past it, 504.
    pub request_timeout: Duration,
    /// Requests to everything but `/health` and `/openapi.json` must carry
    /// `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// From a request's first byte to the end of its headers (a client trickling its headers
    /// holds no socket forever).
    pub header_timeout: Duration,
    /// From the end of the headers to the end of the body (and never past the request
    /// timeout): 408 past it.
    pub body_timeout: Duration,
    /// How long a connection may wait for its first request, or a kept-alive one for its
    /// next, before it is closed.
    pub idle_timeout: Duration,
    /// After a stop is asked for, how long connections still open (a request half sent, a
    /// client that never reads) are waited for before they are dropped.
    pub drain_timeout: Duration,
    /// `Host` names accepted besides IP literals and `localhost` (`*`: any), so that a web page
    /// cannot reach a loopback server through a rebound DNS name.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_batch_tokens: 32_768,
            // 40 pairs of 384 tokens by five methods with every metric.
            max_evaluate_tokens: 4 << 20,
            max_wait: Duration::from_millis(5),
            max_queue: 1024,
            max_pairs_per_request: 64,
            max_body_bytes: 8 << 20,
            request_timeout: Duration::from_secs(120),
            api_key: None,
            drain_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            allowed_hosts: Vec::new(),
        }
    }
}

impl ServeConfig {
    pub fn validate(&self) -> crate::Result<()> {
        let invalid = |m: &str| Err(crate::Error::Usage(m.into()));
        let timeouts = [
            self.request_timeout,
            self.header_timeout,
            self.body_timeout,
            self.idle_timeout,
        ];
        if self.max_batch_tokens == 0
            || self.max_evaluate_tokens == 0
            || self.max_queue == 0
            || self.max_pairs_per_request == 0
            || self.max_body_bytes == 0
            || timeouts.iter().any(Duration::is_zero)
        {
            return invalid(
                "--max-batch-tokens, --max-evaluate-tokens, --max-queue, --max-pairs-per-request, --max-body-bytes, \
                 --request-timeout-ms, --header-timeout-ms, --body-timeout-ms and \
                 --idle-timeout-ms must be positive",
            );
        }
        let week = Duration::from_secs(7 * 24 * 3600);
        if self.max_wait > Duration::from_secs(3600)
            || self.drain_timeout > week
            || timeouts.iter().any(|t| *t > week)
        {
            return invalid(
                "--max-wait-ms is at most an hour, the timeouts (--request-timeout-ms, \
                 --header-timeout-ms, --body-timeout-ms, --idle-timeout-ms, \
                 --drain-timeout-ms) a week",
            );
        }
        if self.max_pairs_per_request > self.max_queue {
            return invalid("--max-pairs-per-request cannot exceed --max-queue");
        }
        if self.api_key.as_deref().is_some_and(str::is_empty) {
            return invalid("--api-key is empty");
        }
        Ok(())
    }

    fn limits(&self, max_input_bytes: usize) -> api::Limits {
        api::Limits {
            max_batch_tokens: self.max_batch_tokens,
            max_evaluate_tokens: self.max_evaluate_tokens,
            max_wait_ms: self.max_wait.as_millis() as u64,
            max_queue: self.max_queue,
            max_pairs_per_request: self.max_pairs_per_request,
            max_body_bytes: self.max_body_bytes,
            max_input_bytes,
            request_timeout_ms: self.request_timeout.as_millis() as u64,
        }
    }
}

/// What the handlers share.
pub struct AppState {
    config: ServeConfig,
    metrics: Arc<Metrics>,
    ready: OnceLock<Ready>,
    /// Set once the server stops: a model that finishes loading later is not started.
    closed: std::sync::atomic::AtomicBool,
}

/// The loaded model and its batcher.
struct Ready {
    backend: Arc<dyn Backend>,
    batcher: Batcher,
    info: api::ModelInfo,
}

impl AppState {
    fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready.get().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model is loading",
                None,
            )
            .with_retry_after(1)
        })
    }

    fn start(&self, backend: Arc<dyn Backend>) {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut info = backend.info();
        info.limits = self.config.limits(backend.options().max_input_bytes);
        let batcher = Batcher::start(
            backend.clone(),
            self.config.max_batch_tokens,
            self.config.max_wait,
            self.config.max_queue,
            self.metrics.clone(),
        );
        let _ = self.ready.set(Ready {
            backend,
            batcher,
            info,
        });
    }

    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(ready) = self.ready.get() {
            ready.batcher.close();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot load the model: {0}")]
    Load(crate::Error),
}

/// Loads the model (blocking; the server answers `/health` with 503 meanwhile).
pub type Loader = Box<dyn FnOnce() -> crate::Result<Arc<dyn Backend>> + Send>;

/// Serves on `listener` until `shutdown` completes, then stops accepting, answers the requests
/// in flight and returns. A failed load stops the server with [`ServeError::Load`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    load: Loader,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate().map_err(ServeError::Load)?;
    let drain = config.drain_timeout;
    let state = Arc::new(AppState {
        config,
        metrics: Arc::default(),
        ready: OnceLock::new(),
        closed: Default::default(),
    });
    let failed = Arc::new(Notify::new());
    let loading = {
        let (state, failed) = (state.clone(), failed.clone());
        tokio::task::spawn_blocking(move || match load() {
            Ok(backend) => {
                state.start(backend);
                Ok(())
            }
            Err(e) => {
                failed.notify_one();
                Err(e)
            }
        })
    };
    let app = routes::router(state.clone());
    let load_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = load_failed.clone();
    let clocks = connection::Clocks {
        idle: state.config.idle_timeout,
        header: state.config.header_timeout,
    };
    let metrics = state.metrics.clone();
    connection::accept(listener, app, clocks, drain, metrics, async move {
        tokio::select! {
            () = shutdown => {}
            () = failed.notified() => flag.store(true, std::sync::atomic::Ordering::SeqCst),
        }
    })
    .await;
    tokio::task::spawn_blocking(move || state.close())
        .await
        .map_err(std::io::Error::other)?;
    // A failed load is reported; a load still running when asked to stop is abandoned.
    if load_failed.load(std::sync::atomic::Ordering::SeqCst) || loading.is_finished() {
        loading
            .await
            .map_err(std::io::Error::other)?
            .map_err(ServeError::Load)?;
    }
    Ok(())
}

/// A server on its own thread and runtime, for embedding and tests.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl Running {
    /// Binds `addr` (port 0: any free port) and serves there.
    pub fn start(addr: SocketAddr, load: Loader, config: ServeConfig) -> Result<Self, ServeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("spangrad-serve".into())
            .spawn(move || {
                let served = runtime.block_on(serve(listener, load, config, async move {
                    let _ = stopped.await;
                }));
                runtime.shutdown_timeout(Duration::from_secs(1));
                served
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops as SIGTERM stops `spangrad serve`: requests in flight are answered first.
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.shut()
    }

    fn shut(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| ServeError::Io(std::io::Error::other("the server thread panicked")))?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shut();
    }
}
