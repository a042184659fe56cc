//! `slo loadgen`: wires the load generator's commands (the work is in the
//! `slo-loadgen` crate) to the CLI, with Ctrl-C and exit codes.

use clap::{Args, Subcommand};
use slo_loadgen::SimulateArgs;
use slo_loadgen::TargetArgs;
use slo_loadgen::{BUILTIN, builtin_yaml};
use tokio_util::sync::CancellationToken;

use crate::cli::{Failure, Format};

/// `slo loadgen ...`
#[derive(Debug, Args)]
pub(crate) struct LoadgenArgs {
    #[command(subcommand)]
    command: LoadgenCommand,
}

#[derive(Debug, Subcommand)]
enum LoadgenCommand {
    /// Run a simulated GPU inference cluster with faults injected at known times.
    Simulate(SimulateArgs),
    /// Drive open-loop load against an OpenAI-compatible endpoint.
    Target(TargetArgs),
    /// List the built-in scenarios (or print one as YAML with --show NAME).
    Scenarios(ScenariosArgs),
}

#[derive(Debug, Args)]
struct ScenariosArgs {
    /// Print this scenario's YAML (a starting point for your own scenario file)
    #[arg(long, value_name = "NAME")]
    show: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn convert(e: slo_loadgen::Error) -> Failure {
    if e.is_usage() { Failure::usage(e) } else { Failure::from(anyhow::Error::new(e)) }
}

/// Cancelled on Ctrl-C or SIGTERM: the run stops, flushes what it produced and reports.
pub(crate) fn ctrl_c() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        t.cancel();
    });
    token
}

/// Runs a `slo loadgen` command.
pub(crate) async fn run(args: LoadgenArgs) -> Result<(), Failure> {
    match args.command {
        LoadgenCommand::Scenarios(a) => scenarios(a),
        LoadgenCommand::Simulate(a) => {
            let summary = slo_loadgen::run_simulate(a, ctrl_c()).await.map_err(convert)?;
            eprintln!("{}", summary.render());
            Ok(())
        }
        LoadgenCommand::Target(a) => {
            let report = slo_loadgen::run_target(a, ctrl_c()).await.map_err(convert)?;
            print!("{}", report.render_table());
            Ok(())
        }
    }
}

fn scenarios(a: ScenariosArgs) -> Result<(), Failure> {
    if let Some(name) = a.show {
        let text = builtin_yaml(&name).ok_or_else(|| {
            let names: Vec<&str> = BUILTIN.iter().map(|b| b.name).collect();
            Failure::usage(anyhow::anyhow!(
                "--show {name:?}: no such built-in scenario (built-ins: {})",
                names.join(", ")
            ))
        })?;
        print!("{text}");
        return Ok(());
    }
    match a.format {
        Format::Json => {
            let v: Vec<serde_json::Value> =
                BUILTIN.iter().map(|b| serde_json::json!({"name": b.name, "description": b.description})).collect();
            println!("{}", serde_json::to_string_pretty(&v).map_err(anyhow::Error::new)?);
        }
        Format::Text => {
            let width = BUILTIN.iter().map(|b| b.name.len()).max().unwrap_or(0);
            for b in BUILTIN {
                println!("{:width$}  {}", b.name, b.description);
            }
        }
    }
    Ok(())
}
