//! `capstan::sources::swarm` against a real single-node Swarm on this machine's Docker
//! Engine: services of the `capstan-test-http` image (built FROM scratch by
//! `scripts/swarm-test-setup`, which the rig runs) are created, scaled and
//! removed with the docker CLI and observed through `Swarm` (bollard).
//!
//! Fails, never skips, when Docker is missing or does not answer.

#[path = "support/swarm.rs"]
#[allow(dead_code)] // the rig serves tests/swarm_routes.rs too
mod swarm_rig;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use capstan::sources::labels::dfp_label_params;
use capstan::sources::swarm::Swarm;
use capstan::sources::swarm_snapshot::{
    EndpointMode, ServiceInfo, ServiceMode, TaskAddress, running_addresses,
};
use swarm_rig::*;
use tokio::sync::mpsc;

async fn connect() -> Swarm {
    setup();
    Swarm::connect()
        .await
        .unwrap_or_else(|e| panic!("Swarm::connect: {e}"))
}

/// The service called `name` in a fresh snapshot, if it exists.
async fn service(swarm: &Swarm, name: &str) -> Option<ServiceInfo> {
    let state = swarm.snapshot().await.expect("snapshot");
    state.services.get(name).cloned()
}

/// Waits until `name` has exactly `n` running (not draining) addresses on
/// `network`; returns them and every draining address seen meanwhile.
async fn wait_for_running(
    swarm: &Swarm,
    name: &str,
    network: &str,
    n: usize,
) -> (Vec<TaskAddress>, Vec<TaskAddress>) {
    let mut draining_seen = Vec::new();
    let networks = [network.to_string()];
    let live = eventually(
        &format!("{n} running tasks of {name}"),
        Duration::from_secs(30),
        async || {
            let svc = service(swarm, name).await?;
            let addrs = running_addresses(&svc, &networks);
            let (draining, live): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| a.draining);
            for d in draining {
                if !draining_seen.contains(&d) {
                    draining_seen.push(d);
                }
            }
            (live.len() == n).then_some(live)
        },
    )
    .await;
    (live, draining_seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_scale_watch_and_remove_a_service() {
    let swarm = connect().await;
    let network = OverlayNetwork::create();

    let (tx, mut wakeups) = mpsc::channel(1);
    let watcher = {
        let swarm = swarm.clone();
        tokio::spawn(async move { swarm.watch(tx).await })
    };

    // Three replicas on the overlay. DNS round robin: this kernel has no
    // IPVS, so a VIP would accept nothing (tasks are addressed one by one
    // anyway). Tasks keep serving 1.5 s after SIGTERM, to be seen draining.
    let created = Instant::now();
    let svc = TestService::create(
        "web",
        &[
            "--network",
            &network.name,
            "--replicas",
            "3",
            "--endpoint-mode",
            "dnsrr",
            "--env",
            "STOP_DELAY_MS=1500",
            "--stop-grace-period",
            "10s",
            "--label",
            "com.df.notify=true",
            "--label",
            "com.df.servicePath=/demo",
            "--label",
            "com.df.port=8080",
        ],
    );
    let (three, _) = wait_for_running(&swarm, &svc.name, &network.id, 3).await;
    eprintln!("service create -> 3 running: {:?}", created.elapsed());

    let info = service(&swarm, &svc.name).await.expect("service listed");
    assert_eq!(info.mode, ServiceMode::Replicated { replicas: 3 });
    assert_eq!(info.endpoint_mode, EndpointMode::Dnsrr);
    assert_eq!(info.networks, vec![network.id.clone()]);
    let state = swarm.snapshot().await.unwrap();
    let net = state
        .networks
        .values()
        .find(|n| n.name == network.name)
        .expect("network listed");
    assert_eq!(
        (net.id.as_str(), net.driver.as_str()),
        (network.id.as_str(), "overlay")
    );
    assert_eq!(net.scope, "swarm");
    let slots: Vec<_> = three.iter().map(|a| a.slot).collect();
    assert_eq!(slots, vec![Some(1), Some(2), Some(3)]);

    let params = dfp_label_params(&info).expect("com.df.notify=true");
    for pair in [
        ("serviceName", svc.name.as_str()),
        ("servicePath", "/demo"),
        ("port", "8080"),
    ] {
        assert!(
            params.contains(&(pair.0.to_string(), pair.1.to_string())),
            "{pair:?} missing from {params:?}"
        );
    }

    // Every task answers on its overlay IP, as itself: from a process in
    // the network namespace of a container on the overlay.
    let anchor = Anchor::start(&network.name);
    for address in &three {
        let body = anchor
            .http_get(address.ip, PORT, "/probe")
            .unwrap_or_else(|e| panic!("task {} at {}: {e}", address.task_id, address.ip));
        assert_eq!(body, format!("task={} path=/probe\n", address.task_id));
    }
    // The host's own namespace has no route to the overlay (reported, not
    // asserted: it depends on the host, not on capstan).
    let direct = host_http_get(SocketAddr::from((three[0].ip, PORT)), "/probe");
    eprintln!(
        "host namespace -> overlay task IP {}: {direct:?}",
        three[0].ip
    );
    // A host binary run in the anchor's namespace (as capstan's HAProxy
    // could be) is reachable from the host at the anchor's gateway address.
    let in_netns = KillOnDrop(
        anchor
            .command(test_server_binary())
            .env("PORT", "9080")
            .env("TASK_ID", "in-netns")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nsenter the test server into the anchor"),
    );
    let gateway = SocketAddr::from((anchor.gateway_ip(), 9080));
    let body = eventually(
        "the server in the anchor's namespace",
        Duration::from_secs(5),
        async || host_http_get(gateway, "/via-gateway").ok(),
    )
    .await;
    assert_eq!(body, "task=in-netns path=/via-gateway\n");
    drop(in_netns);

    // Scale to 5: a wake-up comes quickly, then 5 addresses.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while wakeups.try_recv().is_ok() {}
    let scaled = Instant::now();
    svc.scale(5);
    tokio::time::timeout(Duration::from_secs(5), wakeups.recv())
        .await
        .expect("a wake-up within 5 s of scaling")
        .expect("watch still running");
    eprintln!("scale to 5 -> wake-up: {:?}", scaled.elapsed());
    let (five, _) = wait_for_running(&swarm, &svc.name, &network.id, 5).await;
    eprintln!("scale to 5 -> 5 running: {:?}", scaled.elapsed());
    assert!(
        three.iter().all(|a| five.contains(a)),
        "the first 3 tasks kept their addresses"
    );
    let mut ips: Vec<Ipv4Addr> = five.iter().map(|a| a.ip).collect();
    ips.dedup();
    assert_eq!(ips.len(), 5);

    // Scale to 0: the tasks are seen draining (stopping but still serving),
    // then gone.
    let emptied = Instant::now();
    svc.scale(0);
    let (none, draining) = wait_for_running(&swarm, &svc.name, &network.id, 0).await;
    assert!(none.is_empty());
    eventually(
        "no draining task left",
        Duration::from_secs(20),
        async || {
            let svc = service(&swarm, &svc.name).await?;
            running_addresses(&svc, std::slice::from_ref(&network.id))
                .is_empty()
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "scale to 0 -> empty: {:?} ({} addresses seen draining)",
        emptied.elapsed(),
        draining.len()
    );
    assert!(
        !draining.is_empty(),
        "tasks that keep serving 1.5 s after SIGTERM were never seen draining"
    );
    assert!(
        draining
            .iter()
            .all(|d| five.iter().any(|a| a.task_id == d.task_id))
    );

    // Removed: gone from the snapshot, and the watcher said so.
    while wakeups.try_recv().is_ok() {}
    svc.remove();
    tokio::time::timeout(Duration::from_secs(5), wakeups.recv())
        .await
        .expect("a wake-up within 5 s of the removal")
        .expect("watch still running");
    eventually(
        "the service to disappear",
        Duration::from_secs(10),
        async || service(&swarm, &svc.name).await.is_none().then_some(()),
    )
    .await;

    // Dropping the receiver ends `watch`.
    drop(wakeups);
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("watch returns once nobody listens")
        .expect("watch did not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mode_published_ports_reach_tasks_from_the_host() {
    let swarm = connect().await;
    let svc = TestService::create(
        "hostport",
        &["--replicas", "2", "--publish", "mode=host,target=8080"],
    );
    let tasks = eventually("2 running tasks", Duration::from_secs(30), async || {
        let info = service(&swarm, &svc.name).await?;
        let running: Vec<String> = info
            .tasks
            .iter()
            .filter(|t| t.state == "running" && t.desired_state == "running")
            .map(|t| t.id.clone())
            .collect();
        (running.len() == 2).then_some(running)
    })
    .await;
    for task in tasks {
        // Swarm picks a free host port per task (PortStatus).
        let port = docker(&[
            "inspect",
            "--format",
            "{{with index .Status.PortStatus.Ports 0}}{{.PublishedPort}}{{end}}",
            &task,
        ]);
        let port: u16 = port
            .parse()
            .unwrap_or_else(|_| panic!("published port {port:?}"));
        let body = host_http_get(SocketAddr::from(([127, 0, 0, 1], port)), "/published")
            .unwrap_or_else(|e| panic!("task {task} on host port {port}: {e}"));
        assert_eq!(body, format!("task={task} path=/published\n"));
    }
}
