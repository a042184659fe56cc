//! Inference latency: what users see (from traces: `slo`'s SLI histograms, split into
//! queue and compute), the continuous analyzer's verdict, and the model server's own view
//! (vLLM), side by side.

use serde_json::Value;

use super::{Board, Panel, instant, q};

/// `slo`'s series of the selected services and models.
const SEL: &str = r#"service=~"$service", model=~"$model""#;
/// The continuous analyzer's series (one per service).
const VERDICT: &str = r#"service=~"$service""#;
/// vLLM's series of the selected models.
const VLLM: &str = r#"model_name=~"$model""#;
const RATE: &str = "[$__rate_interval]";

fn quantile(q: f64, histogram: &str, by: &str) -> String {
    format!("histogram_quantile({q}, sum by ({by}le) (rate({histogram}_bucket{{{SEL}}}{RATE})))")
}

/// Mean of a histogram per service: its sum's rate over its count's rate.
fn mean(histogram: &str) -> String {
    format!(
        "sum by (service) (rate({histogram}_sum{{{SEL}}}{RATE})) / sum by (service) (rate({histogram}_count{{{SEL}}}{RATE}))"
    )
}

pub(super) fn board(url: &str) -> Value {
    let mut b = Board::new(
        "slo-inference",
        "slo / Inference latency",
        "p99 and where it goes (queue, compute) per service and model, from traces; the regression verdict \
         of slo's analyzer; the model server's own metrics beside them.",
        url,
    );
    b.variable("service", "Service", "label_values(slo_requests_total, service)");
    b.variable("model", "Model", r#"label_values(slo_requests_total{service=~"$service"}, model)"#);
    b.annotation(
        "p99 regression",
        &format!("slo_regression_active{{{VERDICT}}} == 1"),
        "p99 regression: {{service}}",
        "likely cause: {{cause_kind}} {{cause_object}} (slo explain --service {{service}})",
        "orange",
    );
    b.link("slo: services", "${slo_url}/services");

    b.row("What users see (traces)");
    b.add(Panel::stat(
        "Requests",
        "Inference requests per second.",
        "reqps",
        instant(format!("sum(rate(slo_requests_total{{{SEL}}}{RATE}))"), ""),
    ));
    b.add(
        Panel::stat(
            "Errors",
            "Share of requests that failed.",
            "percentunit",
            instant(
                format!(
                    r#"sum(rate(slo_requests_total{{{SEL}, outcome="error"}}{RATE})) / sum(rate(slo_requests_total{{{SEL}}}{RATE}))"#
                ),
                "",
            ),
        )
        .thresholds("green", &[(0.001, "orange"), (0.01, "red")]),
    );
    b.add(Panel::stat(
        "p99 latency",
        "End to end, over the selected services and models.",
        "s",
        instant(quantile(0.99, "slo_request_duration_seconds", ""), ""),
    ));
    b.add(Panel::stat(
        "p99 queue time",
        "Time requests waited before the model server computed them.",
        "s",
        instant(quantile(0.99, "slo_request_queue_seconds", ""), ""),
    ));
    b.add(Panel::stat(
        "p99 time to first token",
        "Requests that report a first token only.",
        "s",
        instant(quantile(0.99, "slo_request_ttft_seconds", ""), ""),
    ));
    b.add(
        Panel::stat(
            "Services regressing",
            "Services whose p99 slo's analyzer finds regressed now (it explains each busy service every minute).",
            "none",
            instant(format!("sum(slo_regression_active{{{VERDICT}}})"), ""),
        )
        .thresholds("green", &[(1.0, "red")]),
    );
    b.add(Panel::timeseries(
        "p99 latency and its parts",
        "p99 of the end-to-end time, of the queue time and of the compute time per service. The parts' p99s \
         need not add up to the whole's: the mean split is beside it.",
        "s",
        vec![
            q(quantile(0.99, "slo_request_duration_seconds", "service, "), "{{service}} end to end"),
            q(quantile(0.99, "slo_request_queue_seconds", "service, "), "{{service}} queue"),
            q(quantile(0.99, "slo_request_compute_seconds", "service, "), "{{service}} compute"),
        ],
    ));
    b.add(
        Panel::timeseries(
            "Mean latency: queue, compute, other",
            "Where an average request's time goes: waiting in a queue, prefill and decode, and the rest \
             (network, tokenizing, the gateway).",
            "s",
            vec![
                q(mean("slo_request_queue_seconds"), "{{service}} queue"),
                q(mean("slo_request_compute_seconds"), "{{service}} compute"),
                q(
                    format!(
                        "(sum by (service) (rate(slo_request_duration_seconds_sum{{{SEL}}}{RATE})) \
                         - sum by (service) (rate(slo_request_queue_seconds_sum{{{SEL}}}{RATE})) \
                         - sum by (service) (rate(slo_request_compute_seconds_sum{{{SEL}}}{RATE}))) \
                         / sum by (service) (rate(slo_request_duration_seconds_count{{{SEL}}}{RATE}))"
                    ),
                    "{{service}} other",
                ),
            ],
        )
        .stacked(),
    );
    b.add(Panel::timeseries(
        "Time to first token",
        "p50 and p99 per service and model.",
        "s",
        vec![
            q(quantile(0.5, "slo_request_ttft_seconds", "service, model, "), "{{service}} {{model}} p50"),
            q(quantile(0.99, "slo_request_ttft_seconds", "service, model, "), "{{service}} {{model}} p99"),
        ],
    ));
    b.add(Panel::timeseries(
        "Requests by outcome",
        "Requests per second per service and outcome.",
        "reqps",
        vec![q(
            format!("sum by (service, outcome) (rate(slo_requests_total{{{SEL}}}{RATE}))"),
            "{{service}} {{outcome}}",
        )],
    ));

    b.row("The regression verdict (slo's analyzer)");
    b.add(
        Panel::table(
            "Verdict per service",
            "1 while the service's p99 regressed, with the likely cause slo explain ranks first; `slo explain \
             --service NAME` gives the evidence.",
            vec![instant(format!("slo_regression_active{{{VERDICT}}}"), "")],
            &[
                ("service", "Service"),
                ("cause_kind", "Likely cause"),
                ("cause_object", "Object"),
                ("Value", "Regressing"),
            ],
        )
        .mappings(&[("0", "no", "green"), ("1", "yes", "red")])
        .colored_cells()
        .size(12, 8),
    );
    b.add(Panel::timeseries(
        "p99 before and since the onset",
        "While a regression goes on: the p99 before its onset and since, as slo explain measures them.",
        "s",
        vec![
            q(format!("slo_regression_p99_before_seconds{{{VERDICT}}}"), "{{service}} before"),
            q(format!("slo_regression_p99_after_seconds{{{VERDICT}}}"), "{{service}} since the onset"),
        ],
    ));
    b.add(Panel::timeseries(
        "Queue share of the slow tail's rise",
        "How much of the rise of the slow requests is waiting (capacity) rather than computing (a slower \
         model or GPU).",
        "percentunit",
        vec![q(format!("slo_regression_queue_share{{{VERDICT}}}"), "{{service}}")],
    ));

    b.row("Model server (vLLM)");
    b.add(Panel::timeseries(
        "Scheduler: running and waiting",
        "Requests the engines run and hold waiting, per model.",
        "none",
        vec![
            q(format!("sum by (model_name) (vllm:num_requests_running{{{VLLM}}})"), "{{model_name}} running"),
            q(format!("sum by (model_name) (vllm:num_requests_waiting{{{VLLM}}})"), "{{model_name}} waiting"),
        ],
    ));
    b.add(Panel::timeseries(
        "KV cache usage",
        "Mean and fullest engine per model; near 100% requests are preempted or wait.",
        "percentunit",
        vec![
            q(format!("avg by (model_name) (vllm:kv_cache_usage_perc{{{VLLM}}})"), "{{model_name}} mean"),
            q(format!("max by (model_name) (vllm:kv_cache_usage_perc{{{VLLM}}})"), "{{model_name}} max"),
        ],
    ));
    b.add(Panel::timeseries(
        "Token throughput",
        "Prompt and generated tokens per second per model.",
        "none",
        vec![
            q(format!("sum by (model_name) (rate(vllm:prompt_tokens_total{{{VLLM}}}{RATE}))"), "{{model_name}} prompt"),
            q(
                format!("sum by (model_name) (rate(vllm:generation_tokens_total{{{VLLM}}}{RATE}))"),
                "{{model_name}} generated",
            ),
        ],
    ));
    b.add(Panel::timeseries(
        "Engine latency (vLLM's view)",
        "p99 end to end and in the engine's queue as the model server measures them: the difference to the \
         traces' p99 is time spent before the engine.",
        "s",
        vec![
            q(
                format!(
                    "histogram_quantile(0.99, sum by (model_name, le) (rate(vllm:e2e_request_latency_seconds_bucket{{{VLLM}}}{RATE})))"
                ),
                "{{model_name}} end to end",
            ),
            q(
                format!(
                    "histogram_quantile(0.99, sum by (model_name, le) (rate(vllm:request_queue_time_seconds_bucket{{{VLLM}}}{RATE})))"
                ),
                "{{model_name}} queue",
            ),
        ],
    ));
    b.add(Panel::timeseries(
        "Preemptions",
        "Requests the engines preempted per second (KV cache full).",
        "none",
        vec![q(format!("sum by (model_name) (rate(vllm:num_preemptions_total{{{VLLM}}}{RATE}))"), "{{model_name}}")],
    ));
    b.finish()
}
