//! OTLP/JSON exports (hex ids, int64 as strings), gzipped or not: decoded, converted and
//! encoded as the WAL record, which must decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use slo_collector::RedactionConfig;
use slo_collector::Converter;
use slo_collector::otlp::decode::{Encoding, decode, gunzip};
use slo_collector::Redactor;

fuzz_target!(|data: &[u8]| {
    let body = if data.starts_with(&[0x1f, 0x8b]) {
        match gunzip(data, 1 << 20, &mut |_| Ok(())) {
            Ok(b) => b,
            Err(_) => return,
        }
    } else {
        data.to_vec()
    };
    let Ok(req) = decode(&body, Encoding::Json) else { return };
    let c = Converter::new(Redactor::new(&RedactionConfig::default()), 8);
    let (batch, _, _) = c.convert(req);
    let record = batch.encode_to_vec();
    let again = slo_store::SpanBatch::decode(record.as_slice()).expect("the record decodes");
    assert_eq!(again.span_count(), batch.span_count());
});
