//! A flush from the store's side: gathered from every WAL shard (each gives its rows at its
//! own rotation, [`Store::freeze_part`]), then written as segments, rollups, state files
//! and the manifest ([`Store::write_flush`]). `flusher.rs` decides on which thread.

use std::fs;
use std::time::Instant;

use super::{Frozen, Store, Tables, table_index, wal_dir};
use crate::error::{Error, Result};
use crate::flusher::FlushDone;
use crate::manifest::{SegmentFile, WalShard, write_atomic};
use crate::schema::{REQUESTS, SPANS, TABLES};
use crate::segments;
use crate::wal;

/// Where one WAL shard's part of a flush stops: the rows it gave reflect its segments
/// `<= wal_through`; those below `wal_keep_from` are deletable once written; `state` is its
/// traces in flight.
#[derive(Debug)]
struct Part {
    wal_through: u64,
    wal_keep_from: u64,
    state: Vec<u8>,
}

/// A flush being gathered: each shard gives its rows at its own next rotation.
#[derive(Debug)]
pub(super) struct Gathering {
    id: u64,
    parts: Vec<Option<Part>>,
    done: Vec<FlushDone>,
}

/// Rows taken out of memory to be written as segments.
#[derive(Debug)]
pub struct FlushJob {
    id: u64,
    /// Per WAL shard, in shard order.
    parts: Vec<Part>,
    tables: Tables,
}

impl FlushJob {
    /// Rows in the job.
    pub fn rows(&self) -> usize {
        self.tables.iter().flatten().map(|b| b.num_rows()).sum()
    }
}

impl Store {
    /// Asks every WAL shard for its part of a flush, unless one is being gathered.
    pub fn request_flush(&self) {
        let mut st = self.inner.state.lock();
        if st.gathering.is_some() {
            return;
        }
        let id = st.next_flush_id;
        st.next_flush_id += 1;
        let shards = st.mem.len();
        st.gathering = Some(Gathering { id, parts: (0..shards).map(|_| None).collect(), done: Vec::new() });
        st.frozen.push(Frozen { id, tables: Tables::default(), bytes: 0 });
    }

    /// Whether a flush is being gathered (some shard has not given its part yet).
    pub fn flush_gathering(&self) -> bool {
        self.inner.state.lock().gathering.is_some()
    }

    /// Whether the flush being gathered waits for shard `shard`'s part.
    pub fn flush_wanted(&self, shard: usize) -> bool {
        self.inner.state.lock().gathering.as_ref().is_some_and(|g| g.parts.get(shard).is_some_and(Option::is_none))
    }

    /// Gives shard `shard`'s part of the flush being gathered (asking for one if none is):
    /// its rows in memory, which reflect its WAL segments `<= wal_through`; those below
    /// `wal_keep_from` become deletable (the rest hold spans of its traces in flight, whose
    /// encoded `state` is kept with the flush). The rows stay visible to queries until
    /// [`Store::write_flush`] has put them in segments. Returns the job, and who to tell,
    /// once every shard has given its part.
    pub(crate) fn freeze_part(
        &self,
        shard: usize,
        wal_through: u64,
        wal_keep_from: u64,
        state: Vec<u8>,
        done: Vec<FlushDone>,
    ) -> Option<(FlushJob, Vec<FlushDone>)> {
        self.request_flush();
        let wal_keep_from = wal_keep_from.min(wal_through + 1);
        let mut st = self.inner.state.lock();
        let st = &mut *st;
        // Everything the part goes into is found before the rows leave memory: rows taken
        // and then not given would be lost to queries and, past the next checkpoint, for good.
        let gathering = st.gathering.as_mut()?;
        let frozen = st.frozen.iter_mut().find(|f| f.id == gathering.id)?;
        let slot = gathering.parts.get_mut(shard)?;
        let mem = std::mem::take(st.mem.get_mut(shard)?);
        for (into, batches) in frozen.tables.iter_mut().zip(mem.tables) {
            into.extend(batches);
        }
        frozen.bytes += mem.bytes;
        *slot = Some(Part { wal_through, wal_keep_from, state });
        gathering.done.extend(done);
        self.inner.metrics.memory_rows.set(st.mem.iter().map(|m| m.rows).sum::<usize>() as i64);
        if gathering.parts.iter().any(Option::is_none) {
            return None;
        }
        let g = st.gathering.take()?;
        let tables = st.frozen.iter().find(|f| f.id == g.id).map(|f| f.tables.clone()).unwrap_or_default();
        let parts = g.parts.into_iter().flatten().collect();
        Some((FlushJob { id: g.id, parts, tables }, g.done))
    }

    /// Writes a frozen job as segments, then the manifest, then deletes the WAL segments and
    /// state it makes obsolete. On error nothing is lost: the rows stay in memory and the WAL
    /// stays, and the same job can be written again.
    pub(crate) fn write_flush(&self, job: &FlushJob) -> Result<()> {
        let started = Instant::now();
        let dir = &self.inner.cfg.data_dir;
        let result = (|| {
            let mut files = Vec::new();
            for (table, batches) in TABLES.iter().zip(&job.tables) {
                files.extend(segments::write_table(dir, table, job.id, batches)?);
            }
            files.extend(self.write_derived(job, &files)?);
            let mut state_files = Vec::with_capacity(job.parts.len());
            for (k, part) in job.parts.iter().enumerate() {
                state_files.push(if part.state.is_empty() {
                    None
                } else {
                    let name = match k {
                        0 => format!("state-{:012}.bin", job.id),
                        k => format!("state-{:012}-{k}.bin", job.id),
                    };
                    write_atomic(dir, &name, &part.state)?;
                    Some(name)
                });
            }
            let _writer = self.inner.manifest_writer.lock();
            let mut manifest = self.inner.state.lock().manifest.clone();
            let mut old_states = Vec::new();
            for (k, (part, state_file)) in job.parts.iter().zip(state_files).enumerate() {
                let saved = manifest.shard(k);
                old_states.extend(saved.state_file);
                manifest.set_shard(
                    k,
                    WalShard {
                        checkpoint: saved.checkpoint.max(part.wal_through),
                        keep_from: part.wal_keep_from,
                        state_file,
                    },
                );
            }
            manifest.files.extend(files.iter().cloned());
            manifest.next_flush_id = manifest.next_flush_id.max(job.id + 1);
            manifest.save(dir)?;
            {
                let mut st = self.inner.state.lock();
                st.manifest = manifest;
                st.frozen.retain(|f| f.id != job.id);
                self.inner.metrics.memory_bytes.set(st.unflushed_bytes() as i64);
                self.inner.metrics.segments.set(st.manifest.files.len() as i64);
            }
            for f in &files {
                let table = TABLES.iter().copied().find(|t| *t == f.table).unwrap_or(SPANS);
                self.inner.metrics.flushed_rows.get_or_create(&vec![("table", table)]).inc_by(f.rows);
            }
            let kept: Vec<Option<String>> = {
                let st = self.inner.state.lock();
                (0..job.parts.len()).map(|k| st.manifest.shard(k).state_file).collect()
            };
            for old in old_states.into_iter().filter(|o| !kept.contains(&Some(o.clone()))) {
                let _ = fs::remove_file(dir.join(old));
            }
            for (k, part) in job.parts.iter().enumerate() {
                wal::remove_through(&wal_dir(dir, k), part.wal_keep_from - 1)?;
            }
            Ok(())
        })();
        match &result {
            Ok(()) => self.inner.metrics.flush_seconds.observe(started.elapsed().as_secs_f64()),
            Err(_) => {
                self.inner.metrics.flush_errors.inc();
            }
        }
        result
    }

    fn write_derived(&self, job: &FlushJob, written: &[SegmentFile]) -> Result<Option<SegmentFile>> {
        let Some(d) = &self.inner.cfg.derive else { return Ok(None) };
        let Some(i) = table_index(REQUESTS) else { return Ok(None) };
        let requests = &job.tables[i];
        let rows: usize = requests.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(None);
        }
        let bytes = match d.derive(requests) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(table = d.table(), error = %e, "could not derive data for a flush; it is rebuilt from requests when read");
                return Ok(None);
            }
        };
        let dir = self.inner.cfg.data_dir.join(d.table());
        fs::create_dir_all(&dir).map_err(Error::io("create dir", &dir))?;
        let name = format!("{:012}.bin", job.id);
        write_atomic(&dir, &name, &bytes)?;
        let of_requests = written.iter().filter(|f| f.table == REQUESTS);
        let min_time = of_requests.clone().map(|f| f.min_time).min().unwrap_or(0);
        let max_time = of_requests.map(|f| f.max_time).max().unwrap_or(0);
        Ok(Some(SegmentFile {
            table: d.table().to_string(),
            path: format!("{}/{name}", d.table()),
            rows: rows as u64,
            bytes: bytes.len() as u64,
            min_time,
            max_time,
            uploaded: false,
        }))
    }
}
