//! Template snapshots: every page rendered from fixed data and compared byte for byte with
//! the reviewed HTML in `snapshots/` (rewrite them with `SLO_UPDATE_SNAPSHOTS=1` and read
//! the diff). Data that comes from outside is escaped on every page.

use std::sync::Arc;

use slo_analyzer::Change;
use slo_analyzer::Sketch;
use slo_analyzer::board::{self, ChangeView};
use slo_analyzer::spec::{LatencyMetric, Sli, Slo};
use slo_analyzer::text::{parse_time, rfc3339};
use slo_analyzer::{Cell, MINUTE_NS, Rollups};

use super::*;
use crate::gather::{Brief, ChangeRow, ChangesView, Overview, OverviewRow, Range, ServiceView, SloView};

fn t(s: &str) -> i64 {
    parse_time(s).unwrap()
}

fn range(window_min: i64) -> Range {
    let to = t("2026-11-22T14:30:00Z");
    let from = to - window_min * MINUTE_NS;
    Range {
        from: rfc3339(from),
        to: rfc3339(to),
        window: slo_analyzer::text::window_name(window_min * MINUTE_NS),
        at: Some(rfc3339(to)),
        live: false,
        from_ns: from,
        to_ns: to,
    }
}

/// An hour of llama-70b at 10 requests/s whose p99 triples from 14:15.
fn rollups() -> Rollups {
    let mut r = Rollups::new();
    let start = t("2026-11-22T13:30:00Z");
    for m in 0..60 {
        let slow = m >= 45;
        let mut c = Cell { count: 600, errors: if slow { 6 } else { 0 }, ..Cell::default() };
        let mut d = Sketch::new();
        d.add_n(800.0, 500);
        d.add_n(if slow { 9000.0 } else { 3000.0 }, 100);
        c.duration = d;
        c.queue.add_n(if slow { 5000.0 } else { 50.0 }, 600);
        c.compute.add_n(2500.0, 600);
        c.ttft.add_n(if slow { 5200.0 } else { 240.0 }, 600);
        c.input_tokens.add_n(900.0, 600);
        c.output_tokens.add_n(180.0, 600);
        r.insert("llama-70b", "meta-llama/Llama-3.1-70B-Instruct", start + m * MINUTE_NS, c);
    }
    r
}

fn change(time: &str, kind: &str, object: &str, from: &str, to: &str, reason: &str, message: &str) -> Change {
    Change {
        time: t(time),
        kind: kind.into(),
        namespace: "inference".into(),
        object: object.into(),
        from: from.into(),
        to: to.into(),
        reason: reason.into(),
        message: message.into(),
        attributes: Default::default(),
    }
}

fn changes() -> Vec<Change> {
    vec![
        change(
            "2026-11-22T14:12:00Z",
            "deploy",
            "deployment/llama-70b",
            "vllm/vllm-openai:v0.11.0",
            "vllm/vllm-openai:v0.11.0-r2",
            "NewReplicaSet",
            "<b>not bold</b> & \"quoted\"",
        ),
        change("2026-11-22T14:16:00Z", "scale_up", "hpa/llama-70b", "8", "10", "SuccessfulRescale", ""),
        change("2026-11-22T14:20:30Z", "node_added", "node/gpu-h100-5", "", "4 GPUs", "NodeAdded", ""),
    ]
}

/// A firing alert whose labels try to inject markup.
fn alert() -> crate::alerts::AlertBrief {
    crate::alerts::AlertBrief {
        alertname: "SLOErrorBudgetBurn".into(),
        service: Some("llama-70b".into()),
        severity: "page".into(),
        detail: "llama-70b-latency page-fast <script>".into(),
        starts_at: "2026-11-22T14:16:00.000Z".into(),
        verdict: "p99 regression 11.5 s -> 28.3 s since 14:12:00 (82% queue); likely cause: scale_down hpa/llama-70b (score 0.87)".into(),
    }
}

fn slo() -> Slo {
    Slo {
        name: "llama-70b-latency".into(),
        service: "llama-70b".into(),
        model: None,
        objective: 0.99,
        period: 28 * 1440 * MINUTE_NS,
        sli: Sli::Latency { metric: LatencyMetric::Duration, threshold_ms: 5000.0 },
        alerting: Default::default(),
    }
}

fn report() -> Arc<slo_analyzer::Report> {
    let json = serde_json::json!({
        "service": "llama-70b",
        "window": { "from": "2026-11-22T13:30:00Z", "to": "2026-11-22T14:30:00Z" },
        "regression": {
            "detected": true, "onset": "2026-11-22T14:15:00Z", "p99_before_ms": 3010.0, "p99_after_ms": 9050.0,
            "p_value": 0.00001, "queue_share": 0.91, "compute_share": 0.09, "ongoing": true
        },
        "causes": [
            { "rank": 1, "kind": "deploy", "object": "deployment/llama-70b", "time": "2026-11-22T14:12:00Z",
              "namespace": "inference", "score": 0.82, "evidence": ["180 s before the onset", "<i>escaped</i>"],
              "source": "changes", "factors": [1.0, 1.0, 0.9, 0.9] },
            { "rank": 2, "kind": "scale_up", "object": "hpa/llama-70b", "time": "2026-11-22T14:16:00Z",
              "namespace": "inference", "score": 0.11, "evidence": ["60 s after the onset began"],
              "source": "changes", "factors": [0.2, 1.0, 0.5, 0.5], "made_worse": "made worse at 14:20" }
        ],
        "confidence": { "level": "medium", "because": ["the regression is 2 minutes old"], "settle": "wait 3 minutes" },
        "next_steps": ["kubectl rollout undo deployment/llama-70b -n inference"],
        "canary": [
            { "by": "replicaset", "value": "llama-70b-x8b7569rl5", "before": null,
              "after": { "requests": 800, "p99_ms": 37400.0, "queue_p99_ms": 21000.0, "compute_p99_ms": 16000.0 } },
            { "by": "replicaset", "value": "llama-70b-5d8f7c9b6", "before": { "requests": 27000, "p99_ms": 14100.0, "queue_p99_ms": 40.0, "compute_p99_ms": 14000.0 },
              "after": { "requests": 2000, "p99_ms": 20100.0, "queue_p99_ms": 9000.0, "compute_p99_ms": 14000.0 } }
        ],
        "common": [
            { "attribute": "replicaset", "value": "llama-70b-x8b7569rl5", "slow_share": 0.97, "baseline_share": 0.0, "of": [360, 27000] },
            { "attribute": "node", "value": "gpu-h100-5", "slow_share": 0.41, "baseline_share": 0.12, "of": [360, 27000] }
        ],
        "data": { "requests": 36000, "buckets": 60, "bucket_seconds": 60, "changes_considered": 3 }
    });
    Arc::new(serde_json::from_value(json).unwrap())
}

fn check(name: &str, html: &str) {
    assert!(!html.contains("{{") && !html.contains("{%"), "{name}: template syntax leaked");
    assert!(!html.contains("<b>not bold</b>") && !html.contains("<i>escaped</i>"), "{name}: data not escaped");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/pages/snapshots").join(name);
    if std::env::var_os("SLO_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, html).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (SLO_UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    if want != html {
        let line = want.lines().zip(html.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name} differs from its snapshot at line {}:\n want: {}\n  got: {}\n(SLO_UPDATE_SNAPSHOTS=1 rewrites it)",
            line + 1,
            want.lines().nth(line).unwrap_or(""),
            html.lines().nth(line).unwrap_or("")
        );
    }
}

#[test]
fn the_service_page_matches_its_snapshot() {
    let r = range(60);
    let rollups = rollups();
    let v = ServiceView {
        service: "llama-70b".into(),
        series: board::series(&rollups, "llama-70b", None, r.from_ns, r.to_ns, MINUTE_NS),
        changes: changes().iter().map(ChangeView::from).collect(),
        report: Some(report()),
        report_error: None,
        slos: vec![slo_analyzer::burn::status(&slo(), &rollups, r.to_ns)],
        last_seen: None,
        gpus: slo_analyzer::gpu_panel(
            "llama-70b",
            &[slo_analyzer::GpuMinute {
                node: "gpu-h100-3".into(),
                gpu: "GPU-5f1b2c3d-0000-4000-8000-000000000003".into(),
                metric: "DCGM_FI_DEV_SM_CLOCK".into(),
                minute: r.to_ns - MINUTE_NS,
                value: 1410.0,
                pod: "llama-70b-x8b7569rl5-gxvg9".into(),
                attribution: "exporter_labels".into(),
            }],
            r.to_ns - 60 * MINUTE_NS,
            r.to_ns,
        ),
        gpus_from: r.from.clone(),
        alerts: vec![alert()],
        range: r,
    };
    let html = service_html(&v).unwrap();
    assert_eq!(html.matches("<figure class=\"chart\"").count(), 5);
    assert_eq!(html.matches("class=\"marker m-deploy\"").count(), 5, "the deploy on every chart");
    assert!(html.contains("p99 regression: 3.01 s → 9.05 s, since 14:15:00, ongoing"));
    assert!(html.contains("made worse at 14:20"));
    assert!(html.contains("What the slow requests have in common") && html.contains("<b>llama-70b-x8b7569rl5</b>"));
    assert!(
        html.contains(r#"<td>llama-70b-x8b7569rl5 <span class="pill new">new</span></td>"#),
        "the new ReplicaSet marked"
    );
    check("service.html", &html);
}

#[test]
fn the_overview_matches_its_snapshot() {
    let r = range(60);
    let rollups = rollups();
    let line = board::service_lines(&rollups, r.from_ns, r.to_ns).remove(0);
    let status = slo_analyzer::burn::status(&slo(), &rollups, r.to_ns);
    let row = OverviewRow {
        budget_remaining: status.budget_remaining,
        slos: vec![status],
        verdict: Brief {
            detected: true,
            onset: Some("2026-11-22T14:15:00Z".into()),
            top_cause: Some("deploy deployment/llama-70b".into()),
            confidence: Some("high".into()),
            summary: "p99 3.01 s -> 9.05 s".into(),
        },
        line,
    };
    let html = overview_html(&Overview {
        range: r,
        services: vec![row],
        idle_slos: vec!["<other>".into()],
        alerts: vec![alert()],
    })
    .unwrap();
    assert!(html.contains(r#"<a class="badge" href="/services/llama-70b?window=1h&amp;at=2026-11-22T14:30:00Z">deploy deployment&#x2F;llama-70b</a>"#), "{html}");
    assert!(html.contains("&lt;other&gt;"));
    check("overview.html", &html);
}

#[test]
fn the_changes_page_matches_its_snapshot() {
    let v = ChangesView {
        range: range(60),
        namespace: None,
        kind: Some("deploy".into()),
        object: Some("llama\"><script>".into()),
        changes: changes()
            .iter()
            .rev()
            .map(|c| ChangeRow { change: ChangeView::from(c), services: vec!["llama-70b".into()] })
            .collect(),
        kinds: vec!["deploy".into(), "node_added".into(), "scale_up".into()],
        namespaces: vec!["inference".into()],
    };
    let html = changes_html(&v).unwrap();
    assert!(!html.contains("llama\"><script>"), "the filter value is escaped");
    assert!(
        html.contains("/services/llama-70b?window=1h&amp;at=2026-11-22T14:42:00Z"),
        "a link 30 min after the deploy"
    );
    check("changes.html", &html);
}

#[test]
fn the_slo_pages_match_their_snapshots() {
    let r = range(120);
    let rollups = rollups();
    let spec = slo();
    let status = slo_analyzer::burn::status(&spec, &rollups, r.to_ns);
    let budget = slo_analyzer::burn::budget_series(&spec, &rollups, r.from_ns, r.to_ns, MINUTE_NS)
        .into_iter()
        .map(|(t, v)| (t / 1_000_000, v))
        .collect();
    let v = SloView { range: r.clone(), status: status.clone(), service: "llama-70b".into(), budget, step_s: 60 };
    let html = slo_html(&v).unwrap();
    assert!(html.contains("id=\"budget\" data-points=\"60\""), "an hour of budget points in two hours");
    check("slo.html", &html);
    let list = slos_html(&gather::SloList { range: r, slos: vec![status] }).unwrap();
    check("slos.html", &list);
}

#[test]
fn error_pages_name_the_problem_and_escape_it() {
    let resp = Problem::NotFound("no service named \"<script>x</script>\"".into()).page();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(resp.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'none'"));
    let resp = Problem::Bad("parameter \"window\": bad".into()).json();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    for resp in [Problem::Refused(Refusal::Busy(4)).json(), Problem::Refused(Refusal::Busy(4)).page()] {
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1", "shed work says when to come back");
    }
    let mut ctx = base_context("", None, "", String::new());
    ctx.insert("status", "404 Not Found");
    ctx.insert("message", "no service named \"<script>x</script>\"");
    let html = render("error.html", &ctx).unwrap();
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    check("error.html", &html);
}
