use std::time::Instant;

use super::*;
use crate::scrape::FamilyFilter;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");

fn fixture(path: &str) -> String {
    let full = format!("{FIXTURES}/{path}");
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e} (the repository's tests/fixtures)"))
}

/// Sample lines counted independently of the parser: neither blank nor a comment.
fn sample_lines(text: &str) -> usize {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

fn ok(text: &str) -> Parsed<'_> {
    parse(text, &Limits::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Parses text that must give exactly one sample and no line error.
fn one(text: &str) -> Sample<'_> {
    let p = ok(text);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.samples.len(), 1, "{text}");
    p.samples.into_iter().next().unwrap()
}

fn not_exposition(text: &str) -> String {
    match parse(text, &Limits::default()) {
        Err(e @ ParseError::NotExposition(_)) => e.to_string(),
        other => panic!("expected NotExposition for {text:?}, got {other:?}"),
    }
}

#[test]
fn every_fixture_parses_completely() {
    let mut seen = 0;
    for dir in ["dcgm", "vllm"] {
        for entry in std::fs::read_dir(format!("{FIXTURES}/{dir}")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "prom") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let p = ok(&text);
            assert!(p.errors.is_empty(), "{}: {:?}", path.display(), p.errors);
            assert_eq!(p.bad_lines, 0);
            assert_eq!(p.samples.len(), sample_lines(&text), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 3, "only {seen} fixtures found");
}

#[test]
fn l4_full_scrape() {
    let text = fixture("dcgm/dcgm-exporter_1xL4_kops_full-scrape.prom");
    let p = ok(&text);
    assert_eq!(p.types.len(), 23);
    assert_eq!(p.helps.len(), 23);
    let temp = p.samples.iter().find(|s| s.name == "DCGM_FI_DEV_GPU_TEMP").unwrap();
    assert_eq!(temp.value, 31.0);
    assert_eq!(temp.timestamp_ms, None);
    assert_eq!(temp.label("UUID"), Some("GPU-c2f76b33-7953-256e-8f33-1343419b1a1c"));
    assert_eq!(temp.label("modelName"), Some("NVIDIA L4"));
    assert_eq!(temp.label("Hostname"), Some("i-030791dc5a37cd257"));
    assert_eq!(temp.label("DCGM_FI_DRIVER_VERSION"), Some("580.105.08"));
    let names: Vec<&str> = temp.labels.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"]);
    let power = p.samples.iter().find(|s| s.name == "DCGM_FI_DEV_POWER_USAGE").unwrap();
    assert_eq!(power.value, 16.365);
    assert_eq!(p.types["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"], MetricType::Counter);
    assert_eq!(p.helps["DCGM_FI_DEV_GPU_TEMP"], "GPU temperature (in C).");
    assert_eq!(p.family_of("DCGM_FI_DEV_GPU_TEMP"), ("DCGM_FI_DEV_GPU_TEMP", MetricType::Gauge));
}

#[test]
fn h100_pod_labels_without_help_or_type() {
    let text = fixture("dcgm/dcgm-exporter_8xH100_eks_pod-labels_sampled.prom");
    let p = ok(&text);
    assert_eq!(p.samples.len(), 30);
    assert!(p.types.is_empty() && p.helps.is_empty());
    let temp =
        |gpu: &str| p.samples.iter().find(|s| s.name == "DCGM_FI_DEV_GPU_TEMP" && s.label("gpu") == Some(gpu)).unwrap();
    assert_eq!(temp("0").label("pod"), Some("vllm-agg-0-vllmdecodeworker-s65j5"));
    assert_eq!(temp("0").label("namespace"), Some("dynamo-workload"));
    assert_eq!(temp("0").label("pod_uid"), Some(""));
    assert_eq!(temp("0").value, 30.0);
    assert_eq!(temp("1").label("pod"), None);
    assert_eq!(temp("1").labels.len(), 7);
    let copy = p.samples.iter().filter(|s| s.name == "DCGM_FI_DEV_MEM_COPY_UTIL").count();
    assert_eq!(copy, 6, "the excerpt stops at gpu 5");
    assert_eq!(p.family_of("DCGM_FI_DEV_GPU_TEMP"), ("DCGM_FI_DEV_GPU_TEMP", MetricType::Untyped));
}

#[test]
fn vllm_idle_scrape() {
    let text = fixture("vllm/vllm-v1_qwen2.5-0.5b_idle_kops.prom");
    let p = ok(&text);
    assert_eq!(p.types.keys().filter(|k| k.starts_with("vllm:")).count(), 67);
    let bucket = p
        .samples
        .iter()
        .find(|s| s.name == "vllm:e2e_request_latency_seconds_bucket" && s.label("le") == Some("0.3"))
        .unwrap();
    assert_eq!(bucket.value, 0.0);
    assert_eq!(bucket.label("model_name"), Some("Qwen/Qwen2.5-0.5B-Instruct"));
    assert_eq!(bucket.label("engine"), Some("0"));
    assert_eq!(
        p.family_of("vllm:e2e_request_latency_seconds_bucket"),
        ("vllm:e2e_request_latency_seconds", MetricType::Histogram)
    );
    assert_eq!(p.family_of("vllm:prompt_tokens_total"), ("vllm:prompt_tokens_total", MetricType::Counter));
    assert_eq!(p.family_of("vllm:prompt_tokens_created"), ("vllm:prompt_tokens_created", MetricType::Gauge));
    assert_eq!(p.samples.iter().find(|s| s.name == "vllm:cache_config_info").unwrap().labels.len(), 25);
    // The dump is cut after the last family's HELP and TYPE: known, typed, no samples.
    assert_eq!(p.types["http_request_duration_seconds"], MetricType::Histogram);
    assert!(!p.samples.iter().any(|s| s.name.starts_with("http_request_duration_seconds")));
    assert!(p.helps["http_request_duration_seconds"].ends_with("is important. "), "HELP kept verbatim");
    assert_eq!(p.samples.iter().find(|s| s.name == "process_max_fds").unwrap().value, 1_048_576.0);
}

#[test]
fn default_filter_on_the_vllm_scrape() {
    let text = fixture("vllm/vllm-v1_qwen2.5-0.5b_idle_kops.prom");
    let mut p = ok(&text);
    let before = p.samples.len();
    FamilyFilter::default().retain(&mut p);
    assert!(p.samples.len() < before);
    assert!(p.samples.iter().all(|s| s.name.starts_with("vllm:") && !s.name.ends_with("_created")), "only vllm:");
    for name in [
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:time_to_first_token_seconds_sum",
        "vllm:request_queue_time_seconds_count",
        "vllm:request_success_total",
        "vllm:prefix_cache_hits_total",
    ] {
        assert!(p.samples.iter().any(|s| s.name == name), "{name} kept");
    }
}

#[test]
fn names_and_label_values() {
    assert_eq!(one("vllm:num_requests_running{engine=\"0\"} 2").name, "vllm:num_requests_running");
    assert_eq!(one(":odd_but_legal 1").name, ":odd_but_legal");
    let s = one(r#"m{pod="",a="x\\y\"z\nw",b="1,2}",c="{3}",d="\t"} 1"#);
    assert_eq!(s.label("pod"), Some(""));
    assert_eq!(s.label("a"), Some("x\\y\"z\nw"));
    assert_eq!(s.label("b"), Some("1,2}"));
    assert_eq!(s.label("c"), Some("{3}"));
    assert_eq!(s.label("d"), Some(r"\t"), "unknown escapes are kept as written");
    assert!(matches!(s.labels[0].1, Cow::Borrowed(_)) && matches!(s.labels[1].1, Cow::Owned(_)));
    assert_eq!(one("m{model=\"Qwen/ü 7B\"} 1").label("model"), Some("Qwen/ü 7B"));
}

#[test]
fn label_set_shapes_and_whitespace() {
    assert_eq!(one(r#"m{a="1",} 2"#).labels.len(), 1, "trailing comma");
    assert!(one("m{} 2").labels.is_empty());
    let s = one("  \tm { a = \"1\" ,\tb=\"2\" }   3   ");
    assert_eq!((s.label("a"), s.label("b"), s.value), (Some("1"), Some("2"), 3.0));
    assert_eq!(one("m\t4").value, 4.0);
}

#[test]
fn special_values_and_timestamps() {
    assert!(one("m NaN").value.is_nan());
    assert_eq!(one("m +Inf").value, f64::INFINITY);
    assert_eq!(one("m -Inf").value, f64::NEG_INFINITY);
    assert_eq!(one("m 1.5e-3").value, 0.0015);
    assert_eq!(one("m -0").value, 0.0);
    assert_eq!(one("m 1 1700000000000").timestamp_ms, Some(1_700_000_000_000));
    assert_eq!(one("m 1 -5").timestamp_ms, Some(-5));
    assert_eq!(one("m 1 1700000000.5").timestamp_ms, Some(1_700_000_000_500), "OpenMetrics seconds");
    assert_eq!(one(r#"m_bucket{le="1"} 3 # {trace_id="ab"} 0.6 1700000000.1"#).value, 3.0, "exemplar ignored");
    assert_eq!(one("m 3 1700000000000 # {trace_id=\"ab\"} 0.6").timestamp_ms, Some(1_700_000_000_000));
}

#[test]
fn families_from_the_type_table() {
    let text = "# TYPE reqs counter\nreqs 3\n# TYPE om counter\nom_total 1\nom_created 1.7e9\n\
                # TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 1\nlat_sum 0.2\nlat_count 1\n\
                # TYPE q summary\nq{quantile=\"0.99\"} 0.5\nq_sum 1\nq_count 2\n\
                # TYPE g gauge\ng 1\ng_count 5\n";
    let p = ok(text);
    assert_eq!(p.samples.len(), 11);
    assert_eq!(p.family_of("reqs"), ("reqs", MetricType::Counter), "counter without _total");
    assert_eq!(p.family_of("om_total"), ("om", MetricType::Counter));
    assert_eq!(p.family_of("om_created"), ("om", MetricType::Counter));
    assert_eq!(p.family_of("lat_bucket"), ("lat", MetricType::Histogram));
    assert_eq!(p.family_of("lat_sum"), ("lat", MetricType::Histogram));
    assert_eq!(p.family_of("q_count"), ("q", MetricType::Summary));
    assert_eq!(p.samples[6].label("quantile"), Some("0.99"));
    assert_eq!(p.family_of("g_count"), ("g_count", MetricType::Untyped), "a gauge has no _count series");
    assert_eq!(p.family_of("nope"), ("nope", MetricType::Untyped));
}

#[test]
fn comments_help_type_unit_eof() {
    let text = "# a plain comment\n#HELP m first\\\\line\\nsecond\n# TYPE m gauge\n# UNIT m seconds\nm 1\n# EOF\n\n";
    let p = ok(text);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.helps["m"], "first\\line\nsecond");
    assert_eq!(p.types["m"], MetricType::Gauge);
    assert_eq!(p.units["m"], "seconds");
    let p = ok("m 1\n# EOF\nm 2\n");
    assert_eq!(p.samples.len(), 1);
    assert_eq!(p.errors, [LineError { line: 3, message: "text after # EOF".into() }]);
    let p = ok("# TYPE m gauge\n# TYPE m counter\n# TYPE n flavour\nm 1\nn 1\nk 1\n");
    assert_eq!(p.types["m"], MetricType::Gauge, "the first TYPE wins");
    let messages: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages, ["line 2: second TYPE line for m", "line 3: TYPE line for n: unknown type \"flavour\""]);
}

#[test]
fn crlf_line_endings() {
    let p = ok("# HELP m h\r\n# TYPE m gauge\r\nm{a=\"1\"} 2\r\nn 3 17\r\n");
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.helps["m"], "h");
    assert_eq!(p.types["m"], MetricType::Gauge);
    assert_eq!((p.samples[0].value, p.samples[1].timestamp_ms), (2.0, Some(17)));
}

#[test]
fn malformed_lines_are_skipped_and_named() {
    let text = "a 1\nb{x=\"1\" 2\nc{x=\"1} 2\nd 1\ne{x=1} 2\nf{x=\"1\"\"} 2\ng 1 2 3\nh one\ni{x=\"1\",x=\"2\"} 1\nj-k 1\nl\n\
                m 1\nn 1\no 1\np 1\nq 1\nr 1\ns 1\nt 1\nu 1\n";
    let p = ok(text);
    assert_eq!(p.samples.len(), 11);
    let messages: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "line 2: expected ',' or '}' after the value of label \"x\"",
            "line 3: unterminated value of label \"x\"",
            "line 5: expected '\"' to open the value of label \"x\"",
            "line 6: expected ',' or '}' after the value of label \"x\"",
            "line 7: g: unexpected text after the timestamp: \"3\"",
            "line 8: h: invalid value \"one\"",
            "line 9: duplicate label \"x\"",
            "line 10: unexpected '-' in metric name \"j\"",
            "line 11: l: missing value",
        ]
    );
    let p = ok("a 1\nb 1\nc{x=\"1\"");
    assert_eq!(p.errors[0].to_string(), "line 3: unterminated label set (no '}')");
}

#[test]
fn garbage_is_refused() {
    let html = "<!DOCTYPE html>\n<html><body>404</body></html>\n";
    assert_eq!(not_exposition(html), "not Prometheus text: line 1 starts with '<'");
    assert_eq!(not_exposition("\n   <html>\n"), "not Prometheus text: line 2 starts with '<'");
    assert_eq!(not_exposition("{\"status\":\"error\"}"), "not Prometheus text: line 1 starts with '{'");
    assert_eq!(not_exposition("404 page not found\n"), "not Prometheus text: line 1 starts with '4'");
    let msg = not_exposition("Internal Server Error\n");
    assert!(msg.contains("1 malformed lines and only 0 well-formed") && msg.contains("line 1: Internal"), "{msg}");
    let msg = not_exposition("ok 1\nbad line one\nbad line two\n");
    assert!(msg.contains("2 malformed lines and only 1 well-formed"), "{msg}");
    assert!(not_exposition("m 1\n\0\0").contains("NUL byte at line 2"));

    // Random bytes: refused as bytes (not UTF-8) or, if valid UTF-8, as text.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let err = parse_bytes(&bytes, &Limits::default()).unwrap_err().to_string();
    assert!(err.starts_with("not Prometheus text: invalid UTF-8 at byte "), "{err}");

    // A large body of garbage lines is given up on early.
    let junk = "this is not a metric line at all\n".repeat(200_000);
    let started = Instant::now();
    assert!(not_exposition(&junk).contains("16 malformed lines and only 0 well-formed"));
    assert!(started.elapsed().as_millis() < 500, "{:?}", started.elapsed());
}

#[test]
fn line_errors_are_capped_but_counted() {
    let mut text = "ok 1\n".repeat(300);
    text.push_str(&"bad one\n".repeat(150));
    let p = ok(&text);
    assert_eq!((p.samples.len(), p.bad_lines, p.errors.len()), (300, 150, 100));
}

#[test]
fn limits_name_themselves() {
    let limits = Limits { max_samples: 3, ..Limits::default() };
    let err = parse("a 1\nb 1\nc 1\nd 1\n", &limits).unwrap_err();
    assert_eq!(err.to_string(), "target exposes more than 3 series (limit max_samples)");
    assert!(parse("a 1\nb 1\nc 1\n", &limits).is_ok());

    let limits = Limits { max_bytes: 8, ..Limits::default() };
    let err = parse("a 1\nb 1\nc 1\n", &limits).unwrap_err();
    assert_eq!(err.to_string(), "scrape body is 12 bytes, more than the limit of 8 (max_bytes)");
    assert!(matches!(parse_bytes(b"a 1\nb 1\nc 1\n", &limits), Err(ParseError::TooLarge { bytes: 12, limit: 8 })));

    let limits = Limits { max_line_bytes: 24, max_labels: 2, max_label_value_bytes: 3, ..Limits::default() };
    let text = "a 1\nb 1\nc 1\nlong_name{x=\"123456789012\"} 1\nd{x=\"1\",y=\"2\",z=\"3\"} 1\ne{x=\"1234\"} 1\nf 1\n";
    let p = parse(text, &limits).unwrap();
    let messages: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "line 4: line is 29 bytes, longer than the limit of 24 (max_line_bytes)",
            "line 5: more than 2 labels (limit max_labels)",
            "line 6: value of label \"x\" is 4 bytes, longer than the limit of 3 (max_label_value_bytes)",
        ]
    );
    assert_eq!(p.samples.len(), 4);
}

#[test]
fn fifty_thousand_series_are_refused_quickly() {
    let mut text = String::from("# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n");
    for i in 0..50_000 {
        text.push_str(&format!(
            "DCGM_FI_DEV_GPU_UTIL{{gpu=\"{i}\",Hostname=\"node-{}\",pod=\"\"}} {}\n",
            i / 8,
            i % 100
        ));
    }
    let started = Instant::now();
    let err = parse(&text, &Limits::default()).unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, ParseError::TooManySamples { limit: 20_000 });
    assert_eq!(err.to_string(), "target exposes more than 20000 series (limit max_samples)");
    assert!(took.as_secs_f64() < 2.0, "took {took:?}");
}
