//! The store of `slo`: what the collector writes and everything else reads.
//!
//! Data arrives as [`SpanBatch`]es (spans, scraped samples, Kubernetes changes). The
//! write-ahead log ([`wal`]) makes a batch durable before the collector acknowledges it;
//! the batch is then turned into Arrow rows of the `spans`, `requests`, `samples` and
//! `changes` tables ([`rows`], [`cluster_rows`], [`schema`]) and kept in memory until a flush
//! writes them as Parquet segments partitioned by hour ([`segments`]). Queries go through
//! DataFusion over the in-memory rows and the segments together ([`query`]), so a row is
//! always visible exactly once: in memory, being flushed, or in a segment.
//!
//! With an object store configured ([`Remote`]), the uploader copies each flush's files
//! there and deletes the local copies (the WAL stays local: it makes an ack durable);
//! readers given the object store read every collector's manifest below it (`bucket.rs`).
//!
//! The manifest ([`manifest`]) is the only source of truth about which segments exist and
//! up to which WAL segment the data is reflected in them; a crash between writing a
//! segment and updating the manifest leaves an orphan file that is removed on open.

mod bucket;
mod cluster_rows;
mod compact;
mod compact_segments;
pub mod encoded;
mod error;
mod flusher;
mod manifest;
mod metrics;
pub mod output;
mod query;
mod records;
mod remote;
mod rows;
pub mod schema;
mod segments;
mod store;
mod upload;
mod wal;
pub mod wire;

pub use bucket::{CollectorView, grace_too_short, lagging};
pub use cluster_rows::{changes_batch, cluster_batches};
pub use compact::{FAN_IN as COMPACTION_FAN_IN, flush_range};
pub use error::{Error, Result};
pub use flusher::{FlushDone, FlushError, Flusher, FlusherThread};
pub use manifest::{Dropped, Manifest, SegmentFile, WalShard};
pub use metrics::StoreMetrics;
pub use query::{QueryLimits, Snapshot};
pub use records::{
    Attr, ChangeRecord, LinkRef, ResourceSpans, SampleRecord, SpanBatch, SpanRecord, canonical_change_key, find_attr,
};
pub use remote::{RESERVED_NAMES, Remote, RemoteManifest, RemoteOptions, valid_collector_name};
pub use rows::{Request, RequestRef, RequestRow, RequestsBuilder, RowWidths, requests_batch};
pub use segments::writer_properties;
pub use store::{Derive, FlushJob, Recovery, Store, StoreConfig, wal_dir, wal_shards_on_disk, wal_unflushed};
pub use upload::{UploadRound, UploaderThread};
pub use wal::{
    FsyncPolicy, SegmentRead, Wal, WalCompression, frame as frame_wal_record, list_segments as list_wal_segments,
    read_segment as read_wal_segment,
};
