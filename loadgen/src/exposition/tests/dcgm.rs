//! dcgm-exporter page against the real L4 and 8×H100 captures.

use prometheus_parse::Value;

use super::super::{DcgmGpu, render_dcgm};
use super::{families, fixture, parse};

const L4: &str = "dcgm/dcgm-exporter_1xL4_kops_full-scrape.prom";
const H100: &str = "dcgm/dcgm-exporter_8xH100_eks_pod-labels_sampled.prom";

fn render(gpus: &[DcgmGpu]) -> String {
    let mut out = String::new();
    render_dcgm(&mut out, gpus, None);
    out
}

/// The GPU of the L4 capture, with its values.
fn l4_gpu() -> DcgmGpu {
    DcgmGpu {
        gpu: 0,
        uuid: "GPU-c2f76b33-7953-256e-8f33-1343419b1a1c".to_owned(),
        pci_bus_id: "00000000:31:00.0".to_owned(),
        device: "nvidia0".to_owned(),
        model_name: "NVIDIA L4".to_owned(),
        hostname: "i-030791dc5a37cd257".to_owned(),
        driver_version: "580.105.08".to_owned(),
        sm_clock_mhz: 210,
        mem_clock_mhz: 405,
        gpu_temp_c: 31,
        power_usage_w: 16.365,
        total_energy_consumption_mj: 4_742_776,
        fb_free_mib: 22_563,
        fb_reserved_mib: 470,
        pcie_tx_bytes_per_s: 112_603,
        pcie_rx_bytes_per_s: 17_544,
        ..DcgmGpu::default()
    }
}

/// The node of the 8×H100 capture: GPU 0 is allocated to a pod, 1–7 are not.
pub(super) fn h100_node() -> Vec<DcgmGpu> {
    let rows = [
        ("c4529c8d-69c4-b61d-e0bc-7b2460096005", "53", 30, 113.611),
        ("bc5610b9-79c8-fedd-8899-07539c7f868a", "64", 29, 68.347),
        ("fbc2c554-4d37-8938-0032-f923bad0f716", "75", 26, 65.709),
        ("a65a773d-52bb-bcc1-a8ee-f78c3faa2e2d", "86", 29, 67.316),
        ("82e45d1b-1618-559f-144c-eab51545030b", "97", 28, 68.717),
        ("39e28159-8c62-ee71-64db-b748edd61e15", "A8", 26, 65.742),
        ("e64d69ca-b4b3-59b2-e78c-94f26c4db365", "B9", 28, 67.328),
        ("04d228d3-3b5a-3534-f5cf-969706647d56", "CA", 26, 66.997),
    ];
    let mut gpus: Vec<DcgmGpu> = (0u32..)
        .zip(rows)
        .map(|(i, (uuid, bus, temp, watts))| DcgmGpu {
            gpu: i,
            uuid: format!("GPU-{uuid}"),
            pci_bus_id: format!("00000000:{bus}:00.0"),
            device: format!("nvidia{i}"),
            model_name: "NVIDIA H100 80GB HBM3".to_owned(),
            hostname: "gpu-node-1".to_owned(),
            driver_version: "580.105.08".to_owned(),
            gpu_temp_c: temp,
            power_usage_w: watts,
            ..DcgmGpu::default()
        })
        .collect();
    gpus[0].container = Some("main".to_owned());
    gpus[0].namespace = Some("dynamo-workload".to_owned());
    gpus[0].pod = Some("vllm-agg-0-vllmdecodeworker-s65j5".to_owned());
    gpus
}

#[test]
fn l4_gpu_renders_the_full_capture_byte_for_byte() {
    assert_eq!(render(&[l4_gpu()]), fixture(L4));
}

#[test]
fn every_family_of_both_captures_with_same_type_labels_and_help() {
    let capture = parse(&fixture(L4));
    let want = families(&capture);
    assert_eq!(want.len(), 23);
    let ours_scrape = parse(&render(&[l4_gpu()]));
    assert_eq!(families(&ours_scrape), want);
    assert_eq!(ours_scrape.docs, capture.docs);

    // The H100 capture has no TYPE lines (all untyped): compare label names,
    // with pod labels (GPU 0) and without (GPUs 1-7), and take the types
    // from the L4 capture.
    let want = families(&parse(&fixture(H100)));
    assert_eq!(want.len(), 4);
    let ours = families(&parse(&render(&h100_node())));
    for (name, (_, label_sets)) in &want {
        let (kind, got) = ours.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(got, label_sets, "{name}");
        assert_eq!(label_sets.len(), 2, "{name}: with and without pod labels");
        assert_eq!(Some(*kind), families(&capture).get(name).map(|f| f.0), "{name}");
    }
}

/// Every line of the H100 capture is in our page for that node, in order.
#[test]
fn h100_node_contains_the_capture_lines_in_order() {
    let ours = render(&h100_node());
    let mut lines = ours.lines();
    for want in fixture(H100).lines() {
        assert!(lines.any(|l| l == want), "not found in order: {want}");
    }
}

#[test]
fn values_round_trip_and_optional_fields_only_where_set() {
    let mut gpus = h100_node();
    gpus[3].sm_clock_mhz = 1_980;
    gpus[3].power_usage_w = 699.5;
    gpus[3].total_energy_consumption_mj = 98_765_432_101;
    gpus[3].gpu_util_pct = 100;
    gpus[3].fb_used_mib = 80_000;
    gpus[3].gr_engine_active_ratio = 0.987_654;
    gpus[3].pcie_rx_bytes_per_s = 123_456_789;
    gpus[3].xid_errors = Some(79);
    gpus[3].clocks_event_reasons = Some(0x40);
    gpus[3].thermal_violation_ns_total = Some(5_000_000_000);
    gpus[3].power_violation_ns_total = Some(1);
    gpus[3].sm_active_ratio = Some(0.75);
    gpus[3].sm_occupancy_ratio = Some(0.5);
    gpus[3].nvlink_bandwidth_total = Some(42);
    let text = render(&gpus);
    assert!(text.contains("DCGM_FI_DEV_POWER_USAGE{gpu=\"3\","));
    assert!(text.contains("} 699.500000\n"));
    let scrape = parse(&text);
    let get = |name: &str, gpu: &str| {
        let mut found = scrape.samples.iter().filter(|s| s.metric == name && s.labels.get("gpu") == Some(gpu));
        let s = found.next()?;
        assert!(found.next().is_none(), "{name} twice for gpu {gpu}");
        match s.value {
            Value::Counter(v) => Some(("counter", v)),
            Value::Gauge(v) => Some(("gauge", v)),
            _ => panic!("{name} untyped"),
        }
    };
    let cases: &[(&str, &str, f64)] = &[
        ("DCGM_FI_DEV_SM_CLOCK", "gauge", 1_980.0),
        ("DCGM_FI_DEV_POWER_USAGE", "gauge", 699.5),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", 98_765_432_101.0),
        ("DCGM_FI_DEV_GPU_UTIL", "gauge", 100.0),
        ("DCGM_FI_DEV_FB_USED", "gauge", 80_000.0),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", 0.987_654),
        ("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge", 123_456_789.0),
        ("DCGM_FI_DEV_XID_ERRORS", "gauge", 79.0),
        ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "gauge", 64.0),
        ("DCGM_FI_DEV_THERMAL_VIOLATION", "counter", 5e9),
        ("DCGM_FI_DEV_POWER_VIOLATION", "counter", 1.0),
        ("DCGM_FI_PROF_SM_ACTIVE", "gauge", 0.75),
        ("DCGM_FI_PROF_SM_OCCUPANCY", "gauge", 0.5),
        ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter", 42.0),
    ];
    for &(name, kind, v) in cases {
        assert_eq!(get(name, "3"), Some((kind, v)), "{name}");
    }
    // Optional families appear once (one header) and only for GPU 3.
    for &(name, _, _) in &cases[7..] {
        assert_eq!(get(name, "2"), None, "{name}");
        assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1, "{name}");
    }
    assert_eq!(get("DCGM_FI_DEV_GPU_TEMP", "0"), Some(("gauge", 30.0)));
    // pod_uid is rendered (empty) with the other pod labels, as in the capture.
    let gpu0 = scrape.samples.iter().find(|s| s.labels.get("gpu") == Some("0")).expect("gpu 0");
    assert_eq!(gpu0.labels.get("pod_uid"), Some(""));
    assert_eq!(gpu0.labels.get("namespace"), Some("dynamo-workload"));
    // No optional family at all when no GPU sets it (the L4 capture's set).
    assert!(!render(&h100_node()).contains("XID_ERRORS"));
}
