//! The unflushed data, read only: what `slo query --data-dir` adds to the segments so that it sees
//! every acknowledged span, even when the server died before flushing (or still runs).
//!
//! It reads the manifest's state file and the WAL segments it keeps (those up to the
//! checkpoint only for the traces in flight at it), and builds their rows in memory only; nothing in the data directory changes. Traces still
//! being assembled are emitted as they are.

use std::time::Instant;

use bytes::Bytes;
use slo_store::Manifest;
use slo_store::wire::WireError;
use slo_store::{Store, list_wal_segments, read_wal_segment};

use crate::assemble::{Assembler, InFlight, WalPos};
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
        let mut in_flight = InFlight::default();
        if let Some(name) = &manifest.state_file
            && let Ok(bytes) = std::fs::read(dir.join(name))
        {
            if InFlight::is_this_format(&bytes) {
                in_flight = InFlight::decode(&bytes).unwrap_or_default();
            } else {
                let _ = assembler.restore_spans(&bytes, now);
            }
        }
        let mut records = Vec::new();
        let mut vanished = false;
        for id in list_wal_segments(&wal_dir)?.into_iter().filter(|id| *id >= manifest.wal_keep_from()) {
            match read_wal_segment(&wal_dir, id) {
                Ok(read) if id <= manifest.wal_checkpoint => {
                    // Rows already in segments: only the spans of traces in flight.
                    for (i, r) in read.records.into_iter().enumerate() {
                        let pos = WalPos { segment: id, record: i as u32 };
                        let _ = assembler.resume(&in_flight, &r, pos, now);
                    }
                }
                Ok(read) => records.extend(read.records.into_iter().map(Bytes::from)),
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
        let mut stats = ReplayStats::default();
        for chunk in records.chunks(256) {
            // A record that does not decode is skipped, as the server's own replay does.
            let readable = |r: &&[u8]| slo_store::encoded::visit_spans(r, |_, _, _| Ok::<_, WireError>(())).is_ok();
            let good: Vec<&[u8]> = chunk.iter().map(|r| r.as_ref()).filter(readable).collect();
            store.append_tables(slo_store::encoded::batch_rows(&good)?);
        }
        for r in &records {
            if let Ok(n) = assembler.add_record(r, WalPos::default(), now) {
                stats.records += 1;
                stats.spans += n;
            }
        }
        let rows: Vec<_> =
            assembler.drain().traces.iter().flat_map(|(spans, _)| splitter.held_requests(spans)).collect();
        stats.requests = rows.len();
        for chunk in rows.chunks(65_536) {
            store.append(None, Some(slo_store::requests_batch(chunk)?));
        }
        return Ok(stats);
    }
    Ok(ReplayStats::default())
}
