//! The small conversions every part of the analyzer shares, in one low-level module that
//! imports nothing else of the crate but its error: windows and times parsed from people,
//! and numbers and times written for them.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{Error, Result};
use crate::rollup::MINUTE_NS;

/// Parses a window length: a whole number and a unit, `90s`, `30m`, `2h`, `1d` (or a
/// sum of them, `1h30m`), at least a minute.
pub fn parse_window(s: &str) -> Result<i64> {
    let bad = |why: &str| Error::Usage(format!("window {s:?}: {why} (examples: 30m, 2h, 1d, 1h30m)"));
    let mut total: i64 = 0;
    let mut num = String::new();
    for ch in s.trim().chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let unit: i64 = match ch {
            's' => 1_000_000_000,
            'm' => MINUTE_NS,
            'h' => 60 * MINUTE_NS,
            'd' => 24 * 60 * MINUTE_NS,
            _ => return Err(bad(&format!("unknown unit {ch:?}"))),
        };
        let n: i64 = num.parse().map_err(|_| bad("a unit needs a number before it"))?;
        num.clear();
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| bad("too long"))?;
    }
    if !num.is_empty() {
        return Err(bad("a number needs a unit"));
    }
    if total < MINUTE_NS {
        return Err(bad("must be at least a minute"));
    }
    Ok(total)
}

/// Parses an RFC 3339 time to ns since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| Error::Usage(format!("time {s:?}: not an RFC 3339 time such as 2026-11-22T14:30:00Z")))
}

/// RFC 3339 (seconds, `Z`) of ns since the epoch.
pub fn rfc3339(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `HH:MM:SS` of ns since the epoch (UTC).
pub fn hm(ns: i64) -> String {
    rfc3339(ns)[11..19].to_string()
}

/// `1h`, `30m`, `3d`, `5h36m`, `2d19h12m` for window lengths (whole minutes), as
/// Prometheus writes durations.
pub fn window_name(ns: i64) -> String {
    let m = ns / MINUTE_NS;
    let (d, h, mm) = (m / 1440, m % 1440 / 60, m % 60);
    let mut out = String::new();
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if mm > 0 || out.is_empty() {
        out.push_str(&format!("{mm}m"));
    }
    out
}

/// Milliseconds for people: `420 ms`, `1.87 s`, `12.5 s`.
pub fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.0} ms")
    }
}

/// A p-value for people.
pub fn p_text(p: f64) -> String {
    if p < 0.001 { "<0.001".into() } else { format!("{p:.3}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_bad_ones_are_named() {
        assert_eq!(parse_window("30m").unwrap(), 30 * MINUTE_NS);
        assert_eq!(parse_window("1h30m").unwrap(), 90 * MINUTE_NS);
        assert_eq!(parse_window("1d").unwrap(), 1440 * MINUTE_NS);
        for bad in ["", "30", "5x", "m", "30s"] {
            let e = parse_window(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert!(parse_time("2026-11-22T14:30:00Z").is_ok());
        assert!(parse_time("yesterday").unwrap_err().to_string().contains("yesterday"));
    }

    #[test]
    fn numbers_and_times_for_people() {
        assert_eq!((ms(420.4), ms(1870.0), ms(12_500.0)), ("420 ms".into(), "1.87 s".into(), "12.5 s".into()));
        assert_eq!((window_name(90 * MINUTE_NS), window_name(2880 * MINUTE_NS)), ("1h30m".into(), "2d".into()));
        assert_eq!(window_name(4032 * MINUTE_NS), "2d19h12m");
        assert_eq!(p_text(0.0001), "<0.001");
        let t = parse_time("2026-11-22T14:30:05Z").unwrap();
        assert_eq!((rfc3339(t), hm(t)), ("2026-11-22T14:30:05Z".into(), "14:30:05".into()));
    }
}
