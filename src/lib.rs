//! capstan: a declarative GitOps reconciler for HAProxy on Docker Swarm.
//!
//! The reconcile pipeline, one module per stage, dependencies flowing one
//! way: `model` → `dfp` → `sources` → `desired` → `render` → `plan` →
//! `haproxy` → `reconcile` → `dashboard` → `api`. The README's Layout
//! section lists every module.

pub mod api;
pub mod dashboard;
pub mod desired;
pub mod dfp;
pub mod diff;
pub mod haproxy;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod reconcile;
pub mod render;
pub mod replicas;
pub mod report;
pub mod sources;
pub mod state;
pub mod tls;
pub mod util;
pub mod webhook;

/// The route table built into the binary: the repository's own `routes.yaml`.
pub const EMBEDDED_ROUTES: &str = include_str!("../routes.yaml");
