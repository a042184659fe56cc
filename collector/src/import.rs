//! `slo import`: files into the store through the same path as live data.
//!
//! Accepted, any of them gzipped (`.gz`); without a known extension the content decides:
//! - OTLP traces: an `ExportTraceServiceRequest` (or `TracesData`, the same bytes) as
//!   protobuf (`.pb`, `.binpb`, `.otlp`, `.proto`), as OTLP/JSON (`.json`), or as JSON
//!   lines, one request per line (`.jsonl`, `.ndjson`, what the OpenTelemetry Collector's
//!   file exporter writes);
//! - Kubernetes: `kubectl get events -o json` output, Events one per line, and watch
//!   streams (`{"type": ..., "object": ...}` per line) -> `changes` ([`Replay`]); a change
//!   already stored is not stored again, so importing a file twice is harmless.
//! - Prometheus text (`.prom`, `.txt`, `.metrics`, or content that starts like it) ->
//!   `samples`, through the scraper's filter and attribution. Samples carry the file's
//!   explicit timestamps, else the file's modification time. The target is `file:<path>`;
//!   a file under a directory named `pod_<namespace>_<pod>` or `node_<node>` (as
//!   `slo loadgen simulate --out` writes them) is attributed to that pod or node. A
//!   watch stream imported earlier in the same command supplies GPU placement.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::kube::replay::Replay;
use crate::kube::watch::{KubeMetrics, store_changes};
use crate::otlp::Receiver;
use crate::otlp::decode::{self, Encoding};
use crate::scrape::attribute::Placement;
use crate::scrape::config::ScrapeConfig;
use crate::scrape::families::FamilyFilter;
use crate::scrape::{PodRef, Target, samples_from_text};

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
    /// Kubernetes changes stored.
    pub changes: usize,
    /// Kubernetes changes already stored before (skipped).
    pub duplicate_changes: usize,
    /// Metric samples stored.
    pub samples: usize,
}

/// What an import keeps between files.
#[derive(Debug, Default)]
pub struct ImportState {
    /// Keys of the changes stored (read from the store first).
    pub change_keys: HashSet<String>,
    /// GPU placement from the last watch stream imported.
    pub placement: Placement,
    /// Scrape settings (filter, limits) for Prometheus text.
    pub scrape: ScrapeConfig,
}

const MAX_FILE: usize = 4 << 30;

/// Imports one file.
pub async fn import_file(
    rx: &Receiver,
    state: &mut ImportState,
    path: &Path,
    summary: &mut ImportSummary,
) -> Result<()> {
    let name = path.display().to_string();
    let mut bytes = std::fs::read(path).map_err(|source| Error::File { path: name.clone(), source })?;
    let mut lower = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if lower.ends_with(".gz") || bytes.starts_with(&[0x1f, 0x8b]) {
        bytes = decode::gunzip(&bytes, MAX_FILE, &mut |_| Ok(()))
            .map_err(|e| Error::InvalidPayload(format!("{name}: {e}")))?;
        lower = lower.trim_end_matches(".gz").to_string();
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if is_prometheus_text(&lower, first) {
        summary.files += 1;
        return import_prometheus(rx, state, path, &name, &bytes, summary).await;
    }
    let lines = lower.ends_with(".jsonl") || lower.ends_with(".ndjson");
    let json = lines
        || lower.ends_with(".json")
        || (first == Some(b'{') && !lower.ends_with(".pb") && !lower.ends_with(".binpb"));
    if json && let Some(docs) = kubernetes_documents(&bytes, &name)? {
        summary.files += 1;
        return import_kubernetes(rx, state, &name, docs, summary).await;
    }
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
        let rejected = rx.export(crate::otlp::Payload::Decoded(req), "import").await?;
        summary.spans += spans - rejected.spans as usize;
        summary.rejected += rejected.spans;
        if rejected.spans > 0 && summary.first_rejection.is_none() {
            summary.first_rejection = Some(format!("{name}: {}", rejected.message));
        }
    }
    Ok(())
}

/// The file's JSON documents if it holds Kubernetes objects (judged by its first
/// document), None if it is something else (OTLP).
fn kubernetes_documents(bytes: &[u8], name: &str) -> Result<Option<Vec<Value>>> {
    let first_line = bytes.split(|b| *b == b'\n').find(|l| !l.iter().all(|b| b.is_ascii_whitespace())).unwrap_or(&[]);
    if looks_like_lines(bytes) || serde_json::from_slice::<Value>(bytes).is_err() {
        let Ok(first) = serde_json::from_slice::<Value>(first_line) else { return Ok(None) };
        if !Replay::recognizes(&first) {
            return Ok(None);
        }
        let mut docs = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let doc =
                serde_json::from_slice(line).map_err(|e| Error::InvalidPayload(format!("{name}:{}: {e}", i + 1)))?;
            docs.push(doc);
        }
        return Ok(Some(docs));
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| Error::InvalidPayload(format!("{name}: {e}")))?;
    Ok(Replay::recognizes(&doc).then(|| vec![doc]))
}

async fn import_kubernetes(
    rx: &Receiver,
    state: &mut ImportState,
    name: &str,
    docs: Vec<Value>,
    summary: &mut ImportSummary,
) -> Result<()> {
    let mut replay = Replay::new();
    for (i, doc) in docs.iter().enumerate() {
        replay.add(doc).map_err(|e| Error::InvalidPayload(format!("{name}: document {}: {e}", i + 1)))?;
    }
    let placement = replay.placement();
    if placement.known {
        state.placement = placement;
    }
    let changes = replay.finish();
    let total = changes.len();
    let metrics = KubeMetrics::unregistered();
    let stored =
        store_changes(rx.ingest(), changes, &mut state.change_keys, &metrics, &CancellationToken::new()).await?;
    summary.changes += stored;
    summary.duplicate_changes += total - stored;
    Ok(())
}

fn is_prometheus_text(lower: &str, first: Option<u8>) -> bool {
    [".prom", ".txt", ".metrics"].iter().any(|e| lower.ends_with(e))
        || (!lower.ends_with(".pb") && !lower.ends_with(".binpb") && first == Some(b'#'))
}

/// The target a scrape file stands for: its directory names the pod or node.
fn file_target(path: &Path) -> Target {
    let dir = path.parent().and_then(|d| d.file_name()).map(|d| d.to_string_lossy().to_string()).unwrap_or_default();
    let pod = if let Some(rest) = dir.strip_prefix("pod_") {
        rest.split_once('_').map(|(ns, pod)| PodRef { namespace: ns.into(), pod: pod.into(), node: None })
    } else {
        dir.strip_prefix("node_").map(|node| PodRef {
            namespace: String::new(),
            pod: String::new(),
            node: Some(node.into()),
        })
    };
    Target::new(format!("file:{}", path.display()), pod)
}

async fn import_prometheus(
    rx: &Receiver,
    state: &mut ImportState,
    path: &Path,
    name: &str,
    bytes: &[u8],
    summary: &mut ImportSummary,
) -> Result<()> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::InvalidPayload(format!("{name}: not UTF-8 text (byte {})", e.valid_up_to())))?;
    let mtime = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    let filter = FamilyFilter::new(&state.scrape.families).map_err(Error::Config)?;
    let target = file_target(path);
    let (samples, _) = samples_from_text(text, &target, mtime, &state.scrape, &filter, &state.placement)
        .map_err(|e| Error::InvalidPayload(format!("{name}: {e}")))?;
    summary.samples += samples.len();
    for chunk in samples.chunks(50_000) {
        let batch = slo_store::SpanBatch { samples: chunk.to_vec(), ..Default::default() };
        rx.ingest().submit(crate::ingest::Prepared::new(batch)?).await?;
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
