//! `slo import`: files into a data directory through the collector's own path.

use slo_collector::otlp::Receiver;
use slo_collector::{CollectorMetrics, Error, Pipeline};
use slo_collector::{ImportState, ImportSummary, import_file};
use slo_store::StoreMetrics;

use std::path::PathBuf;

use crate::cli::{Failure, ImportArgs};
use crate::config::ServeConfig;

/// Imports the files, flushes, and prints what was stored.
pub(crate) async fn run(args: ImportArgs) -> Result<(), Failure> {
    let mut cfg = ServeConfig::load(args.config.as_deref()).map_err(Failure::usage)?;
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    let (summary, failed) = import(&cfg, &args.files).await?;
    report(&summary, failed)
}

/// Imports `files` into the data directory of `cfg` through the collector's own path and
/// flushes; returns what was stored and the error that stopped it, if one did.
pub(crate) async fn import(cfg: &ServeConfig, files: &[PathBuf]) -> Result<(ImportSummary, Option<Error>), Failure> {
    // An import brings old incidents in: retention must not delete them on arrival.
    let remote = cfg.remote().map_err(Failure::usage)?;
    let store_cfg = slo_store::StoreConfig { retention: None, remote, ..cfg.store_config() };
    let collector_cfg = cfg.collector.clone();
    let (store, wals) = tokio::task::spawn_blocking(move || {
        slo_collector::open_store(store_cfg, StoreMetrics::unregistered(), &collector_cfg)
    })
    .await
    .map_err(anyhow::Error::from)?
    .map_err(Failure::usage)?;
    let metrics = CollectorMetrics::unregistered();
    let store_view = store.clone();
    let (ingest, pipeline) =
        Pipeline::start(store, wals, &cfg.collector, metrics.clone(), true).map_err(Failure::usage)?;
    let health = pipeline.health();
    while health.describe().starts_with("starting") {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut state = ImportState {
        change_keys: slo_collector::kube::watch::stored_keys(&store_view).await?,
        scrape: cfg.scrape.clone(),
        ..ImportState::default()
    };
    // Files are the operator's own, often of an old incident: any time that fits is taken.
    let receiver = Receiver::new(&cfg.collector, slo_collector::TimeRules::TRUSTED, ingest, metrics);
    let mut summary = ImportSummary::default();
    let mut failed = None;
    for file in files {
        if let Err(e) = import_file(&receiver, &mut state, file, &mut summary).await {
            failed = Some(e);
            break;
        }
    }
    drop(receiver);
    tokio::task::spawn_blocking(move || pipeline.shutdown()).await.map_err(anyhow::Error::from)??;
    if let Some(remote) = store_view.config().remote.clone() {
        // With an object store configured, what was imported goes there now (an import
        // has no uploader thread); on failure it stays in the data directory, and the next
        // `slo serve` (or import) of it uploads it. Rollups, and the segments of hours that
        // are over, are merged first: fewer objects.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        if let Err(e) = store_view.compact_all(now).await {
            tracing::warn!(error = %e, "could not merge rollup files or segments; they go up as they are");
        }
        let mut uploaded = 0;
        while store_view.pending_uploads() > 0 {
            let round = store_view.upload_round().await.map_err(|e| {
                anyhow::anyhow!(
                    "imported into {}, but uploading to {} failed: {e} (the next slo serve or import of it uploads the rest)",
                    cfg.data_dir.display(),
                    remote.url()
                )
            })?;
            uploaded += round.uploaded;
            if round == slo_store::UploadRound::default() {
                break;
            }
        }
        // Nothing else reads this data directory now: the local copies can go at once.
        store_view.delete_local_copies(std::time::Duration::ZERO);
        println!("uploaded {uploaded} file(s) to {}", remote.url());
    }
    Ok((summary, failed))
}

fn report(summary: &ImportSummary, failed: Option<Error>) -> Result<(), Failure> {
    println!(
        "imported {} file(s): {} export(s), {} span(s) stored, {} rejected",
        summary.files, summary.exports, summary.spans, summary.rejected
    );
    if summary.samples > 0 {
        println!("{} metric sample(s) stored", summary.samples);
    }
    if summary.changes + summary.duplicate_changes > 0 {
        println!(
            "{} Kubernetes change(s) stored, {} already stored before",
            summary.changes, summary.duplicate_changes
        );
    }
    if let Some(r) = &summary.first_rejection {
        println!("first rejection: {r}");
    }
    match failed {
        None => Ok(()),
        Some(e @ (Error::InvalidPayload(_) | Error::Config(_) | Error::File { .. } | Error::TooLarge { .. })) => {
            Err(Failure::usage(anyhow::anyhow!("{e} (files before it were imported)")))
        }
        Some(e) => Err(e.into()),
    }
}
