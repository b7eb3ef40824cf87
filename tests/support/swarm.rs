//! Swarm test rig: a single-node Swarm on this machine's Docker Engine, the
//! `capstan-test-http` image (built FROM scratch by
//! `scripts/swarm-test-setup`), and guards that remove every service,
//! container and network a test makes, even when it panics.
//!
//! Networking on the test machine (Docker 20.10, a kernel without IPVS):
//! task IPs on an overlay network are not routable from the host's network
//! namespace (and a sandbox may answer unroutable addresses itself: always
//! check *who* answered); Swarm VIPs and the ingress routing mesh accept
//! nothing. What works: a process started in the network namespace of a
//! container attached to the (attachable) overlay ([`Anchor`]) reaches every
//! task IP, and the host reaches that process through the container's
//! `docker_gwbridge` address (or a port the container publishes); and task
//! ports published in `host` mode.
//!
//! Include it with `#[path = "support/swarm.rs"] mod swarm_rig;`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The test image, as `scripts/swarm-test-setup` tags it.
pub const IMAGE: &str = "capstan-test-http:latest";
/// The port the test server listens on inside its container.
pub const PORT: u16 = 8080;
/// The label that marks what the rig creates, with the creating test
/// process's pid (so that leftovers of a killed run can be removed).
const OWNER_LABEL: &str = "org.capstan.test.pid";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/swarm-test-setup` once per test process (Swarm active, test
/// image built), then removes what killed test runs left behind. Panics
/// with the reason when Docker is missing or does not answer: these tests
/// never skip.
pub fn setup() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let started = Instant::now();
        let out = Command::new(repo().join("scripts/swarm-test-setup"))
            .current_dir(repo())
            .output()
            .map_err(|e| format!("cannot run scripts/swarm-test-setup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/swarm-test-setup failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
        remove_leftovers();
        eprintln!("swarm rig: setup took {:?}", started.elapsed());
        Ok(())
    });
    if let Err(e) = result {
        panic!("the Swarm tests need a working Docker Engine: {e}");
    }
}

/// The static test server binary the setup script built (it runs on the
/// host too, e.g. inside an [`Anchor`]'s network namespace).
pub fn test_server_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| repo().join(dir))
        .unwrap_or_else(|| repo().join("target"));
    target.join("testbin/x86_64-unknown-linux-gnu/release/capstan-test-http")
}

/// Runs the docker CLI; panics with its stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
}

/// Runs the docker CLI; its stdout, or its stderr as the error.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A name no other test (in this or a concurrent run) uses.
pub fn unique_name(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("capstan-t{}-{n}-{what}", std::process::id())
}

fn owner_label() -> String {
    format!("{OWNER_LABEL}={}", std::process::id())
}

/// Removes services, containers and networks made by test processes that
/// no longer exist.
fn remove_leftovers() {
    let dead =
        |pid: &str| !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists();
    let filter = format!("label={OWNER_LABEL}");
    let with_owner = format!("{{{{.ID}}}} {{{{.Label \"{OWNER_LABEL}\"}}}}");
    let service_owner = format!("{{{{index .Spec.Labels \"{OWNER_LABEL}\"}}}}");
    let listed = |args: &[&str]| -> Vec<(String, String)> {
        try_docker(args)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(id, pid)| (id.to_string(), pid.to_string()))
            .collect()
    };
    // `service ls` cannot show labels: inspect each service.
    let services =
        try_docker(&["service", "ls", "--quiet", "--filter", &filter]).unwrap_or_default();
    for id in services.lines() {
        if try_docker(&["service", "inspect", "--format", &service_owner, id])
            .is_ok_and(|p| dead(&p))
        {
            eprintln!("swarm rig: removing leftover service {id}");
            let _ = try_docker(&["service", "rm", id]);
        }
    }
    for (id, pid) in listed(&["ps", "--all", "--filter", &filter, "--format", &with_owner]) {
        if dead(&pid) {
            eprintln!("swarm rig: removing leftover container {id}");
            let _ = try_docker(&["rm", "--force", &id]);
        }
    }
    for (id, pid) in listed(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        &with_owner,
    ]) {
        if dead(&pid) {
            eprintln!("swarm rig: removing leftover network {id}");
            let _ = remove_network(&id);
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `timeout`.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An attachable overlay network, removed on drop.
pub struct OverlayNetwork {
    pub name: String,
    pub id: String,
}

impl OverlayNetwork {
    pub fn create() -> Self {
        let name = unique_name("net");
        let id = docker(&[
            "network",
            "create",
            "--driver",
            "overlay",
            "--attachable",
            "--label",
            &owner_label(),
            &name,
        ]);
        Self { name, id }
    }
}

/// `docker network rm`, retried while endpoints (stopping tasks, containers
/// being removed) still hold the network.
fn remove_network(id: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match try_docker(&["network", "rm", id]) {
            Ok(out) => return Ok(out),
            Err(e) if e.contains("No such network") || e.contains("not found") => return Ok(e),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

impl Drop for OverlayNetwork {
    fn drop(&mut self) {
        if let Err(e) = remove_network(&self.id) {
            eprintln!("swarm rig: cannot remove network {}: {e}", self.name);
        }
    }
}

/// A Swarm service of the test image, removed on drop.
pub struct TestService {
    pub name: String,
}

impl TestService {
    /// `docker service create --detach` of the test image with its tasks
    /// naming themselves by task id (`TASK_ID={{.Task.ID}}`); `extra` goes
    /// before the image (networks, replicas, labels, `--publish`, ...).
    pub fn create(what: &str, extra: &[&str]) -> Self {
        Self::create_from(IMAGE, what, extra)
    }

    /// Like [`TestService::create`], of another `image` (e.g. capstan's own).
    pub fn create_from(image: &str, what: &str, extra: &[&str]) -> Self {
        let name = unique_name(what);
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--quiet",
            "--no-resolve-image",
            "--name",
            &name,
            "--label",
        ];
        let owner = owner_label();
        args.push(&owner);
        args.extend(["--env", "TASK_ID={{.Task.ID}}"]);
        args.extend(extra);
        args.push(image);
        docker(&args);
        Self { name }
    }

    /// `docker service update --detach --replicas n`.
    pub fn scale(&self, replicas: u32) {
        let replicas = replicas.to_string();
        docker(&[
            "service",
            "update",
            "--detach",
            "--quiet",
            "--replicas",
            &replicas,
            &self.name,
        ]);
    }

    /// `docker service rm`; the drop guard then has nothing left to do.
    pub fn remove(&self) {
        docker(&["service", "rm", &self.name]);
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        match try_docker(&["service", "rm", &self.name]) {
            Ok(_) => {}
            Err(e) if e.contains("not found") => {}
            Err(e) => eprintln!("swarm rig: cannot remove service {}: {e}", self.name),
        }
    }
}

/// A plain container of the test image attached to a network, whose network
/// namespace host processes can join (`nsenter`, needs root): a stand-in for
/// a proxy that lives on the overlay. Removed on drop.
pub struct Anchor {
    pub name: String,
    /// The container's main process, whose network namespace is joined.
    pub pid: u32,
}

impl Anchor {
    pub fn start(network: &str) -> Self {
        let name = unique_name("anchor");
        docker(&[
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            network,
            "--label",
            &owner_label(),
            "--env",
            "TASK_ID=anchor",
            IMAGE,
        ]);
        // The guard first, so that a failing inspect still removes it.
        let mut anchor = Self { name, pid: 0 };
        let pid = docker(&["inspect", "--format", "{{.State.Pid}}", &anchor.name]);
        anchor.pid = pid
            .parse()
            .unwrap_or_else(|_| panic!("anchor pid: {pid:?}"));
        anchor
    }

    /// A command that runs `program` on the host, but in this container's
    /// network namespace (host files, container network).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg("--target")
            .arg(self.pid.to_string())
            .arg("--net")
            .arg("--")
            .arg(program);
        command
    }

    /// An executable `haproxy` in `dir` that runs the host's HAProxy in
    /// this container's network namespace: on the overlay, with host files.
    pub fn haproxy_wrapper(&self, dir: &std::path::Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let wrapper = dir.join("haproxy");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec nsenter --target {} --net -- haproxy \"$@\"\n",
                self.pid
            ),
        )
        .expect("writing the haproxy wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("making the wrapper executable");
        wrapper
    }

    /// The container's address on `docker_gwbridge`: the host reaches
    /// listeners in the container's namespace there.
    pub fn gateway_ip(&self) -> Ipv4Addr {
        let id = docker(&["inspect", "--format", "{{.Id}}", &self.name]);
        let format =
            format!("{{{{with index .Containers \"{id}\"}}}}{{{{.IPv4Address}}}}{{{{end}}}}");
        let cidr = docker(&["network", "inspect", "docker_gwbridge", "--format", &format]);
        cidr.split('/')
            .next()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "anchor {} has no docker_gwbridge address: {cidr:?}",
                    self.name
                )
            })
    }

    /// `GET path` from inside the anchor's namespace (bash's `/dev/tcp`, so
    /// no client tool is needed); the response body, or why there is none.
    pub fn http_get(&self, ip: Ipv4Addr, port: u16, path: &str) -> Result<String, String> {
        let script = r#"exec 3<>"/dev/tcp/$0/$1" && printf 'GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' "$2" >&3 && cat <&3"#;
        let out = self
            .command("timeout")
            .args(["3", "bash", "-c", script])
            .arg(ip.to_string())
            .arg(port.to_string())
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run nsenter: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match text.split_once("\r\n\r\n") {
            Some((_, body)) if out.status.success() => Ok(body.to_string()),
            _ => Err(format!(
                "{}: {}{}",
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        if let Err(e) = try_docker(&["rm", "--force", &self.name]) {
            eprintln!("swarm rig: cannot remove container {}: {e}", self.name);
        }
    }
}

/// A child process killed (and reaped) on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` over a fresh connection from this (the host's) namespace: the
/// body, or why there is none. Short timeouts: used to probe reachability.
pub fn host_http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("unexpected answer: {response:?}")),
    }
}
