//! A mergeable quantile sketch with a relative-error guarantee (DDSketch, Masson et al.,
//! VLDB 2019).
//!
//! Every positive value `v` falls in bucket `ceil(log_gamma(v))` with
//! `gamma = (1 + a) / (1 - a)`; a quantile is answered with the bucket's midpoint
//! `2 gamma^i / (gamma + 1)`, which is within relative error `a` of every value in the
//! bucket. So for any quantile `q` the answer is within `a` (relative) of the exact
//! lower-rank quantile `sorted[floor(q * (n - 1))]`. Merging two sketches adds bucket
//! counts: merge(sketch(A), sketch(B)) is exactly sketch(A ++ B), which is what lets
//! per-minute sketches answer any window.
//!
//! Latencies are non-negative; values at or below [`MIN_VALUE`] (and negative ones, which
//! a skewed clock can produce) are counted in a zero bucket, values above [`MAX_VALUE`]
//! are clamped to it. That bounds a sketch to about 2,100 buckets whatever it is fed.

use std::fmt;

use slo_store::wire::{WireError, put_varint, read_varint, take, take_array};

/// The relative accuracy every sketch here is built with: 1%.
pub(crate) const RELATIVE_ACCURACY: f64 = 0.01;
/// Values at or below this (milliseconds: a nanosecond) count as zero.
pub(crate) const MIN_VALUE: f64 = 1e-6;
/// Values above this (milliseconds: about 31 years) are clamped to it.
pub(crate) const MAX_VALUE: f64 = 1e12;

const GAMMA: f64 = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);

fn ln_gamma() -> f64 {
    GAMMA.ln()
}

fn index_of(v: f64) -> i32 {
    (v.min(MAX_VALUE).ln() / ln_gamma()).ceil() as i32
}

fn value_of(index: i32) -> f64 {
    2.0 * (index as f64 * ln_gamma()).exp() / (GAMMA + 1.0)
}

/// A DDSketch over non-negative values (counts in a dense array from `offset`).
#[derive(Clone, Default, PartialEq)]
pub struct Sketch {
    offset: i32,
    counts: Vec<u64>,
    zeros: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl fmt::Debug for Sketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sketch")
            .field("count", &self.count)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("buckets", &self.counts.len())
            .finish()
    }
}

/// Why bytes could not be read as a sketch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad sketch encoding: {0}")]
pub struct DecodeError(pub &'static str);

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError(e.0)
    }
}

impl Sketch {
    /// An empty sketch.
    pub fn new() -> Sketch {
        Sketch::default()
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of the values added (exact, not bucketed).
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Mean of the values added, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Smallest value added.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest value added.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Adds one value; NaN is ignored.
    pub fn add(&mut self, v: f64) {
        self.add_n(v, 1);
    }

    /// Adds `n` copies of a value; NaN is ignored.
    pub fn add_n(&mut self, v: f64, n: u64) {
        if v.is_nan() || n == 0 {
            return;
        }
        let v = v.min(MAX_VALUE);
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += n;
        self.sum += v * n as f64;
        if v <= MIN_VALUE {
            self.zeros += n;
            return;
        }
        let i = index_of(v);
        self.grow_to_hold(i, i);
        self.counts[(i - self.offset) as usize] += n;
    }

    fn grow_to_hold(&mut self, lo: i32, hi: i32) {
        if self.counts.is_empty() {
            self.offset = lo;
            self.counts = vec![0; (hi - lo + 1) as usize];
            return;
        }
        let cur_hi = self.offset + self.counts.len() as i32 - 1;
        if lo < self.offset {
            let extra = (self.offset - lo) as usize;
            let mut counts = vec![0; extra + self.counts.len()];
            counts[extra..].copy_from_slice(&self.counts);
            self.counts = counts;
            self.offset = lo;
        }
        if hi > cur_hi {
            self.counts.resize((hi - self.offset + 1) as usize, 0);
        }
    }

    /// Adds every value of `other` (exactly as if they had been added here).
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum += other.sum;
        self.zeros += other.zeros;
        if !other.counts.is_empty() {
            let hi = other.offset + other.counts.len() as i32 - 1;
            self.grow_to_hold(other.offset, hi);
            let start = (other.offset - self.offset) as usize;
            for (dst, src) in self.counts[start..].iter_mut().zip(&other.counts) {
                *dst += src;
            }
        }
    }

    /// The `q` quantile (0 <= q <= 1) within the relative accuracy of the exact lower-rank
    /// quantile, clamped to the exact min and max; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || q.is_nan() {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        if rank < self.zeros {
            // Zero-bucket values lie in [0, MIN_VALUE] (negatives count as zero).
            return Some(0.0f64.clamp(self.min, self.max));
        }
        let mut seen = self.zeros;
        for (k, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                let v = value_of(self.offset + k as i32);
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// How many values are at or below `v` (bucket resolution: a bucket counts whole when
    /// its midpoint is at or below `v`).
    pub fn count_at_or_below(&self, v: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        if v >= self.max {
            return self.count;
        }
        if v < self.min {
            return 0;
        }
        let mut n = self.zeros;
        for (k, c) in self.counts.iter().enumerate() {
            if value_of(self.offset + k as i32) <= v {
                n += c;
            } else {
                break;
            }
        }
        n
    }

    /// Compact bytes: a version, count, zeros, sum, min, max, offset, then the bucket counts
    /// as LEB128 varints with runs of empty buckets written as a zero and a run length.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        put_varint(self.count, out);
        put_varint(self.zeros, out);
        out.extend_from_slice(&self.sum.to_le_bytes());
        out.extend_from_slice(&self.min.to_le_bytes());
        out.extend_from_slice(&self.max.to_le_bytes());
        put_varint(zigzag(self.offset), out);
        put_varint(self.counts.len() as u64, out);
        let mut k = 0;
        while k < self.counts.len() {
            if self.counts[k] == 0 {
                let run = self.counts[k..].iter().take_while(|c| **c == 0).count();
                put_varint(0, out);
                put_varint(run as u64, out);
                k += run;
            } else {
                put_varint(self.counts[k], out);
                k += 1;
            }
        }
    }

    /// Reads what [`Sketch::encode`] wrote; `bytes` advances past it.
    pub fn decode(bytes: &mut &[u8]) -> Result<Sketch, DecodeError> {
        let version = take(bytes, 1)?[0];
        if version != 1 {
            return Err(DecodeError("unknown version"));
        }
        let count = read_varint(bytes)?;
        let zeros = read_varint(bytes)?;
        let sum = f64::from_le_bytes(take_array(bytes)?);
        let min = f64::from_le_bytes(take_array(bytes)?);
        let max = f64::from_le_bytes(take_array(bytes)?);
        let offset = unzigzag(read_varint(bytes)?).ok_or(DecodeError("offset out of range"))?;
        let len = read_varint(bytes)? as usize;
        let max_len = (index_of(MAX_VALUE) - index_of(MIN_VALUE) + 2) as usize;
        if len > max_len {
            return Err(DecodeError("too many buckets"));
        }
        let mut counts = Vec::with_capacity(len);
        while counts.len() < len {
            let c = read_varint(bytes)?;
            if c == 0 {
                let run = read_varint(bytes)? as usize;
                if run == 0 || counts.len() + run > len {
                    return Err(DecodeError("bad run of empty buckets"));
                }
                counts.resize(counts.len() + run, 0);
            } else {
                counts.push(c);
            }
        }
        let total: u64 =
            counts.iter().try_fold(zeros, |a, c| a.checked_add(*c)).ok_or(DecodeError("count overflow"))?;
        if total != count {
            return Err(DecodeError("bucket counts do not add up to the count"));
        }
        Ok(Sketch { offset, counts, zeros, count, sum, min, max })
    }
}

fn zigzag(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

fn unzigzag(v: u64) -> Option<i32> {
    let v = u32::try_from(v).ok()?;
    Some(((v >> 1) as i32) ^ -((v & 1) as i32))
}

#[cfg(test)]
mod tests;
