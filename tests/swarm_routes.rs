//! Routes to Swarm services end to end, on a real one-node Swarm: capstan
//! reads the services' tasks through bollard and HAProxy balances over every
//! replica; scaling changes servers at run time, without reloads.
//!
//! Swarm's overlay addresses are not reachable from the host here (and the
//! kernel has no IPVS for VIPs), so HAProxy runs in the network namespace of
//! a container on the overlay (an "anchor"), as a proxy container would; its
//! sockets and files stay on the host, and the test reaches its listener at
//! the anchor's docker_gwbridge address.

mod support;
#[path = "support/swarm.rs"]
#[allow(dead_code)] // the rig serves tests/swarm.rs too
mod swarm_rig;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use support::{Capstan, GitRemote, free_port, wait_until};
use swarm_rig::{Anchor, OverlayNetwork, TestService, host_http_get, setup};

/// The task id in a test server's answer (`task=<id> path=...`).
fn task_of(body: &str) -> Option<String> {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("task="))
        .map(str::to_string)
}

fn routes(http: u16, services: &[(&str, &str)]) -> String {
    let mut text = format!("version: 1\ndefaults:\n  http_port: {http}\nroutes:\n");
    for (service, path) in services {
        text.push_str(&format!(
            "  - service: {service}\n    port: {}\n    paths: [{path}]\n",
            swarm_rig::PORT
        ));
    }
    text
}

/// The tasks that answered `count` requests for `path`.
fn answering_tasks(proxy: SocketAddr, path: &str, count: usize) -> BTreeSet<String> {
    (0..count)
        .filter_map(|_| host_http_get(proxy, path).ok())
        .filter_map(|body| task_of(&body))
        .collect()
}

#[test]
fn replicas_are_balanced_and_scaling_never_reloads() {
    setup();
    support::require_tools();
    let network = OverlayNetwork::create();
    let web = TestService::create(
        "web",
        &[
            "--network",
            &network.name,
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            "3",
        ],
    );
    let api = TestService::create(
        "api",
        &[
            "--network",
            &network.name,
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            "1",
        ],
    );
    // Routed by its Docker Flow Swarm Listener labels, not by git.
    let labelled = TestService::create(
        "lbl",
        &[
            "--network",
            &network.name,
            "--endpoint-mode",
            "dnsrr",
            "--label",
            "com.df.notify=true",
            "--label",
            "com.df.servicePath=/lbl",
            "--label",
            "com.df.port=8080",
        ],
    );
    let anchor = Anchor::start(&network.name);
    let bin = tempfile::tempdir().unwrap();
    let haproxy = anchor.haproxy_wrapper(bin.path());
    let http = free_port();
    let proxy = SocketAddr::from((anchor.gateway_ip(), http));

    let remote = GitRemote::new();
    remote.push(&routes(http, &[(&web.name, "/web"), (&api.name, "/api")]));
    let capstan = Capstan::start(&[
        "--repo",
        &remote.url(),
        "--poll-interval",
        "1h",
        "--swarm",
        "--swarm-network",
        &network.name,
        "--swarm-labels",
        "--haproxy",
        haproxy.to_str().unwrap(),
    ]);

    wait_until(
        "the labelled service answering",
        Duration::from_secs(60),
        || answering_tasks(proxy, "/lbl", 1).len() == 1,
    );
    let label_routes = capstan.status()["label_routes"].clone();
    assert_eq!(
        label_routes,
        serde_json::json!([format!("{}:8080", labelled.name)])
    );

    // Three replicas: HAProxy round-robins over all three tasks.
    wait_until("3 web tasks answering", Duration::from_secs(60), || {
        answering_tasks(proxy, "/web", 9).len() == 3
    });
    wait_until("the api answering", Duration::from_secs(30), || {
        answering_tasks(proxy, "/api", 1).len() == 1
    });
    let reloads = capstan.haproxy_reloads();

    // Scale to 5: new servers at run time, no reload.
    web.scale(5);
    wait_until("5 web tasks answering", Duration::from_secs(60), || {
        answering_tasks(proxy, "/web", 15).len() == 5
    });
    assert_eq!(
        capstan.haproxy_reloads(),
        reloads,
        "scaling up must not reload"
    );

    // Scale to 0: reported, and the other route keeps serving.
    web.scale(0);
    wait_until(
        "web reported without tasks",
        Duration::from_secs(60),
        || {
            let status = capstan.status();
            status["warnings"].as_array().is_some_and(|w| {
                w.iter().any(|w| {
                    w["message"]
                        .as_str()
                        .unwrap_or("")
                        .contains("no running task")
                })
            })
        },
    );
    // A pull request's live diff shows the Swarm-side problem with its route.
    let (_, report) = capstan.diff_live(&remote.dir.path().join("work"));
    assert_eq!(
        report["warnings"][0]["route"],
        format!("{}:8080", web.name),
        "{report:#}"
    );
    wait_until("web gone from HAProxy", Duration::from_secs(30), || {
        answering_tasks(proxy, "/web", 3).is_empty()
    });
    assert_eq!(
        answering_tasks(proxy, "/api", 3).len(),
        1,
        "the api still serves"
    );
    assert_eq!(
        capstan.haproxy_reloads(),
        reloads,
        "scaling to 0 must not reload"
    );

    // Removed: reported as missing; still nothing else affected.
    web.remove();
    wait_until("web reported missing", Duration::from_secs(60), || {
        let status = capstan.status();
        status["warnings"].as_array().is_some_and(|w| {
            w.iter().any(|w| {
                w["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("does not exist")
            })
        })
    });
    assert_eq!(
        answering_tasks(proxy, "/api", 3).len(),
        1,
        "the api still serves"
    );
    drop(capstan);
    drop((api, labelled));
}

#[test]
fn a_rolling_update_drops_no_request() {
    setup();
    support::require_tools();
    let network = OverlayNetwork::create();
    // Tasks keep serving 3 s after Swarm stops them, as a graceful server
    // would: time for capstan to drain them first.
    let web = TestService::create(
        "roll",
        &[
            "--network",
            &network.name,
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            "3",
            "--env",
            "STOP_DELAY_MS=3000",
            "--stop-grace-period",
            "10s",
        ],
    );
    let anchor = Anchor::start(&network.name);
    let bin = tempfile::tempdir().unwrap();
    let haproxy = anchor.haproxy_wrapper(bin.path());
    let http = free_port();
    let proxy = SocketAddr::from((anchor.gateway_ip(), http));
    let remote = GitRemote::new();
    remote.push(&routes(http, &[(&web.name, "/web")]));
    let capstan = Capstan::start(&[
        "--repo",
        &remote.url(),
        "--poll-interval",
        "1h",
        "--swarm",
        "--swarm-network",
        &network.name,
        "--haproxy",
        haproxy.to_str().unwrap(),
    ]);
    wait_until("3 tasks answering", Duration::from_secs(60), || {
        answering_tasks(proxy, "/web", 9).len() == 3
    });
    let before = answering_tasks(proxy, "/web", 9);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match host_http_get(proxy, "/web").ok().and_then(|b| task_of(&b)) {
                    Some(_) => ok.fetch_add(1, Ordering::Relaxed),
                    None => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    swarm_rig::docker(&[
        "service",
        "update",
        "--detach",
        "--quiet",
        "--env-add",
        "VERSION=2",
        "--update-parallelism",
        "1",
        "--update-delay",
        "1s",
        &web.name,
    ]);
    wait_until("every task replaced", Duration::from_secs(120), || {
        let now = answering_tasks(proxy, "/web", 9);
        now.len() == 3 && now.is_disjoint(&before)
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("rolling update: {ok} requests answered, {failed} failed");
    assert!(ok > 0);
    assert_eq!(failed, 0, "requests failed during the rolling update");
    drop(capstan);
}
