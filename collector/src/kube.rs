//! Kubernetes changes: what changed around a regression, normalized into the
//! `changes` taxonomy of DESIGN.md section 4.
//!
//! [`normalize`] turns Kubernetes Events (core/v1 and events.k8s.io/v1, as
//! watched or as saved with `kubectl get events -o json`) into [`Change`]s by
//! parsing the real message formats, and pairs ReplicaSet scale-ups and
//! scale-downs of one Deployment into rollouts.

pub mod normalize;

pub use normalize::{Change, ChangeKind, Classified, classify, from_event, rollouts};
