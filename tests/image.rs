//! The capstan image on a real Swarm: built by `scripts/build-image --debug`
//! around the binary cargo built for these tests, run as a proxy service in
//! front of the test image, stopped the way Swarm stops tasks.

#[path = "support/stack.rs"]
#[allow(dead_code)]
mod stack;
mod support;
#[path = "support/swarm.rs"]
#[allow(dead_code)] // the rig serves the other Swarm tests too
mod swarm_rig;

use std::process::{Command, Stdio};
use std::time::Duration;

use stack::{build_image, containers};
use support::{free_port, http_get, wait_until};
use swarm_rig::{OverlayNetwork, PORT, TestService, docker, setup};

/// How long the in-flight request takes at the backend.
const SLOW_MS: u64 = 3000;

/// The id of the running container of `service`'s task.
fn task_container(service: &str) -> String {
    let mut id = String::new();
    wait_until(
        &format!("a running task of {service}"),
        Duration::from_secs(60),
        || {
            id = containers(service).pop().unwrap_or_default();
            !id.is_empty()
        },
    );
    id
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// What `container` printed on stderr (the test server's and capstan's logs).
fn logs(container: &str) -> String {
    let out = Command::new("docker")
        .args(["logs", container])
        .output()
        .expect("docker runs");
    text(&out.stderr)
}

#[test]
fn the_proxy_image_lets_in_flight_requests_finish_when_its_task_is_stopped() {
    setup();
    let image = build_image();
    let network = OverlayNetwork::create();
    let backend = TestService::create(
        "slow",
        &["--network", &network.name, "--endpoint-mode", "dnsrr"],
    );
    // HAProxy resolves the backend's name once, when it loads the routes.
    let backend_container = task_container(&backend.name);

    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        format!(
            "version: 1\ndefaults:\n  http_port: 80\nroutes:\n  - service: {}\n    port: {PORT}\n    paths: [/slow]\n",
            backend.name
        ),
    )
    .unwrap();
    let (http, api) = (free_port(), free_port());
    let proxy = TestService::create_of(
        image,
        "proxy",
        &[
            "--network",
            &network.name,
            "--publish",
            &format!("mode=host,target=80,published={http}"),
            "--publish",
            &format!("mode=host,target=8080,published={api}"),
            "--mount",
            &format!(
                "type=bind,source={},target=/etc/capstan/routes.yaml,readonly",
                routes.display()
            ),
            "--env",
            "CAPSTAN_ROUTES_FILE=/etc/capstan/routes.yaml",
            "--stop-grace-period",
            "15s",
            "--health-interval",
            "1s",
        ],
        &[],
    );
    let container = task_container(&proxy.name);
    wait_until(
        "the backend through the proxy",
        Duration::from_secs(60),
        || {
            http_get(http, "/slow/0", "localhost").is_some_and(|(code, body)| {
                code == 200 && body.starts_with("task=") && body.ends_with("path=/slow/0\n")
            })
        },
    );
    assert_eq!(docker(&["exec", &container, "id", "-u"]), "10001");
    wait_until("the task healthy", Duration::from_secs(60), || {
        docker(&[
            "inspect",
            "--format",
            "{{.State.Health.Status}}",
            &container,
        ]) == "healthy"
    });
    let (code, body) = http_get(api, "/healthz", "localhost").expect("the API answers");
    assert_eq!(code, 200, "{body}");

    let path = format!("/slow/{SLOW_MS}");
    let in_flight = std::thread::spawn(move || http_get(http, &path, "localhost"));
    wait_until(
        "the slow request at the backend",
        Duration::from_secs(10),
        || logs(&backend_container).contains(&format!("answering /slow/{SLOW_MS} ")),
    );
    // Followed from now on: the container goes away with its task.
    let exit_code = Command::new("docker")
        .args(["wait", &container])
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker wait runs");
    let proxy_logs = Command::new("docker")
        .args(["logs", "--follow", &container])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker logs runs");
    // `service rm`, not a scale to 0 then `service rm`: on this Engine
    // (20.10) removing a service while Swarm reaps its stopped tasks can
    // crash the daemon (a nil task in SetServiceTasksRemove).
    proxy.remove();

    let answer = in_flight.join().unwrap();
    let (code, body) = answer.expect("the in-flight request was answered");
    assert_eq!(code, 200, "{body}");
    assert!(body.ends_with(&format!("path=/slow/{SLOW_MS}\n")), "{body}");
    // Exited by itself within the grace period, not killed at its end.
    let exit_code = exit_code.wait_with_output().unwrap();
    assert_eq!(text(&exit_code.stdout), "0", "{exit_code:?}");
    let proxy_logs = proxy_logs.wait_with_output().unwrap();
    let logs = text(&proxy_logs.stderr);
    assert!(logs.contains("HAProxy stopped"), "{logs}");
}
