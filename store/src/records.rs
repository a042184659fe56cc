//! The span records the collector hands to the store, and the write-ahead log keeps.
//!
//! They are OTLP spans after validation and redaction: ids as bytes, attribute values
//! rendered as strings, resource attributes shared by the spans of one resource. They are
//! prost messages so that the WAL encoding is compact and fast, and stable across versions
//! (fields are only ever added, with new tags).

/// One attribute, its value rendered as a string (ints and doubles in decimal, arrays and
/// maps as JSON).
#[derive(Clone, PartialEq, Eq, prost::Message)]
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

/// What one export request carried, and one WAL record holds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanBatch {
    /// The spans, grouped by resource.
    #[prost(message, repeated, tag = "1")]
    pub resources: Vec<ResourceSpans>,
}

impl SpanBatch {
    /// Number of spans in the batch.
    pub fn span_count(&self) -> usize {
        self.resources.iter().map(|r| r.spans.len()).sum()
    }
}

/// The value of `key` in a list of attributes.
pub fn find_attr<'a>(attrs: &'a [Attr], key: &str) -> Option<&'a str> {
    attrs.iter().find(|a| a.key == key).map(|a| a.value.as_str())
}
