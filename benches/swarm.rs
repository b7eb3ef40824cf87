//! Scaling a Swarm service behind capstan: the time from `docker service
//! scale` to HAProxy serving from exactly the new set of tasks, and the
//! reloads over 20 scale events (the target is none).
//!
//! Run: `cargo bench --bench swarm` (root, Docker with Swarm; the rig
//! initialises a one-node Swarm and builds the test image).

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/swarm.rs"]
#[allow(dead_code)]
mod swarm_rig;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Capstan, GitRemote, free_port, wait_until};
use swarm_rig::{Anchor, OverlayNetwork, TestService, host_http_get, setup};

fn answering(proxy: SocketAddr, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| host_http_get(proxy, "/web").ok())
        .filter_map(|b| {
            b.split_whitespace()
                .find_map(|w| w.strip_prefix("task="))
                .map(str::to_string)
        })
        .collect()
}

fn main() {
    setup();
    support::require_tools();
    let network = OverlayNetwork::create();
    let web = TestService::create(
        "bench",
        &[
            "--network",
            &network.name,
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            "2",
        ],
    );
    let anchor = Anchor::start(&network.name);
    let bin = tempfile::tempdir().unwrap();
    let wrapper = anchor.haproxy_wrapper(bin.path());
    let http = free_port();
    let proxy = SocketAddr::from((anchor.gateway_ip(), http));
    let remote = GitRemote::new();
    remote.push(&format!(
        "version: 1\ndefaults:\n  http_port: {http}\nroutes:\n  - service: {}\n    port: {}\n    paths: [/web]\n",
        web.name,
        swarm_rig::PORT
    ));
    let capstan = Capstan::start(&[
        "--repo",
        &remote.url(),
        "--poll-interval",
        "1h",
        "--swarm",
        "--swarm-network",
        &network.name,
        "--haproxy",
        wrapper.to_str().unwrap(),
    ]);
    wait_until("2 tasks serving", Duration::from_secs(60), || {
        answering(proxy, 8).len() == 2
    });
    let reloads = capstan.haproxy_reloads();
    let mut samples = Vec::new();
    for (i, replicas) in [3, 5, 4, 2, 6, 3, 5, 2, 4, 6]
        .iter()
        .cycle()
        .take(20)
        .enumerate()
    {
        let started = Instant::now();
        web.scale(*replicas);
        wait_until(
            &format!("scale event {i}: {replicas} tasks"),
            Duration::from_secs(60),
            || answering(proxy, *replicas as usize * 3).len() == *replicas as usize,
        );
        samples.push(started.elapsed().as_secs_f64());
        println!(
            "  scale to {replicas}: {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    let reloads = capstan.haproxy_reloads() - reloads;
    samples.sort_by(f64::total_cmp);
    println!(
        "20 scale events: scale → served from exactly the new tasks: median {:.2} s, max {:.2} s; {reloads} reloads",
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
}
