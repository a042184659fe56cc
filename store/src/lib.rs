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
//! The manifest ([`manifest`]) is the only source of truth about which segments exist and
//! up to which WAL segment the data is reflected in them; a crash between writing a
//! segment and updating the manifest leaves an orphan file that is removed on open.

pub mod cluster_rows;
pub mod encoded;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod output;
pub mod query;
pub mod records;
pub mod rows;
pub mod schema;
pub mod segments;
pub mod store;
pub mod wal;
pub mod wire;

pub use error::{Error, Result};
pub use metrics::StoreMetrics;
pub use records::{Attr, ChangeRecord, LinkRef, ResourceSpans, SampleRecord, SpanBatch, SpanRecord};
pub use rows::{Request, RequestRef, RequestRow};
pub use store::{Derive, FlushJob, Recovery, Store, StoreConfig};
pub use wal::{FsyncPolicy, Wal};
