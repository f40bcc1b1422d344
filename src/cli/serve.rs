//! `spangrad serve`: the HTTP server (see `spangrad::serve`).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use spangrad::explain::options::cli::{Flags, OptionArgs};
use spangrad::explain::options::name;
use spangrad::hub::HubCache;
use spangrad::model::preset::Preset;
use spangrad::serve::{Backend, ExplainerBackend, Loader, ServeConfig};
use spangrad::Explainer;

use super::explain::DEFAULT_MODEL;
use super::note;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// A local checkpoint directory, or a Hugging Face Hub model id (looked up in the hub cache;
    /// downloaded unless HF_HUB_OFFLINE is set). Fixed for the server's life.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// Serve a random-weight model of this shape with a made-up vocabulary (`w5 w6 ...`, one
    /// token per word) instead: for `spangrad bench-serve`, not for explanations.
    #[arg(long, value_enum, conflicts_with = "model")]
    preset: Option<Preset>,
    /// cpu, cuda or cuda:N [default: the first GPU when built with the cuda feature, else cpu].
    #[arg(long)]
    device: Option<String>,
    /// The address to listen on; anything but loopback exposes the server to the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// 0: any free port (printed on start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Tokens per batch and per request: every window of every pair, times the method's passes
    /// (integrated-gradients steps, SmoothGrad samples). A request over it gets 413.
    #[arg(long, default_value_t = ServeConfig::default().max_batch_tokens)]
    max_batch_tokens: usize,
    /// The work of one POST /v1/evaluate request, in the same tokens: every pair's tokens times
    /// its methods' passes, plus a third of a pass per perturbed input's forward. Over
    /// --max-batch-tokens, it runs as a batch of its own.
    #[arg(long, default_value_t = ServeConfig::default().max_evaluate_tokens)]
    max_evaluate_tokens: usize,
    /// How long a request waits for others to share its batch, in milliseconds.
    #[arg(long, default_value_t = ServeConfig::default().max_wait.as_millis() as u64)]
    max_wait_ms: u64,
    /// Pairs waiting for the device before requests get 429.
    #[arg(long, default_value_t = ServeConfig::default().max_queue)]
    max_queue: usize,
    #[arg(long, default_value_t = ServeConfig::default().max_pairs_per_request)]
    max_pairs_per_request: usize,
    #[arg(long, default_value_t = ServeConfig::default().max_body_bytes)]
    max_body_bytes: usize,
    /// From a request's arrival to its answer; past it, 504.
    #[arg(long, default_value_t = ServeConfig::default().request_timeout.as_millis() as u64)]
    request_timeout_ms: u64,
    /// Requests (all but /health and /openapi.json) must send `Authorization: Bearer KEY`.
    /// Prefer the environment variable: a flag shows in the process list.
    #[arg(long, env = "SPANGRAD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// From a request's first byte to the end of its headers, in milliseconds; then the
    /// connection is closed.
    #[arg(long, default_value_t = ServeConfig::default().header_timeout.as_millis() as u64)]
    header_timeout_ms: u64,
    /// From the end of a request's headers to the end of its body, in milliseconds; then 408.
    #[arg(long, default_value_t = ServeConfig::default().body_timeout.as_millis() as u64)]
    body_timeout_ms: u64,
    /// How long a connection may wait for its first request, or a kept-alive one for its
    /// next, in milliseconds; then it is closed.
    #[arg(long, default_value_t = ServeConfig::default().idle_timeout.as_millis() as u64)]
    idle_timeout_ms: u64,
    /// After SIGTERM or Ctrl-C, how long connections still open are waited for, in
    /// milliseconds; a second signal stops at once.
    #[arg(long, default_value_t = ServeConfig::default().drain_timeout.as_millis() as u64)]
    drain_timeout_ms: u64,
    /// Host names (the `Host` header, without the port) the server answers besides IP
    /// literals and localhost, comma-separated; `*` answers any. Other names get 421, so that
    /// a web page cannot reach the server through a DNS name rebound to this machine.
    #[arg(long, value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// The options of every request that does not set them in its `options` (those of
    /// `spangrad explain`).
    #[command(flatten)]
    pub(super) options: OptionArgs<ServeFlags>,
}

/// `spangrad serve` takes every option as a flag but `max_batch_tokens`: the server's own
/// `--max-batch-tokens` sizes its batches, and each pass is sized by the memory.
pub struct ServeFlags;

impl Flags for ServeFlags {
    const LEFT_OUT: &'static [&'static str] = &[name::max_batch_tokens];
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig {
        max_batch_tokens: args.max_batch_tokens,
        max_evaluate_tokens: args.max_evaluate_tokens,
        max_wait: Duration::from_millis(args.max_wait_ms),
        max_queue: args.max_queue,
        max_pairs_per_request: args.max_pairs_per_request,
        max_body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        api_key: args.api_key.clone(),
        allowed_hosts: args.allowed_hosts.clone(),
        drain_timeout: Duration::from_millis(args.drain_timeout_ms),
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        body_timeout: Duration::from_millis(args.body_timeout_ms),
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
    };
    config.validate()?;
    let options = args.options.options.clone();
    options.validate().map_err(spangrad::Error::from)?;
    let device = spangrad::device::select(args.device.as_deref())?;
    let name = match args.preset {
        Some(p) => format!("preset:{} (random weights, synthetic vocabulary)", p.name()),
        None => args.model.clone(),
    };
    let load: Loader = {
        let name = name.clone();
        Box::new(move || {
            let explainer = match args.preset {
                Some(preset) => Explainer::preset(preset, options, &device)?,
                None => {
                    let dir = HubCache::from_env().resolve(&args.model)?;
                    Explainer::from_dir(&dir, options, &device)?
                }
            };
            let backend = ExplainerBackend::new(explainer, name);
            let info = backend.info();
            note(format_args!(
                "spangrad serve: ready: {} ({}, {}, {})",
                info.model, info.architecture, info.device, info.dtype
            ));
            Ok(Arc::new(backend) as Arc<dyn Backend>)
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        note(format_args!(
            "spangrad serve: listening on http://{} (loading {name})",
            listener.local_addr()?
        ));
        spangrad::serve::serve(listener, load, config, stop_signal()).await?;
        note(format_args!("spangrad serve: stopped"));
        anyhow::Ok(())
    });
    // A model still loading (a download, say) when asked to stop is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or Ctrl-C: stop accepting, answer what is in flight, exit; a second one exits at
/// once.
async fn stop_signal() {
    signalled().await;
    note(format_args!(
        "spangrad serve: stopping: answering the requests in flight (a second signal stops now)"
    ));
    tokio::spawn(async {
        signalled().await;
        note(format_args!("spangrad serve: stopped at once"));
        std::process::exit(1);
    });
}

/// The next SIGTERM or Ctrl-C.
async fn signalled() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
