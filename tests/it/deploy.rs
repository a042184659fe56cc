//! `deploy/`: the ClusterRole grants exactly what the watch uses; the ConfigMap's config is
//! one the binary accepts; the generated rules in the overlays are current; every manifest
//! validates against the Kubernetes OpenAPI schemas (`kubernetes-validate`, in the test
//! venv); what kustomize and the CRDs reference exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use slo_collector::kube::Watched;
use slo_collector::kube::watch::{VERBS, rbac_resources};

use crate::support::{BIN, slo};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn base() -> PathBuf {
    root().join("deploy/kubernetes/base")
}

fn yaml(path: &Path) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(v: &serde_yaml::Value) -> Vec<String> {
    v.as_sequence().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[test]
fn cluster_role_grants_what_the_watch_uses() {
    let role = yaml(&base().join("clusterrole.yaml"));
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let mut verbs = strings(&rule["verbs"]);
        verbs.sort();
        assert_eq!(verbs, VERBS, "every rule grants the watch's verbs and no other: {rule:?}");
        assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(), "{rule:?}");
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                assert!(!g.contains('*') && !r.contains('*'), "no wildcards: {g}/{r}");
                assert!(granted.insert((g.clone(), r)), "granted twice in {g}");
            }
        }
    }
    let used: BTreeSet<(String, String)> = rbac_resources(&Watched::ALL, true).into_iter().collect();
    assert_eq!(granted, used, "the ClusterRole must grant exactly what the watch lists and watches");
    let binding = yaml(&base().join("clusterrolebinding.yaml"));
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], yaml(&base().join("serviceaccount.yaml"))["metadata"]["name"]);
}

/// The object-store overlay's Role grants the election exactly what it does to its Lease,
/// in slo's namespace only, to slo's ServiceAccount.
#[test]
fn the_lease_role_grants_what_the_election_uses() {
    let path = root().join("deploy/kubernetes/overlays/object-store/role-lease.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<serde_yaml::Value> =
        serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
    let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(strings(&rules[0]["apiGroups"]), ["coordination.k8s.io"]);
    assert_eq!(strings(&rules[0]["resources"]), ["leases"]);
    let mut verbs = strings(&rules[0]["verbs"]);
    verbs.sort();
    assert_eq!(verbs, slo_collector::kube::lease::VERBS);
    let binding = docs.iter().find(|d| d["kind"] == "RoleBinding").unwrap();
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], "slo");
}

#[test]
fn the_config_map_config_is_one_the_binary_accepts() {
    let cfg = base().join("slo.yaml");
    let out = slo(&["serve", "--check-config", "--config", cfg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", text, String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("config ok") && text.contains("llama-70b-latency"), "{text}");
    // Where it points matches the StatefulSet: the data on the volume, the ports named.
    let sts = yaml(&base().join("statefulset.yaml"));
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    let mounts: Vec<&str> =
        c["volumeMounts"].as_sequence().unwrap().iter().map(|m| m["mountPath"].as_str().unwrap()).collect();
    let config = yaml(&cfg);
    assert!(mounts.contains(&config["data_dir"].as_str().unwrap()), "{mounts:?}");
    assert!(text.contains("otlp_grpc=0.0.0.0:4317") && text.contains("http=0.0.0.0:8080"), "{text}");
    // A broken config is refused, naming the field, and nothing starts.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("slo.yaml");
    std::fs::write(&bad, "store:\n  fsynk: always\n").unwrap();
    let out = slo(&["serve", "--check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fsynk"));
}

/// The object-store overlay's two configs: collectors that upload (the Lease's holder
/// watching) and a query node reading the bucket's root.
#[test]
fn the_object_store_overlays_configs_are_ones_the_binary_accepts() {
    let dir = root().join("deploy/kubernetes/overlays/object-store");
    let check = |file: &str, pod: &str| {
        let out = Command::new(BIN)
            .args(["serve", "--check-config", "--config", dir.join(file).to_str().unwrap()])
            .env("POD_NAME", pod)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{file}: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let watcher = check("slo.yaml", "slo-0");
    assert!(
        watcher.contains("role collector") && watcher.contains("object store s3://slo-telemetry/fleet/slo-0"),
        "{watcher}"
    );
    let elected = "kubernetes watch on while this collector holds the Lease slo-watcher";
    assert!(watcher.contains(elected), "{watcher}");
    let other = check("slo.yaml", "slo-1");
    assert!(other.contains("fleet/slo-1") && other.contains(elected), "{other}");
    let query = check("query.yaml", "slo-query-abc");
    assert!(
        query.contains("role query") && query.contains("reads the object store s3://slo-telemetry/fleet,"),
        "{query}"
    );
}

#[test]
fn the_overlays_rules_are_what_slo_rules_generates() {
    for (args, file) in [
        (
            &["--format", "prometheus-operator", "--url", "http://slo.slo:8080", "--namespace", "slo"][..],
            "deploy/kubernetes/overlays/prometheus-operator/prometheusrule.yaml",
        ),
        (&["--url", "http://slo.slo:8080"][..], "deploy/kubernetes/overlays/prometheus/slo-rules.yaml"),
    ] {
        let out = Command::new(BIN)
            .args(["rules", "--config", "deploy/kubernetes/base/slo.yaml"])
            .args(args)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let committed = std::fs::read_to_string(root().join(file)).unwrap();
        assert!(out.stdout == committed.as_bytes(), "{file} is stale: regenerate it as its kustomization.yaml says");
    }
}

/// Every file kustomize reads exists; the ServiceMonitor selects the Service's labels and
/// names one of its ports (no OpenAPI schema covers the Prometheus Operator's CRDs here).
#[test]
fn kustomizations_reference_what_exists() {
    for dir in [
        "deploy/kubernetes/base",
        "deploy/kubernetes/overlays/prometheus-operator",
        "deploy/kubernetes/overlays/prometheus",
        "deploy/kubernetes/overlays/object-store",
    ] {
        let k = yaml(&root().join(dir).join("kustomization.yaml"));
        let mut files: Vec<String> = k.get("resources").map(strings).unwrap_or_default();
        for g in k.get("configMapGenerator").and_then(|g| g.as_sequence()).into_iter().flatten() {
            files.extend(strings(&g["files"]));
        }
        for p in k.get("patches").and_then(|p| p.as_sequence()).into_iter().flatten() {
            files.extend(p["path"].as_str().map(str::to_string));
        }
        for f in files {
            assert!(root().join(dir).join(&f).exists(), "{dir}: {f} does not exist");
        }
    }
    let service = yaml(&base().join("service.yaml"));
    let monitor = yaml(&root().join("deploy/kubernetes/overlays/prometheus-operator/servicemonitor.yaml"));
    let ports: Vec<&str> =
        service["spec"]["ports"].as_sequence().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(ports.contains(&monitor["spec"]["endpoints"][0]["port"].as_str().unwrap()));
    // The headless Service selects the same pod: the ServiceMonitor must leave it out.
    let headless = yaml(&base().join("service-headless.yaml"));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let statefulset = yaml(&base().join("statefulset.yaml"));
    assert_eq!(statefulset["spec"]["serviceName"], headless["metadata"]["name"]);
    let excluded = &monitor["spec"]["selector"]["matchExpressions"][0];
    assert_eq!(excluded["operator"], "DoesNotExist");
    assert!(headless["metadata"]["labels"].get(excluded["key"].as_str().unwrap()).is_some());
    assert!(service["metadata"].get("labels").and_then(|l| l.get(excluded["key"].as_str().unwrap())).is_none());
    let labels = yaml(&base().join("kustomization.yaml"))["labels"][0]["pairs"].clone();
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(
            labels.get(k.as_str().unwrap()),
            Some(v),
            "the ServiceMonitor selects {k:?}, which kustomize does not set"
        );
    }
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas() {
    let python = std::env::var("SLO_TEST_PYTHON").expect("SLO_TEST_PYTHON is not set: run scripts/test");
    let validate = Path::new(&python).with_file_name("kubernetes-validate");
    let files = [
        "namespace.yaml",
        "serviceaccount.yaml",
        "clusterrole.yaml",
        "clusterrolebinding.yaml",
        "statefulset.yaml",
        "service.yaml",
        "service-headless.yaml",
        "poddisruptionbudget.yaml",
        "networkpolicy.yaml",
    ];
    // The three minor releases upstream supports (December 2026).
    for version in ["1.35.0", "1.36.0", "1.37.0"] {
        let out = Command::new(&validate)
            .args(["--strict", "--kubernetes-version", version])
            .args(files)
            .current_dir(base())
            .output()
            .expect("kubernetes-validate (tests/python/requirements.txt)");
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{version}: {text}");
        assert_eq!(text.matches("passed").count(), files.len(), "{version}: {text}");
    }
}

/// What `kubectl apply -k` would apply: each kustomization renders with kubectl's own
/// kustomize (where kubectl is installed: Debian has none recent enough, so CI machines
/// without it skip), every object lands in the `slo` namespace with the common labels,
/// the StatefulSet mounts the generated (hash-named) ConfigMap, and the rendered core
/// objects validate against the Kubernetes schemas.
#[test]
fn kustomizations_render_to_valid_objects() {
    let Some(kubectl) = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"].into_iter().find(|p| Path::new(p).exists())
    else {
        assert!(std::env::var_os("SLO_REQUIRE_KUBECTL").is_none(), "kubectl is not installed");
        eprintln!("kubectl not installed; skipping the kustomize render");
        return;
    };
    let python = std::env::var("SLO_TEST_PYTHON").expect("SLO_TEST_PYTHON is not set: run scripts/test");
    let validate = Path::new(&python).with_file_name("kubernetes-validate");
    let dir = tempfile::tempdir().unwrap();
    for (overlay, extra) in [
        ("base", &[][..]),
        ("overlays/prometheus-operator", &["PrometheusRule", "ServiceMonitor"][..]),
        ("overlays/prometheus", &[][..]),
        ("overlays/object-store", &[][..]),
    ] {
        let out = Command::new(kubectl)
            .args(["kustomize", root().join("deploy/kubernetes").join(overlay).to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{overlay}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let objects: Vec<serde_yaml::Value> =
            serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
        let mut kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        kinds.sort();
        let mut want = vec![
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "Service",
            "ServiceAccount",
            "StatefulSet",
        ];
        want.extend(extra);
        if overlay == "overlays/prometheus" {
            want.push("ConfigMap");
        }
        if overlay == "overlays/object-store" {
            // The query node: its config, Deployment, Service and NetworkPolicy; the Lease's role.
            want.extend(["ConfigMap", "Deployment", "Service", "NetworkPolicy", "Role", "RoleBinding"]);
        }
        want.sort();
        assert_eq!(kinds, want, "{overlay}");
        let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
        for o in &objects {
            let (kind, meta) = (o["kind"].as_str().unwrap(), &o["metadata"]);
            // The rules ConfigMap goes where Prometheus runs; the rest beside slo.
            let namespace = if meta["name"] == "slo-rules" { "monitoring" } else { "slo" };
            if !cluster_scoped.contains(&kind) {
                assert_eq!(meta["namespace"], namespace, "{overlay}: {kind} {:?}", meta["name"]);
            }
            assert_eq!(meta["labels"]["app.kubernetes.io/part-of"], "slo", "{overlay}: {kind} {:?}", meta["name"]);
        }
        let config = objects.iter().find(|o| o["kind"] == "ConfigMap" && o["data"].get("slo.yaml").is_some()).unwrap();
        let statefulset = objects.iter().find(|o| o["kind"] == "StatefulSet").unwrap();
        let volumes = statefulset["spec"]["template"]["spec"]["volumes"].as_sequence().unwrap();
        assert!(
            volumes.iter().any(|v| v["configMap"]["name"] == config["metadata"]["name"]),
            "{overlay}: the StatefulSet does not mount {:?}",
            config["metadata"]["name"]
        );
        // The core objects against the schemas (the operator's CRDs have none here).
        let core: Vec<String> = objects
            .iter()
            .filter(|o| !extra.contains(&o["kind"].as_str().unwrap()))
            .map(|o| serde_yaml::to_string(o).unwrap())
            .collect();
        let file = dir.path().join(format!("{}.yaml", overlay.replace('/', "-")));
        std::fs::write(&file, core.join("---\n")).unwrap();
        let out =
            Command::new(&validate).args(["--strict", "--kubernetes-version", "1.37.0"]).arg(&file).output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{overlay}: {report}");
        assert_eq!(report.matches("passed").count(), core.len(), "{overlay}: {report}");
    }
}
