//! The dashboard in a real browser: Debian's headless Chromium loads `GET /`
//! from a real `capstan serve` (real git remote, real HAProxy, real
//! backends) and reads the DOM as an operator would see it. Changes made
//! after the page loaded (an override, a git push, a server going down, an
//! invalid push, capstan stopping) show up without reloading the page.
//! Screenshots (desktop and phone width) are saved in the test's temp dir,
//! and to `$CAPSTAN_DASHBOARD_SCREENSHOT` when set (the README's picture).

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use browser::{Browser, Page};
use serde_json::{Value, json};
use support::*;

const TOKEN: &str = "browser-token-0123456789";

/// A commit message that would add an element if it were not escaped.
const HOSTILE: &str = r#"deploy <img src=x id=injected onerror="document.title='owned'"> & co"#;

/// Long enough for HAProxy's checks (1 s apart) and a poll (2 s) or two.
const SHOWS_UP: Duration = Duration::from_secs(30);

/// Commits `routes.yaml` with `text` and `message`, pushes it, and tells
/// capstan through its webhook.
fn push(remote: &GitRemote, capstan: &Capstan, text: &str, message: &str) -> String {
    let work = remote.dir.path().join("work");
    std::fs::write(work.join("routes.yaml"), text).unwrap();
    git(&work, &["add", "routes.yaml"]);
    git(&work, &["commit", "-q", "--allow-empty", "-m", message]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    assert!(http_post(capstan.api_port, "/v1/webhook/git", "{}").is_some());
    git(&work, &["rev-parse", "HEAD"])
}

/// A route on fixed servers, checked every second.
fn checked_route(service: &str, path: &str, servers: &[String]) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "  - service: {service}\n    port: 80\n    paths: [{path}]\n    servers: [{}]\n    \
         health_check: {{path: /, interval: 1s}}\n",
        servers.join(", ")
    )
}

/// The `data-state` of `server` in `route`'s tbody, as a JS expression.
fn server_state(route: &str, server: &str) -> String {
    format!(
        "(document.querySelector('tbody.route[data-route=\"{route}\"] \
         tr.server[data-server=\"{server}\"]') || {{dataset: {{}}}}).dataset.state"
    )
}

fn wait(page: &Page, what: &str, predicate: &str) {
    page.wait_for(predicate, SHOWS_UP)
        .unwrap_or_else(|e| panic!("{what}: {e}\n--- page ---\n{}", page.html().unwrap()));
}

fn text(page: &Page, selector: &str) -> String {
    let js = format!("(document.querySelector('{selector}') || {{}}).textContent");
    match page.eval(&js).unwrap() {
        Value::String(text) => text,
        other => panic!(
            "{selector}: {other}\n--- page ---\n{}",
            page.html().unwrap()
        ),
    }
}

/// Marks the window: the mark survives anything but a page reload.
fn mark(page: &Page) {
    page.eval("window.capstanTestMark = 'still this page'")
        .unwrap();
}

fn assert_not_reloaded(page: &Page) {
    assert_eq!(
        page.eval("window.capstanTestMark").unwrap(),
        json!("still this page"),
        "the page was reloaded"
    );
}

fn save_screenshot(page: &Page, dir: &Path, name: &str) {
    let path = dir.join(name);
    page.screenshot(&path).unwrap();
    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    eprintln!("screenshot: {}", path.display());
}

#[test]
fn the_dashboard_follows_changes_in_a_real_browser() {
    require_tools();
    let (web, api) = (Backend::start("web"), Backend::start("api"));
    let dead = free_port();
    let (extra, late) = (Backend::start("extra"), Backend::start("late"));
    let dns = Dns::start(&["extra"]);
    let http = free_port();
    let table = |routes: &str| with_resolvers(&routes_yaml(http, routes), &dns);
    let routes = format!(
        "{}{}",
        checked_route("web", "/web", &[web.address(), format!("127.0.0.1:{dead}")]),
        checked_route("api", "/api", &[api.address()]),
    );
    let remote = GitRemote::new();
    let first = remote.push(&table(&routes));
    let (mut capstan, dir) = serve_git_with_token(&remote, TOKEN);
    wait_applied(&capstan, &first);

    let browser = Browser::start();
    // Without credentials the browser gets no dashboard.
    let anonymous = browser.open(&capstan.url());
    assert!(
        anonymous
            .eval("document.getElementById('dashboard')")
            .unwrap()
            == Value::Null,
        "the dashboard shows without credentials"
    );
    // A browser logs in with the API token as its Basic password.
    let login = base64::engine::general_purpose::STANDARD.encode(format!("ops:{TOKEN}"));
    let page = browser.open_with_headers(
        &capstan.url(),
        &[("Authorization", format!("Basic {login}").as_str())],
    );
    assert_eq!(
        page.eval("document.title").unwrap(),
        json!("capstan dashboard")
    );
    mark(&page);

    // HAProxy's checks: web's first server answers, its second port is closed.
    wait(
        &page,
        "web-1 up and web-2 down",
        &format!(
            "{} === 'UP' && ({}||'').startsWith('DOWN')",
            server_state("web", "web-1"),
            server_state("web", "web-2")
        ),
    );
    let web_row = text(&page, "tbody.route[data-route=\"web\"]");
    assert!(
        web_row.contains("/web") && web_row.contains(&web.address()),
        "{web_row}"
    );
    let status = capstan.status();
    assert_eq!(status["in_sync"], true, "{status:#}");
    assert_eq!(text(&page, "[data-field=\"in-sync\"]"), "in sync");
    let applied = page
        .eval("document.querySelector('[data-field=\"applied-revision\"]').title")
        .unwrap();
    assert_eq!(applied, status["applied"]["revision"]["commit"]);
    assert!(text(&page, "#haproxy-cfg").contains("backend web-be80"));
    assert!(!page.html().unwrap().contains(TOKEN), "the token is shown");

    // An override through the Docker-Flow-Proxy API appears, with its source.
    let (code, answer) = http_raw(
        capstan.api_port,
        &format!(
            "GET /v1/docker-flow-proxy/reconfigure?serviceName=extra&servicePath=/extra&port={} \
             HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n",
            extra.port
        ),
    )
    .expect("reconfigure answers");
    assert_eq!(code, 200, "{answer}");
    wait(
        &page,
        "the override",
        "document.querySelector('tr.override[data-service=\"extra\"]') !== null \
         && document.querySelector('tbody.route[data-route=\"extra\"]').dataset.source === 'override'",
    );
    assert!(text(&page, "tr.override[data-service=\"extra\"]").contains("service: extra"));

    // A git push, whose message is hostile, adds a route.
    let routes = format!("{routes}{}", route("late", "/late", &late.address()));
    let second = push(&remote, &capstan, &table(&routes), HOSTILE);
    wait_applied(&capstan, &second);
    wait(
        &page,
        "the pushed route and commit",
        &format!(
            "document.querySelector('tbody.route[data-route=\"late\"]') !== null \
             && document.querySelector('[data-field=\"applied-revision\"]').title === '{second}'"
        ),
    );
    assert!(
        text(&page, "#sync").contains(HOSTILE),
        "the commit message is shown as text"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('#injected, img[src=\"x\"]').length")
            .unwrap(),
        json!(0),
        "the commit message became an element"
    );
    assert_eq!(
        page.eval("document.title").unwrap(),
        json!("capstan dashboard")
    );

    // The filter narrows the table, and keeps doing so across refreshes.
    page.eval(
        "(() => { const f = document.getElementById('route-filter'); f.value = 'late'; \
         f.dispatchEvent(new Event('input', {bubbles: true})); })()",
    )
    .unwrap();
    let visible = "Array.from(document.querySelectorAll('tbody.route'))\
                   .filter(t => !t.hidden).map(t => t.dataset.route).join(',')";
    wait(&page, "only late shown", &format!("{visible} === 'late'"));
    let updated = page
        .eval("document.getElementById('dashboard').dataset.updated")
        .unwrap();
    wait(
        &page,
        "a refresh with the filter on",
        &format!("document.getElementById('dashboard').dataset.updated !== {updated}"),
    );
    assert_eq!(page.eval(visible).unwrap(), json!("late"));
    page.eval(
        "(() => { const f = document.getElementById('route-filter'); f.value = ''; \
         f.dispatchEvent(new Event('input', {bubbles: true})); })()",
    )
    .unwrap();

    // A server goes down: HAProxy's check notices, and so does the page.
    drop(api);
    wait(
        &page,
        "api-1 down",
        &format!("({}||'').startsWith('DOWN')", server_state("api", "api-1")),
    );

    // An invalid push: the error with its file and line, and not in sync.
    let broken_text = table(&routes).replace("interval: 1s", "interval: soon");
    let line = broken_text
        .lines()
        .position(|l| l.contains("interval: soon"))
        .unwrap()
        + 1;
    let broken = push(&remote, &capstan, &broken_text, "a typo");
    wait_until("the invalid push reported", SHOWS_UP, || {
        capstan.status()["last_error"]["revision"]["commit"] == broken
    });
    wait(
        &page,
        "the error",
        "document.getElementById('last-error') !== null",
    );
    let error = text(&page, "#last-error");
    assert!(
        error.contains(&format!("routes.yaml:{line}")),
        "line {line}: {error}"
    );
    assert_eq!(capstan.status()["in_sync"], false);
    assert_eq!(text(&page, "[data-field=\"in-sync\"]"), "not in sync");
    assert_not_reloaded(&page);

    save_screenshot(&page, dir.path(), "dashboard.png");
    if let Ok(out) = std::env::var("CAPSTAN_DASHBOARD_SCREENSHOT") {
        page.screenshot(Path::new(&out)).unwrap();
    }

    // A phone: the page fits its width (wide tables scroll in their own box).
    page.set_viewport(390, 844, true).unwrap();
    assert_eq!(page.eval("window.innerWidth").unwrap(), json!(390));
    let overflow = page
        .eval("document.documentElement.scrollWidth - window.innerWidth")
        .unwrap();
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page is {overflow} px wider than a phone"
    );
    save_screenshot(&page, dir.path(), "dashboard-phone.png");

    // capstan stops: the page says it is not answering, and keeps what it showed.
    capstan.stop_capstan();
    wait(
        &page,
        "the offline banner",
        "!document.getElementById('offline').hidden",
    );
    assert!(text(&page, "#offline").contains("not answering"));
    assert!(text(&page, "#routes").contains("late"));
    assert_not_reloaded(&page);
}
