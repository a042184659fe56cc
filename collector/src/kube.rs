//! Kubernetes changes: what changed around a regression, normalized into the
//! `changes` kinds the README lists ("Tables").
//!
//! - [`normalize`] turns Kubernetes Events (core/v1 and events.k8s.io/v1, as watched or
//!   as saved with `kubectl get events -o json`) into changes by parsing the real message
//!   formats, and pairs ReplicaSet scale-ups and scale-downs into rollouts.
//! - [`objects`] summarizes watched objects to the fields changes come from.
//! - [`tracker`] diffs summaries into changes with deterministic keys, one row per fact.
//! - [`replay`] does the same for Events and watch streams saved to files (`slo import`).
//! - [`watch`] runs the list+watch loops with the `kube` client and stores the changes.
//! - [`lease`] elects the one collector of several that watches, through a Lease.

pub mod lease;
pub mod normalize;
pub mod objects;
pub mod replay;
pub mod tracker;
pub mod watch;

pub use normalize::{Change, ChangeKind, Classified, classify, from_event, rollouts};
pub use objects::Watched;
pub use tracker::Tracker;
