//! The alert rules in `alerts/`: what is committed is what `slo rules` generates, and it is
//! valid and tested with the real promtool (`promtool check rules`, `promtool test rules`
//! on `alerts/slo-rules.test.yaml`).

use std::path::Path;
use std::process::Command;

use crate::support::{promtool, promtool_ok, slo};

const REGENERATE: &[&str] = &["rules", "--config", "alerts/slo.yaml", "--url", "http://slo.monitoring:8080"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn generated(args: &[&str]) -> String {
    let out = Command::new(crate::support::BIN).args(args).current_dir(root()).output().unwrap();
    assert!(out.status.success(), "slo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn committed_rules_are_what_slo_rules_generates() {
    let committed = std::fs::read_to_string(root().join("alerts/slo-rules.yaml")).unwrap();
    assert!(
        generated(REGENERATE) == committed,
        "alerts/slo-rules.yaml is stale: run `slo {} > alerts/slo-rules.yaml`",
        REGENERATE.join(" ")
    );
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = promtool() else { return };
    promtool_ok(promtool, &["check", "rules", "alerts/slo-rules.yaml"], root());
    promtool_ok(promtool, &["test", "rules", "alerts/slo-rules.test.yaml"], root());
}

#[test]
fn the_prometheus_operator_form_holds_the_same_groups() {
    let mut args = REGENERATE.to_vec();
    args.extend(["--format", "prometheus-operator", "--namespace", "monitoring"]);
    let op: serde_yaml::Value = serde_yaml::from_str(&generated(&args)).unwrap();
    let plain: serde_yaml::Value = serde_yaml::from_str(&generated(REGENERATE)).unwrap();
    assert_eq!(op["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(op["kind"], "PrometheusRule");
    assert_eq!(op["metadata"]["namespace"], "monitoring");
    assert_eq!(op["spec"]["groups"], plain["groups"]);
}

#[test]
fn bad_slo_files_are_refused_naming_the_field_and_nothing_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("slo.yaml");
    std::fs::write(
        &p,
        "slos:\n  - { name: a, service: s, objective: 99%, errors: {}, alerting: { disable: [page-medium] } }\n",
    )
    .unwrap();
    let out = slo(&["rules", "--config", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("slos[0].alerting.disable") && err.contains("page-medium"), "{err}");
    std::fs::write(&p, "slos:\n  - { name: a, service: s, objective: 99%, window: 1d, errors: {} }\n").unwrap();
    let out = slo(&["rules", "--config", p.to_str().unwrap(), "--scrape-interval", "1m"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--scrape-interval"));
}
