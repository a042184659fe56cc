//! The write-ahead log.
//!
//! A WAL is a directory of numbered segment files. Each record is
//! `[len: u32 LE][crc32 of payload: u32 LE][payload]`; the payload is an encoded
//! [`SpanBatch`](crate::SpanBatch), compressed by default (`frame.rs`). Appends are group commits: all records of one call go
//! out in one `write`, then (by [`FsyncPolicy`]) one `fsync`, and only then may the caller
//! acknowledge them. `kill -9` cannot lose a record whose `write` returned (it is in the page
//! cache); `fsync` extends that to power loss.
//!
//! A torn record can only be at the tail of a segment: the write that was under way when
//! the process died, or one that failed (the next append then starts a new segment, so
//! records acknowledged after it are not hidden behind it). It was never acknowledged;
//! replay stops there and says so.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

mod frame;
pub use frame::{WalCompression, frame};

/// When the WAL calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every group commit, before acknowledging: survives power loss.
    Always,
    /// At most every `interval`; survives `kill -9`, may lose the last interval on power loss.
    Interval,
    /// Never; survives `kill -9` only.
    Never,
}

/// The write side of the log.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    active: File,
    active_id: u64,
    active_bytes: u64,
    active_records: u32,
    /// A write failed part way: the segment may end in a partial record, after which
    /// replay would read nothing, so the next append starts a new segment.
    torn: bool,
    policy: FsyncPolicy,
    interval: Duration,
    last_sync: Instant,
    compression: WalCompression,
    buf: Vec<u8>,
}

/// What replay found in a segment.
#[derive(Debug, Default)]
pub struct SegmentRead {
    /// The complete records, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes at the end that do not form a complete, intact record.
    pub torn_bytes: u64,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

/// The ids of the segments in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(Error::io("read dir", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io("read dir", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name.strip_suffix(".wal").and_then(|s| s.parse::<u64>().ok()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Bytes in segment `id`.
pub(crate) fn segment_len(dir: &Path, id: u64) -> Result<u64> {
    let path = segment_path(dir, id);
    fs::metadata(&path).map(|m| m.len()).map_err(Error::io("stat wal segment", &path))
}

/// Reads every intact record of segment `id`.
pub fn read_segment(dir: &Path, id: u64) -> Result<SegmentRead> {
    let path = segment_path(dir, id);
    let mut data = Vec::new();
    File::open(&path).and_then(|mut f| f.read_to_end(&mut data)).map_err(Error::io("read wal segment", &path))?;
    let mut out = SegmentRead::default();
    let mut pos = 0usize;
    while let Some((record, next)) = frame::read_at(&data, pos) {
        out.records.push(record);
        pos = next;
    }
    out.torn_bytes = (data.len() - pos) as u64;
    Ok(out)
}

/// Removes segments with id `<= through`.
pub(crate) fn remove_through(dir: &Path, through: u64) -> Result<usize> {
    let mut removed = 0;
    for id in list_segments(dir)? {
        if id <= through {
            let path = segment_path(dir, id);
            fs::remove_file(&path).map_err(Error::io("remove wal segment", &path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl Wal {
    /// Opens the log in `dir`, starting a new segment after the newest existing one (existing
    /// segments are left for replay and are never appended to).
    pub fn open(dir: &Path, policy: FsyncPolicy, interval: Duration) -> Result<Wal> {
        fs::create_dir_all(dir).map_err(Error::io("create wal dir", dir))?;
        let next = list_segments(dir)?.last().map_or(1, |id| id + 1);
        let active = Self::create(dir, next)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            active,
            active_id: next,
            active_bytes: 0,
            active_records: 0,
            torn: false,
            policy,
            interval,
            last_sync: Instant::now(),
            compression: WalCompression::None,
            buf: Vec::with_capacity(1 << 20),
        })
    }

    /// The log, framing what [`Wal::append`] is given with `compression` (frames handed
    /// to [`Wal::append_frames`] are written as they are).
    pub fn with_compression(mut self, compression: WalCompression) -> Wal {
        self.compression = compression;
        self
    }

    /// How records are compressed: what callers that frame their own records use.
    pub fn compression(&self) -> WalCompression {
        self.compression
    }

    fn create(dir: &Path, id: u64) -> Result<File> {
        let path = segment_path(dir, id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(Error::io("create wal segment", &path))?;
        sync_dir(dir)?;
        Ok(file)
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id of the segment being written.
    pub fn active_id(&self) -> u64 {
        self.active_id
    }

    /// Bytes in the active segment.
    pub fn active_bytes(&self) -> u64 {
        self.active_bytes
    }

    /// Records in the active segment: the index the next appended record gets, which is
    /// its index in [`SegmentRead::records`] on replay.
    pub fn active_records(&self) -> u32 {
        self.active_records
    }

    /// Appends the records as one group commit; when this returns `Ok`, they are durable
    /// (per the policy) and may be acknowledged.
    pub fn append<'a>(&mut self, records: impl IntoIterator<Item = &'a [u8]>) -> Result<()> {
        self.buf.clear();
        let mut count = 0u32;
        for r in records {
            count += 1;
            match self.compression {
                WalCompression::None => frame::push_plain(&mut self.buf, r),
                c => self.buf.extend_from_slice(&frame(r, c)),
            }
        }
        self.write_buf(count)
    }

    /// [`Wal::append`] for records already framed ([`frame`]), written as they are: the
    /// ingest path frames (and compresses) on the threads that prepare its exports.
    pub fn append_frames<'a>(&mut self, frames: impl IntoIterator<Item = &'a [u8]>) -> Result<()> {
        self.buf.clear();
        let mut count = 0u32;
        for f in frames {
            count += 1;
            self.buf.extend_from_slice(f);
        }
        self.write_buf(count)
    }

    fn write_buf(&mut self, count: u32) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.torn {
            self.repair()?;
        }
        let path = || segment_path(&self.dir, self.active_id);
        if let Err(e) = self.active.write_all(&self.buf) {
            self.torn = true;
            let err = Error::io("append wal", path())(e);
            // Cut the partial record off now, so the segment stays whole for replay.
            let _ = self.repair();
            return Err(err);
        }
        self.active_bytes += self.buf.len() as u64;
        self.active_records += count;
        let sync = match self.policy {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval => self.last_sync.elapsed() >= self.interval,
            FsyncPolicy::Never => false,
        };
        if sync {
            self.active.sync_data().map_err(|e| Error::io("fsync wal", path())(e))?;
            self.last_sync = Instant::now();
        }
        if self.buf.capacity() > 64 << 20 {
            self.buf = Vec::with_capacity(1 << 20);
        }
        Ok(())
    }

    /// Closes the active segment and starts the next; returns the id of the closed one.
    /// After a failed write: truncates the active segment back to its last whole record
    /// and keeps appending to it; only when that fails is a new segment started. (Starting
    /// one per failure made hundreds of files while a disk was full.)
    fn repair(&mut self) -> Result<()> {
        if self.active.set_len(self.active_bytes).is_ok() {
            self.torn = false;
            return Ok(());
        }
        self.rotate().map(|_| ())
    }

    /// Whether the log's directory takes a write now: creates, writes 64 KiB to, syncs and
    /// removes a probe file (not a segment). A full disk or no file descriptor left fails it.
    pub fn probe(&self) -> Result<()> {
        let path = self.dir.join("probe.tmp");
        let result = (|| {
            let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
            f.write_all(&[0u8; 64 << 10])?;
            f.sync_data()
        })();
        let _ = fs::remove_file(&path);
        result.map_err(Error::io("probe wal dir", &path))
    }

    /// Whether the last write failed and the segment is not whole yet.
    pub fn is_torn(&self) -> bool {
        self.torn
    }

    pub fn rotate(&mut self) -> Result<u64> {
        if self.policy != FsyncPolicy::Never {
            let path = segment_path(&self.dir, self.active_id);
            self.active.sync_data().map_err(Error::io("fsync wal", path))?;
        }
        let closed = self.active_id;
        self.active = Self::create(&self.dir, closed + 1)?;
        self.active_id = closed + 1;
        self.active_bytes = 0;
        self.active_records = 0;
        self.torn = false;
        Ok(closed)
    }
}

/// `fsync` on a directory, so that a created or renamed entry survives power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("fsync dir", dir))
}

/// Writes `records` framed with `compression`, then cuts the segment at every byte: replay
/// must return exactly the records wholly before the cut, and call the rest torn.
#[cfg(test)]
fn assert_every_cut_keeps_the_whole_records_before_it(records: &[Vec<u8>], compression: WalCompression) {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), FsyncPolicy::Never, Duration::ZERO).unwrap();
    let frames: Vec<Vec<u8>> = records.iter().map(|r| frame(r, compression)).collect();
    for f in &frames {
        wal.append_frames([f.as_slice()]).unwrap();
    }
    let id = wal.active_id();
    drop(wal);
    let path = segment_path(dir.path(), id);
    let full = fs::read(&path).unwrap();
    let ends: Vec<usize> = frames
        .iter()
        .scan(0, |end, f| {
            *end += f.len();
            Some(*end)
        })
        .collect();
    for cut in 0..=full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let read = read_segment(dir.path(), id).unwrap();
        let whole = ends.iter().filter(|e| **e <= cut).count();
        assert_eq!(read.records, records[..whole], "cut at {cut}");
        let kept = if whole == 0 { 0 } else { ends[whole - 1] };
        assert_eq!(read.torn_bytes, (cut - kept) as u64, "cut at {cut}");
    }
}

#[cfg(test)]
mod tests {
    use super::frame::HEADER;
    use super::*;

    #[test]
    fn append_replay_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Always, Duration::ZERO).unwrap();
        wal.append([b"one".as_slice(), b"two".as_slice()]).unwrap();
        assert_eq!(wal.active_records(), 2);
        let closed = wal.rotate().unwrap();
        assert_eq!(wal.active_records(), 0, "positions count from the start of each segment");
        wal.append([b"three".as_slice()]).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![closed, closed + 1]);
        let first = read_segment(dir.path(), closed).unwrap();
        assert_eq!(first.records, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(first.torn_bytes, 0);
        remove_through(dir.path(), closed).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![closed + 1]);
        // Reopening never appends to an old segment.
        drop(wal);
        let wal = Wal::open(dir.path(), FsyncPolicy::Never, Duration::ZERO).unwrap();
        assert_eq!(wal.active_id(), closed + 2);
    }

    #[test]
    fn after_a_failed_write_the_next_append_starts_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Never, Duration::ZERO).unwrap();
        wal.append([b"a".as_slice()]).unwrap();
        let first = wal.active_id();
        let path = segment_path(dir.path(), first);
        // The write fails, having put part of its record in the file.
        let writable = std::mem::replace(&mut wal.active, File::open(&path).unwrap());
        assert!(wal.append([b"b".as_slice()]).is_err());
        (&writable).write_all(&[9, 0, 0, 0, 1]).unwrap();
        wal.append([b"c".as_slice()]).unwrap();
        assert_eq!(wal.active_id(), first + 1);
        let torn = read_segment(dir.path(), first).unwrap();
        assert_eq!((torn.records, torn.torn_bytes), (vec![b"a".to_vec()], 5));
        assert_eq!(read_segment(dir.path(), first + 1).unwrap().records, vec![b"c".to_vec()]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_segment_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Never, Duration::ZERO).unwrap();
        wal.append([b"a".as_slice()]).unwrap();
        let first = wal.active_id();
        // Part of a record reached the file before the write failed.
        let writer = OpenOptions::new().append(true).open(segment_path(dir.path(), first)).unwrap();
        (&writer).write_all(&[9, 0, 0, 0, 1]).unwrap();
        wal.torn = true;
        wal.append([b"c".as_slice()]).unwrap();
        wal.append([b"d".as_slice()]).unwrap();
        assert_eq!(wal.active_id(), first, "no new segment per failure");
        let read = read_segment(dir.path(), first).unwrap();
        assert_eq!((read.records, read.torn_bytes), (vec![b"a".to_vec(), b"c".to_vec(), b"d".to_vec()], 0));
        wal.probe().unwrap();
        assert_eq!(list_segments(dir.path()).unwrap(), vec![first], "the probe leaves no file");
    }

    #[test]
    fn torn_tail_stops_replay_without_losing_earlier_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Never, Duration::ZERO).unwrap();
        wal.append([b"kept".as_slice()]).unwrap();
        wal.append([b"torn-record".as_slice()]).unwrap();
        let id = wal.active_id();
        drop(wal);
        let path = segment_path(dir.path(), id);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        let read = read_segment(dir.path(), id).unwrap();
        assert_eq!(read.records, vec![b"kept".to_vec()]);
        assert_eq!(read.torn_bytes, (HEADER + 11 - 3) as u64);
    }

    #[test]
    fn every_cut_keeps_exactly_the_complete_records_before_it() {
        let records: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 1 + 7 * i as usize]).collect();
        assert_every_cut_keeps_the_whole_records_before_it(&records, WalCompression::None);
    }

    #[test]
    fn corrupt_payload_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Never, Duration::ZERO).unwrap();
        wal.append([b"abcdef".as_slice()]).unwrap();
        let id = wal.active_id();
        drop(wal);
        let path = segment_path(dir.path(), id);
        let mut data = fs::read(&path).unwrap();
        data[HEADER + 2] ^= 0xff;
        fs::write(&path, data).unwrap();
        let read = read_segment(dir.path(), id).unwrap();
        assert!(read.records.is_empty());
        assert_eq!(read.torn_bytes, (HEADER + 6) as u64);
    }
}
