//! `capstan status --all-replicas`: asks every task of a Swarm service for
//! its status, through `tasks.<service>` (Docker's embedded DNS answers it
//! in containers attached to the service's networks).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use capstan::reconcile::Status;
use capstan::replicas::{ReplicaAnswer, Replicas};

use super::client::{Credentials, STATUS_HEALTHY, STATUS_UNHEALTHY, block_on, get_json_within};

/// How long one replica has to answer before it is shown unreachable.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the capstan at `--url` has to say which service it belongs to.
const URL_TIMEOUT: Duration = Duration::from_secs(10);

/// Exits 0 when every replica answered, is healthy and serves the same
/// revision and config, 2 when not, 1 when the replicas cannot be found.
pub fn status(url: &str, service: Option<String>, json: bool) -> Result<ExitCode> {
    let replicas = block_on(ask_replicas(url, service))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&replicas.json())?);
    } else {
        print!("{}", replicas.text());
    }
    Ok(ExitCode::from(if replicas.all_in_sync() {
        STATUS_HEALTHY
    } else {
        STATUS_UNHEALTHY
    }))
}

async fn ask_replicas(url: &str, service: Option<String>) -> Result<Replicas> {
    let base = reqwest::Url::parse(url).with_context(|| format!("--url {url}"))?;
    let port = base
        .port_or_known_default()
        .with_context(|| format!("--url {url} has no port"))?;
    let service = match service {
        Some(service) => service,
        None => own_service(url).await?,
    };
    let name = format!("tasks.{service}");
    let addresses: BTreeSet<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
        .await
        .with_context(|| {
            format!("resolving {name} (Docker's DNS answers it only inside a container on the service's network)")
        })?
        .collect();
    if addresses.is_empty() {
        bail!("{name} resolves to no address: no task of {service} runs");
    }
    let mut asked = tokio::task::JoinSet::new();
    for address in addresses {
        let url = format!("{}://{address}/v1/status", base.scheme());
        asked.spawn(async move {
            ReplicaAnswer {
                address: address.to_string(),
                status: replica_status(&url).await.map_err(|e| format!("{e:#}")),
            }
        });
    }
    let answers = asked.join_all().await;
    let wanted = tasks_wanted(&service).await;
    Ok(Replicas::new(service, answers, wanted))
}

/// How many tasks of `service` Swarm wants running, if the Engine answers
/// (a replica has its socket mounted).
async fn tasks_wanted(service: &str) -> Option<usize> {
    let swarm = capstan::sources::swarm::Swarm::connect().await.ok()?;
    swarm.tasks_wanted(service).await.ok()
}

/// The service of the capstan at `url`, as its status names it.
async fn own_service(url: &str) -> Result<String> {
    let status_url = format!("{}/v1/status", url.trim_end_matches('/'));
    let body = get_json_within(&status_url, &Credentials::default(), URL_TIMEOUT).await?;
    let status: Status =
        serde_json::from_value(body).with_context(|| format!("{status_url}: not a status"))?;
    match status.replica {
        Some(task) => Ok(task.service_name),
        None => bail!(
            "this capstan is not a Swarm task: --all-replicas needs the capstan at {url} to run as a task of a Swarm service (with the Docker socket mounted, so that it knows its service), or the service named with --service"
        ),
    }
}

async fn replica_status(url: &str) -> Result<Status> {
    let body = get_json_within(url, &Credentials::default(), REPLICA_TIMEOUT).await?;
    serde_json::from_value(body).with_context(|| format!("{url}: not a status"))
}
