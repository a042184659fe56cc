//! SLO files: the native `slos:` section and OpenSLO v1 documents.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = slo_analyzer::spec::parse_any(text);
    }
});
