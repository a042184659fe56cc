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

pub mod dist;
pub mod duration;
pub mod endpoint;
pub mod error;
pub mod exposition;
pub mod kubeapi;
pub mod otlp;
pub mod scenario;
pub mod sim;
pub mod simulate;

pub use error::{Error, Result};
