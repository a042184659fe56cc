//! vLLM page against the real vLLM v1 capture.

use prometheus_parse::Value;

use super::super::vllm::{ProcessStats, SleepState};
use super::super::{VllmPod, render_vllm};
use super::{families, fixture, parse};

const CAPTURE: &str = "vllm/vllm-v1_qwen2.5-0.5b_idle_kops.prom";
const MODEL: &str = "Qwen/Qwen2.5-0.5B-Instruct";

/// `vllm:` families of the capture that `render_vllm` leaves out on purpose
/// (`vllm__` as `parse` names them). None: every family is rendered.
const SKIPPED: &[&str] = &[];

fn render(pod: &VllmPod) -> String {
    let mut out = String::new();
    render_vllm(&mut out, pod, None);
    out
}

fn idle_pod() -> VllmPod {
    let mut pod = VllmPod::new(MODEL, 8192, 1_774_011_461.287_287_5);
    pod.process = Some(ProcessStats {
        virtual_memory_bytes: 9_035_190_272.0,
        resident_memory_bytes: 1_126_473_728.0,
        start_time_unix_s: 1_774_011_384.6,
        cpu_seconds_total: 16.22,
        open_fds: 48,
        max_fds: 1_048_576,
    });
    pod
}

/// A pod with every value distinct and non-zero.
pub(super) fn busy_pod() -> VllmPod {
    let mut pod = idle_pod();
    pod.num_requests_running = 7;
    pod.num_requests_waiting = 3;
    pod.kv_cache_usage_perc = 0.42;
    pod.sleep_state = SleepState::WeightsOffloaded;
    pod.estimated_flops_per_gpu_total = 3.5e15;
    pod.prefix_cache_queries_total = 123_456_789;
    pod.prefix_cache_hits_total = 1_000;
    pod.num_preemptions_total = 5;
    pod.prompt_tokens_total = 4_242;
    pod.prompt_tokens_by_source_total.local_cache_hit = 17;
    pod.generation_tokens_total = 99;
    pod.request_success_total.length = 11;
    pod.request_success_total.abort = 2;
    for v in [0.1, 0.3, 0.31, 2.0, 1e4] {
        pod.e2e_request_latency_seconds.observe(v);
    }
    for v in [0.0005, 0.05, 0.05, 3.0] {
        pod.time_to_first_token_seconds.observe(v);
    }
    for v in [3.0, 700.0, 9_000.0] {
        pod.request_prompt_tokens.observe(v);
    }
    pod
}

#[test]
fn every_vllm_family_of_the_capture_with_same_type_and_labels() {
    let capture = parse(&fixture(CAPTURE));
    let want = families(&capture);
    let ours_scrape = parse(&render(&busy_pod()));
    let ours = families(&ours_scrape);
    let vllm: Vec<&String> = want.keys().filter(|k| k.starts_with("vllm__")).collect();
    // 36 families plus 31 `_created` families; guards against a parser that drops lines.
    assert_eq!(vllm.len(), 67, "{vllm:?}");
    let missing: Vec<&str> = vllm.iter().filter(|k| !ours.contains_key(**k)).map(|k| k.as_str()).collect();
    assert_eq!(missing, SKIPPED);
    for name in vllm {
        assert_eq!(ours.get(name), want.get(name), "{name}");
        assert_eq!(ours_scrape.docs.get(name), capture.docs.get(name), "HELP of {name}");
    }
    for name in ["process_start_time_seconds", "process_resident_memory_bytes", "process_cpu_seconds_total"] {
        assert_eq!(ours.get(name), want.get(name), "{name}");
    }
    let extra: Vec<&String> = ours.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(extra.is_empty(), "families the capture does not have: {extra:?}");
}

/// An idle pod renders the capture's own lines byte for byte, in the same
/// order, except the `_created` values (each series has its own in vLLM).
#[test]
fn idle_pod_renders_the_capture_byte_for_byte() {
    let keep = |l: &&str| {
        let name = l.trim_start_matches("# HELP ").trim_start_matches("# TYPE ");
        name.starts_with("vllm:") || name.starts_with("process_")
    };
    let mask = |l: &str| match l.split_once(" ") {
        Some((series, _)) if series.contains("_created{") => format!("{series} <created>"),
        _ => l.to_owned(),
    };
    let capture = fixture(CAPTURE);
    let want: Vec<String> = capture.lines().filter(keep).map(mask).collect();
    let ours = render(&idle_pod());
    let got: Vec<String> = ours.lines().map(mask).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
}

#[test]
fn values_round_trip() {
    let pod = busy_pod();
    let scrape = parse(&render(&pod));
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("{name} {label:?}"));
        if name.starts_with("vllm__") {
            assert_eq!(s.labels.get("model_name"), Some(MODEL), "{name}");
        }
        match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a scalar"),
        }
    };
    assert_eq!(value("vllm__num_requests_running", None), 7.0);
    assert_eq!(value("vllm__num_requests_waiting", None), 3.0);
    assert_eq!(value("vllm__kv_cache_usage_perc", None), 0.42);
    assert_eq!(value("vllm__engine_sleep_state", Some(("sleep_state", "awake"))), 0.0);
    assert_eq!(value("vllm__engine_sleep_state", Some(("sleep_state", "weights_offloaded"))), 1.0);
    assert_eq!(value("vllm__engine_sleep_state", Some(("sleep_state", "discard_all"))), 0.0);
    assert_eq!(value("vllm__estimated_flops_per_gpu_total", None), 3.5e15);
    assert_eq!(value("vllm__prefix_cache_queries_total", None), 123_456_789.0);
    assert_eq!(value("vllm__prefix_cache_hits_total", None), 1_000.0);
    assert_eq!(value("vllm__num_preemptions_total", None), 5.0);
    assert_eq!(value("vllm__prompt_tokens_total", None), 4_242.0);
    assert_eq!(value("vllm__prompt_tokens_by_source_total", Some(("source", "local_cache_hit"))), 17.0);
    assert_eq!(value("vllm__prompt_tokens_by_source_total", Some(("source", "local_compute"))), 0.0);
    assert_eq!(value("vllm__generation_tokens_total", None), 99.0);
    assert_eq!(value("vllm__request_success_total", Some(("finished_reason", "length"))), 11.0);
    assert_eq!(value("vllm__request_success_total", Some(("finished_reason", "abort"))), 2.0);
    assert_eq!(value("vllm__request_success_total", Some(("finished_reason", "stop"))), 0.0);
    assert_eq!(value("vllm__prompt_tokens_created", None), pod.created_unix_s);
    assert_eq!(value("process_start_time_seconds", None), 1_774_011_384.6);

    let mut histograms = 0;
    for s in &scrape.samples {
        let Value::Histogram(buckets) = &s.value else { continue };
        histograms += 1;
        let count = value(&format!("{}_count", s.metric), None);
        let sum = value(&format!("{}_sum", s.metric), None);
        let last = buckets.last().expect("buckets");
        assert_eq!(last.less_than, f64::INFINITY, "{}", s.metric);
        assert_eq!(last.count, count, "+Inf bucket of {}", s.metric);
        for w in buckets.windows(2) {
            assert!(w[0].less_than < w[1].less_than && w[0].count <= w[1].count, "{}: {w:?}", s.metric);
        }
        let name = s.metric.replacen("vllm__", "vllm:", 1);
        let h = match name.as_str() {
            "vllm:e2e_request_latency_seconds" => &pod.e2e_request_latency_seconds,
            "vllm:time_to_first_token_seconds" => &pod.time_to_first_token_seconds,
            "vllm:request_prompt_tokens" => &pod.request_prompt_tokens,
            _ => {
                assert_eq!(count, 0.0, "{name}");
                continue;
            }
        };
        assert_eq!(count, h.count as f64);
        assert_eq!(sum, h.sum);
        let cumulative: Vec<(f64, f64)> = h.cumulative().map(|(le, c)| (le, c as f64)).collect();
        let got: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
        assert_eq!(got, cumulative, "{name}");
    }
    assert_eq!(histograms, 15);
    let e2e = scrape.samples.iter().find(|s| s.metric == "vllm__e2e_request_latency_seconds").expect("e2e");
    let Value::Histogram(b) = &e2e.value else { panic!("e2e is a histogram") };
    // 0.1 and 0.3 are at or below le="0.3" (inclusive), 0.31 is not; 1e4 only in +Inf.
    assert_eq!((b[0].less_than, b[0].count), (0.3, 2.0));
    assert_eq!((b[1].less_than, b[1].count), (0.5, 3.0));
    assert_eq!(b[b.len() - 2].count, 4.0);
    assert_eq!(b[b.len() - 1].count, 5.0);
}
