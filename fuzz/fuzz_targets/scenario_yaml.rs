//! Load generator scenario files, parsed and validated.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = slo_loadgen::Scenario::from_yaml(text);
    }
});
