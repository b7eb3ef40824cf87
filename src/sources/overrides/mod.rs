//! Overrides: imperative changes (the Docker-Flow-Proxy-compatible API) to
//! git's desired state, one per service. They are persisted, listed as
//! drift, and never silently lost or silently winning:
//!
//! - a *reconfigure* override's routes replace git's routes with the same id
//!   (`<name or service>:<port>`) and add the others;
//! - a *remove* override hides every git route of its service;
//! - an override expires at its deadline, or is dropped once git declares
//!   exactly what it says (it is then *redundant*).
//!
//! [`OverrideStore`] keeps the set: in the state directory for one
//! capstan, or in Swarm's replicated store for the replicas of a service
//! ([`swarm_store`]). Laying it over git is `desired::overlay::merge`.

mod store;
pub mod swarm_store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Name, Route, Userlist};

pub use store::{OverrideStore, StoreError};

/// What an override does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Serve these routes for the service (replacing git's routes of the same ids).
    Reconfigure {
        routes: Vec<Route>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        userlists: BTreeMap<Name, Userlist>,
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

/// The routes of reconfigure overrides as a routes.yaml fragment, so that an
/// operator can commit them and close the loop back to git.
pub fn export(set: &OverrideSet) -> String {
    let mut routes: Vec<&Route> = Vec::new();
    let mut userlists: BTreeMap<&Name, &Userlist> = BTreeMap::new();
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

/// Overrides for the tests of the stages that read them.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::model::{RoutesFile, UrlPath};

    pub fn route(service: &str, port: u16, path: &str) -> Route {
        Route {
            paths: vec![UrlPath(path.into())],
            ..Route::new(service, port)
        }
    }

    pub fn reconfigure(service: &str, routes: Vec<Route>, expires_at: Option<u64>) -> Override {
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

    pub fn set(overrides: Vec<Override>) -> OverrideSet {
        OverrideSet {
            overrides: overrides
                .into_iter()
                .map(|o| (o.service.clone(), o))
                .collect(),
        }
    }

    pub fn ids(file: &RoutesFile) -> Vec<String> {
        let mut ids: Vec<String> = file.routes.iter().map(|r| r.id().0).collect();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ids, reconfigure, route, set};
    use super::*;

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
}
