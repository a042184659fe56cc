//! The query parameters of the dashboard's pages and its JSON endpoints, read by hand so
//! that a bad or unknown one is refused with a 400 that names it (not serde's wording).

use std::collections::BTreeMap;

use slo_analyzer::MINUTE_NS;
use slo_analyzer::text::{parse_time, parse_window, window_name};

/// Longest range a page or series may cover: long enough for an SLO period of 30 days
/// plus a margin, short enough that one request cannot ask for years of buckets.
pub(crate) const MAX_RANGE: i64 = 35 * 1440 * MINUTE_NS;

/// The earliest `at`: 1970-01-01 (ns since the epoch), so that a range and the SLO
/// periods before it never leave the i64 range.
pub(crate) const EARLIEST_AT: i64 = 0;
/// The latest `at`: 2200-01-01.
pub(crate) const LATEST_AT: i64 = 7_258_118_400_000_000_000;

/// A parameter that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadParam(pub String);

impl std::fmt::Display for BadParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parameters of one request: known names only, each at most once.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// Reads the raw query string, accepting only `allowed` names.
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, BadParam> {
        let mut values = BTreeMap::new();
        for (k, v) in form_urlencoded(raw.unwrap_or("")) {
            if !allowed.contains(&k.as_str()) {
                return Err(BadParam(format!(
                    "unknown parameter {k:?} (this page takes: {})",
                    if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }
                )));
            }
            if values.insert(k.clone(), v).is_some() {
                return Err(BadParam(format!("parameter {k:?} is given twice")));
            }
        }
        Ok(Params { values })
    }

    /// The value of `name`; an empty value counts as absent (an empty form field).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// The range asked for: `window` (default `default_window`) ending at `at` (`None`:
    /// the live view, ending at the newest data).
    pub(crate) fn range(&self, default_window: i64) -> Result<RangeAsked, BadParam> {
        let window = match self.get("window") {
            Some(w) => parse_window(w).map_err(|e| BadParam(format!("parameter \"window\": {e}")))?,
            None => default_window,
        };
        if window > MAX_RANGE {
            return Err(BadParam(format!(
                "parameter \"window\": {} is longer than the longest range, {}",
                window_name(window),
                window_name(MAX_RANGE)
            )));
        }
        let at = match self.get("at") {
            Some(a) => {
                let t = parse_time(a.trim()).map_err(|e| BadParam(format!("parameter \"at\": {e}")))?;
                if !(EARLIEST_AT..=LATEST_AT).contains(&t) {
                    return Err(BadParam(format!("parameter \"at\": {a:?} is not between 1970 and 2200")));
                }
                Some(t)
            }
            None => None,
        };
        Ok(RangeAsked { window, at })
    }
}

/// A range before it is placed on the data: a length and, unless live, its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RangeAsked {
    /// Length, ns.
    pub window: i64,
    /// End, ns; `None` is the live view (the newest data).
    pub at: Option<i64>,
}

impl RangeAsked {
    /// `[from, to)` given the newest minute's end; the end is put on a whole minute.
    pub(crate) fn place(&self, newest_end: i64) -> (i64, i64) {
        // On the minute, or the end of the minute it falls in; `at` is bounded by
        // [`Params::range`], so this cannot overflow.
        let to = self
            .at
            .map_or(newest_end, |t| t.div_euclid(MINUTE_NS) * MINUTE_NS + MINUTE_NS * i64::from(t % MINUTE_NS != 0));
        (to - self.window, to)
    }
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte, a
/// malformed escape kept as it is); bytes that are not UTF-8 become U+FFFD.
pub(crate) fn form_urlencoded(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Percent-encodes a value for a URL's query or path.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_repeated_and_bad_parameters_are_named() {
        let e = Params::parse(Some("windw=1h"), &["window", "at"]).unwrap_err();
        assert!(e.0.contains("\"windw\"") && e.0.contains("window, at"), "{e}");
        let e = Params::parse(Some("at=1&at=2"), &["at"]).unwrap_err();
        assert!(e.0.contains("twice"), "{e}");
        let p = Params::parse(Some("window=1x"), &["window"]).unwrap();
        assert!(p.range(MINUTE_NS).unwrap_err().0.starts_with("parameter \"window\""));
        let p = Params::parse(Some("at=yesterday"), &["at"]).unwrap();
        assert!(p.range(MINUTE_NS).unwrap_err().0.starts_with("parameter \"at\""));
        let p = Params::parse(Some("window=400d"), &["window"]).unwrap();
        assert!(p.range(MINUTE_NS).unwrap_err().0.contains("longest"));
    }

    #[test]
    fn values_are_decoded_and_empty_ones_are_absent() {
        let p = Params::parse(Some("at=2026-12-04T10%3A00%3A00Z&window=&object=a+b%2"), &["at", "window", "object"])
            .unwrap();
        assert_eq!(p.get("at"), Some("2026-12-04T10:00:00Z"));
        assert_eq!(p.get("window"), None);
        assert_eq!(p.get("object"), Some("a b%2"));
        let r = p.range(60 * MINUTE_NS).unwrap();
        assert_eq!(r.window, 60 * MINUTE_NS);
        let (from, to) = r.place(0);
        assert_eq!(to - from, 60 * MINUTE_NS);
        assert_eq!(to, parse_time("2026-12-04T10:00:00Z").unwrap());
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn hostile_query_strings_are_refused_or_read_never_a_panic() {
        let long = "a".repeat(100_000);
        let cases = [
            "%",
            "%%",
            "%z",
            "%zz",
            "%e9",
            "at=%ff%fe%00",
            "=",
            "&&&",
            "window=%",
            "at=%25",
            "window=1h%00",
            "window=9999999999999999999d",
            "window=-1h",
            "window=1h1h1h1h",
            "at=2026-13-40T99:99:99Z",
            "at=+275760-09-13T00:00:00Z",
            "at=1970-01-01T00:00:00Z",
            "at=2262-04-11T23:47:16Z",
            "at=1677-09-21T00:12:44Z",
            "at=2199-12-31T23:59:59Z",
            long.as_str(),
        ];
        for raw in cases {
            if let Ok(p) = Params::parse(Some(raw), &["window", "at", "a"])
                && let Ok(r) = p.range(60 * MINUTE_NS)
            {
                let (from, to) = r.place(i64::MAX / 2);
                assert!(from <= to, "{raw}");
            }
        }
        let p = Params::parse(Some("at=%ff%fe"), &["at"]).unwrap();
        assert_eq!(p.get("at"), Some("\u{fffd}\u{fffd}"), "bytes that are not UTF-8 are replaced");
        assert!(p.range(MINUTE_NS).unwrap_err().0.starts_with("parameter \"at\""));
        for far in ["2262-04-11T23:47:16Z", "1677-09-21T00:12:44Z", "1969-12-31T23:59:59Z"] {
            let p = Params::parse(Some(&format!("at={far}")), &["at"]).unwrap();
            assert!(p.range(MINUTE_NS).unwrap_err().0.contains("between 1970 and 2200"), "{far}");
        }
        assert_eq!(slo_analyzer::text::rfc3339(LATEST_AT), "2200-01-01T00:00:00Z");
    }

    #[test]
    fn a_time_inside_a_minute_ends_the_range_after_that_minute() {
        let r = RangeAsked { window: MINUTE_NS, at: Some(parse_time("2026-12-04T10:00:30Z").unwrap()) };
        assert_eq!(r.place(0).1, parse_time("2026-12-04T10:01:00Z").unwrap());
    }
}
