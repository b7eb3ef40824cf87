//! Routes to Swarm services end to end, on a real one-node Swarm: capstan
//! reads the services' tasks through bollard and HAProxy balances over every
//! replica; scaling changes servers at run time, without reloads.
//!
//! Swarm's overlay addresses are not reachable from the host here (and the
//! kernel has no IPVS for VIPs), so HAProxy runs in the network namespace of
//! a container on the overlay (an "anchor"), as a proxy container would; its
//! sockets and files stay on the host, and the test reaches its listener at
//! the anchor's docker_gwbridge address (see `support/swarm_proxy.rs`).

mod support;
#[path = "support/swarm_proxy.rs"]
mod swarm_proxy;
#[path = "support/swarm.rs"]
#[allow(dead_code)] // the rig serves tests/swarm.rs too
mod swarm_rig;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use support::{Capstan, wait_until};
use swarm_proxy::{SwarmProxy, task_of};
use swarm_rig::host_http_get;

/// Waits until status warns about a route with a message containing `what`.
fn wait_for_warning(capstan: &Capstan, what: &str) {
    wait_until(
        &format!("a warning: {what}"),
        Duration::from_secs(60),
        || {
            capstan.status()["warnings"].as_array().is_some_and(|w| {
                w.iter()
                    .any(|w| w["message"].as_str().unwrap_or("").contains(what))
            })
        },
    );
}

#[test]
fn replicas_are_balanced_and_scaling_never_reloads() {
    let stand = SwarmProxy::new();
    let web = stand.service("web", 3, &[]);
    let api = stand.service("api", 1, &[]);
    // Routed by its Docker Flow Swarm Listener labels, not by git.
    let labelled = stand.service(
        "lbl",
        1,
        &[
            "--label",
            "com.df.notify=true",
            "--label",
            "com.df.servicePath=/lbl",
            "--label",
            "com.df.port=8080",
        ],
    );
    stand.push_routes(&[(&web.name, "/web"), (&api.name, "/api")]);
    let capstan = stand.capstan(&["--swarm-labels"]);

    wait_until(
        "the labelled service answering",
        Duration::from_secs(60),
        || stand.answering("/lbl", 1).len() == 1,
    );
    let label_routes = capstan.status()["label_routes"].clone();
    assert_eq!(
        label_routes,
        serde_json::json!([format!("{}:8080", labelled.name)])
    );

    // Three replicas: HAProxy round-robins over all three tasks.
    wait_until("3 web tasks answering", Duration::from_secs(60), || {
        stand.answering("/web", 9).len() == 3
    });
    // The dashboard's routes say which task and node is behind each server:
    // the tasks that answered, on this node, by its host name.
    let answered = stand.answering("/web", 9);
    assert_eq!(answered.len(), 3, "{answered:?}");
    let node = swarm_rig::docker(&[
        "node",
        "inspect",
        "self",
        "--format",
        "{{.Description.Hostname}}",
    ]);
    wait_until(
        "the web tasks in /v1/routes",
        Duration::from_secs(30),
        || {
            let (_, body) = capstan.get("/v1/routes");
            let view: serde_json::Value = serde_json::from_str(&body).unwrap();
            let Some(route) = view["routes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["service"] == web.name.as_str())
            else {
                return false;
            };
            let tasks: std::collections::BTreeSet<String> = route["servers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["status"] == "UP" && s["task"]["node_hostname"] == node.as_str())
                .filter_map(|s| s["task"]["id"].as_str().map(str::to_string))
                .collect();
            tasks == answered
        },
    );
    wait_until("the api answering", Duration::from_secs(30), || {
        stand.answering("/api", 1).len() == 1
    });
    let reloads = capstan.haproxy_reloads();

    // Scale to 5: new servers at run time, no reload.
    web.scale(5);
    wait_until("5 web tasks answering", Duration::from_secs(60), || {
        stand.answering("/web", 15).len() == 5
    });
    assert_eq!(
        capstan.haproxy_reloads(),
        reloads,
        "scaling up must not reload"
    );

    // Scale to 0: reported, and the other route keeps serving.
    web.scale(0);
    wait_for_warning(&capstan, "no running task");
    // A pull request's live diff shows the Swarm-side problem with its route.
    let (_, report) = capstan.diff_live(&stand.remote.dir.path().join("work"));
    assert_eq!(
        report["warnings"][0]["route"],
        format!("{}:8080", web.name),
        "{report:#}"
    );
    wait_until("web gone from HAProxy", Duration::from_secs(30), || {
        stand.answering("/web", 3).is_empty()
    });
    assert_eq!(stand.answering("/api", 3).len(), 1, "the api still serves");
    assert_eq!(
        capstan.haproxy_reloads(),
        reloads,
        "scaling to 0 must not reload"
    );

    // Removed: reported as missing; still nothing else affected.
    web.remove();
    wait_for_warning(&capstan, "does not exist");
    assert_eq!(stand.answering("/api", 3).len(), 1, "the api still serves");
}

#[test]
fn a_rolling_update_drops_no_request() {
    let stand = SwarmProxy::new();
    // Tasks keep serving 3 s after Swarm stops them, as a graceful server
    // would: time for capstan to drain them first.
    let web = stand.service(
        "roll",
        3,
        &["--env", "STOP_DELAY_MS=3000", "--stop-grace-period", "10s"],
    );
    stand.push_routes(&[(&web.name, "/web")]);
    let _capstan = stand.capstan(&[]);
    wait_until("3 tasks answering", Duration::from_secs(60), || {
        stand.answering("/web", 9).len() == 3
    });
    let before = stand.answering("/web", 9);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, failed, proxy) = (stop.clone(), ok.clone(), failed.clone(), stand.proxy);
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
        let now = stand.answering("/web", 9);
        now.len() == 3 && now.is_disjoint(&before)
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("rolling update: {ok} requests answered, {failed} failed");
    assert!(ok > 0);
    assert_eq!(failed, 0, "requests failed during the rolling update");
}

#[test]
fn a_new_service_and_a_removed_one_change_no_reload() {
    let stand = SwarmProxy::new();
    let web = stand.service("web", 1, &[]);
    let api = stand.service("api", 2, &[]);
    stand.push_routes(&[(&web.name, "/web")]);
    let capstan = stand.capstan(&[]);
    wait_until("web answering", Duration::from_secs(60), || {
        stand.answering("/web", 1).len() == 1
    });
    let reloads = capstan.haproxy_reloads();
    let webhook = || {
        support::http_post(
            capstan.api_port,
            "/v1/webhook/git",
            r#"{"ref":"refs/heads/main"}"#,
        )
    };

    // A new service: served by both its tasks through a spare backend.
    let commit = stand.push_routes(&[(&web.name, "/web"), (&api.name, "/api")]);
    webhook();
    support::wait_applied(&capstan, &commit);
    wait_until("2 api tasks answering", Duration::from_secs(60), || {
        stand.answering("/api", 6).len() == 2
    });
    let last = &capstan.status()["history"][0];
    assert_eq!(last["method"], "runtime", "{last:#}");
    assert_eq!(last["changes"][0]["kind"], "lend_spare_backend", "{last:#}");
    // Scaled: more servers in the spare's slots, still no reload.
    api.scale(3);
    wait_until("3 api tasks answering", Duration::from_secs(60), || {
        stand.answering("/api", 9).len() == 3
    });

    // Removed: gone, web untouched.
    let commit = stand.push_routes(&[(&web.name, "/web")]);
    webhook();
    support::wait_applied(&capstan, &commit);
    assert!(stand.answering("/api", 3).is_empty(), "the api is gone");
    assert_eq!(stand.answering("/web", 2).len(), 1, "web still serves");
    assert_eq!(
        capstan.haproxy_reloads(),
        reloads,
        "a new service, a scale and a removal must not reload"
    );
}
