//! The Arrow schemas of the tables the README lists ("Tables").
//!
//! These are contracts: `slo query`, the JSON API and every later analysis see exactly these
//! column names and types. Timestamps are data time in nanoseconds, UTC.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// The names of the tables.
pub const REQUESTS: &str = "requests";
/// Raw spans.
pub const SPANS: &str = "spans";
/// Scraped metric samples.
pub const SAMPLES: &str = "samples";
/// Normalized Kubernetes changes.
pub const CHANGES: &str = "changes";
/// All tables the store holds.
pub const TABLES: [&str; 4] = [REQUESTS, SPANS, SAMPLES, CHANGES];

/// The timestamp type of every `time` column.
pub fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The type of an attribute map column: `Map<Utf8, Utf8>` as arrow's `MapBuilder` makes it.
pub fn attribute_map() -> DataType {
    let entries =
        Fields::from(vec![Field::new("keys", DataType::Utf8, false), Field::new("values", DataType::Utf8, true)]);
    DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
}

static REQUESTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    let f = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp(), false),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        s("namespace"),
        s("deployment"),
        s("replicaset"),
        s("pod"),
        s("node"),
        s("gpu"),
        s("model"),
        s("operation"),
        Field::new("status", DataType::Utf8, false),
        Field::new("duration_ms", DataType::Float64, false),
        Field::new("queue_ms", DataType::Float64, false),
        Field::new("compute_ms", DataType::Float64, false),
        Field::new("other_ms", DataType::Float64, false),
        f("ttft_ms"),
        Field::new("input_tokens", DataType::Int64, true),
        Field::new("output_tokens", DataType::Int64, true),
        Field::new("split_source", DataType::Utf8, false),
        Field::new("attributes", attribute_map(), true),
    ]))
});

static SPANS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp(), false),
        Field::new("end_time", timestamp(), false),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("duration_ms", DataType::Float64, false),
        Field::new("resource_attributes", attribute_map(), true),
        Field::new("attributes", attribute_map(), true),
    ]))
});

static SAMPLES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp(), false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("target", DataType::Utf8, false),
        s("namespace"),
        s("pod"),
        s("container"),
        s("node"),
        s("gpu"),
        s("model"),
        s("attribution"),
        Field::new("labels", attribute_map(), true),
    ]))
});

static CHANGES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new("time", timestamp(), false),
        Field::new("kind", DataType::Utf8, false),
        s("namespace"),
        Field::new("object_kind", DataType::Utf8, false),
        Field::new("object", DataType::Utf8, false),
        s("from"),
        s("to"),
        s("reason"),
        s("message"),
        s("source"),
        Field::new("key", DataType::Utf8, false),
        Field::new("attributes", attribute_map(), true),
    ]))
});

/// Schema of `samples`: one row per scraped sample that matters for inference. `labels`
/// holds every label the target exposed; the identity columns are what attribution
/// concluded (`attribution` says how sure it is).
pub fn samples() -> SchemaRef {
    SAMPLES_SCHEMA.clone()
}

/// Schema of `changes`: one row per normalized Kubernetes change. `key` identifies the
/// occurrence (an Event's uid and count, a rollout's new template hash, ...) so that a
/// change is stored once however often it is seen.
pub fn changes() -> SchemaRef {
    CHANGES_SCHEMA.clone()
}

/// Schema of `requests`: one row per inference request.
pub fn requests() -> SchemaRef {
    REQUESTS_SCHEMA.clone()
}

/// Schema of `spans`: every span received.
pub fn spans() -> SchemaRef {
    SPANS_SCHEMA.clone()
}

/// Schema of a table by name.
pub fn of(table: &str) -> Option<SchemaRef> {
    match table {
        REQUESTS => Some(requests()),
        SPANS => Some(spans()),
        SAMPLES => Some(samples()),
        CHANGES => Some(changes()),
        _ => None,
    }
}

/// OTLP span kind as the `spans.kind` column spells it.
pub fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// OTLP status code as the `spans.status` column spells it.
pub fn status_name(code: i32) -> &'static str {
    match code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}
