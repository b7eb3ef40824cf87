//! What a container needs of `capstan serve`, on the host with a real
//! HAProxy: `capstan health` (the image's HEALTHCHECK) and `--stop-grace`
//! (HAProxy stopped softly when capstan is, since the container ends with it).

mod support;

use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use support::*;

/// `capstan health` with `args` and `env`, CAPSTAN_URL and CAPSTAN_LISTEN
/// taken from `env` only.
fn health(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
        .arg("health")
        .args(args)
        .env_remove("CAPSTAN_URL")
        .env_remove("CAPSTAN_LISTEN")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("capstan health runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// A routes file routing `/slow` to `backend` on `http`, in `dir`.
fn routes_file(dir: &std::path::Path, http: u16, backend: &Backend) -> String {
    let path = dir.join("routes.yaml");
    std::fs::write(
        &path,
        routes_yaml(http, &route("slow", "/slow", &backend.address())),
    )
    .unwrap();
    path.display().to_string()
}

fn wait_served(capstan: &Capstan, http: u16) {
    wait_until("the routes applied", Duration::from_secs(20), || {
        !capstan.status()["applied"].is_null()
    });
    wait_until("HAProxy listening", Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", http)).is_ok()
    });
}

#[test]
fn health_fails_with_a_reason_when_capstan_does_not_answer() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = health(&["--url", &url], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = text(&out.stderr);
    assert!(
        said.starts_with(&format!(
            "unhealthy: capstan does not answer at {url}/healthz: "
        )),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "one line: {said}");
}

#[test]
fn health_passes_while_haproxy_serves_and_finds_capstan_through_capstan_listen() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let (backend, http) = (Backend::start("S"), free_port());
    let capstan = Capstan::start(&["--routes-file", &routes_file(dir.path(), http, &backend)]);
    wait_served(&capstan, http);

    let out = health(&["--url", &capstan.url()], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        text(&out.stdout).starts_with("healthy: HAProxy master "),
        "{out:?}"
    );

    // The image sets CAPSTAN_LISTEN=0.0.0.0:8080 and runs `capstan health` bare.
    let listen = format!("0.0.0.0:{}", capstan.api_port);
    let out = health(&[], &[("CAPSTAN_LISTEN", listen)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let (code, body) = capstan.get("/healthz");
    assert_eq!(code, 200, "{body}");
}

#[test]
fn health_fails_while_no_haproxy_runs() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    std::fs::write(&routes, "version: 1\nroutes: not a list\n").unwrap();
    let capstan = Capstan::start(&["--routes-file", routes.to_str().unwrap()]);
    wait_until(
        "the invalid routes reported",
        Duration::from_secs(20),
        || !capstan.status()["last_error"].is_null(),
    );

    let out = health(&["--url", &capstan.url()], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = text(&out.stderr);
    assert!(
        said.starts_with("unhealthy: HAProxy is not running"),
        "{said}"
    );
    let (code, body) = capstan.get("/healthz");
    assert_eq!(code, 503, "{body}");
}

#[test]
fn with_a_stop_grace_in_flight_requests_finish_and_everything_stops() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let (slow, http) = (
        Backend::start_slow("S", Duration::from_secs(2)),
        free_port(),
    );
    let mut capstan = Capstan::start(&[
        "--routes-file",
        &routes_file(dir.path(), http, &slow),
        "--stop-grace",
        "10s",
    ]);
    wait_served(&capstan, http);
    let master: u32 = std::fs::read_to_string(capstan.state_dir.join("run/haproxy.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let in_flight = std::thread::spawn(move || http_get(http, "/slow", "localhost"));
    wait_until(
        "the slow request at the backend",
        Duration::from_secs(10),
        || slow.received() == 1,
    );
    let term = Command::new("kill")
        .arg(capstan.pid().to_string())
        .status()
        .unwrap();
    assert!(term.success());

    // Listeners close at once; the request in flight still gets its answer.
    wait_until("HTTP connections refused", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", http)).is_err()
    });
    assert_eq!(
        in_flight.join().unwrap(),
        Some((200, "S /slow".to_string()))
    );
    capstan.stop_capstan();
    assert!(
        !std::path::Path::new(&format!("/proc/{master}")).exists(),
        "the HAProxy master {master} still runs"
    );
    assert!(TcpStream::connect(("127.0.0.1", http)).is_err());
    assert!(
        capstan.log().contains("HAProxy stopped"),
        "{}",
        capstan.log()
    );
}

#[test]
fn a_stop_grace_longer_than_haproxy_lets_a_soft_stop_last_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["serve", "--stop-grace", "45s"])
        .output()
        .expect("capstan runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let said = text(&out.stderr);
    assert!(
        said.contains("at most 30s: HAProxy's hard-stop-after closes every connection then"),
        "{said}"
    );
}
