use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::evidence;
use crate::source::Change;

const S: i64 = 1_000_000_000;
const ONSET: i64 = 1_763_820_720 * S;

fn request(time: i64, pod: &str, queue: f64) -> Request {
    Request {
        time,
        pod: pod.into(),
        replicaset: Arc::from("llama-70b-rs1"),
        deployment: Arc::from("llama-70b"),
        namespace: Arc::from("inference"),
        node: Arc::from("gpu-1"),
        duration: 900.0 + queue,
        queue,
        compute: 900.0,
        input_tokens: 800.0,
        output_tokens: 150.0,
        error: false,
    }
}

fn change(at_s: i64, kind: &str, object: &str, from: &str, to: &str) -> Change {
    Change {
        time: ONSET + at_s * S,
        kind: kind.into(),
        namespace: "inference".into(),
        object: object.into(),
        from: from.into(),
        to: to.into(),
        reason: String::new(),
        message: String::new(),
        attributes: BTreeMap::from([("deployment".to_string(), "llama-70b".to_string())]),
    }
}

/// Seven pods, a request a second for ten minutes before the onset (queue 30 ms) and
/// after it (queue 9 s).
fn ranked(changes: &[Change]) -> Vec<Candidate> {
    let pods: Vec<String> = (0..7).map(|p| format!("llama-70b-rs1-p{p}")).collect();
    let before: Vec<Request> =
        (0..600).map(|i| request(ONSET - 600 * S + i * S, &pods[i as usize % 7], 30.0)).collect();
    let after: Vec<Request> = (0..600).map(|i| request(ONSET + i * S, &pods[i as usize % 7], 9000.0)).collect();
    ranked_over(before, after, changes)
}

fn ranked_over(before: Vec<Request>, after: Vec<Request>, changes: &[Change]) -> Vec<Candidate> {
    let ctx = Context {
        service: "llama-70b",
        deployments: BTreeSet::from(["llama-70b".to_string()]),
        namespace: "inference".into(),
        onset: ONSET,
        width: 60 * S,
        tail: Some(TailShift {
            duration_before: 950.0,
            duration_after: 9900.0,
            queue_share: 0.95,
            compute_share: 0.05,
        }),
        before: before.iter().collect(),
        after: after.iter().collect(),
        rate: (1.0, 1.0),
        input_tokens: (800.0, 800.0),
        output_tokens: (150.0, 150.0),
    };
    let mut cands = from_changes(&ctx, changes);
    cands.extend(from_metrics(&ctx, &[], None, None));
    score(&ctx, &mut cands);
    cands
}

fn strength(cands: &[Candidate], kind: &str) -> f64 {
    cands.iter().find(|c| c.kind == kind).map(|c| c.strength).unwrap()
}

#[test]
fn a_scale_down_given_back_before_the_onset_explains_nothing() {
    // The HPA steps 7->6, then 6->7 a minute before the onset; three pods are OOM-killed
    // a second into the onset bucket.
    let mut changes = vec![
        change(-210, "scale_down", "hpa/llama-70b", "7", "6"),
        change(-60, "scale_up", "hpa/llama-70b", "6", "7"),
        // The Event's own row of the same step carries no `from`.
        change(-60, "scale_up", "hpa/llama-70b", "", "7"),
    ];
    for (k, at) in [1, 16, 31].into_iter().enumerate() {
        changes.push(change(at, "oom_kill", &format!("pod/llama-70b-rs1-p{k}"), "", "OOMKilled"));
    }
    let cands = ranked(&changes);
    assert_eq!(cands[0].kind, "oom_kill", "{cands:#?}");
    assert!(strength(&cands, "scale_down") < 0.1);
    let down = cands.iter().find(|c| c.kind == "scale_down").unwrap();
    assert!(
        down.evidence.iter().any(|e| e.contains("7 pods served after it up to the onset, 7 in the minute before it")),
        "{:?}",
        down.evidence
    );
}

#[test]
fn a_scale_down_counts_what_was_still_removed_at_the_onset() {
    // 7->6 alone: a seventh of the capacity.
    let alone = ranked(&[change(-210, "scale_down", "hpa/llama-70b", "7", "6")]);
    assert!((strength(&alone, "scale_down") - (0.5 + 0.5 * 4.0 / 7.0)).abs() < 1e-9);
    // 6->3, then only 3->5 before the onset: the scale-down keeps its own size.
    let partial = ranked(&[
        change(-300, "scale_down", "hpa/llama-70b", "6", "3"),
        change(-120, "scale_up", "hpa/llama-70b", "3", "5"),
    ]);
    assert_eq!(strength(&partial, "scale_down"), 1.0);
    // A step up after the onset does not undo the cause.
    let late = ranked(&[
        change(-300, "scale_down", "hpa/llama-70b", "6", "4"),
        change(30, "scale_up", "hpa/llama-70b", "4", "6"),
    ]);
    assert_eq!(late[0].kind, "scale_down");
    assert_eq!(strength(&late, "scale_down"), 1.0);
}

#[test]
fn a_lost_node_is_timed_from_when_it_stopped_serving() {
    // gpu-2 serves two requests a second until 3 s before the onset and is marked lost 40 s
    // after it; gpu-1 serves on. A step of the HPA four minutes earlier competes.
    let on = |node: &str, from: i64, to: i64, every_ms: i64, queue: f64| -> Vec<Request> {
        (0..)
            .map(|k| from + k * every_ms * 1_000_000)
            .take_while(|t| *t < to)
            .map(|t| Request { node: Arc::from(node), ..request(t, &format!("llama-70b-rs1-{node}"), queue) })
            .collect()
    };
    let lost = change(40, "node_lost", "node/gpu-2", "Ready=True", "Ready=Unknown");
    let step = change(-240, "scale_down", "hpa/llama-70b", "7", "6");
    let mut before = on("gpu-1", ONSET - 600 * S, ONSET, 500, 30.0);
    before.extend(on("gpu-2", ONSET - 600 * S, ONSET - 3 * S + 1, 500, 30.0));
    let after = on("gpu-1", ONSET, ONSET + 600 * S, 500, 9000.0);
    let cands = ranked_over(before.clone(), after.clone(), &[lost.clone(), step]);
    assert_eq!(cands[0].kind, "node_lost", "{cands:#?}");
    assert_eq!(cands[0].began, Some(ONSET - 3 * S));
    assert!(cands[0].timing > 0.99);
    assert!(cands[0].evidence.iter().any(|e| e.contains("gpu-2 stopped serving at") && e.contains("43 s before")));

    // Thin traffic (a request a minute): the last one says nothing about when it failed.
    let mut thin = on("gpu-1", ONSET - 600 * S, ONSET, 500, 30.0);
    thin.extend(on("gpu-2", ONSET - 600 * S, ONSET - 3 * S, 60_000, 30.0));
    let cands = ranked_over(thin, after.clone(), std::slice::from_ref(&lost));
    assert_eq!(cands[0].began, None);
    assert_eq!(cands[0].timing, 0.7);

    // Still serving after it was marked lost: a flap, not a failure that began earlier.
    let mut flap = after;
    flap.extend(on("gpu-2", ONSET + 50 * S, ONSET + 60 * S, 500, 30.0));
    assert_eq!(ranked_over(before, flap, &[lost])[0].began, None);
}

#[test]
fn a_step_back_up_gives_nothing_back_until_its_pods_serve() {
    // 7->6 at -210 s, 6->7 at -60 s, but the seventh pod is still loading at the onset:
    // six pods serve from the scale-down on.
    let pod = |i: i64, t: i64| format!("llama-70b-rs1-p{}", i % if t < ONSET - 210 * S { 7 } else { 6 });
    let before: Vec<Request> =
        (0..600).map(|i| ONSET - 600 * S + i * S).map(|t| request(t, &pod(t / S, t), 30.0)).collect();
    let after: Vec<Request> = (0..600).map(|i| ONSET + i * S).map(|t| request(t, &pod(t / S, t), 9000.0)).collect();
    let cands = ranked_over(
        before,
        after,
        &[change(-210, "scale_down", "hpa/llama-70b", "7", "6"), change(-60, "scale_up", "hpa/llama-70b", "6", "7")],
    );
    let down = cands.iter().find(|c| c.kind == "scale_down").unwrap();
    assert!((down.strength - (0.5 + 0.5 * 4.0 / 7.0)).abs() < 1e-9, "{down:#?}");
    assert!(down.evidence.iter().any(|e| e.contains("not yet serving at the onset")), "{:?}", down.evidence);
}

#[test]
fn a_change_inside_the_onset_minute_is_a_cause_when_the_requests_before_it_were_not_slow() {
    // Ten requests a second; the onset minute's first 5 s are normal, then the queue grows.
    let every = |from: i64, to: i64, queue: f64| -> Vec<Request> {
        (0..)
            .map(|k| from + k * S / 10)
            .take_while(|t| *t < to)
            .map(|t| request(t, "llama-70b-rs1-p0", queue))
            .collect()
    };
    let before: Vec<Request> = every(ONSET - 600 * S, ONSET, 30.0)
        .into_iter()
        .enumerate()
        .map(|(i, r)| Request { duration: 900.0 + (i % 100) as f64, ..r })
        .collect();
    let mut after = every(ONSET, ONSET + 5 * S, 30.0);
    after.extend(every(ONSET + 5 * S, ONSET + 600 * S, 9000.0));
    let oom = change(5, "oom_kill", "pod/llama-70b-rs1-p0", "", "OOMKilled");
    let cands = ranked_over(before.clone(), after, std::slice::from_ref(&oom));
    assert_eq!(cands[0].timing, 1.0, "{cands:#?}");
    assert!(cands[0].evidence.iter().any(|e| e.contains("50 requests before it were not slow yet (0 over")));

    // Slow from the bucket's start: the kill may as well be an effect.
    let slow = every(ONSET, ONSET + 600 * S, 9000.0);
    let cands = ranked_over(before, slow, &[oom]);
    assert_eq!(cands[0].timing, 0.7);
}

#[test]
fn a_step_back_up_at_the_onset_or_a_pod_that_left_midway_gives_nothing_back() {
    // 6->5 at -120 s, 5->4 at -45 s, 5->6 at the onset itself (scale-down-with-decoy, seed 9):
    // the pod removed at -45 s still served in the minute before the onset, until -45 s.
    let pod = |t: i64| {
        let n = if t < ONSET - 120 * S {
            6
        } else if t < ONSET - 45 * S {
            5
        } else {
            4
        };
        format!("llama-70b-rs1-p{}", t / S % n)
    };
    let before: Vec<Request> = (0..600).map(|i| ONSET - 600 * S + i * S).map(|t| request(t, &pod(t), 30.0)).collect();
    let after: Vec<Request> = (0..600).map(|i| ONSET + i * S).map(|t| request(t, &pod(t), 9000.0)).collect();
    let steps = [
        change(-120, "scale_down", "hpa/llama-70b", "6", "5"),
        change(-45, "scale_down", "hpa/llama-70b", "5", "4"),
        change(-30, "scale_up", "hpa/llama-70b", "4", "5"),
        change(0, "scale_up", "hpa/llama-70b", "5", "6"),
    ];
    let cands = ranked_over(before.clone(), after.clone(), &steps);
    assert_eq!(cands[0].kind, "scale_down", "{cands:#?}");
    let down = &cands[0];
    assert!((down.strength - (0.5 + 0.5 * 4.0 / 5.0)).abs() < 1e-9, "{down:#?}");
    // A step back to five at -30 s: four pods served after the scale-down, not five.
    assert!(down.evidence.iter().any(|e| e.contains("not yet serving at the onset")), "{:?}", down.evidence);
}

#[test]
fn a_rollout_that_reaches_some_nodes_first_makes_no_slow_node() {
    // Old ReplicaSet on gpu-1 and gpu-2; the new, 1.6x slower one only on gpu-2 so far.
    let at = |i: i64, rs: &str, node: &str, compute: f64| {
        let mut r = request(ONSET + i * S, &format!("{rs}-p{}", i % 3), 30.0);
        (r.replicaset, r.node, r.compute) = (Arc::from(rs), Arc::from(node), compute);
        r
    };
    let before: Vec<Request> =
        (0..600).map(|i| at(i - 600, "llama-70b-old", if i % 2 == 0 { "gpu-1" } else { "gpu-2" }, 900.0)).collect();
    let after: Vec<Request> = (0..600)
        .map(|i| match i % 3 {
            0 => at(i, "llama-70b-old", "gpu-1", 900.0),
            1 => at(i, "llama-70b-old", "gpu-2", 900.0),
            _ => at(i, "llama-70b-new", "gpu-2", 1440.0),
        })
        .collect();
    let refs: Vec<&Request> = after.iter().collect();
    // Mixed versions: gpu-2 looks slow against everything else ...
    assert!(evidence::compare(&refs, "gpu-2", |r| &*r.node == "gpu-2").unwrap().slower());
    // ... but not against the same ReplicaSet elsewhere.
    assert!(!evidence::compare_node(&refs, "gpu-2").unwrap().slower());
    drop(refs);
    let cands = ranked_over(before.clone(), after, &[]);
    assert!(cands.iter().all(|c| c.kind != "gpu_throttle"), "{cands:?}");
    // A node that is slow for the version it serves is still found.
    let throttled: Vec<Request> =
        (0..600)
            .map(|i| {
                if i % 2 == 0 {
                    at(i, "llama-70b-old", "gpu-1", 900.0)
                } else {
                    at(i, "llama-70b-old", "gpu-2", 1500.0)
                }
            })
            .collect();
    let cands = ranked_over(before, throttled, &[]);
    assert!(cands.iter().any(|c| c.kind == "gpu_throttle" && c.object == "node/gpu-2"), "{cands:?}");
}
