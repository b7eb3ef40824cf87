//! Faults a running capstan must survive, each driven for real: a call
//! HAProxy rejects, a port another program holds, HAProxy killed with
//! SIGKILL, a git branch that disappears.

mod support;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// Polling only every hour: what runs is what a test triggers, or a retry.
const NO_POLL: [&str; 2] = ["--poll-interval", "1h"];

fn json(capstan: &Capstan, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = capstan.get(path);
    let value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (code, value)
}

/// A routes.yaml whose HAProxy resolves the names of DFP services through `dns`.
fn routes_with_dns(http: u16, dns: &Dns, routes: &str) -> String {
    routes_yaml(http, routes).replace(
        "defaults:\n",
        &format!("defaults:\n  resolvers: [\"127.0.0.1:{}\"]\n", dns.port),
    )
}

#[test]
fn an_override_haproxy_rejects_is_dropped_and_blocks_nothing() {
    require_tools();
    let (a, good, http) = (Backend::start("A"), Backend::start("GOOD"), free_port());
    let dns = Dns::start(&["good", "good1", "good2", "good4", "good5"]);
    let remote = GitRemote::new();
    let first = remote.push(&routes_with_dns(
        http,
        &dns,
        &route("a", "/a", &a.address()),
    ));
    let capstan = serve_git(&remote, &NO_POLL);
    wait_applied(&capstan, &first);

    // capstan's checks pass this rewrite; PCRE2 in `haproxy -c` refuses
    // the quantifier (over 65535).
    let bad = "/v1/docker-flow-proxy/reconfigure?serviceName=bad&servicePath=/bad&port=9\
               &reqPathSearchReplace=%5E/bad%7B70000%7D,/";
    let (code, answer) = json(&capstan, bad);
    assert_eq!(code, 400, "{answer:#}");
    assert_eq!(answer["Status"], "NOK");
    let message = answer["Message"].as_str().unwrap();
    assert!(message.contains("dropped"), "{message}");
    assert!(
        message.contains("number too big"),
        "HAProxy's words: {message}"
    );
    let (_, overrides) = json(&capstan, "/v1/overrides");
    assert!(
        overrides["overrides"].get("bad").is_none(),
        "the rejected override is not kept: {overrides:#}"
    );
    let stored = std::fs::read_to_string(capstan.state_dir.join("overrides.json")).unwrap();
    assert!(!stored.contains("\"bad\""), "{stored}");
    assert!(capstan.log().contains("HAProxy rejected this override"));

    // Other calls and git commits go through, also in a group with a bad call.
    let good_call = format!(
        "/v1/docker-flow-proxy/reconfigure?serviceName=good&servicePath=/good&port={}",
        good.port
    );
    let (code, answer) = json(&capstan, &good_call);
    assert_eq!(code, 200, "{answer:#}");
    wait_for_backend(http, "/good", "GOOD");
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let port = capstan.api_port;
            let call = if i % 3 == 0 {
                bad.replace("serviceName=bad", &format!("serviceName=bad{i}"))
                    .replace("servicePath=/bad", &format!("servicePath=/bad{i}"))
            } else {
                format!(
                    "/v1/docker-flow-proxy/reconfigure?serviceName=good{i}&servicePath=/good{i}&port={}",
                    good.port
                )
            };
            std::thread::spawn(move || http_get(port, &call, "localhost").unwrap().0)
        })
        .collect();
    let codes: Vec<u16> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(codes, [400, 200, 200, 400, 200, 200]);
    for i in [1, 2, 4, 5] {
        wait_for_backend(http, &format!("/good{i}"), "GOOD");
    }
    let b = Backend::start("B");
    let routes = format!(
        "{}{}",
        route("a", "/a", &a.address()),
        route("b", "/b", &b.address())
    );
    let second = remote.push(&routes_with_dns(http, &dns, &routes));
    let (code, answer) = json(&capstan, "/v1/docker-flow-proxy/reload");
    assert_eq!(code, 200, "{answer:#}");
    wait_applied(&capstan, &second);
    wait_for_backend(http, "/b", "B");
    wait_for_backend(http, "/good", "GOOD");
    assert_eq!(capstan.status()["in_sync"], true);
}

#[test]
fn a_port_held_by_another_program_is_retried_until_it_is_free() {
    require_tools();
    let OneRoute {
        a,
        http,
        remote,
        first,
        mut capstan,
    } = OneRoute::start();

    // The new port is taken: the apply fails, HAProxy keeps serving.
    let held = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let moved = remote.push(&routes_yaml(port, &route("a", "/a", &a.address())));
    let (code, _) = json(&capstan, "/v1/docker-flow-proxy/reload");
    assert_eq!(code, 500);
    let status = capstan.status();
    assert_eq!(status["in_sync"], false);
    assert!(
        status["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("port {port}")),
        "{status:#}"
    );
    wait_for_backend(http, "/a", "A");
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(capstan.state_dir.join("state.json")).unwrap(),
    )
    .unwrap();
    assert!(saved["last_error"].is_object(), "{saved:#}");
    assert!(
        saved["last_error"]["marker"].is_null(),
        "a transient failure is not remembered as failed: {saved:#}"
    );

    // Even across a restart of capstan, it is retried once the port is free.
    capstan.restart();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(capstan.status()["applied"]["revision"]["commit"], first);
    drop(held);
    wait_applied(&capstan, &moved);
    wait_for_backend(port, "/a", "A");
    assert_eq!(capstan.status()["in_sync"], true);
}

#[test]
fn reload_retries_a_config_that_failed_before() {
    require_tools();
    let stand = OneRoute::start();
    let capstan = &stand.capstan;

    // A certificate that does not exist yet: `haproxy -c` rejects the config.
    let certs = tempfile::tempdir().unwrap();
    let pem = certs.path().join("site.pem");
    let with_tls = with_https(&stand.routes(), free_port(), pem.to_str().unwrap());
    let tls = stand.remote.push(&with_tls);
    let (code, answer) = json(capstan, "/v1/docker-flow-proxy/reload");
    assert_eq!(code, 500, "{answer:#}");
    assert_eq!(capstan.status()["last_error"]["stage"], "check");

    // The operator installs the certificate and asks for a reload: applied.
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=capstan.test", "-keyout"])
        .arg(certs.path().join("key.pem"))
        .arg("-out")
        .arg(certs.path().join("cert.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let mut both = std::fs::read(certs.path().join("cert.pem")).unwrap();
    both.extend(std::fs::read(certs.path().join("key.pem")).unwrap());
    std::fs::write(&pem, both).unwrap();
    let (code, answer) = json(capstan, "/v1/docker-flow-proxy/reload");
    assert_eq!(code, 200, "{answer:#}");
    wait_applied(capstan, &tls);
    wait_for_backend(stand.http, "/a", "A");
}

fn haproxy_master_pid(capstan: &Capstan) -> u32 {
    std::fs::read_to_string(capstan.state_dir.join("run/haproxy.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn kill9(pid: u32) {
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// Time from SIGKILL to the first request served again.
fn served_again_after(http: u16, killed_at: Instant) -> Duration {
    wait_until("served again", Duration::from_secs(10), || {
        http_get(http, "/a", "localhost")
            .is_some_and(|(code, body)| code == 200 && body.starts_with("A "))
    });
    killed_at.elapsed()
}

#[test]
fn haproxy_killed_is_restarted_at_once_with_the_last_good_config() {
    require_tools();
    let stand = OneRoute::start();
    let (http, mut capstan) = (stand.http, stand.capstan);

    // The master, with SIGKILL.
    let master = haproxy_master_pid(&capstan);
    let killed_at = Instant::now();
    kill9(master);
    let took = served_again_after(http, killed_at);
    eprintln!("kill -9 of the master -> served again: {took:?}");
    wait_until("a new master", Duration::from_secs(10), || {
        haproxy_master_pid(&capstan) != master
    });
    wait_until("in sync again", Duration::from_secs(10), || {
        capstan.status()["in_sync"] == true
    });
    let status = capstan.status();
    assert_eq!(status["haproxy"]["restarts"], 1, "{status:#}");
    assert!(
        status["haproxy"]["last_exit"]
            .as_str()
            .unwrap()
            .contains(&master.to_string()),
        "{status:#}"
    );
    assert_eq!(status["history"][0]["method"], "restart", "{status:#}");
    assert_eq!(status["history"][0]["outcome"], "ok");
    assert_eq!(
        capstan.metric("capstan_haproxy_restarts_total{result=\"ok\"}"),
        1.0
    );
    assert!(capstan.log().contains("HAProxy died"));

    // A worker killed takes its master down too; an HAProxy found running
    // after a restart of capstan is watched as well.
    capstan.restart();
    wait_until("in sync after restart", Duration::from_secs(10), || {
        capstan.status()["in_sync"] == true
    });
    let worker = worker_pid(&capstan);
    let killed_at = Instant::now();
    kill9(worker);
    let took = served_again_after(http, killed_at);
    eprintln!("kill -9 of the worker -> served again: {took:?}");
    wait_until("the restart reported", Duration::from_secs(10), || {
        capstan.status()["haproxy"]["restarts"] == 1
    });
}

/// The worker's pid, from the master CLI's `show proc`.
fn worker_pid(capstan: &Capstan) -> u32 {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo 'show proc' | socat -t 1 stdio unix-connect:{}",
            capstan.state_dir.join("run/master.sock").display()
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some("worker"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no worker in show proc: {text}"))
}

#[test]
fn a_failing_fetch_is_never_in_sync_and_reload_says_so() {
    require_tools();
    let OneRoute {
        a,
        http,
        remote,
        capstan,
        first: _,
    } = OneRoute::start();
    assert_eq!(capstan.status()["in_sync"], true);

    // The branch disappears from the remote.
    git(
        &remote.dir.path().join("remote.git"),
        &["branch", "-D", "main"],
    );
    let (code, answer) = json(&capstan, "/v1/docker-flow-proxy/reload");
    assert_eq!(code, 500, "{answer:#}");
    assert_eq!(answer["Status"], "NOK");
    assert!(
        answer["Message"].as_str().unwrap().contains("unknown"),
        "{answer:#}"
    );
    let status = capstan.status();
    assert_eq!(status["in_sync"], false, "{status:#}");
    assert!(status["fetch"]["failing_since"].is_string(), "{status:#}");
    assert!(status["fetch"]["error"].is_string(), "{status:#}");
    assert_eq!(capstan.metric("capstan_in_sync"), 0.0);
    let cli = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["status", "--url", &capstan.url()])
        .output()
        .unwrap();
    assert_ne!(cli.status.code(), Some(0), "{cli:?}");
    // HAProxy keeps serving the last applied config.
    wait_for_backend(http, "/a", "A");

    // The branch is back: in sync again.
    let again = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let (code, answer) = json(&capstan, "/v1/docker-flow-proxy/reload");
    assert_eq!(code, 200, "{answer:#}");
    wait_applied(&capstan, &again);
    assert_eq!(capstan.status()["in_sync"], true);
    assert!(capstan.status()["fetch"]["failing_since"].is_null());
}

/// A 4 MiB tmpfs, unmounted on drop: a disk that can be filled.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            mounted.status.success(),
            "this test mounts a tmpfs and needs root: {mounted:?}"
        );
        Self { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a file until the disk is full.
    fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", self.path().join("filler").display()))
            .output()
            .unwrap();
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_is_retried_once_there_is_room() {
    require_tools();
    let (a, b, http) = (Backend::start("A"), Backend::start("B"), free_port());
    let remote = GitRemote::new();
    let first = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let disk = SmallDisk::mount();
    let url = remote.url();
    let mut args = vec!["--repo", url.as_str()];
    args.extend(NO_POLL);
    let capstan = Capstan::start_in(disk.path().join("state"), &args);
    wait_applied(&capstan, &first);

    disk.fill();
    let routes = format!(
        "{}{}",
        route("a", "/a", &a.address()),
        route("b", "/b", &b.address())
    );
    let second = remote.push(&routes_yaml(http, &routes));
    let (code, answer) = json(&capstan, "/v1/docker-flow-proxy/reload");
    assert_eq!(code, 500, "{answer:#}");
    let status = capstan.status();
    assert_eq!(status["in_sync"], false, "{status:#}");
    // The git fetch or the apply, whichever writes first, finds no room.
    let said = format!(
        "{} {}",
        status["fetch"]["error"], status["last_error"]["message"]
    );
    assert!(said.contains("No space left on device"), "{status:#}");
    wait_for_backend(http, "/a", "A");

    // Room again: the next retry (backoff, no poll for an hour) applies it.
    disk.free();
    wait_applied(&capstan, &second);
    wait_for_backend(http, "/b", "B");
    assert_eq!(capstan.status()["in_sync"], true);
}
