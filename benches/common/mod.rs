//! What the end-to-end benches share on top of the test rig
//! (`tests/support`): pushing a change and timing it until HAProxy serves
//! it, and the figures they print.
#![allow(dead_code)] // each bench uses part of it

use std::time::{Duration, Instant};

use crate::support::{Capstan, GitRemote, http_get, http_post, wait_until};

/// Waits until `capstan` reports `commit` applied; its status then.
pub fn wait_applied_within(
    capstan: &Capstan,
    commit: &str,
    timeout: Duration,
) -> serde_json::Value {
    wait_until(&format!("{commit} applied"), timeout, || {
        capstan.status()["applied"]["revision"]["commit"] == commit
    });
    capstan.status()
}

/// Pushes `text` as routes.yaml and tells `capstan` through the git
/// webhook: the commit, and when `git push` returned (where times start).
pub fn push_and_notify(remote: &GitRemote, capstan: &Capstan, text: &str) -> (String, Instant) {
    let commit = remote.push(text);
    let started = Instant::now();
    http_post(capstan.api_port, "/v1/webhook/git", "{}");
    (commit, started)
}

/// Milliseconds from `started` until `answer` holds for a request for
/// `path` through HAProxy on `port`. Polls every 2 ms (`wait_until`'s 25 ms
/// would be a quarter of the 100 ms these figures are held against).
pub fn ms_until_answer(
    port: u16,
    path: &str,
    started: Instant,
    answer: impl Fn(Option<(u16, String)>) -> bool,
) -> f64 {
    let deadline = started + Duration::from_secs(120);
    loop {
        let last = http_get(port, path, "localhost");
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        if answer(last.clone()) {
            return elapsed;
        }
        assert!(
            Instant::now() < deadline,
            "{path} on port {port}: still {last:?} after 120 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether `answer` is a 200 from the test backend `name`.
pub fn answered_by(answer: &Option<(u16, String)>, name: &str) -> bool {
    matches!(answer, Some((200, body)) if body.starts_with(&format!("{name} ")))
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// A `/proc/<pid>/status` memory field (`VmRSS`, `VmHWM`) in MiB; 0 when unreadable.
pub fn proc_status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
