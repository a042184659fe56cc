//! One line of exposition text: a sample, or a comment. Errors are messages for a
//! [`LineError`](super::LineError); they quote at most [`EXCERPT`] characters of the input.

use std::borrow::Cow;

use super::{Limits, MetricType, Sample};

/// The most characters of input quoted in an error message.
const EXCERPT: usize = 40;

/// A `#` line.
pub(super) enum Comment<'a> {
    /// A plain comment.
    Plain,
    /// OpenMetrics `# EOF`.
    Eof,
    /// HELP, TYPE or UNIT.
    Meta(Meta<'a>),
    /// A malformed HELP, TYPE or UNIT line.
    Bad(String),
}

/// Metadata about a family.
pub(super) enum Meta<'a> {
    Help(&'a str, Cow<'a, str>),
    Type(&'a str, MetricType),
    Unit(&'a str, &'a str),
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_blank(b[i]) {
        i += 1;
    }
    i
}

/// The input from `i` on, shortened to [`EXCERPT`] characters, for a message.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// The character at byte `i` (a char boundary), for a message.
fn char_at(s: &str, i: usize) -> char {
    s[i..].chars().next().unwrap_or(' ')
}

/// Splits the next blank-separated token off `s` (which starts at a non-blank).
fn token(s: &str) -> (&str, &str) {
    let end = s.bytes().position(is_blank).unwrap_or(s.len());
    (&s[..end], s[end..].trim_start_matches([' ', '\t']))
}

fn is_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && is_name_start(b[0]) && b[1..].iter().all(|&c| is_name_char(c))
}

/// Reads what follows the `#` of a comment line.
pub(super) fn comment(rest: &str) -> Comment<'_> {
    let rest = rest.trim_start_matches([' ', '\t']);
    let (keyword, rest) = token(rest);
    if keyword == "EOF" {
        return if rest.trim_end().is_empty() { Comment::Eof } else { Comment::Plain };
    }
    if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
        return Comment::Plain;
    }
    let (name, rest) = token(rest);
    if !is_metric_name(name) {
        return Comment::Bad(format!("{keyword} line: invalid metric name {}", excerpt(name)));
    }
    match keyword {
        "HELP" => Comment::Meta(Meta::Help(name, unescape(rest))),
        "TYPE" => {
            let (kind, extra) = token(rest.trim_end());
            match MetricType::from_keyword(kind) {
                Some(t) if extra.is_empty() => Comment::Meta(Meta::Type(name, t)),
                Some(_) => Comment::Bad(format!("TYPE line for {name}: unexpected text {}", excerpt(extra))),
                None => Comment::Bad(format!("TYPE line for {name}: unknown type {}", excerpt(kind))),
            }
        }
        _ => Comment::Meta(Meta::Unit(name, rest.trim_end())),
    }
}

/// Undoes the text format's escapes in a HELP text or label value: `\\`, `\n`, `\"`
/// (0.0.4 HELP has no `\"`, but OpenMetrics HELP does). Any other backslash is kept.
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Parses a sample line (no leading blanks, no line end). `label_hint` sizes the label
/// vector (the previous sample's label count: neighbours usually share a label set).
pub(super) fn sample<'a>(line: &'a str, limits: &Limits, label_hint: usize) -> Result<Sample<'a>, String> {
    let b = line.as_bytes();
    let mut i = 0;
    if !is_name_start(b[0]) {
        return Err(format!("expected a metric name, found {}", excerpt(line)));
    }
    while i < b.len() && is_name_char(b[i]) {
        i += 1;
    }
    let name = &line[..i];
    i = skip_blanks(b, i);
    let mut labels = Vec::new();
    if i < b.len() && b[i] == b'{' {
        labels.reserve(label_hint);
        i = label_set(line, i + 1, limits, &mut labels)?;
        i = skip_blanks(b, i);
    } else if i < b.len() && !is_blank(b[i - 1]) {
        return Err(format!("unexpected {:?} in metric name {}", char_at(line, i), excerpt(name)));
    }
    if i == b.len() {
        return Err(format!("{name}: missing value"));
    }
    let (value, rest) = token(&line[i..]);
    let value = parse_value(value).ok_or_else(|| format!("{name}: invalid value {}", excerpt(value)))?;
    let mut timestamp_ms = None;
    if !rest.is_empty() && !rest.starts_with('#') {
        let (ts, rest) = token(rest);
        timestamp_ms = Some(parse_timestamp(ts).ok_or_else(|| format!("{name}: invalid timestamp {}", excerpt(ts)))?);
        if !rest.is_empty() && !rest.starts_with('#') {
            return Err(format!("{name}: unexpected text after the timestamp: {}", excerpt(rest)));
        }
    }
    Ok(Sample { name, labels, value, timestamp_ms })
}

/// Parses label pairs from byte `i` (just past `{`) to the closing `}`; returns the index
/// after it.
fn label_set<'a>(
    line: &'a str,
    mut i: usize,
    limits: &Limits,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<usize, String> {
    let b = line.as_bytes();
    loop {
        i = skip_blanks(b, i);
        if i == b.len() {
            return Err("unterminated label set (no '}')".into());
        }
        if b[i] == b'}' {
            return Ok(i + 1);
        }
        if !is_label_start(b[i]) {
            return Err(format!("expected a label name or '}}', found {}", excerpt(&line[i..])));
        }
        let start = i;
        while i < b.len() && is_label_char(b[i]) {
            i += 1;
        }
        let label = &line[start..i];
        i = skip_blanks(b, i);
        if i == b.len() || b[i] != b'=' {
            return Err(format!("expected '=' after label name {label:?}"));
        }
        i = skip_blanks(b, i + 1);
        if i == b.len() || b[i] != b'"' {
            return Err(format!("expected '\"' to open the value of label {label:?}"));
        }
        i += 1;
        let value_start = i;
        let mut escaped = false;
        loop {
            match b[i..].iter().position(|&c| c == b'"' || c == b'\\') {
                None => return Err(format!("unterminated value of label {label:?}")),
                Some(at) if b[i + at] == b'"' => {
                    i += at;
                    break;
                }
                Some(at) => {
                    escaped = true;
                    i += at + 2;
                    if i >= b.len() {
                        return Err(format!("unterminated value of label {label:?}"));
                    }
                }
            }
        }
        let raw = &line[value_start..i];
        if raw.len() > limits.max_label_value_bytes {
            return Err(format!(
                "value of label {label:?} is {} bytes, longer than the limit of {} (max_label_value_bytes)",
                raw.len(),
                limits.max_label_value_bytes
            ));
        }
        if labels.len() == limits.max_labels {
            return Err(format!("more than {} labels (limit max_labels)", limits.max_labels));
        }
        if labels.iter().any(|(n, _)| *n == label) {
            return Err(format!("duplicate label {label:?}"));
        }
        labels.push((label, if escaped { unescape(raw) } else { Cow::Borrowed(raw) }));
        i = skip_blanks(b, i + 1);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i + 1),
            Some(_) => return Err(format!("expected ',' or '}}' after the value of label {label:?}")),
            None => return Err("unterminated label set (no '}')".into()),
        }
    }
}

/// A sample value: a float, including `NaN`, `+Inf` and `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    // Rust also reads "infinity" and "inf" in any case; so does Go's ParseFloat, which
    // Prometheus uses, so nothing is accepted here that Prometheus refuses.
    s.parse::<f64>().ok()
}

/// A timestamp: integer milliseconds (0.0.4), or float seconds (OpenMetrics).
fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let seconds = s.parse::<f64>().ok().filter(|v| v.is_finite())?;
    let ms = (seconds * 1000.0).round();
    (ms.abs() < 9.2e18).then_some(ms as i64)
}
