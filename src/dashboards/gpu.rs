//! GPU by workload: dcgm-exporter's series joined on `UUID` to the pod and service `slo`
//! attributed each GPU to (`slo_gpu_workload_info`), next to the service's latency. The
//! panels NVIDIA's own dashboard has (temperature, power, SM clocks, utilization,
//! framebuffer, tensor cores) plus what a latency incident asks of a GPU: throttling time
//! and XID errors, per service.

use serde_json::Value;

use super::{Board, Panel, instant, q};

/// The attribution series of the selected services and nodes.
const INFO: &str = r#"slo_gpu_workload_info{service=~"$service", node=~"$node"}"#;
const RATE: &str = "[$__rate_interval]";

/// `expr` (series with `UUID`) labelled with the GPU's pod and service. One series per GPU
/// first: the exporter's own `pod` labels (and a rate's memory of a pod's series after it
/// moved) would otherwise give two series of one GPU the same labels once joined.
fn joined(expr: &str) -> String {
    format!("max by (UUID, Hostname, gpu) ({expr}) * on (UUID) group_left (namespace, pod, service, model) {INFO}")
}

const LEGEND: &str = "{{service}} {{Hostname}} gpu {{gpu}}";

pub(super) fn board(url: &str) -> Value {
    let mut b = Board::new(
        "slo-gpu",
        "slo / GPU by workload",
        "dcgm-exporter's GPU metrics per service, through the GPU -> pod attribution slo makes from the \
         Kubernetes watch, next to each service's latency.",
        url,
    );
    b.variable("service", "Service", "label_values(slo_gpu_workload_info, service)");
    b.variable("node", "Node", r#"label_values(slo_gpu_workload_info{service=~"$service"}, node)"#);
    b.annotation(
        "p99 regression",
        r#"slo_regression_active{service=~"$service"} == 1"#,
        "p99 regression: {{service}}",
        "likely cause: {{cause_kind}} {{cause_object}}",
        "orange",
    );
    b.link("slo: services", "${slo_url}/services");

    b.row("GPUs and who holds them");
    b.add(
        Panel::table(
            "GPU -> pod -> service",
            "Each GPU with the pod slo attributed it to and the service that pod's requests belong to. \
             attribution says how: exporter_labels (dcgm-exporter named the pod and the watch confirms it), \
             allocation (the only GPU pod on the node), ambiguous (several candidates), idle.",
            vec![instant(INFO, "")],
            &[
                ("node", "Node"),
                ("gpu", "GPU"),
                ("UUID", "UUID"),
                ("namespace", "Namespace"),
                ("pod", "Pod"),
                ("service", "Service"),
                ("model", "Model"),
                ("attribution", "Attribution"),
            ],
        )
        .size(16, 8),
    );
    b.add(
        Panel::timeseries(
            "GPUs by attribution",
            "How many GPUs each kind of attribution covers; many ambiguous ones mean dcgm-exporter lacks the \
             kubelet's pod-resources socket.",
            "none",
            vec![q(r#"count by (attribution) (slo_gpu_workload_info{node=~"$node"})"#, "{{attribution}}")],
        )
        .size(8, 8),
    );

    b.row("Per service: latency beside its GPUs");
    b.add(Panel::timeseries(
        "p99 latency",
        "End to end, and its queue part, per service (from traces).",
        "s",
        vec![
            q(
                format!(
                    r#"histogram_quantile(0.99, sum by (service, le) (rate(slo_request_duration_seconds_bucket{{service=~"$service"}}{RATE})))"#
                ),
                "{{service}} end to end",
            ),
            q(
                format!(
                    r#"histogram_quantile(0.99, sum by (service, le) (rate(slo_request_queue_seconds_bucket{{service=~"$service"}}{RATE})))"#
                ),
                "{{service}} queue",
            ),
        ],
    ));
    b.add(Panel::timeseries(
        "GPU utilization by service",
        "Mean and busiest GPU per service (DCGM_FI_DEV_GPU_UTIL).",
        "percent",
        vec![
            q(format!("avg by (service) ({})", joined("DCGM_FI_DEV_GPU_UTIL")), "{{service}} mean"),
            q(format!("max by (service) ({})", joined("DCGM_FI_DEV_GPU_UTIL")), "{{service}} busiest"),
        ],
    ));
    b.add(Panel::timeseries(
        "SM clock",
        "A GPU whose clock drops under load while its peers keep theirs is throttled.",
        "hertz",
        vec![q(joined("DCGM_FI_DEV_SM_CLOCK * 1000000"), LEGEND)],
    ));
    b.add(
        Panel::timeseries(
            "Throttled time",
            "Share of time each GPU spent throttled for heat or power (DCGM_FI_DEV_*_VIOLATION, ns per s).",
            "percentunit",
            vec![
                q(joined(&format!("rate(DCGM_FI_DEV_THERMAL_VIOLATION{RATE}) / 1e9")), &format!("{LEGEND} thermal")),
                q(joined(&format!("rate(DCGM_FI_DEV_POWER_VIOLATION{RATE}) / 1e9")), &format!("{LEGEND} power")),
            ],
        )
        .thresholds("green", &[(0.05, "orange")]),
    );
    b.add(
        Panel::timeseries(
            "GPU temperature",
            "Core temperature (DCGM_FI_DEV_GPU_TEMP).",
            "celsius",
            vec![q(joined("DCGM_FI_DEV_GPU_TEMP"), LEGEND)],
        )
        .thresholds("green", &[(83.0, "orange"), (90.0, "red")]),
    );
    b.add(Panel::timeseries(
        "Power",
        "Board power draw (DCGM_FI_DEV_POWER_USAGE).",
        "watt",
        vec![q(joined("DCGM_FI_DEV_POWER_USAGE"), LEGEND)],
    ));
    b.add(Panel::timeseries(
        "Framebuffer used",
        "GPU memory in use (DCGM_FI_DEV_FB_USED, MiB): model weights plus the KV cache.",
        "decmbytes",
        vec![q(joined("DCGM_FI_DEV_FB_USED"), LEGEND)],
    ));
    b.add(Panel::timeseries(
        "Tensor core activity",
        "Share of cycles the tensor pipes were busy (DCGM_FI_PROF_PIPE_TENSOR_ACTIVE).",
        "percentunit",
        vec![q(joined("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"), LEGEND)],
    ));
    b.add(
        Panel::timeseries(
            "XID errors",
            "The last XID a GPU reported (DCGM_FI_DEV_XID_ERRORS); 0 is none. 48, 63, 64, 74, 79 and 94/95 mean a \
             GPU to drain.",
            "none",
            vec![q(joined("DCGM_FI_DEV_XID_ERRORS"), LEGEND)],
        )
        .thresholds("green", &[(1.0, "red")]),
    );
    b.finish()
}
