//! `capstan serve` end to end: a real git remote, a real HAProxy started by
//! capstan, real HTTP backends on loopback, checked by which backend answers.

mod support;

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use support::*;

const SECRET: &str = "webhook-secret";

fn signed_push(capstan: &Capstan, secret: &str, body: &str) -> (u16, String) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    reqwest_post(
        &format!("{}/v1/webhook/git", capstan.url()),
        body,
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &format!("sha256={signature}")),
        ],
    )
}

fn reqwest_post(url: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new().post(url).body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

#[test]
fn a_pushed_route_serves_by_polling_and_a_restart_reloads_nothing() {
    require_tools();
    let (a, http) = (Backend::start("A"), free_port());
    let remote = GitRemote::new();
    let commit = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let mut capstan = serve_git(&remote, &["--poll-interval", "300ms"]);
    wait_for_backend(http, "/a/x", "A");
    wait_applied(&capstan, &commit);
    let status = capstan.status();
    assert_eq!(status["in_sync"], true, "{status:#}");
    assert_eq!(status["history"][0]["method"], "reload");

    // A push lands through polling.
    let b = Backend::start("B");
    let routes = format!(
        "{}{}",
        route("a", "/a", &a.address()),
        route("b", "/b", &b.address())
    );
    let commit = remote.push(&routes_yaml(http, &routes));
    wait_for_backend(http, "/b", "B");
    wait_applied(&capstan, &commit);

    // capstan goes away: HAProxy keeps serving; back again, it reloads nothing.
    let reloads = capstan.haproxy_reloads();
    capstan.stop_capstan();
    wait_for_backend(http, "/a", "A");
    capstan.restart();
    wait_until(
        "the first reconcile after restart",
        Duration::from_secs(20),
        || capstan.metric("capstan_reconciles_total{result=\"ok\"}") >= 1.0,
    );
    assert_eq!(
        capstan.haproxy_reloads(),
        reloads,
        "a restart of capstan must not reload"
    );
    assert_eq!(capstan.metric("capstan_reloads_total{result=\"ok\"}"), 0.0);
    assert_eq!(capstan.status()["applied"]["revision"]["commit"], commit);
    wait_for_backend(http, "/b", "B");
}

#[test]
fn a_webhook_triggers_at_once_and_a_bad_signature_triggers_nothing() {
    require_tools();
    let (a, b, http) = (Backend::start("A"), Backend::start("B"), free_port());
    let remote = GitRemote::new();
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let first = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let capstan = serve_git(
        &remote,
        &[
            "--poll-interval",
            "1h",
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    wait_applied(&capstan, &first);

    let routes = format!(
        "{}{}",
        route("a", "/a", &a.address()),
        route("b", "/b", &b.address())
    );
    let second = remote.push(&routes_yaml(http, &routes));
    let body = r#"{"ref":"refs/heads/main"}"#;
    let (code, answer) = signed_push(&capstan, "wrong secret", body);
    assert_eq!(code, 401, "{answer}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(capstan.status()["applied"]["revision"]["commit"], first);
    assert_eq!(http_get(http, "/b", "localhost").map(|r| r.0), Some(503));

    // A push to another branch is acknowledged and ignored.
    let (code, answer) = signed_push(&capstan, SECRET, r#"{"ref":"refs/heads/feature"}"#);
    assert_eq!(code, 202, "{answer}");
    assert!(answer.contains("ignored"), "{answer}");

    let (code, answer) = signed_push(&capstan, SECRET, body);
    assert_eq!(code, 202, "{answer}");
    wait_for_backend(http, "/b", "B");
    wait_applied(&capstan, &second);
    assert_eq!(
        capstan.metric("capstan_webhook_requests_total{result=\"unauthorized\"}"),
        1.0
    );
    assert_eq!(
        capstan.metric("capstan_webhook_requests_total{result=\"accepted\"}"),
        1.0
    );
}

#[test]
fn changing_and_removing_routes_touches_only_them() {
    require_tools();
    let (a, b, http) = (Backend::start("A"), Backend::start("B"), free_port());
    let remote = GitRemote::new();
    let both = format!(
        "{}{}",
        route("a", "/a", &a.address()),
        route("b", "/b", &b.address())
    );
    remote.push(&routes_yaml(http, &both));
    let capstan = serve_git(&remote, &["--poll-interval", "200ms"]);
    wait_for_backend(http, "/a", "A");
    wait_for_backend(http, "/b", "B");

    // Move b from /b to /bee: a is untouched.
    let moved = format!(
        "{}{}",
        route("a", "/a", &a.address()),
        route("b", "/bee", &b.address())
    );
    let commit = remote.push(&routes_yaml(http, &moved));
    wait_applied(&capstan, &commit);
    wait_for_backend(http, "/bee", "B");
    assert_eq!(http_get(http, "/b", "localhost").map(|r| r.0), Some(503));
    wait_for_backend(http, "/a", "A");
    let applied = capstan.status()["history"][0].clone();
    let prefix_map = capstan.state_dir.join("haproxy.cfg.maps/prefix.map");
    let prefix_map = prefix_map.to_str().unwrap();
    assert_eq!(
        applied["changes"],
        serde_json::json!([
            {"kind": "add_map_entry", "map": prefix_map, "key": "/bee", "value": "b-be80"},
            {"kind": "remove_map_entry", "map": prefix_map, "key": "/b"},
        ]),
        "only the routing rules changed"
    );
    assert_eq!(applied["method"], "runtime", "{applied:#}");

    // Remove b: it stops routing, a keeps serving.
    let commit = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    wait_applied(&capstan, &commit);
    assert_eq!(http_get(http, "/bee", "localhost").map(|r| r.0), Some(503));
    wait_for_backend(http, "/a", "A");
}

#[test]
fn a_bad_commit_keeps_the_last_good_config_serving_and_the_next_good_one_recovers() {
    require_tools();
    let (a, http) = (Backend::start("A"), free_port());
    let remote = GitRemote::new();
    let good = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let capstan = serve_git(&remote, &["--poll-interval", "200ms"]);
    wait_applied(&capstan, &good);

    // Invalid routes.yaml: a port out of range.
    let bad = remote.push(&routes_yaml(
        http,
        &route("a", "/a", &a.address()).replace("port: 80", "port: 70000"),
    ));
    wait_until("the bad commit reported", Duration::from_secs(20), || {
        capstan.status()["last_error"]["revision"]["commit"] == bad
    });
    let status = capstan.status();
    assert_eq!(status["in_sync"], false);
    assert_eq!(status["last_error"]["stage"], "validate");
    let diagnostic = &status["last_error"]["diagnostics"][0];
    assert_eq!(diagnostic["line"], 7, "{status:#}");
    assert_eq!(diagnostic["field"], "routes[0].port");
    assert_eq!(status["applied"]["revision"]["commit"], good);
    assert_eq!(capstan.metric("capstan_in_sync"), 0.0);
    wait_for_backend(http, "/a", "A");

    // Valid for capstan, rejected by `haproxy -c` (a certificate this host
    // does not have): rolled back.
    push_rejected_by_haproxy(
        &remote,
        &capstan,
        &routes_yaml(http, &route("a", "/a", &a.address())),
    );
    let status = capstan.status();
    assert_eq!(status["last_error"]["stage"], "check", "{status:#}");
    assert_eq!(status["applied"]["revision"]["commit"], good);
    assert_eq!(status["history"][0]["outcome"], "failed");
    let config = std::fs::read_to_string(capstan.state_dir.join("haproxy.cfg")).unwrap();
    assert!(
        !config.contains("/nonexistent/site.pem"),
        "the live file is the last good one:\n{config}"
    );
    assert_eq!(capstan.map_lines("prefix.map"), ["/a a-be80"]);
    wait_for_backend(http, "/a", "A");
    let failed_reloads_before = capstan.metric("capstan_reloads_total{result=\"error\"}");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        capstan.metric("capstan_reloads_total{result=\"error\"}"),
        failed_reloads_before,
        "a failed config is not retried on every poll"
    );

    let recovered = remote.push(&routes_yaml(http, &route("a", "/a2", &a.address())));
    wait_applied(&capstan, &recovered);
    wait_for_backend(http, "/a2", "A");
    let status = capstan.status();
    assert_eq!(status["in_sync"], true);
    assert!(status["last_error"].is_null(), "{status:#}");
}

#[test]
fn no_op_and_server_only_changes_do_not_reload() {
    require_tools();
    let (a, b, http) = (Backend::start("A"), Backend::start("B"), free_port());
    let remote = GitRemote::new();
    let first = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let capstan = serve_git(&remote, &["--poll-interval", "200ms"]);
    wait_applied(&capstan, &first);
    let reloads = capstan.haproxy_reloads();

    // A comment-only commit: nothing to do, but it is the applied revision now.
    let comment = remote.push(&format!(
        "# a comment\n{}",
        routes_yaml(http, &route("a", "/a", &a.address()))
    ));
    wait_applied(&capstan, &comment);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        capstan.haproxy_reloads(),
        reloads,
        "a no-op reconcile must not reload"
    );

    // The server moves from A to B: a runtime change, no reload.
    let moved = remote.push(&routes_yaml(http, &route("a", "/a", &b.address())));
    wait_applied(&capstan, &moved);
    wait_for_backend(http, "/a", "B");
    assert_eq!(
        capstan.haproxy_reloads(),
        reloads,
        "a server-only change must not reload"
    );
    let status = capstan.status();
    assert_eq!(status["history"][0]["method"], "runtime", "{status:#}");
    assert_eq!(
        capstan.metric("capstan_runtime_operations_total{result=\"ok\"}"),
        1.0
    );
    let config = std::fs::read_to_string(capstan.state_dir.join("haproxy.cfg")).unwrap();
    assert!(
        config.contains(&b.address()),
        "the runtime change is written to the file too"
    );
}

#[test]
fn an_unreachable_remote_keeps_serving_and_says_so() {
    require_tools();
    let (a, http) = (Backend::start("A"), free_port());
    let remote = GitRemote::new();
    let first = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let capstan = serve_git(&remote, &["--poll-interval", "200ms"]);
    wait_applied(&capstan, &first);
    std::fs::rename(
        remote.dir.path().join("remote.git"),
        remote.dir.path().join("gone.git"),
    )
    .unwrap();
    wait_until("the fetch error in status", Duration::from_secs(20), || {
        capstan.status()["fetch"]["error"].is_string()
    });
    assert!(capstan.metric("capstan_git_fetch_errors_total") >= 1.0);
    wait_for_backend(http, "/a", "A");
}

#[test]
fn status_and_live_diff_from_the_command_line() {
    require_tools();
    let (a, http) = (Backend::start("A"), free_port());
    let remote = GitRemote::new();
    let first = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let capstan = serve_git(&remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, &first);

    let status = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["status", "--url", &capstan.url()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{text}");
    assert!(text.contains("in sync:  yes"), "{text}");
    assert!(text.contains(&first[..7]), "{text}");

    // A candidate in the clone's working tree, compared with what is live.
    let work = remote.dir.path().join("work");
    let candidate = format!(
        "{}{}",
        route("a", "/a", &a.address()),
        route("b", "/b", &a.address())
    );
    std::fs::write(work.join("routes.yaml"), routes_yaml(http, &candidate)).unwrap();
    let (code, report) = capstan.diff_live(&work);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(report["summary"]["added"], 1);
    assert_eq!(report["routes"][0]["route"], "b:80");
    assert_eq!(report["base"]["commit"], first);
    assert!(
        report["config_diff"]
            .as_str()
            .unwrap()
            .contains("\n+#   /b b-be80\n")
    );
}

#[test]
fn attaches_to_an_haproxy_started_elsewhere() {
    require_tools();
    let (a, http) = (Backend::start("A"), free_port());
    let outside = tempfile::tempdir().unwrap();
    let config = outside.path().join("haproxy.cfg");
    let master = outside.path().join("master.sock");
    std::fs::write(
        &config,
        format!("defaults\n    mode http\n    timeout client 5s\n    timeout server 5s\n    timeout connect 5s\nfrontend old\n    bind 127.0.0.1:{http}\n"),
    )
    .unwrap();
    // An operator's HAProxy, in master-worker mode, not started by capstan.
    let mut haproxy = std::process::Command::new("haproxy")
        .args(["-W", "-S"])
        .arg(&master)
        .arg("-f")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the outside HAProxy", Duration::from_secs(10), || {
        master.exists()
    });

    let remote = GitRemote::new();
    let commit = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let url = remote.url();
    let capstan = Capstan::start(&[
        "--repo",
        &url,
        "--poll-interval",
        "1h",
        "--attach-master-socket",
        master.to_str().unwrap(),
        "--attach-config",
        config.to_str().unwrap(),
    ]);
    wait_applied(&capstan, &commit);
    wait_for_backend(http, "/a", "A");
    let written = std::fs::read_to_string(&config).unwrap();
    let prefix_map = outside.path().join("haproxy.cfg.maps/prefix.map");
    assert!(
        written.contains(&format!("path,map_beg({})", prefix_map.display())),
        "capstan rewrote the attached config:\n{written}"
    );
    assert_eq!(
        std::fs::read_to_string(&prefix_map).unwrap(),
        "/a a-be80\n",
        "and wrote its map next to it"
    );
    assert_eq!(capstan.status()["history"][0]["method"], "reload");
    drop(capstan);
    // SIGTERM: the master stops its workers too.
    let _ = std::process::Command::new("kill")
        .arg(haproxy.id().to_string())
        .status();
    let _ = haproxy.wait();
}
