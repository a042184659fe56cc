//! Bytes to export requests: protobuf, OTLP/JSON, gzip, with limits.

use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::error::{Error, Result};

/// The two OTLP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP/JSON: hex ids, enums as integers).
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names.
    pub fn from_content_type(ct: &str) -> Result<Encoding> {
        let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match base.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            _ => Err(Error::UnsupportedContentType(ct.to_string())),
        }
    }

    /// The `Content-Type` to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Decompresses gzip, refusing output beyond `limit` bytes (a zip bomb costs nothing).
/// `reserve` is asked for every chunk before it is kept, so the caller can charge the
/// decompressed size to a memory budget as it grows (and refuse on the way).
pub fn gunzip(body: &[u8], limit: usize, reserve: &mut dyn FnMut(usize) -> Result<()>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity((body.len() * 4).min(limit));
    let mut reader = flate2::read::MultiGzDecoder::new(body);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk).map_err(|e| Error::InvalidPayload(format!("invalid gzip body: {e}")))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > limit {
            return Err(Error::TooLarge { what: "decompressed body", size: out.len() + n, limit });
        }
        reserve(n)?;
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Decodes an export request.
pub fn decode(body: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body)
            .map_err(|e| Error::InvalidPayload(format!("invalid OTLP protobuf ExportTraceServiceRequest: {e}"))),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            Error::InvalidPayload(format!(
                "invalid OTLP/JSON ExportTraceServiceRequest at line {} column {}: {e}",
                e.line(),
                e.column()
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn fixture() -> Vec<u8> {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/otlp/opentelemetry-proto_examples_trace.json");
        std::fs::read(path).expect("the fixture in tests/fixtures/otlp")
    }

    #[test]
    fn official_json_example_decodes_with_hex_ids() {
        let req = decode(&fixture(), Encoding::Json).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(hex::encode(&span.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(span.span_id.len(), 8);
        assert_eq!(span.kind, 2);
        // Protobuf roundtrip.
        let again = decode(&req.encode_to_vec(), Encoding::Protobuf).unwrap();
        assert_eq!(again, req);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = decode(b"\x0a\xff\xff\xff", Encoding::Protobuf).unwrap_err().to_string();
        assert!(e.contains("invalid OTLP protobuf"), "{e}");
        let e = decode(br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}"#, Encoding::Json)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1 column"), "{e}");
        assert!(Encoding::from_content_type("text/plain").unwrap_err().to_string().contains("text/plain"));
        assert_eq!(Encoding::from_content_type("application/json; charset=utf-8").unwrap(), Encoding::Json);
    }

    #[test]
    fn gzip_bomb_is_refused() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 10 << 20]).unwrap();
        let small = gz.finish().unwrap();
        assert!(small.len() < 100_000);
        let free = &mut |_| Ok(());
        let e = gunzip(&small, 1 << 20, free).unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{e}");
        assert_eq!(gunzip(&small, 11 << 20, free).unwrap().len(), 10 << 20);
        assert!(gunzip(b"not gzip", 100, free).unwrap_err().to_string().contains("gzip"));
        // The budget is charged as the output grows, and can stop it half way.
        let mut charged = 0;
        let e = gunzip(&small, 11 << 20, &mut |n| {
            charged += n;
            if charged > 3 << 20 {
                Err(Error::Overloaded { queued_bytes: charged, limit_bytes: 3 << 20 })
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(matches!(e, Error::Overloaded { .. }), "{e}");
        assert!(charged <= (3 << 20) + 64 * 1024);
    }
}
