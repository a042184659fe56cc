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

/// Column names, one constant each: the schemas below, the row builders, the segments'
/// settings, the rollups and every reader use these, never a literal, so a renamed column
/// is a compile error wherever it is read.
pub mod col {
    /// `time`: data time of the row (a span's or request's start, a sample's, a change's).
    pub const TIME: &str = "time";
    /// `end_time`: a span's end.
    pub const END_TIME: &str = "end_time";
    /// `trace_id`.
    pub const TRACE_ID: &str = "trace_id";
    /// `span_id`.
    pub const SPAN_ID: &str = "span_id";
    /// `parent_span_id`.
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    /// `name`.
    pub const NAME: &str = "name";
    /// `kind`.
    pub const KIND: &str = "kind";
    /// `service`.
    pub const SERVICE: &str = "service";
    /// `status`.
    pub const STATUS: &str = "status";
    /// `duration_ms`: end-to-end latency.
    pub const DURATION_MS: &str = "duration_ms";
    /// `queue_ms`: time waiting in a queue.
    pub const QUEUE_MS: &str = "queue_ms";
    /// `compute_ms`: prefill and decode.
    pub const COMPUTE_MS: &str = "compute_ms";
    /// `other_ms`: the rest: duration - queue - compute.
    pub const OTHER_MS: &str = "other_ms";
    /// `ttft_ms`: time to first token.
    pub const TTFT_MS: &str = "ttft_ms";
    /// `input_tokens`.
    pub const INPUT_TOKENS: &str = "input_tokens";
    /// `output_tokens`.
    pub const OUTPUT_TOKENS: &str = "output_tokens";
    /// `split_source`: which rule split the latency.
    pub const SPLIT_SOURCE: &str = "split_source";
    /// `attributes`.
    pub const ATTRIBUTES: &str = "attributes";
    /// `adjusted_count`: how many traces a stored span's trace stands for (1 when it was
    /// kept for being slow or failed, or when every trace is kept; 1/share when kept by the
    /// sampled share). Null in data written before sampling, when every trace was kept.
    pub const ADJUSTED_COUNT: &str = "adjusted_count";
    /// `sampled_by`: why a span's trace was stored (`slow`, `error`, `share`, `all`,
    /// `unassembled` for a span that belongs to no trace, `unflushed` for a read-only
    /// replay). Null in data written before sampling.
    pub const SAMPLED_BY: &str = "sampled_by";
    /// `resource_attributes`.
    pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
    /// `namespace`.
    pub const NAMESPACE: &str = "namespace";
    /// `deployment`.
    pub const DEPLOYMENT: &str = "deployment";
    /// `replicaset`.
    pub const REPLICASET: &str = "replicaset";
    /// `pod`.
    pub const POD: &str = "pod";
    /// `node`.
    pub const NODE: &str = "node";
    /// `gpu`.
    pub const GPU: &str = "gpu";
    /// `model`.
    pub const MODEL: &str = "model";
    /// `operation`.
    pub const OPERATION: &str = "operation";
    /// `metric`.
    pub const METRIC: &str = "metric";
    /// `value`.
    pub const VALUE: &str = "value";
    /// `target`.
    pub const TARGET: &str = "target";
    /// `container`.
    pub const CONTAINER: &str = "container";
    /// `attribution`: how a sample's pod was found.
    pub const ATTRIBUTION: &str = "attribution";
    /// `labels`.
    pub const LABELS: &str = "labels";
    /// `object_kind`.
    pub const OBJECT_KIND: &str = "object_kind";
    /// `object`.
    pub const OBJECT: &str = "object";
    /// `from`.
    pub const FROM: &str = "from";
    /// `to`.
    pub const TO: &str = "to";
    /// `reason`.
    pub const REASON: &str = "reason";
    /// `message`.
    pub const MESSAGE: &str = "message";
    /// `source`.
    pub const SOURCE: &str = "source";
    /// `key`: what makes a change unique.
    pub const KEY: &str = "key";
}

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
        Field::new(col::TIME, timestamp(), false),
        Field::new(col::TRACE_ID, DataType::Utf8, false),
        Field::new(col::SERVICE, DataType::Utf8, false),
        s(col::NAMESPACE),
        s(col::DEPLOYMENT),
        s(col::REPLICASET),
        s(col::POD),
        s(col::NODE),
        s(col::GPU),
        s(col::MODEL),
        s(col::OPERATION),
        Field::new(col::STATUS, DataType::Utf8, false),
        Field::new(col::DURATION_MS, DataType::Float64, false),
        Field::new(col::QUEUE_MS, DataType::Float64, false),
        Field::new(col::COMPUTE_MS, DataType::Float64, false),
        Field::new(col::OTHER_MS, DataType::Float64, false),
        f(col::TTFT_MS),
        Field::new(col::INPUT_TOKENS, DataType::Int64, true),
        Field::new(col::OUTPUT_TOKENS, DataType::Int64, true),
        Field::new(col::SPLIT_SOURCE, DataType::Utf8, false),
        Field::new(col::ATTRIBUTES, attribute_map(), true),
    ]))
});

static SPANS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(col::TIME, timestamp(), false),
        Field::new(col::END_TIME, timestamp(), false),
        Field::new(col::TRACE_ID, DataType::Utf8, false),
        Field::new(col::SPAN_ID, DataType::Utf8, false),
        Field::new(col::PARENT_SPAN_ID, DataType::Utf8, true),
        Field::new(col::NAME, DataType::Utf8, false),
        Field::new(col::KIND, DataType::Utf8, false),
        Field::new(col::SERVICE, DataType::Utf8, false),
        Field::new(col::STATUS, DataType::Utf8, false),
        Field::new(col::DURATION_MS, DataType::Float64, false),
        Field::new(col::RESOURCE_ATTRIBUTES, attribute_map(), true),
        Field::new(col::ATTRIBUTES, attribute_map(), true),
        // Nullable: segments written before tail sampling lack them and read as null.
        Field::new(col::ADJUSTED_COUNT, DataType::Float64, true),
        Field::new(col::SAMPLED_BY, DataType::Utf8, true),
    ]))
});

static SAMPLES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new(col::TIME, timestamp(), false),
        Field::new(col::METRIC, DataType::Utf8, false),
        Field::new(col::VALUE, DataType::Float64, false),
        Field::new(col::TARGET, DataType::Utf8, false),
        s(col::NAMESPACE),
        s(col::POD),
        s(col::CONTAINER),
        s(col::NODE),
        s(col::GPU),
        s(col::MODEL),
        s(col::ATTRIBUTION),
        Field::new(col::LABELS, attribute_map(), true),
    ]))
});

static CHANGES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = |name: &str| Field::new(name, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new(col::TIME, timestamp(), false),
        Field::new(col::KIND, DataType::Utf8, false),
        s(col::NAMESPACE),
        Field::new(col::OBJECT_KIND, DataType::Utf8, false),
        Field::new(col::OBJECT, DataType::Utf8, false),
        s(col::FROM),
        s(col::TO),
        s(col::REASON),
        s(col::MESSAGE),
        s(col::SOURCE),
        Field::new(col::KEY, DataType::Utf8, false),
        Field::new(col::ATTRIBUTES, attribute_map(), true),
    ]))
});

/// A batch of `schema` from columns named by their field: each field's column, in the
/// schema's order, whatever order they come in; a missing or unknown name is an error.
pub fn batch_by_name(
    schema: SchemaRef,
    mut columns: Vec<(&'static str, arrow::array::ArrayRef)>,
) -> crate::Result<arrow::record_batch::RecordBatch> {
    let mut ordered = Vec::with_capacity(columns.len());
    for field in schema.fields() {
        let i = columns.iter().position(|(n, _)| n == field.name()).ok_or_else(|| {
            crate::Error::Arrow(arrow::error::ArrowError::SchemaError(format!("no column {}", field.name())))
        })?;
        ordered.push(columns.swap_remove(i).1);
    }
    if let Some((name, _)) = columns.first() {
        return Err(crate::Error::Arrow(arrow::error::ArrowError::SchemaError(format!(
            "column {name} is not in the schema"
        ))));
    }
    Ok(arrow::record_batch::RecordBatch::try_new(schema, ordered)?)
}

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
