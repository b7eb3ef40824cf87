//! Replicas that share one truth, on the host: several `capstan serve`
//! with `--overrides swarm:<group>` keep their overrides in this machine's
//! real Swarm (config objects), each driving its own real HAProxy.
//!
//! Replica `n` reads `routes-<n>.yaml` of one git repository: the same
//! routes on its own HTTP port, so that the traffic through each replica's
//! HAProxy shows what that replica serves. `swarm_stack.rs` runs replicas
//! as Swarm tasks of one image instead.

mod support;
#[path = "support/swarm.rs"]
#[allow(dead_code)]
mod swarm_rig;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Replicas of one group on one git remote.
struct Stand {
    group: Group,
    remote: GitRemote,
    /// Each replica's HTTP port, by replica number.
    ports: Vec<u16>,
}

impl Stand {
    fn new(replicas: usize) -> Self {
        require_tools();
        Stand {
            group: Group::new(),
            remote: GitRemote::new(),
            ports: (0..replicas).map(|_| free_port()).collect(),
        }
    }

    /// Pushes `routes(port)` as every replica's file; returns the commit.
    fn push(&self, routes: impl Fn(u16) -> String) -> String {
        let files: Vec<(String, String)> = self
            .ports
            .iter()
            .enumerate()
            .map(|(n, port)| (format!("routes-{n}.yaml"), routes(*port)))
            .collect();
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str()))
            .collect();
        self.remote.push_files(&files)
    }

    /// Starts replica `n` with a fresh state dir (as a rescheduled task has).
    fn replica(&self, n: usize) -> Capstan {
        let url = self.remote.url();
        let file = format!("routes-{n}.yaml");
        let overrides = format!("swarm:{}", self.group.0);
        Capstan::start(&[
            "--repo",
            &url,
            "--file",
            &file,
            "--poll-interval",
            "1h",
            "--overrides",
            &overrides,
        ])
    }
}

/// The group's config objects, removed when the test ends.
struct Group(String);

impl Group {
    fn new() -> Self {
        swarm_rig::setup();
        Group(swarm_rig::unique_name("group"))
    }

    fn configs(&self) -> Vec<String> {
        let filter = format!("label=org.capstan.group={}", self.0);
        swarm_rig::docker(&["config", "ls", "-q", "--filter", &filter])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for id in self.configs() {
            let _ = swarm_rig::try_docker(&["config", "rm", &id]);
        }
    }
}

fn reconfigure(capstan: &Capstan, query: &str) -> (u16, Value) {
    let (code, body) = capstan.get(&format!("/v1/docker-flow-proxy/reconfigure?{query}"));
    let value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (code, value)
}

/// The services `capstan` has overrides for, and whether it is in sync.
fn overrides(capstan: &Capstan) -> (Vec<String>, bool) {
    let status = capstan.status();
    let services = status["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["service"].as_str().unwrap().to_string())
        .collect();
    (services, status["in_sync"] == true)
}

fn wait_overrides(capstan: &Capstan, services: &[&str]) {
    wait_until(
        &format!("overrides {services:?} in sync"),
        Duration::from_secs(20),
        || overrides(capstan) == (services.iter().map(|s| s.to_string()).collect(), true),
    );
}

/// Which backend answered each of `n` requests for `path` (or how it failed).
fn answers(port: u16, path: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| match http_get(port, path, "localhost") {
            Some((200, body)) => body
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn routes(http: u16, dns: &Dns) -> String {
    format!(
        "version: 1\ndefaults:\n  bind_address: 127.0.0.1\n  http_port: {http}\n  resolvers: [\"127.0.0.1:{}\"]\nroutes: []\n",
        dns.port
    )
}

#[test]
fn a_reconfigure_taken_by_one_replica_is_served_by_all_and_survives_a_new_replica() {
    let stand = Stand::new(2);
    let go_demo = Backend::start("go-demo");
    let dns = Dns::start(&["go-demo"]);
    stand.push(|port| routes(port, &dns));
    let a = stand.replica(0);
    let b = stand.replica(1);
    wait_overrides(&a, &[]);
    wait_overrides(&b, &[]);

    let (code, answer) = reconfigure(
        &a,
        &format!(
            "serviceName=go-demo&servicePath=/demo&port={}",
            go_demo.port
        ),
    );
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(answer["Status"], "OK");
    assert_eq!(answers(stand.ports[0], "/demo/x", 3), ["go-demo"; 3]);
    // B follows without being called.
    wait_overrides(&b, &["go-demo"]);
    assert_eq!(answers(stand.ports[1], "/demo/x", 3), ["go-demo"; 3]);
    assert_eq!(
        stand.group.configs().len(),
        1,
        "one config object per override"
    );

    // A task rescheduled elsewhere starts with an empty state dir: it still
    // serves the override (B's HAProxy is stopped with B first: the new
    // replica takes its port).
    drop(b);
    let c = stand.replica(1);
    wait_overrides(&c, &["go-demo"]);
    assert_eq!(answers(stand.ports[1], "/demo/x", 3), ["go-demo"; 3]);

    // Removed through the new replica: A stops serving it too.
    let (code, answer) = c.get("/v1/docker-flow-proxy/remove?serviceName=go-demo");
    assert_eq!(code, 200, "{answer}");
    wait_overrides(&a, &[]);
    for port in &stand.ports {
        let served = answers(*port, "/demo/x", 3);
        assert!(
            served.iter().all(|body| body != "go-demo"),
            "the removed override is served on port {port}: {served:?}"
        );
    }
    assert!(
        stand.group.configs().is_empty(),
        "{:?}",
        stand.group.configs()
    );
}

#[test]
fn concurrent_calls_for_one_service_end_the_same_on_every_replica() {
    let stand = Stand::new(2);
    let one = Backend::start("one");
    let two = Backend::start("two");
    let dns = Dns::start(&["shop"]);
    stand.push(|port| routes(port, &dns));
    let a = stand.replica(0);
    let b = stand.replica(1);
    wait_overrides(&a, &[]);
    wait_overrides(&b, &[]);

    // Both at once: each answers OK once it serves its own call; then the
    // later write in Swarm's log wins on both.
    let calls = [(&a, one.port), (&b, two.port)];
    std::thread::scope(|scope| {
        for (capstan, port) in calls {
            scope.spawn(move || {
                let (code, answer) = reconfigure(
                    capstan,
                    &format!("serviceName=shop&servicePath=/shop&port={port}"),
                );
                assert_eq!(code, 200, "{answer:#}");
            });
        }
    });
    // The override's route id carries the port it sends to.
    let port_of = |capstan: &Capstan| capstan.status()["overrides"][0]["adds"].to_string();
    wait_until("both replicas agree", Duration::from_secs(20), || {
        overrides(&a) == (vec!["shop".to_string()], true)
            && overrides(&b) == (vec!["shop".to_string()], true)
            && port_of(&a) == port_of(&b)
    });
    let winner = answers(stand.ports[0], "/shop/x", 1).remove(0);
    assert!(["one", "two"].contains(&winner.as_str()), "{winner}");
    for port in &stand.ports {
        assert_eq!(answers(*port, "/shop/x", 3), [winner.as_str(); 3]);
    }
    // The later writer removes the earlier object once it is written.
    wait_until(
        "the loser's object removed",
        Duration::from_secs(10),
        || stand.group.configs().len() == 1,
    );
}

#[test]
fn a_push_webhook_sent_to_one_replica_is_fetched_by_all() {
    let stand = Stand::new(3);
    let web = Backend::start("web");
    stand.push(|port| routes_yaml(port, "  []\n"));
    let replicas: Vec<Capstan> = (0..3).map(|n| stand.replica(n)).collect();
    for replica in &replicas {
        wait_overrides(replica, &[]);
    }

    let commit = stand.push(|port| routes_yaml(port, &route("web", "/web", &web.address())));
    let sent = Instant::now();
    assert_eq!(
        http_post(replicas[0].api_port, "/v1/webhook/git", "{}"),
        Some(202),
        "the webhook is accepted"
    );
    // The others poll once an hour: only the passed-on webhook makes them fetch.
    for (replica, port) in replicas.iter().zip(&stand.ports) {
        wait_applied(replica, &commit);
        eprintln!("webhook to replica 0 -> applied here: {:?}", sent.elapsed());
        assert_eq!(answers(*port, "/web/x", 3), ["web"; 3]);
    }
}
