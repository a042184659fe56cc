//! The ground truth a simulated run writes (`truth.json`, `--truth`; README, "The load
//! generator"): which changes were injected, when, and whether each was a cause or a
//! decoy. One definition, written by the simulator and read by `slo eval`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sim::{Sim, rfc3339};

/// One injected change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TruthEntry {
    /// Its cause kind in the taxonomy (`rollout`, `scale_down`, `gpu_throttle`, ...).
    pub kind: String,
    /// The object, `kind/name` (`deployment/llama-70b`, `node/gpu-h100-2`).
    pub object: String,
    /// When it took effect, RFC 3339.
    pub time: String,
    /// A cause (true) or a decoy that should not be blamed (false).
    pub causal: bool,
    /// Extra facts (from/to, node, reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A run's ground truth.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroundTruth {
    /// The scenario's name.
    pub scenario: String,
    /// The seed of the run.
    pub seed: u64,
    /// The service the scenario is about (the one to explain).
    pub service: String,
    /// The run's first and last simulated instants, RFC 3339.
    pub start: String,
    pub end: String,
    /// Every injected change, in the order of the scenario's actions.
    pub injected: Vec<TruthEntry>,
}

impl GroundTruth {
    /// The truth of `sim` so far.
    pub fn of(sim: &Sim) -> GroundTruth {
        GroundTruth {
            scenario: sim.scenario.name.clone(),
            seed: sim.seed,
            service: sim.scenario.service.clone(),
            start: rfc3339(sim.start_unix_ns),
            end: rfc3339(sim.now_unix_ns()),
            injected: sim.truth().to_vec(),
        }
    }

    /// As `truth.json` holds it.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a `truth.json`.
    pub fn read(path: &Path) -> Result<GroundTruth> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_simulator_writes_reads_back_the_same() {
        let scenario = crate::scenario::load("slow-deploy").unwrap();
        let mut sim = Sim::new(scenario, crate::sim::SimOptions { seed: 3, ..Default::default() });
        sim.run_until(sim.end());
        let truth = GroundTruth::of(&sim);
        assert!(truth.injected.iter().any(|t| t.causal), "{truth:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("truth.json");
        std::fs::write(&path, truth.to_json()).unwrap();
        assert_eq!(GroundTruth::read(&path).unwrap(), truth);
        std::fs::write(&path, "{\"scenario\": 1}").unwrap();
        assert!(GroundTruth::read(&path).unwrap_err().to_string().contains("truth.json"));
    }
}
