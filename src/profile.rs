//! Time per op of the model's passes, to see where the time goes on a GPU, where `perf`
//! cannot look. With `SPANGRAD_PROFILE=1` each profiled op synchronises the device before and
//! after itself, so its own time is measured (and the pass runs slower: the figures are for
//! shares, not totals). Unset, a profiled op is a plain call.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use candle_core::{Device, Result};

fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("SPANGRAD_PROFILE").is_some_and(|v| v != "0"))
}

/// Total time and calls per op name.
static TOTALS: Mutex<BTreeMap<&'static str, (Duration, usize)>> = Mutex::new(BTreeMap::new());

/// Runs `f`, timing it under `name` when profiling is on.
pub fn time<T>(device: &Device, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if !enabled() {
        return f();
    }
    device.synchronize()?;
    let start = Instant::now();
    let out = f()?;
    device.synchronize()?;
    let elapsed = start.elapsed();
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let entry = totals.entry(name).or_default();
    entry.0 += elapsed;
    entry.1 += 1;
    Ok(out)
}

/// The ops timed since the last report, largest total first, as a markdown table; `None` when
/// profiling is off.
pub fn take_report() -> Option<String> {
    if !enabled() {
        return None;
    }
    let totals = std::mem::take(&mut *TOTALS.lock().unwrap_or_else(|e| e.into_inner()));
    let sum: Duration = totals.values().map(|(d, _)| *d).sum();
    let mut rows: Vec<_> = totals.into_iter().collect();
    rows.sort_by_key(|(_, (d, _))| std::cmp::Reverse(*d));
    let mut s = String::from("| op | calls | total (ms) | share |\n|---|---|---|---|\n");
    for (name, (d, calls)) in rows {
        s += &format!(
            "| {name} | {calls} | {:.2} | {:.1}% |\n",
            d.as_secs_f64() * 1e3,
            100.0 * d.as_secs_f64() / sum.as_secs_f64().max(1e-12)
        );
    }
    Some(s)
}
