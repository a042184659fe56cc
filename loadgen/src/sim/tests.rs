//! Scenario behaviour: each built-in does what its description says, seen
//! the way an analyzer would see it (per-minute p99 of requests), and the
//! control does nothing.

use super::*;
use crate::scenario::builtin;

const MIN: i64 = 60_000_000_000;

/// Per-minute stats of the scenario's service.
#[derive(Debug, Clone, Default)]
pub(crate) struct Minute {
    pub count: usize,
    pub errors: usize,
    pub p50: f64,
    pub p99: f64,
    pub queue_p99: f64,
    pub compute_p99: f64,
    pub ttft_p99: f64,
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

pub(crate) fn run(name: &str, seed: u64) -> (Vec<Minute>, Sim) {
    let sc = builtin(name).unwrap();
    let service = sc.models.iter().position(|m| m.name == sc.service).unwrap();
    let mut sim = Sim::new(sc, SimOptions { seed, start_unix_ns: 1_700_000_000_000_000_000, ..Default::default() });
    let end = sim.end();
    let minutes = (end / MIN) as usize;
    let mut dur: Vec<Vec<f64>> = vec![Vec::new(); minutes];
    let mut queue = dur.clone();
    let mut compute = dur.clone();
    let mut ttft = dur.clone();
    let mut errors = vec![0; minutes];
    let mut t = 0;
    while t < end {
        t += MIN;
        sim.run_until(t);
        for r in sim.drain().requests {
            if r.model != service {
                continue;
            }
            let m = ((r.start - sim.start_unix_ns) / MIN) as usize;
            if m >= minutes {
                continue;
            }
            dur[m].push((r.end - r.start) as f64 / 1e6);
            if r.status != 200 {
                errors[m] += 1;
            }
            if let Some(s) = r.server {
                queue[m].push((s.scheduled - s.arrival) as f64 / 1e6);
                compute[m].push((s.finish - s.scheduled) as f64 / 1e6);
                ttft[m].push((s.first_token - s.arrival) as f64 / 1e6);
            }
        }
    }
    let out = (0..minutes)
        .map(|m| Minute {
            count: dur[m].len(),
            errors: errors[m],
            p50: pct(&mut dur[m], 0.5),
            p99: pct(&mut dur[m], 0.99),
            queue_p99: pct(&mut queue[m], 0.99),
            compute_p99: pct(&mut compute[m], 0.99),
            ttft_p99: pct(&mut ttft[m], 0.99),
        })
        .collect();
    (out, sim)
}

fn show(name: &str, mins: &[Minute], sim: &Sim) {
    eprintln!("== {name}");
    for (i, m) in mins.iter().enumerate() {
        eprintln!(
            "{i:>3} n={:>5} err={:>4} p50={:>7.0} p99={:>7.0} q99={:>7.0} c99={:>7.0} ttft99={:>7.0}",
            m.count, m.errors, m.p50, m.p99, m.queue_p99, m.compute_p99, m.ttft_p99
        );
    }
    for t in sim.truth() {
        eprintln!("truth {t:?}");
    }
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[test]
#[ignore = "calibration printout: cargo test -p slo-loadgen calibrate -- --ignored --nocapture"]
fn calibrate() {
    let which = std::env::var("SCENARIO").unwrap_or_else(|_| "control".into());
    let (mins, sim) = run(&which, 7);
    show(&which, &mins, &sim);
}

#[test]
fn control_is_steady() {
    let (mins, sim) = run("control", 7);
    show("control", &mins, &sim);
    let base = mean(mins[2..].iter().map(|m| m.p99));
    for (i, m) in mins.iter().enumerate().skip(2) {
        assert!(m.p99 < base * 1.35 && m.p99 > base / 1.35, "minute {i}: p99 {} vs mean {base}", m.p99);
        assert_eq!(m.errors, 0, "minute {i}");
        assert!(m.count > 2000, "minute {i}: {} requests", m.count);
    }
    assert!(sim.truth().is_empty());
    assert_eq!(sim.models[0].replicas, 6, "the HPA must hold steady");
}
