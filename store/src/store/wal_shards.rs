//! Where each WAL shard of a data directory lives, and what it still holds: the layout
//! `ingest.shards` gives a data directory (ARCHITECTURE.md, the store's invariants).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::manifest::Manifest;
use crate::wal;

/// The WAL directory of shard `k` of a data directory: `wal` for the first, as before
/// sharding, then `wal-1`, `wal-2`, ...
pub fn wal_dir(data_dir: &Path, k: usize) -> PathBuf {
    if k == 0 { data_dir.join("wal") } else { data_dir.join(format!("wal-{k}")) }
}

/// Whether any of the first `shards` WAL shards of a data directory holds data not yet in
/// segments: a record past its checkpoint, or traces in flight at it.
pub fn wal_unflushed(data_dir: &Path, shards: usize) -> Result<bool> {
    let manifest = Manifest::load(data_dir)?;
    for k in 0..shards {
        if shard_unflushed(data_dir, &manifest, k)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether WAL shard `k` holds bytes past its checkpoint or traces in flight at it. By the
/// segments' sizes, not their records: a segment can hold a flush interval of spans, and
/// this runs at every start (a torn tail counts as data: replaying it costs nothing).
pub(super) fn shard_unflushed(data_dir: &Path, manifest: &Manifest, k: usize) -> Result<bool> {
    let saved = manifest.shard(k);
    if saved.state_file.is_some() {
        return Ok(true);
    }
    let dir = wal_dir(data_dir, k);
    for id in wal::list_segments(&dir)?.into_iter().filter(|id| *id > saved.checkpoint) {
        if wal::segment_len(&dir, id)? > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// WAL shards a data directory was last written with: what its manifest records, or more
/// where WAL directories of more shards exist (a crash before their first flush). 1 for a
/// new directory.
pub fn wal_shards_on_disk(data_dir: &Path) -> Result<usize> {
    let mut n = Manifest::load(data_dir)?.shard_count();
    while wal_dir(data_dir, n).exists() {
        n += 1;
    }
    Ok(n)
}
