//! What the run measured, in bounded memory: a log-bucketed histogram per
//! metric (buckets 2% wide, each value reported as its bucket's geometric
//! midpoint, so every percentile is within 1% of an exact one; min, max and
//! mean are exact) and counters per outcome.

use std::collections::BTreeMap;

use serde::Serialize;

use super::client::{ErrorKind, Outcome};

/// Smallest value told apart from zero, in ms (1 µs).
const MIN_MS: f64 = 1e-3;
/// Ratio of a bucket's upper to lower edge. The midpoint is within
/// `sqrt(1.02) - 1 < 1%` of every value in the bucket.
const GROWTH: f64 = 1.02;
/// Buckets up to ~10^8 ms (28 hours); longer values land in the last one.
const BUCKETS: usize = 1300;

/// A log-bucketed histogram of milliseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    below_min: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Histogram {
    /// Adds one value (negative values count as 0).
    pub(crate) fn record(&mut self, ms: f64) {
        let ms = if ms.is_finite() { ms.max(0.0) } else { return };
        if self.count == 0 || ms < self.min {
            self.min = ms;
        }
        if self.count == 0 || ms > self.max {
            self.max = ms;
        }
        self.count += 1;
        self.sum += ms;
        if ms < MIN_MS {
            self.below_min += 1;
            return;
        }
        let i = (((ms / MIN_MS).ln() / GROWTH.ln()) as usize).min(BUCKETS - 1);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
    }

    /// The `q` quantile (0..=1), within 1% of the exact value; None when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank == self.count {
            return Some(self.max);
        }
        let mut seen = self.below_min;
        if seen >= rank {
            return Some(self.min);
        }
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                if i == BUCKETS - 1 {
                    return Some(self.max);
                }
                let mid = MIN_MS * GROWTH.powf(i as f64 + 0.5);
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// min, mean, p50, p90, p95, p99, max; None when nothing was recorded.
    pub(crate) fn summary(&self) -> Option<Summary> {
        let q = |x| self.quantile(x).unwrap_or(0.0);
        (self.count > 0).then(|| Summary {
            count: self.count,
            min: self.min,
            mean: self.sum / self.count as f64,
            p50: q(0.50),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            max: self.max,
        })
    }
}

/// Distribution of one metric, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Everything recorded during a run; shared behind a mutex, locked once per
/// finished request.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub sent: u64,
    pub dropped: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub output_tokens: u64,
    pub input_tokens: u64,
    /// Intended send → last byte, of successful requests.
    pub latency: Histogram,
    /// Intended send → first content token (streaming only).
    pub ttft: Histogram,
    /// (latency − TTFT) / (output tokens − 1).
    pub tpot: Histogram,
    /// Gaps between content chunks.
    pub itl: Histogram,
    /// Actual − intended send time, of every sent request.
    pub send_lag: Histogram,
}

impl Recorder {
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub(crate) fn record(&mut self, o: &Outcome) {
        self.send_lag.record(o.send_lag_ms);
        match &o.result {
            Err(kind) => *self.errors.entry(kind.key()).or_default() += 1,
            Ok(s) => {
                self.ok += 1;
                self.latency.record(s.latency_ms);
                self.output_tokens += s.output_tokens.unwrap_or(0);
                self.input_tokens += s.input_tokens.unwrap_or(0);
                if let Some(ttft) = s.ttft_ms {
                    self.ttft.record(ttft);
                    if let Some(n) = s.output_tokens.filter(|&n| n > 1) {
                        self.tpot.record((s.latency_ms - ttft) / (n - 1) as f64);
                    }
                }
                for &gap in &s.itl_ms {
                    self.itl.record(f64::from(gap));
                }
            }
        }
    }

    /// Counts a request that was due while `--max-in-flight` were outstanding.
    pub(crate) fn drop_saturated(&mut self) {
        self.dropped += 1;
    }
}

impl ErrorKind {
    /// The key of `counts.errors` in the report.
    pub(crate) fn key(&self) -> String {
        match self {
            ErrorKind::Http(code) => format!("http_{code}"),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Connect => "connect".into(),
            ErrorKind::StreamBroken => "stream_broken".into(),
            ErrorKind::BadResponse => "bad_response".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut h = Histogram::default();
        let mut exact: Vec<f64> = (1..=10_000).map(|i| f64::from(i) * 0.37).collect();
        for &v in &exact {
            h.record(v);
        }
        exact.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.95, 0.99] {
            let want = exact[(q * exact.len() as f64).ceil() as usize - 1];
            let got = h.quantile(q).unwrap();
            assert!((got - want).abs() / want <= 0.01, "q{q}: {got} vs {want}");
        }
        let s = h.summary().unwrap();
        assert_eq!((s.min, s.max, s.count), (0.37, 3700.0, 10_000));
        assert!(Histogram::default().summary().is_none());
    }

    #[test]
    fn tiny_and_huge_values_are_kept() {
        let mut h = Histogram::default();
        h.record(0.0);
        h.record(-3.0);
        h.record(1e12);
        assert_eq!(h.quantile(0.5), Some(0.0));
        assert_eq!(h.quantile(1.0), Some(1e12));
    }
}
