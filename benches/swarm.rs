//! Scaling a Swarm service behind capstan: the time from `docker service
//! scale` to HAProxy serving from exactly the new set of tasks, and the
//! reloads over 20 scale events (the target is none).
//!
//! Run: `cargo bench --bench swarm` (root, Docker with Swarm; the rig
//! initialises a one-node Swarm and builds the test image).

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/swarm_proxy.rs"]
mod swarm_proxy;
#[path = "../tests/support/swarm.rs"]
#[allow(dead_code)]
mod swarm_rig;

use std::time::{Duration, Instant};

use support::wait_until;
use swarm_proxy::SwarmProxy;

fn main() {
    let stand = SwarmProxy::new();
    let web = stand.service("bench", 2, &[]);
    stand.push_routes(&[(&web.name, "/web")]);
    let capstan = stand.capstan(&[]);
    wait_until("2 tasks serving", Duration::from_secs(60), || {
        stand.answering("/web", 8).len() == 2
    });
    let reloads = capstan.haproxy_reloads();
    let mut samples = Vec::new();
    for (i, replicas) in [3usize, 5, 4, 2, 6, 3, 5, 2, 4, 6]
        .iter()
        .cycle()
        .take(20)
        .enumerate()
    {
        let started = Instant::now();
        web.scale(*replicas as u32);
        wait_until(
            &format!("scale event {i}: {replicas} tasks"),
            Duration::from_secs(60),
            || stand.answering("/web", replicas * 3).len() == *replicas,
        );
        let elapsed = started.elapsed().as_secs_f64();
        println!("  scale to {replicas}: {elapsed:.2} s");
        samples.push(elapsed);
    }
    let reloads = capstan.haproxy_reloads() - reloads;
    samples.sort_by(f64::total_cmp);
    println!(
        "20 scale events: scale → served from exactly the new tasks: median {:.2} s, max {:.2} s; {reloads} reloads",
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
}
