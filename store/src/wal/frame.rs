//! One WAL record as it lies in a segment: `[len: u32 LE][crc32: u32 LE][payload]`.
//!
//! With [`WalCompression::Zstd`] the payload is `[raw length: u32 LE][zstd frame]` and the
//! top bit of `len` says so; a record that does not get smaller is stored as it is. The crc
//! covers the payload as stored, so a damaged record is caught before it is decompressed.
//! Segments written before compression (no record with the bit) read as they always did;
//! a binary from before it stops at the first compressed record as at a torn one.
//!
//! Records are framed by whoever builds them (the ingest path does it on the thread that
//! transcoded the export, not on the pipeline thread that writes them), see
//! [`frame`]; [`super::Wal::append_frames`] writes frames as they are.

use std::cell::RefCell;

/// Whether WAL records are compressed. The log is the densest write `slo` makes (every
/// acknowledged span, a second time before its rows are flushed), and exports compress
/// well: their keys, names and resources repeat from span to span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalCompression {
    /// Records as encoded.
    None,
    /// Each record compressed with zstd at level -1 (`--fast=1`).
    #[default]
    Zstd,
}

/// Bytes before a record's payload.
pub(super) const HEADER: usize = 8;
/// Largest payload accepted on replay (stored, or decompressed); anything bigger is
/// corruption.
pub(super) const MAX_RECORD: usize = 1 << 30;
/// The top bit of `len`: the payload is compressed.
const ZSTD_BIT: u32 = 1 << 31;
/// Records shorter than this are stored as they are: compressing them saves nothing worth
/// the frame's header.
const MIN_COMPRESSED: usize = 256;
/// zstd's level: -1 compresses a WAL record of the benchmark's exports 7.2x at 844 MB/s,
/// level 1 8.6x at 678 MB/s (BENCHMARKS.md): the log needs far fewer bytes, not the fewest.
const LEVEL: i32 = -1;

thread_local! {
    /// One compression context a thread: making one costs more than compressing a record.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// The record `payload` framed for [`super::Wal::append_frames`].
pub fn frame(payload: &[u8], compression: WalCompression) -> Vec<u8> {
    if compression == WalCompression::Zstd
        && payload.len() >= MIN_COMPRESSED
        && let Some(z) = compress(payload)
        && z.len() + 4 < payload.len()
    {
        let mut out = Vec::with_capacity(HEADER + 4 + z.len());
        let mut crc = crc32fast::Hasher::new();
        let raw_len = (payload.len() as u32).to_le_bytes();
        crc.update(&raw_len);
        crc.update(&z);
        out.extend_from_slice(&((4 + z.len()) as u32 | ZSTD_BIT).to_le_bytes());
        out.extend_from_slice(&crc.finalize().to_le_bytes());
        out.extend_from_slice(&raw_len);
        out.extend_from_slice(&z);
        return out;
    }
    let mut out = Vec::with_capacity(HEADER + payload.len());
    push_plain(&mut out, payload);
    out
}

/// Appends `payload` to `out` framed as it is, uncompressed.
pub(super) fn push_plain(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn compress(payload: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        // A failure (no memory for the context) stores the record uncompressed.
        c.as_mut()?.compress(payload).ok()
    })
}

/// The next record of `data` at `pos`: its payload (decompressed) and where the record
/// after it starts; `None` where no whole, intact record starts (a torn tail).
pub(super) fn read_at(data: &[u8], pos: usize) -> Option<(Vec<u8>, usize)> {
    let header = data.get(pos..pos + HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let size = (len & !ZSTD_BIT) as usize;
    if size > MAX_RECORD {
        return None;
    }
    let end = pos.checked_add(HEADER + size)?;
    let payload = data.get(pos + HEADER..end)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    if len & ZSTD_BIT == 0 {
        return Some((payload.to_vec(), end));
    }
    let raw_len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    if raw_len > MAX_RECORD {
        return None;
    }
    // An intact record that does not decompress to what it says is treated as the end of
    // what can be trusted, as a bad crc is.
    let raw = zstd::bulk::decompress(&payload[4..], raw_len).ok()?;
    (raw.len() == raw_len).then_some((raw, end))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::Duration;

    use super::super::{FsyncPolicy, Wal, read_segment, segment_path};
    use super::*;

    /// An export-like record: the same keys and names again and again, some numbers.
    fn compressible(i: usize) -> Vec<u8> {
        (0..200)
            .flat_map(|k| format!("service.name=vllm k8s.pod.name=pod-{} latency={}\n", k % 7, i * k).into_bytes())
            .collect()
    }

    /// Bytes that do not compress (xorshift).
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn compressed_records_read_back_as_written_and_take_less_room() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal =
            Wal::open(dir.path(), FsyncPolicy::Never, Duration::ZERO).unwrap().with_compression(WalCompression::Zstd);
        let records = vec![compressible(1), b"short".to_vec(), noise(4096), compressible(2), Vec::new()];
        wal.append(records.iter().map(Vec::as_slice)).unwrap();
        let id = wal.active_id();
        drop(wal);
        let read = read_segment(dir.path(), id).unwrap();
        assert_eq!((read.records.as_slice(), read.torn_bytes), (records.as_slice(), 0));
        let raw: usize = records.iter().map(|r| HEADER + r.len()).sum();
        let stored = fs::metadata(segment_path(dir.path(), id)).unwrap().len() as usize;
        // The two export-like records shrink; the noise, the short and the empty ones are
        // stored as they are (never larger than uncompressed).
        assert!(stored * 2 < raw, "{stored} of {raw} bytes");
        assert_eq!(frame(&noise(4096), WalCompression::Zstd).len(), HEADER + 4096);
        assert_eq!(frame(b"short", WalCompression::Zstd), frame(b"short", WalCompression::None));
    }

    #[test]
    fn a_segment_of_plain_and_compressed_records_reads_whole() {
        // A segment replayed after an upgrade, or after the setting changed, mixes both.
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Never, Duration::ZERO).unwrap();
        let records: Vec<Vec<u8>> = (0..6).map(compressible).collect();
        let frames: Vec<Vec<u8>> = records
            .iter()
            .enumerate()
            .map(|(i, r)| frame(r, if i % 2 == 0 { WalCompression::Zstd } else { WalCompression::None }))
            .collect();
        assert!(frames[0].len() < frames[1].len() / 2);
        wal.append_frames(frames.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(wal.active_records(), 6);
        let read = read_segment(dir.path(), wal.active_id()).unwrap();
        assert_eq!((read.records, read.torn_bytes), (records, 0));
    }

    #[test]
    fn every_cut_of_compressed_records_keeps_exactly_the_whole_ones_before_it() {
        let records: Vec<Vec<u8>> = (0..3).map(compressible).collect();
        assert!(frame(&records[0], WalCompression::Zstd).len() < records[0].len() / 2, "compressed");
        super::super::assert_every_cut_keeps_the_whole_records_before_it(&records, WalCompression::Zstd);
    }

    #[test]
    fn a_damaged_or_undecodable_compressed_record_ends_replay_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), FsyncPolicy::Never, Duration::ZERO).unwrap();
        let (a, b) = (compressible(1), compressible(2));
        let (fa, mut fb) = (frame(&a, WalCompression::Zstd), frame(&b, WalCompression::Zstd));
        // A byte of the compressed data flipped: the crc catches it.
        let mid = HEADER + 4 + (fb.len() - HEADER - 4) / 2;
        fb[mid] ^= 0x55;
        wal.append_frames([fa.as_slice(), fb.as_slice(), fa.as_slice()]).unwrap();
        let read = read_segment(dir.path(), wal.active_id()).unwrap();
        assert_eq!((read.records, read.torn_bytes as usize), (vec![a.clone()], fb.len() + fa.len()));
        // A record whose crc holds but whose data is not zstd, or decompresses to another
        // length than it says: not trusted either.
        for payload in [[&4096u32.to_le_bytes()[..], b"not zstd at all"].concat(), {
            let z = zstd::bulk::compress(&a, 1).unwrap();
            [&(a.len() as u32 + 1).to_le_bytes()[..], &z].concat()
        }] {
            let mut bad = ((payload.len() as u32) | ZSTD_BIT).to_le_bytes().to_vec();
            bad.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            bad.extend_from_slice(&payload);
            wal.rotate().unwrap();
            wal.append_frames([fa.as_slice(), bad.as_slice()]).unwrap();
            let read = read_segment(dir.path(), wal.active_id()).unwrap();
            assert_eq!((read.records, read.torn_bytes as usize), (vec![a.clone()], bad.len()));
        }
    }
}
