//! Overrides: imperative changes (the Docker-Flow-Proxy-compatible API) laid
//! over git's desired state. They are persisted, listed as drift, and never
//! silently lost or silently winning:
//!
//! - a *reconfigure* override's routes replace git's routes with the same id
//!   (`<name or service>:<port>`) and add the others;
//! - a *remove* override hides every git route of its service;
//! - an override expires at its deadline, or is dropped once git declares
//!   exactly what it says (it is then *redundant*).
//!
//! `merge` is a pure function; `OverrideStore` persists the set atomically.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Name, Route, RoutesFile, User};
use crate::state::write_atomic;

/// What an override does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Serve these routes for the service (replacing git's routes of the same ids).
    Reconfigure {
        routes: Vec<Route>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        userlists: BTreeMap<Name, Vec<User>>,
    },
    /// Stop serving the service's git routes.
    Remove,
}

/// One override of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub service: String,
    #[serde(flatten)]
    pub action: Action,
    /// RFC 3339.
    pub created_at: String,
    /// Unix seconds after which the override no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl Override {
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|deadline| now >= deadline)
    }
}

/// Every override, one per service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverrideSet {
    pub overrides: BTreeMap<String, Override>,
}

/// One change to the override set, as the API submits it.
#[derive(Debug, Clone, PartialEq)]
pub enum OverrideChange {
    /// Set a service's override (replacing any previous one).
    Put(Override),
    /// Delete a service's override.
    Delete(String),
}

impl OverrideChange {
    /// The service the change is about.
    pub fn service(&self) -> &str {
        match self {
            OverrideChange::Put(o) => &o.service,
            OverrideChange::Delete(service) => service,
        }
    }

    pub fn apply(&self, set: &mut OverrideSet) {
        match self {
            OverrideChange::Put(o) => {
                set.overrides.insert(o.service.clone(), o.clone());
            }
            OverrideChange::Delete(service) => {
                set.overrides.remove(service);
            }
        }
    }
}

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

/// `overrides.json` in the state directory.
#[derive(Debug, Clone)]
pub struct OverrideStore {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a capstan overrides file: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl OverrideStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("overrides.json"),
        }
    }

    pub fn load(&self) -> Result<OverrideSet, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(OverrideSet::default()),
            Err(source) => Err(StoreError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Written atomically: a crash leaves the old set or the new one.
    pub fn save(&self, set: &OverrideSet) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(set).expect("overrides serialize");
        write_atomic(&self.path, &bytes).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// The routes of reconfigure overrides as a routes.yaml fragment, so that an
/// operator can commit them and close the loop back to git.
pub fn export(set: &OverrideSet) -> String {
    let mut routes: Vec<&Route> = Vec::new();
    let mut userlists: BTreeMap<&Name, &Vec<User>> = BTreeMap::new();
    let mut removed = Vec::new();
    for o in set.overrides.values() {
        match &o.action {
            Action::Reconfigure {
                routes: r,
                userlists: u,
            } => {
                routes.extend(r);
                userlists.extend(u);
            }
            Action::Remove => removed.push(o.service.as_str()),
        }
    }
    let mut out = String::from("# Overrides exported by capstan: merge these into routes.yaml.\n");
    for service in removed {
        out.push_str(&format!("# remove every route of service `{service}`\n"));
    }
    if !userlists.is_empty() {
        out.push_str(
            &serde_saphyr::to_string(&BTreeMap::from([("userlists", &userlists)]))
                .expect("userlists serialize"),
        );
    }
    if !routes.is_empty() {
        out.push_str(
            &serde_saphyr::to_string(&BTreeMap::from([("routes", &routes)]))
                .expect("routes serialize"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UrlPath;

    fn route(service: &str, port: u16, path: &str) -> Route {
        Route {
            paths: vec![UrlPath(path.into())],
            ..Route::new(service, port)
        }
    }

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

    fn reconfigure(service: &str, routes: Vec<Route>, expires_at: Option<u64>) -> Override {
        Override {
            service: service.into(),
            action: Action::Reconfigure {
                routes,
                userlists: BTreeMap::new(),
            },
            created_at: "2026-11-25T00:00:00Z".into(),
            expires_at,
        }
    }

    fn set(overrides: Vec<Override>) -> OverrideSet {
        OverrideSet {
            overrides: overrides
                .into_iter()
                .map(|o| (o.service.clone(), o))
                .collect(),
        }
    }

    fn ids(file: &RoutesFile) -> Vec<String> {
        let mut ids: Vec<String> = file.routes.iter().map(|r| r.id().0).collect();
        ids.sort();
        ids
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
    fn export_is_a_valid_routes_fragment() {
        let text = export(&set(vec![reconfigure(
            "c",
            vec![route("c", 90, "/c")],
            None,
        )]));
        let fragment = text.replace(
            "# Overrides exported by capstan: merge these into routes.yaml.\n",
            "",
        );
        let routes =
            crate::model::validate::load("export", &format!("version: 1\n{fragment}")).unwrap();
        assert_eq!(ids(&routes), ["c:90"]);
    }

    #[test]
    fn the_store_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = OverrideStore::new(dir.path());
        assert_eq!(store.load().unwrap(), OverrideSet::default());
        let s = set(vec![reconfigure("c", vec![route("c", 90, "/c")], Some(5))]);
        store.save(&s).unwrap();
        assert_eq!(OverrideStore::new(dir.path()).load().unwrap(), s);
    }
}
