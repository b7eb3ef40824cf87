//! Desired servers from what Swarm runs: each route's service's running
//! tasks, on the networks the proxy shares with it. Pure: a function of the
//! routes and a Swarm snapshot. Problems are warnings naming their route, and
//! a broken route only leaves its own backend without servers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::model::{Endpoint, RouteId, RoutesFile};
use crate::sources::Warning;
use crate::sources::swarm_snapshot::{SwarmState, running_addresses};

/// One task as a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskServer {
    /// Swarm's slot of the task (replicated services), which keeps it in the
    /// same server slot across scaling and updates.
    pub slot: Option<u64>,
    pub ip: Ipv4Addr,
    /// Swarm is stopping the task: no new connections, let current ones finish.
    pub draining: bool,
}

/// The task servers of every route routed to tasks.
pub type TaskServers = BTreeMap<RouteId, Vec<TaskServer>>;

/// Servers per route for `routes` in `swarm`. `proxy_networks` names the
/// networks the proxy is attached to; empty means every network of the
/// service but `ingress`.
pub fn resolve(
    routes: &RoutesFile,
    swarm: &SwarmState,
    proxy_networks: &[String],
) -> (TaskServers, Vec<Warning>) {
    let mut by_route = TaskServers::new();
    let mut warnings = Vec::new();
    for route in &routes.routes {
        if route.endpoint != Endpoint::Tasks || !route.servers.is_empty() {
            continue;
        }
        let id = route.id();
        let mut warn = |message: String| {
            warnings.push(Warning {
                route: id.0.clone(),
                message,
            })
        };
        let Some(service) = swarm.services.get(route.service.as_str()) else {
            warn(format!(
                "service `{}` does not exist in the Swarm",
                route.service
            ));
            by_route.insert(id.clone(), Vec::new());
            continue;
        };
        let shared: Vec<String> = service
            .networks
            .iter()
            .filter(|network| {
                let name = swarm.networks.get(*network).map_or("", |n| n.name.as_str());
                if proxy_networks.is_empty() {
                    name != "ingress"
                } else {
                    proxy_networks.iter().any(|p| p == name || p == *network)
                }
            })
            .cloned()
            .collect();
        if shared.is_empty() {
            warn(format!(
                "service `{}` is not attached to a network the proxy shares ({})",
                route.service,
                if proxy_networks.is_empty() {
                    "no network but ingress".to_string()
                } else {
                    proxy_networks.join(", ")
                }
            ));
        }
        let servers: Vec<TaskServer> = running_addresses(service, &shared)
            .into_iter()
            .map(|t| TaskServer {
                slot: t.slot,
                ip: t.ip,
                draining: t.draining,
            })
            .collect();
        if !shared.is_empty() && servers.iter().all(|s| s.draining) {
            warn(format!("service `{}` has no running task", route.service));
        }
        by_route.insert(id.clone(), servers);
    }
    (by_route, warnings)
}

/// Server slots a backend declares for `tasks` tasks: room to scale up to
/// the next power of two (at least 8) without a reload.
pub fn slots(tasks: usize) -> usize {
    tasks.next_power_of_two().max(8)
}

/// The backend's server slots, each with its task or empty. A task of
/// Swarm slot `k` takes server slot `k` (so that scaling and rolling
/// updates touch only the servers that change, and sticky cookies keep
/// their server); a draining task gives way to its slot's new task and
/// moves past the replicas, as do tasks without a slot (global services).
pub fn assign_slots(tasks: &[TaskServer]) -> Vec<Option<&TaskServer>> {
    let replicas = tasks
        .iter()
        .filter_map(|t| t.slot)
        .max()
        .map_or(0, |s| usize::try_from(s).unwrap_or(usize::MAX));
    let mut layout: Vec<Option<&TaskServer>> = vec![None; slots(replicas.max(tasks.len()))];
    let mut leftovers = Vec::new();
    let by_preference = tasks
        .iter()
        .filter(|t| !t.draining)
        .chain(tasks.iter().filter(|t| t.draining));
    for task in by_preference {
        let wanted = task
            .slot
            .and_then(|s| usize::try_from(s).ok())
            .filter(|s| (1..=layout.len()).contains(s));
        match wanted {
            Some(s) if layout[s - 1].is_none() => layout[s - 1] = Some(task),
            _ => leftovers.push(task),
        }
    }
    for task in leftovers {
        match layout.iter().skip(replicas).position(Option::is_none) {
            Some(free) => layout[replicas + free] = Some(task),
            None => {
                // Every slot taken: grow (the next reload declares more).
                let grown = slots(layout.len() + 1);
                layout.resize(grown, None);
                let free = layout
                    .iter()
                    .skip(replicas)
                    .position(Option::is_none)
                    .unwrap_or(0);
                layout[replicas + free] = Some(task);
            }
        }
    }
    layout
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Route, UrlPath};
    use crate::sources::swarm_snapshot::{
        EndpointMode, NetworkInfo, ServiceInfo, ServiceMode, TaskInfo,
    };

    fn network(id: &str, name: &str) -> (String, NetworkInfo) {
        (
            id.into(),
            NetworkInfo {
                id: id.into(),
                name: name.into(),
                driver: "overlay".into(),
                scope: "swarm".into(),
            },
        )
    }

    fn task(id: &str, slot: u64, state: &str, desired: &str, ip: [u8; 4]) -> TaskInfo {
        TaskInfo {
            id: id.into(),
            slot: Some(slot),
            node_id: "n".into(),
            state: state.into(),
            desired_state: desired.into(),
            addresses: vec![("net1".into(), Ipv4Addr::from(ip))],
        }
    }

    fn swarm(tasks: Vec<TaskInfo>) -> SwarmState {
        let service = ServiceInfo {
            id: "s".into(),
            name: "web".into(),
            labels: BTreeMap::new(),
            mode: ServiceMode::Replicated { replicas: 3 },
            endpoint_mode: EndpointMode::Dnsrr,
            networks: vec!["net1".into()],
            tasks,
        };
        SwarmState {
            services: BTreeMap::from([("web".to_string(), service)]),
            networks: BTreeMap::from([network("net1", "proxy"), network("ing", "ingress")]),
            nodes: BTreeMap::new(),
        }
    }

    fn table(services: &[&str]) -> RoutesFile {
        RoutesFile {
            routes: services
                .iter()
                .map(|s| Route {
                    paths: vec![UrlPath(format!("/{s}"))],
                    ..Route::new(s, 80)
                })
                .collect(),
            ..RoutesFile::empty()
        }
    }

    #[test]
    fn running_and_draining_tasks_become_servers() {
        let state = swarm(vec![
            task("a", 1, "running", "running", [10, 0, 0, 3]),
            task("b", 2, "running", "shutdown", [10, 0, 0, 4]),
            task("c", 3, "failed", "shutdown", [10, 0, 0, 5]),
        ]);
        let (endpoints, warnings) = resolve(&table(&["web"]), &state, &["proxy".into()]);
        let servers = &endpoints[&RouteId("web:80".into())];
        assert_eq!(servers, &[server(1, 3, false), server(2, 4, true),]);
        assert!(warnings.is_empty());
    }

    #[test]
    fn broken_routes_are_warnings_naming_the_route() {
        let state = swarm(vec![]);
        let (endpoints, warnings) = resolve(&table(&["web", "gone"]), &state, &["proxy".into()]);
        assert!(endpoints[&RouteId("gone:80".into())].is_empty());
        assert_eq!(warnings.len(), 2);
        assert_eq!(warnings[0].route, "web:80");
        assert!(
            warnings[0].message.contains("no running task"),
            "{warnings:?}"
        );
        assert_eq!(warnings[1].route, "gone:80");
        assert!(
            warnings[1].message.contains("does not exist"),
            "{warnings:?}"
        );
        let (_, warnings) = resolve(&table(&["web"]), &state, &["other".into()]);
        assert!(warnings[0].message.contains("not attached"), "{warnings:?}");
    }

    fn server(slot: u64, last: u8, draining: bool) -> TaskServer {
        TaskServer {
            slot: Some(slot),
            ip: Ipv4Addr::new(10, 0, 0, last),
            draining,
        }
    }

    #[test]
    fn tasks_keep_their_swarm_slot() {
        let tasks = [
            server(2, 2, false),
            server(1, 1, false),
            server(3, 3, false),
        ];
        let layout = assign_slots(&tasks);
        assert_eq!(layout.len(), 8);
        let ips: Vec<Option<u8>> = layout.iter().map(|t| t.map(|t| t.ip.octets()[3])).collect();
        assert_eq!(
            ips,
            [Some(1), Some(2), Some(3), None, None, None, None, None]
        );
        // Slot 2 replaced during an update: the new task takes slot 2, the
        // draining one moves past the replicas.
        let tasks = [
            server(1, 1, false),
            server(2, 2, true),
            server(2, 12, false),
            server(3, 3, false),
        ];
        let ips: Vec<Option<u8>> = assign_slots(&tasks)
            .iter()
            .map(|t| t.map(|t| t.ip.octets()[3]))
            .collect();
        assert_eq!(
            ips,
            [Some(1), Some(12), Some(3), Some(2), None, None, None, None]
        );
    }

    #[test]
    fn slots_leave_room_to_scale() {
        assert_eq!(slots(0), 8);
        assert_eq!(slots(3), 8);
        assert_eq!(slots(8), 8);
        assert_eq!(slots(9), 16);
    }
}
