//! Per (service, model, minute) rollups of the `requests` table: mergeable sketches of
//! duration, queue, compute, TTFT and token counts, plus request and error counts.
//!
//! A rollup of any set of rows merged with a rollup of any other set is the rollup of both,
//! so rollups built per flush, per file or per batch combine into any window without
//! rescanning requests.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use slo_store::schema::col;
use slo_store::wire::{take, take_array};

use crate::columns::{self, f64_at, i64_at, str_at};
use crate::error::Result;
use crate::sketch::{DecodeError, Sketch};

/// Nanoseconds in a minute.
pub const MINUTE_NS: i64 = 60_000_000_000;

/// The minute (ns since the epoch, floored) a time falls in.
pub(crate) fn minute_of(t_ns: i64) -> i64 {
    t_ns.div_euclid(MINUTE_NS) * MINUTE_NS
}

/// What one rollup is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The `service` of the requests.
    pub service: String,
    /// Their `model` (empty when unknown).
    pub model: String,
    /// The minute they started in, ns since the epoch.
    pub minute: i64,
}

/// The aggregates of one (service, model, minute) or of any merge of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    /// Requests.
    pub count: u64,
    /// Requests with `status = 'error'`.
    pub errors: u64,
    /// `duration_ms`.
    pub duration: Sketch,
    /// `queue_ms`.
    pub queue: Sketch,
    /// `compute_ms`.
    pub compute: Sketch,
    /// `ttft_ms` (requests that have one).
    pub ttft: Sketch,
    /// `input_tokens` (requests that have them).
    pub input_tokens: Sketch,
    /// `output_tokens`.
    pub output_tokens: Sketch,
}

impl Cell {
    /// Adds everything of `other`.
    pub fn merge(&mut self, other: &Cell) {
        self.count += other.count;
        self.errors += other.errors;
        self.duration.merge(&other.duration);
        self.queue.merge(&other.queue);
        self.compute.merge(&other.compute);
        self.ttft.merge(&other.ttft);
        self.input_tokens.merge(&other.input_tokens);
        self.output_tokens.merge(&other.output_tokens);
    }

    fn sketches(&self) -> [&Sketch; 6] {
        [&self.duration, &self.queue, &self.compute, &self.ttft, &self.input_tokens, &self.output_tokens]
    }
}

/// Rollups by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rollups {
    cells: BTreeMap<Key, Cell>,
}

impl Rollups {
    /// No rollups.
    pub fn new() -> Rollups {
        Rollups::default()
    }

    /// Number of (service, model, minute) cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Every cell in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Cell)> {
        self.cells.iter()
    }

    /// Adds the rows of a `requests` batch.
    pub fn add_requests(&mut self, batch: &RecordBatch) -> Result<()> {
        let time = columns::times(batch, col::TIME)?;
        let service = columns::strings(batch, col::SERVICE)?;
        let model = columns::strings(batch, col::MODEL)?;
        let status = columns::strings(batch, col::STATUS)?;
        let duration = columns::floats(batch, col::DURATION_MS)?;
        let queue = columns::floats(batch, col::QUEUE_MS)?;
        let compute = columns::floats(batch, col::COMPUTE_MS)?;
        let ttft = columns::floats(batch, col::TTFT_MS)?;
        let input = columns::ints(batch, "input_tokens")?;
        let output = columns::ints(batch, "output_tokens")?;
        // Rows of one batch mostly share service, model and minute: reuse the last cell.
        let mut last: Option<(Key, Cell)> = None;
        for i in 0..batch.num_rows() {
            let Some(t) = i64_at(&time, i) else { continue };
            let (s, m, minute) = (str_at(&service, i).unwrap_or(""), str_at(&model, i).unwrap_or(""), minute_of(t));
            // Compared borrowed: a key is built (two strings) only where it changes.
            let cell = match &mut last {
                Some((k, c)) if k.minute == minute && k.service == s && k.model == m => c,
                _ => {
                    if let Some((k, c)) = last.take() {
                        self.cells.entry(k).or_default().merge(&c);
                    }
                    let key = Key { service: s.to_string(), model: m.to_string(), minute };
                    &mut last.insert((key, Cell::default())).1
                }
            };
            cell.count += 1;
            if str_at(&status, i) == Some("error") {
                cell.errors += 1;
            }
            if let Some(v) = f64_at(&duration, i) {
                cell.duration.add(v);
            }
            if let Some(v) = f64_at(&queue, i) {
                cell.queue.add(v);
            }
            if let Some(v) = f64_at(&compute, i) {
                cell.compute.add(v);
            }
            if let Some(v) = f64_at(&ttft, i) {
                cell.ttft.add(v);
            }
            if let Some(v) = i64_at(&input, i) {
                cell.input_tokens.add(v as f64);
            }
            if let Some(v) = i64_at(&output, i) {
                cell.output_tokens.add(v as f64);
            }
        }
        if let Some((k, c)) = last {
            self.cells.entry(k).or_default().merge(&c);
        }
        Ok(())
    }

    /// Adds a cell for (service, model, minute) (merged into one already there).
    pub fn insert(&mut self, service: &str, model: &str, minute: i64, cell: Cell) {
        let key = Key { service: service.to_string(), model: model.to_string(), minute: minute_of(minute) };
        self.cells.entry(key).or_default().merge(&cell);
    }

    /// Adds every cell of `other`.
    pub fn merge(&mut self, other: &Rollups) {
        for (k, c) in &other.cells {
            self.cells.entry(k.clone()).or_default().merge(c);
        }
    }

    /// Keeps only the cells `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Key) -> bool) {
        self.cells.retain(|k, _| keep(k));
    }

    /// The services (with their models) present.
    pub fn services(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for k in self.cells.keys() {
            let models = out.entry(k.service.clone()).or_default();
            if !models.contains(&k.model) {
                models.push(k.model.clone());
            }
        }
        out
    }

    /// One merged cell per minute in `[from, to)` for `service` (all its models, or one).
    pub fn minutes(&self, service: &str, model: Option<&str>, from: i64, to: i64) -> BTreeMap<i64, Cell> {
        let mut out: BTreeMap<i64, Cell> = BTreeMap::new();
        for (k, c) in &self.cells {
            if k.service == service && model.is_none_or(|m| m == k.model) && k.minute >= from && k.minute < to {
                out.entry(k.minute).or_default().merge(c);
            }
        }
        out
    }

    /// Smallest and largest minute present.
    pub fn span(&self) -> Option<(i64, i64)> {
        let min = self.cells.keys().map(|k| k.minute).min()?;
        let max = self.cells.keys().map(|k| k.minute).max()?;
        Some((min, max))
    }

    /// Compact bytes: a magic and version, the cell count, then per cell its key, counts and
    /// six sketches.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.cells.len() * 1500);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.cells.len() as u64).to_le_bytes());
        for (k, c) in &self.cells {
            put_str(&mut out, &k.service);
            put_str(&mut out, &k.model);
            out.extend_from_slice(&k.minute.to_le_bytes());
            out.extend_from_slice(&c.count.to_le_bytes());
            out.extend_from_slice(&c.errors.to_le_bytes());
            for s in c.sketches() {
                s.encode(&mut out);
            }
        }
        out
    }

    /// Reads what [`Rollups::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Rollups, DecodeError> {
        let mut b = bytes;
        if take(&mut b, MAGIC.len())? != MAGIC {
            return Err(DecodeError("not a rollup file (bad magic)"));
        }
        let n = u64_le(&mut b)?;
        let mut cells = BTreeMap::new();
        for _ in 0..n {
            let service = get_str(&mut b)?;
            let model = get_str(&mut b)?;
            let minute = u64_le(&mut b)? as i64;
            let count = u64_le(&mut b)?;
            let errors = u64_le(&mut b)?;
            let mut s = || Sketch::decode(&mut b);
            let cell = Cell {
                count,
                errors,
                duration: s()?,
                queue: s()?,
                compute: s()?,
                ttft: s()?,
                input_tokens: s()?,
                output_tokens: s()?,
            };
            cells.insert(Key { service, model, minute }, cell);
        }
        if !b.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Rollups { cells })
    }
}

const MAGIC: &[u8] = b"SLOROLL1";

/// The directory and manifest name of persisted rollups.
pub(crate) const ROLLUPS: &str = "rollups";

/// Rollups as the store's derived data: one file per flush with the rollups of the
/// `requests` rows it wrote, so that the analyzer merges small files instead of scanning
/// requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct RollupDerive;

impl slo_store::Derive for RollupDerive {
    fn table(&self) -> &'static str {
        ROLLUPS
    }

    fn derive(&self, requests: &[RecordBatch]) -> std::result::Result<Vec<u8>, String> {
        let mut r = Rollups::new();
        for b in requests {
            r.add_requests(b).map_err(|e| e.to_string())?;
        }
        Ok(r.encode())
    }

    fn merge(&self, parts: &[&[u8]]) -> std::result::Result<Vec<u8>, String> {
        let mut r = Rollups::new();
        for (i, p) in parts.iter().enumerate() {
            r.merge(&Rollups::decode(p).map_err(|e| format!("part {i}: {e}"))?);
        }
        Ok(r.encode())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn u64_le(b: &mut &[u8]) -> Result<u64, DecodeError> {
    Ok(u64::from_le_bytes(take_array(b)?))
}

fn get_str(b: &mut &[u8]) -> Result<String, DecodeError> {
    let len = u32::from_le_bytes(take_array(b)?) as usize;
    String::from_utf8(take(b, len)?.to_vec()).map_err(|_| DecodeError("a name is not UTF-8"))
}
