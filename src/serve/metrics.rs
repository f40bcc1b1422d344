//! The server's Prometheus metrics, kept and exposed (OpenMetrics text) by `prometheus-client`,
//! the official Rust client. Counts are touched once per request and once per batch; the
//! model's labels and the memory gauges are set when /metrics is read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the batch-size histogram, in pairs.
const BATCH_BOUNDS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// Upper bounds of the time histograms, in seconds.
const SECONDS_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The OpenMetrics media type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    architecture: String,
    device: String,
    dtype: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

type F64Gauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    info: Family<ModelLabels, Gauge>,
    requests: Family<StatusLabel, Counter>,
    pairs: Family<ResultLabel, Counter>,
    tokens: Counter,
    /// Pairs waiting for the device now.
    queued: Gauge,
    batch_pairs: Histogram,
    queue_seconds: Histogram,
    compute_seconds: Histogram,
    tokens_per_second: F64Gauge,
    device_memory: Family<KindLabel, Gauge>,
    resident_memory: Gauge,
    /// Pairs in batches and the microseconds they took, for [`Metrics::pairs_per_second`].
    batched_pairs: AtomicU64,
    batch_micros: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("spangrad");
        let info = Family::<ModelLabels, Gauge>::default();
        registry.register("info", "The served model.", info.clone());
        let requests = Family::<StatusLabel, Counter>::default();
        registry.register("requests", "HTTP answers by status.", requests.clone());
        let pairs = Family::<ResultLabel, Counter>::default();
        registry.register(
            "pairs",
            "Pairs answered, explained or failed.",
            pairs.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "queue_pairs",
            "Pairs waiting for the device.",
            queued.clone(),
        );
        let batch_pairs = Histogram::new(BATCH_BOUNDS);
        registry.register(
            "batch_pairs",
            "Pairs per batch computed together.",
            batch_pairs.clone(),
        );
        let queue_seconds = Histogram::new(SECONDS_BOUNDS);
        registry.register(
            "queue_seconds",
            "Time a request waited before its batch started.",
            queue_seconds.clone(),
        );
        let compute_seconds = Histogram::new(SECONDS_BOUNDS);
        registry.register(
            "compute_seconds",
            "Time a batch took on the device (forward, backward, saliency).",
            compute_seconds.clone(),
        );
        let tokens = Counter::default();
        registry.register("tokens", "Tokens explained (all windows).", tokens.clone());
        let tokens_per_second = F64Gauge::default();
        registry.register(
            "tokens_per_second",
            "Tokens per second of compute in the last batch.",
            tokens_per_second.clone(),
        );
        let device_memory = Family::<KindLabel, Gauge>::default();
        registry.register(
            "device_memory_bytes",
            "Device memory in use (the GPU's pool; on the CPU, live heap bytes), and its peak.",
            device_memory.clone(),
        );
        let resident_memory = Gauge::default();
        registry.register(
            "resident_memory_bytes",
            "The process's resident set.",
            resident_memory.clone(),
        );
        Self {
            registry,
            info,
            requests,
            pairs,
            tokens,
            queued,
            batch_pairs,
            queue_seconds,
            compute_seconds,
            tokens_per_second,
            device_memory,
            resident_memory,
            batched_pairs: AtomicU64::new(0),
            batch_micros: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn request(&self, status: u16) {
        self.requests.get_or_create(&StatusLabel { status }).inc();
    }

    pub fn pairs(&self, ok: usize, failed: usize) {
        for (result, n) in [("explained", ok), ("failed", failed)] {
            self.pairs
                .get_or_create(&ResultLabel { result })
                .inc_by(n as u64);
        }
    }

    pub fn set_queued(&self, pairs: usize) {
        self.queued.set(pairs as i64);
    }

    pub fn queue_time(&self, waited: Duration) {
        self.queue_seconds.observe(waited.as_secs_f64());
    }

    /// One batch: `pairs` pairs of `tokens` tokens computed in `took`.
    pub fn batch(&self, pairs: usize, tokens: usize, took: Duration) {
        self.batch_pairs.observe(pairs as f64);
        self.compute_seconds.observe(took.as_secs_f64());
        self.tokens.inc_by(tokens as u64);
        self.tokens_per_second
            .set(tokens as f64 / took.as_secs_f64().max(1e-9));
        self.batched_pairs
            .fetch_add(pairs as u64, Ordering::Relaxed);
        self.batch_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Pairs per second over the batches so far (0 before the first), for `Retry-After`.
    pub fn pairs_per_second(&self) -> f64 {
        let micros = self.batch_micros.load(Ordering::Relaxed);
        if micros == 0 {
            return 0.0;
        }
        self.batched_pairs.load(Ordering::Relaxed) as f64 / (micros as f64 / 1e6)
    }

    /// The exposition text ([`CONTENT_TYPE`]): `info` labels the model (model, architecture,
    /// device, dtype; absent before it loads); `memory` is the device's bytes in use and their
    /// peak; `rss` the process's resident bytes.
    pub fn render(
        &self,
        info: Option<[String; 4]>,
        memory: Option<(usize, usize)>,
        rss: usize,
    ) -> String {
        self.info.clear();
        if let Some([model, architecture, device, dtype]) = info {
            let labels = ModelLabels {
                model,
                architecture,
                device,
                dtype,
            };
            self.info.get_or_create(&labels).set(1);
        }
        if let Some((used, peak)) = memory {
            for (kind, bytes) in [("used", used), ("peak", peak)] {
                self.device_memory
                    .get_or_create(&KindLabel { kind })
                    .set(bytes as i64);
            }
        }
        self.resident_memory.set(rss as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample of an exposition as (name, labels, value), the comments checked: each
    /// family's `# TYPE` comes before its samples, and the text ends with `# EOF`.
    fn samples(text: &str) -> Vec<(String, String, f64)> {
        assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
        let mut typed = Vec::new();
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            assert!(
                typed.iter().any(|family| name.starts_with(family.as_str())),
                "{name} has no # TYPE before it"
            );
            out.push((name.into(), labels.into(), value.parse().unwrap()));
        }
        out
    }

    #[test]
    fn the_exposition_parses_with_every_family_and_cumulative_histograms() {
        let m = Metrics::default();
        m.batch(3, 300, Duration::from_millis(30));
        m.batch(40, 4000, Duration::from_secs(2));
        m.request(200);
        m.request(200);
        m.request(429);
        m.pairs(43, 1);
        let info = ["a \"b\"", "bert", "cpu", "f32"].map(String::from);
        let text = m.render(Some(info), Some((5, 9)), 7);
        let samples = samples(&text);
        let value = |name: &str, labels: &str| {
            samples
                .iter()
                .find(|(n, l, _)| n == name && l == labels)
                .unwrap_or_else(|| panic!("{name}{{{labels}}} not in\n{text}"))
                .2
        };
        assert_eq!(
            value(
                "spangrad_info",
                r#"model="a \"b\"",architecture="bert",device="cpu",dtype="f32""#
            ),
            1.0
        );
        assert_eq!(value("spangrad_requests_total", r#"status="200""#), 2.0);
        assert_eq!(value("spangrad_requests_total", r#"status="429""#), 1.0);
        assert_eq!(value("spangrad_pairs_total", r#"result="explained""#), 43.0);
        assert_eq!(value("spangrad_pairs_total", r#"result="failed""#), 1.0);
        assert_eq!(value("spangrad_batch_pairs_bucket", r#"le="2.0""#), 0.0);
        assert_eq!(value("spangrad_batch_pairs_bucket", r#"le="4.0""#), 1.0);
        assert_eq!(value("spangrad_batch_pairs_bucket", r#"le="64.0""#), 2.0);
        assert_eq!(value("spangrad_batch_pairs_bucket", r#"le="+Inf""#), 2.0);
        assert_eq!(value("spangrad_batch_pairs_sum", ""), 43.0);
        assert_eq!(value("spangrad_batch_pairs_count", ""), 2.0);
        assert_eq!(
            value("spangrad_compute_seconds_bucket", r#"le="0.05""#),
            1.0
        );
        assert_eq!(value("spangrad_tokens_total", ""), 4300.0);
        assert_eq!(value("spangrad_tokens_per_second", ""), 2000.0);
        assert_eq!(value("spangrad_queue_pairs", ""), 0.0);
        assert_eq!(value("spangrad_device_memory_bytes", r#"kind="peak""#), 9.0);
        assert_eq!(value("spangrad_resident_memory_bytes", ""), 7.0);
        assert!((m.pairs_per_second() - 43.0 / 2.03).abs() < 1e-9);
    }
}
