//! End-to-end tests of the `slo` binary: real processes, real clients, loopback only.
//! One test binary for the whole package (every test binary links DataFusion).

mod alerts;
mod bad_input;
mod burn;
mod dashboard;
mod demo;
mod deploy;
mod durability;
mod explain;
mod grafana;
mod hostile;
mod import;
mod kube;
mod lease;
mod loadgen;
mod object_store;
mod otlp_python;
mod overload;
mod paging;
mod sampling;
mod scrape;
mod security;
mod standalone;
mod support;
