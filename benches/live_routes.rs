//! Route changes without reloads, measured end to end against a real git
//! remote and a real HAProxy (times start when `git push` has returned; the
//! webhook then tells capstan):
//!
//! - at 1,000 and 10,000 routes, 5 times each: one path added to an
//!   existing service, one new service, one route removed, one server moved
//!   (a fixed `servers:` address to another test server's port). Push →
//!   served (a request through HAProxy sees the change), and capstan's
//!   reloads (`capstan_reloads_total`);
//! - a log of 50 mixed changes at 1,000 routes: how many were applied
//!   without a reload;
//! - a cold validate + render + plan at 10,000 routes: a fresh process per
//!   run, planning against the running config one change apart (what a
//!   reconcile does after a push), with the process's peak RSS.
//!
//! Run: `cargo bench --bench live_routes`.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/table.rs"]
mod table;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use capstan::desired::DesiredState;
use capstan::model::RoutesFile;
use capstan::model::validate::load;
use capstan::plan::{DesiredConfig, LiveServer, LiveState, ServerState, plan};
use capstan::render::{HaproxyConfig, render_desired};
use common::*;
use serde::{Deserialize, Serialize};
use support::*;

/// The `capstan` binary's allocator, for the cold runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REPETITIONS: usize = 5;
/// Runs the child process of the cold measurement: `<variant> <live file>`.
const COLD_RUN: &str = "--cold-run";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == COLD_RUN) {
        cold_run(&args[at + 1], Path::new(&args[at + 2]));
        return;
    }
    require_tools();
    let (b, c) = (Backend::start("B"), Backend::start("C"));
    for size in [1_000, 10_000] {
        one_change_at_a_time(size, &b, &c);
    }
    change_log(1_000, &b, &c);
    cold_plan();
}

/// One route of the benched tables: a service on one fixed server.
struct Service {
    name: String,
    paths: Vec<String>,
    server: String,
    /// `timeouts.server` in seconds, when the route sets it.
    timeout: Option<u32>,
}

impl Service {
    fn new(name: String, server: &Backend) -> Self {
        Self {
            paths: vec![format!("/{name}")],
            name,
            server: server.address(),
            timeout: None,
        }
    }

    fn yaml(&self) -> String {
        let mut yaml = route(&self.name, &self.paths.join(", "), &self.server);
        if let Some(seconds) = self.timeout {
            yaml.push_str(&format!("    timeouts:\n      server: {seconds}s\n"));
        }
        yaml
    }
}

/// capstan serving a table pushed to a git remote; changed by pushing it again.
struct Stand {
    http: u16,
    remote: GitRemote,
    capstan: Capstan,
    services: Vec<Service>,
}

/// How one applied change went.
struct Applied {
    reloads: f64,
    /// `runtime` or `reload`, from the status history.
    method: String,
    /// capstan's validate + render + plan, and apply.
    plan_ms: f64,
    apply_ms: f64,
}

impl Stand {
    /// `size` services named `s00000`… (fixed width: no path is a prefix of
    /// another), each on `backend`; every tenth has a second path.
    fn start(size: usize, backend: &Backend) -> Self {
        let services = (0..size)
            .map(|i| {
                let mut service = Service::new(format!("s{i:05}"), backend);
                if i % 10 == 0 {
                    service.paths.push(format!("/s{i:05}/v2"));
                }
                service
            })
            .collect();
        let remote = GitRemote::new();
        let http = free_port();
        let capstan = Capstan::start(&["--repo", &remote.url(), "--poll-interval", "1h"]);
        let stand = Self {
            http,
            remote,
            capstan,
            services,
        };
        let (commit, _) = stand.push();
        wait_applied_within(&stand.capstan, &commit, Duration::from_secs(300));
        stand
    }

    fn push(&self) -> (String, Instant) {
        let routes: String = self.services.iter().map(Service::yaml).collect();
        push_and_notify(
            &self.remote,
            &self.capstan,
            &routes_yaml(self.http, &routes),
        )
    }

    fn service(&mut self, name: &str) -> &mut Service {
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    fn reloads(&self) -> f64 {
        self.capstan.metric("capstan_reloads_total{result=\"ok\"}")
            + self
                .capstan
                .metric("capstan_reloads_total{result=\"error\"}")
    }

    /// Pushes the table; `served` waits until HAProxy serves the change.
    /// Returns its result and how the change was applied.
    fn change<T>(&self, served: impl FnOnce(Instant) -> T) -> (T, Applied) {
        let reloads = self.reloads();
        let (commit, started) = self.push();
        let result = served(started);
        let status = wait_applied_within(&self.capstan, &commit, Duration::from_secs(120));
        let entry = &status["history"][0];
        let applied = Applied {
            reloads: self.reloads() - reloads,
            method: entry["method"].as_str().unwrap_or("?").to_string(),
            plan_ms: entry["timings"]["plan_ms"].as_f64().unwrap_or(f64::NAN),
            apply_ms: entry["timings"]["apply_ms"].as_f64().unwrap_or(f64::NAN),
        };
        (result, applied)
    }
}

/// What a request for the changed path answers once the change is served.
enum Expect {
    ServedBy(&'static str),
    NotServed,
}

impl Expect {
    fn holds(&self, answer: &Option<(u16, String)>) -> bool {
        match self {
            Expect::ServedBy(backend) => answered_by(answer, backend),
            Expect::NotServed => matches!(answer, Some((status, _)) if *status != 200),
        }
    }
}

/// A change to the table (its `k`th, from 1): the path to probe and what it must answer.
/// `b` and `c` are the test backends (the tables are on `b`).
type Case = fn(&mut Stand, usize, &Backend, &Backend) -> (String, Expect);

const CASES: [(&str, Case); 4] = [
    ("one path added to a service", |stand, k, _, _| {
        let path = format!("/added-{k:03}");
        stand.service(&format!("s{k:05}")).paths.push(path.clone());
        (path, Expect::ServedBy("B"))
    }),
    ("one new service", |stand, k, b, _| {
        let service = Service::new(format!("n{k:05}"), b);
        let path = service.paths[0].clone();
        stand.services.push(service);
        (path, Expect::ServedBy("B"))
    }),
    ("one route removed", |stand, k, _, _| {
        let name = format!("s{:05}", 10 + k);
        stand.services.retain(|s| s.name != name);
        (format!("/{name}"), Expect::NotServed)
    }),
    ("one server moved", |stand, k, _, c| {
        let name = format!("s{:05}", 20 + k);
        stand.service(&name).server = c.address();
        (format!("/{name}"), Expect::ServedBy("C"))
    }),
];

/// Each case `REPETITIONS` times on one table of `size` routes.
fn one_change_at_a_time(size: usize, b: &Backend, c: &Backend) {
    let mut stand = Stand::start(size, b);
    for (name, case) in CASES {
        let (mut served, mut reloads, mut methods, mut plan_ms, mut apply_ms) =
            (Vec::new(), 0.0, Vec::new(), Vec::new(), Vec::new());
        for k in 1..=REPETITIONS {
            let (path, expect) = case(&mut stand, k, b, c);
            let http = stand.http;
            let (ms, applied) = stand.change(|started| {
                ms_until_answer(http, &path, started, |answer| expect.holds(&answer))
            });
            served.push(ms);
            reloads += applied.reloads;
            methods.push(applied.method);
            plan_ms.push(applied.plan_ms);
            apply_ms.push(applied.apply_ms);
        }
        println!(
            "{size} routes, {name}: push → served median {:.0} ms, max {:.0} ms over {REPETITIONS} changes; reloads: {reloads}; applied by {}; capstan's validate+render+plan median {:.0} ms, apply median {:.0} ms",
            median(served.clone()),
            max(&served),
            tally(&methods),
            median(plan_ms),
            median(apply_ms),
        );
    }
}

/// `runtime ×4, reload ×1`.
fn tally(methods: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for method in methods {
        *counts.entry(method.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(method, n)| format!("{method} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Clone, Copy)]
enum Kind {
    ServerMoved,
    PathAdded,
    PathRemoved,
    ServiceAdded,
    RouteRemoved,
    TimeoutChanged,
}

/// The kinds of change in the log, and how many of each: mostly deploys
/// moving servers and paths coming and going on running services, some new
/// and removed services, some setting changes.
const CHANGE_LOG: [(Kind, &str, usize); 6] = [
    (Kind::ServerMoved, "server moved", 15),
    (Kind::PathAdded, "path added to a service", 12),
    (Kind::PathRemoved, "path removed from a service", 4),
    (Kind::ServiceAdded, "new service", 7),
    (Kind::RouteRemoved, "route removed", 5),
    (Kind::TimeoutChanged, "timeout changed", 7),
];

/// A fixed pseudo-random sequence (an LCG): the same log on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize % n
    }
}

/// The changes of `CHANGE_LOG`, shuffled, pushed one at a time to a table
/// of `size` routes: how many HAProxy took without a reload.
fn change_log(size: usize, b: &Backend, c: &Backend) {
    let mut stand = Stand::start(size, b);
    let mut rng = Lcg(13);
    let mut kinds: Vec<usize> = CHANGE_LOG
        .iter()
        .enumerate()
        .flat_map(|(kind, (_, _, n))| std::iter::repeat_n(kind, *n))
        .collect();
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.below(i + 1));
    }
    let mut live = [0usize; CHANGE_LOG.len()];
    for (j, &kind) in kinds.iter().enumerate() {
        let services = &mut stand.services;
        let pick = rng.below(services.len());
        match CHANGE_LOG[kind].0 {
            Kind::ServerMoved => {
                let service = &mut services[pick];
                service.server = if service.server == b.address() {
                    c.address()
                } else {
                    b.address()
                };
            }
            Kind::PathAdded => services[pick].paths.push(format!("/log-{j:03}")),
            Kind::PathRemoved => {
                let with_more: Vec<usize> = (0..services.len())
                    .filter(|&i| services[i].paths.len() > 1)
                    .collect();
                services[with_more[pick % with_more.len()]].paths.pop();
            }
            Kind::ServiceAdded => services.push(Service::new(format!("l{j:05}"), b)),
            Kind::RouteRemoved => {
                services.remove(pick);
            }
            Kind::TimeoutChanged => {
                let timeout = &mut services[pick].timeout;
                *timeout = Some(timeout.map_or(45, |s| s + 15));
            }
        }
        let ((), applied) = stand.change(|_| ());
        if applied.reloads == 0.0 {
            live[kind] += 1;
        }
    }
    let total_live: usize = live.iter().sum();
    println!(
        "change log at {size} routes: {total_live}/{} changes applied live ({:.0}%)",
        kinds.len(),
        100.0 * total_live as f64 / kinds.len() as f64
    );
    for ((_, kind, n), live) in CHANGE_LOG.iter().zip(live) {
        println!("  {kind}: {live}/{n} live");
    }
}

const ADMIN_SOCKET: &str = "/run/capstan/admin.sock";
/// The size of the cold measurement's table.
const COLD_ROUTES: usize = 10_000;

/// What a reconcile plans from: a validated table rendered as capstan serve
/// renders it without Swarm.
fn desired_config(routes: RoutesFile) -> DesiredConfig {
    DesiredConfig::new(
        render_desired(&DesiredState::new(routes)),
        Path::new(ADMIN_SOCKET),
    )
}

/// The running HAProxy as capstan observes it, handed to the cold runs.
#[derive(Serialize, Deserialize)]
struct Observed {
    marker: String,
    /// The config file on disk.
    config: String,
    servers: Vec<LiveServer>,
    maps: BTreeMap<String, BTreeMap<String, String>>,
}

/// The table of `tests/support/table.rs` (every kind of route) with one
/// change: `path` adds a path to a service, `service` adds a service.
fn head_table(variant: &str) -> String {
    let base = table::generated_table(COLD_ROUTES, None, 0);
    match variant {
        "path" => base.replacen(
            "paths: [/svc-1, /svc-1/v2]",
            "paths: [/svc-1, /svc-1/v2, /svc-1/v3]",
            1,
        ),
        "service" => {
            base + "  - service: added\n    port: 8080\n    paths: [/added]\n    servers: [\"10.200.0.1:8080\"]\n"
        }
        other => panic!("no variant {other}"),
    }
}

/// Cold validate + render + plan of a one-change table against the running
/// base table: each run in a fresh process (nothing built lazily yet, the
/// allocator's pages not yet touched), which reports its time and peak RSS.
fn cold_plan() {
    let base = load("routes.yaml", &table::generated_table(COLD_ROUTES, None, 0))
        .expect("the generated table is valid");
    let running = desired_config(base);
    let observed = Observed {
        marker: running.marker.clone(),
        config: running.text(),
        servers: running
            .config
            .sections
            .iter()
            .filter_map(|section| Some((section.backend_name()?, section)))
            .flat_map(|(backend, section)| {
                section.servers.iter().map(|server| LiveServer {
                    backend: backend.to_string(),
                    server: server.name.clone(),
                    address: server.address.clone(),
                    state: ServerState::desired(server),
                })
            })
            .collect(),
        maps: running
            .config
            .maps
            .iter()
            .map(|map| (map.path.clone(), map.entries.clone()))
            .collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let live_file = dir.path().join("live.json");
    std::fs::write(&live_file, serde_json::to_vec(&observed).unwrap()).unwrap();
    drop((running, observed));

    for (variant, name) in [
        ("path", "one path added to a service"),
        ("service", "one new service"),
    ] {
        let runs: Vec<Vec<String>> = (0..REPETITIONS)
            .map(|_| {
                let output = Command::new(std::env::current_exe().unwrap())
                    .arg(COLD_RUN)
                    .arg(variant)
                    .arg(&live_file)
                    .output()
                    .expect("the bench runs itself");
                assert!(output.status.success(), "{output:?}");
                String::from_utf8_lossy(&output.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .collect();
        let column =
            |i: usize| -> Vec<f64> { runs.iter().map(|r| r[i].parse().unwrap()).collect() };
        let times = column(0);
        println!(
            "{COLD_ROUTES} routes, cold validate + render + plan, {name} (plan: {}, changes: {}): median {:.1} ms, max {:.1} ms over {REPETITIONS} fresh processes; peak RSS (VmHWM) max {:.1} MiB, of which {:.1} MiB before it started (the table text and the live state)",
            runs[0][3],
            runs[0][4],
            median(times.clone()),
            max(&times),
            max(&column(1)),
            max(&column(2)),
        );
    }
}

/// One cold run (in its own process): prints `ms peak_mib before_mib method changes`.
fn cold_run(variant: &str, live_file: &Path) {
    let head_text = head_table(variant);
    let observed: Observed =
        serde_json::from_slice(&std::fs::read(live_file).expect("the live state was written"))
            .expect("the live state reads back");
    let live = LiveState {
        marker: Some(observed.marker),
        config: Some(HaproxyConfig::parse(&observed.config)),
        servers: observed.servers,
        certificates: None,
        maps: observed.maps,
    };
    drop(observed.config);
    let pid = std::process::id();
    let before = proc_status_mib(pid, "VmHWM");
    let started = Instant::now();
    let routes = load("routes.yaml", &head_text).expect("the generated table is valid");
    let planned = plan(&desired_config(routes), &live);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "{ms} {} {before} {} {}",
        proc_status_mib(pid, "VmHWM"),
        serde_json::to_value(planned.method)
            .unwrap()
            .as_str()
            .unwrap(),
        planned.changes.len()
    );
}
