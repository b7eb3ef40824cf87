//! `capstan serve` measured end to end (times start when `git push` has
//! returned), against a real git remote and a
//! real HAProxy: commit-pushed to route-served latency (webhook and
//! polling), one-route changes in 1,000- and 10,000-route tables, reloads
//! per change, and capstan's resident memory.
//!
//! Run: `cargo bench --bench serve`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::*;
use support::*;

fn main() {
    require_tools();
    let backend = Backend::start("B");
    latency(&backend);
    for size in [1_000, 10_000] {
        large_table(&backend, size);
    }
}

/// Pushes new routes and times until HAProxy answers on them.
fn latency(backend: &Backend) {
    for (mode, poll) in [("webhook", "1h"), ("polling every 1s", "1s")] {
        let http = free_port();
        let remote = GitRemote::new();
        let mut routes = route("r0", "/r0", &backend.address());
        let first = remote.push(&routes_yaml(http, &routes));
        let capstan = Capstan::start(&["--repo", &remote.url(), "--poll-interval", poll]);
        wait_applied_within(&capstan, &first, Duration::from_secs(30));
        let mut samples = Vec::new();
        for i in 1..=10 {
            routes.push_str(&route(
                &format!("r{i}"),
                &format!("/r{i}"),
                &backend.address(),
            ));
            remote.push(&routes_yaml(http, &routes));
            let started = Instant::now();
            if mode == "webhook" {
                assert_eq!(
                    http_post(
                        capstan.api_port,
                        "/v1/webhook/git",
                        r#"{"ref":"refs/heads/main"}"#
                    ),
                    Some(202)
                );
            }
            wait_for_backend(http, &format!("/r{i}"), "B");
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "push → served ({mode}): median {:.0} ms, max {:.0} ms over {} pushes",
            median(samples.clone()),
            max(&samples),
            samples.len()
        );
    }
}

/// A table of `size` routes; then one route added (a reload) and one
/// server moved (runtime), each timed from push to served.
fn large_table(backend: &Backend, size: usize) {
    let http = free_port();
    let remote = GitRemote::new();
    let other = Backend::start("C");
    let mut routes = String::new();
    for i in 0..size {
        routes.push_str(&route(
            &format!("svc{i}"),
            &format!("/svc{i}"),
            &backend.address(),
        ));
    }
    let started = Instant::now();
    let first = remote.push(&routes_yaml(http, &routes));
    let capstan = Capstan::start(&["--repo", &remote.url(), "--poll-interval", "1h"]);
    wait_applied_within(&capstan, &first, Duration::from_secs(300));
    println!(
        "{size} routes: first apply (HAProxy start) {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let reloads = capstan.haproxy_reloads();
    routes.push_str(&route("added", "/added", &backend.address()));
    let (commit, started) = push_and_notify(&remote, &capstan, &routes_yaml(http, &routes));
    let status = wait_applied_within(&capstan, &commit, Duration::from_secs(120));
    wait_for_backend(http, "/added", "B");
    let served = started.elapsed().as_secs_f64() * 1000.0;
    let t = &status["history"][0]["timings"];
    let reloads = capstan.haproxy_reloads() - reloads;
    println!(
        "{size} routes, one route added ({}): push → served {served:.0} ms; capstan: fetch {} ms, validate+render+plan {} ms, apply {} ms (of which haproxy -c {} ms); reloads: {reloads}",
        status["history"][0]["method"].as_str().unwrap_or("?"),
        t["fetch_ms"],
        t["plan_ms"],
        t["apply_ms"],
        t["check_ms"],
    );

    let reloads = capstan.haproxy_reloads();
    let moved = routes.replacen(&backend.address(), &other.address(), 1);
    let (commit, started) = push_and_notify(&remote, &capstan, &routes_yaml(http, &moved));
    let status = wait_applied_within(&capstan, &commit, Duration::from_secs(120));
    wait_for_backend(http, "/svc0", "C");
    let served = started.elapsed().as_secs_f64() * 1000.0;
    let t = &status["history"][0]["timings"];
    println!(
        "{size} routes, one server moved ({}): push → served {served:.0} ms; capstan: fetch {} ms, validate+render+plan {} ms, apply {} ms; reloads: {}",
        status["history"][0]["method"].as_str().unwrap_or("?"),
        t["fetch_ms"],
        t["plan_ms"],
        t["apply_ms"],
        capstan.haproxy_reloads() - reloads,
    );
    println!(
        "{size} routes: capstan resident memory {:.1} MiB",
        proc_status_mib(capstan.pid(), "VmRSS")
    );
}
