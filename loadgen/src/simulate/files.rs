//! `--out DIR`: the same data a live run serves, written as files for
//! `slo import`, as fast as the simulation runs (no network, no clock):
//!
//! ```text
//! DIR/traces/000001.pb            OTLP ExportTraceServiceRequest (protobuf; .json with --format json)
//! DIR/kube/watch.jsonl            every watch event {"type":..., "object":...} in resourceVersion order
//! DIR/metrics/<target>/<ms>.prom  one scrape: Prometheus text with explicit timestamps
//!                                 (<target> = pod_<namespace>_<pod> or node_<node>)
//! DIR/truth.json                  the ground truth
//! DIR/run.json                    scenario, seed, start, counts
//! ```

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::Message;

use super::spans::SpanMaker;
use super::{RunSummary, truth_json};
use crate::error::{Error, Result};
use crate::kubeapi::ApiStore;
use crate::sim::{ObjectChange, Sim};

/// Requests per trace file.
const REQUESTS_PER_FILE: usize = 10_000;

/// Trace file encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum TraceFormat {
    /// OTLP protobuf (`ExportTraceServiceRequest`)
    #[default]
    Pb,
    /// OTLP/JSON (hex trace and span ids)
    Json,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("writing {}", path.display()), e)
}

struct TraceWriter {
    dir: PathBuf,
    format: TraceFormat,
    seq: usize,
    requests: usize,
    gateway: Vec<SpanData>,
    pods: Vec<(String, Resource, Vec<SpanData>)>,
    gateway_resource: Resource,
    spans: u64,
}

impl TraceWriter {
    fn add(&mut self, maker: &mut SpanMaker, r: &crate::sim::RequestRecord) -> Result<()> {
        let (gw, server) = maker.spans(r);
        self.gateway.push(gw);
        self.spans += 1;
        if let Some((pod, res, span)) = server {
            self.spans += 1;
            match self.pods.iter_mut().find(|(name, _, _)| *name == pod.pod) {
                Some(entry) => entry.2.push(span),
                None => self.pods.push((pod.pod.clone(), res, vec![span])),
            }
        }
        self.requests += 1;
        if self.requests >= REQUESTS_PER_FILE {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.requests == 0 {
            return Ok(());
        }
        let mut resource_spans: Vec<ResourceSpans> = Vec::new();
        let gw = std::mem::take(&mut self.gateway);
        resource_spans
            .extend(group_spans_by_resource_and_scope(gw, &ResourceAttributesWithSchema::from(&self.gateway_resource)));
        for (_, res, spans) in self.pods.drain(..) {
            resource_spans.extend(group_spans_by_resource_and_scope(spans, &ResourceAttributesWithSchema::from(&res)));
        }
        // Resource attributes come out of a hash map: sort them so the same run gives the same bytes.
        for rs in &mut resource_spans {
            if let Some(r) = rs.resource.as_mut() {
                r.attributes.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        let req = ExportTraceServiceRequest { resource_spans };
        self.seq += 1;
        let (ext, bytes) = match self.format {
            TraceFormat::Pb => ("pb", req.encode_to_vec()),
            TraceFormat::Json => {
                ("json", serde_json::to_vec(&req).map_err(|e| Error::Invalid(format!("encoding OTLP/JSON: {e}")))?)
            }
        };
        let path = self.dir.join(format!("{:06}.{ext}", self.seq));
        fs::write(&path, bytes).map_err(|e| io(&path, e))?;
        self.requests = 0;
        Ok(())
    }
}

/// Runs the whole scenario and writes it under `dir`.
pub fn run_files(mut sim: Sim, dir: &Path, format: TraceFormat) -> Result<RunSummary> {
    let started = std::time::Instant::now();
    for sub in ["traces", "kube", "metrics"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
    }
    let mut maker = SpanMaker::new(sim.seed, &sim.scenario);
    let mut traces = TraceWriter {
        dir: dir.join("traces"),
        format,
        seq: 0,
        requests: 0,
        gateway: Vec::new(),
        pods: Vec::new(),
        gateway_resource: maker.gateway_resource().clone(),
        spans: 0,
    };
    let watch_path = dir.join("kube/watch.jsonl");
    let mut watch = BufWriter::new(File::create(&watch_path).map_err(|e| io(&watch_path, e))?);
    let store = ApiStore::new(1);
    let mut summary = RunSummary::default();
    let step = sim.scenario.scrape_interval.as_nanos_i64().max(100_000_000);
    let end = sim.end();
    let mut t = 0;
    loop {
        sim.run_until(t.min(end));
        let out = sim.drain();
        for r in &out.requests {
            summary.count(r);
            traces.add(&mut maker, r)?;
        }
        for change in out.objects {
            let ev = match change {
                ObjectChange::Apply(obj) => Some(store.apply(obj)?),
                ObjectChange::Delete { api_version, kind, namespace, name } => {
                    store.delete(api_version, kind, namespace.as_deref(), &name)
                }
            };
            if let Some(ev) = ev {
                serde_json::to_writer(&mut watch, &ev)
                    .map_err(|e| Error::Invalid(format!("encoding watch event: {e}")))?;
                watch.write_all(b"\n").map_err(|e| io(&watch_path, e))?;
                summary.kube_events += 1;
            }
        }
        write_scrape(&sim, dir, &mut summary)?;
        if t >= end {
            break;
        }
        t += step;
    }
    traces.flush()?;
    watch.flush().map_err(|e| io(&watch_path, e))?;
    summary.spans = traces.spans;
    summary.wall_s = started.elapsed().as_secs_f64();
    summary.finish(&sim);
    let truth = dir.join("truth.json");
    fs::write(&truth, truth_json(&sim)).map_err(|e| io(&truth, e))?;
    let run = dir.join("run.json");
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::Invalid(e.to_string()))?;
    fs::write(&run, text).map_err(|e| io(&run, e))?;
    Ok(summary)
}

fn write_scrape(sim: &Sim, dir: &Path, summary: &mut RunSummary) -> Result<()> {
    let ts_ms = sim.now_unix_ns() / 1_000_000;
    for target in sim.metrics_targets() {
        let parts: Vec<&str> = target.trim_matches('/').split('/').collect();
        let (name, text) = match parts.as_slice() {
            ["pods", ns, pod, "metrics"] => (format!("pod_{ns}_{pod}"), sim.render_pod_metrics(ns, pod, Some(ts_ms))),
            ["nodes", node, "metrics"] => (format!("node_{node}"), sim.render_node_metrics(node, Some(ts_ms))),
            _ => continue,
        };
        let Some(text) = text else { continue };
        let d = dir.join("metrics").join(&name);
        fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
        let path = d.join(format!("{ts_ms}.prom"));
        fs::write(&path, text).map_err(|e| io(&path, e))?;
        summary.scrapes += 1;
    }
    Ok(())
}
