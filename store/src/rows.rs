//! Rows to Arrow record batches.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int64Builder, MapBuilder, StringBuilder, TimestampNanosecondBuilder,
};
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

/// Builds a `requests` batch, its buffers sized to the rows.
pub fn requests_batch(rows: &[RequestRow]) -> Result<RecordBatch> {
    let mut b = RequestsBuilder::sized_like(rows.len(), &RowWidths::of(rows));
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

/// The text columns of a builder, in [`RowWidths`]'s order: trace, service, the optional
/// ones, status, split source, attribute keys, attribute values.
const TEXT: usize = 14;

/// What the rows of a batch already built took, per text column (bytes) and in attribute
/// entries: [`RequestsBuilder::sized_like`] reserves as much a row for the next batch, so
/// that its buffers neither grow by doubling (a copy of what they hold, into fresh pages)
/// nor end much larger than their data (the store copies a batch whose buffers are, see
/// `store::compact`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RowWidths {
    rows: usize,
    text: [usize; TEXT],
    entries: usize,
}

impl RowWidths {
    /// Whether no row was measured.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// What `rows` take.
    fn of(rows: &[RequestRow]) -> Self {
        let mut w = RowWidths { rows: rows.len(), ..Default::default() };
        for r in rows {
            let optional =
                [&r.namespace, &r.deployment, &r.replicaset, &r.pod, &r.node, &r.gpu, &r.model, &r.operation];
            let text = [r.trace_id.len(), r.service.len()]
                .into_iter()
                .chain(optional.map(|o| o.as_ref().map_or(0, String::len)))
                .chain([r.status.len(), r.split_source.len()]);
            for (sum, n) in w.text.iter_mut().zip(text) {
                *sum += n;
            }
            w.entries += r.attributes.len();
            w.text[TEXT - 2] += r.attributes.iter().map(|a| a.key.len()).sum::<usize>();
            w.text[TEXT - 1] += r.attributes.iter().map(|a| a.value.len()).sum::<usize>();
        }
        w
    }

    /// Room for `rows` rows as wide as these, plus a sixteenth and a cache line, at most
    /// [`MAX_ROOM`]: a few very wide rows (a client's megabyte attributes) must not make the
    /// next step reserve as much for each of thousands of rows.
    fn room(&self, rows: usize, bytes: usize) -> usize {
        if self.rows == 0 {
            return 0;
        }
        let per_row = bytes as f64 / self.rows as f64;
        ((rows as f64 * per_row * (17.0 / 16.0)) as usize + 64).min(MAX_ROOM)
    }
}

/// The most bytes (or attribute entries) one column of a builder reserves up front;
/// past it the builder grows as its rows need.
const MAX_ROOM: usize = 16 << 20;

/// Widths of a vLLM request row, for a builder with no rows before it.
const FIRST_GUESS: RowWidths =
    RowWidths { rows: 1, text: [32, 16, 16, 16, 16, 32, 16, 40, 16, 16, 2, 8, 160, 320], entries: 10 };

impl RequestsBuilder {
    /// Room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        Self::sized_like(rows, &FIRST_GUESS)
    }

    /// Room for `rows` rows as wide as those of `widths` (taken from the last batch built).
    pub fn sized_like(rows: usize, widths: &RowWidths) -> Self {
        let widths = if widths.is_empty() { &FIRST_GUESS } else { widths };
        let mut bytes = widths.text.iter().map(|&b| widths.room(rows, b));
        let mut text = |items: usize| StringBuilder::with_capacity(items, bytes.next().unwrap_or(0));
        let trace = text(rows);
        let service = text(rows);
        let opt = std::array::from_fn(|_| text(rows));
        let status = text(rows);
        let source = text(rows);
        // Entries cost 4 bytes of offsets each, in keys and in values.
        let entries = widths.room(rows, widths.entries).min(MAX_ROOM / 8);
        let (keys, values) = (text(entries), text(entries));
        RequestsBuilder {
            time: TimestampNanosecondBuilder::with_capacity(rows),
            trace,
            service,
            opt,
            status,
            duration: Float64Builder::with_capacity(rows),
            queue: Float64Builder::with_capacity(rows),
            compute: Float64Builder::with_capacity(rows),
            other: Float64Builder::with_capacity(rows),
            ttft: Float64Builder::with_capacity(rows),
            input: Int64Builder::with_capacity(rows),
            output: Int64Builder::with_capacity(rows),
            source,
            attrs: MapBuilder::with_capacity(None, keys, values, rows),
            rows: 0,
        }
    }

    /// What the rows appended so far take, for [`RequestsBuilder::sized_like`].
    pub fn widths(&mut self) -> RowWidths {
        let mut text = [0; TEXT];
        let columns = [&self.trace, &self.service]
            .into_iter()
            .chain(&self.opt)
            .chain([&self.status, &self.source])
            .map(|b| b.values_slice().len());
        for (w, b) in text.iter_mut().zip(columns) {
            *w = b;
        }
        let entries = self.attrs.keys().len();
        text[TEXT - 2] = self.attrs.keys().values_slice().len();
        text[TEXT - 1] = self.attrs.values().values_slice().len();
        RowWidths { rows: self.rows, text, entries }
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

    #[test]
    fn a_builder_sized_like_the_last_batch_ends_close_to_its_data() {
        let row = |i: usize| RequestRow {
            trace_id: format!("{i:032x}"),
            service: "vllm-llama-3-8b".into(),
            pod: Some(format!("vllm-7d9f-{i:05}")),
            model: Some("meta-llama/Llama-3.1-8B-Instruct".into()),
            status: "ok",
            split_source: "attributes",
            attributes: (0..9).map(|k| Attr::new(format!("http.attr.{k}"), format!("value-{i:05}-{k}"))).collect(),
            ..Default::default()
        };
        let build = |b: &mut RequestsBuilder, from: usize, n: usize| {
            for i in from..from + n {
                let r = row(i);
                b.append(&r.as_ref(), r.attributes.iter().map(|a| (a.key.as_str(), a.value.as_str()))).unwrap();
            }
        };
        let mut first = RequestsBuilder::with_capacity(100);
        build(&mut first, 0, 100);
        let widths = first.widths();
        assert!(!widths.is_empty());
        // Another step, with more rows of the same width: no regrowth, little unused room.
        let mut next = RequestsBuilder::sized_like(3_000, &widths);
        build(&mut next, 100, 3_000);
        let batch = next.finish().unwrap();
        assert_eq!(batch.num_rows(), 3_000);
        assert!(crate::store::is_tight(&batch), "kept by the store as it is");
        // A builder that had to double holds far more than its data: the store copies it.
        let mut small = RequestsBuilder::sized_like(10, &widths);
        build(&mut small, 0, 3_000);
        assert!(!crate::store::is_tight(&small.finish().unwrap()));
    }

    #[test]
    fn a_few_very_wide_rows_do_not_make_the_next_builder_reserve_as_much_a_row() {
        let wide = RequestRow {
            trace_id: "00".into(),
            service: "s".into(),
            status: "ok",
            split_source: "none",
            attributes: vec![Attr::new("prompt", "x".repeat(1 << 20))],
            ..Default::default()
        };
        let widths = RowWidths::of(&vec![wide; 32]);
        // Uncapped, 100,000 rows of a megabyte each: a 100 GiB reservation.
        let empty = RequestsBuilder::sized_like(100_000, &widths).finish().unwrap();
        assert_eq!(empty.num_rows(), 0);
        assert!(empty.get_array_memory_size() <= 15 * MAX_ROOM, "{} bytes reserved", empty.get_array_memory_size());
    }
}
