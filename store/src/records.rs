//! The span records the collector hands to the store, and the write-ahead log keeps.
//!
//! They are OTLP spans after validation and redaction: ids as bytes, attribute values
//! rendered as strings, resource attributes shared by the spans of one resource. They are
//! prost messages so that the WAL encoding is compact and fast, and stable across versions
//! (fields are only ever added, with new tags).

/// One attribute, its value rendered as a string (ints and doubles in decimal, arrays and
/// maps as JSON).
#[derive(Clone, PartialEq, Eq, prost::Message, serde::Serialize, serde::Deserialize)]
pub struct Attr {
    /// Attribute key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Attribute value as a string.
    #[prost(string, tag = "2")]
    pub value: String,
}

impl Attr {
    /// An attribute from a key and a value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Attr { key: key.into(), value: value.into() }
    }
}

/// A link from a span to another span (used for messaging producer -> consumer).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LinkRef {
    /// The linked span's trace id (16 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// The linked span's id (8 bytes).
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
}

/// One span.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanRecord {
    /// Trace id, 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// Span id, 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// Parent span id, empty for a root span.
    #[prost(bytes = "vec", tag = "3")]
    pub parent_span_id: Vec<u8>,
    /// Span name.
    #[prost(string, tag = "4")]
    pub name: String,
    /// OTLP span kind (0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer).
    #[prost(int32, tag = "5")]
    pub kind: i32,
    /// Start, nanoseconds since the Unix epoch (data time).
    #[prost(fixed64, tag = "6")]
    pub start_unix_nano: u64,
    /// End, nanoseconds since the Unix epoch.
    #[prost(fixed64, tag = "7")]
    pub end_unix_nano: u64,
    /// OTLP status code (0 unset, 1 ok, 2 error).
    #[prost(int32, tag = "8")]
    pub status_code: i32,
    /// Span attributes after redaction.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<Attr>,
    /// Links to other spans.
    #[prost(message, repeated, tag = "10")]
    pub links: Vec<LinkRef>,
}

impl SpanRecord {
    /// Duration in milliseconds (0 when the end precedes the start).
    pub fn duration_ms(&self) -> f64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano) as f64 / 1e6
    }

    /// The value of a span attribute.
    pub fn attr(&self, key: &str) -> Option<&str> {
        find_attr(&self.attributes, key)
    }

    /// Whether this span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_empty()
    }
}

/// The spans of one resource (one process: service, pod, node).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    /// `service.name` of the resource (`unknown_service` when absent, as OTel does).
    #[prost(string, tag = "1")]
    pub service: String,
    /// Resource attributes after redaction.
    #[prost(message, repeated, tag = "2")]
    pub resource: Vec<Attr>,
    /// The spans.
    #[prost(message, repeated, tag = "3")]
    pub spans: Vec<SpanRecord>,
}

impl ResourceSpans {
    /// The value of a resource attribute.
    pub fn attr(&self, key: &str) -> Option<&str> {
        find_attr(&self.resource, key)
    }
}

/// One scraped sample, after the family filter and GPU -> pod attribution.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SampleRecord {
    /// The sample's time: the exposition's timestamp when it has one, else the scrape's
    /// start; nanoseconds since the Unix epoch.
    #[prost(sfixed64, tag = "1")]
    pub time_unix_nano: i64,
    /// Series name as exposed (`vllm:num_requests_waiting`, `DCGM_FI_DEV_GPU_UTIL`, ...).
    #[prost(string, tag = "2")]
    pub metric: String,
    /// The value.
    #[prost(double, tag = "3")]
    pub value: f64,
    /// The target it was scraped from (URL, or `file:<name>` for imports).
    #[prost(string, tag = "4")]
    pub target: String,
    /// Namespace of the pod the sample is about (empty: unknown).
    #[prost(string, tag = "5")]
    pub namespace: String,
    /// Pod the sample is about (for a GPU metric: the pod using that GPU).
    #[prost(string, tag = "6")]
    pub pod: String,
    /// Container the sample is about.
    #[prost(string, tag = "7")]
    pub container: String,
    /// Node.
    #[prost(string, tag = "8")]
    pub node: String,
    /// GPU UUID.
    #[prost(string, tag = "9")]
    pub gpu: String,
    /// Model name.
    #[prost(string, tag = "10")]
    pub model: String,
    /// How the pod was found (`exporter_labels`, `allocation`, `target`, `ambiguous`, ...).
    #[prost(string, tag = "11")]
    pub attribution: String,
    /// Every label the target exposed, unchanged.
    #[prost(message, repeated, tag = "12")]
    pub labels: Vec<Attr>,
}

/// One normalized Kubernetes change (a row of `changes`).
#[derive(Clone, PartialEq, prost::Message, serde::Serialize, serde::Deserialize)]
pub struct ChangeRecord {
    /// When it happened (data time: the event's or the object's own timestamp), ns.
    #[prost(sfixed64, tag = "1")]
    pub time_unix_nano: i64,
    /// Cause taxonomy kind (`deploy`, `scale_down`, ...).
    #[prost(string, tag = "2")]
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects such as Nodes).
    #[prost(string, tag = "3")]
    pub namespace: String,
    /// Kubernetes kind of the object (`Deployment`, `HorizontalPodAutoscaler`, ...).
    #[prost(string, tag = "4")]
    pub object_kind: String,
    /// `kind/name` in lower case (`hpa/llama-70b`, `deployment/embedder`, `node/gpu-3`).
    #[prost(string, tag = "5")]
    pub object: String,
    /// State before (replicas, image, ReplicaSet, ...); empty when unknown.
    #[prost(string, tag = "6")]
    pub from: String,
    /// State after.
    #[prost(string, tag = "7")]
    pub to: String,
    /// Machine-readable reason (the Event's reason, or the rule that found it).
    #[prost(string, tag = "8")]
    pub reason: String,
    /// Human-readable message.
    #[prost(string, tag = "9")]
    pub message: String,
    /// Where it was seen (`event/horizontal-pod-autoscaler`, `watch/ReplicaSet`, `import`).
    #[prost(string, tag = "10")]
    pub source: String,
    /// Identity of the occurrence; a change with a key already stored is not stored again.
    #[prost(string, tag = "11")]
    pub key: String,
    /// Evidence that does not fit the columns (images, durations, pod-template hashes).
    #[prost(message, repeated, tag = "12")]
    pub attributes: Vec<Attr>,
}

/// What one export request (or one scrape, or one set of changes) carried, and one WAL
/// record holds. Older WAL records hold spans only and decode unchanged.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanBatch {
    /// The spans, grouped by resource.
    #[prost(message, repeated, tag = "1")]
    pub resources: Vec<ResourceSpans>,
    /// Scraped samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<SampleRecord>,
    /// Kubernetes changes.
    #[prost(message, repeated, tag = "3")]
    pub changes: Vec<ChangeRecord>,
}

impl SpanBatch {
    /// Number of spans in the batch.
    pub fn span_count(&self) -> usize {
        self.resources.iter().map(|r| r.spans.len()).sum()
    }
}

/// A change's key as this version writes it. Before 2026-12-06 the key of a scale named
/// its `from` (`hpa/<uid>/6->12@<time>`, `deployment/<uid>/replicas/6->12@g<generation>`),
/// which a collector that took the Kubernetes watch over from an older baseline computed
/// otherwise; now it does not (`hpa/<uid>/->12@<time>`). Reading old keys through this,
/// a change stored before an upgrade and computed again after it is one key.
pub fn canonical_change_key(key: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !(key.starts_with("hpa/") || key.starts_with("deployment/")) {
        return Cow::Borrowed(key);
    }
    let Some((head, tail)) = key.rsplit_once('/') else { return Cow::Borrowed(key) };
    match tail.split_once("->") {
        Some((from, rest)) if !from.is_empty() && from.bytes().all(|b| b.is_ascii_digit()) => {
            Cow::Owned(format!("{head}/->{rest}"))
        }
        _ => Cow::Borrowed(key),
    }
}

/// The value of `key` in a list of attributes.
pub fn find_attr<'a>(attrs: &'a [Attr], key: &str) -> Option<&'a str> {
    attrs.iter().find(|a| a.key == key).map(|a| a.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::canonical_change_key;

    #[test]
    fn old_scale_keys_read_as_this_versions() {
        let cases = [
            ("hpa/ac6b/11->12@1796561420000000000", "hpa/ac6b/->12@1796561420000000000"),
            ("hpa/ac6b/->12@1796561420000000000", "hpa/ac6b/->12@1796561420000000000"),
            ("deployment/d1/replicas/6->4@g4", "deployment/d1/replicas/->4@g4"),
            ("deployment/d1/replicas/->4@g4", "deployment/d1/replicas/->4@g4"),
            // Not a scale's key: as it is.
            ("node/n1/gpus/8->7#1", "node/n1/gpus/8->7#1"),
            ("deploy/inference/embedder/94qwf696p6", "deploy/inference/embedder/94qwf696p6"),
            ("event/e1/1", "event/e1/1"),
            ("hpa/ac6b/x->12@1", "hpa/ac6b/x->12@1"),
            ("", ""),
        ];
        for (key, want) in cases {
            assert_eq!(canonical_change_key(key), want, "{key}");
        }
    }
}
