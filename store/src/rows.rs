//! Rows to Arrow record batches.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, MapBuilder, StringBuilder, TimestampNanosecondBuilder};
use arrow::record_batch::RecordBatch;

use crate::Result;
use crate::records::{Attr, SpanBatch};
use crate::schema;

/// One inference request: a row of the `requests` table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestRow {
    /// Start of the request, nanoseconds since the Unix epoch (data time).
    pub time_unix_nano: u64,
    /// Trace id, lowercase hex.
    pub trace_id: String,
    /// `service.name` of the model server (or the span that stood for the request).
    pub service: String,
    /// `k8s.namespace.name`.
    pub namespace: Option<String>,
    /// `k8s.deployment.name`.
    pub deployment: Option<String>,
    /// `k8s.replicaset.name`.
    pub replicaset: Option<String>,
    /// `k8s.pod.name`.
    pub pod: Option<String>,
    /// `k8s.node.name`.
    pub node: Option<String>,
    /// GPU UUID, when the span or resource says.
    pub gpu: Option<String>,
    /// Model name (`gen_ai.response.model`, else `gen_ai.request.model`).
    pub model: Option<String>,
    /// `gen_ai.operation.name`, else the span name.
    pub operation: Option<String>,
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
    /// Attributes of the request span, for attribute-shift analysis.
    pub attributes: Vec<Attr>,
}

pub(crate) fn append_map(b: &mut MapBuilder<StringBuilder, StringBuilder>, attrs: &[Attr]) -> Result<()> {
    for a in attrs {
        b.keys().append_value(&a.key);
        b.values().append_value(&a.value);
    }
    b.append(true)?;
    Ok(())
}

pub(crate) fn map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
}

/// Builds a `spans` batch from span batches (the ingest path reads encoded records with
/// [`crate::encoded`] instead; this serves replays of decoded batches).
pub fn spans_batch<'a>(batches: impl IntoIterator<Item = &'a SpanBatch>) -> Result<RecordBatch> {
    let records: Vec<Vec<u8>> = batches.into_iter().map(prost::Message::encode_to_vec).collect();
    let bytes = records.iter().map(Vec::len).sum();
    let mut rows = crate::encoded::SpansBuilder::with_capacity(bytes / 700 + 1, bytes);
    for r in &records {
        crate::encoded::visit_spans(r, |res, s, a| rows.append(res, s, a))?;
    }
    rows.finish()
}

/// Builds a `requests` batch.
pub fn requests_batch(rows: &[RequestRow]) -> Result<RecordBatch> {
    let mut time = TimestampNanosecondBuilder::with_capacity(rows.len());
    let mut trace = StringBuilder::new();
    let mut service = StringBuilder::new();
    let mut opt: Vec<StringBuilder> = (0..8).map(|_| StringBuilder::new()).collect();
    let mut status = StringBuilder::new();
    let mut f: Vec<Float64Builder> = (0..5).map(|_| Float64Builder::new()).collect();
    let mut input = Int64Builder::new();
    let mut output = Int64Builder::new();
    let mut source = StringBuilder::new();
    let mut attrs = map_builder();
    for r in rows {
        time.append_value(r.time_unix_nano as i64);
        trace.append_value(&r.trace_id);
        service.append_value(&r.service);
        let optional = [&r.namespace, &r.deployment, &r.replicaset, &r.pod, &r.node, &r.gpu, &r.model, &r.operation];
        for (b, v) in opt.iter_mut().zip(optional) {
            b.append_option(v.as_deref());
        }
        status.append_value(r.status);
        f[0].append_value(r.duration_ms);
        f[1].append_value(r.queue_ms);
        f[2].append_value(r.compute_ms);
        f[3].append_value(r.other_ms);
        f[4].append_option(r.ttft_ms);
        input.append_option(r.input_tokens);
        output.append_option(r.output_tokens);
        source.append_value(r.split_source);
        append_map(&mut attrs, &r.attributes)?;
    }
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(time.finish().with_timezone("UTC")), Arc::new(trace.finish()), Arc::new(service.finish())];
    columns.extend(opt.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(status.finish()));
    columns.extend(f.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(input.finish()));
    columns.push(Arc::new(output.finish()));
    columns.push(Arc::new(source.finish()));
    columns.push(Arc::new(attrs.finish()));
    Ok(RecordBatch::try_new(schema::requests(), columns)?)
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
