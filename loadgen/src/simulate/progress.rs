//! The progress line of a live run, for the person watching it: once a simulated minute,
//! where the simulated clock is, the request rate, the pods serving the scenario's service
//! and the next scheduled change; and each injected change as it takes effect (the ground
//! truth's entry, marked cause or decoy), so the fault can be seen landing.

use crate::sim::Sim;
use crate::sim::names::rfc3339;

const MINUTE: i64 = 60_000_000_000;

/// What has been reported so far.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    next_minute: i64,
    requests: u64,
    truth_seen: usize,
}

impl Progress {
    /// Counts requests that finished since the last call and returns the lines to print:
    /// each new ground-truth entry, then a status line when a simulated minute passed.
    pub(crate) fn update(&mut self, sim: &Sim, finished: usize, speed: f64) -> Vec<String> {
        self.requests += finished as u64;
        let mut lines = Vec::new();
        for t in &sim.truth()[self.truth_seen..] {
            let role = if t.causal { "the cause" } else { "a decoy" };
            let detail = t.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
            lines.push(format!("slo-sim {}: {} {} took effect{detail}: {role}", hms(&t.time), t.kind, t.object));
        }
        self.truth_seen = sim.truth().len();
        let now = sim.now();
        if self.next_minute == 0 {
            self.next_minute = MINUTE;
        }
        if now >= self.next_minute {
            let minutes = (now - self.next_minute + MINUTE) / MINUTE;
            let rate = self.requests as f64 / minutes.max(1) as f64;
            self.requests = 0;
            self.next_minute = (now / MINUTE + 1) * MINUTE;
            let service = &sim.scenario.service;
            let serving = sim.serving_pods(service);
            let next = sim
                .scenario
                .actions
                .iter()
                .map(|a| a.at.as_nanos_i64())
                .filter(|&at| at > now)
                .min()
                .map(|at| format!(", next scheduled change at {}", hms(&rfc3339(sim.now_unix_ns() - now + at, false))))
                .unwrap_or_default();
            lines.push(format!(
                "slo-sim {} ({} of {} min, {speed}x): {rate:.0} requests/min, {serving} {service} pod(s) serving{next}",
                hms(&rfc3339(sim.now_unix_ns(), false)),
                now / MINUTE,
                sim.end() / MINUTE,
            ));
        }
        lines
    }
}

/// `14:12:07` from an RFC 3339 time.
fn hms(t: &str) -> &str {
    t.get(11..19).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::builtin;
    use crate::sim::SimOptions;

    #[test]
    fn a_live_run_says_where_it_is_and_when_the_fault_lands() {
        let sc = builtin("slow-deploy").unwrap();
        let fault = sc.actions.iter().map(|a| a.at.as_nanos_i64()).min().unwrap();
        let mut sim =
            Sim::new(sc, SimOptions { seed: 1, start_unix_ns: 1_700_000_000_000_000_000, ..Default::default() });
        let mut p = Progress::default();
        let mut lines = Vec::new();
        let mut t = 0;
        while t < fault + 3 * MINUTE {
            t += 5_000_000_000;
            sim.run_until(t);
            let out = sim.drain();
            lines.extend(p.update(&sim, out.requests.len(), 20.0));
        }
        let status: Vec<&String> = lines.iter().filter(|l| l.contains("requests/min")).collect();
        assert_eq!(status.len() as i64, (fault + 3 * MINUTE) / MINUTE, "{lines:#?}");
        assert!(status[0].contains("(1 of 30 min, 20x)") && status[0].contains("pod(s) serving"), "{}", status[0]);
        assert!(status[0].contains("next scheduled change at"), "{}", status[0]);
        let rate: f64 = status[1].split(": ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(rate > 1000.0, "{}", status[1]);
        let landed: Vec<&String> = lines.iter().filter(|l| l.contains("took effect")).collect();
        assert!(
            landed.iter().any(|l| l.contains("deploy deployment/llama-70b") && l.ends_with("the cause")),
            "{lines:#?}"
        );
    }
}
