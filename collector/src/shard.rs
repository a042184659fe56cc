//! Sharding by trace id: which pipeline shard a trace belongs to, and an export's WAL
//! record cut into one record per shard.
//!
//! With `ingest.shards` above 1, each shard has its own pipeline thread, WAL, assembler and
//! rows in memory (`pipeline.rs`, ARCHITECTURE.md "Ingest shards"). Every span of a trace
//! goes to the shard [`shard_of`] its trace id names, so a trace is assembled in one place
//! and a shard's WAL holds exactly what its rows come from: replay after a crash is per
//! shard. Spans that belong to no trace (no valid trace id), and scraped samples and
//! Kubernetes changes, go to shard 0.

use slo_store::encoded::ResourceView;
use slo_store::wire::{self, Open, begin_message, end_message, put_bytes, put_message, put_varint};

use crate::assemble::TraceId;
use crate::error::{Error, Result};

/// The shard of a trace among `n`. W3C trace ids are random in their last bytes; both
/// halves are mixed in so that ids random only in their first half spread too.
pub(crate) fn shard_of(id: &TraceId, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    // splitmix64's finalizer, seeded apart from tail sampling's draw (`sample.rs`), so
    // that which traces a shard gets says nothing about which are sampled.
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let hi = u64::from_le_bytes(id[..8].try_into().unwrap_or_default());
    let lo = u64::from_le_bytes(id[8..].try_into().unwrap_or_default());
    (mix(mix(lo ^ 0x5851_f42d_4c95_7f2d) ^ hi) % n as u64) as usize
}

/// The shard of a span whose trace id is `trace_id` (any length: one that is not a trace
/// id's goes to shard 0).
pub(crate) fn shard_of_bytes(trace_id: &[u8], n: usize) -> usize {
    match TraceId::try_from(trace_id) {
        Ok(id) => shard_of(&id, n),
        Err(_) => 0,
    }
}

/// Appends an `Attr` message (key 1, value 2) as field `tag`.
fn put_attr(tag: u32, key: &str, value: &str, out: &mut Vec<u8>) {
    let len = |b: usize| if b == 0 { 0 } else { 1 + wire::varint_len(b as u64) + b };
    put_varint(u64::from(tag << 3 | 2), out);
    put_varint((len(key.len()) + len(value.len())) as u64, out);
    put_bytes(1, key.as_bytes(), out);
    put_bytes(2, value.as_bytes(), out);
}

/// One encoded `SpanBatch` per shard, written span by span: a span goes into its shard's
/// record under a copy of its resource (service and attributes), opened once per resource
/// per shard.
pub(crate) struct ShardRecords {
    bufs: Vec<Vec<u8>>,
    /// Per shard: the resource (its index in the export) whose group is open.
    open: Vec<Option<(usize, Open)>>,
}

impl ShardRecords {
    /// Records for `n` shards, each with room for about `bytes / n`.
    pub(crate) fn new(n: usize, bytes: usize) -> ShardRecords {
        ShardRecords {
            bufs: (0..n).map(|_| Vec::with_capacity(bytes / n + bytes / (4 * n) + 64)).collect(),
            open: (0..n).map(|_| None).collect(),
        }
    }

    /// Appends an encoded `SpanRecord` of resource `r` to shard `k`'s record.
    pub(crate) fn push(&mut self, k: usize, r: &ResourceView<'_>, raw: &[u8]) {
        let buf = &mut self.bufs[k];
        let same = matches!(&self.open[k], Some((index, _)) if *index == r.index);
        if !same {
            if let Some((_, open)) = self.open[k].take() {
                end_message(open, buf);
            }
            // A group of a few hundred spans takes a 3-byte length; the guess only sets
            // how many bytes are reserved for it.
            let open = begin_message(1, 1 << 16, buf);
            put_bytes(1, r.service.as_bytes(), buf);
            for (key, value) in &r.attrs {
                put_attr(2, key, value, buf);
            }
            self.open[k] = Some((r.index, open));
        }
        put_message(3, raw, buf);
    }

    /// Appends a whole top-level field of a record (samples, changes) to shard `k`'s.
    fn push_field(&mut self, k: usize, tag: u32, body: &[u8]) {
        if let Some((_, open)) = self.open[k].take() {
            end_message(open, &mut self.bufs[k]);
        }
        put_message(tag, body, &mut self.bufs[k]);
    }

    /// The records, one per shard (empty where a shard got nothing).
    pub(crate) fn finish(mut self) -> Vec<Vec<u8>> {
        for (buf, open) in self.bufs.iter_mut().zip(self.open.iter_mut()) {
            if let Some((_, open)) = open.take() {
                end_message(open, buf);
            }
        }
        self.bufs
    }
}

/// An encoded `SpanBatch` cut into one per shard: each span by its trace id, samples and
/// changes to shard 0.
pub(crate) fn split_record(record: &[u8], n: usize) -> Result<Vec<Vec<u8>>> {
    let bad = |e: wire::WireError| Error::Storage(format!("undecodable record: {e}"));
    let mut out = ShardRecords::new(n, record.len());
    slo_store::encoded::visit_spans(record, |r, s, _| {
        out.push(shard_of_bytes(s.trace_id, n), r, s.raw);
        Ok::<_, wire::WireError>(())
    })
    .map_err(bad)?;
    for field in wire::fields(record) {
        if let (tag @ (2 | 3), v) = field.map_err(bad)? {
            out.push_field(0, tag, v.bytes().map_err(bad)?);
        }
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use slo_store::{Attr, ResourceSpans, SampleRecord, SpanBatch, SpanRecord};

    fn span(trace: u8, n: u8) -> SpanRecord {
        SpanRecord {
            trace_id: [trace; 16].to_vec(),
            span_id: [n; 8].to_vec(),
            name: format!("span {trace}/{n}"),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_cut_by_shard_holds_every_span_once_under_its_resource() {
        let batch = SpanBatch {
            resources: vec![
                ResourceSpans {
                    service: "a".into(),
                    resource: vec![Attr::new("k8s.pod.name", "a-0"), Attr::new("empty", "")],
                    spans: (0..40).map(|t| span(t, 1)).chain((0..40).map(|t| span(t, 2))).collect(),
                },
                ResourceSpans {
                    service: "b".into(),
                    resource: vec![],
                    spans: vec![span(3, 3), SpanRecord { trace_id: vec![1, 2], ..span(0, 4) }],
                },
            ],
            samples: vec![SampleRecord { metric: "DCGM_FI_DEV_GPU_UTIL".into(), value: 1.0, ..Default::default() }],
            changes: vec![],
        };
        let record = batch.encode_to_vec();
        let parts = split_record(&record, 3).unwrap();
        assert_eq!(parts.len(), 3);
        let mut spans = 0;
        for (k, part) in parts.iter().enumerate() {
            let b = SpanBatch::decode(part.as_slice()).unwrap();
            assert_eq!(b.samples.len(), usize::from(k == 0), "samples go to shard 0");
            for r in &b.resources {
                let original = batch.resources.iter().find(|o| o.service == r.service).unwrap();
                assert_eq!(r.resource, original.resource, "resource attributes copied whole");
                for s in &r.spans {
                    spans += 1;
                    assert!(original.spans.contains(s), "span unchanged");
                    assert_eq!(shard_of_bytes(&s.trace_id, 3), k, "span in its trace's shard");
                }
            }
        }
        assert_eq!(spans, 82);
        assert!(parts.iter().all(|p| !p.is_empty()), "40 traces reach every one of 3 shards");
    }

    #[test]
    fn traces_spread_over_shards() {
        let mut counts = [0usize; 4];
        for i in 0..4000u64 {
            // Ids that differ only in their first half, and only in their second.
            let mut a = [0u8; 16];
            a[..8].copy_from_slice(&i.to_le_bytes());
            let mut b = [0u8; 16];
            b[8..].copy_from_slice(&i.to_be_bytes());
            counts[shard_of(&a, 4)] += 1;
            counts[shard_of(&b, 4)] += 1;
        }
        assert!(counts.iter().all(|&c| (1600..2400).contains(&c)), "{counts:?}");
    }
}
