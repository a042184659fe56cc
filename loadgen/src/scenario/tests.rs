use super::*;

#[test]
fn every_builtin_parses_and_validates() {
    for name in BUILTIN.iter().map(|b| b.name) {
        let text = builtin::builtin_yaml(name).unwrap();
        let s = Scenario::from_yaml(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
        assert_eq!(s.name, name);
        assert!(builtin(name).is_some());
    }
}

#[test]
fn validation_names_every_bad_field() {
    let text = r#"
name: bad
service: nope
pools: [{ name: gpu, nodes: 0 }]
models:
  - name: m
    model: x
    replicas: 1
    hpa: { min: 5, max: 2, target: 0 }
    traffic: { rate: -1 }
actions:
  - { at: 1h, deploy: { deployment: ghost } }
  - { at: 1m }
"#;
    let err = Scenario::from_yaml(text).unwrap_err();
    for want in [
        "service: must name one of the models",
        "pools[0].nodes",
        "models[0].hpa.min",
        "models[0].hpa.target",
        "models[0].traffic.rate",
        "actions[0].at",
        "actions[0].deploy.deployment: no model of that name",
        "actions[1]: exactly one of",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// Fuzzing found a pool of 1,111,111,224 nodes that validation reported and then listed by
/// name to check the actions' nodes: a billion strings. It is reported, and nothing more.
#[test]
fn a_pool_too_large_is_reported_without_listing_its_nodes() {
    let text = builtin::builtin_yaml("gpu-throttle")
        .unwrap()
        .replace("nodes: 4, max_nodes: 6", "nodes: 1111111224, max_nodes: 6");
    let err = Scenario::from_yaml(&text).unwrap_err();
    assert!(err.contains("pools[0].nodes: must be in 1..=1000"), "{err}");
    // Nodes are still known by name: the throttled node of the valid scenario.
    assert!(builtin("gpu-throttle").is_some());
}

#[test]
fn unknown_fields_and_bad_values_are_named() {
    let err = Scenario::from_yaml("name: x\nservice: m\npools: []\nmodels: []\nbogus: 1\n").unwrap_err();
    assert!(err.contains("bogus"), "{err}");
    let text = builtin::builtin_yaml("control").unwrap().replace("lognormal:800,0.6", "lognormal:abc,1");
    let err = Scenario::from_yaml(&text).unwrap_err();
    assert!(err.contains("MEDIAN \"abc\""), "{err}");
}

#[test]
fn load_says_what_exists() {
    let err = load("no-such-scenario").unwrap_err().to_string();
    assert!(err.contains("built-ins: control, slow-deploy"), "{err}");
    assert!(load("control").is_ok());
}
