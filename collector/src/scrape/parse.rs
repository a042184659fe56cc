//! A parser of the Prometheus text exposition format 0.0.4, tolerant of OpenMetrics text.
//!
//! We do not use `prometheus-parse` 0.2: it silently skips every metric whose name has a
//! colon (all of vLLM's `vllm:*` series) and splits label sets on commas, so a label value
//! containing `,`, `}` or `\"` is cut apart (see BENCHMARKS.md, "Scrape parsing").
//!
//! What is accepted, line by line (lines end in `\n` or `\r\n`; leading blanks are skipped):
//! - blank lines, and comments (`#` not followed by `HELP`, `TYPE`, `UNIT` or `EOF`): ignored;
//! - `# HELP name text` (text unescaped: `\\`, `\n`, `\"`), `# TYPE name type` (the 0.0.4
//!   types plus OpenMetrics' `unknown`, `gaugehistogram`, `info`, `stateset`), `# UNIT name
//!   unit`; a second HELP or TYPE for one name is a line error and the first one is kept;
//! - `# EOF` (OpenMetrics): the end; anything but blank lines after it is one line error;
//! - samples: `name[{label="value",...}] value [timestamp] [# exemplar]`, where
//!   `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`,
//!   blanks may surround every token, a trailing comma may end the label set, and label
//!   values are unescaped (`\\`, `\"`, `\n`; any other escape is kept as written, as
//!   Prometheus does). Values are floats (`NaN`, `+Inf`, `-Inf` included). An integer
//!   timestamp is milliseconds (0.0.4); one with a fraction or exponent is OpenMetrics
//!   seconds and is converted to milliseconds. An OpenMetrics exemplar is ignored.
//!
//! A malformed line is a [`LineError`] and is skipped; the rest is kept. The whole text is
//! refused with [`ParseError::NotExposition`] when it is clearly something else:
//! 1. it contains a NUL byte (binary), or is not UTF-8 ([`parse_bytes`]);
//! 2. its first line that is neither blank nor a comment does not start with a metric-name
//!    character (an HTML page, JSON, `404 page not found`);
//! 3. 16 lines are malformed before any is well formed (checked as it happens, so a large
//!    garbage body costs little), or, at the end, more lines are malformed than well
//!    formed (samples and HELP/TYPE/UNIT lines count as well formed; comments do not).
//!
//! Memory is bounded by [`Limits`]: the body size, the number of samples (beyond it the
//! scrape is refused, as Prometheus' `sample_limit` does), and per line its length, label
//! count and label value length (beyond those the line is a line error). At most
//! [`Limits::max_line_errors`] line errors are kept; [`Parsed::bad_lines`] counts them all.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

mod line;

/// How many malformed lines, with none well formed, make the text "not exposition".
const GARBAGE_LINES: usize = 16;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The full series name as written, e.g. `vllm:e2e_request_latency_seconds_bucket`.
    pub name: &'a str,
    /// Label names and unescaped values, in the order written.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The value (may be NaN or infinite).
    pub value: f64,
    /// The explicit timestamp in milliseconds since the epoch, if the line has one.
    pub timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_ref())
    }
}

/// A metric family's type, from its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`: `_bucket` (with `le`), `_sum`, `_count` series.
    Histogram,
    /// OpenMetrics `gaugehistogram`: `_bucket`, `_gsum`, `_gcount` series.
    GaugeHistogram,
    /// `summary`: series with `quantile`, `_sum`, `_count`.
    Summary,
    /// OpenMetrics `info` (series `_info`).
    Info,
    /// OpenMetrics `stateset`.
    StateSet,
    /// `untyped` (0.0.4), `unknown` (OpenMetrics), or no TYPE line at all.
    Untyped,
}

impl MetricType {
    /// Reads a TYPE keyword (case-sensitive, as both formats define them).
    pub fn from_keyword(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "gaugehistogram" => Self::GaugeHistogram,
            "summary" => Self::Summary,
            "info" => Self::Info,
            "stateset" => Self::StateSet,
            "untyped" | "unknown" => Self::Untyped,
            _ => return None,
        })
    }

    /// The keyword, as written in a TYPE line (`untyped` for [`MetricType::Untyped`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::GaugeHistogram => "gaugehistogram",
            Self::Summary => "summary",
            Self::Info => "info",
            Self::StateSet => "stateset",
            Self::Untyped => "untyped",
        }
    }

    /// The series suffixes this type adds to its family name.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Self::Counter => &["_total", "_created"],
            Self::Histogram => &["_bucket", "_sum", "_count", "_created"],
            Self::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            Self::Summary => &["_sum", "_count", "_created"],
            Self::Info => &["_info"],
            Self::Gauge | Self::StateSet | Self::Untyped => &[],
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bounds on what one scrape may cost. The defaults fit a node with 64 GPUs and several
/// model-server engines with room to spare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes of text (default 32 MiB). Beyond it: [`ParseError::TooLarge`].
    pub max_bytes: usize,
    /// The most samples (series) per scrape (default 20,000). Beyond it:
    /// [`ParseError::TooManySamples`], and nothing of the scrape is kept.
    pub max_samples: usize,
    /// The longest line in bytes (default 16 KiB); a longer line is a line error.
    pub max_line_bytes: usize,
    /// The most labels on one sample (default 64); more is a line error.
    pub max_labels: usize,
    /// The longest label value in bytes as written (default 4 KiB); longer is a line error.
    pub max_label_value_bytes: usize,
    /// How many line errors are kept (default 100); the rest are only counted.
    pub max_line_errors: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 32 << 20,
            max_samples: 20_000,
            max_line_bytes: 16 << 10,
            max_labels: 64,
            max_label_value_bytes: 4 << 10,
            max_line_errors: 100,
        }
    }
}

/// A malformed line, skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why a whole scrape was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body is not Prometheus text (see the module documentation for the rule).
    #[error("not Prometheus text: {0}")]
    NotExposition(String),
    /// The body exceeds [`Limits::max_bytes`].
    #[error("scrape body is {bytes} bytes, more than the limit of {limit} (max_bytes)")]
    TooLarge {
        /// The body's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The target exposes more samples than [`Limits::max_samples`].
    #[error("target exposes more than {limit} series (limit max_samples)")]
    TooManySamples {
        /// The limit.
        limit: usize,
    },
}

/// The result of parsing one scrape. Everything borrows from the text.
#[derive(Debug, Default, Clone)]
pub struct Parsed<'a> {
    /// The samples, in the order written.
    pub samples: Vec<Sample<'a>>,
    /// Family name -> type, from `# TYPE` lines.
    pub types: HashMap<&'a str, MetricType>,
    /// Family name -> help text (unescaped), from `# HELP` lines.
    pub helps: HashMap<&'a str, Cow<'a, str>>,
    /// Family name -> unit, from OpenMetrics `# UNIT` lines.
    pub units: HashMap<&'a str, &'a str>,
    /// The first [`Limits::max_line_errors`] malformed lines.
    pub errors: Vec<LineError>,
    /// How many lines were malformed (may exceed `errors.len()`).
    pub bad_lines: usize,
}

impl Parsed<'_> {
    /// The family a series belongs to, and its type, using the TYPE table: the name itself
    /// if it has a TYPE line, else the name less the suffix its type defines (`_bucket`,
    /// `_sum`, `_count` for a histogram; `_total`, `_created` for a counter; ...). A series
    /// no TYPE line accounts for is its own family, [`MetricType::Untyped`].
    ///
    /// `foo_count` belongs to `foo` only if `foo` is a histogram or summary: a gauge `foo`
    /// and an untyped `foo_count` stay apart.
    pub fn family_of<'n>(&self, series: &'n str) -> (&'n str, MetricType) {
        if let Some(&t) = self.types.get(series) {
            return (series, t);
        }
        for suffix in ["_bucket", "_sum", "_count", "_created", "_total", "_gsum", "_gcount", "_info"] {
            if let Some(base) = series.strip_suffix(suffix)
                && let Some(&t) = self.types.get(base)
                && t.suffixes().contains(&suffix)
            {
                return (base, t);
            }
        }
        (series, MetricType::Untyped)
    }

    fn line_error(&mut self, line: usize, message: String, limits: &Limits) {
        self.bad_lines += 1;
        if self.errors.len() < limits.max_line_errors {
            self.errors.push(LineError { line, message });
        }
    }
}

/// Parses a scrape body given as bytes: refuses text that is not UTF-8, then [`parse`].
pub fn parse_bytes<'a>(body: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, ParseError> {
    if body.len() > limits.max_bytes {
        return Err(ParseError::TooLarge { bytes: body.len(), limit: limits.max_bytes });
    }
    match std::str::from_utf8(body) {
        Ok(text) => parse(text, limits),
        Err(e) => {
            let at = e.valid_up_to();
            let line = 1 + body[..at].iter().filter(|&&b| b == b'\n').count();
            Err(ParseError::NotExposition(format!("invalid UTF-8 at byte {at} (line {line})")))
        }
    }
}

/// Parses one scrape of Prometheus text (0.0.4, or OpenMetrics text). See the module
/// documentation for the grammar, the line errors and when the whole text is refused.
pub fn parse<'a>(text: &'a str, limits: &Limits) -> Result<Parsed<'a>, ParseError> {
    if text.len() > limits.max_bytes {
        return Err(ParseError::TooLarge { bytes: text.len(), limit: limits.max_bytes });
    }
    if let Some(at) = text.bytes().position(|b| b == 0) {
        let line = 1 + text.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        return Err(ParseError::NotExposition(format!("NUL byte at line {line} (binary data?)")));
    }
    let mut out = Parsed::default();
    let mut good = 0usize;
    let mut seen_sample_line = false;
    let mut label_hint = 0usize;
    let mut lines = text.split('\n').enumerate();
    while let Some((index, raw)) = lines.next() {
        let number = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.len() > limits.max_line_bytes {
            let msg = format!(
                "line is {} bytes, longer than the limit of {} (max_line_bytes)",
                raw.len(),
                limits.max_line_bytes
            );
            out.line_error(number, msg, limits);
            continue;
        }
        let line = raw.trim_start_matches([' ', '\t']);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            match line::comment(comment) {
                line::Comment::Plain => {}
                line::Comment::Eof => {
                    if let Some((after, _)) = lines.find(|(_, l)| !l.trim().is_empty()) {
                        out.line_error(after + 1, "text after # EOF".into(), limits);
                    }
                    break;
                }
                line::Comment::Meta(meta) => match record_meta(&mut out, meta) {
                    Ok(()) => good += 1,
                    Err(msg) => out.line_error(number, msg, limits),
                },
                line::Comment::Bad(msg) => out.line_error(number, msg, limits),
            }
            continue;
        }
        if !seen_sample_line {
            seen_sample_line = true;
            let first = line.chars().next().unwrap_or(' ');
            if !(first.is_ascii_alphabetic() || first == '_' || first == ':') {
                return Err(ParseError::NotExposition(format!("line {number} starts with {first:?}")));
            }
        }
        match line::sample(line, limits, label_hint) {
            Ok(sample) => {
                if out.samples.len() == limits.max_samples {
                    return Err(ParseError::TooManySamples { limit: limits.max_samples });
                }
                label_hint = sample.labels.len();
                out.samples.push(sample);
                good += 1;
            }
            Err(msg) => {
                out.line_error(number, msg, limits);
                if good == 0 && out.bad_lines >= GARBAGE_LINES {
                    return Err(garbage(&out, good));
                }
            }
        }
    }
    if out.bad_lines > good {
        return Err(garbage(&out, good));
    }
    Ok(out)
}

fn garbage(out: &Parsed<'_>, good: usize) -> ParseError {
    let first = out.errors.first().map(|e| format!(" (first: {e})")).unwrap_or_default();
    ParseError::NotExposition(format!(
        "{} malformed lines and only {good} well-formed before giving up{first}",
        out.bad_lines
    ))
}

fn record_meta<'a>(out: &mut Parsed<'a>, meta: line::Meta<'a>) -> Result<(), String> {
    match meta {
        line::Meta::Help(name, text) => {
            if out.helps.contains_key(name) {
                return Err(format!("second HELP line for {name}"));
            }
            out.helps.insert(name, text);
        }
        line::Meta::Type(name, t) => {
            if out.types.contains_key(name) {
                return Err(format!("second TYPE line for {name}"));
            }
            out.types.insert(name, t);
        }
        line::Meta::Unit(name, unit) => {
            out.units.insert(name, unit);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
