//! The collector of `slo`: OTLP in, `spans` and `requests` rows out.
//!
//! ```text
//! OTLP protobuf ─> transcode (validate, redact, write the WAL record in one pass)
//! OTLP/JSON, import ─> decode ─> convert ─> encode
//!     ─> prepare (the record read in place: held spans)
//!     ─> Ingest (bounded by bytes)
//!     ─> pipeline thread: WAL group commit ─> ack ─> Assembler
//!        ─> split (queue / compute / other) ─> requests rows ─> Store ─> flusher thread
//!        ─> tail sampling (slow, failed, a share of the rest) ─> spans rows ─> Store
//! ```
//!
//! Acknowledgement happens after the WAL write, never before: an export answered with
//! success survives `kill -9`. Everything between the network and the store is bounded:
//! the ingest queue by bytes (beyond it, exports are shed with 429 / UNAVAILABLE), the
//! assembler by pending spans (beyond it, the oldest traces are emitted early and counted),
//! the store by unflushed bytes (beyond it, the pipeline waits, and so the queue fills).

/// The allocator `slo` runs with (its `mimalloc` feature, the default), so that the
/// ignored cost tests (`assemble::tests::assembly_cost`) measure what the server pays.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod assemble;
mod config;
mod convert;
mod error;
mod import;
mod ingest;
pub mod kube;
mod metrics;
pub mod otlp;
mod pair_key;
mod pipeline;
mod redact;
mod sample;
pub mod scrape;
mod shard;
pub mod sli;
mod split;
mod timegate;
mod transcode;
mod unflushed;

pub use config::{CollectorConfig, RedactionConfig, SamplingConfig, SloThreshold};
pub use convert::Converter;
pub use error::{Error, Result};
pub use import::{ImportState, ImportSummary, import_file};
pub use ingest::{Health, Ingest};
pub use metrics::{CollectorMetrics, FnGauge, resident_bytes};
pub use pipeline::{Pipeline, PipelineHandle, open_store};
pub use redact::Redactor;
pub use timegate::TimeRules;
pub use unflushed::read_only as read_unflushed;
