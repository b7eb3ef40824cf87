//! The dashboard at 10,000 routes:
//!
//! - pure: parsing HAProxy's `show stat` for 10,000 backends of 8 server
//!   slots, building the routes view, rendering the page (at most 500
//!   routes) and `/v1/routes`' JSON (all of them);
//! - end to end: a real capstan serving 10,000 routes through a real
//!   HAProxy, `GET /`, `GET /dashboard/fragment?q=` and `GET /v1/routes`
//!   over HTTP: asking HAProxy for `show stat`, and within the second in
//!   which one answer serves every request.
//!
//! Run: `cargo bench --bench dashboard`. Prints numbers; asserts no time.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/table.rs"]
mod table;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use capstan::dashboard::view::{RoutesInput, routes_view};
use capstan::dashboard::{ConfigText, Dashboard, page};
use capstan::haproxy::admin::ServerStat;
use capstan::model::names;
use capstan::model::validate::load;
use capstan::render::render;
use capstan::sources::RevisionInfo;
use capstan::sources::overrides::OverrideSet;
use common::*;
use support::*;

const ROUTES: usize = 10_000;
const SLOTS: usize = 8;
const REPETITIONS: usize = 5;

/// The captured `show stat` answer: its header, and a server line to copy.
const CAPTURED: &str = include_str!("../src/haproxy/testdata/show-stat-servers.csv");

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Longer than the dashboard keeps one `show stat` answer.
const STATS_STALE: Duration = Duration::from_millis(1_100);

/// Median milliseconds of `REPETITIONS` runs of `f`.
fn timed<T>(mut f: impl FnMut() -> T) -> f64 {
    median(
        (0..REPETITIONS)
            .map(|_| {
                let start = Instant::now();
                black_box(f());
                ms(start)
            })
            .collect(),
    )
}

fn pure() {
    let routes = load("routes.yaml", &table::generated_table(ROUTES, None, 0))
        .expect("the generated table is valid");
    let mut lines = CAPTURED.lines();
    let header = lines.next().unwrap();
    let template = lines.next().unwrap();
    let mut csv = format!("{header}\n");
    for route in &routes.routes {
        let backend = names::backend(route);
        for slot in 1..=SLOTS {
            let line = template.replacen("go-demo-be8080", &backend, 1).replacen(
                "go-demo_1",
                &format!("{}-{slot}", route.service),
                1,
            );
            csv.push_str(&line);
            csv.push('\n');
        }
    }
    let parse_ms = timed(|| ServerStat::parse_all(&csv).unwrap());
    let stats = ServerStat::parse_all(&csv).unwrap();
    let applied = (
        RevisionInfo {
            label: "main (0123456)".into(),
            commit: Some("0123456".into()),
            details: None,
        },
        routes.clone(),
    );
    let overrides = OverrideSet::default();
    let lent = BTreeMap::new();
    let input = RoutesInput {
        at: "2026-01-01T00:00:00Z".into(),
        applied: Some(&applied),
        overrides: &overrides,
        label_routes: &[],
        warnings: &[],
        stats: Ok(&stats),
        swarm: None,
        lent_spares: &lent,
    };
    let view_ms = timed(|| routes_view(&input, ""));
    let filtered_ms = timed(|| routes_view(&input, "svc-4242"));
    let view = routes_view(&input, "");
    let json_ms = timed(|| serde_json::to_vec(&view).unwrap());
    let json_bytes = serde_json::to_vec(&view).unwrap().len();
    let status = serde_json::from_value(serde_json::json!({
        "source": {"kind": "git", "location": "repo", "file": "routes.yaml"},
        "desired": applied.0,
        "applied": {"revision": applied.0, "at": "2026-01-01T00:00:00Z"},
        "in_sync": true,
    }))
    .unwrap();
    let config = render(&routes).to_string();
    let dashboard = Dashboard {
        status,
        routes: view,
        overrides,
        config: ConfigText::new(&config),
        now: 1_767_225_600,
        rendered_at: "2026-01-01T00:00:00Z".into(),
    };
    let page_ms = timed(|| page::page(&dashboard));
    let html = page::page(&dashboard);
    println!(
        "pure, {ROUTES} routes x {SLOTS} server slots ({} show stat lines, {:.1} MB of CSV; config {:.1} MB):",
        stats.len(),
        csv.len() as f64 / 1e6,
        config.len() as f64 / 1e6
    );
    println!("  parse show stat         {parse_ms:>8.1} ms");
    println!("  routes view (all)       {view_ms:>8.1} ms");
    println!("  routes view (filtered)  {filtered_ms:>8.1} ms");
    println!(
        "  /v1/routes JSON         {json_ms:>8.1} ms  {:.1} MB",
        json_bytes as f64 / 1e6
    );
    println!(
        "  render page (500 rows)  {page_ms:>8.1} ms  {:.0} KB of HTML, {} route rows",
        html.len() as f64 / 1e3,
        html.matches("<tbody class=\"route\"").count()
    );
}

fn end_to_end() {
    let backend = Backend::start("b");
    let http = free_port();
    let routes: String = (0..ROUTES)
        .map(|i| {
            route(
                &format!("s{i:05}"),
                &format!("/s{i:05}"),
                &backend.address(),
            )
        })
        .collect();
    let remote = GitRemote::new();
    let commit = remote.push(&routes_yaml(http, &routes));
    let capstan = Capstan::start(&["--repo", &remote.url(), "--poll-interval", "1h"]);
    wait_applied_within(&capstan, &commit, Duration::from_secs(300));
    println!(
        "end to end, a real capstan and HAProxy serving {ROUTES} routes (median of {REPETITIONS}):"
    );
    println!(
        "  (asking HAProxy: each request a second after the last; shared: back to back, one `show stat` answers a second's requests)"
    );
    for path in ["/", "/dashboard/fragment?q=s04242", "/v1/routes"] {
        let mut size = 0;
        let mut get = || {
            let (code, body) = capstan.get(path);
            assert_eq!(code, 200, "{path}");
            size = body.len();
        };
        let asking = median(
            (0..REPETITIONS)
                .map(|_| {
                    std::thread::sleep(STATS_STALE);
                    let start = Instant::now();
                    get();
                    ms(start)
                })
                .collect(),
        );
        let shared = timed(&mut get);
        println!(
            "  GET {path:<30} asking HAProxy {asking:>8.1} ms, shared {shared:>8.1} ms  {:.1} KB",
            size as f64 / 1e3
        );
    }
}

fn main() {
    // `cargo test --benches` runs this too: only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    pure();
    end_to_end();
}
