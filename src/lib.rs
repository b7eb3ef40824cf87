//! capstan: a declarative GitOps reconciler for HAProxy on Docker Swarm.
//!
//! The reconcile pipeline, one module per stage:
//! *sources* (`sources`: git, ...) → *desired state* (`model`, checked by
//! `validate`) → *render* (`render`) → *plan* (`diff`) → output (`report`).
//! Everything between the sources and the output is pure and works on plain
//! data.

pub mod diagnostics;
pub mod diff;
pub mod haproxy;
pub mod model;
pub mod render;
pub mod report;
pub mod sources;
pub mod validate;
pub mod webhook;
pub mod yaml;

/// The route table built into the binary: the repository's own `routes.yaml`.
pub const EMBEDDED_ROUTES: &str = include_str!("../routes.yaml");
