//! The manifest: which Parquet segments exist, and how far the WAL is reflected in them.
//!
//! It is rewritten atomically (temporary file, `fsync`, `rename`, `fsync` of the directory)
//! after every flush, so after a crash it describes either the state before the flush or
//! the state after it, never a mix.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::wal::sync_dir;

const FILE: &str = "manifest.json";

/// One Parquet segment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentFile {
    /// Table the file belongs to.
    pub table: String,
    /// Path relative to the data directory.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size on disk.
    pub bytes: u64,
    /// Smallest `time` in the file, ns since the epoch.
    pub min_time: i64,
    /// Largest `time` in the file, ns since the epoch.
    pub max_time: i64,
    /// In the object store (its manifest lists it); the local copy is deleted, or about to
    /// be. Always false without one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uploaded: bool,
}

/// The persistent state of the data directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Every WAL segment with an id `<=` this has its rows in the segments.
    pub wal_checkpoint: u64,
    /// WAL segments from this id on are kept: those up to the checkpoint hold the spans of
    /// traces still being assembled at the checkpoint (the state file says which). `0`, in
    /// manifests written before it existed, means `wal_checkpoint + 1`.
    pub wal_keep_from: u64,
    /// The collector's in-flight state (traces still being assembled) as of the checkpoint,
    /// relative to the data directory.
    pub state_file: Option<String>,
    /// The id the next flush will use.
    pub next_flush_id: u64,
    /// The segments.
    pub files: Vec<SegmentFile>,
    /// Files retention removed from `files` that are still in the object store: the
    /// uploader drops them from the object store's manifest, then deletes them there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_expired: Vec<String>,
    /// Files the object store's manifest no longer lists, still in the object store until
    /// [`crate::StoreConfig::remote_read_grace`] has passed since that manifest was written:
    /// a query node that read the manifest before reads them there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_dropped: Vec<Dropped>,
    /// Where the files marked `uploaded` are (this collector's prefix; no secrets), so that
    /// a read of the data directory finds them whatever the config says now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_store: Option<crate::remote::RemoteOptions>,
    /// This data directory's identity in the object store, made at its first upload: a
    /// prefix another directory's collector writes is refused (two collectors under one
    /// name would drop and sweep each other's files).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// The WAL shards after the first (`ingest.shards` above 1), each its own directory
    /// (`wal-1`, `wal-2`, ...) with its own checkpoint and state; the first is the fields
    /// above, so a manifest of one shard reads as before sharding.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wal_shards: Vec<WalShard>,
}

/// A file dropped from the object store's manifest, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    /// The file's path, relative to the collector's prefix (as in [`SegmentFile::path`]).
    pub path: String,
    /// When the object store's manifest without it was written, ns since the epoch.
    pub at_unix_nano: i64,
}

/// How far one WAL shard is reflected in the segments (see [`Manifest::wal_checkpoint`],
/// [`Manifest::wal_keep_from`] and [`Manifest::state_file`], which are shard 0's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WalShard {
    /// Every segment with an id `<=` this has its rows in the segments.
    pub checkpoint: u64,
    /// Segments from this id on are kept (`0`: `checkpoint + 1`).
    pub keep_from: u64,
    /// The shard's traces in flight at the checkpoint.
    pub state_file: Option<String>,
}

impl WalShard {
    /// The oldest WAL segment to keep.
    pub fn keep_from(&self) -> u64 {
        let after = self.checkpoint + 1;
        if self.keep_from == 0 { after } else { self.keep_from.min(after) }
    }
}

impl Manifest {
    /// Loads the manifest of `data_dir`, or an empty one when there is none yet.
    pub fn load(data_dir: &Path) -> Result<Manifest> {
        let path = data_dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                what: "manifest",
                path,
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Manifest { version: 1, next_flush_id: 1, ..Manifest::default() })
            }
            Err(e) => Err(Error::io("read manifest", path)(e)),
        }
    }

    /// The oldest WAL segment to keep.
    pub fn wal_keep_from(&self) -> u64 {
        self.shard(0).keep_from()
    }

    /// WAL shards this manifest records (at least 1).
    pub fn shard_count(&self) -> usize {
        1 + self.wal_shards.len()
    }

    /// Shard `k`'s checkpoint (a shard the manifest does not list has none yet).
    pub fn shard(&self, k: usize) -> WalShard {
        match k {
            0 => WalShard {
                checkpoint: self.wal_checkpoint,
                keep_from: self.wal_keep_from,
                state_file: self.state_file.clone(),
            },
            k => self.wal_shards.get(k - 1).cloned().unwrap_or_default(),
        }
    }

    /// Sets shard `k`'s checkpoint.
    pub(crate) fn set_shard(&mut self, k: usize, shard: WalShard) {
        if k == 0 {
            self.wal_checkpoint = shard.checkpoint;
            self.wal_keep_from = shard.keep_from;
            self.state_file = shard.state_file;
            return;
        }
        if self.wal_shards.len() < k {
            self.wal_shards.resize(k, WalShard::default());
        }
        self.wal_shards[k - 1] = shard;
    }

    /// Writes the manifest atomically.
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Corrupt {
            what: "manifest",
            path: data_dir.join(FILE),
            detail: e.to_string(),
        })?;
        write_atomic(data_dir, FILE, &bytes)
    }
}

/// Writes `name` in `dir` atomically and durably.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(bytes).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(Error::io("rename", &path))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_default() {
        let dir = tempfile::tempdir().unwrap();
        let empty = Manifest::load(dir.path()).unwrap();
        assert_eq!(empty.next_flush_id, 1);
        let m = Manifest { wal_checkpoint: 7, next_flush_id: 3, ..empty };
        m.save(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);
    }

    #[test]
    fn corrupt_manifest_is_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("corrupt manifest"), "{err}");
    }
}
