//! The progress bar on stderr: elapsed/duration, sent, completed, errors, in
//! flight and the current latency p99. Hidden when stderr is not a terminal
//! or with `--no-progress`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::stats::Recorder;

const TICK: Duration = Duration::from_millis(250);

/// A running progress bar; [`Progress::finish`] clears it.
#[derive(Debug)]
pub(super) struct Progress {
    bar: ProgressBar,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    pub(super) fn start(
        enabled: bool,
        duration: Duration,
        start: Instant,
        recorder: Arc<Mutex<Recorder>>,
        in_flight: Arc<AtomicUsize>,
    ) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress { bar: ProgressBar::hidden(), ticker: None };
        }
        let total_ms = duration.as_millis().max(1) as u64;
        let bar = ProgressBar::with_draw_target(Some(total_ms), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{bar:30.cyan/blue} {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                let elapsed = start.elapsed();
                let msg = {
                    let r = recorder.lock();
                    let p99 = r.latency.quantile(0.99).map_or("-".to_owned(), |v| format!("{v:.0}ms"));
                    format!(
                        "{:.0}s/{:.0}s  sent {}  done {}  errors {}  in flight {}  p99 {p99}",
                        elapsed.as_secs_f64(),
                        duration.as_secs_f64(),
                        r.sent,
                        r.ok + r.error_count(),
                        r.error_count() + r.dropped,
                        in_flight.load(Ordering::Relaxed),
                    )
                };
                b.set_position((elapsed.as_millis() as u64).min(total_ms));
                b.set_message(msg);
            }
        });
        Progress { bar, ticker: Some(ticker) }
    }

    pub(super) fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}
