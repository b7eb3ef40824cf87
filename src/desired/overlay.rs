//! Sources → one desired route table: git's routes, the routes Swarm
//! labels declare laid under them, and the overrides laid over the result.
//! Pure. Precedence, from weakest to strongest:
//!
//! - a label route serves only where git declares nothing of its id, and
//!   never when it conflicts with git's table (a path twice): it is then
//!   left out with a warning;
//! - git's routes;
//! - a *reconfigure* override's routes replace the routes with the same id
//!   (`<name or service>:<port>`) and add the others; a *remove* override
//!   hides every route of its service. Each live override is reported as
//!   [`Drift`]; one that changes nothing is *redundant*.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::diagnostics::Diagnostics;
use crate::model::validate;
use crate::model::{Route, RoutesFile};
use crate::sources::Warning;
use crate::sources::labels::Labelled;
use crate::sources::overrides::{Action, OverrideSet};

/// How one override shows against git, for status and diffs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub service: String,
    pub kind: DriftKind,
    /// Route ids git does not declare, added by the override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adds: Vec<String>,
    /// Git's route ids the override serves differently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
    /// Git's route ids the override hides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removes: Vec<String>,
    /// Git already declares exactly this: the override changes nothing.
    pub redundant: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// What an override does to git's routes of its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftKind {
    Reconfigure,
    Remove,
}

impl std::fmt::Display for DriftKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DriftKind::Reconfigure => "reconfigure",
            DriftKind::Remove => "remove",
        })
    }
}

/// Git's table with the live overrides laid over it, and how each differs.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub routes: RoutesFile,
    pub drift: Vec<Drift>,
}

/// Lays `overrides` (those not expired at `now`) over git's table.
pub fn merge(git: &RoutesFile, overrides: &OverrideSet, now: u64) -> Merged {
    let mut routes = git.clone();
    let mut drift = Vec::new();
    for o in overrides.overrides.values().filter(|o| !o.is_expired(now)) {
        let mut d = Drift {
            service: o.service.clone(),
            kind: DriftKind::Remove,
            adds: vec![],
            replaces: vec![],
            removes: vec![],
            redundant: false,
            expires_at: o.expires_at,
        };
        match &o.action {
            Action::Remove => {
                d.removes = routes
                    .routes
                    .iter()
                    .filter(|r| r.service.as_str() == o.service)
                    .map(|r| r.id().0)
                    .collect();
                routes.routes.retain(|r| r.service.as_str() != o.service);
                d.redundant = d.removes.is_empty();
            }
            Action::Reconfigure {
                routes: new,
                userlists,
            } => {
                d.kind = DriftKind::Reconfigure;
                let mut same = true;
                for route in new {
                    let id = route.id().0;
                    match git.routes.iter().find(|r| r.id().0 == id) {
                        None => {
                            same = false;
                            d.adds.push(id);
                        }
                        Some(existing) if existing.normalized() != route.normalized() => {
                            same = false;
                            d.replaces.push(id);
                        }
                        Some(_) => {}
                    }
                }
                for (name, users) in userlists {
                    match git.userlists.get(name) {
                        Some(existing) if existing == users => {}
                        // Never silently: a git userlist of that name is replaced.
                        Some(_) => {
                            same = false;
                            d.replaces.push(format!("userlist {name}"));
                        }
                        None => same = false,
                    }
                    routes.userlists.insert(name.clone(), users.clone());
                }
                // In place where git has the id, so that the table reads as git's.
                let mut pending: BTreeMap<String, &Route> =
                    new.iter().map(|r| (r.id().0, r)).collect();
                for route in &mut routes.routes {
                    if let Some(replacement) = pending.remove(&route.id().0) {
                        *route = replacement.clone();
                    }
                }
                routes.routes.extend(pending.into_values().cloned());
                d.redundant = same;
            }
        }
        drift.push(d);
    }
    Merged { routes, drift }
}

/// Git's table with the label routes laid under it.
#[derive(Debug, Clone, PartialEq)]
pub struct WithLabels {
    pub routes: RoutesFile,
    /// The ids of the label routes that made it in, in table order.
    pub label_routes: Vec<String>,
    /// The labelled services left out, one warning each, in service order.
    pub warnings: Vec<Warning>,
}

/// Lays the routes of `labels` under git's, one service at a time in
/// service order: a route whose id git declares too is ignored (git wins);
/// a service whose routes conflict with the table so far is left out whole,
/// with a warning. Overrides later apply on top of the result.
pub fn lay_labels_under(git: &RoutesFile, labels: Labelled) -> WithLabels {
    let mut table = git.clone();
    let mut label_routes = Vec::new();
    let mut warnings = labels.warnings;
    for service in labels.services {
        let mut candidate = table.clone();
        let added: Vec<Route> = service
            .routes
            .into_iter()
            .filter(|route| git.routes.iter().all(|r| r.id() != route.id()))
            .collect();
        candidate.routes.extend(added.iter().cloned());
        for (name, users) in service.userlists {
            candidate.userlists.entry(name).or_insert(users);
        }
        match crate::model::validate::check_semantics("labels", &candidate) {
            Ok(()) => {
                table = candidate;
                label_routes.extend(added.iter().map(|r| r.id().0));
            }
            Err(problems) => warnings.push(Warning {
                route: service.service,
                message: format!("com.df labels conflict with git's routes, ignored: {problems}"),
            }),
        }
    }
    // Unreadable labels and conflicts come in two lists, each in service
    // order, and a service has one warning at most: one service order.
    warnings.sort_by(|a, b| a.route.cmp(&b.route));
    WithLabels {
        routes: table,
        label_routes,
        warnings,
    }
}

/// The overrides laid over git's table.
#[derive(Debug)]
pub struct Overlay {
    pub routes: RoutesFile,
    /// The overrides in force: without the stale ones.
    pub overrides: OverrideSet,
    /// How each override in force differs from git.
    pub drift: Vec<Drift>,
    /// Overrides that expired or that git now declares itself: to drop.
    pub stale: Vec<String>,
}

/// Lays the overrides not expired at `now` over `git` (overrides win).
pub fn overlay(git: &RoutesFile, overrides: &OverrideSet, now: u64) -> Overlay {
    let merged = merge(git, overrides, now);
    let stale: Vec<String> = overrides
        .overrides
        .values()
        .filter(|o| o.is_expired(now))
        .map(|o| o.service.clone())
        .chain(
            merged
                .drift
                .iter()
                .filter(|d| d.redundant)
                .map(|d| d.service.clone()),
        )
        .collect();
    let mut in_force = overrides.clone();
    for service in &stale {
        in_force.overrides.remove(service);
    }
    Overlay {
        routes: merged.routes,
        overrides: in_force,
        drift: merged.drift.into_iter().filter(|d| !d.redundant).collect(),
        stale,
    }
}

/// Overrides can make git's table invalid (a path two services claim).
pub fn check_overlay(overlay: &Overlay) -> Result<(), Diagnostics> {
    validate::check_semantics("overrides", &overlay.routes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dfp::SecretsDir;
    use crate::sources::labels::label_routes;
    use crate::sources::overrides::Override;
    use crate::sources::overrides::fixtures::{ids, reconfigure, route, set};
    use crate::sources::swarm_snapshot::SwarmState;
    use crate::sources::swarm_snapshot::fixtures::service;

    fn git() -> RoutesFile {
        RoutesFile {
            routes: vec![
                route("a", 80, "/a"),
                route("b", 80, "/b"),
                route("b", 81, "/b2"),
            ],
            ..RoutesFile::empty()
        }
    }

    #[test]
    fn a_reconfigure_replaces_same_ids_and_adds_new_ones() {
        let o = reconfigure(
            "b",
            vec![route("b", 80, "/bee"), route("c", 90, "/c")],
            None,
        );
        let merged = merge(&git(), &set(vec![o]), 0);
        assert_eq!(ids(&merged.routes), ["a:80", "b:80", "b:81", "c:90"]);
        let b = merged
            .routes
            .routes
            .iter()
            .find(|r| r.id().0 == "b:80")
            .unwrap();
        assert_eq!(b.paths[0].0, "/bee");
        assert_eq!(merged.drift[0].replaces, ["b:80"]);
        assert_eq!(merged.drift[0].adds, ["c:90"]);
        assert!(!merged.drift[0].redundant);
    }

    #[test]
    fn a_remove_hides_every_git_route_of_the_service() {
        let o = Override {
            service: "b".into(),
            action: Action::Remove,
            created_at: String::new(),
            expires_at: None,
        };
        let merged = merge(&git(), &set(vec![o]), 0);
        assert_eq!(ids(&merged.routes), ["a:80"]);
        assert_eq!(merged.drift[0].removes, ["b:80", "b:81"]);
    }

    #[test]
    fn an_override_git_already_declares_is_redundant() {
        let merged = merge(
            &git(),
            &set(vec![reconfigure("a", vec![route("a", 80, "/a")], None)]),
            0,
        );
        assert!(merged.drift[0].redundant);
        assert_eq!(merged.routes, git());
    }

    #[test]
    fn expired_overrides_no_longer_apply() {
        let o = reconfigure("c", vec![route("c", 90, "/c")], Some(100));
        assert_eq!(
            ids(&merge(&git(), &set(vec![o.clone()]), 99).routes).len(),
            4
        );
        let merged = merge(&git(), &set(vec![o]), 100);
        assert_eq!(merged.routes, git());
        assert!(merged.drift.is_empty());
    }

    #[test]
    fn label_routes_fill_in_under_git() {
        let labelled = |name: &str, path: &str| {
            service(
                name,
                &[
                    ("com.df.notify", "true"),
                    ("com.df.servicePath", path),
                    ("com.df.port", "80"),
                ],
                vec![],
            )
        };
        let state = SwarmState {
            services: [
                labelled("lbl", "/lbl"),
                labelled("clash", "/web"),
                labelled("web", "/other"),
            ]
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect(),
            ..SwarmState::default()
        };
        let git = RoutesFile {
            routes: vec![route("web", 80, "/web")],
            ..RoutesFile::empty()
        };
        let WithLabels {
            routes: table,
            label_routes,
            warnings,
        } = lay_labels_under(&git, label_routes(&state, &SecretsDir::default()));
        let ids: Vec<String> = table.routes.iter().map(|r| r.id().0).collect();
        assert_eq!(ids, ["web:80", "lbl:80"], "git's web:80 wins, lbl is added");
        assert_eq!(table.routes[0].paths[0].0, "/web");
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].route, "clash");
        assert_eq!(label_routes, ["lbl:80"]);
    }

    #[test]
    fn overrides_win_over_label_routes_and_git() {
        let lbl = service(
            "lbl",
            &[
                ("com.df.notify", "true"),
                ("com.df.servicePath", "/lbl"),
                ("com.df.port", "80"),
            ],
            vec![],
        );
        let state = SwarmState {
            services: [(lbl.name.clone(), lbl)].into_iter().collect(),
            ..SwarmState::default()
        };
        let with_labels =
            lay_labels_under(&git(), label_routes(&state, &SecretsDir::default())).routes;
        let overrides = set(vec![
            reconfigure("lbl", vec![route("lbl", 80, "/new")], None),
            reconfigure("a", vec![route("a", 80, "/aa")], None),
        ]);
        let overlay = overlay(&with_labels, &overrides, 0);
        let path_of = |id: &str| {
            let route = overlay.routes.routes.iter().find(|r| r.id().0 == id);
            route.map(|r| r.paths[0].0.clone())
        };
        assert_eq!(path_of("lbl:80").as_deref(), Some("/new"));
        assert_eq!(path_of("a:80").as_deref(), Some("/aa"));
        assert_eq!(path_of("b:80").as_deref(), Some("/b"));
        assert_eq!(overlay.drift.len(), 2);
    }

    #[test]
    fn expired_and_redundant_overrides_are_stale_and_not_in_force() {
        let overrides = set(vec![
            reconfigure("c", vec![route("c", 90, "/c")], Some(50)),
            reconfigure("a", vec![route("a", 80, "/a")], None),
            reconfigure("d", vec![route("d", 70, "/d")], Some(500)),
        ]);
        let overlay = overlay(&git(), &overrides, 100);
        let mut stale = overlay.stale.clone();
        stale.sort();
        assert_eq!(stale, ["a", "c"]);
        assert_eq!(
            overlay.overrides.overrides.keys().collect::<Vec<_>>(),
            ["d"]
        );
        assert_eq!(ids(&overlay.routes), ["a:80", "b:80", "b:81", "d:70"]);
        assert_eq!(overlay.drift.len(), 1, "only `d` drifts from git");
        assert!(check_overlay(&overlay).is_ok());
    }

    #[test]
    fn an_override_that_breaks_git_is_refused() {
        let overrides = set(vec![reconfigure("c", vec![route("c", 90, "/a")], None)]);
        assert!(check_overlay(&overlay(&git(), &overrides, 100)).is_err());
    }
}
