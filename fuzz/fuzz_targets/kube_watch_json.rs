//! Kubernetes JSON as the watch and `slo import` read it: Events (both API groups), Lists,
//! watch frames and objects, one document or JSON lines, through the same tracker that
//! turns them into changes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use slo_collector::kube::replay::Replay;

fn feed(replay: &mut Replay, v: &serde_json::Value) {
    if Replay::recognizes(v) {
        let _ = replay.add(v);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut replay = Replay::new();
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(v) => feed(&mut replay, &v),
        Err(_) => {
            for line in data.split(|b| *b == b'\n') {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
                    feed(&mut replay, &v);
                }
            }
        }
    }
});
