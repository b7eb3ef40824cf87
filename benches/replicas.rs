//! Replicas that share one truth, measured on this machine's Swarm with the
//! release image (`scripts/build-image`, tagged capstan:bench):
//!
//! - a reconfigure sent to one of 3 replicas → served by all 3 (50 calls);
//! - a git push whose webhook reaches one replica → every replica serves
//!   the commit (10 pushes; the replicas poll git once an hour);
//! - the image's size, and each replica's resident memory (capstan and
//!   HAProxy) serving 1,000 routes.
//!
//! Run: `cargo bench --bench replicas` (root, Docker; the rig initialises a
//! one-node Swarm). Replicas are probed from threads that joined the
//! network namespace of a container on the overlay, every 5 ms.

#[path = "../tests/support/stack.rs"]
#[allow(dead_code)]
mod stack;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/swarm.rs"]
#[allow(dead_code)]
mod swarm_rig;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use stack::*;
use swarm_rig::*;

const IMAGE: &str = "capstan:bench";
const CALLS: usize = 50;
const PUSHES: usize = 10;
const ROUTES: usize = 1000;

fn main() {
    build_image_as(IMAGE, &[]).unwrap_or_else(|e| panic!("{e}"));
    let network = OverlayNetwork::create();
    let anchor = Anchor::start(&network.name);
    let go_demo = go_demo(&network);
    let task_remote = TaskRemote::new("version: 1\nroutes: []\n");
    let remote = &task_remote.remote;
    let proxy = proxy_replicas(IMAGE, &network, &task_remote);
    let _overrides = OverridesGroup(proxy.name.clone());
    let replicas = replicas(&proxy.name, &network.name, 3, &[]);
    let ips: Vec<Ipv4Addr> = replicas.iter().map(|(_, ip)| *ip).collect();
    for (_, ip) in &replicas {
        support::wait_until("a replica in sync", Duration::from_secs(90), || {
            replica_status(&anchor, *ip).is_some_and(|s| s["in_sync"] == true)
        });
    }

    // Reconfigure → served on all 3.
    let mut answered = Vec::new();
    let mut everywhere = Vec::new();
    for i in 0..CALLS {
        let path = format!("/call{i}");
        let call = format!(
            "/v1/docker-flow-proxy/reconfigure?serviceName={}&servicePath={path}&port=8080",
            go_demo.name
        );
        let started = Instant::now();
        let (called, served) = in_netns(anchor.pid, || {
            let target = ips[i % 3];
            let answer = http(SocketAddr::from((target, 8080)), "GET", &call);
            assert!(answer.contains("\"OK\""), "{answer}");
            let called = started.elapsed();
            (called, served_everywhere(anchor.pid, &ips, &path, started))
        });
        answered.push(called);
        everywhere.push(served);
    }
    report("reconfigure: the called replica answers OK", &mut answered);
    report("reconfigure: served on all 3 replicas", &mut everywhere);

    // Push + webhook to one replica → every replica serves the commit. (Routes
    // are named: git's `<go-demo>:8080` would be replaced by the override.)
    let mut pushed = Vec::new();
    for i in 0..PUSHES {
        let path = format!("/push{i}");
        remote.push(&format!(
            "version: 1\nroutes:\n  - service: {}\n    name: push{i}\n    port: 8080\n    paths: [{path}]\n",
            go_demo.name
        ));
        let started = Instant::now();
        let served = in_netns(anchor.pid, || {
            let answer = http(
                SocketAddr::from((ips[i % 3], 8080)),
                "POST",
                "/v1/webhook/git",
            );
            assert!(answer.contains("reconcile triggered"), "{answer}");
            served_everywhere(anchor.pid, &ips, &path, started)
        });
        pushed.push(served);
    }
    report(
        "git push + webhook to one replica: served on all 3",
        &mut pushed,
    );

    // Size and memory.
    let size: f64 = docker(&["image", "inspect", "--format", "{{.Size}}", IMAGE])
        .parse()
        .unwrap();
    println!("image {IMAGE}: {:.1} MB", size / 1e6);
    let routes: String = (0..ROUTES)
        .map(|i| {
            format!(
                "  - service: {}\n    name: r{i}\n    port: 8080\n    paths: [/r{i}]\n",
                go_demo.name
            )
        })
        .collect();
    let commit = remote.push(&format!("version: 1\nroutes:\n{routes}"));
    in_netns(anchor.pid, || {
        http(SocketAddr::from((ips[0], 8080)), "POST", "/v1/webhook/git")
    });
    for (container, ip) in &replicas {
        support::wait_until("1,000 routes applied", Duration::from_secs(120), || {
            replica_status(&anchor, *ip)
                .is_some_and(|s| s["applied"]["revision"]["commit"] == commit.as_str())
        });
        let (capstan, haproxy) = resident_kb(container);
        println!(
            "replica {}: {ROUTES} routes: capstan {:.1} MB, haproxy {:.1} MB resident",
            &container[..12],
            capstan as f64 / 1024.0,
            haproxy as f64 / 1024.0
        );
    }
}

/// Runs `f` on a thread in the network namespace of process `pid`.
fn in_netns<T: Send>(pid: u32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                join_netns(pid);
                f()
            })
            .join()
            .expect("the probe thread")
    })
}

fn join_netns(pid: u32) {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("the namespace");
    // SAFETY: setns only reads the descriptor; it moves this thread alone.
    let joined = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
}

/// The time from `started` until every replica in `ips` answers `path`
/// from go-demo: the slowest replica's.
fn served_everywhere(pid: u32, ips: &[Ipv4Addr], path: &str, started: Instant) -> Duration {
    let probe = format!("{path}/hello");
    std::thread::scope(|scope| {
        let probes: Vec<_> = ips
            .iter()
            .map(|ip| {
                let probe = &probe;
                scope.spawn(move || {
                    join_netns(pid);
                    let addr = SocketAddr::from((*ip, 80));
                    loop {
                        if host_http_get(addr, probe).is_ok_and(|b| b.starts_with("task=")) {
                            return started.elapsed();
                        }
                        assert!(
                            started.elapsed() < Duration::from_secs(60),
                            "{probe} on {ip}"
                        );
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
            .collect();
        probes
            .into_iter()
            .map(|p| p.join().expect("a probe"))
            .max()
            .unwrap()
    })
}

/// One request; the whole response.
fn http(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(130)))
        .unwrap();
    let body = if method == "POST" { "{}" } else { "" };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Resident kB of the container's capstan and of its HAProxy processes.
fn resident_kb(container: &str) -> (u64, u64) {
    let init: u32 = docker(&["inspect", "--format", "{{.State.Pid}}", container])
        .parse()
        .unwrap();
    let (mut capstan, mut haproxy) = (0, 0);
    let mut queue = vec![init];
    while let Some(pid) = queue.pop() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        let rss: u64 = field("VmRSS:")
            .and_then(|v| v.trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0);
        match field("Name:").as_deref() {
            Some("capstan") => capstan += rss,
            Some("haproxy") => haproxy += rss,
            _ => {}
        }
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        queue.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    (capstan, haproxy)
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    println!(
        "{what}: p50 {:.0} ms, max {:.0} ms over {}",
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        samples.len()
    );
}
