//! Docker-Flow-Proxy-compatible reconfigure under concurrent load: capstan's
//! coalescing API beside the per-call-reload baseline (Docker Flow Proxy's
//! behaviour: every reconfigure rewrites the config, checks it and reloads),
//! measured in the same run on the same HAProxy.
//!
//! Run: `cargo bench --bench reconfigure`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use capstan::haproxy::master::MasterCli;
use capstan::haproxy::process::check_config;
use capstan::model::{Route, RoutesFile, UrlPath};
use capstan::plan::DesiredConfig;
use capstan::render::render;
use support::*;

const CALLS: usize = 500;
const CONCURRENCY: usize = 50;
const BASELINE_CALLS: usize = 50;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut latencies: Vec<f64>, elapsed: Duration, reloads: u32) {
    latencies.sort_by(f64::total_cmp);
    println!(
        "{name}: {} calls in {:.2} s = {:.0} calls/s; latency p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {reloads} reloads = {:.3} reloads/call",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
        f64::from(reloads) / latencies.len() as f64,
    );
}

fn main() {
    require_tools();
    let backend = Backend::start("B");
    let http = free_port();
    // Service names resolve through HAProxy's resolvers (here a local DNS
    // server that knows none), not libc one by one at every reload.
    let dns = Dns::start(&[]);
    let base = routes_yaml(http, &route("keep", "/keep", &backend.address())).replace(
        "defaults:\n",
        &format!("defaults:\n  resolvers: [\"127.0.0.1:{}\"]\n", dns.port),
    );
    let remote = GitRemote::new();
    let first = remote.push(&base);
    let mut capstan = Capstan::start(&["--repo", &remote.url(), "--poll-interval", "1h"]);
    wait_until("the first apply", Duration::from_secs(30), || {
        capstan.status()["applied"]["revision"]["commit"] == first
    });

    // capstan: CALLS reconfigures, CONCURRENCY at a time.
    let reloads_before = capstan.haproxy_reloads();
    let api = capstan.api_port;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let latencies: Vec<f64> = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let calls: Vec<_> = (0..CALLS)
            .map(|n| {
                let (client, limit) = (client.clone(), limit.clone());
                tokio::spawn(async move {
                    let _slot = limit.acquire().await.unwrap();
                    let url = format!(
                        "http://127.0.0.1:{api}/v1/docker-flow-proxy/reconfigure?serviceName=svc{n}&servicePath=/svc{n}&port=80"
                    );
                    let started = Instant::now();
                    let response = client.get(url).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    started.elapsed().as_secs_f64() * 1000.0
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for call in calls {
            latencies.push(call.await.unwrap());
        }
        latencies
    });
    let elapsed = started.elapsed();
    let reloads = capstan.haproxy_reloads() - reloads_before;
    report(
        &format!("capstan reconfigure API ({CONCURRENCY} concurrent)"),
        latencies,
        elapsed,
        reloads,
    );

    // Baseline on the same HAProxy, capstan stopped: each call renders the
    // whole config with one more route, checks it and reloads, in turn.
    capstan.stop_capstan();
    let state = capstan.state_dir.clone();
    let master = MasterCli::new(state.join("run/master.sock"));
    let config_file = state.join("haproxy.cfg");
    let mut table: RoutesFile = capstan::model::validate::load("routes.yaml", &base).unwrap();
    let reloads_before = capstan.haproxy_reloads();
    let started = Instant::now();
    let latencies: Vec<f64> = runtime.block_on(async {
        let mut latencies = Vec::new();
        for n in 0..BASELINE_CALLS {
            let call = Instant::now();
            table.routes.push(Route {
                paths: vec![UrlPath(format!("/base{n}"))],
                ..Route::new(&format!("base{n}"), 80)
            });
            let desired = DesiredConfig::new(render(&table), &state.join("run/admin.sock"));
            std::fs::write(&config_file, desired.text()).unwrap();
            check_config(Path::new("haproxy"), &config_file)
                .await
                .unwrap();
            let outcome = master.reload().await.unwrap();
            assert!(outcome.succeeded);
            latencies.push(call.elapsed().as_secs_f64() * 1000.0);
        }
        latencies
    });
    let elapsed = started.elapsed();
    let reloads = capstan.haproxy_reloads() - reloads_before;
    report(
        "baseline, one full reload per call (Docker Flow Proxy style, sequential)",
        latencies,
        elapsed,
        reloads,
    );
}
