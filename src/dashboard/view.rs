//! The routes HAProxy serves, each with where it comes from and its
//! servers' live state: `GET /v1/routes` serves a [`RoutesView`] as JSON
//! and the dashboard renders the same value. Pure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::haproxy::admin::ServerStat;
use crate::model::{Endpoint, Route, RoutesFile, names};
use crate::sources::overrides::{Action, OverrideSet};
use crate::sources::swarm_snapshot::SwarmState;
use crate::sources::{RevisionInfo, Warning};

/// `GET /v1/routes`: every route of the applied table the filter lets
/// through, with HAProxy's state of its servers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoutesView {
    /// When HAProxy was asked, RFC 3339.
    pub at: String,
    /// The revision HAProxy serves; `None` before the first apply.
    pub revision: Option<RevisionInfo>,
    /// The text routes were filtered by (case-insensitive); empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Routes in the applied table, filtered or not.
    pub total: usize,
    /// The routes the filter lets through, in table order.
    pub routes: Vec<RouteView>,
    /// Why HAProxy's server state is missing, when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat_error: Option<String>,
}

/// One route and its servers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteView {
    /// The route's name: `name`, else its service.
    pub name: String,
    /// `<name>:<port>`, as status and overrides name routes.
    pub id: String,
    pub service: String,
    pub port: u16,
    /// `http`, `tcp` or `sni`.
    pub mode: String,
    /// The HAProxy backend, `go-demo-be8080`.
    pub backend: String,
    /// The spare backend serving it until the next reload, if one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    pub source: RouteSource,
    pub paths: Vec<String>,
    pub domains: Vec<String>,
    /// Why the route may not serve (a missing service, no running task, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The servers HAProxy has for it, unused slots left out.
    pub servers: Vec<ServerView>,
}

/// Where a route comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteSource {
    /// routes.yaml in git (or the file capstan reads).
    Git,
    /// An override made through the Docker-Flow-Proxy API.
    Override,
    /// A service's `com.df.*` labels.
    Label,
}

impl RouteSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteSource::Git => "git",
            RouteSource::Override => "override",
            RouteSource::Label => "label",
        }
    }
}

/// One server: HAProxy's `show stat` line, and the Swarm task behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerView {
    #[serde(flatten)]
    pub stat: ServerStat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRef>,
}

/// The Swarm task a server sends to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    pub id: String,
    /// The node id it runs on (empty before scheduling).
    pub node: String,
    /// That node's host name, when Swarm lists it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_hostname: String,
}

/// What a [`RoutesView`] is made of, as capstan keeps it.
pub struct RoutesInput<'a> {
    /// When HAProxy was asked, RFC 3339.
    pub at: String,
    /// The applied revision and table.
    pub applied: Option<&'a (RevisionInfo, RoutesFile)>,
    pub overrides: &'a OverrideSet,
    /// Route ids declared by labels (status `label_routes`).
    pub label_routes: &'a [String],
    /// Status warnings, naming a route id or a service.
    pub warnings: &'a [Warning],
    /// HAProxy's servers, or why they could not be read.
    pub stats: Result<&'a [ServerStat], String>,
    /// The last Swarm snapshot, when Swarm discovery is on.
    pub swarm: Option<&'a SwarmState>,
    /// Backend → the spare backend serving it until the next reload.
    pub lent_spares: &'a BTreeMap<String, String>,
}

/// The view of the routes whose text contains `filter` (ignoring case;
/// empty: every route).
pub fn routes_view(input: &RoutesInput, filter: &str) -> RoutesView {
    let mut by_backend: HashMap<&str, Vec<&ServerStat>> = HashMap::new();
    if let Ok(stats) = &input.stats {
        for stat in stats.iter() {
            by_backend.entry(&stat.backend).or_default().push(stat);
        }
    }
    let overridden: BTreeSet<String> = input
        .overrides
        .overrides
        .values()
        .filter_map(|o| match &o.action {
            Action::Reconfigure { routes, .. } => Some(routes),
            Action::Remove => None,
        })
        .flatten()
        .map(|r| r.id().0)
        .collect();
    let needle = filter.trim().to_lowercase();
    let table = input
        .applied
        .map(|(_, file)| &file.routes[..])
        .unwrap_or(&[]);
    let routes = table
        .iter()
        .map(|route| {
            let id = route.id().0;
            let source = if overridden.contains(&id) {
                RouteSource::Override
            } else if input.label_routes.contains(&id) {
                RouteSource::Label
            } else {
                RouteSource::Git
            };
            (route, id, source)
        })
        .map(|(route, id, source)| route_view(input, &by_backend, route, id, source))
        .filter(|view| needle.is_empty() || haystack(view).contains(&needle))
        .collect();
    RoutesView {
        at: input.at.clone(),
        revision: input.applied.map(|(revision, _)| revision.clone()),
        filter: filter.trim().to_string(),
        total: table.len(),
        routes,
        stat_error: input.stats.as_ref().err().cloned(),
    }
}

fn route_view(
    input: &RoutesInput,
    by_backend: &HashMap<&str, Vec<&ServerStat>>,
    route: &Route,
    id: String,
    source: RouteSource,
) -> RouteView {
    let backend = names::backend(route);
    let served_by = input.lent_spares.get(&backend).cloned();
    let rows = by_backend
        .get(served_by.as_deref().unwrap_or(&backend))
        .map_or(&[][..], Vec::as_slice);
    // Swarm tasks are servers only of routes that balance over tasks.
    let service = input
        .swarm
        .filter(|_| route.endpoint == Endpoint::Tasks && route.servers.is_empty())
        .map(|swarm| swarm.services.get(route.service.as_str()));
    let servers = rows
        .iter()
        .map(|stat| ServerView {
            stat: (*stat).clone(),
            task: service.flatten().and_then(|s| {
                let ip = ipv4(&stat.address)?;
                let task = s
                    .tasks
                    .iter()
                    .find(|t| t.addresses.iter().any(|(_, a)| *a == ip))?;
                Some(TaskRef {
                    id: task.id.clone(),
                    node: task.node_id.clone(),
                    node_hostname: input
                        .swarm
                        .and_then(|swarm| swarm.nodes.get(&task.node_id))
                        .cloned()
                        .unwrap_or_default(),
                })
            }),
        })
        .filter(|server| !unused_slot(server, service.is_some()))
        .collect();
    RouteView {
        name: route.key().as_str().to_string(),
        service: route.service.as_str().to_string(),
        port: route.port,
        mode: route.mode.as_str().to_string(),
        backend,
        served_by,
        source,
        paths: route.paths.iter().map(|p| p.0.clone()).collect(),
        domains: route.domains.iter().map(|d| d.0.clone()).collect(),
        warnings: input
            .warnings
            .iter()
            .filter(|w| w.route == id || w.route == route.service.as_str())
            .map(|w| w.message.clone())
            .collect(),
        id,
        servers,
    }
}

/// A server slot kept for scaling into, or a spare backend's: in
/// maintenance at the spare address, or, for a route over Swarm tasks, at
/// no task's address. (A server in maintenance because its name does not
/// resolve has no address either, and is listed: it says why it serves not.)
fn unused_slot(server: &ServerView, task_routed: bool) -> bool {
    let stat = &server.stat;
    stat.status.starts_with("MAINT")
        && (stat.address == crate::render::SPARE_SLOT || (task_routed && server.task.is_none()))
}

/// The IPv4 address of `ip:port`.
fn ipv4(address: &str) -> Option<Ipv4Addr> {
    address.rsplit_once(':')?.0.parse().ok()
}

/// The route's text the filter looks in, lower case: what its row shows.
fn haystack(view: &RouteView) -> String {
    let mut words = vec![
        view.name.as_str(),
        view.id.as_str(),
        view.backend.as_str(),
        view.source.as_str(),
        view.mode.as_str(),
    ];
    words.extend(view.served_by.as_deref());
    words.extend(view.paths.iter().map(String::as_str));
    words.extend(view.domains.iter().map(String::as_str));
    words.extend(view.warnings.iter().map(String::as_str));
    for server in &view.servers {
        words.extend([
            server.stat.server.as_str(),
            server.stat.status.as_str(),
            server.stat.address.as_str(),
        ]);
        if let Some(task) = &server.task {
            words.extend([task.id.as_str(), task.node.as_str(), &task.node_hostname]);
        }
    }
    words.join("\n").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Address, Domain, UrlPath};
    use crate::sources::overrides::Override;
    use crate::sources::swarm_snapshot::{
        EndpointMode, NetworkInfo, ServiceInfo, ServiceMode, TaskInfo,
    };

    fn stat(backend: &str, server: &str, status: &str, address: &str) -> ServerStat {
        ServerStat {
            backend: backend.into(),
            server: server.into(),
            status: status.into(),
            address: address.into(),
            scur: 0,
            rate: 0,
            lastchg: None,
            check_status: None,
            last_chk: None,
            weight: 1,
        }
    }

    fn table() -> (RevisionInfo, RoutesFile) {
        let mut web = Route::new("web", 80);
        web.paths = vec![UrlPath("/web".into())];
        web.domains = vec![Domain("example.com".into())];
        let mut fixed = Route::new("fixed", 8080);
        fixed.servers = vec![Address("10.1.0.1:8080".into())];
        let mut dfp = Route::new("dfp", 80);
        dfp.servers = vec![Address("10.1.0.2:80".into())];
        let revision = RevisionInfo {
            label: "main (1a2b3c4)".into(),
            commit: Some("1a2b3c4".into()),
            details: None,
        };
        let file = RoutesFile {
            routes: vec![web, fixed, dfp, Route::new("labelled", 3000)],
            ..RoutesFile::empty()
        };
        (revision, file)
    }

    fn swarm() -> SwarmState {
        let task = TaskInfo {
            id: "task1".into(),
            slot: Some(1),
            node_id: "node1".into(),
            state: "running".into(),
            desired_state: "running".into(),
            addresses: vec![("net".into(), Ipv4Addr::new(10, 0, 0, 3))],
        };
        let service = ServiceInfo {
            id: "s".into(),
            name: "web".into(),
            labels: BTreeMap::new(),
            mode: ServiceMode::Replicated { replicas: 1 },
            endpoint_mode: EndpointMode::Vip,
            networks: vec!["net".into()],
            tasks: vec![task],
        };
        let network = NetworkInfo {
            id: "net".into(),
            name: "proxy".into(),
            driver: "overlay".into(),
            scope: "swarm".into(),
        };
        SwarmState {
            services: BTreeMap::from([("web".to_string(), service)]),
            networks: BTreeMap::from([("net".to_string(), network)]),
            nodes: BTreeMap::from([("node1".to_string(), "manager-1".to_string())]),
        }
    }

    #[test]
    fn routes_carry_their_source_servers_tasks_and_warnings() {
        let applied = table();
        let overrides = OverrideSet {
            overrides: BTreeMap::from([(
                "dfp".to_string(),
                Override {
                    service: "dfp".into(),
                    action: Action::Reconfigure {
                        routes: vec![applied.1.routes[2].clone()],
                        userlists: BTreeMap::new(),
                    },
                    created_at: "2026-01-01T00:00:00Z".into(),
                    expires_at: None,
                },
            )]),
        };
        let stats = vec![
            stat("web-be80", "web-1", "UP", "10.0.0.3:80"),
            // Unused slots: never a task, or a task that went away.
            stat("web-be80", "web-2", "MAINT", "127.0.0.1:80"),
            stat("web-be80", "web-3", "MAINT", "10.0.0.9:80"),
            // A lent spare's unused slot, and one of its servers.
            stat("spare-1", "spare-1-1", "no check", "10.1.0.1:8080"),
            stat("spare-1", "spare-1-2", "MAINT", "127.0.0.1:1"),
            // A fixed server an operator put in maintenance stays listed,
            // and so does one whose name does not resolve.
            stat("dfp-be80", "dfp-1", "MAINT", "10.1.0.2:80"),
            stat("dfp-be80", "dfp", "MAINT (resolution)", ""),
            stat("spare-2", "spare-2-1", "MAINT", "127.0.0.1:1"),
        ];
        let swarm = swarm();
        let warnings = [Warning {
            route: "labelled:3000".into(),
            message: "service `labelled` has no running task".into(),
        }];
        let lent = BTreeMap::from([("fixed-be8080".to_string(), "spare-1".to_string())]);
        let input = RoutesInput {
            at: "2026-01-01T00:00:00Z".into(),
            applied: Some(&applied),
            overrides: &overrides,
            label_routes: &["labelled:3000".to_string()],
            warnings: &warnings,
            stats: Ok(&stats),
            swarm: Some(&swarm),
            lent_spares: &lent,
        };
        let view = routes_view(&input, "");
        let summary: Vec<(&str, &str, RouteSource, Vec<&str>)> = view
            .routes
            .iter()
            .map(|r| {
                let servers = r.servers.iter().map(|s| s.stat.server.as_str()).collect();
                (r.name.as_str(), r.backend.as_str(), r.source, servers)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("web", "web-be80", RouteSource::Git, vec!["web-1"]),
                ("fixed", "fixed-be8080", RouteSource::Git, vec!["spare-1-1"]),
                (
                    "dfp",
                    "dfp-be80",
                    RouteSource::Override,
                    vec!["dfp-1", "dfp"]
                ),
                ("labelled", "labelled-be3000", RouteSource::Label, vec![]),
            ]
        );
        let web = &view.routes[0];
        assert_eq!(
            web.servers[0].task,
            Some(TaskRef {
                id: "task1".into(),
                node: "node1".into(),
                node_hostname: "manager-1".into(),
            })
        );
        assert_eq!(view.routes[1].served_by.as_deref(), Some("spare-1"));
        assert_eq!(view.routes[3].warnings, [warnings[0].message.clone()]);
        assert_eq!(view.total, 4);

        // The filter looks at what a row shows, ignoring case.
        let names = |q: &str| -> Vec<String> {
            routes_view(&input, q)
                .routes
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names("EXAMPLE.com"), ["web"]);
        assert_eq!(names("node1"), ["web"]);
        assert_eq!(names("override"), ["dfp"]);
        assert_eq!(names("no running task"), ["labelled"]);
        assert!(names("nothing like this").is_empty());
        assert_eq!(routes_view(&input, "nothing").total, 4);
    }

    #[test]
    fn without_haproxy_state_routes_still_show_and_say_why() {
        let applied = table();
        let input = RoutesInput {
            at: String::new(),
            applied: Some(&applied),
            overrides: &OverrideSet::default(),
            label_routes: &[],
            warnings: &[],
            stats: Err("admin socket: connection refused".into()),
            swarm: None,
            lent_spares: &BTreeMap::new(),
        };
        let view = routes_view(&input, "");
        assert_eq!(view.routes.len(), 4);
        assert!(view.routes.iter().all(|r| r.servers.is_empty()));
        assert_eq!(
            view.stat_error.as_deref(),
            Some("admin socket: connection refused")
        );
    }
}
