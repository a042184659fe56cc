//! Rows to Arrow record batches.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, MapBuilder, StringBuilder, TimestampNanosecondBuilder};
use arrow::record_batch::RecordBatch;

use crate::Result;
use crate::records::Attr;
#[cfg(test)]
use crate::records::SpanBatch;
use crate::schema::{self, col};

/// One inference request: a row of the `requests` table, its text owned ([`RequestRow`]) or
/// borrowed from wherever it is held ([`RequestRef`]: what the ingest path builds for every
/// request and appends at once, so that no field is copied into a `String` on its way to
/// an Arrow column).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request<S> {
    /// Start of the request, nanoseconds since the Unix epoch (data time).
    pub time_unix_nano: u64,
    /// Trace id, lowercase hex.
    pub trace_id: S,
    /// `service.name` of the model server (or the span that stood for the request).
    pub service: S,
    /// `k8s.namespace.name`.
    pub namespace: Option<S>,
    /// `k8s.deployment.name`.
    pub deployment: Option<S>,
    /// `k8s.replicaset.name`.
    pub replicaset: Option<S>,
    /// `k8s.pod.name`.
    pub pod: Option<S>,
    /// `k8s.node.name`.
    pub node: Option<S>,
    /// GPU UUID, when the span or resource says.
    pub gpu: Option<S>,
    /// Model name (`gen_ai.response.model`, else `gen_ai.request.model`).
    pub model: Option<S>,
    /// `gen_ai.operation.name`, else the span name.
    pub operation: Option<S>,
    /// `ok` or `error`.
    pub status: &'static str,
    /// End-to-end duration.
    pub duration_ms: f64,
    /// Time spent waiting in a queue.
    pub queue_ms: f64,
    /// Time spent computing (prefill + decode).
    pub compute_ms: f64,
    /// The rest: `duration - queue - compute`, never negative.
    pub other_ms: f64,
    /// Time to first token, when known.
    pub ttft_ms: Option<f64>,
    /// Prompt tokens.
    pub input_tokens: Option<i64>,
    /// Generated tokens.
    pub output_tokens: Option<i64>,
    /// Which rule produced the split: `attributes`, `child_spans`, `messaging` or `none`.
    pub split_source: &'static str,
    /// Attributes of the request span, for attribute-shift analysis (empty in a
    /// [`RequestRef`]: the ingest path hands them to [`RequestsBuilder::append`] apart).
    pub attributes: Vec<Attr>,
}

/// A request row that owns its text.
pub type RequestRow = Request<String>;

/// A request row whose text is borrowed.
pub type RequestRef<'a> = Request<&'a str>;

impl<S> Request<S> {
    /// The same row with every text field mapped by `f`, and no attributes.
    pub fn map_text<'s, T>(&'s self, f: impl Fn(&'s S) -> T) -> Request<T> {
        Request {
            time_unix_nano: self.time_unix_nano,
            trace_id: f(&self.trace_id),
            service: f(&self.service),
            namespace: self.namespace.as_ref().map(&f),
            deployment: self.deployment.as_ref().map(&f),
            replicaset: self.replicaset.as_ref().map(&f),
            pod: self.pod.as_ref().map(&f),
            node: self.node.as_ref().map(&f),
            gpu: self.gpu.as_ref().map(&f),
            model: self.model.as_ref().map(&f),
            operation: self.operation.as_ref().map(&f),
            status: self.status,
            duration_ms: self.duration_ms,
            queue_ms: self.queue_ms,
            compute_ms: self.compute_ms,
            other_ms: self.other_ms,
            ttft_ms: self.ttft_ms,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            split_source: self.split_source,
            attributes: Vec::new(),
        }
    }
}

impl RequestRow {
    /// The row's text borrowed (without its attributes).
    pub fn as_ref(&self) -> RequestRef<'_> {
        self.map_text(String::as_str)
    }
}

impl RequestRef<'_> {
    /// An owned copy, with no attributes.
    pub fn to_row(&self) -> RequestRow {
        self.map_text(|s| s.to_string())
    }
}

pub(crate) fn append_map(b: &mut MapBuilder<StringBuilder, StringBuilder>, attrs: &[Attr]) -> Result<()> {
    append_pairs(b, attrs.iter().map(|a| (a.key.as_str(), a.value.as_str())))
}

/// Appends one map value, its entries given as key/value pairs.
pub(crate) fn append_pairs<'a>(
    b: &mut MapBuilder<StringBuilder, StringBuilder>,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    for (k, v) in pairs {
        b.keys().append_value(k);
        b.values().append_value(v);
    }
    b.append(true)?;
    Ok(())
}

pub(crate) fn map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
}

/// Builds a `spans` batch from span batches (the ingest path reads encoded records with
/// [`crate::encoded`]; the tests build theirs from decoded batches).
#[cfg(test)]
pub(crate) fn spans_batch<'a>(batches: impl IntoIterator<Item = &'a SpanBatch>) -> Result<RecordBatch> {
    let records: Vec<Vec<u8>> = batches.into_iter().map(prost::Message::encode_to_vec).collect();
    let bytes = records.iter().map(Vec::len).sum();
    let mut rows = crate::encoded::SpansBuilder::with_capacity(bytes / 700 + 1, bytes);
    for r in &records {
        crate::encoded::visit_spans(r, |res, s, a| rows.append(res, s, a, crate::encoded::Sampled::ALL))?;
    }
    rows.finish()
}

/// Builds a `requests` batch.
pub fn requests_batch(rows: &[RequestRow]) -> Result<RecordBatch> {
    let mut b = RequestsBuilder::with_capacity(rows.len());
    for r in rows {
        b.append(&r.as_ref(), r.attributes.iter().map(|a| (a.key.as_str(), a.value.as_str())))?;
    }
    b.finish()
}

/// The optional text columns of `requests`, in the order [`RequestsBuilder::append`] reads
/// them from a row.
const OPTIONAL: [&str; 8] =
    [col::NAMESPACE, col::DEPLOYMENT, col::REPLICASET, col::POD, col::NODE, col::GPU, col::MODEL, col::OPERATION];

/// Builds `requests` rows one at a time, the attributes given apart from the row (so the
/// ingest path appends them from where they are held, without owning a copy).
#[derive(Debug)]
pub struct RequestsBuilder {
    time: TimestampNanosecondBuilder,
    trace: StringBuilder,
    service: StringBuilder,
    /// [`OPTIONAL`], in its order.
    opt: [StringBuilder; 8],
    status: StringBuilder,
    duration: Float64Builder,
    queue: Float64Builder,
    compute: Float64Builder,
    other: Float64Builder,
    ttft: Float64Builder,
    input: Int64Builder,
    output: Int64Builder,
    source: StringBuilder,
    attrs: MapBuilder<StringBuilder, StringBuilder>,
    rows: usize,
}

impl RequestsBuilder {
    /// Room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        RequestsBuilder {
            time: TimestampNanosecondBuilder::with_capacity(rows),
            trace: StringBuilder::with_capacity(rows, rows * 32),
            service: StringBuilder::new(),
            opt: std::array::from_fn(|_| StringBuilder::new()),
            status: StringBuilder::new(),
            duration: Float64Builder::with_capacity(rows),
            queue: Float64Builder::with_capacity(rows),
            compute: Float64Builder::with_capacity(rows),
            other: Float64Builder::with_capacity(rows),
            ttft: Float64Builder::with_capacity(rows),
            input: Int64Builder::with_capacity(rows),
            output: Int64Builder::with_capacity(rows),
            source: StringBuilder::new(),
            attrs: map_builder(),
            rows: 0,
        }
    }

    /// Rows appended so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends `r` with its attributes.
    pub fn append<'a>(
        &mut self,
        r: &RequestRef<'_>,
        attributes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        self.time.append_value(r.time_unix_nano as i64);
        self.trace.append_value(r.trace_id);
        self.service.append_value(r.service);
        // In the order of OPTIONAL.
        let optional = [r.namespace, r.deployment, r.replicaset, r.pod, r.node, r.gpu, r.model, r.operation];
        for (b, v) in self.opt.iter_mut().zip(optional) {
            b.append_option(v);
        }
        self.status.append_value(r.status);
        self.duration.append_value(r.duration_ms);
        self.queue.append_value(r.queue_ms);
        self.compute.append_value(r.compute_ms);
        self.other.append_value(r.other_ms);
        self.ttft.append_option(r.ttft_ms);
        self.input.append_option(r.input_tokens);
        self.output.append_option(r.output_tokens);
        self.source.append_value(r.split_source);
        append_pairs(&mut self.attrs, attributes)?;
        self.rows += 1;
        Ok(())
    }

    /// The batch of the rows appended.
    pub fn finish(mut self) -> Result<RecordBatch> {
        let mut columns: Vec<(&'static str, ArrayRef)> = vec![
            (col::TIME, Arc::new(self.time.finish().with_timezone("UTC"))),
            (col::TRACE_ID, Arc::new(self.trace.finish())),
            (col::SERVICE, Arc::new(self.service.finish())),
            (col::STATUS, Arc::new(self.status.finish())),
            (col::DURATION_MS, Arc::new(self.duration.finish())),
            (col::QUEUE_MS, Arc::new(self.queue.finish())),
            (col::COMPUTE_MS, Arc::new(self.compute.finish())),
            (col::OTHER_MS, Arc::new(self.other.finish())),
            (col::TTFT_MS, Arc::new(self.ttft.finish())),
            (col::INPUT_TOKENS, Arc::new(self.input.finish())),
            (col::OUTPUT_TOKENS, Arc::new(self.output.finish())),
            (col::SPLIT_SOURCE, Arc::new(self.source.finish())),
            (col::ATTRIBUTES, Arc::new(self.attrs.finish())),
        ];
        columns.extend(OPTIONAL.iter().zip(&mut self.opt).map(|(name, b)| (*name, Arc::new(b.finish()) as ArrayRef)));
        schema::batch_by_name(schema::requests(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ResourceSpans, SpanRecord};

    #[test]
    fn span_batch_matches_schema() {
        let batch = SpanBatch {
            resources: vec![ResourceSpans {
                service: "vllm".into(),
                resource: vec![Attr::new("k8s.pod.name", "p-1")],
                spans: vec![SpanRecord {
                    trace_id: vec![0xab; 16],
                    span_id: vec![1; 8],
                    name: "llm_request".into(),
                    kind: 2,
                    start_unix_nano: 1_000_000,
                    end_unix_nano: 3_500_000,
                    attributes: vec![Attr::new("gen_ai.request.model", "m")],
                    ..Default::default()
                }],
            }],
            ..Default::default()
        };
        let rb = spans_batch([&batch]).unwrap();
        assert_eq!(rb.num_rows(), 1);
        let d = rb.column_by_name("duration_ms").unwrap();
        let d = d.as_any().downcast_ref::<arrow::array::Float64Array>().unwrap();
        assert_eq!(d.value(0), 2.5);
        let t = rb.column_by_name("trace_id").unwrap();
        let t = t.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        assert_eq!(t.value(0), "ab".repeat(16));
    }

    #[test]
    fn request_batch_matches_schema() {
        let row = RequestRow {
            trace_id: "00".into(),
            service: "s".into(),
            status: "ok",
            split_source: "none",
            ..Default::default()
        };
        let rb = requests_batch(&[row.clone(), row]).unwrap();
        assert_eq!(rb.num_rows(), 2);
        assert_eq!(rb.schema(), schema::requests());
    }
}
