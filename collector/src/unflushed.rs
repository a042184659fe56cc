//! The unflushed data, read only: what `slo query --data-dir` adds to the segments so that it sees
//! every acknowledged span, even when the server died before flushing (or still runs).
//!
//! It reads, for each WAL shard, its state file and the WAL segments it keeps (those up to
//! the checkpoint only for the traces in flight at it), and builds their rows in memory only;
//! nothing in the data directory changes. Traces still being assembled are emitted as
//! they are, with every span (`sampled_by` = `unflushed`): the server's tail sampling has
//! not decided on them yet. A server that keeps every span (`keep_share: 1`, said in its
//! state file) stored the spans of its in-flight traces as it received them: those are in
//! the segments already and are not shown twice.

use std::time::Instant;

use bytes::Bytes;
use slo_store::Manifest;
use slo_store::encoded::{Sampled, SpansBuilder};
use slo_store::{Store, list_wal_segments, read_wal_segment};

use crate::assemble::{Assembler, InFlight, WalPos};
use crate::config::CollectorConfig;
use crate::error::{Error, Result};
use crate::ingest::Prepared;
use crate::split::Splitter;

/// Spans shown by a read-only replay, before the server decided on their traces.
const UNFLUSHED: Sampled = Sampled { by: "unflushed", adjusted_count: 1.0 };

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
        // A trace's spans are all in one shard: one assembler serves them all.
        let mut assembler = Assembler::new(cfg.assembly.clone());
        let now = Instant::now();
        let mut records = Vec::new();
        let mut vanished = false;
        for k in 0..slo_store::wal_shards_on_disk(&dir)? {
            let saved = manifest.shard(k);
            let wal_dir = slo_store::wal_dir(&dir, k);
            let mut in_flight = InFlight::default();
            if let Some(name) = &saved.state_file
                && let Ok(bytes) = std::fs::read(dir.join(name))
            {
                if InFlight::is_this_format(&bytes) {
                    in_flight = InFlight::decode(&bytes).unwrap_or_default();
                } else {
                    let _ = assembler.restore_spans(&bytes, now);
                }
            }
            for id in list_wal_segments(&wal_dir)?.into_iter().filter(|id| *id >= saved.keep_from()) {
                match read_wal_segment(&wal_dir, id) {
                    Ok(read) if id <= saved.checkpoint => {
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
        }
        if vanished && attempt < 2 {
            continue;
        }
        let mut stats = ReplayStats::default();
        for r in records {
            // A record that does not decode is skipped, as the server's own replay does.
            let Ok(p) = Prepared::from_record(r, false) else { continue };
            stats.records += 1;
            stats.spans += p.spans();
            let (rows, held) = p.into_parts();
            store.append_tables(rows);
            assembler.add_held(held, WalPos::default(), now);
        }
        // Every trace not yet stored is shown whole: which of them the server will keep
        // depends on its recent latencies, which this replay does not have.
        let drained = assembler.drain();
        let rows: Vec<_> = drained.traces.iter().flat_map(|(spans, _)| splitter.held_requests(spans)).collect();
        stats.requests = rows.len();
        for chunk in rows.chunks(65_536) {
            store.append(None, Some(slo_store::requests_batch(chunk)?));
        }
        for chunk in drained.traces.chunks(4096) {
            let mut b = SpansBuilder::with_capacity(chunk.len() * 4, chunk.len() * 4 * 700);
            // A span resumed from before the checkpoint of a collector that keeps every span
            // has its row in the segments already (append_each leaves it out); one that does
            // not read is skipped, as the server's emission does.
            let spans = chunk.iter().flat_map(|(spans, _)| spans).map(|h| (h, UNFLUSHED));
            crate::sample::HeldRows::new().append_each(&mut b, spans, &mut std::collections::HashMap::new());
            store.append(Some(b.finish()?), None);
        }
        return Ok(stats);
    }
    Ok(ReplayStats::default())
}
