//! `slo`: SLO analysis for GPU inference on Kubernetes. This file only wires the commands.

mod bucket;
mod cli;
mod client;
mod config;
mod dashboards;
mod demo;
mod doors;
mod eval;
mod explain;
mod import;
mod loadgen;
mod query;
mod query_node;
mod rules;
mod serve;
mod telemetry;
mod watcher;

/// mimalloc instead of glibc malloc: the ingest path allocates many short-lived strings
/// and large Arrow buffers across threads; see BENCHMARKS.md ("Allocator") for the
/// measured difference, and `slo-allocator` for how freed memory is kept.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "mimalloc")]
    slo_allocator::keep_freed_memory();
    cli::main()
}
