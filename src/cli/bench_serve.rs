//! `spangrad bench-serve`: N concurrent clients against a server for a fixed time, for each N
//! asked; requests/s, pairs/s, latency percentiles and the server's mean batch size. With
//! `--preset` it starts the server itself (random weights, synthetic vocabulary) and, in the
//! same run, measures the same pairs explained offline by the same model.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use spangrad::explain::OtherFields;
use spangrad::model::preset::Preset;
use spangrad::serve::{Backend, ExplainerBackend, Running, ServeConfig};
use spangrad::{ExplainOptions, Explainer, Precision, QaPair};

#[derive(clap::Args)]
pub struct BenchServeArgs {
    /// A running server (`spangrad serve`).
    #[arg(long, required_unless_present = "preset", conflicts_with = "preset")]
    url: Option<String>,
    /// Start a server on loopback with this random-weight model and synthetic vocabulary, and
    /// measure its offline throughput in the same run.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// With --preset: cpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// With --preset: weights and activations.
    #[arg(long, value_enum)]
    dtype: Option<Precision>,
    /// Concurrent clients, one measurement per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// How long each measurement sends requests (those sent are all awaited).
    #[arg(long, default_value = "60s")]
    duration: humantime::Duration,
    /// Pairs per request.
    #[arg(long, default_value_t = 1)]
    pairs_per_request: usize,
    /// Tokens per synthetic pair with a --preset vocabulary (16 question tokens, 3 special).
    #[arg(long, default_value_t = 384)]
    seq_len: usize,
    /// Pairs to send instead (JSON lines with `question` and `context`, cycled).
    #[arg(long)]
    input: Option<PathBuf>,
    /// With --preset: pairs per batch of the offline measurement.
    #[arg(long, default_value_t = 8)]
    offline_batch: usize,
    /// Bearer key of the server.
    #[arg(long, env = "SPANGRAD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Append the table, with machine and date, to this markdown file.
    #[arg(long)]
    record: Option<PathBuf>,
}

/// One measurement.
struct Level {
    clients: usize,
    requests: usize,
    pairs: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    mean_batch: f64,
}

pub fn run(args: BenchServeArgs) -> anyhow::Result<ExitCode> {
    if args.clients.contains(&0) || args.pairs_per_request == 0 || args.offline_batch == 0 {
        bail!("--clients, --pairs-per-request and --offline-batch must be positive");
    }
    let pairs = match &args.input {
        Some(path) => read_pairs(path)?,
        None => (0..256).map(|i| synthetic_pair(i, args.seq_len)).collect(),
    };
    let mut offline = None;
    let mut server = None;
    let url = match (&args.url, args.preset) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(preset)) => {
            let explainer = preset_explainer(preset, &args)?;
            let backend =
                ExplainerBackend::new(explainer.clone(), format!("preset:{}", preset.name()));
            let running = Running::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                Box::new(move || Ok(Arc::new(backend) as Arc<dyn Backend>)),
                ServeConfig::default(),
            )?;
            let url = running.url();
            server = Some(running);
            offline = Some(explainer);
            url
        }
        (None, None) => unreachable!("clap requires --url or --preset"),
    };
    let client = Client::new(&url, args.api_key.clone());
    client.wait_ready()?;
    let model: Value = client.get_json("/v1/model")?;
    // Warm-up: the first pass allocates what later passes reuse.
    client.explain(&body(&pairs[..args.pairs_per_request.min(pairs.len())]))?;

    let mut levels = Vec::new();
    for &clients in &args.clients {
        levels.push(measure(&client, &pairs, clients, &args)?);
    }
    let offline_rate = match &offline {
        Some(explainer) => Some(offline_pairs_per_second(explainer, &pairs, &args)?),
        None => None,
    };
    drop(server);
    let table = table(&args, &model, &levels, offline_rate);
    print!("{table}");
    if let Some(path) = &args.record {
        super::bench::record(path, &table)
            .with_context(|| format!("cannot append to {}", path.display()))?;
    }
    let errors: usize = levels.iter().map(|l| l.errors).sum();
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn preset_explainer(preset: Preset, args: &BenchServeArgs) -> anyhow::Result<Explainer> {
    let device = spangrad::device::select(args.device.as_deref())?;
    let options = ExplainOptions {
        dtype: args.dtype,
        ..ExplainOptions::default()
    };
    Ok(Explainer::preset(preset, options, &device)?)
}

/// 16 question words and `len - 19` context words of the synthetic vocabulary: `len` tokens.
fn synthetic_pair(i: usize, len: usize) -> QaPair {
    let words = |n: usize, salt: usize| {
        (0..n)
            .map(|j| format!("w{}", 1000 + (j * 7919 + salt * 104_729) % 29_000))
            .collect::<Vec<_>>()
            .join(" ")
    };
    QaPair::new(words(16, i), words(len.saturating_sub(19).max(1), i + 7))
}

fn read_pairs(path: &PathBuf) -> anyhow::Result<Vec<QaPair>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let pair = QaPair::from_json(line, OtherFields::Ignored)
            .map_err(|f| anyhow::anyhow!("{} line {}: {}", path.display(), i + 1, f.error))?;
        pairs.push(pair);
    }
    if pairs.is_empty() {
        bail!("{} has no pairs", path.display());
    }
    Ok(pairs)
}

/// One pair alone, more in `{"pairs": [...]}`.
fn body(pairs: &[QaPair]) -> Vec<u8> {
    let mut pairs: Vec<Value> = pairs
        .iter()
        .map(|p| json!({"question": p.question, "context": p.context}))
        .collect();
    let value = if pairs.len() == 1 {
        pairs.remove(0)
    } else {
        json!({ "pairs": pairs })
    };
    serde_json::to_vec(&value).expect("JSON values serialise")
}

fn measure(
    client: &Client,
    pairs: &[QaPair],
    clients: usize,
    args: &BenchServeArgs,
) -> anyhow::Result<Level> {
    let (sum0, count0) = client.batch_totals()?;
    let duration: Duration = args.duration.into();
    let per = args.pairs_per_request;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut threads = Vec::new();
    for c in 0..clients {
        let (client, barrier) = (client.clone(), barrier.clone());
        let bodies: Vec<Vec<u8>> = (0..8)
            .map(|k| {
                let start = (c * 8 + k) * per;
                let chosen: Vec<QaPair> = (start..start + per)
                    .map(|i| pairs[i % pairs.len()].clone())
                    .collect();
                body(&chosen)
            })
            .collect();
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            let start = Instant::now();
            let mut done = Vec::new();
            let mut errors = 0;
            let mut k = 0;
            while start.elapsed() < duration {
                let sent = Instant::now();
                match client.explain(&bodies[k % bodies.len()]) {
                    Ok(()) => done.push((sent.elapsed(), sent - start + sent.elapsed())),
                    Err(_) => errors += 1,
                }
                k += 1;
            }
            (done, errors)
        }));
    }
    barrier.wait();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut elapsed = Duration::ZERO;
    for t in threads {
        let (done, e) = t.join().expect("a client thread");
        errors += e;
        for (latency, finished) in done {
            latencies.push(latency);
            elapsed = elapsed.max(finished);
        }
    }
    latencies.sort();
    let (sum1, count1) = client.batch_totals()?;
    let batches = count1 - count0;
    Ok(Level {
        clients,
        requests: latencies.len(),
        pairs: latencies.len() * per,
        errors,
        elapsed,
        latencies,
        mean_batch: if batches > 0.0 {
            (sum1 - sum0) / batches
        } else {
            0.0
        },
    })
}

/// The same pairs explained by the same model in batches of `--offline-batch`, for as long as
/// one measurement and at least three batches.
fn offline_pairs_per_second(
    explainer: &Explainer,
    pairs: &[QaPair],
    args: &BenchServeArgs,
) -> anyhow::Result<f64> {
    let batch: Vec<QaPair> = pairs
        .iter()
        .cycle()
        .take(args.offline_batch)
        .cloned()
        .collect();
    explainer.explain(&batch)?;
    let duration: Duration = args.duration.into();
    let start = Instant::now();
    let mut done = 0;
    while done < 3 * batch.len() || start.elapsed() < duration {
        explainer.explain(&batch)?;
        done += batch.len();
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64()
}

fn table(args: &BenchServeArgs, model: &Value, levels: &[Level], offline: Option<f64>) -> String {
    let field = |k: &str| {
        model
            .get(k)
            .map_or("?".into(), |v| v.to_string().replace('"', ""))
    };
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    let shape = if args.input.is_some() {
        "pairs from --input".to_string()
    } else {
        format!("{} tokens per pair", args.seq_len)
    };
    let mut s = format!(
        "spangrad bench-serve: {} ({}, {}, {}), {shape}, {} pair(s) per request, {} per \
         measurement, {threads} threads on this machine\n\n\
         | clients | requests | pairs | errors | requests / s | pairs / s | p50 latency (s) | \
         p99 latency (s) | mean batch (pairs) | vs offline |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        field("model"),
        field("architecture"),
        field("device"),
        field("dtype"),
        args.pairs_per_request,
        args.duration,
    );
    for l in levels {
        let seconds = l.elapsed.as_secs_f64().max(1e-9);
        let rate = l.pairs as f64 / seconds;
        let ratio = offline.map_or_else(|| "—".into(), |o| format!("{:.0}%", 100.0 * rate / o));
        s += &format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.3} | {:.3} | {:.1} | {ratio} |\n",
            l.clients,
            l.requests,
            l.pairs,
            l.errors,
            l.requests as f64 / seconds,
            rate,
            percentile(&l.latencies, 0.5),
            percentile(&l.latencies, 0.99),
            l.mean_batch,
        );
    }
    if let Some(o) = offline {
        s += &format!(
            "| offline | | | | | {o:.2} | | | {} | 100% |\n\n\
             Offline: the same model and pairs through `Explainer::explain` in batches of {}, \
             in this process after the server measurements (tokenisation included, no HTTP).\n",
            args.offline_batch, args.offline_batch
        );
    }
    s
}

/// A blocking HTTP client of the server.
#[derive(Clone)]
struct Client {
    agent: ureq::Agent,
    url: String,
    auth: Option<String>,
}

impl Client {
    fn new(url: &str, key: Option<String>) -> Self {
        Self {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(600))
                .build(),
            url: url.to_string(),
            auth: key.map(|k| format!("Bearer {k}")),
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let request = self.agent.request(method, &format!("{}{path}", self.url));
        match &self.auth {
            Some(a) => request.set("Authorization", a),
            None => request,
        }
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            match self.request("GET", "/health").call() {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > Duration::from_secs(600) => {
                    bail!("{} is not ready: {e}", self.url)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.request("GET", path).call()?.into_json()?)
    }

    /// Sends a request and reads the whole answer; any status but 200 is an error.
    fn explain(&self, body: &[u8]) -> anyhow::Result<()> {
        let response = self
            .request("POST", "/v1/explain")
            .set("Content-Type", "application/json")
            .send_bytes(body)?;
        let mut sink = Vec::new();
        response.into_reader().read_to_end(&mut sink)?;
        Ok(())
    }

    /// The batch-size histogram's sum and count.
    fn batch_totals(&self) -> anyhow::Result<(f64, f64)> {
        let text = self.request("GET", "/metrics").call()?.into_string()?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok((
            value("spangrad_batch_pairs_sum "),
            value("spangrad_batch_pairs_count "),
        ))
    }
}
