//! Docker Swarm as a source of backends: the I/O half.
//!
//! [`Swarm`] talks to the Docker Engine through bollard (the local socket by
//! default; `DOCKER_HOST` is honoured as bollard does): it reads snapshots,
//! which [`super::swarm_snapshot`] decodes into a [`SwarmState`], and
//! watches the Engine's events. Everything after that is pure and works on
//! the snapshot alone ([`super::swarm_snapshot::running_addresses`],
//! [`super::labels`]).
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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{
    EventsOptionsBuilder, ListNetworksOptions, ListNodesOptions, ListServicesOptions,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::sources::swarm_snapshot::{self, SwarmState};
use crate::util::backoff;

/// How long one Docker API call may take before it fails (the event stream
/// is not bounded by it: only its response headers are).
const API_TIMEOUT_SECS: u64 = 30;
/// First and longest wait before the event stream is opened again.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A stream that lived this long resets the backoff when it ends.
const STREAM_HEALTHY_AFTER: Duration = Duration::from_secs(10);

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

impl SwarmError {
    /// The failure of the request `what`.
    pub(crate) fn api(what: &'static str) -> impl FnOnce(bollard::errors::Error) -> Self {
        move |source| Self::Api { what, source }
    }
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
            .map_err(SwarmError::api("version negotiation"))?;
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

    /// The Engine client, for the other sources that talk to Swarm.
    pub(crate) fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Reads every service, task and network.
    ///
    /// Fails on a node that is not a Swarm manager (the Engine refuses to
    /// list services there).
    pub async fn snapshot(&self) -> Result<SwarmState, SwarmError> {
        let (services, tasks, networks, nodes) = tokio::try_join!(
            async {
                self.docker
                    .list_services(None::<ListServicesOptions>)
                    .await
                    .map_err(SwarmError::api("list services"))
            },
            self.raw_task_list(),
            async {
                self.docker
                    .list_networks(None::<ListNetworksOptions>)
                    .await
                    .map_err(SwarmError::api("list networks"))
            },
            async {
                self.docker
                    .list_nodes(None::<ListNodesOptions>)
                    .await
                    .map_err(SwarmError::api("list nodes"))
            },
        )?;
        swarm_snapshot::decode(services, &tasks, networks, nodes).map_err(|source| {
            SwarmError::Decode {
                what: "list tasks",
                source,
            }
        })
    }

    /// `GET /tasks`, undecoded (see the `raw_tasks` field).
    async fn raw_task_list(&self) -> Result<String, SwarmError> {
        self.raw_tasks
            .ping()
            .await
            .map_err(SwarmError::api("list tasks"))
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
        self.watch_events(
            &["service", "container", "network", "node"],
            is_relevant,
            tx,
        )
        .await;
    }

    /// Sends a wake-up on `tx` for every event of `types` that `relevant`
    /// accepts, and once each time the stream is opened again (events may
    /// have been missed meanwhile), until `tx` is closed.
    pub async fn watch_events(
        &self,
        types: &[&str],
        relevant: fn(&EventMessage) -> bool,
        tx: mpsc::Sender<()>,
    ) {
        let filters: HashMap<&str, Vec<&str>> = HashMap::from([("type", types.to_vec())]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        // Reopenings since the stream last delivered an event or stayed up.
        let mut failures = 0;
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
                        failures = 0;
                        if relevant(&event) && !wake(&tx) {
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
                failures = 0;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff(failures, BACKOFF_MIN, BACKOFF_MAX)) => {}
                () = tx.closed() => return,
            }
            failures = failures.saturating_add(1);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
