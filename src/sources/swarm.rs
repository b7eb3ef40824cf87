//! Docker Swarm as a source of backends: services, their tasks' addresses,
//! and Docker Flow Swarm Listener labels.
//!
//! [`Swarm`] talks to the Docker Engine through bollard (the local socket by
//! default; `DOCKER_HOST` is honoured as bollard does) and turns what it sees
//! into plain data: a [`SwarmState`] of services, tasks and networks.
//! Everything after that ([`running_addresses`], [`dfp_label_params`]) is pure
//! and works on that data alone.
//!
//! Facts the callers should know (measured on Docker 20.10, API 1.41):
//! - A task's addresses are the `NetworksAttachments` of `GET /tasks`, which
//!   the Engine returns but bollard's generated `Task` model omits, so the
//!   task list is read and decoded here (see [`Swarm::snapshot`]).
//! - Networks of a local-scope driver used by a service (a swarm-scoped
//!   `bridge` made with `--config-from`) are allocated by each node, not by
//!   the managers: their attachments carry no address here.
//! - A task IP on an overlay network is reachable only from inside that
//!   network (a container attached to it, or a process in such a
//!   container's network namespace), not from the host's own namespace.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{EndpointSpecModeEnum, EventMessage, EventMessageTypeEnum, Service};
use bollard::query_parameters::{EventsOptionsBuilder, ListNetworksOptions, ListServicesOptions};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;

/// How long one Docker API call may take before it fails (the event stream
/// is not bounded by it: only its response headers are).
const API_TIMEOUT_SECS: u64 = 30;
/// First and longest wait before the event stream is opened again.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A stream that lived this long resets the backoff when it ends.
const STREAM_HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// The label that opts a service in to Docker Flow Swarm Listener.
pub const DF_NOTIFY_LABEL: &str = "com.df.notify";
/// The prefix of every Docker Flow label.
pub const DF_LABEL_PREFIX: &str = "com.df.";
/// `com.df.shortName=true` strips the stack prefix from `serviceName`.
pub const DF_SHORT_NAME_LABEL: &str = "com.df.shortName";
/// The label `docker stack deploy` puts on every service of a stack.
pub const STACK_NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// What can go wrong talking to the Docker Engine.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// No client could be made for the configured endpoint (`DOCKER_HOST`
    /// malformed, unsupported scheme, ...).
    #[error("cannot use the Docker endpoint: {0}")]
    Client(#[source] bollard::errors::Error),
    /// The Engine did not answer, or refused a request.
    #[error("Docker Engine {what}: {source}")]
    Api {
        /// The request that failed, e.g. `list services`.
        what: &'static str,
        /// What bollard reported.
        source: bollard::errors::Error,
    },
    /// The Engine answered something that is not what its API describes.
    #[error("Docker Engine {what}: unreadable answer: {source}")]
    Decode {
        /// The request whose answer could not be read.
        what: &'static str,
        /// What serde reported.
        source: serde_json::Error,
    },
}

/// A connection to one Docker Engine (a Swarm manager, for [`snapshot`]).
///
/// [`snapshot`]: Swarm::snapshot
#[derive(Debug, Clone)]
pub struct Swarm {
    docker: Docker,
    /// The same connection, with `GET /_ping` redirected to `GET /tasks`: the
    /// only way through bollard's transport to read the task list as raw JSON
    /// (bollard's `Task` model drops `NetworksAttachments`).
    raw_tasks: Docker,
}

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

impl Swarm {
    /// Connects to the Engine named by `DOCKER_HOST` (the local socket when
    /// unset), agrees on an API version with it (older Engines refuse
    /// bollard's newest), and checks that it answers.
    pub async fn connect() -> Result<Self, SwarmError> {
        let docker = Docker::connect_with_defaults()
            .map_err(SwarmError::Client)?
            .with_timeout(Duration::from_secs(API_TIMEOUT_SECS))
            .negotiate_version()
            .await
            .map_err(|source| SwarmError::Api {
                what: "version negotiation",
                source,
            })?;
        let raw_tasks = docker.clone().with_request_modifier(|mut request| {
            let uri = request.uri();
            if let Some(prefix) = uri.path().strip_suffix("/_ping") {
                let mut parts = uri.clone().into_parts();
                if let Ok(path) = format!("{prefix}/tasks").parse() {
                    parts.path_and_query = Some(path);
                    if let Ok(uri) = parts.try_into() {
                        *request.uri_mut() = uri;
                    }
                }
            }
            request
        });
        Ok(Swarm { docker, raw_tasks })
    }

    /// Reads every service, task and network.
    ///
    /// Fails on a node that is not a Swarm manager (the Engine refuses to
    /// list services there).
    pub async fn snapshot(&self) -> Result<SwarmState, SwarmError> {
        let (services, tasks, networks) = tokio::try_join!(
            async {
                self.docker
                    .list_services(None::<ListServicesOptions>)
                    .await
                    .map_err(|source| SwarmError::Api {
                        what: "list services",
                        source,
                    })
            },
            self.raw_task_list(),
            async {
                self.docker
                    .list_networks(None::<ListNetworksOptions>)
                    .await
                    .map_err(|source| SwarmError::Api {
                        what: "list networks",
                        source,
                    })
            },
        )?;
        let tasks: Vec<RawTask> =
            serde_json::from_str(&tasks).map_err(|source| SwarmError::Decode {
                what: "list tasks",
                source,
            })?;
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
        Ok(SwarmState {
            services: build_services(services, tasks),
            networks,
        })
    }

    /// `GET /tasks`, undecoded (see the `raw_tasks` field).
    async fn raw_task_list(&self) -> Result<String, SwarmError> {
        self.raw_tasks
            .ping()
            .await
            .map_err(|source| SwarmError::Api {
                what: "list tasks",
                source,
            })
    }

    /// Sends a wake-up on `tx` for every Docker event that can change a
    /// [`SwarmState`]: services created, updated (scaled, relabelled, ...) or
    /// removed; task containers started, stopped, dying or changing health;
    /// networks and nodes changing. Returns once `tx`'s receiver is dropped.
    ///
    /// Wake-ups coalesce: when one is already waiting in the channel, no
    /// second one is queued. If the event stream fails or ends it is opened
    /// again with a backoff (0.5 s doubling to 30 s), and a wake-up is sent
    /// for the events that may have been missed meanwhile.
    ///
    /// Events are a hint, not a record: an Engine reports container events
    /// only for its own node, so a task starting on another node shows up
    /// as no event at all (only the service update that caused it does, and
    /// before the task runs). Callers therefore also take a fresh
    /// [`snapshot`](Swarm::snapshot) periodically, and again a few seconds
    /// after a wake-up.
    pub async fn watch(&self, tx: mpsc::Sender<()>) {
        let filters: HashMap<&str, Vec<&str>> =
            HashMap::from([("type", vec!["service", "container", "network", "node"])]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let mut backoff = BACKOFF_MIN;
        loop {
            let opened = Instant::now();
            let mut events = self.docker.events(Some(options.clone()));
            loop {
                let next = tokio::select! {
                    next = events.next() => next,
                    () = tx.closed() => return,
                };
                match next {
                    Some(Ok(event)) => {
                        backoff = BACKOFF_MIN;
                        if is_relevant(&event) && !wake(&tx) {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "docker event stream failed");
                        break;
                    }
                    None => {
                        tracing::warn!("docker event stream ended");
                        break;
                    }
                }
            }
            if opened.elapsed() >= STREAM_HEALTHY_AFTER {
                backoff = BACKOFF_MIN;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = tx.closed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            if !wake(&tx) {
                return;
            }
        }
    }
}

/// Queues a wake-up unless one is already queued; `false` once nobody listens.
fn wake(tx: &mpsc::Sender<()>) -> bool {
    !matches!(tx.try_send(()), Err(mpsc::error::TrySendError::Closed(())))
}

/// Whether an event can change what [`Swarm::snapshot`] returns.
fn is_relevant(event: &EventMessage) -> bool {
    let action = event.action.as_deref().unwrap_or("");
    match event.typ {
        Some(EventMessageTypeEnum::SERVICE | EventMessageTypeEnum::NODE) => true,
        Some(EventMessageTypeEnum::NETWORK) => {
            matches!(action, "create" | "update" | "remove" | "destroy")
        }
        Some(EventMessageTypeEnum::CONTAINER) => {
            let is_task = event
                .actor
                .as_ref()
                .and_then(|a| a.attributes.as_ref())
                .is_some_and(|attrs| attrs.contains_key("com.docker.swarm.task.id"));
            is_task
                && (matches!(
                    action,
                    "create"
                        | "start"
                        | "die"
                        | "stop"
                        | "kill"
                        | "destroy"
                        | "oom"
                        | "pause"
                        | "unpause"
                ) || action.starts_with("health_status"))
        }
        _ => false,
    }
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

/// The Docker Flow Proxy `reconfigure` parameters that Docker Flow Swarm
/// Listener would send for this service, or `None` when it is not labelled
/// `com.df.notify=true`.
///
/// Every other `com.df.<param>=<value>` label becomes `(param, value)` (in
/// label order), after `("serviceName", <name>)`: the service name, without
/// its `<stack>_` prefix when `com.df.shortName=true` (the stack being the
/// `com.docker.stack.namespace` label). A `com.df.serviceName` label
/// replaces that computed name, as with DFSL. `shortName` itself is passed
/// on like any other label (DFP ignores it). DFSL also sent `replicas` and
/// `distribute=true`; those describe DFP's own deployment and are not
/// produced.
pub fn dfp_label_params(service: &ServiceInfo) -> Option<Vec<(String, String)>> {
    if service.labels.get(DF_NOTIFY_LABEL).map(String::as_str) != Some("true") {
        return None;
    }
    let params: Vec<(String, String)> = service
        .labels
        .iter()
        .filter(|(key, _)| key.as_str() != DF_NOTIFY_LABEL)
        .filter_map(|(key, value)| {
            let param = key.strip_prefix(DF_LABEL_PREFIX)?;
            (!param.is_empty()).then(|| (param.to_string(), value.clone()))
        })
        .collect();
    let mut out = Vec::with_capacity(params.len() + 1);
    if !params.iter().any(|(param, _)| param == "serviceName") {
        out.push(("serviceName".to_string(), dfp_service_name(service)));
    }
    out.extend(params);
    Some(out)
}

/// The service's name for DFP: see [`dfp_label_params`].
fn dfp_service_name(service: &ServiceInfo) -> String {
    let short = service.labels.get(DF_SHORT_NAME_LABEL).map(String::as_str) == Some("true");
    let stack = service.labels.get(STACK_NAMESPACE_LABEL);
    match stack {
        Some(stack) if short && !stack.is_empty() => service
            .name
            .strip_prefix(stack.as_str())
            .and_then(|rest| rest.strip_prefix('_'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(&service.name)
            .to_string(),
        _ => service.name.clone(),
    }
}

impl SwarmState {
    /// The network called `name`, if the Engine knows exactly one by that
    /// name (names are not unique across scopes: then use ids).
    pub fn network_by_name(&self, name: &str) -> Option<&NetworkInfo> {
        let mut found = self.networks.values().filter(|n| n.name == name);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, slot: u64, state: &str, desired: &str, addrs: &[(&str, &str)]) -> TaskInfo {
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

    fn service(name: &str, labels: &[(&str, &str)], tasks: Vec<TaskInfo>) -> ServiceInfo {
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

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

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
    fn dfp_params_need_the_notify_label() {
        assert_eq!(dfp_label_params(&service("web", &[], vec![])), None);
        let off = service(
            "web",
            &[("com.df.notify", "false"), ("com.df.port", "80")],
            vec![],
        );
        assert_eq!(dfp_label_params(&off), None);
    }

    #[test]
    fn dfp_params_are_the_com_df_labels_after_the_service_name() {
        let svc = service(
            "go-demo",
            &[
                ("com.df.notify", "true"),
                ("com.df.servicePath", "/demo"),
                ("com.df.port", "8080"),
                ("com.df.serviceDomain", "x.com"),
                ("com.df.", "ignored"),
                ("com.docker.stack.namespace", "shop"),
                ("traefik.enable", "true"),
            ],
            vec![],
        );
        assert_eq!(
            dfp_label_params(&svc),
            Some(pairs(&[
                ("serviceName", "go-demo"),
                ("port", "8080"),
                ("serviceDomain", "x.com"),
                ("servicePath", "/demo"),
            ]))
        );
    }

    #[test]
    fn dfp_short_name_strips_the_stack_prefix() {
        let labels = [
            ("com.df.notify", "true"),
            ("com.df.shortName", "true"),
            ("com.df.port", "8080"),
            ("com.docker.stack.namespace", "shop"),
        ];
        let params = dfp_label_params(&service("shop_go-demo", &labels, vec![])).unwrap();
        assert_eq!(
            params[0],
            ("serviceName".to_string(), "go-demo".to_string())
        );
        assert!(params.contains(&("shortName".to_string(), "true".to_string())));
        // not the stack's prefix: kept whole
        let other = dfp_label_params(&service("shopping_go-demo", &labels, vec![])).unwrap();
        assert_eq!(other[0].1, "shopping_go-demo");
        // shortName without a stack, or not "true": the full name
        let no_stack = dfp_label_params(&service(
            "shop_go-demo",
            &[("com.df.notify", "true"), ("com.df.shortName", "true")],
            vec![],
        ))
        .unwrap();
        assert_eq!(no_stack[0].1, "shop_go-demo");
        let long = dfp_label_params(&service(
            "shop_go-demo",
            &[
                ("com.df.notify", "true"),
                ("com.df.shortName", "false"),
                ("com.docker.stack.namespace", "shop"),
            ],
            vec![],
        ))
        .unwrap();
        assert_eq!(long[0].1, "shop_go-demo");
    }

    #[test]
    fn dfp_service_name_label_overrides_the_computed_name() {
        let svc = service(
            "shop_go-demo",
            &[("com.df.notify", "true"), ("com.df.serviceName", "demo")],
            vec![],
        );
        assert_eq!(
            dfp_label_params(&svc),
            Some(pairs(&[("serviceName", "demo")]))
        );
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

    #[test]
    fn only_state_changing_events_are_relevant() {
        let event = |typ, action: &str, attrs: &[(&str, &str)]| EventMessage {
            typ: Some(typ),
            action: Some(action.to_string()),
            actor: Some(bollard::models::EventActor {
                id: Some("x".to_string()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        };
        let task = [("com.docker.swarm.task.id", "t1")];
        assert!(is_relevant(&event(
            EventMessageTypeEnum::SERVICE,
            "update",
            &[]
        )));
        assert!(is_relevant(&event(
            EventMessageTypeEnum::CONTAINER,
            "start",
            &task
        )));
        assert!(is_relevant(&event(
            EventMessageTypeEnum::CONTAINER,
            "health_status: healthy",
            &task
        )));
        assert!(!is_relevant(&event(
            EventMessageTypeEnum::CONTAINER,
            "start",
            &[]
        )));
        assert!(!is_relevant(&event(
            EventMessageTypeEnum::CONTAINER,
            "exec_start: sh",
            &task
        )));
        assert!(is_relevant(&event(
            EventMessageTypeEnum::NETWORK,
            "create",
            &[]
        )));
        assert!(!is_relevant(&event(
            EventMessageTypeEnum::NETWORK,
            "connect",
            &[]
        )));
        assert!(!is_relevant(&event(
            EventMessageTypeEnum::IMAGE,
            "pull",
            &[]
        )));
    }

    #[test]
    fn network_by_name_needs_a_unique_name() {
        let net = |id: &str, name: &str, scope: &str| {
            (
                id.to_string(),
                NetworkInfo {
                    id: id.to_string(),
                    name: name.to_string(),
                    driver: "overlay".to_string(),
                    scope: scope.to_string(),
                },
            )
        };
        let state = SwarmState {
            services: BTreeMap::new(),
            networks: BTreeMap::from([
                net("a", "proxy", "swarm"),
                net("b", "dup", "swarm"),
                net("c", "dup", "local"),
            ]),
        };
        assert_eq!(
            state.network_by_name("proxy").map(|n| n.id.as_str()),
            Some("a")
        );
        assert_eq!(state.network_by_name("dup"), None);
        assert_eq!(state.network_by_name("none"), None);
    }
}
