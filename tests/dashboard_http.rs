//! The dashboard over HTTP, end to end: a real `capstan serve` on a real
//! git remote driving a real HAProxy with real backends. The page shows
//! HAProxy's own server states, an override made through the
//! Docker-Flow-Proxy API with its routes.yaml snippet, a git error with its
//! file:line, escapes what users wrote, says what `/v1/status` says, and
//! asks for the API's credentials.

mod support;

use std::time::Duration;

use base64::Engine;
use support::*;

const TOKEN: &str = "dash-token-0123456789";

/// A commit message an attacker could push.
const HOSTILE: &str = r#"<script>alert("commit")</script> & 'quoted'"#;
const HOSTILE_ESCAPED: &str =
    "&lt;script&gt;alert(&quot;commit&quot;)&lt;/script&gt; &amp; &#39;quoted&#39;";

/// `openssl passwd -6 -salt saltsalt pw`.
const ALICE_HASH: &str = "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// `GET path` with an `Authorization` header, if any: (status, head, body).
fn get(capstan: &Capstan, path: &str, authorization: Option<&str>) -> (u16, String, String) {
    let header = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{header}Connection: close\r\n\r\n");
    let (code, response) = http_raw(capstan.api_port, &request).expect("capstan answers");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (code, head.to_string(), body.to_string())
}

/// The page with the token as a Basic password, as a browser sends it.
fn page(capstan: &Capstan, path: &str) -> String {
    let (code, _, body) = get(capstan, path, Some(&basic("anyone", TOKEN)));
    assert_eq!(code, 200, "{path}: {body}");
    body
}

/// The value of the attribute that follows `prefix` (which ends in `="`).
fn attribute_after<'a>(html: &'a str, prefix: &str) -> Option<&'a str> {
    let (_, rest) = html.split_once(prefix)?;
    Some(rest.split_once('"')?.0)
}

/// The element that starts with `start`, up to `end`.
fn element<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let at = html.find(start)?;
    let len = html[at..].find(end)? + end.len();
    Some(&html[at..at + len])
}

/// Commits `routes.yaml` with `text` and `message`, and pushes it.
fn push_with_message(remote: &GitRemote, text: &str, message: &str) -> String {
    let work = remote.dir.path().join("work");
    std::fs::write(work.join("routes.yaml"), text).unwrap();
    git(&work, &["add", "routes.yaml"]);
    git(&work, &["commit", "-q", "-m", message]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    git(&work, &["rev-parse", "HEAD"])
}

/// The page and `/v1/status` at one moment: status read before and after
/// the page, equal both times (nothing was applied in between).
fn page_with_status(capstan: &Capstan) -> (String, serde_json::Value) {
    let summary = |s: &serde_json::Value| {
        (
            s["in_sync"].clone(),
            s["applied"]["revision"]["commit"].clone(),
        )
    };
    for _ in 0..50 {
        let before = capstan.status();
        let html = page(capstan, "/dashboard/fragment");
        let after = capstan.status();
        if summary(&before) == summary(&after) {
            return (html, after);
        }
    }
    panic!("status never held still");
}

fn assert_page_says_status(html: &str, status: &serde_json::Value) {
    let in_sync = if status["in_sync"] == true {
        "in sync"
    } else {
        "not in sync"
    };
    assert!(
        html.contains(&format!("<span data-field=\"in-sync\">{in_sync}</span>")),
        "status says {in_sync}: {html}"
    );
    let commit = status["applied"]["revision"]["commit"].as_str().unwrap();
    assert_eq!(
        attribute_after(html, "data-field=\"applied-revision\" title=\""),
        Some(commit)
    );
    let desired = status["desired"]["commit"].as_str().unwrap();
    assert_eq!(
        attribute_after(html, "data-field=\"desired-revision\" title=\""),
        Some(desired)
    );
}

#[test]
fn the_dashboard_shows_what_haproxy_serves_and_what_status_says() {
    require_tools();
    let a = Backend::start("A");
    let dead = free_port();
    let evil = Backend::start("evil");
    let dns = Dns::start(&["evil"]);
    let http = free_port();
    let routes = with_resolvers(
        &routes_yaml(
            http,
            &format!(
                "  - service: web\n    port: 80\n    paths: [/web]\n    domains: [web.test]\n    \
                 servers: [\"{}\", \"127.0.0.1:{dead}\"]\n    health_check: {{path: /, interval: 1s}}\n",
                a.address()
            ),
        ),
        &dns,
    );
    let remote = GitRemote::new();
    let first = push_with_message(&remote, &routes, HOSTILE);
    let (capstan, _token_dir) = serve_git_with_token(&remote, TOKEN);
    wait_applied(&capstan, &first);

    // The API's credentials, and the token as a Basic password for browsers.
    for path in ["/", "/dashboard/fragment", "/v1/routes"] {
        let (code, head, _) = get(&capstan, path, None);
        assert_eq!(code, 401, "{path} without credentials");
        assert!(head.contains("Basic realm"), "{head}");
        assert_eq!(get(&capstan, path, Some(&basic("x", "wrong"))).0, 401);
        assert_eq!(get(&capstan, path, Some(&basic("anyone", TOKEN))).0, 200);
        assert_eq!(get(&capstan, path, Some(&format!("Bearer {TOKEN}"))).0, 200);
    }
    let (_, head, html) = get(&capstan, "/", Some(&basic("anyone", TOKEN)));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(!html.contains(TOKEN), "the token is shown");
    for external in ["http://", "https://"] {
        assert!(!html.contains(external), "{external} in the page");
    }

    // HAProxy's own state of each server: A answers its checks, the other
    // port has nobody listening.
    let server = |html: &str, name: &str| {
        attribute_after(
            html,
            &format!("<tr class=\"server\" data-server=\"{name}\" data-state=\""),
        )
        .map(str::to_string)
    };
    wait_until(
        "checks find web-1 up and web-2 down",
        Duration::from_secs(20),
        || {
            let html = page(&capstan, "/");
            server(&html, "web-1").as_deref() == Some("UP")
                && server(&html, "web-2").as_deref() == Some("DOWN")
        },
    );
    let html = page(&capstan, "/");
    let web = element(
        &html,
        "<tbody class=\"route\" data-route=\"web\"",
        "</tbody>",
    )
    .unwrap_or_else(|| panic!("no route web: {html}"));
    assert!(
        web.contains("data-backend=\"web-be80\" data-source=\"git\""),
        "{web}"
    );
    assert!(web.contains("<code>/web</code>") && web.contains("<code>web.test</code>"));
    assert!(web.contains(&a.address()), "{web}");
    assert!(
        web.contains("check L4CON"),
        "the failing check says why: {web}"
    );
    // The same servers, as JSON.
    let (_, _, body) = get(&capstan, "/v1/routes", Some(&format!("Bearer {TOKEN}")));
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["routes"][0]["backend"], "web-be80");
    let states: Vec<&str> = view["routes"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["UP", "DOWN"]);

    // The commit message an attacker wrote is shown, escaped.
    assert!(!html.contains(HOSTILE) && !html.contains("<script>alert"));
    assert!(html.contains(HOSTILE_ESCAPED), "{html}");
    let (html, status) = page_with_status(&capstan);
    assert_eq!(status["in_sync"], true);
    assert_page_says_status(&html, &status);

    // An override through the Docker-Flow-Proxy API, with hostile values
    // and a user whose password hash must not show.
    let (code, answer) = http_raw(
        capstan.api_port,
        &format!(
            "GET /v1/docker-flow-proxy/reconfigure?serviceName=evil&port={}\
             &servicePath=/%3Cscript%3Ealert(1)%3C/script%3E%26x\
             &userAgent=%3Cimg%20src=x%20onerror='alert(2)'%3E&usersPassEncrypted=true&users=alice:{} \
             HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n",
            evil.port,
            ALICE_HASH.replace('$', "%24")
        ),
    )
    .expect("reconfigure answers");
    assert_eq!(code, 200, "{answer}");
    let html = page(&capstan, "/dashboard/fragment");
    let row = element(
        &html,
        "<tr class=\"override\" data-service=\"evil\">",
        "</tr>",
    )
    .unwrap_or_else(|| panic!("no override row: {html}"));
    assert!(row.contains("<pre>"), "{row}");
    assert!(row.contains("service: evil"), "the export snippet: {row}");
    assert!(
        row.contains("/&lt;script&gt;alert(1)&lt;/script&gt;&amp;x"),
        "{row}"
    );
    assert!(
        row.contains("&lt;img src=x onerror=&#39;alert(2)&#39;&gt;"),
        "{row}"
    );
    assert!(row.contains("alice"), "user names show: {row}");
    let evil_route = element(
        &html,
        "<tbody class=\"route\" data-route=\"evil\"",
        "</tbody>",
    )
    .unwrap_or_else(|| panic!("no route evil: {html}"));
    assert!(
        evil_route.contains("data-source=\"override\""),
        "{evil_route}"
    );
    assert!(!html.contains("<script>alert") && !html.contains("onerror='"));
    assert!(
        !html.contains("$6$") && !html.contains("pauPrmdmG4BTE9h2HP"),
        "a password hash is shown"
    );
    let config = element(&html, "<pre id=\"haproxy-cfg\"", "</pre>").unwrap();
    assert!(config.contains("backend evil-be"), "{config}");
    assert!(config.contains("user alice password"), "{config}");

    // An invalid push: the error with its file:line, and not in sync.
    // Its message is one very long line: status shows the start of it.
    let long = "x".repeat(5_000);
    let broken = push_with_message(&remote, &routes.replace("port: 80", "port: eighty"), &long);
    let line = routes.lines().position(|l| l.contains("port: 80")).unwrap() + 1;
    assert!(http_post(capstan.api_port, "/v1/webhook/git", "{}").is_some());
    wait_until("the invalid push reported", Duration::from_secs(20), || {
        capstan.status()["last_error"]["revision"]["commit"] == broken
    });
    let (html, status) = page_with_status(&capstan);
    assert_eq!(status["in_sync"], false);
    let summary = status["desired"]["details"]["summary"].as_str().unwrap();
    assert_eq!(summary, format!("{}…", &long[..200]));
    assert_page_says_status(&html, &status);
    let error = element(&html, "<div id=\"last-error\"", "</div>")
        .unwrap_or_else(|| panic!("no #last-error: {html}"));
    assert!(
        error.contains(&format!("<li><code>routes.yaml:{line}:")),
        "line {line}: {error}"
    );
}
