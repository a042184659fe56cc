//! Prometheus text exposition (format 0.0.4) of the simulated exporters: a
//! vLLM v1 model server's `/metrics` and NVIDIA dcgm-exporter's `/metrics`.
//!
//! The simulator keeps per-pod model-server state ([`VllmPod`]) and per-GPU
//! state ([`DcgmGpu`]) and calls [`render_vllm`] / [`render_dcgm`] to serve a
//! scrape or to write a Prometheus text file for `slo import`. The output is
//! byte-for-byte in the style of the real exporters (checked against the real
//! captures in `tests/fixtures/`), so a scraper cannot tell them apart:
//!
//! - vLLM is Python `prometheus_client`: labels sorted by name, every value a
//!   float in Go style (`0.0`, `1.7740114612872875e+09`), counters as a
//!   `_total` family followed by a `_created` gauge family, histograms as
//!   `_bucket` (cumulative, `le` sorted among the labels), `_count`, `_sum`.
//! - dcgm-exporter is Go: fixed labels `gpu, UUID, pci_bus_id, device,
//!   modelName, Hostname, DCGM_FI_DRIVER_VERSION`, then the pod attribution
//!   labels in sorted order; integer fields as integers, float fields as
//!   `%f` (`16.365000`).
//!
//! With `timestamp_ms: Some(ts)` every sample line ends in ` ts` (milliseconds
//! since the epoch), as Prometheus text files for backfill carry them.
//!
//! Renderers append to a caller-owned `String` and allocate nothing per
//! sample, so one buffer can be reused across hundreds of pods per second.

mod dcgm;
mod histogram;
mod vllm;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;

pub(crate) use dcgm::{DcgmGpu, render_dcgm};
pub(crate) use histogram::Histogram;
pub(crate) use vllm::{VllmPod, render_vllm};

/// Writes the `# HELP` and `# TYPE` lines of one metric family.
fn write_header(out: &mut String, name: &str, help: &str, kind: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
}

/// Writes `name="value"` with the value escaped as the text format requires
/// (backslash, double quote and line feed).
fn write_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    let mut rest = value;
    while let Some(i) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Ends a sample line: the optional millisecond timestamp and the newline.
fn end_sample(out: &mut String, timestamp_ms: Option<i64>) {
    if let Some(ts) = timestamp_ms {
        // Writing to a String cannot fail.
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
}

/// A fixed-size stack buffer for formatting one float without allocating.
struct FloatBuf {
    bytes: [u8; 40],
    len: usize,
}

impl FloatBuf {
    fn new() -> Self {
        FloatBuf { bytes: [0; 40], len: 0 }
    }

    fn as_str(&self) -> &str {
        // Only `write_str` fills the buffer, with whole UTF-8 strings.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("NaN")
    }
}

impl std::fmt::Write for FloatBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes a float as Python `prometheus_client` does (`floatToGoString`):
/// Python's shortest round-trip `repr` (`1.0`, `0.25`, `1e-05`, `1e+16`),
/// except that positive numbers with more than six integer digits switch to
/// Go's exponent form (`1.048576e+06`, `1.7740114612872875e+09`).
fn write_py_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let mut buf = FloatBuf::new();
    // Rust's `{:?}` is the same shortest round-trip digits as Python's repr,
    // and switches to exponent form at the same thresholds (1e-4, 1e16).
    let _ = write!(buf, "{v:?}");
    let s = buf.as_str();
    if let Some(e) = s.find('e') {
        // Rust writes `1e-5` / `1e16`; Python writes `1e-05` / `1e+16`.
        out.push_str(&s[..=e]);
        let exp = &s[e + 1..];
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        out.push_str(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    let dot = s.find('.').unwrap_or(s.len());
    if v > 0.0 && dot > 6 {
        // mantissa = s[0] "." s[1..dot] s[dot+1..], then rstrip('0.')
        let start = out.len();
        out.push_str(&s[..1]);
        out.push('.');
        out.push_str(&s[1..dot]);
        out.push_str(s.get(dot + 1..).unwrap_or(""));
        let trimmed = out[start..].trim_end_matches(['0', '.']).len();
        out.truncate(start + trimmed);
        let _ = write!(out, "e+0{}", dot - 1);
    } else {
        out.push_str(s);
    }
}
