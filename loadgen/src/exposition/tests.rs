//! Checks against the real captures in `tests/fixtures/`, parsed with
//! `prometheus-parse` (the project's parser), plus a strict line parser for
//! what `prometheus-parse` cannot check (escapes, timestamps on every line).

mod dcgm;
mod vllm;

use std::collections::{BTreeMap, BTreeSet};

use prometheus_parse::{Scrape, Value};

use super::*;

const TS: i64 = 1_774_011_461_288;

fn fixture(path: &str) -> String {
    let full = format!("{}/../tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e} (shared/ beside the repository)"))
}

/// Parses exposition text with `prometheus-parse`. Its name pattern is
/// `\w+`, so it silently drops every line whose metric name has a colon:
/// `vllm:` becomes `vllm__` on both sides of every comparison.
fn parse(text: &str) -> Scrape {
    let text = text.replace("vllm:", "vllm__");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parse")
}

/// Family name -> (type, the label-name sets of its samples), as
/// `prometheus-parse` sees it. Histograms are keyed by their base name with
/// `le` removed; their `_count`/`_sum` samples are folded into them.
type Families = BTreeMap<String, (&'static str, BTreeSet<Vec<String>>)>;

fn families(scrape: &Scrape) -> Families {
    let histograms: BTreeSet<&str> =
        scrape.samples.iter().filter(|s| matches!(s.value, Value::Histogram(_))).map(|s| s.metric.as_str()).collect();
    let mut out = Families::new();
    for s in &scrape.samples {
        let kind = match s.value {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Histogram(_) => "histogram",
            Value::Summary(_) => "summary",
            Value::Untyped(_) => {
                let base = s.metric.strip_suffix("_count").or_else(|| s.metric.strip_suffix("_sum"));
                if base.is_some_and(|b| histograms.contains(b)) {
                    continue;
                }
                "untyped"
            }
        };
        let mut names: Vec<String> = s.labels.keys().cloned().collect();
        names.sort();
        out.entry(s.metric.clone()).or_insert((kind, BTreeSet::new())).1.insert(names);
    }
    out
}

/// One sample line split strictly by the text-format grammar (the value is
/// checked, not kept), with label values unescaped.
#[derive(Debug)]
struct Line {
    name: String,
    labels: Vec<(String, String)>,
    timestamp: Option<i64>,
}

fn strict_lines(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    for raw in text.lines().filter(|l| !l.starts_with('#')) {
        let name_end = raw.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {raw}"));
        let name = &raw[..name_end];
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in {raw}"
        );
        let mut labels = Vec::new();
        let mut rest = &raw[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            loop {
                let (start, c) = chars.next().unwrap_or_else(|| panic!("unterminated labels: {raw}"));
                if c == '}' {
                    rest = &body[start + 1..];
                    break;
                }
                let eq = body[start..].find("=\"").map(|i| start + i).expect("label =\"");
                let label = if c == ',' { &body[start + 1..eq] } else { &body[start..eq] };
                assert!(!label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{raw}");
                while chars.next().is_some_and(|(i, _)| i < eq + 1) {}
                let mut value = String::new();
                loop {
                    match chars.next().map(|(_, c)| c) {
                        Some('"') => break,
                        Some('\\') => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?} in {raw}"),
                        },
                        Some(c) => value.push(c),
                        None => panic!("unterminated value: {raw}"),
                    }
                }
                labels.push((label.to_owned(), value));
            }
        }
        let parts: Vec<&str> = rest.strip_prefix(' ').expect("one space before the value").split(' ').collect();
        assert!(matches!(parts.len(), 1 | 2), "{raw}");
        let value = parts[0];
        assert!(value.parse::<f64>().is_ok() || matches!(value, "+Inf" | "-Inf" | "NaN"), "{raw}");
        let timestamp = parts.get(1).map(|t| t.parse::<i64>().unwrap_or_else(|_| panic!("bad timestamp: {raw}")));
        lines.push(Line { name: name.to_owned(), labels, timestamp });
    }
    lines
}

fn py(v: f64) -> String {
    let mut s = String::new();
    write_py_float(&mut s, v);
    s
}

#[test]
fn floats_are_written_as_prometheus_client_writes_them() {
    // Expectations from Python's floatToGoString(repr(v)).
    let cases: &[(f64, &str)] = &[
        (0.0, "0.0"),
        (1.0, "1.0"),
        (0.25, "0.25"),
        (0.0001, "0.0001"),
        (1e-5, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (-1e-5, "-1e-05"),
        (16.22, "16.22"),
        (123456.0, "123456.0"),
        (1234567.0, "1.234567e+06"),
        (1048576.0, "1.048576e+06"),
        (9035190272.0, "9.035190272e+09"),
        (1774011461.2872875, "1.7740114612872875e+09"),
        (123456789012.5, "1.234567890125e+011"),
        (1e16, "1e+16"),
        (1e22, "1e+22"),
        (-5.0, "-5.0"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ];
    for &(v, want) in cases {
        assert_eq!(py(v), want, "{v:?}");
    }
}

#[test]
fn histogram_observe_and_buckets() {
    let mut h = Histogram::new([1.0, 0.5, 2.0, 1.0]);
    assert_eq!(h.bounds, [0.5, 1.0, 2.0]);
    for v in [0.1, 0.5, 0.7, 1.0, 3.0, f64::NAN] {
        h.observe(v);
    }
    assert_eq!(h.counts, [2, 2, 0, 1]);
    assert_eq!(h.count, 5);
    assert!((h.sum - 5.3).abs() < 1e-12);
    let cumulative: Vec<(f64, u64)> = h.cumulative().collect();
    assert_eq!(cumulative, [(0.5, 2), (1.0, 4), (2.0, 4), (f64::INFINITY, 5)]);

    let le = |h: Histogram| h.bounds.iter().map(|b| py(*b)).collect::<Vec<_>>().join(" ");
    assert_eq!(le(Histogram::vllm_tokens(8192)), "1.0 2.0 5.0 10.0 20.0 50.0 100.0 200.0 500.0 1000.0 2000.0 5000.0");
    assert_eq!(Histogram::vllm_tokens(20_000).bounds.last(), Some(&20_000.0));
    assert_eq!(Histogram::vllm_tokens(1).bounds, [1.0]);
}

#[test]
fn label_values_are_escaped() {
    let tricky = "we\"ird\\model\nname";
    let mut out = String::new();
    let pod = VllmPod::new(tricky, 8192, 1.0);
    render_vllm(&mut out, &pod, None);
    assert!(out.contains(r#"model_name="we\"ird\\model\nname""#));
    let gpu = DcgmGpu { pod: Some(tricky.to_owned()), hostname: "n\\1".to_owned(), ..DcgmGpu::default() };
    render_dcgm(&mut out, &[gpu], None);
    assert!(out.contains(r#"pod="we\"ird\\model\nname""#));
    let lines = strict_lines(&out);
    assert!(lines.len() > 300);
    for line in &lines {
        let get = |k: &str| line.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if line.name.starts_with("vllm:") && line.name != "vllm:cache_config_info" {
            assert_eq!(get("model_name"), Some(tricky), "{line:?}");
        }
        if line.name.starts_with("DCGM_") {
            assert_eq!(get("pod"), Some(tricky), "{line:?}");
            assert_eq!(get("Hostname"), Some("n\\1"), "{line:?}");
        }
    }
}

#[test]
fn timestamps_on_every_sample_or_none() {
    let pod = vllm::busy_pod();
    let gpus = dcgm::h100_node();
    for ts in [Some(TS), None] {
        let mut out = String::new();
        render_vllm(&mut out, &pod, ts);
        render_dcgm(&mut out, &gpus, ts);
        let lines = strict_lines(&out);
        assert!(lines.len() > 500, "{}", lines.len());
        for line in &lines {
            assert_eq!(line.timestamp, ts, "{line:?}");
        }
        if let Some(ts) = ts {
            // Also as prometheus-parse reads them.
            let scrape = parse(&out);
            assert!(scrape.samples.len() > 100);
            for s in &scrape.samples {
                assert_eq!(s.timestamp.timestamp_millis(), ts, "{}", s.metric);
            }
        }
    }
}
