//! Prometheus metrics in the text exposition format, kept with atomics and small locks (the
//! counts are touched once per request and once per batch).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the batch-size histogram, in pairs.
const BATCH_BOUNDS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// Upper bounds of the time histograms, in seconds.
const SECONDS_BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
pub struct Metrics {
    /// Answers by HTTP status.
    requests: Mutex<BTreeMap<u16, u64>>,
    pairs_ok: AtomicU64,
    pairs_failed: AtomicU64,
    tokens: AtomicU64,
    /// Pairs waiting for the device now.
    queued: AtomicU64,
    batch_pairs: Histogram<10>,
    queue_seconds: Histogram<14>,
    compute_seconds: Histogram<14>,
    /// Tokens per second of the last batch, as f64 bits.
    last_tokens_per_second: AtomicU64,
}

impl Metrics {
    pub fn request(&self, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    pub fn pairs(&self, ok: usize, failed: usize) {
        self.pairs_ok.fetch_add(ok as u64, Ordering::Relaxed);
        self.pairs_failed
            .fetch_add(failed as u64, Ordering::Relaxed);
    }

    pub fn set_queued(&self, pairs: usize) {
        self.queued.store(pairs as u64, Ordering::Relaxed);
    }

    pub fn queue_time(&self, waited: Duration) {
        self.queue_seconds
            .observe(waited.as_secs_f64(), &SECONDS_BOUNDS);
    }

    /// One batch: `pairs` pairs of `tokens` tokens computed in `took`.
    pub fn batch(&self, pairs: usize, tokens: usize, took: Duration) {
        self.batch_pairs.observe(pairs as f64, &BATCH_BOUNDS);
        self.compute_seconds
            .observe(took.as_secs_f64(), &SECONDS_BOUNDS);
        self.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        let rate = tokens as f64 / took.as_secs_f64().max(1e-9);
        self.last_tokens_per_second
            .store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Pairs per second over the batches so far (0 before the first), for `Retry-After`.
    pub fn pairs_per_second(&self) -> f64 {
        let (count, seconds) = {
            let batches = self.batch_pairs.lock();
            let compute = self.compute_seconds.lock();
            (batches.sum, compute.sum)
        };
        if seconds > 0.0 {
            count / seconds
        } else {
            0.0
        }
    }

    /// The exposition text: `info` labels the model; `memory` is the device's bytes in use and
    /// their peak; `rss` the process's resident bytes.
    pub fn render(
        &self,
        info: &[(&str, String)],
        memory: Option<(usize, usize)>,
        rss: usize,
    ) -> String {
        let mut out = String::new();
        let labels: Vec<String> = info
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed).to_string();
        let info = format!("{{{}}}", labels.join(","));
        family(
            &mut out,
            "spangrad_info",
            "gauge",
            "The served model.",
            &[(&info, "1".into())],
        );
        let statuses: Vec<(String, String)> = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(status, n)| (format!("{{status=\"{status}\"}}"), n.to_string()))
            .collect();
        let statuses: Vec<(&str, String)> = statuses
            .iter()
            .map(|(l, v)| (l.as_str(), v.clone()))
            .collect();
        family(
            &mut out,
            "spangrad_requests_total",
            "counter",
            "HTTP answers by status.",
            &statuses,
        );
        family(
            &mut out,
            "spangrad_pairs_total",
            "counter",
            "Pairs answered, explained or failed.",
            &[
                ("{result=\"explained\"}", load(&self.pairs_ok)),
                ("{result=\"failed\"}", load(&self.pairs_failed)),
            ],
        );
        family(
            &mut out,
            "spangrad_queue_pairs",
            "gauge",
            "Pairs waiting for the device.",
            &[("", load(&self.queued))],
        );
        self.batch_pairs.render(
            &mut out,
            "spangrad_batch_pairs",
            "Pairs per batch computed together.",
            &BATCH_BOUNDS,
        );
        self.queue_seconds.render(
            &mut out,
            "spangrad_queue_seconds",
            "Time a request waited before its batch started.",
            &SECONDS_BOUNDS,
        );
        self.compute_seconds.render(
            &mut out,
            "spangrad_compute_seconds",
            "Time a batch took on the device (forward, backward, saliency).",
            &SECONDS_BOUNDS,
        );
        family(
            &mut out,
            "spangrad_tokens_total",
            "counter",
            "Tokens explained (all windows).",
            &[("", load(&self.tokens))],
        );
        let rate = f64::from_bits(self.last_tokens_per_second.load(Ordering::Relaxed));
        family(
            &mut out,
            "spangrad_tokens_per_second",
            "gauge",
            "Tokens per second of compute in the last batch.",
            &[("", rate.to_string())],
        );
        if let Some((used, peak)) = memory {
            family(
                &mut out,
                "spangrad_device_memory_bytes",
                "gauge",
                "Device memory in use (the GPU's pool; on the CPU, live heap bytes), and its peak.",
                &[
                    ("{kind=\"used\"}", used.to_string()),
                    ("{kind=\"peak\"}", peak.to_string()),
                ],
            );
        }
        family(
            &mut out,
            "spangrad_resident_memory_bytes",
            "gauge",
            "The process's resident set.",
            &[("", rss.to_string())],
        );
        out
    }
}

/// One metric family: its help and type, then a line per (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, String)]) {
    header(out, name, kind, help);
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value's `\`, `"` and newlines escaped, as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[derive(Default)]
struct Histogram<const N: usize> {
    data: Mutex<HistogramData<N>>,
}

#[derive(Clone, Copy)]
struct HistogramData<const N: usize> {
    /// Observations at or under each bound (not cumulative).
    buckets: [u64; N],
    count: u64,
    sum: f64,
}

impl<const N: usize> Default for HistogramData<N> {
    fn default() -> Self {
        Self {
            buckets: [0; N],
            count: 0,
            sum: 0.0,
        }
    }
}

impl<const N: usize> Histogram<N> {
    fn lock(&self) -> HistogramData<N> {
        *self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn observe(&self, value: f64, bounds: &[f64; N]) {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = bounds.iter().position(|&b| value <= b) {
            data.buckets[i] += 1;
        }
        data.count += 1;
        data.sum += value;
    }

    fn render(&self, out: &mut String, name: &str, help: &str, bounds: &[f64; N]) {
        let data = self.lock();
        header(out, name, "histogram", help);
        let mut cumulative = 0;
        for (bound, n) in bounds.iter().zip(data.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", data.count);
        let _ = writeln!(out, "{name}_sum {}", data.sum);
        let _ = writeln!(out, "{name}_count {}", data.count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = Metrics::default();
        m.batch(3, 300, Duration::from_millis(30));
        m.batch(40, 4000, Duration::from_secs(2));
        m.request(200);
        m.request(200);
        m.request(429);
        let text = m.render(&[("model", "a \"b\"".into())], Some((5, 9)), 7);
        for line in [
            "spangrad_info{model=\"a \\\"b\\\"\"} 1",
            "spangrad_requests_total{status=\"200\"} 2",
            "spangrad_requests_total{status=\"429\"} 1",
            "spangrad_batch_pairs_bucket{le=\"2\"} 0",
            "spangrad_batch_pairs_bucket{le=\"4\"} 1",
            "spangrad_batch_pairs_bucket{le=\"64\"} 2",
            "spangrad_batch_pairs_bucket{le=\"+Inf\"} 2",
            "spangrad_batch_pairs_sum 43",
            "spangrad_batch_pairs_count 2",
            "spangrad_compute_seconds_bucket{le=\"0.05\"} 1",
            "spangrad_tokens_total 4300",
            "spangrad_tokens_per_second 2000",
            "spangrad_device_memory_bytes{kind=\"peak\"} 9",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!((m.pairs_per_second() - 43.0 / 2.03).abs() < 1e-9);
    }
}
