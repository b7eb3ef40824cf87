//! The decisions of one reconcile, without I/O: what to build on after a
//! fetch, how overrides lay over git, the desired config, and whether to
//! apply it. The loop in `mod.rs` gathers the inputs and carries out the
//! answer.

use super::certificates::TlsDesired;
use crate::desired::{DesiredState, FileUsers};
use crate::model::RoutesFile;
use crate::plan::{DesiredConfig, LiveState, Plan, plan};
use crate::render::render_desired;
use crate::sources::overrides::OverrideSet;
use crate::sources::swarm_snapshot::SwarmState;
use crate::sources::{Fetched, RevisionInfo, Warning};

/// What a reconcile builds on after asking the source.
#[derive(Debug)]
pub enum Fetch<E> {
    /// The source answered.
    Fresh(Fetched),
    /// The source failed: the last fetch is used (overrides still apply on
    /// top of it), but the desired state is unknown.
    Stale { last: Fetched, error: E },
    /// The source failed and nothing was fetched before.
    Unknown(E),
}

/// Falls back to the last fetch when fetching failed.
pub fn after_fetch<E>(result: Result<Fetched, E>, last: Option<&Fetched>) -> Fetch<E> {
    match (result, last) {
        (Ok(fetched), _) => Fetch::Fresh(fetched),
        (Err(error), Some(last)) => Fetch::Stale {
            last: last.clone(),
            error,
        },
        (Err(error), None) => Fetch::Unknown(error),
    }
}

/// Swarm's services and the networks the proxy shares with them.
pub struct SwarmView {
    pub state: SwarmState,
    pub networks: Vec<String>,
}

/// git's routes for one reconcile, with Swarm's view of them.
pub struct GitDesired {
    pub revision: RevisionInfo,
    pub file_name: String,
    /// git's routes, plus the routes of `com.df.*` labels.
    pub routes: RoutesFile,
    /// Whether `routes` are git's file alone, as it was validated (no label
    /// routes were laid under it).
    pub file_only: bool,
    pub swarm: Option<SwarmView>,
    pub warnings: Vec<Warning>,
    /// The certificates of capstan's crt-list.
    pub tls: TlsDesired,
}

/// A desired config with what was merged into it.
pub struct Assembled {
    pub routes: RoutesFile,
    /// The override set laid over git.
    pub overrides: OverrideSet,
    pub desired: DesiredConfig,
    pub warnings: Vec<Warning>,
}

/// The desired config for `routes`, each route served by its Swarm tasks,
/// its userlists of files holding `file_users`.
pub fn assemble(
    git: &GitDesired,
    routes: RoutesFile,
    overrides: OverrideSet,
    file_users: FileUsers,
    haproxy_files: &HaproxyFiles,
) -> Assembled {
    let state = match &git.swarm {
        Some(swarm) => DesiredState::with_tasks(routes, &swarm.state, &swarm.networks),
        None => DesiredState::new(routes),
    }
    .with_file_users(file_users)
    .with_crt_list(git.tls.crt_list.clone())
    .with_maps_dir(haproxy_files.maps_dir.clone());
    let desired = DesiredConfig::new(render_desired(&state), &haproxy_files.admin_socket)
        .with_certificates(git.tls.crt_list.clone(), git.tls.certificates.clone());
    let mut warnings = git.warnings.clone();
    warnings.extend(state.warnings);
    Assembled {
        routes: state.routes,
        overrides,
        desired,
        warnings,
    }
}

/// Where the files the rendered config names are: the admin socket capstan
/// drives, the directory of the map files.
pub struct HaproxyFiles {
    pub admin_socket: std::path::PathBuf,
    pub maps_dir: std::path::PathBuf,
}

/// What to do with a desired config.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Carry out the plan (nothing, when live already matches).
    Apply(Plan),
    /// HAProxy rejected this exact config before: retrying every poll would
    /// be a reload storm. Wait for a new desired state (or a forced reload).
    AlreadyFailed(Plan),
}

/// Plans `desired` against `live`, unless HAProxy already rejected it
/// (`failed_marker`) and the reconcile is not `force`d.
pub fn decide(
    desired: &DesiredConfig,
    live: &LiveState,
    failed_marker: Option<&str>,
    force: bool,
) -> Decision {
    let plan = plan(desired, live);
    if !force && !plan.is_empty() && failed_marker == Some(desired.marker.as_str()) {
        Decision::AlreadyFailed(plan)
    } else {
        Decision::Apply(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate::load;
    use crate::plan::Method;

    const GIT: &str = "version: 1\nroutes:\n  - service: go-demo\n    port: 8080\n    paths: [/demo]\n  - service: shop\n    port: 3000\n    paths: [/shop]\n";

    fn git() -> RoutesFile {
        load("routes.yaml", GIT).expect("valid")
    }

    fn fetched(label: &str) -> Fetched {
        Fetched {
            revision: RevisionInfo {
                label: label.into(),
                commit: None,
                details: None,
            },
            file_name: "routes.yaml".into(),
            text: GIT.into(),
        }
    }

    fn desired(routes: &RoutesFile) -> DesiredConfig {
        let git = GitDesired {
            revision: fetched("r").revision,
            file_name: "routes.yaml".into(),
            routes: routes.clone(),
            file_only: true,
            swarm: None,
            warnings: vec![],
            tls: TlsDesired::default(),
        };
        assemble(
            &git,
            routes.clone(),
            OverrideSet::default(),
            FileUsers::new(),
            &HaproxyFiles {
                admin_socket: "/run/admin.sock".into(),
                maps_dir: "/run/maps".into(),
            },
        )
        .desired
    }

    #[test]
    fn a_failed_fetch_falls_back_to_the_last_fetch_or_is_unknown() {
        let last = fetched("r1");
        match after_fetch::<&str>(Ok(fetched("r2")), Some(&last)) {
            Fetch::Fresh(f) => assert_eq!(f.revision.label, "r2"),
            other => panic!("expected fresh, got {other:?}"),
        }
        match after_fetch(Err("unreachable"), Some(&last)) {
            Fetch::Stale { last, error } => {
                assert_eq!(last.revision.label, "r1");
                assert_eq!(error, "unreachable");
            }
            other => panic!("expected the last fetch, got {other:?}"),
        }
        assert!(matches!(
            after_fetch(Err("unreachable"), None),
            Fetch::Unknown("unreachable")
        ));
    }

    #[test]
    fn a_config_haproxy_rejected_is_not_retried_unless_forced() {
        let desired = desired(&git());
        let live = LiveState::default();
        let marker = desired.marker.clone();
        let Decision::AlreadyFailed(plan) = decide(&desired, &live, Some(&marker), false) else {
            panic!("the failed config must not be applied again");
        };
        assert_eq!(plan.method, Method::Reload);
        assert!(matches!(
            decide(&desired, &live, Some(&marker), true),
            Decision::Apply(_)
        ));
        assert!(matches!(
            decide(&desired, &live, Some("another config"), false),
            Decision::Apply(_)
        ));
        assert!(matches!(
            decide(&desired, &live, None, false),
            Decision::Apply(_)
        ));
    }
}
