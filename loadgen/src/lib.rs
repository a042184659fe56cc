//! `slo loadgen`: the GPU inference load generator.
//!
//! Two jobs. `simulate` runs a simulated GPU inference cluster (vLLM-like
//! model servers on GPU nodes, Deployments, ReplicaSets, an HPA, node pools)
//! and injects faults at known times, writing the ground truth so the analyzer
//! can be scored. It speaks the real protocols — OTLP traces, vLLM and
//! dcgm-exporter `/metrics`, the Kubernetes list/watch API behind a
//! kubeconfig, the OpenAI HTTP API — so the collector cannot tell it from a
//! cluster. `endpoint` (`slo loadgen target`) drives open-loop load against any OpenAI-compatible
//! endpoint.
//!
//! This crate depends on no other `slo` crate: it talks over the wire only.

mod dist;
mod duration;
mod endpoint;
mod error;
mod exposition;
mod kubeapi;
mod otlp;
mod scenario;
mod sim;
mod simulate;
mod truth;

pub use endpoint::{OtlpProtocol, TargetArgs, TargetReport, run as run_target};
pub use error::{Error, Result};
pub use kubeapi::write_kubeconfig;
pub use scenario::{BUILTIN, Builtin, Scenario, builtin_yaml, load as load_scenario};
pub use sim::{Sim, SimOptions};
pub use simulate::{SimulateArgs, TraceFormat, run as run_simulate, run_files};
pub use truth::{GroundTruth, TruthEntry};
