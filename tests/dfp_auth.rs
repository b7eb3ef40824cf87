//! Docker Flow Proxy's `usersSecret`, several `reqPathSearchReplace` pairs
//! and sticky sessions, through both doors (routes.yaml and the DFP API of a
//! real `capstan serve`), checked with real traffic through a real HAProxy:
//! who gets in, which path the backend sees, which server answers.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use support::*;

/// A GET of `path` through HAProxy on `port`, with `headers` (each ending in
/// `\r\n`): (status, the whole response).
fn get_with(port: u16, path: &str, headers: &str) -> (u16, String) {
    http_raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"),
    )
    .unwrap_or_else(|| panic!("no answer for {path}"))
}

/// The status of a GET of `path` as `user:password` (no credentials: `None`).
fn status_as(port: u16, path: &str, credentials: Option<&str>) -> u16 {
    let header = credentials.map_or(String::new(), |c| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(c)
        )
    });
    get_with(port, path, &header).0
}

/// Asks capstan to re-read its inputs and reconcile now: (status, `Message`).
fn reconcile_now(capstan: &Capstan) -> (u16, String) {
    let (code, body) = capstan.get("/v1/docker-flow-proxy/reload");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("a JSON answer");
    (code, answer["Message"].as_str().unwrap_or("").to_string())
}

fn dfp_call(capstan: &Capstan, query: &str) -> (u16, serde_json::Value) {
    let (code, body) = capstan.get(&format!("/v1/docker-flow-proxy/reconfigure?{query}"));
    let answer = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (code, answer)
}

fn haproxy_cfg(capstan: &Capstan) -> String {
    std::fs::read_to_string(capstan.state_dir.join("haproxy.cfg")).unwrap()
}

/// `openssl passwd -6`: a SHA-512 crypt hash, as `mkpasswd -m sha-512` makes.
fn sha512_crypt(password: &str) -> String {
    let output = Command::new("openssl")
        .args(["passwd", "-6", password])
        .output()
        .expect("openssl runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A routes.yaml whose route `/a` asks for a user of the file `users`.
fn users_file_routes(http: u16, backend: &Backend, users: &Path) -> String {
    routes_yaml(
        http,
        &format!(
            "{}    auth: {{userlist: ops}}\n",
            route("a", "/a", &backend.address())
        ),
    )
    .replace(
        "routes:\n",
        &format!(
            "userlists:\n  ops: {{file: {}}}\nroutes:\n",
            users.display()
        ),
    )
}

#[test]
fn a_userlist_file_is_hashed_stable_and_reread_on_every_reconcile() {
    require_tools();
    let secrets = tempfile::tempdir().unwrap();
    let users = secrets.path().join("dfp_users_ops");
    std::fs::write(&users, "admin:first-s3cret\nbob : pw-two\n").unwrap();
    let (a, http) = (Backend::start("A"), free_port());
    let remote = GitRemote::new();
    let commit = remote.push(&users_file_routes(http, &a, &users));
    let mut capstan = serve_git(&remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, &commit);

    assert_eq!(status_as(http, "/a", None), 401);
    assert_eq!(status_as(http, "/a", Some("admin:first-s3cret")), 200);
    assert_eq!(status_as(http, "/a", Some("bob:pw-two")), 200);
    assert_eq!(status_as(http, "/a", Some("admin:wrong")), 401);
    let config = haproxy_cfg(&capstan);
    assert!(config.contains("    user admin password $6$"), "{config}");
    assert!(!config.contains("first-s3cret"), "{config}");

    // The same file hashes the same: no reload, also after a restart.
    let reloads = capstan.haproxy_reloads();
    assert_eq!(reconcile_now(&capstan).0, 200);
    capstan.restart();
    assert_eq!(reconcile_now(&capstan).0, 200);
    assert_eq!(capstan.haproxy_reloads(), reloads);
    assert_eq!(haproxy_cfg(&capstan), config);

    // A rotated secret applies on the next reconcile.
    std::fs::write(&users, "admin:second-s3cret\n").unwrap();
    assert_eq!(reconcile_now(&capstan).0, 200);
    assert_eq!(status_as(http, "/a", Some("admin:second-s3cret")), 200);
    assert_eq!(status_as(http, "/a", Some("admin:first-s3cret")), 401);
    assert_eq!(status_as(http, "/a", Some("bob:pw-two")), 401);

    // A garbled or missing file is an error; the last good config serves on.
    std::fs::write(&users, "admin:second-s3cret\nthird-s3cret\n").unwrap();
    let (code, message) = reconcile_now(&capstan);
    assert_eq!(code, 500, "{message}");
    assert!(message.contains("userlist `ops`"), "{message}");
    assert!(message.contains("line 2"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
    std::fs::remove_file(&users).unwrap();
    let (code, message) = reconcile_now(&capstan);
    assert_eq!(code, 500, "{message}");
    assert!(message.contains(&users.display().to_string()), "{message}");
    let status = capstan.status();
    assert_eq!(status["last_error"]["stage"], "users", "{status:#}");
    assert_eq!(status_as(http, "/a", Some("admin:second-s3cret")), 200);
}

#[test]
fn users_secret_reads_dfp_users_files_in_the_secrets_directory() {
    require_tools();
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path().display().to_string();
    // DFP's documented form: comma-separated, plaintext.
    std::fs::write(
        secrets.path().join("dfp_users_monitoring"),
        "admin:pw-one,viewer:pw-two",
    )
    .unwrap();
    std::fs::write(
        secrets.path().join("dfp_users_hashed"),
        format!("ops:{}\n", sha512_crypt("pw-three")),
    )
    .unwrap();
    let (mon, enc, http) = (Backend::start("MON"), Backend::start("ENC"), free_port());
    let remote = GitRemote::new();
    remote.push(&routes_yaml(http, "  []\n"));
    let capstan = serve_git(&remote, &["--poll-interval", "1h", "--secrets-dir", &dir]);
    wait_until("capstan in sync", Duration::from_secs(20), || {
        capstan.status()["in_sync"] == true
    });

    let (code, answer) = dfp_call(
        &capstan,
        &format!(
            "serviceName=mon&servicePath=/mon&port={}&outboundHostname=127.0.0.1&usersSecret=monitoring",
            mon.port
        ),
    );
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(status_as(http, "/mon", None), 401);
    assert_eq!(status_as(http, "/mon", Some("admin:pw-one")), 200);
    assert_eq!(status_as(http, "/mon", Some("viewer:pw-two")), 200);
    assert_eq!(status_as(http, "/mon", Some("viewer:pw-one")), 401);

    let (code, answer) = dfp_call(
        &capstan,
        &format!(
            "serviceName=enc&servicePath=/enc&port={}&outboundHostname=127.0.0.1&usersSecret=hashed&usersPassEncrypted=true",
            enc.port
        ),
    );
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(status_as(http, "/enc", Some("ops:pw-three")), 200);
    assert_eq!(status_as(http, "/enc", Some("admin:pw-one")), 401);
    assert!(!haproxy_cfg(&capstan).contains("pw-one"));

    // A secret that is not there, or not hashes when it says so: a 400
    // naming the parameter, and nothing stored.
    for query in [
        "serviceName=nope&servicePath=/nope&port=80&usersSecret=absent",
        "serviceName=nope&servicePath=/nope&port=80&usersSecret=monitoring&usersPassEncrypted=true",
        "serviceName=nope&servicePath=/nope&port=80&usersSecret=../monitoring",
    ] {
        let (code, answer) = dfp_call(&capstan, query);
        assert_eq!(code, 400, "{query}: {answer:#}");
        let message = answer["Message"].as_str().unwrap();
        assert!(message.contains("usersSecret"), "{message}");
        assert!(!message.contains("pw-"), "{message}");
    }
    assert!(!capstan.status()["overrides"].to_string().contains("nope"));
}

#[test]
fn several_path_rewrites_apply_in_order_through_both_doors() {
    require_tools();
    let (echo, http) = (Backend::start_echoing("E"), free_port());
    let remote = GitRemote::new();
    let commit = remote.push(&routes_yaml(
        http,
        &format!(
            "{}    rewrite_path:\n      - {{regex: '^/a/(.*)', replace: '/b/\\1'}}\n      - {{regex: '^/b/(.*)', replace: '/c/\\1'}}\n",
            route("a", "/a", &echo.address())
        ),
    ));
    let capstan = serve_git(&remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, &commit);
    let (code, response) = get_with(http, "/a/x?q=1", "");
    assert_eq!(code, 200, "{response}");
    assert!(response.contains("\r\n\r\nE /c/x?q=1\n"), "{response}");

    // DFP's `search,replace:search,replace`, each pair on the path the previous made.
    let (code, answer) = dfp_call(
        &capstan,
        &format!(
            "serviceName=d&servicePath=/d&port={}&outboundHostname=127.0.0.1&reqPathSearchReplace=/d/,/e/:%5E/e/(v%5B0-9%5D),/%5C1/f",
            echo.port
        ),
    );
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(
        answer["ServiceDest"][0]["ReqPathSearchReplace"],
        "/d/,/e/:^/e/(v[0-9]),/\\1/f"
    );
    let (code, response) = get_with(http, "/d/v2/x", "");
    assert_eq!(code, 200, "{response}");
    assert!(response.contains("\r\n\r\nE /v2/f/x\n"), "{response}");
}

/// The `Set-Cookie` header of a response, and who answered (the body's first word).
fn cookie_and_server(response: &str) -> (Option<String>, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let cookie = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("set-cookie")
            .then(|| value.trim().to_string())
    });
    (cookie, body.split(' ').next().unwrap().to_string())
}

#[test]
fn sticky_sessions_use_a_cookie_named_after_the_service() {
    require_tools();
    let (a, b, http) = (Backend::start("A"), Backend::start("B"), free_port());
    let remote = GitRemote::new();
    let commit = remote.push(&routes_yaml(
        http,
        &format!(
            "  - service: shop\n    port: 80\n    paths: [/shop]\n    sticky: true\n    servers: [\"{}\", \"{}\"]\n",
            a.address(),
            b.address()
        ),
    ));
    let capstan = serve_git(&remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, &commit);

    // Without a cookie, round robin over both, each answer naming its server.
    let mut cookies = std::collections::BTreeMap::new();
    for _ in 0..4 {
        let (code, response) = get_with(http, "/shop", "");
        assert_eq!(code, 200, "{response}");
        let (cookie, server) = cookie_and_server(&response);
        let cookie = cookie.unwrap_or_else(|| panic!("no Set-Cookie: {response}"));
        assert!(cookie.starts_with("shop=shop-"), "{cookie}");
        cookies.insert(server, cookie);
    }
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    // A client that sends its cookie back stays on its server.
    for (server, cookie) in &cookies {
        let pair = cookie.split(';').next().unwrap();
        for _ in 0..4 {
            let (_, response) = get_with(http, "/shop", &format!("Cookie: {pair}\r\n"));
            assert_eq!(&cookie_and_server(&response).1, server, "{response}");
        }
    }

    // Through the DFP API: the cookie is named after `serviceName`.
    let (code, answer) = dfp_call(
        &capstan,
        &format!(
            "serviceName=cart&servicePath=/cart&port={}&outboundHostname=127.0.0.1&sessionType=sticky-server",
            a.port
        ),
    );
    assert_eq!(code, 200, "{answer:#}");
    let (_, response) = get_with(http, "/cart", "");
    let cookie = cookie_and_server(&response).0.unwrap_or_default();
    assert!(cookie.starts_with("cart=cart-1"), "{response}");
}
