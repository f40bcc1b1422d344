//! What a run says on stderr besides errors: a progress bar while JSON lines are explained
//! (only when stderr is a terminal), and one summary line at the end. `--quiet` silences both.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    start: Instant,
    done: u64,
    failed: u64,
}

impl Progress {
    /// `total`: the pairs to come when known (a file's non-blank lines), else `None` (stdin).
    pub fn new(total: Option<u64>, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self::without_bar(quiet);
        }
        let bar = Some({
            let bar = match total {
                Some(n) => ProgressBar::new(n).with_style(
                    ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} pairs  {per_sec}  ETA {eta}",
                    )
                    .expect("a valid template"),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {pos} pairs  {per_sec}")
                        .expect("a valid template"),
                ),
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            ..Self::without_bar(quiet)
        }
    }

    /// For a single pair: the summary line only.
    pub fn without_bar(quiet: bool) -> Self {
        Self {
            bar: None,
            quiet,
            start: Instant::now(),
            done: 0,
            failed: 0,
        }
    }

    /// `pairs` more answered, `failed` of them with an error.
    pub fn advance(&mut self, pairs: u64, failed: u64) {
        self.done += pairs;
        self.failed += failed;
        if let Some(bar) = &self.bar {
            bar.inc(pairs);
        }
    }

    /// A message on stderr that does not tear the bar.
    pub fn note(&self, message: std::fmt::Arguments) {
        match &self.bar {
            Some(bar) => bar.suspend(|| super::note(message)),
            None => super::note(message),
        }
    }

    /// Clears the bar and writes the summary line (unless quiet).
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let seconds = self.start.elapsed().as_secs_f64();
        let rate = self.done as f64 / seconds.max(1e-9);
        super::note(format_args!(
            "spangrad: {} pairs, {} failed, {seconds:.1} s, {rate:.1} pairs/s",
            self.done, self.failed
        ));
    }
}
