//! Routing through maps keeps capstan's precedence exactly: for route tables
//! (the precedence cases of the render tests and of the end-to-end tests,
//! then random tables whose paths and domains overlap), a real HAProxy
//! running the rendered config and map files sends every request to the
//! backend that `capstan::render::answer` (the documented precedence,
//! worked out from the routes alone) says.
//!
//! Every backend answers with its own name (`http-request return`), so no
//! servers are needed. Needs `haproxy` on PATH (`scripts/install-test-deps`).

mod support;

use std::fs::File;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capstan::desired::DesiredState;
use capstan::model::validate::load;
use capstan::model::{Address, RoutesFile};
use capstan::render::answer::{Request, answer};
use capstan::render::render_desired;
use proptest::prelude::*;
use support::{free_port, http_raw, require_tools, wait_until};
use tempfile::TempDir;

/// A real HAProxy running a table's rendered config and maps, each backend
/// answering with its name; killed when dropped.
struct Proxy {
    child: Child,
    port: u16,
    /// The config and the maps' entries, for failure messages.
    config: String,
    _dir: TempDir,
}

impl Proxy {
    fn start(file: &RoutesFile) -> Self {
        let dir = TempDir::new().unwrap();
        let port = free_port();
        let mut file = file.clone();
        file.defaults.bind_address = "127.0.0.1".into();
        file.defaults.http_port = port;
        // Never connected to: each backend answers itself.
        for route in &mut file.routes {
            route.servers = vec![Address("127.0.0.1:1".into())];
        }
        let maps_dir = dir.path().join("maps");
        std::fs::create_dir(&maps_dir).unwrap();
        let mut config = render_desired(&DesiredState::new(file).with_maps_dir(maps_dir));
        for map in &config.maps {
            std::fs::write(&map.path, map.text()).unwrap();
        }
        for section in &mut config.sections {
            if section.backend_name().is_some() {
                section.line("http-request return status 200 content-type text/plain lf-string %b");
            }
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config.to_string()).unwrap();
        let stderr: PathBuf = dir.path().join("stderr");
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("haproxy runs (scripts/install-test-deps)");
        let text = config.with_maps_listed();
        wait_until("haproxy listens", Duration::from_secs(20), || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "haproxy exited ({status}):\n{}\n{text}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self {
            child,
            port,
            config: text,
            _dir: dir,
        }
    }

    /// The backend that answered `request` (sent with `query` after its
    /// path), or `None` when no route took it (503).
    fn served_by(&self, request: &Request, query: &str) -> Option<String> {
        let mut text = format!("GET {}{query} HTTP/1.1\r\n", request.path);
        if let Some(host) = &request.host {
            text.push_str(&format!("Host: {host}\r\n"));
        }
        for (name, value) in &request.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("Connection: close\r\n\r\n");
        match http_raw(self.port, &text) {
            Some((200, response)) => response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()),
            Some((503, _)) => None,
            other => panic!("{text:?}: unexpected answer {other:?}"),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn table(routes: &str) -> RoutesFile {
    load("routes.yaml", &format!("version: 1\nroutes:\n{routes}")).unwrap_or_else(|d| panic!("{d}"))
}

/// Each request goes to the expected backend (`None`: no route), as
/// `answer` says and as HAProxy does.
fn check(routes: &str, cases: &[(Request, Option<&str>)]) {
    require_tools();
    let file = table(routes);
    let proxy = Proxy::start(&file);
    for (request, expected) in cases {
        let expected = expected.map(str::to_string);
        assert_eq!(answer(&file, request), expected, "answer: {request:?}");
        assert_eq!(
            proxy.served_by(request, ""),
            expected,
            "HAProxy: {request:?}\n{}",
            proxy.config
        );
    }
}

fn get(host: &str, path: &str) -> Request {
    Request::new(host, path)
}

/// render.rs: `precedence_longest_prefix_domains_first_root_last`.
#[test]
fn longest_prefix_domains_first_root_last() {
    check(
        "  - service: root\n    port: 80\n    paths: [/]\n  - service: api\n    port: 80\n    paths: [/api]\n  - service: apiv2\n    port: 80\n    paths: [/api/v2]\n  - service: site\n    port: 80\n    domains: [example.com]\n    paths: [/api]\n",
        &[
            (get("example.com", "/api/v2/x"), Some("site-be80")),
            (get("Example.COM:8080", "/api"), Some("site-be80")),
            (get("other.test", "/api/v2/x"), Some("apiv2-be80")),
            (get("other.test", "/api/v"), Some("api-be80")),
            (get("other.test", "/apix"), Some("api-be80")),
            (get("example.com", "/x"), Some("root-be80")),
            (get("other.test", "/"), Some("root-be80")),
        ],
    );
}

/// render.rs: `well_known_first_domain_only_after_paths_priority_above_all`,
/// and dfp_parity.rs: ACME challenges reach their service on every domain.
#[test]
fn priority_then_well_known_then_paths_then_whole_domains() {
    check(
        "  - service: whole\n    port: 80\n    domains: [whole.test]\n  - service: demo\n    port: 80\n    paths: [/demo]\n  - service: acme\n    port: 80\n    paths: [/.well-known/acme-challenge]\n  - service: root\n    port: 80\n    paths: [/]\n  - service: vip\n    port: 80\n    paths: [/]\n    domains: [vip.test]\n    priority: 5\n",
        &[
            (
                get("vip.test", "/.well-known/acme-challenge/t"),
                Some("vip-be80"),
            ),
            (get("vip.test", "/demo"), Some("vip-be80")),
            (
                get("whole.test", "/.well-known/acme-challenge/t"),
                Some("acme-be80"),
            ),
            (
                get("any.test", "/.well-known/acme-challenge/t"),
                Some("acme-be80"),
            ),
            (get("whole.test", "/demo/x"), Some("demo-be80")),
            (get("whole.test", "/other"), Some("whole-be80")),
            (get("any.test", "/other"), Some("root-be80")),
        ],
    );
}

/// dfp_parity.rs: `routes_yaml_priority_overrides_the_computed_order`.
#[test]
fn priority_lets_a_whole_domain_win_over_a_path() {
    check(
        "  - service: go-demo\n    port: 80\n    paths: [/demo]\n  - service: whole\n    port: 80\n    domains: [whole.test]\n    priority: 1\n",
        &[
            (get("whole.test", "/demo/x"), Some("whole-be80")),
            (get("other.test", "/demo/x"), Some("go-demo-be80")),
            (get("other.test", "/x"), None),
        ],
    );
}

/// render.rs: `a_route_with_conditions_comes_before_its_catch_all`, and
/// dfp_match.rs's header and user-agent tables.
#[test]
fn narrower_conditions_first_on_one_path() {
    check(
        "  - service: app\n    port: 80\n    paths: [/]\n  - service: mobile\n    port: 80\n    paths: [/]\n    user_agents: [iPhone, 'Linux; Android']\n  - service: v3\n    port: 80\n    paths: [/]\n    user_agents: [iPhone]\n    match_headers: {X-Version: '3'}\n  - service: v2\n    port: 80\n    paths: [/app]\n    match_headers: {X-Version: '2'}\n  - service: named\n    port: 80\n    paths: [/app]\n    match_headers: {X-Version: '3', name: Viktor Farcic}\n",
        &[
            (
                get("h", "/")
                    .header("User-Agent", "Mozilla/5.0 (iPhone)")
                    .header("X-Version", "3"),
                Some("v3-be80"),
            ),
            (
                get("h", "/").header("User-Agent", "x IPHONE"),
                Some("mobile-be80"),
            ),
            (
                get("h", "/").header("User-Agent", "mozilla/5.0 (linux; android 14)"),
                Some("mobile-be80"),
            ),
            (
                get("h", "/").header("User-Agent", "curl/8.5.0"),
                Some("app-be80"),
            ),
            (get("h", "/").header("X-Version", "3"), Some("app-be80")),
            (
                get("h", "/app/x")
                    .header("X-Version", "3")
                    .header("name", "Viktor Farcic"),
                Some("named-be80"),
            ),
            (
                get("h", "/app/x")
                    .header("X-Version", "3")
                    .header("name", "viktor farcic"),
                Some("app-be80"),
            ),
            (
                get("h", "/app/x").header("x-version", "1, 2"),
                Some("v2-be80"),
            ),
            (
                get("h", "/app/x").header("X-Version", "22"),
                Some("app-be80"),
            ),
            (get("h", "/app"), Some("app-be80")),
        ],
    );
}

/// route_rules.rs: `excluded_paths_leave_the_rule_to_later_routes`, and
/// `a_default_backend_alone_has_no_use_backend_rule`.
#[test]
fn excluded_paths_fall_through_and_the_default_backend_takes_the_rest() {
    check(
        "  - service: api\n    port: 80\n    paths: [/api]\n    exclude_paths: [/api/internal, /api/admin]\n  - service: site\n    port: 80\n    domains: [a.com]\n    exclude_paths: [/metrics]\n  - service: fallback\n    port: 80\n    default_backend: true\n",
        &[
            (get("a.com", "/api/x"), Some("api-be80")),
            (get("a.com", "/api/internal/x"), Some("site-be80")),
            (get("b.com", "/api/admin"), Some("fallback-be80")),
            (get("a.com", "/metrics"), Some("fallback-be80")),
            (get("a.com", "/x"), Some("site-be80")),
            (get("b.com", "/x"), Some("fallback-be80")),
        ],
    );
}

/// dfp_match.rs: `domain_match_routes_hosts_as_dfp_host_fetches`, with
/// wildcards and exact domains sharing paths.
#[test]
fn domain_classes_and_domain_match() {
    check(
        "  - service: exact\n    port: 80\n    domains: [exact.test]\n  - service: prefix\n    port: 80\n    domains: [prefix.test]\n    domain_match: prefix\n  - service: suffix\n    port: 80\n    domains: [suffix.test]\n    domain_match: suffix\n  - service: labels\n    port: 80\n    domains: [labels.test]\n    domain_match: labels\n  - service: star\n    port: 80\n    domains: ['*.w.test']\n    paths: [/x]\n  - service: one\n    port: 80\n    domains: [a.w.test]\n    paths: [/x]\n",
        &[
            (get("exact.test", "/"), Some("exact-be80")),
            (get("EXACT.test:8080", "/"), Some("exact-be80")),
            (get("www.exact.test", "/"), None),
            (get("prefix.test.example.net", "/"), Some("prefix-be80")),
            (get("www.prefix.test", "/"), None),
            (get("mysuffix.test:8080", "/"), Some("suffix-be80")),
            (get("suffix.test.example.net", "/"), None),
            (get("www.labels.test", "/"), Some("labels-be80")),
            (get("labels.test.example.net", "/"), Some("labels-be80")),
            (get("mylabels.test", "/"), None),
            (get("a.w.test", "/x"), Some("one-be80")),
            (get("b.w.test", "/x/y"), Some("star-be80")),
            (get("w.test", "/x"), None),
        ],
    );
}

/// A map's run split by rules that keep their ACL: a conditioned path
/// between two plain ones of the same class, exact paths before prefixes.
#[test]
fn maps_split_where_a_conditioned_rule_sits() {
    check(
        "  - service: long\n    port: 80\n    paths: [/a/b/c]\n  - service: mid\n    port: 80\n    paths: [/a/b]\n    match_headers: {X-V: '1'}\n  - service: short\n    port: 80\n    paths: [/a]\n  - service: exact\n    port: 80\n    paths: [/a/b]\n    path_match: exact\n  - service: re\n    port: 80\n    paths: ['^/a/b/[0-9]+$']\n    path_match: regex\n",
        &[
            (get("h", "/a/b/c/d"), Some("long-be80")),
            (get("h", "/a/b/c").header("X-V", "1"), Some("long-be80")),
            (get("h", "/a/b/x").header("X-V", "1"), Some("mid-be80")),
            (get("h", "/a/b").header("X-V", "1"), Some("exact-be80")),
            (get("h", "/a/b/x"), Some("short-be80")),
            (get("h", "/a/b/12"), Some("short-be80")),
            (get("h", "/ab"), Some("short-be80")),
            (get("h", "/b"), None),
        ],
    );
}

// Random tables: routes over a small alphabet, so that paths and domains overlap.

const PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/b",
    "/a/b/c",
    "/ab",
    "/b",
    "/b/c",
    "/c",
    "/.well-known/x",
];
const REGEXES: &[&str] = &["^/a", "^/a/b$", "^/(a|b)/c", "b$", "^/[ab]+$", "/c"];
const DOMAINS: &[&str] = &["a.test", "b.test", "B.TEST", "*.w.test", "x.w.test"];
const HOSTS: &[&str] = &[
    "a.test",
    "A.Test:8080",
    "b.test",
    "x.w.test",
    "y.w.test",
    "w.test",
    "a.test.w.test",
    "unknown.test",
    // Not a domain: must not reach into the path part of a map's key.
    "a.test/a",
    "a.test.",
];
const REQUEST_PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/",
    "/a/b",
    "/a/bc",
    "/a/b/c",
    "/a/b/cd",
    "/ab",
    "/abc",
    "/b",
    "/b/c",
    "/b/cd",
    "/c",
    "/cb",
    "/d",
    "/.well-known/x",
    "/.well-known/xy",
];

/// One random route, as routes.yaml lines after `- service: s<i>`.
fn route() -> impl Strategy<Value = String> {
    let literal = prop::sample::subsequence(PATHS, 1..=3);
    let regex = prop::sample::subsequence(REGEXES, 1..=2);
    let paths = prop_oneof![
        5 => (Just("prefix"), literal.clone()),
        2 => (Just("exact"), literal),
        1 => (Just("regex"), regex),
    ];
    let domains = prop_oneof![
        2 => Just(vec![]),
        2 => prop::sample::subsequence(DOMAINS, 1..=2),
    ];
    let domain_match = prop_oneof![
        6 => Just("exact"),
        1 => Just("labels"),
        1 => Just("suffix"),
    ];
    let priority = prop_oneof![4 => Just(0i16), 1 => Just(-1), 1 => Just(5)];
    let condition = prop_oneof![
        5 => Just(""),
        1 => Just("    match_headers: {X-V: '1'}\n"),
        1 => Just("    match_headers: {X-V: '2'}\n"),
        1 => Just("    user_agents: [Bot]\n"),
    ];
    let exclude = prop::option::weighted(0.15, prop::sample::select(PATHS));
    let whole_domain = prop::bool::weighted(0.15);
    let port = prop::sample::select(&[80u16, 81, 8080][..]);
    (
        paths,
        domains,
        domain_match,
        priority,
        condition,
        exclude,
        whole_domain,
        port,
    )
        .prop_map(
            |((path_match, paths), domains, how, priority, condition, exclude, whole, port)| {
                let mut yaml = format!("    port: {port}\n");
                // A route with domains may take them whole: no paths.
                let whole_domains = whole && !domains.is_empty();
                if !whole_domains {
                    let paths: Vec<String> = paths.iter().map(|p| format!("'{p}'")).collect();
                    yaml.push_str(&format!(
                        "    paths: [{}]\n    path_match: {path_match}\n",
                        paths.join(", ")
                    ));
                    if let Some(exclude) = exclude.filter(|_| path_match != "regex") {
                        yaml.push_str(&format!("    exclude_paths: ['{exclude}']\n"));
                    }
                }
                if !domains.is_empty() {
                    let domains: Vec<String> = domains.iter().map(|d| format!("'{d}'")).collect();
                    yaml.push_str(&format!(
                        "    domains: [{}]\n    domain_match: {how}\n",
                        domains.join(", ")
                    ));
                }
                if priority != 0 {
                    yaml.push_str(&format!("    priority: {priority}\n"));
                }
                yaml.push_str(condition);
                yaml
            },
        )
}

/// A random request, and the query string sent after its path (which
/// routing ignores).
fn request() -> impl Strategy<Value = (Request, &'static str)> {
    (
        prop::sample::select(HOSTS),
        prop::sample::select(REQUEST_PATHS),
        prop_oneof![3 => Just(""), 1 => Just("?a=/b")],
        prop_oneof![3 => Just(None), 1 => Just(Some("1")), 1 => Just(Some("2")), 1 => Just(Some("2, 1"))],
        prop_oneof![3 => Just(None), 1 => Just(Some("Mozilla (bot)")), 1 => Just(Some("curl"))],
    )
        .prop_map(|(host, path, query, version, agent)| {
            let mut request = Request::new(host, path);
            if let Some(version) = version {
                request = request.header("X-V", version);
            }
            if let Some(agent) = agent {
                request = request.header("User-Agent", agent);
            }
            (request, query)
        })
}

/// The routes that make a valid table together, in order: a route that
/// claims what an earlier one does is left out.
fn valid_table(routes: &[String], default_backend: Option<usize>) -> (RoutesFile, String) {
    let mut kept = String::new();
    let mut file = RoutesFile::empty();
    for (i, route) in routes.iter().enumerate() {
        let default = if default_backend == Some(i) {
            "    default_backend: true\n"
        } else {
            ""
        };
        let candidate = format!("{kept}  - service: s{i}\n{route}{default}");
        if let Ok(valid) = load("routes.yaml", &format!("version: 1\nroutes:\n{candidate}")) {
            kept = candidate;
            file = valid;
        }
    }
    (file, kept)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn haproxy_routes_random_tables_by_the_documented_precedence(
        routes in prop::collection::vec(route(), 1..=30),
        default_backend in prop::option::weighted(0.3, 0usize..30),
        requests in prop::collection::vec(request(), 20..=50),
    ) {
        require_tools();
        let (file, yaml) = valid_table(&routes, default_backend);
        let proxy = Proxy::start(&file);
        for (request, query) in &requests {
            let expected = answer(&file, request);
            let served = proxy.served_by(request, query);
            prop_assert_eq!(
                &served,
                &expected,
                "{:?} (query {:?}) on the table\n{}\nrendered:\n{}",
                request,
                query,
                yaml,
                proxy.config
            );
        }
    }
}
