//! What a migrating Docker Flow Proxy user relies on, end to end through a
//! real `capstan serve`, a real HAProxy and real backends: DFP's routing
//! precedence (ACME challenges on every domain), `X-Forwarded-Proto` over
//! TLS, no credentials forwarded after basic auth, and the calls Docker Flow
//! Swarm Listener makes.

mod support;

use std::time::Duration;

use support::*;

/// `sha-512` crypt(3) of "capstan" (as in the embedded routes.yaml).
const HASH: &str = "$6$hxg0L6hw5v1ClN9a$/pj46VLfzrR7BX1NBrKwiveRqDP5ps5zluTTmn7uktxm7ZA4eh5wV77WoVtP2JVhIg9lmKSElyW/pbhQojxFI/";

/// A capstan serving git's `routes` (entries under `routes:`) on `http`,
/// resolving service names through `dns`; `defaults` are extra lines.
fn serve(remote: &GitRemote, http: u16, dns: &Dns, defaults: &str, routes: &str) -> Capstan {
    remote.push(&format!(
        "version: 1\ndefaults:\n  bind_address: 127.0.0.1\n  http_port: {http}\n  resolvers: [\"127.0.0.1:{}\"]\n{defaults}routes:{}",
        dns.port,
        if routes.is_empty() { " []\n".to_string() } else { format!("\n{routes}") }
    ));
    let url = remote.url();
    let capstan = Capstan::start(&["--repo", url.as_str(), "--poll-interval", "1h"]);
    wait_until("capstan in sync", Duration::from_secs(20), || {
        capstan.status()["in_sync"] == true
    });
    capstan
}

/// A DFP call: (status code, JSON answer).
fn dfp(capstan: &Capstan, call: &str) -> (u16, serde_json::Value) {
    let (code, body) = capstan.get(&format!("/v1/docker-flow-proxy/{call}"));
    let value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (code, value)
}

fn reconfigure(capstan: &Capstan, query: &str) {
    let (code, answer) = dfp(capstan, &format!("reconfigure?{query}"));
    assert_eq!(
        (code, &answer["Status"]),
        (200, &"OK".into()),
        "{query}: {answer:#}"
    );
}

/// Which backend answers `path` on `host`, once HAProxy resolved the names.
fn answered_by(http: u16, path: &str, host: &str) -> String {
    let mut last = None;
    for _ in 0..400 {
        last = http_get(http, path, host);
        if let Some((200, body)) = &last {
            return body.split(' ').next().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{host}{path} was never served; last answer: {last:?}");
}

#[test]
fn path_routes_win_over_domain_only_routes_and_acme_challenges_reach_every_domain() {
    require_tools();
    let (go_demo, whole, acme, shop) = (
        Backend::start("go-demo"),
        Backend::start("whole"),
        Backend::start("acme"),
        Backend::start("shop"),
    );
    let dns = Dns::start(&["go-demo", "whole", "acme", "shop"]);
    let http = free_port();
    let remote = GitRemote::new();
    let capstan = serve(&remote, http, &dns, "", "");

    reconfigure(
        &capstan,
        &format!(
            "serviceName=go-demo&servicePath=/demo&port={}",
            go_demo.port
        ),
    );
    reconfigure(
        &capstan,
        &format!(
            "serviceName=whole&serviceDomain=whole.test&port={}",
            whole.port
        ),
    );
    reconfigure(
        &capstan,
        &format!(
            "serviceName=shop&serviceDomain=shop.test&servicePath=/&port={}&httpsOnly=true",
            shop.port
        ),
    );
    // What Let's Encrypt companions register.
    reconfigure(
        &capstan,
        &format!(
            "serviceName=acme&servicePath=/.well-known/acme-challenge&aclName=__acme_companion&port={}",
            acme.port
        ),
    );

    // As in DFP, a path route is tried before a route that takes a whole domain.
    assert_eq!(answered_by(http, "/demo/x", "whole.test"), "go-demo");
    assert_eq!(answered_by(http, "/other", "whole.test"), "whole");
    // The challenge reaches its service on every domain, even an HTTPS-only one.
    for host in ["whole.test", "shop.test", "anything.test"] {
        assert_eq!(
            answered_by(http, "/.well-known/acme-challenge/token", host),
            "acme",
            "{host}"
        );
    }
    assert_eq!(http_get(http, "/", "shop.test").map(|r| r.0), Some(302));
}

#[test]
fn routes_yaml_priority_overrides_the_computed_order() {
    require_tools();
    let (go_demo, whole) = (Backend::start("go-demo"), Backend::start("whole"));
    let dns = Dns::start(&[]);
    let http = free_port();
    let routes = |priority: &str| {
        format!(
            "  - service: go-demo\n    port: 80\n    paths: [/demo]\n    servers: [\"{}\"]\n  - service: whole\n    port: 80\n    domains: [whole.test]\n    servers: [\"{}\"]\n{priority}",
            go_demo.address(),
            whole.address()
        )
    };
    let remote = GitRemote::new();
    let capstan = serve(&remote, http, &dns, "", &routes(""));
    assert_eq!(answered_by(http, "/demo/x", "whole.test"), "go-demo");

    let commit = remote.push(&capstan_routes(http, &dns, &routes("    priority: 1\n")));
    assert_eq!(
        http_post(capstan.api_port, "/v1/webhook/git", "{}"),
        Some(202)
    );
    wait_applied(&capstan, &commit);
    assert_eq!(answered_by(http, "/demo/x", "whole.test"), "whole");
    assert_eq!(answered_by(http, "/demo/x", "other.test"), "go-demo");
}

/// The same file [`serve`] pushes.
fn capstan_routes(http: u16, dns: &Dns, routes: &str) -> String {
    format!(
        "version: 1\ndefaults:\n  bind_address: 127.0.0.1\n  http_port: {http}\n  resolvers: [\"127.0.0.1:{}\"]\nroutes:\n{routes}",
        dns.port
    )
}

#[test]
fn services_learn_that_a_request_came_over_https() {
    require_tools();
    let app = Backend::start_echoing("app");
    let dns = Dns::start(&["app"]);
    let (http, https) = (free_port(), free_port());
    let certs = tempfile::tempdir().unwrap();
    let pem = self_signed_pem(certs.path(), "site.pem", &["app.test"]);
    let remote = GitRemote::new();
    let capstan = serve(
        &remote,
        http,
        &dns,
        &format!(
            "  https:\n    port: {https}\n    certificates: {}\n",
            pem.display()
        ),
        "",
    );
    reconfigure(
        &capstan,
        &format!("serviceName=app&servicePath=/app&port={}", app.port),
    );
    answered_by(http, "/app", "app.test");

    let (code, response) = https_get(https, "/app", "app.test", &[]).expect("HTTPS answers");
    assert_eq!(code, 200, "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\nx-forwarded-proto: https\r\n"),
        "{response}"
    );
    // Over plain HTTP nothing claims https.
    let (_, plain) = http_get(http, "/app", "app.test").unwrap();
    assert!(
        !plain
            .to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "{plain}"
    );
}

#[test]
fn the_backend_never_sees_the_password_after_basic_auth() {
    require_tools();
    let (app, git_app) = (
        Backend::start_echoing("app"),
        Backend::start_echoing("git-app"),
    );
    let dns = Dns::start(&["app"]);
    let http = free_port();
    let remote = GitRemote::new();
    let routes = format!(
        "  - service: git-app\n    port: 80\n    paths: [/keeps]\n    servers: [\"{}\"]\n    auth: {{userlist: ops, forward_credentials: true}}\n",
        git_app.address()
    );
    let capstan = serve(
        &remote,
        http,
        &dns,
        &format!("userlists:\n  ops:\n    - name: admin\n      password_hash: {HASH}\n"),
        &routes,
    );
    // DFP's documented form, with a space after the comma.
    let users = format!("admin:{HASH}, other:{HASH}")
        .replace('$', "%24")
        .replace(' ', "%20");
    reconfigure(
        &capstan,
        &format!(
            "serviceName=app&servicePath.1=/app&port.1={port}&servicePath.2=/app/health&port.2={port}&ignoreAuthorization.2=true&users={users}&usersPassEncrypted=true",
            port = app.port
        ),
    );
    // admin:capstan
    let request = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46Y2Fwc3Rhbg==\r\nConnection: close\r\n\r\n"
        )
    };
    let mut answer = None;
    for _ in 0..400 {
        answer = http_raw(http, &request("/app"));
        if matches!(answer, Some((200, _))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let (code, response) = answer.unwrap();
    assert_eq!(code, 200, "{response}");
    assert!(response.contains("app /app"), "{response}");
    assert!(
        !response.to_ascii_lowercase().contains("authorization"),
        "{response}"
    );
    assert_eq!(http_get(http, "/app", "x").map(|r| r.0), Some(401));
    // `ignoreAuthorization.2`: that destination is open.
    assert_eq!(http_get(http, "/app/health", "x").map(|r| r.0), Some(200));

    // A route that says so passes the header on.
    let (code, response) = http_raw(http, &request("/keeps")).unwrap();
    assert_eq!(code, 200, "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("authorization: basic"),
        "{response}"
    );
}

#[test]
fn swarm_listener_calls_with_every_label_are_routed_and_removed() {
    require_tools();
    let app = Backend::start("app");
    let dns = Dns::start(&["app"]);
    let http = free_port();
    let remote = GitRemote::new();
    let capstan = serve(&remote, http, &dns, "", "");

    // What DFSL sends for a service labelled for the proxy and for Docker Flow Monitor.
    let labels = "notify=true&distribute=true&replicas=2&alertName=mem&alertIf=@service_mem_limit:0.8&alertFor=5m&alertName.1=cpu&alertIf.1=@service_cpu:0.9&scrapePort=9100&scaleMax=4";
    reconfigure(
        &capstan,
        &format!(
            "serviceName=app&servicePath=/app&port={}&{labels}",
            app.port
        ),
    );
    assert_eq!(answered_by(http, "/app", "x"), "app");

    let (code, answer) = dfp(&capstan, &format!("remove?serviceName=app&{labels}"));
    assert_eq!((code, &answer["Status"]), (200, &"OK".into()), "{answer:#}");
    assert_eq!(http_get(http, "/app", "x").map(|r| r.0), Some(503));

    // A misspelt proxy parameter is still refused, by name.
    let (code, answer) = dfp(
        &capstan,
        &format!(
            "reconfigure?serviceName=app&servicePth=/app&port={}",
            app.port
        ),
    );
    assert_eq!(code, 400, "{answer:#}");
    assert!(
        answer["Message"].as_str().unwrap().contains("servicePth"),
        "{answer:#}"
    );
}
