//! Scenarios: the cluster a simulation starts from, the traffic it serves and
//! the changes injected at known times.
//!
//! A scenario is a YAML document (the built-ins are written in the same form,
//! see `slo loadgen scenarios --show NAME`):
//!
//! ```yaml
//! name: hpa-scale-down
//! description: the HPA target is raised under steady load; it scales 6 -> 4 and the queue grows
//! service: llama-70b          # the service the ground truth is about
//! duration: 30m
//! namespace: inference
//! pools:
//!   - { name: gpu-h100, nodes: 4, max_nodes: 6, gpus_per_node: 4, provision: 4m }
//! models:
//!   - name: llama-70b         # Deployment, HPA and service.name
//!     model: meta-llama/Llama-3.1-70B-Instruct
//!     replicas: 6
//!     hpa: { min: 2, max: 12, target: 20 }
//!     traffic: { rate: 40, prompt_tokens: "lognormal:800,0.6", output_tokens: "lognormal:150,0.5" }
//! actions:
//!   - { at: 12m, set_hpa: { deployment: llama-70b, target: 30 } }
//! ```
//!
//! Every action says whether it is `causal` (default true) — `false` marks a
//! decoy, a real change that does not cause the regression — and is written to
//! the ground truth when it takes effect.

mod builtin;
mod spec;
#[cfg(test)]
mod tests;
mod validate;

pub(crate) use builtin::builtin;
pub use builtin::{BUILTIN, Builtin, builtin_yaml};
pub use spec::*;

use std::path::Path;

use crate::error::{Error, Result};

/// Resolves `--scenario NAME|FILE`: a built-in name, or a path to a YAML file.
pub fn load(name_or_path: &str) -> Result<Scenario> {
    if let Some(s) = builtin(name_or_path) {
        return Ok(s);
    }
    let path = Path::new(name_or_path);
    if !path.exists() {
        let names: Vec<&str> = BUILTIN.iter().map(|b| b.name).collect();
        return Err(Error::Invalid(format!(
            "--scenario {name_or_path:?}: no built-in scenario of that name and no such file (built-ins: {})",
            names.join(", ")
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Scenario::from_yaml(&text).map_err(|message| Error::Scenario { path: path.to_path_buf(), message })
}
