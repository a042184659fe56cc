//! OTLP/protobuf exports, as both receivers take them: the one-pass transcoder must agree
//! with prost and the struct path (same record bytes, rejections and counts), and its
//! record must read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use slo_collector::RedactionConfig;
use slo_collector::Converter;
use slo_collector::Redactor;

fuzz_target!(|data: &[u8]| {
    let c = Converter::new(Redactor::new(&RedactionConfig::default()), 8);
    let transcoded = c.transcode(data);
    let decoded = ExportTraceServiceRequest::decode(data);
    match (transcoded, decoded) {
        (Ok(t), Ok(req)) => {
            let (batch, rejected, stats) = c.convert(req);
            assert_eq!(t.record, batch.encode_to_vec(), "transcoded record differs from the struct path");
            assert_eq!(t.rejected, rejected);
            assert_eq!(t.stats, stats);
            assert_eq!(t.accepted, batch.span_count());
            assert_eq!(t.received, t.accepted + rejected.spans as usize);
            slo_store::encoded::visit_spans(&t.record, |_, _, _| Ok::<_, slo_store::wire::WireError>(()))
                .expect("a transcoded record reads back");
        }
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => panic!("transcoder took what prost refuses: {e}"),
        (Err(e), Ok(_)) => panic!("transcoder refused what prost takes: {e}"),
    }
});
