//! How fast, and in how much memory, capstan's pure core handles large
//! route tables: validate (`validate::load`), render
//! (`render::render(..).to_string()`) and diff (`DiffReport::between` of two
//! rendered snapshots, one route apart). HAProxy's own `haproxy -c` on the
//! same config is timed alongside as a yardstick.
//!
//! `cargo bench --bench core` (a plain `main`: no bench harness). Target:
//! 10,000 routes in under 100 ms and 100 MB of heap for one
//! validate + render + diff.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use capstan::diff::{DiffReport, Snapshot, config_diff, diff_routes};
use capstan::model::RoutesFile;
use capstan::render::render;
use capstan::validate::{check_value, load, semantic_errors};
use capstan::yaml;

/// The system allocator, counting the bytes currently allocated and their peak.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(by: usize) {
        let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    fn shrank(by: usize) {
        CURRENT.fetch_sub(by, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size > layout.size() {
                Self::grew(new_size - layout.size());
            } else {
                Self::shrank(layout.size() - new_size);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` once and returns the most heap it held above what was allocated
/// before it started, and its result.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let result = f();
    (PEAK.load(Ordering::Relaxed) - before, result)
}

/// A realistic table of `n` routes as YAML: every kind of route capstan
/// renders (prefix, exact and regex paths; exact and wildcard domains; tcp;
/// header rules; timeouts; health checks; auth; sticky sessions; HTTPS
/// redirects). Servers are IP addresses, so that `haproxy -c` measures
/// HAProxy and not DNS lookups of service names that do not exist here.
fn generated_table(n: usize) -> String {
    let mut y = String::with_capacity(n * 260);
    y.push_str(
        "version: 1
defaults:
  http_port: 80
  stats:
    port: 8404
  maxconn: 100000
  timeouts:
    connect: 5s
    client: 30s
    server: 30s
userlists:
  ops:
    - name: admin
      password_hash: $6$q7Lm2VxR9aTz4KpE$Xad/VAi5L.qd2GiBS4zYevhpavql16p1bvOL3ibnZy7QTXtskOamITz/FJ3OJHQIgNx8lRE/0PaGNVPN8g8Fo/
routes:
",
    );
    for i in 0..n {
        let route = match i % 10 {
            0..=2 => format!(
                "  - service: svc-{i}\n    port: 8080\n    paths: [/svc-{i}, /svc-{i}/v2]\n"
            ),
            3 => format!(
                "  - service: status-{i}\n    port: 8080\n    path_match: exact\n    paths: [/status-{i}, /status-{i}/ready]\n"
            ),
            4 => format!(
                "  - service: site-{i}\n    port: 80\n    domains: [site-{i}.example.com, www.site-{i}.example.com]\n    https_only: true\n    redirect_code: 301\n"
            ),
            5 => format!(
                "  - service: tenant-{i}\n    port: 9000\n    domains: [\"*.t{i}.example.com\"]\n    paths: [/api]\n    request_headers:\n      set:\n        X-Tenant: t{i}\n      add:\n        X-Route: route {i}\n      delete: [X-Debug]\n    response_headers:\n      set:\n        Strict-Transport-Security: max-age=31536000; includeSubDomains\n      delete: [Server]\n"
            ),
            6 => format!(
                "  - service: db-{i}\n    port: 5432\n    mode: tcp\n    listen_port: {}\n    balance: leastconn\n    sticky: true\n    timeouts:\n      client: 1h\n      server: 1h\n    health_check:\n      interval: 10s\n",
                20000 + i / 10
            ),
            7 => format!(
                "  - service: files-{i}\n    port: 8080\n    path_match: regex\n    paths: [\"^/files-{i}/v[0-9]+/\"]\n    rewrite_path:\n      regex: ^/files-{i}/(.*)\n      replace: /\\1\n    timeouts:\n      connect: 3s\n      server: 2m\n      tunnel: 1h\n"
            ),
            8 => format!(
                "  - service: legacy-{i}\n    port: 8080\n    paths: [/legacy-{i}]\n    sticky: true\n    health_check:\n      path: /healthz\n      interval: 5s\n"
            ),
            _ => format!(
                "  - service: admin-{i}\n    port: 3000\n    domains: [admin-{i}.example.com]\n    paths: [/]\n    auth:\n      userlist: ops\n      realm: Admin\n    balance: source\n"
            ),
        };
        y.push_str(&route);
        let (a, b) = (i / 256 % 256, i % 256);
        y.push_str(&format!(
            "    servers: [\"10.{a}.{b}.1:8080\", \"10.{a}.{b}.2:8080\"]\n"
        ));
    }
    y
}

/// The same table with one route changed: a second path of route 1 renamed.
fn with_one_route_changed(table: &str) -> String {
    let from = "paths: [/svc-1, /svc-1/v2]";
    assert_eq!(table.matches(from).count(), 1);
    table.replace(from, "paths: [/svc-1, /svc-1/v3]")
}

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let result = f();
        self.0.push(start.elapsed());
        result
    }

    fn best(&self) -> Duration {
        self.0.iter().copied().min().unwrap_or_default()
    }

    fn median(&self) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// One run of the pipeline `capstan diff` runs for a pull request.
struct Stages {
    validate: Samples,
    render: Samples,
    diff: Samples,
    total: Samples,
}

fn validate_render_diff(
    head_text: &str,
    base: &RoutesFile,
    stages: &mut Stages,
) -> (String, DiffReport) {
    let start = Instant::now();
    let head = stages
        .validate
        .time(|| load("routes.yaml", head_text).expect("the generated table is valid"));
    let config = stages.render.time(|| render(&head).to_string());
    let report = stages.diff.time(|| {
        DiffReport::between(
            &Snapshot::rendered("base", None, base.clone()),
            &Snapshot::rendered("head", None, head),
        )
    });
    stages.total.0.push(start.elapsed());
    (config, report)
}

/// `haproxy -c` on the config, a few times; None when HAProxy is not installed.
fn haproxy_check(config: &str, runs: usize) -> Option<Result<Samples, String>> {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("haproxy.cfg");
    std::fs::write(&file, config).unwrap();
    let mut samples = Samples::default();
    for _ in 0..runs {
        let output = samples.time(|| {
            Command::new("haproxy")
                .args(["-c", "-q", "-f"])
                .arg(&file)
                .env("RES_OPTIONS", "timeout:1 attempts:1")
                .stdin(Stdio::null())
                .output()
        });
        match output {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => return Some(Err(e.to_string())),
            Ok(output) if !output.status.success() => {
                return Some(Err(format!(
                    "exit {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                )));
            }
            Ok(_) => {}
        }
    }
    Some(Ok(samples))
}

struct Outcome {
    routes: usize,
    total_median: Duration,
    peak: usize,
}

fn bench(n: usize, iterations: usize) -> Outcome {
    let base_text = generated_table(n);
    let head_text = with_one_route_changed(&base_text);
    let base = load("routes.yaml", &base_text).expect("the generated table is valid");
    assert_eq!(base.routes.len(), n);

    let mut stages = Stages {
        validate: Samples::default(),
        render: Samples::default(),
        diff: Samples::default(),
        total: Samples::default(),
    };
    // One warm-up run (page faults, lazily built schema validator), not counted.
    let mut warm_up = Stages {
        validate: Samples::default(),
        render: Samples::default(),
        diff: Samples::default(),
        total: Samples::default(),
    };
    let (config, report) = validate_render_diff(&head_text, &base, &mut warm_up);
    assert_eq!(report.routes.routes.len(), 1, "exactly one route changed");
    for _ in 0..iterations {
        black_box(validate_render_diff(&head_text, &base, &mut stages));
    }
    let (peak, _) = peak_heap(|| {
        let mut once = Stages {
            validate: Samples::default(),
            render: Samples::default(),
            diff: Samples::default(),
            total: Samples::default(),
        };
        black_box(validate_render_diff(&head_text, &base, &mut once))
    });

    println!(
        "\n{n} routes: routes.yaml {} KiB, haproxy.cfg {} KiB ({} lines), {iterations} iterations",
        base_text.len() / 1024,
        config.len() / 1024,
        config.lines().count()
    );
    println!("  {:<44} {:>12} {:>12}", "stage", "best", "median");
    for (name, samples) in [
        ("validate   validate::load", &stages.validate),
        ("render     render(..).to_string()", &stages.render),
        ("diff       2 x Snapshot::rendered + between", &stages.diff),
        ("total      validate + render + diff", &stages.total),
    ] {
        println!(
            "  {name:<44} {:>12} {:>12}",
            ms(samples.best()),
            ms(samples.median())
        );
    }
    println!("  {:<44} {:>12}", "peak heap of one total", mib(peak));
    match haproxy_check(&config, 3) {
        None => println!("  haproxy -c: not installed (scripts/install-test-deps)"),
        Some(Err(e)) => println!("  haproxy -c FAILED: {e}"),
        Some(Ok(samples)) => println!(
            "  {:<44} {:>12} {:>12}",
            "yardstick  haproxy -c -q -f (same config)",
            ms(samples.best()),
            ms(samples.median())
        ),
    }
    Outcome {
        routes: n,
        total_median: stages.total.median(),
        peak,
    }
}

/// Where the time of each stage goes, from the library's public steps.
fn breakdown(n: usize, iterations: usize) {
    let text = generated_table(n);
    let head_text = with_one_route_changed(&text);
    let base = load("routes.yaml", &text).unwrap();
    let head = load("routes.yaml", &head_text).unwrap();
    let base_config = render(&base).to_string();
    let head_config = render(&head).to_string();

    let mut parse = Samples::default();
    let mut check = Samples::default();
    let mut semantic = Samples::default();
    let mut build = Samples::default();
    let mut display = Samples::default();
    let mut routes_diff = Samples::default();
    let mut text_diff = Samples::default();
    let mut peaks = [0usize; 4];
    for _ in 0..iterations {
        let (p, document) = peak_heap(|| parse.time(|| yaml::parse("routes.yaml", &head_text)));
        peaks[0] = peaks[0].max(p);
        let document = document.unwrap();
        let (p, _) = peak_heap(|| {
            check.time(|| {
                black_box(check_value(
                    "routes.yaml",
                    &document.value,
                    &document.source_map,
                ))
            })
        });
        peaks[1] = peaks[1].max(p);
        semantic.time(|| black_box(semantic_errors(&head)));
        let built = build.time(|| render(&head));
        let (p, _) = peak_heap(|| display.time(|| black_box(built.to_string())));
        peaks[2] = peaks[2].max(p);
        routes_diff.time(|| black_box(diff_routes(&base, &head)));
        let (p, _) = peak_heap(|| {
            text_diff.time(|| black_box(config_diff(&base_config, &head_config, "base", "head")))
        });
        peaks[3] = peaks[3].max(p);
    }
    println!("\nwhere the time goes at {n} routes ({iterations} iterations):");
    println!(
        "  {:<52} {:>12} {:>12} {:>12}",
        "step", "best", "median", "peak heap"
    );
    let rows: [(&str, &Samples, Option<usize>); 7] = [
        (
            "validate: yaml::parse (serde-saphyr + positions)",
            &parse,
            Some(peaks[0]),
        ),
        (
            "validate: check_value (schema, serde, semantics)",
            &check,
            Some(peaks[1]),
        ),
        ("  of which semantic_errors", &semantic, None),
        ("render:   render() (sections)", &build, None),
        (
            "render:   HaproxyConfig::to_string",
            &display,
            Some(peaks[2]),
        ),
        ("diff:     diff_routes (route level)", &routes_diff, None),
        (
            "diff:     config_diff (unified text diff)",
            &text_diff,
            Some(peaks[3]),
        ),
    ];
    for (name, samples, peak) in rows {
        println!(
            "  {name:<52} {:>12} {:>12} {:>12}",
            ms(samples.best()),
            ms(samples.median()),
            peak.map(mib).unwrap_or_default()
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: run
    // the smallest size only there, as a smoke test.
    let quick = !std::env::args().any(|a| a == "--bench");
    println!(
        "capstan core benchmark ({} build); times are wall clock",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let sizes: &[(usize, usize)] = if quick {
        &[(100, 2)]
    } else {
        &[(100, 30), (1_000, 15), (10_000, 9)]
    };
    let outcomes: Vec<Outcome> = sizes.iter().map(|&(n, it)| bench(n, it)).collect();
    if quick {
        return;
    }
    breakdown(10_000, 5);

    println!("\ntarget: 10,000 routes in under 100 ms (median total) and 100 MB peak heap");
    for outcome in outcomes.iter().filter(|o| o.routes == 10_000) {
        let time_ok = outcome.total_median < Duration::from_millis(100);
        let memory_ok = outcome.peak < 100_000_000;
        println!(
            "  time   {:>10}  {}",
            ms(outcome.total_median),
            if time_ok { "met" } else { "MISSED" }
        );
        println!(
            "  memory {:>10}  {}",
            mib(outcome.peak),
            if memory_ok { "met" } else { "MISSED" }
        );
    }
}
