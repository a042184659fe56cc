//! Scraped samples and Kubernetes changes to Arrow rows (`samples`, `changes`).

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, StringBuilder, TimestampNanosecondBuilder};
use arrow::record_batch::RecordBatch;

use crate::Result;
use crate::records::{ChangeRecord, SampleRecord, SpanBatch};
use crate::rows::{append_map, map_builder};
use crate::schema::{self, col};

/// The optional text columns of `samples`, in the order a record is read.
const SAMPLE_OPTIONAL: [&str; 7] =
    [col::NAMESPACE, col::POD, col::CONTAINER, col::NODE, col::GPU, col::MODEL, col::ATTRIBUTION];
/// The optional text columns of `changes`, in the order a record is read.
const CHANGE_OPTIONAL: [&str; 5] = [col::FROM, col::TO, col::REASON, col::MESSAGE, col::SOURCE];

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Builds a `samples` batch.
pub(crate) fn samples_batch<'a>(samples: impl IntoIterator<Item = &'a SampleRecord>) -> Result<RecordBatch> {
    let mut time = TimestampNanosecondBuilder::new();
    let mut metric = StringBuilder::new();
    let mut value = Float64Builder::new();
    let mut target = StringBuilder::new();
    let mut opt: Vec<StringBuilder> = SAMPLE_OPTIONAL.iter().map(|_| StringBuilder::new()).collect();
    let mut labels = map_builder();
    for s in samples {
        time.append_value(s.time_unix_nano);
        metric.append_value(&s.metric);
        value.append_value(s.value);
        target.append_value(&s.target);
        // In the order of SAMPLE_OPTIONAL.
        let optional = [&s.namespace, &s.pod, &s.container, &s.node, &s.gpu, &s.model, &s.attribution];
        for (b, v) in opt.iter_mut().zip(optional) {
            b.append_option(non_empty(v));
        }
        append_map(&mut labels, &s.labels)?;
    }
    let mut columns: Vec<(&'static str, ArrayRef)> = vec![
        (col::TIME, Arc::new(time.finish().with_timezone("UTC"))),
        (col::METRIC, Arc::new(metric.finish())),
        (col::VALUE, Arc::new(value.finish())),
        (col::TARGET, Arc::new(target.finish())),
        (col::LABELS, Arc::new(labels.finish())),
    ];
    columns.extend(SAMPLE_OPTIONAL.iter().zip(&mut opt).map(|(n, b)| (*n, Arc::new(b.finish()) as ArrayRef)));
    schema::batch_by_name(schema::samples(), columns)
}

/// Builds a `changes` batch.
pub fn changes_batch<'a>(changes: impl IntoIterator<Item = &'a ChangeRecord>) -> Result<RecordBatch> {
    let mut time = TimestampNanosecondBuilder::new();
    let mut kind = StringBuilder::new();
    let mut namespace = StringBuilder::new();
    let mut object_kind = StringBuilder::new();
    let mut object = StringBuilder::new();
    let mut opt: Vec<StringBuilder> = CHANGE_OPTIONAL.iter().map(|_| StringBuilder::new()).collect();
    let mut key = StringBuilder::new();
    let mut attrs = map_builder();
    for c in changes {
        time.append_value(c.time_unix_nano);
        kind.append_value(&c.kind);
        namespace.append_option(non_empty(&c.namespace));
        object_kind.append_value(&c.object_kind);
        object.append_value(&c.object);
        // In the order of CHANGE_OPTIONAL.
        for (b, v) in opt.iter_mut().zip([&c.from, &c.to, &c.reason, &c.message, &c.source]) {
            b.append_option(non_empty(v));
        }
        key.append_value(&c.key);
        append_map(&mut attrs, &c.attributes)?;
    }
    let mut columns: Vec<(&'static str, ArrayRef)> = vec![
        (col::TIME, Arc::new(time.finish().with_timezone("UTC"))),
        (col::KIND, Arc::new(kind.finish())),
        (col::NAMESPACE, Arc::new(namespace.finish())),
        (col::OBJECT_KIND, Arc::new(object_kind.finish())),
        (col::OBJECT, Arc::new(object.finish())),
        (col::KEY, Arc::new(key.finish())),
        (col::ATTRIBUTES, Arc::new(attrs.finish())),
    ];
    columns.extend(CHANGE_OPTIONAL.iter().zip(&mut opt).map(|(n, b)| (*n, Arc::new(b.finish()) as ArrayRef)));
    schema::batch_by_name(schema::changes(), columns)
}

/// The `samples` and `changes` rows of WAL batches, as `(table, rows)`; empty for batches
/// of spans only.
pub fn cluster_batches(batches: &[&SpanBatch]) -> Result<Vec<(&'static str, RecordBatch)>> {
    let mut out = Vec::new();
    if batches.iter().any(|b| !b.samples.is_empty()) {
        out.push((schema::SAMPLES, samples_batch(batches.iter().flat_map(|b| &b.samples))?));
    }
    if batches.iter().any(|b| !b.changes.is_empty()) {
        out.push((schema::CHANGES, changes_batch(batches.iter().flat_map(|b| &b.changes))?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Attr;

    #[test]
    fn samples_and_changes_match_their_schemas() {
        let s = SampleRecord {
            time_unix_nano: 1,
            metric: "DCGM_FI_DEV_GPU_UTIL".into(),
            value: 87.0,
            target: "http://node-1:9400/metrics".into(),
            gpu: "GPU-1".into(),
            labels: vec![Attr::new("gpu", "0")],
            ..Default::default()
        };
        let rb = samples_batch([&s, &s]).unwrap();
        assert_eq!((rb.num_rows(), rb.schema()), (2, schema::samples()));
        assert_eq!(rb.column_by_name("pod").unwrap().null_count(), 2, "empty strings are nulls");
        let c = ChangeRecord {
            time_unix_nano: 2,
            kind: "scale_down".into(),
            object_kind: "HorizontalPodAutoscaler".into(),
            object: "hpa/llama".into(),
            from: "6".into(),
            to: "4".into(),
            key: "k".into(),
            ..Default::default()
        };
        let rb = changes_batch([&c]).unwrap();
        assert_eq!((rb.num_rows(), rb.schema()), (1, schema::changes()));
        assert_eq!(rb.column_by_name("namespace").unwrap().null_count(), 1);
    }
}
