//! A Swarm snapshot as plain data, decoded from the Docker Engine's answers:
//! services, their tasks and networks ([`SwarmState`]), and the addresses
//! to route to ([`running_addresses`]). Pure: [`super::swarm`] does the I/O.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use bollard::models::{EndpointSpecModeEnum, Network, Node, Service};
use serde::Deserialize;

/// Everything capstan reads from a Swarm at one moment.
///
/// The three lists are read by three requests, so a change that lands
/// between them can show up half applied; the next snapshot sees it whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwarmState {
    /// Services by name.
    pub services: BTreeMap<String, ServiceInfo>,
    /// Networks by id.
    pub networks: BTreeMap<String, NetworkInfo>,
    /// Node host names by node id, for saying where a task runs.
    pub nodes: BTreeMap<String, String>,
}

/// One Swarm service and its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The service id.
    pub id: String,
    /// The service name (`<stack>_<name>` for stack services).
    pub name: String,
    /// The service's labels (not its containers').
    pub labels: BTreeMap<String, String>,
    /// How many tasks Swarm keeps running.
    pub mode: ServiceMode,
    /// How other containers on its networks find it.
    pub endpoint_mode: EndpointMode,
    /// Ids of the networks the service's tasks attach to.
    pub networks: Vec<String>,
    /// Its tasks, old ones included (Swarm keeps a few per slot), by id.
    pub tasks: Vec<TaskInfo>,
}

/// A service's scheduling mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceMode {
    /// A fixed number of tasks.
    Replicated {
        /// The desired number of tasks.
        replicas: u64,
    },
    /// One task on every eligible node.
    Global,
    /// A replicated or global job: tasks run to completion, never a backend.
    Job,
}

/// How a service is found on its networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointMode {
    /// One virtual IP balanced by IPVS (Swarm's default). Needs the kernel's
    /// IPVS, which some hosts lack: then the VIP accepts nothing.
    Vip,
    /// DNS round robin: the service name resolves to every task's IP.
    Dnsrr,
}

/// One task of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task id.
    pub id: String,
    /// Its slot (1..=replicas) in a replicated service; `None` for global
    /// services, whose tasks are told apart by node.
    pub slot: Option<u64>,
    /// The node it is scheduled on (empty before scheduling).
    pub node_id: String,
    /// Its observed state: `new`, `pending`, `assigned`, `preparing`,
    /// `starting`, `running`, `complete`, `shutdown`, `failed`, `rejected`,
    /// `orphaned`, ...
    pub state: String,
    /// The state Swarm wants it in: `running`, or `shutdown` / `remove` once
    /// it is being replaced, scaled away or its service removed.
    pub desired_state: String,
    /// Its IPv4 addresses: `(network id, address)`, in attachment order.
    pub addresses: Vec<(String, Ipv4Addr)>,
}

/// One network the Engine knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// The network id.
    pub id: String,
    /// The network name.
    pub name: String,
    /// Its driver: `overlay`, `bridge`, `host`, `null`, ...
    pub driver: String,
    /// `swarm` or `local`.
    pub scope: String,
}

/// A task address to send traffic to, from [`running_addresses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskAddress {
    /// The task id.
    pub task_id: String,
    /// The task's slot (`None` for global services).
    pub slot: Option<u64>,
    /// Its IPv4 address on one of the requested networks.
    pub ip: Ipv4Addr,
    /// The task still runs but Swarm is stopping it (scaled down, updated,
    /// or its node drained): finish its connections, send it no new ones.
    pub draining: bool,
}

/// The snapshot from the Engine's answers to `GET /services`, `GET /tasks`
/// (raw JSON: bollard's `Task` model drops `NetworksAttachments`) and
/// `GET /networks`.
pub(super) fn decode(
    services: Vec<Service>,
    tasks: &str,
    networks: Vec<Network>,
    nodes: Vec<Node>,
) -> Result<SwarmState, serde_json::Error> {
    let tasks: Vec<RawTask> = serde_json::from_str(tasks)?;
    let networks = networks
        .into_iter()
        .filter_map(|n| {
            let id = n.id?;
            Some((
                id.clone(),
                NetworkInfo {
                    id,
                    name: n.name.unwrap_or_default(),
                    driver: n.driver.unwrap_or_default(),
                    scope: n.scope.unwrap_or_default(),
                },
            ))
        })
        .collect();
    let nodes = nodes
        .into_iter()
        .filter_map(|n| Some((n.id?, n.description?.hostname?)))
        .collect();
    Ok(SwarmState {
        services: build_services(services, tasks),
        networks,
        nodes,
    })
}

/// A task as `GET /tasks` returns it: only the fields read here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "ServiceID", default)]
    service_id: String,
    #[serde(default)]
    slot: Option<u64>,
    #[serde(rename = "NodeID", default)]
    node_id: Option<String>,
    #[serde(default)]
    status: Option<RawTaskStatus>,
    #[serde(default)]
    desired_state: Option<String>,
    #[serde(default)]
    networks_attachments: Option<Vec<RawAttachment>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTaskStatus {
    #[serde(default)]
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawAttachment {
    #[serde(default)]
    network: Option<RawNetworkRef>,
    #[serde(default)]
    addresses: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct RawNetworkRef {
    #[serde(rename = "ID", default)]
    id: String,
}

/// Joins services and their tasks; tasks of no listed service are dropped.
fn build_services(services: Vec<Service>, tasks: Vec<RawTask>) -> BTreeMap<String, ServiceInfo> {
    let mut tasks_by_service: HashMap<String, Vec<TaskInfo>> = HashMap::new();
    for task in tasks {
        let service_id = task.service_id.clone();
        tasks_by_service
            .entry(service_id)
            .or_default()
            .push(task_info(task));
    }
    services
        .into_iter()
        .filter_map(|service| {
            let id = service.id?;
            let spec = service.spec.unwrap_or_default();
            let name = spec.name.clone().unwrap_or_else(|| id.clone());
            let mode = match spec.mode.unwrap_or_default() {
                m if m.global.is_some() => ServiceMode::Global,
                m if m.replicated_job.is_some() || m.global_job.is_some() => ServiceMode::Job,
                m => ServiceMode::Replicated {
                    replicas: m
                        .replicated
                        .and_then(|r| r.replicas)
                        .and_then(|r| u64::try_from(r).ok())
                        .unwrap_or(1),
                },
            };
            let endpoint_mode = spec
                .endpoint_spec
                .as_ref()
                .and_then(|e| e.mode)
                .or_else(|| service.endpoint.as_ref()?.spec.as_ref()?.mode);
            let endpoint_mode = match endpoint_mode {
                Some(EndpointSpecModeEnum::DNSRR) => EndpointMode::Dnsrr,
                _ => EndpointMode::Vip,
            };
            // `TaskTemplate.Networks` is where services keep their networks;
            // the top-level `Networks` is its deprecated predecessor.
            let networks = spec
                .task_template
                .as_ref()
                .and_then(|t| t.networks.clone())
                .or(spec.networks)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|n| n.target)
                .collect();
            let mut tasks = tasks_by_service.remove(&id).unwrap_or_default();
            tasks.sort_by(|a, b| a.id.cmp(&b.id));
            let info = ServiceInfo {
                id,
                name: name.clone(),
                labels: spec.labels.unwrap_or_default().into_iter().collect(),
                mode,
                endpoint_mode,
                networks,
                tasks,
            };
            Some((name, info))
        })
        .collect()
}

fn task_info(task: RawTask) -> TaskInfo {
    let addresses = task
        .networks_attachments
        .unwrap_or_default()
        .into_iter()
        .flat_map(|attachment| {
            let network = attachment.network.map(|n| n.id).unwrap_or_default();
            attachment
                .addresses
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |cidr| Some((network.clone(), parse_ipv4_cidr(&cidr)?)))
        })
        .collect();
    TaskInfo {
        id: task.id,
        slot: task.slot.filter(|&s| s != 0),
        node_id: task.node_id.unwrap_or_default(),
        state: task.status.and_then(|s| s.state).unwrap_or_default(),
        desired_state: task.desired_state.unwrap_or_default(),
        addresses,
    }
}

/// `10.0.1.4/24` (or a bare `10.0.1.4`) → `10.0.1.4`; IPv6 and junk → `None`.
fn parse_ipv4_cidr(cidr: &str) -> Option<Ipv4Addr> {
    cidr.split('/').next()?.parse().ok()
}

/// The addresses to route to: every address on one of `networks` (network
/// ids; an empty list selects nothing) of every task that is running, in
/// slot order, then task id, then address.
///
/// A task whose desired state is `running` is live; one still running while
/// Swarm wants it `shutdown` or `remove` is returned with `draining: true`.
/// Tasks not (yet, or any more) running are left out, whatever Swarm wants.
pub fn running_addresses(service: &ServiceInfo, networks: &[String]) -> Vec<TaskAddress> {
    let mut out: Vec<TaskAddress> = service
        .tasks
        .iter()
        .filter(|t| t.state == "running")
        .filter_map(|t| {
            let draining = match t.desired_state.as_str() {
                "running" => false,
                "shutdown" | "remove" => true,
                _ => return None,
            };
            Some(
                t.addresses
                    .iter()
                    .filter(|(network, _)| networks.contains(network))
                    .map(move |(_, ip)| TaskAddress {
                        task_id: t.id.clone(),
                        slot: t.slot,
                        ip: *ip,
                        draining,
                    }),
            )
        })
        .flatten()
        .collect();
    out.sort_by(|a, b| (a.slot, &a.task_id, a.ip).cmp(&(b.slot, &b.task_id, b.ip)));
    out.dedup();
    out
}

/// Snapshot parts for the tests of the stages that read snapshots.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn task(
        id: &str,
        slot: u64,
        state: &str,
        desired: &str,
        addrs: &[(&str, &str)],
    ) -> TaskInfo {
        TaskInfo {
            id: id.to_string(),
            slot: Some(slot),
            node_id: "node1".to_string(),
            state: state.to_string(),
            desired_state: desired.to_string(),
            addresses: addrs
                .iter()
                .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
                .collect(),
        }
    }

    pub fn service(name: &str, labels: &[(&str, &str)], tasks: Vec<TaskInfo>) -> ServiceInfo {
        ServiceInfo {
            id: format!("id-{name}"),
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mode: ServiceMode::Replicated { replicas: 3 },
            endpoint_mode: EndpointMode::Dnsrr,
            networks: vec!["net-a".to_string()],
            tasks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{service, task};
    use super::*;

    #[test]
    fn running_addresses_keeps_running_tasks_on_the_given_networks_in_slot_order() {
        let svc = service(
            "web",
            &[],
            vec![
                task("t3", 3, "running", "running", &[("net-a", "10.0.1.5")]),
                task(
                    "t1",
                    1,
                    "running",
                    "running",
                    &[("net-a", "10.0.1.3"), ("net-b", "10.0.2.3")],
                ),
                task("t2", 2, "starting", "running", &[("net-a", "10.0.1.4")]),
                task("t0", 1, "shutdown", "shutdown", &[("net-a", "10.0.1.2")]),
                task("t4", 4, "failed", "shutdown", &[("net-a", "10.0.1.6")]),
            ],
        );
        let got = running_addresses(&svc, &["net-a".to_string()]);
        let ips: Vec<(Option<u64>, &str, String)> = got
            .iter()
            .map(|a| (a.slot, a.task_id.as_str(), a.ip.to_string()))
            .collect();
        assert_eq!(
            ips,
            vec![
                (Some(1), "t1", "10.0.1.3".to_string()),
                (Some(3), "t3", "10.0.1.5".to_string()),
            ]
        );
        assert!(got.iter().all(|a| !a.draining));
        let both = running_addresses(&svc, &["net-b".to_string(), "net-a".to_string()]);
        assert_eq!(both.len(), 3);
        assert!(running_addresses(&svc, &[]).is_empty());
        assert!(running_addresses(&svc, &["net-c".to_string()]).is_empty());
    }

    #[test]
    fn running_addresses_marks_tasks_swarm_is_stopping_as_draining() {
        let svc = service(
            "web",
            &[],
            vec![
                task("b", 2, "running", "shutdown", &[("net-a", "10.0.1.4")]),
                task("a", 1, "running", "running", &[("net-a", "10.0.1.3")]),
                task("c", 3, "running", "remove", &[("net-a", "10.0.1.5")]),
                task("d", 4, "running", "accepted", &[("net-a", "10.0.1.6")]),
            ],
        );
        let got = running_addresses(&svc, &["net-a".to_string()]);
        let summary: Vec<(&str, bool)> = got
            .iter()
            .map(|a| (a.task_id.as_str(), a.draining))
            .collect();
        assert_eq!(summary, vec![("a", false), ("b", true), ("c", true)]);
    }

    #[test]
    fn running_addresses_orders_equal_slots_by_task_id_and_global_tasks_first() {
        let mut global = task("g2", 0, "running", "running", &[("n", "10.0.0.9")]);
        global.slot = None;
        let mut global2 = task("g1", 0, "running", "running", &[("n", "10.0.0.8")]);
        global2.slot = None;
        let svc = service(
            "x",
            &[],
            vec![
                task("z", 1, "running", "running", &[("n", "10.0.0.2")]),
                task("y", 1, "running", "shutdown", &[("n", "10.0.0.3")]),
                global,
                global2,
            ],
        );
        let order: Vec<String> = running_addresses(&svc, &["n".to_string()])
            .into_iter()
            .map(|a| a.task_id)
            .collect();
        assert_eq!(order, vec!["g1", "g2", "y", "z"]);
    }

    #[test]
    fn tasks_decode_from_the_engine_json_with_their_ipv4_addresses() {
        let json = r#"[
          {"ID":"t1","ServiceID":"s1","Slot":2,"NodeID":"n1",
           "Status":{"State":"running","Message":"started"},"DesiredState":"running",
           "NetworksAttachments":[
             {"Network":{"ID":"ov1","Spec":{"Name":"proxy"}},"Addresses":["10.0.1.4/24","fd00::4/64"]},
             {"Network":{"ID":"br1"}}
           ]},
          {"ID":"t0","ServiceID":"s1","NodeID":"n1","Status":{"State":"shutdown"},"DesiredState":"shutdown"},
          {"ID":"orphan","ServiceID":"gone","Status":{"State":"running"},"DesiredState":"running"}
        ]"#;
        let tasks: Vec<RawTask> = serde_json::from_str(json).unwrap();
        let service: Service = serde_json::from_str(
            r#"{"ID":"s1","Spec":{"Name":"web","Labels":{"a":"b"},
                "Mode":{"Replicated":{"Replicas":3}},
                "TaskTemplate":{"Networks":[{"Target":"ov1"}]},
                "EndpointSpec":{"Mode":"dnsrr"}}}"#,
        )
        .unwrap();
        let services = build_services(vec![service], tasks);
        let web = &services["web"];
        assert_eq!(web.id, "s1");
        assert_eq!(web.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(web.endpoint_mode, EndpointMode::Dnsrr);
        assert_eq!(web.networks, vec!["ov1".to_string()]);
        assert_eq!(web.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(web.tasks.len(), 2);
        assert_eq!(
            web.tasks[1],
            TaskInfo {
                id: "t1".to_string(),
                slot: Some(2),
                node_id: "n1".to_string(),
                state: "running".to_string(),
                desired_state: "running".to_string(),
                addresses: vec![("ov1".to_string(), Ipv4Addr::new(10, 0, 1, 4))],
            }
        );
        assert_eq!(web.tasks[0].slot, None);
        assert!(web.tasks[0].addresses.is_empty());
    }

    #[test]
    fn global_and_job_services_and_default_endpoint_mode() {
        let global: Service =
            serde_json::from_str(r#"{"ID":"g","Spec":{"Name":"agent","Mode":{"Global":{}}}}"#)
                .unwrap();
        let job: Service = serde_json::from_str(
            r#"{"ID":"j","Spec":{"Name":"migrate","Mode":{"ReplicatedJob":{"MaxConcurrent":1}}}}"#,
        )
        .unwrap();
        let services = build_services(vec![global, job], vec![]);
        assert_eq!(services["agent"].mode, ServiceMode::Global);
        assert_eq!(services["agent"].endpoint_mode, EndpointMode::Vip);
        assert_eq!(services["migrate"].mode, ServiceMode::Job);
    }

    #[test]
    fn ipv4_cidrs_parse_and_others_do_not() {
        assert_eq!(
            parse_ipv4_cidr("10.0.1.4/24"),
            Some(Ipv4Addr::new(10, 0, 1, 4))
        );
        assert_eq!(
            parse_ipv4_cidr("172.18.0.3"),
            Some(Ipv4Addr::new(172, 18, 0, 3))
        );
        assert_eq!(parse_ipv4_cidr("fd00::4/64"), None);
        assert_eq!(parse_ipv4_cidr(""), None);
    }
}
