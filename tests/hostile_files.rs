//! Hostile routes files through the real binary: escapes HAProxy would
//! decode, a file too large to read, and values too large to echo. What an
//! operator sees (`capstan validate`, `/v1/status`, the log) names the
//! problem and stays short.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// `capstan validate FILE`: (exit code, stdout and stderr together).
fn validate(file: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .arg("validate")
        .arg(file)
        .output()
        .expect("capstan validate runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

/// A routes file with one route on `path` (written as YAML text as is).
fn one_route(path: &str) -> String {
    format!("version: 1\nroutes:\n  - service: app\n    port: 80\n    paths: [{path}]\n")
}

#[test]
fn validate_refuses_escapes_in_paths_naming_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    // Single-quoted YAML keeps the backslash: the text `\x00` HAProxy would
    // decode into a NUL that ends the word. Double-quoted YAML makes a real
    // NUL or newline of it.
    for (written, message) in [
        (r"'/app\x00zz'", r"`\` is not allowed"),
        (r"'/app\nzz'", r"`\` is not allowed"),
        (r"'/app\\zz'", r"`\` is not allowed"),
        (r#""/app\x00zz""#, "does not match"),
        (r#""/app\nzz""#, "does not match"),
    ] {
        std::fs::write(&file, one_route(written)).unwrap();
        let (code, output) = validate(&file);
        assert_eq!(code, Some(1), "{written} was accepted: {output}");
        let at = format!("{}:5:13: routes[0].paths[0]: ", file.display());
        assert!(
            output.contains(&at) && output.contains(message),
            "{written}: expected {at}…{message} in:\n{output}"
        );
    }
}

/// A file over the size limit is refused before it is parsed, in a line.
#[test]
fn validate_refuses_a_50_mb_file_fast_and_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    let huge = format!("/{}", "a".repeat(50 * 1024 * 1024));
    std::fs::write(&file, one_route(&huge)).unwrap();
    let size = std::fs::metadata(&file).unwrap().len();
    let started = Instant::now();
    let (code, output) = validate(&file);
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{}", &output[..output.len().min(2000)]);
    assert!(output.len() < 2048, "{} bytes of output", output.len());
    assert!(
        output.contains(&file.display().to_string())
            && output.contains(&format!("is {size} bytes"))
            && output.contains("16 MiB"),
        "{output}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// A value far over its field's limit is named, not echoed.
#[test]
fn validate_quotes_a_100_kb_path_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    let long = format!("/{}", "a".repeat(100 * 1024));
    std::fs::write(&file, one_route(&long)).unwrap();
    let (code, output) = validate(&file);
    assert_eq!(code, Some(1));
    assert!(output.len() < 1024, "{} bytes of output", output.len());
    assert!(
        output.contains("routes.yaml:5:13: routes[0].paths[0]: ")
            && output.contains("… (102401 bytes)")
            && output.contains("longer than 1024 characters"),
        "{output}"
    );
}

/// A 100 KB field name (an unknown field, written as a quoted YAML key) is
/// named, not echoed: field paths quote keys like values.
#[test]
fn validate_quotes_a_100_kb_field_name_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    let key = "k".repeat(100 * 1024);
    let text = format!("{}    ? \"{key}\"\n    : 1\n", one_route("/a"));
    std::fs::write(&file, text).unwrap();
    let (code, output) = validate(&file);
    assert_eq!(code, Some(1));
    assert!(output.len() < 1024, "{} bytes of output", output.len());
    assert!(
        output.contains(":6:7: routes[0].kkk") && output.contains("unknown field"),
        "{output}"
    );
}

/// `capstan serve --routes-file` with a huge value, then a file over the
/// limit: status and log say what is wrong without echoing it.
#[test]
fn serve_status_and_log_stay_small_with_huge_values() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.yaml");
    let http = free_port();
    let table = |path: &str| {
        format!(
            "version: 1\ndefaults:\n  bind_address: 127.0.0.1\n  http_port: {http}\nroutes:\n  - service: app\n    port: 80\n    paths: [{path}]\n"
        )
    };
    std::fs::write(&file, table(&format!("/{}", "a".repeat(100 * 1024)))).unwrap();
    let capstan = Capstan::start(&[
        "--routes-file",
        file.to_str().unwrap(),
        "--poll-interval",
        "1s",
    ]);
    let small_error = |needle: &str| {
        let (code, body) = capstan.get("/v1/status");
        assert_eq!(code, 200);
        assert!(body.len() < 64 * 1024, "/v1/status is {} bytes", body.len());
        body.contains(needle)
    };
    wait_until("the 100 KB path reported", Duration::from_secs(20), || {
        small_error("(102401 bytes)")
    });

    std::fs::write(&file, table(&format!("/{}", "a".repeat(50 * 1024 * 1024)))).unwrap();
    wait_until("the 50 MB file reported", Duration::from_secs(20), || {
        small_error("16 MiB")
    });
    // A few more polls of the same file.
    std::thread::sleep(Duration::from_secs(3));
    assert!(small_error("16 MiB"));
    let state = std::fs::metadata(capstan.state_dir.join("state.json")).unwrap();
    assert!(
        state.len() < 64 * 1024,
        "state.json is {} bytes",
        state.len()
    );
    let log = capstan.log();
    assert!(log.len() < 256 * 1024, "the log is {} bytes", log.len());
}

/// A commit whose routes file is over the limit: refused (from the blob's
/// size, before it is read), named in status, and what serves is untouched.
#[test]
fn a_git_commit_over_the_limit_is_refused_and_named() {
    require_tools();
    let backend = Backend::start("APP");
    let http = free_port();
    let remote = GitRemote::new();
    remote.push(&routes_yaml(
        http,
        &route("app", "/app", &backend.address()),
    ));
    let url = remote.url();
    let capstan = Capstan::start(&["--repo", url.as_str(), "--poll-interval", "1h"]);
    wait_for_backend(http, "/app", "APP");

    let padding = format!("# {}\n", "x".repeat(17 * 1024 * 1024));
    let huge = format!(
        "{}{padding}",
        routes_yaml(http, &route("app", "/moved", &backend.address()))
    );
    remote.push(&huge);
    assert_eq!(
        http_post(capstan.api_port, "/v1/webhook/git", "{}"),
        Some(202)
    );
    wait_until("the large commit refused", Duration::from_secs(20), || {
        let (_, body) = capstan.get("/v1/status");
        assert!(body.len() < 64 * 1024, "/v1/status is {} bytes", body.len());
        body.contains(&format!("is {} bytes", huge.len())) && body.contains("16 MiB")
    });
    wait_for_backend(http, "/app", "APP");
}
