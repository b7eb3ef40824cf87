//! The process, master CLI and admin socket against a real HAProxy (2.6)
//! and real HTTP on loopback. HAProxy must be installed:
//! `scripts/install-test-deps`.
//!
//! Every HAProxy started here runs in its own process group, killed by a
//! [`Reaper`] when the test ends, whatever happens.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::admin::{AdminError, AdminSocket, MAX_WEIGHT};
use super::master::{MasterCli, MasterError};
use super::process::testing::is_running;
use super::process::{
    CheckError, ProcessError, RuntimePaths, StopMode, Stopped, Supervisor, check_config,
};
use crate::plan::{ServerState, stats_socket_line};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The HAProxy binary; fails (never skips) when it is missing.
fn haproxy_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file())
        .expect("haproxy is not installed: run scripts/install-test-deps")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tiny HTTP server on a free loopback port: every request gets `200 OK`
/// with `name` as the body.
async fn http_backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                    name.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    port
}

/// `GET <path>` over HTTP/1.0 through HAProxy: the status and the body.
async fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).await?;
        conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        conn.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The body of a successful `GET /<path>`.
async fn body(port: u16, path: &str) -> String {
    let (status, body) = get(port, path).await.expect("HAProxy answers");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Kills an HAProxy's whole process group (master and workers) when
/// dropped, so that no test leaves one running, even when it fails.
struct Reaper(u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.0 > 1 && is_running(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0)])
                .status();
        }
    }
}

/// A temporary directory holding the sockets, pid file and config of one
/// HAProxy, and the port of its frontend.
struct Setup {
    dir: tempfile::TempDir,
    paths: RuntimePaths,
    config: PathBuf,
    frontend: u16,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            paths: RuntimePaths::in_dir(dir.path()),
            config: dir.path().join("haproxy.cfg"),
            frontend: free_port(),
            dir,
        }
    }

    /// A setup whose config, of generation `gen-1`, sends every request to
    /// one server on `server_port`.
    fn serving(server_port: u16) -> Self {
        let setup = Self::new();
        setup.write_config("gen-1", server_port, "");
        setup
    }

    /// Writes a config of generation `generation` whose default backend
    /// `app` has one server, `s1`, on `server_port`; `extra` is appended.
    fn write_config(&self, generation: &str, server_port: u16, extra: &str) {
        let text = format!(
            "global
    {stats}
    description {generation}
    hard-stop-after 5s

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    option idle-close-on-response
    default-server init-addr last,libc,none

frontend web
    bind 127.0.0.1:{frontend}
    default_backend app

backend app
    server s1 127.0.0.1:{server_port}
{extra}",
            stats = stats_socket_line(&self.paths.admin_socket),
            frontend = self.frontend,
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// The admin socket the config opens.
    fn admin(&self) -> AdminSocket {
        AdminSocket::new(&self.paths.admin_socket)
    }

    async fn start(&self) -> (Supervisor, Reaper) {
        let supervisor = Supervisor::start(&haproxy_bin(), &self.config, &self.paths)
            .await
            .expect("HAProxy starts");
        let reaper = Reaper(supervisor.master_pid());
        (supervisor, reaper)
    }
}

/// Stops HAProxy at the end of a test, letting connections finish.
async fn stop(supervisor: Supervisor) {
    supervisor
        .stop(StopMode::Soft, Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn start_then_show_proc_and_show_info() {
    let a = http_backend("backend-A").await;
    let setup = Setup::serving(a);
    let started = Instant::now();
    let (supervisor, _reaper) = setup.start().await;
    eprintln!("started and ready in {:?}", started.elapsed());
    assert!(!supervisor.is_attached());

    let proc_info = supervisor.master().show_proc().await.unwrap();
    assert_eq!(proc_info.master_pid, supervisor.master_pid());
    assert_eq!((proc_info.reloads, proc_info.failed_reloads), (0, 0));
    assert_eq!(proc_info.workers.len(), 1, "{proc_info:?}");
    assert!(proc_info.old_workers.is_empty());
    let pid_file = std::fs::read_to_string(&setup.paths.pid_file).unwrap();
    assert_eq!(pid_file.trim(), supervisor.master_pid().to_string());

    let info = setup.admin().show_info().await.unwrap();
    assert_eq!(info.pid, proc_info.workers[0].pid);
    assert_eq!(info.description.as_deref(), Some("gen-1"));
    assert!(info.version.starts_with("2."), "{}", info.version);

    let servers = setup.admin().show_servers_state().await.unwrap();
    assert_eq!(servers.len(), 1, "{servers:?}");
    let s1 = &servers[0];
    assert_eq!((s1.backend.as_str(), s1.server.as_str()), ("app", "s1"));
    assert_eq!((s1.address.as_str(), s1.port), ("127.0.0.1", a));
    assert!(s1.is_up());
    assert_eq!((s1.state(), s1.weight), (ServerState::Ready, 1));

    assert_eq!(body(setup.frontend, "/").await, "backend-A");
    let stderr = supervisor.stderr_lines();
    assert!(
        stderr.iter().any(|l| l.contains("Loading success")),
        "{stderr:?}"
    );

    let master_pid = supervisor.master_pid();
    let stopped = supervisor
        .stop(StopMode::Soft, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(stopped, Stopped::Exited);
    assert!(!is_running(master_pid));
    assert!(get(setup.frontend, "/").await.is_err(), "nothing listens");
}

#[tokio::test]
async fn set_server_addr_moves_traffic_without_a_reload() {
    let a = http_backend("backend-A").await;
    let b = http_backend("backend-B").await;
    let setup = Setup::serving(a);
    let (supervisor, _reaper) = setup.start().await;
    let admin = &setup.admin();
    assert_eq!(body(setup.frontend, "/").await, "backend-A");
    let before = supervisor.master().show_proc().await.unwrap();

    admin
        .set_server_addr("app", "s1", "127.0.0.1", b)
        .await
        .unwrap();
    assert_eq!(body(setup.frontend, "/").await, "backend-B");
    let after = supervisor.master().show_proc().await.unwrap();
    assert_eq!(after.reloads, before.reloads);
    // The same worker (its uptime may have ticked over a second).
    let pids =
        |p: &crate::haproxy::master::ProcInfo| p.workers.iter().map(|w| w.pid).collect::<Vec<_>>();
    assert_eq!(pids(&after), pids(&before));
    let s1 = admin.show_servers_state().await.unwrap().remove(0);
    assert_eq!(s1.port, b);

    admin.set_weight("app", "s1", 42).await.unwrap();
    admin
        .set_server_state("app", "s1", ServerState::Drain)
        .await
        .unwrap();
    let s1 = admin.show_servers_state().await.unwrap().remove(0);
    assert_eq!((s1.weight, s1.state()), (42, ServerState::Drain));
    admin
        .set_server_state("app", "s1", ServerState::Maint)
        .await
        .unwrap();
    let s1 = admin.show_servers_state().await.unwrap().remove(0);
    assert_eq!(s1.state(), ServerState::Maint);
    assert_eq!(get(setup.frontend, "/").await.unwrap().0, 503);
    admin
        .set_server_state("app", "s1", ServerState::Ready)
        .await
        .unwrap();
    admin.set_weight("app", "s1", MAX_WEIGHT).await.unwrap();
    assert_eq!(body(setup.frontend, "/").await, "backend-B");

    // HAProxy's own refusals come back as errors carrying its text.
    let err = admin
        .set_server_addr("app", "nope", "127.0.0.1", b)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdminError::Refused { message, .. } if message == "No such server."),
        "{err}"
    );
    let err = admin
        .set_server_state("nope", "s1", ServerState::Ready)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdminError::Refused { message, .. } if message == "No such backend."),
        "{err}"
    );
    assert_eq!(supervisor.master().show_proc().await.unwrap().reloads, 0);
    supervisor
        .stop(StopMode::Hard, Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_valid_reload_starts_a_new_worker_serving_the_new_routes() {
    let a = http_backend("backend-A").await;
    let b = http_backend("backend-B").await;
    let setup = Setup::serving(a);
    let (supervisor, _reaper) = setup.start().await;
    let old_worker = supervisor.master().show_proc().await.unwrap().workers[0].pid;
    assert_eq!(get(setup.frontend, "/b").await.unwrap().1, "backend-A");

    setup.write_config(
        "gen-2",
        a,
        &format!("\nbackend other\n    server s1 127.0.0.1:{b}\n"),
    );
    // The route to `other`: `use_backend` belongs in the frontend.
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        "    default_backend app\n",
        "    use_backend other if { path_beg /b }\n    default_backend app\n",
    );
    std::fs::write(&setup.config, text).unwrap();
    check_config(&haproxy_bin(), &setup.config).await.unwrap();

    let started = Instant::now();
    let reload = supervisor.reload().await.unwrap();
    let outcome = &reload.outcome;
    assert!(outcome.succeeded, "{reload:?}");
    let new_worker = outcome.new_worker_pid.expect("a new worker");
    assert_ne!(new_worker, old_worker);
    assert_eq!(outcome.after.reloads, 1);
    assert!(outcome.after.workers.iter().any(|w| w.pid == new_worker));
    assert!(
        reload
            .messages
            .iter()
            .any(|l| l.contains("Loading success")),
        "{:?}",
        reload.messages
    );
    assert_eq!(body(setup.frontend, "/b").await, "backend-B");
    let serving = started.elapsed();
    assert_eq!(body(setup.frontend, "/").await, "backend-A");
    let info = setup.admin().show_info().await.unwrap();
    assert_eq!(
        (info.pid, info.description.as_deref()),
        (new_worker, Some("gen-2"))
    );
    eprintln!(
        "reload confirmed by show proc in {:?}; new route served after {serving:?}",
        outcome.duration
    );
    stop(supervisor).await;
}

#[tokio::test]
async fn a_failed_reload_is_reported_and_the_old_worker_keeps_serving() {
    let a = http_backend("backend-A").await;
    let setup = Setup::serving(a);
    let (supervisor, _reaper) = setup.start().await;
    let old_worker = supervisor.master().show_proc().await.unwrap().workers[0].pid;

    // A port someone else holds: `haproxy -c` accepts, the reload fails.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    setup.write_config(
        "gen-2",
        a,
        &format!("\nfrontend extra\n    bind 127.0.0.1:{taken_port}\n    default_backend app\n"),
    );
    check_config(&haproxy_bin(), &setup.config)
        .await
        .expect("-c does not try to bind");

    let reload = supervisor.reload().await.unwrap();
    let outcome = &reload.outcome;
    assert!(!outcome.succeeded, "{reload:?}");
    assert_eq!(outcome.new_worker_pid, None);
    assert_eq!(outcome.after.failed_reloads, 1);
    assert_eq!(outcome.after.workers[0].pid, old_worker);
    eprintln!("failed reload confirmed in {:?}", outcome.duration);
    let said_why = |lines: &[String]| lines.iter().any(|l| l.contains("cannot bind socket"));
    assert!(said_why(&reload.messages), "{:?}", reload.messages);
    assert!(said_why(&supervisor.stderr_lines()));

    assert_eq!(body(setup.frontend, "/").await, "backend-A");
    let info = setup.admin().show_info().await.unwrap();
    assert_eq!(
        (info.pid, info.description.as_deref()),
        (old_worker, Some("gen-1"))
    );

    // A good config loads again, and the failed counter goes back to 0.
    drop(taken);
    setup.write_config("gen-3", a, "");
    let reload = supervisor.reload().await.unwrap();
    assert!(reload.outcome.succeeded, "{reload:?}");
    assert_eq!(reload.outcome.after.failed_reloads, 0);
    assert_eq!(body(setup.frontend, "/").await, "backend-A");
    stop(supervisor).await;
}

#[tokio::test]
async fn check_config_rejects_a_broken_file_with_haproxys_message() {
    let setup = Setup::serving(free_port());
    check_config(&haproxy_bin(), &setup.config).await.unwrap();

    let broken = setup.dir.path().join("broken.cfg");
    std::fs::write(
        &broken,
        "frontend web\n    bindd 127.0.0.1:8080\n    mode http\n",
    )
    .unwrap();
    match check_config(&haproxy_bin(), &broken).await {
        Err(CheckError::Invalid { path, output }) => {
            assert_eq!(path, broken);
            assert!(output.contains("unknown keyword 'bindd'"), "{output}");
            assert!(output.contains("broken.cfg:2"), "{output}");
        }
        other => panic!("{other:?}"),
    }

    // Starting on it fails the same way, with HAProxy's words.
    std::fs::copy(&broken, &setup.config).unwrap();
    let err = Supervisor::start(&haproxy_bin(), &setup.config, &setup.paths)
        .await
        .unwrap_err();
    match &err {
        ProcessError::Exited { stderr, .. } => {
            assert!(stderr.contains("unknown keyword 'bindd'"), "{stderr}")
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn injection_is_refused_before_anything_is_sent() {
    let a = http_backend("backend-A").await;
    let setup = Setup::serving(a);
    let (supervisor, _reaper) = setup.start().await;
    let admin = &setup.admin();
    let before = admin.show_servers_state().await.unwrap();

    for result in [
        admin
            .set_server_addr("app", "s1", "1.2.3.4\nshutdown sessions", a)
            .await,
        admin
            .set_server_addr("app", "s1", "1.2.3.4;shutdown sessions", a)
            .await,
        admin
            .set_server_addr("app", "s1\nshutdown sessions", "1.2.3.4", a)
            .await,
        admin.set_weight("app;shutdown sessions", "s1", 1).await,
        admin
            .command("show info\nshutdown sessions")
            .await
            .map(drop),
    ] {
        assert!(
            matches!(result, Err(AdminError::InvalidArgument(_))),
            "{result:?}"
        );
    }
    let err = supervisor
        .master()
        .command("show proc;reload")
        .await
        .unwrap_err();
    assert!(matches!(err, MasterError::InvalidCommand(_)), "{err}");

    assert_eq!(admin.show_servers_state().await.unwrap(), before);
    assert_eq!(supervisor.master().show_proc().await.unwrap().reloads, 0);
    assert_eq!(body(setup.frontend, "/").await, "backend-A");
    stop(supervisor).await;
}

#[tokio::test]
async fn haproxy_outlives_its_supervisor_and_is_attached_again() {
    let a = http_backend("backend-A").await;
    let setup = Setup::serving(a);
    // A stale pid file, as after a crash: nothing to attach to, so it starts.
    std::fs::write(&setup.paths.pid_file, "999999999\n").unwrap();
    let supervisor = Supervisor::start_or_attach(&haproxy_bin(), &setup.config, &setup.paths)
        .await
        .unwrap();
    let _reaper = Reaper(supervisor.master_pid());
    assert!(!supervisor.is_attached());
    let master_pid = supervisor.master_pid();
    drop(supervisor);

    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(is_running(master_pid));
    assert_eq!(body(setup.frontend, "/").await, "backend-A");

    let attached = Supervisor::start_or_attach(&haproxy_bin(), &setup.config, &setup.paths)
        .await
        .unwrap();
    assert!(attached.is_attached());
    assert_eq!(attached.master_pid(), master_pid);
    assert!(attached.stderr_lines().is_empty());
    drop(attached);
    // Starting a second one over the first is refused.
    let err = Supervisor::start(&haproxy_bin(), &setup.config, &setup.paths)
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::AlreadyRunning(_)), "{err}");
    let attached = Supervisor::attach(&setup.paths.master_socket, &setup.paths.admin_socket)
        .await
        .unwrap();
    assert_eq!(attached.master_pid(), master_pid);
    assert_eq!(attached.master().path(), setup.paths.master_socket);

    // Reloads still work though nobody reads the master's stderr any more.
    setup.write_config("gen-2", a, "");
    let reload = attached.reload().await.unwrap();
    assert!(reload.outcome.succeeded, "{reload:?}");
    assert!(reload.messages.is_empty());
    let info = setup.admin().show_info().await.unwrap();
    assert_eq!(info.description.as_deref(), Some("gen-2"));
    assert_eq!(body(setup.frontend, "/").await, "backend-A");

    let stopped = attached
        .stop(StopMode::Soft, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(stopped, Stopped::Exited);
    assert!(!is_running(master_pid));
    assert!(get(setup.frontend, "/").await.is_err());
    let gone = Supervisor::attach(&setup.paths.master_socket, &setup.paths.admin_socket).await;
    assert!(gone.is_err());
}

#[tokio::test]
async fn a_stop_that_outlasts_its_timeout_ends_in_sigkill() {
    // A server that accepts and never answers keeps a request in flight, so
    // a soft stop waits for it.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let setup = Setup::serving(silent_port);
    let (supervisor, _reaper) = setup.start().await;
    let mut client = TcpStream::connect(("127.0.0.1", setup.frontend))
        .await
        .unwrap();
    client
        .write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let _held = tokio::time::timeout(Duration::from_secs(2), silent.accept())
        .await
        .expect("HAProxy forwards the request")
        .unwrap();

    let workers: Vec<u32> = supervisor
        .master()
        .show_proc()
        .await
        .unwrap()
        .all_workers()
        .collect();
    let master_pid = supervisor.master_pid();
    let stopped = supervisor
        .stop(StopMode::Soft, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(stopped, Stopped::Killed);
    assert!(!is_running(master_pid));
    tokio::time::sleep(Duration::from_millis(100)).await;
    for worker in workers {
        assert!(!is_running(worker), "worker {worker}");
    }
}

#[tokio::test]
async fn master_cli_is_reachable_on_its_own() {
    let a = http_backend("backend-A").await;
    let setup = Setup::serving(a);
    let (supervisor, _reaper) = setup.start().await;
    let cli =
        MasterCli::new(&setup.paths.master_socket).with_reload_deadline(Duration::from_secs(5));
    // The master CLI keeps connections open after replying: `command`
    // returns anyway.
    let started = Instant::now();
    let help = cli.command("help").await.unwrap();
    assert!(help.contains("show proc"), "{help}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let outcome = cli.reload().await.unwrap();
    assert!(outcome.succeeded);
    assert_eq!(
        supervisor.master().show_proc().await.unwrap().reloads,
        1,
        "same master"
    );
    stop(supervisor).await;
}

#[tokio::test]
async fn stop_right_after_an_outside_reload_still_stops() {
    // A signal reaching the master while it re-executes for a reload is
    // lost: `stop` must not depend on the first one.
    let a = http_backend("backend-A").await;
    let setup = Setup::serving(a);
    for _ in 0..3 {
        let (supervisor, _reaper) = setup.start().await;
        let master_pid = supervisor.master_pid();
        let status = std::process::Command::new("kill")
            .args(["-USR2", &master_pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::sleep(Duration::from_millis(30)).await;
        let stopped = supervisor
            .stop(StopMode::Soft, Duration::from_secs(3))
            .await
            .unwrap();
        assert_eq!(stopped, Stopped::Exited);
        assert!(!is_running(master_pid));
    }
}
