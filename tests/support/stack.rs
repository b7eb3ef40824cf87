//! capstan's image on this machine's Swarm, for the tests and benches that
//! run it: building it (`scripts/build-image`), its services of replicas,
//! and reading each replica from inside the overlay.
//!
//! Include it with `swarm_rig` and `support` at the crate root:
//! `#[path = "support/stack.rs"] mod stack;`.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{GitRemote, free_port, wait_until};
use crate::swarm_rig::*;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test image, built once per test process around the capstan binary
/// cargo built for these tests (`scripts/build-image` skips the build when
/// the binary and Dockerfile did not change), under a tag of this checkout's
/// own (another checkout's tests may build theirs meanwhile); its tag.
pub fn build_image() -> &'static str {
    static BUILT: OnceLock<Result<String, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let mut hasher = std::hash::DefaultHasher::new();
        env!("CARGO_MANIFEST_DIR").hash(&mut hasher);
        let tag = format!("capstan-test:{:016x}", hasher.finish());
        build_image_as(&tag, &["--debug"]).map(|()| tag)
    });
    match built {
        Ok(tag) => tag,
        Err(e) => panic!("{e}"),
    }
}

/// Runs `scripts/build-image args` for `image`, in the target directory of
/// the binary cargo built for this test or bench.
pub fn build_image_as(image: &str, args: &[&str]) -> Result<(), String> {
    setup();
    let binary = Path::new(env!("CARGO_BIN_EXE_capstan"));
    let target_dir = binary
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/capstan");
    let started = Instant::now();
    let out = Command::new(repo().join("scripts/build-image"))
        .args(args)
        .env("CAPSTAN_IMAGE", image)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .map_err(|e| format!("cannot run scripts/build-image: {e}"))?;
    eprintln!(
        "build-image {image} ({:?}): {}{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status
        .success()
        .then_some(())
        .ok_or_else(|| format!("scripts/build-image failed: {}", out.status))
}

/// The group id of the Docker socket: the proxy's tasks run with it.
pub fn docker_gid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/var/run/docker.sock")
        .expect("the Docker socket")
        .gid()
        .to_string()
}

/// A git remote the proxy's tasks fetch from: `git daemon` on this host,
/// which containers reach at the host's `docker_gwbridge` address (a
/// `file://` remote bind-mounted into a task is refused by libgit2: it
/// belongs to another user than the task's).
pub struct TaskRemote {
    pub remote: GitRemote,
    /// `git://<gateway>:<port>/remote.git`.
    pub url: String,
    _daemon: KillOnDrop,
}

impl TaskRemote {
    /// A remote holding `routes` as routes.yaml.
    pub fn new(routes: &str) -> Self {
        let remote = GitRemote::new();
        remote.push(routes);
        let dir = remote
            .url()
            .strip_prefix("file://")
            .and_then(|path| path.strip_suffix("/remote.git"))
            .expect("a file:// remote")
            .to_string();
        let port = free_port();
        let daemon = KillOnDrop(
            Command::new("git")
                .arg("daemon")
                .arg(format!("--base-path={dir}"))
                .args(["--export-all", "--reuseaddr", "--listen=0.0.0.0"])
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("git daemon starts"),
        );
        wait_until("git daemon", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let gateway = docker(&[
            "network",
            "inspect",
            "docker_gwbridge",
            "--format",
            "{{(index .IPAM.Config 0).Gateway}}",
        ]);
        TaskRemote {
            remote,
            url: format!("git://{gateway}:{port}/remote.git"),
            _daemon: daemon,
        }
    }
}

/// Removes the config objects that hold `group`'s overrides.
pub fn remove_overrides(group: &str) {
    let filter = format!("label=org.capstan.group={group}");
    for id in try_docker(&["config", "ls", "-q", "--filter", &filter])
        .unwrap_or_default()
        .lines()
    {
        let _ = try_docker(&["config", "rm", id]);
    }
}

/// The running containers of `service`'s tasks.
pub fn containers(service: &str) -> Vec<String> {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let mut ids: Vec<String> = try_docker(&["ps", "-q", "--filter", &filter])
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids
}

/// A container's address on `network`.
pub fn address(container: &str, network: &str) -> Option<Ipv4Addr> {
    let format = format!(
        "{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}"
    );
    try_docker(&["inspect", "--format", &format, container])
        .ok()?
        .parse()
        .ok()
}

pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

/// The task ids go-demo's answers came from (its tasks answer `task=<id> ...`).
pub fn task_of(body: &str) -> Option<String> {
    body.strip_prefix("task=")?
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// The book's go-demo: 3 tasks of the test image on `network`, addressed
/// one by one (DNS round robin: no VIP without IPVS).
pub fn go_demo(network: &OverlayNetwork) -> TestService {
    TestService::create(
        "go-demo",
        &[
            "--network",
            &network.name,
            "--replicas",
            "3",
            "--endpoint-mode",
            "dnsrr",
        ],
    )
}

/// Three replicas of the image as one service on `network`, following
/// `remote`, with no published port.
pub fn proxy_replicas(image: &str, network: &OverlayNetwork, remote: &TaskRemote) -> TestService {
    let user = format!("10001:{}", docker_gid());
    let networks = format!("CAPSTAN_SWARM_NETWORKS={}", network.name);
    let remote = format!("CAPSTAN_REPO={}", remote.url);
    TestService::create_of(
        image,
        "proxy",
        &[
            "--replicas",
            "3",
            "--network",
            &network.name,
            "--endpoint-mode",
            "dnsrr",
            "--user",
            &user,
            "--mount",
            "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock",
            "--env",
            &remote,
            "--env",
            "CAPSTAN_SWARM=true",
            "--env",
            &networks,
            "--env",
            "CAPSTAN_OVERRIDES=swarm",
            // Only webhooks make a replica fetch: a slow poll cannot hide a
            // replica that missed one.
            "--env",
            "CAPSTAN_POLL_INTERVAL=1h",
            "--stop-grace-period",
            "15s",
        ],
        &["serve"],
    )
}

/// The replicas of `service` as (container, address on `network`), once
/// there are `n`, all other than `not`.
pub fn replicas(service: &str, network: &str, n: usize, not: &[String]) -> Vec<(String, Ipv4Addr)> {
    let mut found = Vec::new();
    wait_until(
        &format!("{n} new replicas of {service}"),
        Duration::from_secs(90),
        || {
            let ids = containers(service);
            found = ids
                .iter()
                .filter(|id| !not.contains(id))
                .filter_map(|id| Some((id.clone(), address(id, network)?)))
                .collect();
            ids.len() == n && found.len() == n
        },
    );
    found
}

/// A replica's status, read from inside the overlay.
pub fn replica_status(anchor: &Anchor, ip: Ipv4Addr) -> Option<Value> {
    let body = anchor.http_get(ip, 8080, "/v1/status").ok()?;
    serde_json::from_str(&body).ok()
}

/// Waits until every replica serves `path` from go-demo's tasks and then
/// reports itself in sync (so its status is that of the config serving
/// it); returns each one's (applied commit, config marker).
pub fn wait_serving(
    anchor: &Anchor,
    replicas: &[(String, Ipv4Addr)],
    path: &str,
) -> Vec<(Value, Value)> {
    replicas
        .iter()
        .map(|(container, ip)| {
            let mut synced = None;
            wait_until(
                &format!("replica {container} serves {path}"),
                Duration::from_secs(60),
                || {
                    let serves = anchor
                        .http_get(*ip, 80, path)
                        .is_ok_and(|body| task_of(&body).is_some());
                    synced = replica_status(anchor, *ip).filter(|s| serves && s["in_sync"] == true);
                    synced.is_some()
                },
            );
            let status = synced.unwrap();
            (
                status["applied"]["revision"]["commit"].clone(),
                status["applied"]["marker"].clone(),
            )
        })
        .collect()
}

/// The config objects a service's overrides left, removed on drop.
pub struct OverridesGroup(pub String);

impl Drop for OverridesGroup {
    fn drop(&mut self) {
        remove_overrides(&self.0);
    }
}
