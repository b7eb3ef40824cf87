//! capstan: a declarative GitOps reconciler for HAProxy on Docker Swarm.
//!
//! The reconcile pipeline, one module per stage:
//! *sources* (`sources`: git, a file) → *desired state* (`model`, checked by
//! `validate`) → *render* (`render`) → *plan* (`plan` against the live
//! HAProxy; `diff` between two tables) → *apply* (`apply`, through `haproxy`'s
//! runtime API or a reload). `reconcile` runs the loop, `state` remembers it,
//! `api` and `report` show it. Everything between the sources and apply is
//! pure and works on plain data.

pub mod api;
pub mod apply;
pub mod dfp;
pub mod diagnostics;
pub mod diff;
pub mod endpoints;
pub mod haproxy;
pub mod metrics;
pub mod model;
pub mod overrides;
pub mod plan;
pub mod reconcile;
pub mod render;
pub mod report;
pub mod sources;
pub mod state;
pub mod swarm;
pub mod validate;
pub mod webhook;
pub mod yaml;

/// The route table built into the binary: the repository's own `routes.yaml`.
pub const EMBEDDED_ROUTES: &str = include_str!("../routes.yaml");
