//! capstan as Swarm operators run it: the image `scripts/build-image`
//! makes, deployed with the example stack file and as a service of three
//! replicas, on this machine's real Swarm, with real traffic through each
//! replica's HAProxy to a real service's tasks.
//!
//! This kernel has no IPVS: ports are published in host mode, and the
//! replicas of one service are reached on their task addresses from a
//! container on the overlay (`Anchor`).

#[path = "support/stack.rs"]
#[allow(dead_code)]
mod stack;
mod support;
#[path = "support/swarm.rs"]
#[allow(dead_code)]
mod swarm_rig;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use stack::*;
use support::{free_port, wait_until};
use swarm_rig::*;

/// The API token the stack's secret holds.
const TOKEN: &str = "stack-test-token";

/// Swarm secrets `<prefix>_<name>`, removed on drop.
struct Secrets(Vec<String>);

impl Secrets {
    fn create(prefix: &str, secrets: &[(&str, &str)]) -> Self {
        let mut created = Secrets(Vec::new());
        for (name, value) in secrets {
            let name = format!("{prefix}_{name}");
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), value).unwrap();
            let path = file.path().to_str().unwrap();
            docker(&["secret", "create", &name, path]);
            created.0.push(name);
        }
        created
    }
}

impl Drop for Secrets {
    fn drop(&mut self) {
        for name in &self.0 {
            // A secret is in use until its services' tasks are gone.
            let deadline = Instant::now() + Duration::from_secs(30);
            while try_docker(&["secret", "rm", name]).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// A deployed stack, removed on drop (with the config objects its
/// overrides left).
struct Stack {
    name: String,
}

impl Stack {
    fn deploy(files: &[&Path], env: &[(&str, String)]) -> Self {
        let name = unique_name("stack");
        let mut command = Command::new("docker");
        command.args(["stack", "deploy", "--resolve-image", "never"]);
        for file in files {
            command.arg("-c").arg(file);
        }
        command.arg(&name);
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let out = command.output().expect("docker stack deploy runs");
        let stack = Stack { name };
        assert!(
            out.status.success(),
            "docker stack deploy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stack
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = try_docker(&["stack", "rm", &self.name]);
        remove_overrides(&format!("{}_proxy", self.name));
    }
}

#[test]
fn the_example_stack_serves_the_books_go_demo_through_its_published_ports() {
    let image = build_image();
    let network = OverlayNetwork::create();
    let prefix = unique_name("secret");
    let _secrets = Secrets::create(
        &prefix,
        &[("api_token", TOKEN), ("webhook_secret", "webhook-secret")],
    );
    let remote = TaskRemote::new("version: 1\nroutes: []\n");
    let (http, api) = (free_port(), free_port());
    let stack = Stack::deploy(
        &[&repo().join("examples/swarm/stack.yml")],
        &[
            ("CAPSTAN_IMAGE", image.into()),
            ("DOCKER_GID", docker_gid()),
            ("CAPSTAN_REPO", remote.url.clone()),
            ("CAPSTAN_NETWORK", network.name.clone()),
            ("CAPSTAN_SECRET_PREFIX", prefix.clone()),
            ("CAPSTAN_HTTP_PORT", http.to_string()),
            ("CAPSTAN_HTTPS_PORT", free_port().to_string()),
            ("CAPSTAN_API_PORT", api.to_string()),
        ],
    );
    let go_demo = go_demo(&network);
    let api_addr = SocketAddr::from(([127, 0, 0, 1], api));
    wait_until("the proxy in sync", Duration::from_secs(90), || {
        host_http_get(api_addr, "/v1/status").is_ok_and(|body| json(&body)["in_sync"] == true)
    });
    let status = json(&host_http_get(api_addr, "/v1/status").unwrap());
    assert_eq!(
        status["replica"]["service_name"],
        format!("{}_proxy", stack.name),
        "{status:#}"
    );

    // The book's call, with the stack's API token.
    let url = format!(
        "http://127.0.0.1:{api}/v1/docker-flow-proxy/reconfigure?serviceName={}&servicePath=/demo&port=8080",
        go_demo.name
    );
    let unauthorized = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]);
    assert_eq!(unauthorized, "401", "the API token is required");
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let answer = json(&curl(&["-s", "-H", &bearer, &url]));
    assert_eq!(answer["Status"], "OK", "{answer:#}");

    // Requests through the published HTTP port reach all 3 tasks.
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http));
    let mut tasks = BTreeSet::new();
    wait_until("go-demo's 3 tasks answer", Duration::from_secs(30), || {
        if let Ok(body) = host_http_get(http_addr, "/demo/hello") {
            tasks.extend(task_of(&body));
        }
        tasks.len() == 3
    });
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_replicas_share_overrides_and_commits_and_outlive_their_tasks() {
    let image = build_image();
    let network = OverlayNetwork::create();
    let anchor = Anchor::start(&network.name);
    let go_demo = go_demo(&network);
    let remote = TaskRemote::new("version: 1\nroutes: []\n");
    let proxy = proxy_replicas(image, &network, &remote);
    let _overrides = OverridesGroup(proxy.name.clone());
    let first = replicas(&proxy.name, &network.name, 3, &[]);
    for (_, ip) in &first {
        wait_until("a replica in sync", Duration::from_secs(60), || {
            replica_status(&anchor, *ip).is_some_and(|s| s["in_sync"] == true)
        });
    }

    // A reconfigure sent to one replica is served by all three.
    let call = format!(
        "/v1/docker-flow-proxy/reconfigure?serviceName={}&servicePath=/demo&port=8080",
        go_demo.name
    );
    let answer = json(&anchor.http_get(first[0].1, 8080, &call).unwrap());
    assert_eq!(answer["Status"], "OK", "{answer:#}");
    wait_serving(&anchor, &first, "/demo/hello");

    // A push with its webhook delivered to one replica: all three apply the
    // commit, and render the same config. (The route is named: git's route
    // `<go-demo>:8080` would be replaced by the override.)
    let commit = remote.remote.push(&format!(
        "version: 1\nroutes:\n  - service: {}\n    name: from-git\n    port: 8080\n    paths: [/git]\n",
        go_demo.name
    ));
    let hook = format!("http://{}:8080/v1/webhook/git", first[1].1);
    let code = anchor
        .command("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-d",
            "{}",
        ])
        .arg(&hook)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&code.stdout), "202");
    let applied = wait_serving(&anchor, &first, "/git/hello");
    assert!(
        applied
            .iter()
            .all(|a| a.0 == commit.as_str() && *a == applied[0]),
        "every replica applied {commit} with the same config: {applied:?}"
    );

    // `capstan status --all-replicas` from inside a task sees all three
    // (once Swarm counts them running: their health check passed).
    let mut out = (None, String::new());
    wait_until("status --all-replicas", Duration::from_secs(60), || {
        out = docker_output(&["exec", &first[2].0, "capstan", "status", "--all-replicas"]);
        out.0 == Some(0)
    });
    assert!(out.1.contains("3 replicas, all in sync"), "{}", out.1);

    // Every task replaced: the override is still served, no manual step.
    let old: Vec<String> = first.iter().map(|(c, _)| c.clone()).collect();
    docker(&[
        "service",
        "update",
        "--detach",
        "--quiet",
        "--force",
        &proxy.name,
    ]);
    let second = replicas(&proxy.name, &network.name, 3, &old);
    wait_serving(&anchor, &second, "/demo/hello");
    wait_serving(&anchor, &second, "/git/hello");

    // A replica killed is replaced, and the new one serves the full table.
    let killed = second[0].0.clone();
    docker(&["kill", &killed]);
    let mut gone = old;
    gone.push(killed);
    let third = replicas(&proxy.name, &network.name, 3, &gone);
    let replaced: Vec<_> = third
        .iter()
        .filter(|(c, _)| !second.iter().any(|(s, _)| s == c))
        .cloned()
        .collect();
    assert_eq!(replaced.len(), 1, "{third:?}");
    wait_serving(&anchor, &replaced, "/demo/hello");
    wait_serving(&anchor, &replaced, "/git/hello");
}

/// `docker args`: (exit code, stdout and stderr).
fn docker_output(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
