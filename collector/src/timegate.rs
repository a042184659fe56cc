//! Which span times an export may carry.
//!
//! Times are data time (what the span says), and the store partitions by the hour of that
//! time, so a hostile or broken clock can cost: a span older than retention is acknowledged
//! and then removed at the next flush; one far in the future never expires; a time past
//! 2^63 ns does not fit a timestamp and wraps; and one export whose spans spread over
//! thousands of hours makes thousands of Parquet segments. Spans outside the window are
//! refused one by one (OTLP `partial_success`, with the reason), as are spans that would
//! add an hour beyond [`TimeRules::max_hours_per_export`].
//!
//! The window is measured from the wall clock when the export arrives: it is an
//! admission rule, not an interpretation of the data.

use std::time::Duration;

/// The rules (from `collector.otlp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRules {
    /// Oldest start accepted, before now; `None`: any age.
    pub max_age: Option<Duration>,
    /// Latest start accepted, after now; `None`: any time that fits.
    pub max_ahead: Option<Duration>,
    /// Distinct hours (of start time) one export may touch; `0`: any number.
    pub max_hours_per_export: usize,
}

impl TimeRules {
    /// Only what can never be stored right: times past 2^63 ns.
    pub const TRUSTED: TimeRules = TimeRules { max_age: None, max_ahead: None, max_hours_per_export: 0 };
}

const HOUR_NS: u64 = 3_600_000_000_000;

/// The rules applied to one export, from one reading of the clock.
#[derive(Debug)]
pub(crate) struct TimeGate {
    min: u64,
    max: u64,
    rules: TimeRules,
    hours: Vec<u64>,
}

impl TimeGate {
    pub(crate) fn new(rules: TimeRules, now_ns: u64) -> TimeGate {
        let min = rules.max_age.map_or(0, |a| now_ns.saturating_sub(a.as_nanos() as u64));
        let max = rules.max_ahead.map_or(i64::MAX as u64, |a| now_ns.saturating_add(a.as_nanos() as u64));
        TimeGate { min, max: max.min(i64::MAX as u64), rules, hours: Vec::new() }
    }

    /// Why a span with these times is refused, if it is.
    pub(crate) fn check(&mut self, start: u64, end: u64) -> Result<(), String> {
        let limit = i64::MAX as u64;
        if start > limit || end > limit {
            return Err(format!(
                "time {} ns is past 2262-04-11T23:47:16Z and does not fit a timestamp",
                start.max(end)
            ));
        }
        if start < self.min {
            let age = self.rules.max_age.unwrap_or_default();
            return Err(format!(
                "start_time_unix_nano {start} is older than {} (the store keeps no older data)",
                human(age)
            ));
        }
        if start > self.max {
            let ahead = self.rules.max_ahead.unwrap_or_default();
            return Err(format!("start_time_unix_nano {start} is more than {} in the future", human(ahead)));
        }
        if self.rules.max_hours_per_export > 0 {
            let hour = start / HOUR_NS;
            if !self.hours.contains(&hour) {
                if self.hours.len() >= self.rules.max_hours_per_export {
                    return Err(format!(
                        "the export's spans start in more than {} distinct hours",
                        self.rules.max_hours_per_export
                    ));
                }
                self.hours.push(hour);
            }
        }
        Ok(())
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{s}s"),
    }
}

/// Now, in ns since the epoch.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_000_000_000_000_000;

    #[test]
    fn the_window_and_the_hours_are_enforced_with_reasons() {
        let rules = TimeRules {
            max_age: Some(Duration::from_secs(7 * 86_400)),
            max_ahead: Some(Duration::from_secs(3_600)),
            max_hours_per_export: 2,
        };
        let mut g = TimeGate::new(rules, NOW);
        g.check(NOW, NOW + 1).unwrap();
        let old = g.check(NOW - 8 * 86_400 * 1_000_000_000, NOW).unwrap_err();
        assert!(old.contains("older than 7d"), "{old}");
        let ahead = g.check(NOW + 2 * HOUR_NS, NOW + 2 * HOUR_NS).unwrap_err();
        assert!(ahead.contains("more than 1h in the future"), "{ahead}");
        let wrap = g.check(1 << 63, 1 << 63).unwrap_err();
        assert!(wrap.contains("does not fit"), "{wrap}");
        g.check(NOW - HOUR_NS, NOW).unwrap();
        let third = g.check(NOW - 2 * HOUR_NS, NOW).unwrap_err();
        assert!(third.contains("more than 2 distinct hours"), "{third}");
        g.check(NOW - HOUR_NS + 5, NOW).unwrap();
    }

    #[test]
    fn trusted_rules_take_any_time_that_fits() {
        let mut g = TimeGate::new(TimeRules::TRUSTED, NOW);
        for h in 0..5_000u64 {
            g.check(h * HOUR_NS + 1, h * HOUR_NS + 2).unwrap();
        }
        g.check(i64::MAX as u64, i64::MAX as u64).unwrap();
        assert!(g.check(i64::MAX as u64 + 1, i64::MAX as u64 + 1).is_err());
    }
}
