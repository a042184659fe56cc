//! `slo import`: OTLP files into the store through the same path as live data.
//!
//! Accepted: an `ExportTraceServiceRequest` (or `TracesData`, the same bytes) as protobuf
//! (`.pb`, `.binpb`, `.otlp`, `.proto`), as OTLP/JSON (`.json`), or as JSON lines, one
//! request per line (`.jsonl`, `.ndjson`, what the OpenTelemetry Collector's file exporter
//! writes); any of them gzipped (`.gz`). Without a known extension the content decides.

use std::path::Path;

use crate::error::{Error, Result};
use crate::otlp::Receiver;
use crate::otlp::decode::{self, Encoding};

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Files read.
    pub files: usize,
    /// Export requests found.
    pub exports: usize,
    /// Spans stored.
    pub spans: usize,
    /// Spans rejected (with the first reason).
    pub rejected: i64,
    /// The first rejection message.
    pub first_rejection: Option<String>,
}

const MAX_FILE: usize = 4 << 30;

/// Imports one file.
pub async fn import_file(rx: &Receiver, path: &Path, summary: &mut ImportSummary) -> Result<()> {
    let name = path.display().to_string();
    let mut bytes = std::fs::read(path).map_err(|source| Error::File { path: name.clone(), source })?;
    let mut lower = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if lower.ends_with(".gz") || bytes.starts_with(&[0x1f, 0x8b]) {
        bytes = decode::gunzip(&bytes, MAX_FILE, &mut |_| Ok(()))
            .map_err(|e| Error::InvalidPayload(format!("{name}: {e}")))?;
        lower = lower.trim_end_matches(".gz").to_string();
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let lines = lower.ends_with(".jsonl") || lower.ends_with(".ndjson");
    let json = lines
        || lower.ends_with(".json")
        || (first == Some(b'{') && !lower.ends_with(".pb") && !lower.ends_with(".binpb"));
    let mut requests = Vec::new();
    if json && (lines || looks_like_lines(&bytes)) {
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let req = decode::decode(line, Encoding::Json)
                .map_err(|e| Error::InvalidPayload(format!("{name}:{}: {e}", i + 1)))?;
            requests.push(req);
        }
    } else {
        let encoding = if json { Encoding::Json } else { Encoding::Protobuf };
        requests.push(decode::decode(&bytes, encoding).map_err(|e| Error::InvalidPayload(format!("{name}: {e}")))?);
    }
    summary.files += 1;
    for req in requests {
        let spans: usize = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        summary.exports += 1;
        let rejected = rx.export(req, "import").await?;
        summary.spans += spans - rejected.spans as usize;
        summary.rejected += rejected.spans;
        if rejected.spans > 0 && summary.first_rejection.is_none() {
            summary.first_rejection = Some(format!("{name}: {}", rejected.message));
        }
    }
    Ok(())
}

/// Several JSON documents, one per line (a single pretty-printed document spans lines but
/// its second line does not start a new object).
fn looks_like_lines(bytes: &[u8]) -> bool {
    let mut docs = bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()));
    let starts_obj = |l: &[u8]| l.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let ends_obj = |l: &[u8]| l.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    match (docs.next(), docs.next()) {
        (Some(a), Some(b)) => starts_obj(a) && ends_obj(a) && starts_obj(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::looks_like_lines;

    #[test]
    fn json_lines_are_told_from_pretty_json() {
        assert!(looks_like_lines(b"{\"a\":1}\n{\"b\":2}\n"));
        assert!(!looks_like_lines(b"{\n  \"a\": 1\n}\n"));
        assert!(!looks_like_lines(b"{\"a\":1}"));
    }
}
