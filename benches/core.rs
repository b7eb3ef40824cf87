//! How fast, and in how much memory, capstan's pure core handles large
//! route tables: validate (`validate::load`), render (`render::render`)
//! and diff (`DiffReport::between` of two snapshots, one route apart: the
//! base rendered for the diff, the head as the render stage rendered it;
//! each config's text is written once, in its snapshot). HAProxy's own
//! `haproxy -c` on the same config is timed alongside as a yardstick.
//! Allocations go through mimalloc, as in the `capstan` binary.
//!
//! `cargo bench --bench core` (a plain `main`: no bench harness). Target:
//! 10,000 routes in under 100 ms and 100 MB of heap for one
//! validate + render + diff.

#[path = "../tests/support/rendered.rs"]
mod rendered;
#[path = "../tests/support/table.rs"]
mod table;

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use capstan::diff::{DiffReport, Snapshot, config_diff, diff_routes};
use capstan::model::RoutesFile;
use capstan::model::validate::{check_value, load, semantic_errors};
use capstan::model::yaml;
use capstan::render::render;

/// capstan's allocator (mimalloc, as in `src/main.rs`), counting the bytes
/// currently allocated and their peak.
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

// SAFETY: every call is forwarded to `MiMalloc` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which `MiMalloc` shares.
        let ptr = unsafe { MiMalloc.alloc(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `MiMalloc` with `layout`.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `MiMalloc` with `layout`.
        let new = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
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

/// Times (and, when asked, the peak heap) of each stage of the pipeline.
#[derive(Default)]
struct Stages {
    validate: Samples,
    render: Samples,
    diff: Samples,
    total: Samples,
    /// Peak heap of validate, render and diff, each above what was allocated when it started.
    peaks: [usize; 3],
}

/// What `capstan diff` does for a pull request, as three stages: validate
/// the head table, render it, and diff it against the (already valid) base.
/// With `measure_peaks`, each stage also records its peak heap (which
/// resets the peak counter, so never nest this inside `peak_heap`).
fn validate_render_diff(
    head_text: &str,
    base: &RoutesFile,
    stages: &mut Stages,
    measure_peaks: bool,
) -> DiffReport {
    fn stage<T>(peak: Option<&mut usize>, samples: &mut Samples, f: impl FnOnce() -> T) -> T {
        match peak {
            Some(peak) => {
                let (bytes, result) = peak_heap(|| samples.time(f));
                *peak = (*peak).max(bytes);
                result
            }
            None => samples.time(f),
        }
    }
    // `capstan diff` owns both tables; the copy is only the bench's.
    let base = base.clone();
    let start = Instant::now();
    let [p_validate, p_render, p_diff] = &mut stages.peaks;
    let head = stage(
        measure_peaks.then_some(p_validate),
        &mut stages.validate,
        || load("routes.yaml", head_text).expect("the generated table is valid"),
    );
    let rendered = stage(
        measure_peaks.then_some(p_render),
        &mut stages.render,
        || render(&head),
    );
    // The head as rendered above; the base is rendered here, as `capstan diff` does.
    let report = stage(measure_peaks.then_some(p_diff), &mut stages.diff, || {
        DiffReport::between(
            &Snapshot::rendered("base", None, base),
            &Snapshot::from_rendered("head", None, head, rendered),
        )
    });
    stages.total.0.push(start.elapsed());
    report
}

/// `haproxy -c` on the config of `routes` (with its map files), a few
/// times; None when HAProxy is not installed.
fn haproxy_check(routes: &RoutesFile, runs: usize) -> Option<Result<Samples, String>> {
    let dir = tempfile::TempDir::new().unwrap();
    let (file, _) = rendered::write_rendered(dir.path(), routes);
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

const ROW: usize = 46;

fn row(name: &str, samples: &Samples, peak: Option<usize>) {
    println!(
        "  {name:<ROW$} {:>11} {:>11} {:>11}",
        ms(samples.best()),
        ms(samples.median()),
        peak.map(mib).unwrap_or_default()
    );
}

fn bench(n: usize, iterations: usize) -> Outcome {
    let base_text = table::generated_table(n, None, 0);
    let head_text = with_one_route_changed(&base_text);
    let base = load("routes.yaml", &base_text).expect("the generated table is valid");
    assert_eq!(base.routes.len(), n);

    // One warm-up run (page faults, the lazily built schema validator), not counted.
    let report = validate_render_diff(&head_text, &base, &mut Stages::default(), false);
    assert_eq!(report.routes.routes.len(), 1, "exactly one route changed");

    let mut stages = Stages::default();
    for _ in 0..iterations {
        black_box(validate_render_diff(&head_text, &base, &mut stages, false));
    }
    // Peak heap: once for the whole pipeline, once per stage.
    let (peak, _) = peak_heap(|| {
        black_box(validate_render_diff(
            &head_text,
            &base,
            &mut Stages::default(),
            false,
        ))
    });
    let mut peaks = Stages::default();
    black_box(validate_render_diff(&head_text, &base, &mut peaks, true));

    let config = render(&load("routes.yaml", &head_text).unwrap()).to_string();
    println!(
        "\n{n} routes: routes.yaml {} KiB, haproxy.cfg {} KiB ({} lines), {iterations} iterations",
        base_text.len() / 1024,
        config.len() / 1024,
        config.lines().count()
    );
    println!(
        "  {:<ROW$} {:>11} {:>11} {:>11}",
        "stage", "best", "median", "peak heap"
    );
    row(
        "validate  validate::load",
        &stages.validate,
        Some(peaks.peaks[0]),
    );
    row(
        "render    render(head)",
        &stages.render,
        Some(peaks.peaks[1]),
    );
    row(
        "diff      render base, both texts, between",
        &stages.diff,
        Some(peaks.peaks[2]),
    );
    row(
        "total     validate + render + diff",
        &stages.total,
        Some(peak),
    );
    let head = load("routes.yaml", &head_text).expect("the head table is valid");
    match haproxy_check(&head, 3) {
        None => println!("  haproxy -c: not installed (scripts/install-test-deps)"),
        Some(Err(e)) => println!("  haproxy -c FAILED: {e}"),
        Some(Ok(samples)) => row("yardstick haproxy -c -q -f (same config)", &samples, None),
    }
    Outcome {
        routes: n,
        total_median: stages.total.median(),
        peak,
    }
}

/// One step of the breakdown: its times and the largest peak heap of its runs.
#[derive(Default)]
struct Step {
    samples: Samples,
    peak: usize,
}

impl Step {
    fn run<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let (bytes, result) = peak_heap(|| self.samples.time(f));
        self.peak = self.peak.max(bytes);
        result
    }
}

/// Where the time and memory of each stage go, step by step through the
/// library's public functions.
fn breakdown(n: usize, iterations: usize) {
    let text = table::generated_table(n, None, 0);
    let head_text = with_one_route_changed(&text);
    let base = load("routes.yaml", &text).unwrap();
    let head = load("routes.yaml", &head_text).unwrap();

    let mut steps: [Step; 11] = Default::default();
    for _ in 0..iterations {
        let [
            parse,
            check,
            semantic,
            build,
            display,
            base_snapshot_step,
            head_snapshot_step,
            clone,
            routes_diff,
            text_diff,
            between,
        ] = &mut steps;
        let document = parse
            .run(|| yaml::parse("routes.yaml", &head_text))
            .unwrap();
        let yaml::Document { value, source_map } = document;
        let checked = check.run(|| check_value("routes.yaml", value, &source_map));
        black_box(checked.expect("the generated table is valid"));
        black_box(semantic.run(|| semantic_errors(&head)));
        let built = build.run(|| render(&head));
        black_box(display.run(|| built.to_string()));
        let base_snapshot =
            base_snapshot_step.run(|| Snapshot::rendered("base", None, base.clone()));
        let head_snapshot =
            head_snapshot_step.run(|| Snapshot::from_rendered("head", None, head.clone(), built));
        black_box(clone.run(|| head.clone()));
        black_box(routes_diff.run(|| diff_routes(&base, &head)));
        // The snapshots' configs, map entries listed, as `between` diffs them.
        black_box(
            text_diff
                .run(|| config_diff(&base_snapshot.config, &head_snapshot.config, "base", "head")),
        );
        black_box(between.run(|| DiffReport::between(&base_snapshot, &head_snapshot)));
    }
    println!(
        "\nwhere it goes at {n} routes ({iterations} iterations; peak heap above the step's start):"
    );
    println!(
        "  {:<ROW$} {:>11} {:>11} {:>11}",
        "step", "best", "median", "peak heap"
    );
    let names = [
        "validate: yaml::parse (fast path -> Value)",
        "validate: check_value (schema+serde+semantic)",
        "            of which semantic_errors",
        "render:   render() (build the sections)",
        "render:   HaproxyConfig::to_string",
        "diff:     Snapshot::rendered base (clone+render)",
        "diff:     Snapshot::from_rendered head (clone)",
        "            of which RoutesFile::clone",
        "diff:     diff_routes (route level)",
        "diff:     config_diff (unified, maps listed)",
        "diff:     DiffReport::between (both above)",
    ];
    for (name, step) in names.iter().zip(&steps) {
        row(name, &step.samples, Some(step.peak));
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
