//! What a flush saves of the traces still being assembled: not their spans, which are in
//! the WAL already, but each trace's id and the WAL position of its first pending span.
//! The store keeps the WAL segments from the oldest such position on; a restart replays
//! those segments into the assembler only (their rows are in Parquet), taking of each
//! listed trace the spans at or after its position.
//!
//! The file is `MAGIC`, one flags byte, then `[trace id: 16][segment: u64 LE][record: u32
//! LE]` per trace. Flag bit 0, [`InFlight::stored_at_receipt`]: the spans of these traces
//! already have their `spans` rows in the segments (the collector kept every span and
//! built its row as it was received), so a replay must not store them again. Files of the
//! first version (`SLOINFL1`, no flags byte) come from a collector that stored spans when
//! their trace was emitted. Files written before either (the pending spans as a
//! `SpanBatch`) start with a protobuf tag, never with a magic, and are still restored.

use std::collections::HashMap;

use super::TraceId;

const MAGIC: &[u8; 8] = b"SLOINFL2";
/// The first version: no flags byte.
const MAGIC_V1: &[u8; 8] = b"SLOINFL1";
const ENTRY: usize = 16 + 8 + 4;

/// Where a record is in the WAL: its segment, and its index among the segment's records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WalPos {
    /// The segment id.
    pub segment: u64,
    /// The record's index in the segment.
    pub record: u32,
}

/// The traces in flight at a flush, by the WAL position their pending spans start at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InFlight {
    traces: HashMap<TraceId, WalPos, ahash::RandomState>,
    /// Whether these traces' spans were stored as they were received (see the module's
    /// comment).
    pub stored_at_receipt: bool,
}

/// The state file of `traces` (each trace's id and the position of its first pending
/// span), and the oldest WAL segment a restart needs, without gathering them first: a
/// flush writes it from the assembler's table as it is, hundreds of thousands of traces
/// under load, every 5 s at 130,000 spans/s (BENCHMARKS.md).
pub(crate) fn encode<'a>(
    traces: impl ExactSizeIterator<Item = (&'a TraceId, WalPos)>,
    stored_at_receipt: bool,
) -> (Option<u64>, Vec<u8>) {
    if traces.len() == 0 {
        return (None, Vec::new());
    }
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + ENTRY * traces.len());
    out.extend_from_slice(MAGIC);
    out.push(u8::from(stored_at_receipt));
    let mut keep_from = u64::MAX;
    for (id, pos) in traces {
        keep_from = keep_from.min(pos.segment);
        out.extend_from_slice(id);
        out.extend_from_slice(&pos.segment.to_le_bytes());
        out.extend_from_slice(&pos.record.to_le_bytes());
    }
    (Some(keep_from), out)
}

/// A state file that is neither format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("in-flight state file is cut short or corrupt ({0} bytes after the header, not a multiple of {ENTRY})")]
pub(crate) struct BadInFlight(usize);

impl InFlight {
    #[cfg(test)]
    pub(super) fn new(traces: HashMap<TraceId, WalPos, ahash::RandomState>) -> Self {
        InFlight { traces, stored_at_receipt: false }
    }

    /// Traces in flight.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.traces.len()
    }

    /// The oldest WAL segment a restart needs, if any.
    #[cfg(test)]
    pub(crate) fn keep_from(&self) -> Option<u64> {
        self.traces.values().map(|p| p.segment).min()
    }

    /// Whether a span of `trace` in the record at `pos` was pending at the flush.
    pub(crate) fn wants(&self, trace: &TraceId, pos: WalPos) -> bool {
        self.traces.get(trace).is_some_and(|from| *from <= pos)
    }

    /// Whether `bytes` is in this format (rather than the older `SpanBatch` one).
    pub(crate) fn is_this_format(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC) || bytes.starts_with(MAGIC_V1)
    }

    /// The state file's bytes; empty when nothing is in flight.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode(self.traces.iter().map(|(id, pos)| (id, *pos)), self.stored_at_receipt).1
    }

    /// Reads a state file written by [`InFlight::encode`].
    pub(crate) fn decode(bytes: &[u8]) -> Result<InFlight, BadInFlight> {
        let (body, flags) = match (bytes.strip_prefix(MAGIC.as_slice()), bytes.strip_prefix(MAGIC_V1.as_slice())) {
            (Some([flags, body @ ..]), _) => (body, *flags),
            (_, Some(body)) => (body, 0),
            _ => return Err(BadInFlight(bytes.len().saturating_sub(MAGIC.len()))),
        };
        if body.len() % ENTRY != 0 {
            return Err(BadInFlight(body.len()));
        }
        let traces = body
            .chunks_exact(ENTRY)
            .map(|e| {
                let mut id = [0u8; 16];
                id.copy_from_slice(&e[..16]);
                let segment = u64::from_le_bytes(e[16..24].try_into().unwrap_or_default());
                let record = u32::from_le_bytes(e[24..28].try_into().unwrap_or_default());
                (id, WalPos { segment, record })
            })
            .collect();
        Ok(InFlight { traces, stored_at_receipt: flags & 1 == 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_a_cut_file() {
        let pos = |segment, record| WalPos { segment, record };
        let f = InFlight::new([([1; 16], pos(7, 3)), ([2; 16], pos(5, 0))].into_iter().collect());
        let bytes = f.encode();
        assert!(InFlight::is_this_format(&bytes));
        assert_eq!(InFlight::decode(&bytes).unwrap(), f);
        assert_eq!(f.keep_from(), Some(5));
        assert!(f.wants(&[1; 16], pos(7, 3)) && f.wants(&[1; 16], pos(8, 0)));
        assert!(!f.wants(&[1; 16], pos(7, 2)), "spans before the pending entry were emitted already");
        assert!(!f.wants(&[3; 16], pos(9, 0)));
        assert_eq!(InFlight::decode(&bytes[..bytes.len() - 1]), Err(BadInFlight(2 * ENTRY - 1)));
        assert!(InFlight::default().encode().is_empty());
        // The flag round-trips; a first-version file (no flags byte) stored at emission.
        let kept = InFlight { stored_at_receipt: true, ..f.clone() };
        assert!(InFlight::decode(&kept.encode()).unwrap().stored_at_receipt);
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&bytes[MAGIC.len() + 1..]);
        assert!(InFlight::is_this_format(&v1));
        assert_eq!(InFlight::decode(&v1).unwrap(), f);
        assert!(!InFlight::is_this_format(&[0x0a, 0x03]), "a SpanBatch is the older format");
    }
}
