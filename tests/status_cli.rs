//! `capstan status` against a real `capstan serve`: what an operator sees,
//! and the exit code a script checks, when the last apply failed.

mod support;

use std::time::Duration;

use support::*;

/// `capstan status --url <capstan>`: (exit code, stdout, stderr).
fn status_cli(capstan: &Capstan) -> (Option<i32>, String, String) {
    run_capstan(&["status", "--url", &capstan.url()])
}

#[test]
fn status_shows_a_rejected_config_and_a_failing_fetch_and_exits_non_zero() {
    require_tools();
    let (a, http) = (Backend::start("A"), free_port());
    let remote = GitRemote::new();
    let good = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let url = remote.url();
    let capstan = Capstan::start(&["--repo", &url, "--poll-interval", "200ms"]);
    wait_until("the first commit applied", Duration::from_secs(20), || {
        capstan.status()["applied"]["revision"]["commit"] == good
    });
    let (code, out, err) = status_cli(&capstan);
    assert_eq!(code, Some(0), "in sync: {out}{err}");
    assert!(out.contains("in sync:  yes"), "{out}");

    // Valid for capstan, rejected by `haproxy -c` (a certificate this host
    // does not have): an error without file:line diagnostics.
    push_rejected_by_haproxy(
        &remote,
        &capstan,
        &routes_yaml(http, &route("a", "/a", &a.address())),
    );
    let (code, out, err) = status_cli(&capstan);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, Some(2), "not in sync, last error: {out}{err}");
    assert!(out.contains("in sync:  NO"), "{out}");
    assert!(out.contains("error:    [check] "), "{out}");
    assert!(
        out.contains("failed"),
        "the failed apply in the history: {out}"
    );

    // Back in sync, then the remote disappears: applied is still the newest
    // fetched revision, but fetching fails, which is worth a non-zero exit.
    let recovered = remote.push(&routes_yaml(http, &route("a", "/a2", &a.address())));
    wait_until("back in sync", Duration::from_secs(20), || {
        let status = capstan.status();
        status["applied"]["revision"]["commit"] == recovered && status["in_sync"] == true
    });
    assert_eq!(status_cli(&capstan).0, Some(0));
    let remote_dir = remote.dir.path().join("remote.git");
    std::fs::rename(&remote_dir, remote.dir.path().join("gone.git")).unwrap();
    wait_until(
        "the fetch failure reported",
        Duration::from_secs(20),
        || !capstan.status()["fetch"]["error"].is_null(),
    );
    let (code, out, err) = status_cli(&capstan);
    assert_eq!(code, Some(2), "fetch failing: {out}{err}");
    assert!(out.contains("fetch:    failing: "), "{out}");
}
