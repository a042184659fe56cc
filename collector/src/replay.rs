//! Read-only replay: what `slo query --data-dir` adds to the segments so that it sees
//! every acknowledged span, even when the server died before flushing (or still runs).
//!
//! It reads the manifest's state file and the WAL segments after the checkpoint, and
//! builds their rows in memory only; nothing in the data directory changes. Traces still
//! being assembled are emitted as they are.

use std::time::Instant;

use prost::Message;
use slo_store::manifest::Manifest;
use slo_store::{SpanBatch, Store, wal};

use crate::assemble::Assembler;
use crate::config::CollectorConfig;
use crate::error::{Error, Result};
use crate::split::Splitter;

/// What a read-only replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// WAL records read.
    pub records: usize,
    /// Spans in them.
    pub spans: usize,
    /// Request rows derived.
    pub requests: usize,
}

/// Adds the unflushed data of the store's directory to `store`'s memory.
pub fn read_only(store: &Store, cfg: &CollectorConfig) -> Result<ReplayStats> {
    let dir = store.config().data_dir.clone();
    let splitter = Splitter::new(&cfg.split).map_err(Error::InvalidPayload)?;
    // A running server may checkpoint between our reads; then a segment is gone. Retry.
    for attempt in 0..3 {
        let manifest = Manifest::load(&dir)?;
        let wal_dir = dir.join("wal");
        let mut assembler = Assembler::new(cfg.assembly.clone());
        let now = Instant::now();
        if let Some(name) = &manifest.state_file
            && let Ok(bytes) = std::fs::read(dir.join(name))
        {
            let _ = assembler.restore(&bytes, now);
        }
        let mut batches = Vec::new();
        let mut vanished = false;
        for id in wal::list_segments(&wal_dir)?.into_iter().filter(|id| *id > manifest.wal_checkpoint) {
            match wal::read_segment(&wal_dir, id) {
                Ok(read) => batches.extend(read.records.iter().filter_map(|r| SpanBatch::decode(r.as_slice()).ok())),
                Err(slo_store::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    vanished = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if vanished && attempt < 2 {
            continue;
        }
        let mut stats = ReplayStats { records: batches.len(), ..Default::default() };
        for chunk in batches.chunks(256) {
            store.append(Some(slo_store::rows::spans_batch(chunk.iter())?), None);
            let refs: Vec<&SpanBatch> = chunk.iter().collect();
            store.append_tables(slo_store::cluster_rows::cluster_batches(&refs)?);
        }
        for b in batches {
            stats.spans += b.span_count();
            assembler.add(b, now);
        }
        let rows: Vec<_> = assembler.drain().traces.iter().flat_map(|(spans, _)| splitter.requests(spans)).collect();
        stats.requests = rows.len();
        for chunk in rows.chunks(65_536) {
            store.append(None, Some(slo_store::rows::requests_batch(chunk)?));
        }
        return Ok(stats);
    }
    Ok(ReplayStats::default())
}
