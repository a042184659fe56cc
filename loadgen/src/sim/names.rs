//! Names the way Kubernetes makes them: pod-template hashes and pod suffixes
//! from its "safe" alphabet, GPU UUIDs, RFC 3339 timestamps.

use chrono::{DateTime, SecondsFormat};
use rand::Rng;

/// Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no look-alikes).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, stable across runs and platforms.
pub(crate) fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A pod-template hash like `5d9c7b8f4d`.
pub(crate) fn template_hash(parts: &[&str]) -> String {
    let mut h = fnv(parts);
    (0..10)
        .map(|_| {
            let c = SAFE[(h % SAFE.len() as u64) as usize] as char;
            h /= SAFE.len() as u64;
            if h == 0 {
                h = fnv(&[&c.to_string(), parts.first().copied().unwrap_or("")]);
            }
            c
        })
        .collect()
}

/// A pod name suffix like `x7k2p`.
pub(crate) fn suffix(rng: &mut impl Rng) -> String {
    (0..5).map(|_| SAFE[rng.random_range(0..SAFE.len())] as char).collect()
}

/// A UUID-shaped id from a counter and a name (deterministic).
pub(crate) fn uid(name: &str, seq: u64) -> String {
    let a = fnv(&[name, &seq.to_string()]);
    let b = fnv(&[&seq.to_string(), name, "uid"]);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// `GPU-xxxxxxxx-xxxx-...` as nvidia-smi prints it.
pub(crate) fn gpu_uuid(node: &str, index: u32) -> String {
    format!("GPU-{}", uid(node, u64::from(index) + 1_000_000))
}

/// RFC 3339 in UTC; `micros` for MicroTime fields.
pub(crate) fn rfc3339(unix_ns: i64, micros: bool) -> String {
    let dt = DateTime::from_timestamp_nanos(unix_ns);
    dt.to_rfc3339_opts(if micros { SecondsFormat::Micros } else { SecondsFormat::Secs }, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_shaped_like_kubernetes() {
        let h = template_hash(&["llama-70b", "1", "vllm/vllm-openai:v0.11.0"]);
        assert_eq!(h.len(), 10);
        assert_eq!(h, template_hash(&["llama-70b", "1", "vllm/vllm-openai:v0.11.0"]));
        assert_ne!(h, template_hash(&["llama-70b", "2", "vllm/vllm-openai:v0.11.0"]));
        assert!(h.bytes().all(|b| SAFE.contains(&b)));
        let u = uid("pod", 3);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_eq!(rfc3339(1_700_000_000_123_456_789, false), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(1_700_000_000_123_456_789, true), "2023-11-14T22:13:20.123456Z");
    }
}
