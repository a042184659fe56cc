//! `slo`: SLO analysis for GPU inference on Kubernetes. This file only wires the commands.

mod cli;
mod config;
mod import;
mod query;
mod serve;
mod telemetry;

fn main() -> std::process::ExitCode {
    cli::main()
}
