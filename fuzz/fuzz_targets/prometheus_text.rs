//! Prometheus and OpenMetrics text from scrape targets, with the default limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slo_collector::scrape::parse::{Limits, parse_bytes};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_samples: 2_000, ..Limits::default() };
    if let Ok(parsed) = parse_bytes(data, &limits) {
        assert!(parsed.samples.len() <= limits.max_samples);
        for s in &parsed.samples {
            let _ = parsed.family_of(s.name);
        }
    }
});
