//! `slo query`: one SQL statement against a running server or a data directory.

use std::io::Write;

use anyhow::Context;
use slo_collector::CollectorConfig;
use slo_store::Store;
use slo_store::output::{self, Format};

use crate::cli::{Failure, OutputFormat, QueryArgs};

fn format(f: OutputFormat) -> Format {
    match f {
        OutputFormat::Table => Format::Table,
        OutputFormat::Json => Format::Json,
        OutputFormat::Csv => Format::Csv,
    }
}

/// Runs the query and prints the result.
pub(crate) async fn run(args: QueryArgs) -> Result<(), Failure> {
    let fmt = format(args.format);
    let body = match (&args.server, &args.bucket) {
        (Some(server), _) => remote(&args.client.client()?, server, &args.sql, fmt).await?,
        (None, Some(bucket)) => run_sql(&crate::bucket::open(bucket).await?, &args.sql, fmt).await?,
        (None, None) => local(args.data_dir.unwrap_or_else(|| "./slo-data".into()), &args.sql, fmt).await?,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&body).context("writing the result")?;
    Ok(())
}

async fn remote(client: &reqwest::Client, server: &str, sql: &str, fmt: Format) -> Result<Vec<u8>, Failure> {
    let url = format!("{}/api/v1/query", server.trim_end_matches('/'));
    let name = match fmt {
        Format::Table => "table",
        Format::Json => "json",
        Format::Csv => "csv",
    };
    let resp = client
        .post(&url)
        .json(&serde_json::json!({ "sql": sql, "format": name }))
        .send()
        .await
        .with_context(|| format!("asking {url}"))?;
    let status = resp.status();
    let body = resp.bytes().await.with_context(|| format!("reading the answer of {url}"))?;
    if status.is_success() {
        return Ok(body.to_vec());
    }
    Err(Failure::from_server(status, &body))
}

async fn local(dir: std::path::PathBuf, sql: &str, fmt: Format) -> Result<Vec<u8>, Failure> {
    let store = Store::open_read_only(&dir).map_err(Failure::usage)?;
    let replay_store = store.clone();
    let stats =
        tokio::task::spawn_blocking(move || slo_collector::read_unflushed(&replay_store, &CollectorConfig::default()))
            .await
            .context("replaying the WAL")??;
    tracing::debug!(records = stats.records, spans = stats.spans, "replayed unflushed WAL records read-only");
    run_sql(&store, sql, fmt).await
}

async fn run_sql(store: &Store, sql: &str, fmt: Format) -> Result<Vec<u8>, Failure> {
    let batches =
        store.snapshot().sql(sql).await.map_err(|e| if e.is_user_error() { Failure::usage(e) } else { e.into() })?;
    Ok(output::render(&batches, fmt)?)
}
