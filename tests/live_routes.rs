//! Route changes to backends HAProxy already has are applied live, through
//! its maps: a real capstan, driven by a real git remote (and the Docker
//! Flow Proxy API), drives a real HAProxy; which backend answers shows the
//! change served, and HAProxy's reload counter, capstan's and the worker's
//! pid show that HAProxy was not reloaded. No path here is a prefix of
//! another: each answer comes from its own map entry.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::*;

/// capstan serving a git remote, polling hourly: only what a test pushes
/// (and announces through the webhook) is applied.
struct Stand {
    http: u16,
    remote: GitRemote,
    capstan: Capstan,
}

impl Stand {
    /// Serves the routes.yaml `routes` makes for the stand's http port.
    fn start(routes: impl Fn(u16) -> String) -> Self {
        let (http, remote) = (free_port(), GitRemote::new());
        let first = remote.push(&routes(http));
        let capstan = serve_git(&remote, &["--poll-interval", "1h"]);
        wait_applied(&capstan, &first);
        Self {
            http,
            remote,
            capstan,
        }
    }

    /// Pushes `routes` (a whole routes.yaml), tells capstan, and waits until
    /// it is applied.
    fn apply(&self, routes: &str) {
        let commit = self.remote.push(routes);
        let webhook = http_post(
            self.capstan.api_port,
            "/v1/webhook/git",
            r#"{"ref":"refs/heads/main"}"#,
        );
        assert_eq!(webhook, Some(202));
        wait_applied(&self.capstan, &commit);
    }

    /// The routes.yaml of `entries` on this stand's port.
    fn yaml(&self, entries: &str) -> String {
        routes_yaml(self.http, entries)
    }

    /// Asserts that the last change was applied at run time and that
    /// HAProxy was neither reloaded nor restarted since `before`.
    fn assert_live(&self, before: &Generation, change: &str) {
        let status = self.capstan.status();
        assert_eq!(
            status["history"][0]["method"], "runtime",
            "{change}: {status:#}"
        );
        assert_eq!(
            &Generation::of(&self.capstan),
            before,
            "{change} reloaded HAProxy"
        );
    }
}

/// What a reload or a restart of HAProxy changes.
#[derive(Debug, PartialEq, Eq)]
struct Generation {
    haproxy_reloads: u32,
    capstan_reloads: u64,
    worker_pid: u32,
}

impl Generation {
    fn of(capstan: &Capstan) -> Self {
        Self {
            haproxy_reloads: capstan.haproxy_reloads(),
            capstan_reloads: capstan.metric("capstan_reloads_total{result=\"ok\"}") as u64,
            worker_pid: capstan.haproxy_worker_pid(),
        }
    }
}

/// Who answered `path` at `host` through HAProxy: a backend's name, or the
/// status HAProxy answered itself (`503`: no route).
fn answered(http: u16, host: &str, path: &str) -> String {
    match http_get(http, path, host) {
        Some((200, body)) => body.split(' ').next().unwrap_or_default().to_string(),
        Some((code, _)) => code.to_string(),
        None => "no answer".to_string(),
    }
}

/// `(path, who answers it)` pairs.
type Answers<'a> = &'a [(&'a str, &'a str)];

/// Asserts who answers each path of `expected` at `host`, after `change`.
fn assert_answers(http: u16, host: &str, change: &str, expected: Answers<'_>) {
    for (path, who) in expected {
        assert_eq!(
            answered(http, host, path),
            *who,
            "{change}: who answers {host}{path}"
        );
    }
}

#[test]
fn a_new_service_and_a_removed_one_are_served_without_a_reload() {
    require_tools();
    let (a, c) = (Backend::start("A"), Backend::start("C"));
    let stand = Stand::start(|http| routes_yaml(http, &route("a", "/alpha", &a.address())));
    wait_for_backend(stand.http, "/alpha", "A");
    let before = Generation::of(&stand.capstan);

    let change = "a new service on a fixed address";
    stand.apply(&stand.yaml(&two_services(&a, "/alpha", &c, "/charlie")));
    assert_answers(
        stand.http,
        "localhost",
        change,
        &[("/charlie", "C"), ("/alpha", "A")],
    );
    stand.assert_live(&before, change);
    let lent = &stand.capstan.status()["history"][0]["changes"][0];
    assert_eq!(lent["kind"], "lend_spare_backend", "{lent:#}");

    let change = "the new service removed";
    stand.apply(&stand.yaml(&route("a", "/alpha", &a.address())));
    assert_answers(
        stand.http,
        "localhost",
        change,
        &[("/charlie", "503"), ("/alpha", "A")],
    );
    stand.assert_live(&before, change);

    // One with a setting of its own: no spare fits, a reload says why.
    stand.apply(&stand.yaml(&format!(
        "{}    timeouts:\n      connect: 2s\n",
        two_services(&a, "/alpha", &c, "/charlie")
    )));
    assert_answers(
        stand.http,
        "localhost",
        "a new service with a connect timeout",
        &[("/charlie", "C")],
    );
    let last = &stand.capstan.status()["history"][0];
    assert_eq!(last["method"], "reload", "{last:#}");
    assert!(
        last["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "no_spare_backend"
                && c["reason"] == "its setting `timeout connect 2s`"),
        "{last:#}"
    );
}

/// Service a on /alpha, and service s on /slow (`slow` answers 2 s late)
/// with `timeouts` (`timeouts: ...` lines of the route, or none).
fn slow_entries(a: &Backend, slow: &Backend, timeouts: &str) -> String {
    format!(
        "{}{}{timeouts}",
        route("a", "/alpha", &a.address()),
        route("s", "/slow", &slow.address())
    )
}

#[test]
fn a_server_timeout_set_changed_and_unset_applies_live_and_holds_after_a_restart() {
    require_tools();
    let a = Backend::start("A");
    let slow = Backend::start_slow("S", Duration::from_secs(2));
    let entries = |timeouts: &str| slow_entries(&a, &slow, timeouts);
    let mut stand = Stand::start(|http| routes_yaml(http, &entries("")));
    wait_for_backend(stand.http, "/alpha", "A");
    // The default server timeout (30s) waits for it.
    assert_answers(
        stand.http,
        "localhost",
        "no timeout of its own",
        &[("/slow", "S")],
    );
    let before = Generation::of(&stand.capstan);

    // 1 s is shorter than the answer takes: HAProxy gives up with a 504.
    let (one, five) = (
        "    timeouts:\n      server: 1s\n",
        "    timeouts:\n      server: 5s\n",
    );
    let steps = [
        ("a 1s server timeout set", one, "504"),
        ("the server timeout raised to 5s", five, "S"),
        ("the server timeout back to 1s", one, "504"),
    ];
    for (change, timeouts, who) in steps {
        stand.apply(&stand.yaml(&entries(timeouts)));
        assert_answers(
            stand.http,
            "localhost",
            change,
            &[("/slow", who), ("/alpha", "A")],
        );
        stand.assert_live(&before, change);
    }

    // The map file HAProxy loads on start holds the timeout changed live.
    assert_eq!(
        stand.capstan.map_lines("timeout-server.map"),
        ["s-be80 1000"]
    );
    stand.capstan.stop_capstan();
    stand.capstan.stop_haproxy();
    stand.capstan.restart();
    wait_for_backend(stand.http, "/alpha", "A");
    wait_until("in sync again", Duration::from_secs(20), || {
        stand.capstan.status()["in_sync"] == true
    });
    let restarted = Generation::of(&stand.capstan);
    assert_ne!(
        restarted.worker_pid, before.worker_pid,
        "HAProxy was started again"
    );
    assert_answers(stand.http, "localhost", "the restart", &[("/slow", "504")]);

    let change = "the server timeout unset";
    stand.apply(&stand.yaml(&entries("")));
    assert_answers(stand.http, "localhost", change, &[("/slow", "S")]);
    stand.assert_live(&restarted, change);
}

#[test]
fn a_new_service_with_its_own_server_timeout_takes_a_spare_backend_and_keeps_its_timeout() {
    require_tools();
    let a = Backend::start("A");
    let slow = Backend::start_slow("S", Duration::from_secs(2));
    let stand = Stand::start(|http| routes_yaml(http, &route("a", "/alpha", &a.address())));
    wait_for_backend(stand.http, "/alpha", "A");
    let before = Generation::of(&stand.capstan);

    let change = "a new service with a 1s server timeout";
    stand.apply(&stand.yaml(&slow_entries(
        &a,
        &slow,
        "    timeouts:\n      server: 1s\n",
    )));
    assert_answers(stand.http, "localhost", change, &[("/slow", "504")]);
    stand.assert_live(&before, change);
    let lent = &stand.capstan.status()["history"][0]["changes"][0];
    assert_eq!(lent["kind"], "lend_spare_backend", "{lent:#}");

    let change = "its server timeout raised to 5s";
    stand.apply(&stand.yaml(&slow_entries(
        &a,
        &slow,
        "    timeouts:\n      server: 5s\n",
    )));
    assert_answers(stand.http, "localhost", change, &[("/slow", "S")]);
    stand.assert_live(&before, change);
}

/// Routes for service a on `a_paths` and service c on `c_paths`.
fn two_services(a: &Backend, a_paths: &str, c: &Backend, c_paths: &str) -> String {
    format!(
        "{}{}",
        route("a", a_paths, &a.address()),
        route("c", c_paths, &c.address())
    )
}

#[test]
fn paths_added_removed_changed_and_moved_between_services_are_served_without_a_reload() {
    require_tools();
    let (a, c) = (Backend::start("A"), Backend::start("C"));
    let entries = |a_paths: &str, c_paths: &str| two_services(&a, a_paths, &c, c_paths);
    let stand = Stand::start(|http| routes_yaml(http, &entries("/alpha, /old", "/charlie")));
    wait_for_backend(stand.http, "/old", "A");
    wait_for_backend(stand.http, "/charlie", "C");
    let before = Generation::of(&stand.capstan);

    let steps: [(&str, &str, &str, Answers<'_>); 4] = [
        (
            "a path added",
            "/alpha, /old, /extra",
            "/charlie",
            &[("/extra", "A"), ("/old", "A"), ("/alpha", "A")],
        ),
        (
            "a path removed",
            "/alpha, /old",
            "/charlie",
            &[("/extra", "503"), ("/old", "A"), ("/alpha", "A")],
        ),
        (
            "a path changed from /old to /new",
            "/alpha, /new",
            "/charlie",
            &[("/new/x", "A"), ("/old", "503"), ("/alpha", "A")],
        ),
        (
            "a path moved to another service",
            "/alpha",
            "/charlie, /new",
            &[("/new/x", "C"), ("/alpha", "A"), ("/charlie", "C")],
        ),
    ];
    for (change, a_paths, c_paths, expected) in steps {
        stand.apply(&stand.yaml(&entries(a_paths, c_paths)));
        assert_answers(stand.http, "localhost", change, expected);
        stand.assert_live(&before, change);
    }
}

/// Service a on /alpha, and service b on `b_paths` for `b_domains` (exact domains).
fn domain_entries(a: &Backend, b: &Backend, b_paths: &str, b_domains: &str) -> String {
    format!(
        "{}{}    domains: [{b_domains}]\n",
        route("a", "/alpha", &a.address()),
        route("b", b_paths, &b.address())
    )
}

/// Services a (`/alpha`) and b (`/bravo` on example.com) served, and the
/// HAProxy generation serving them.
fn domain_stand() -> (Backend, Backend, Stand, Generation) {
    require_tools();
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let stand =
        Stand::start(|http| routes_yaml(http, &domain_entries(&a, &b, "/bravo", "example.com")));
    wait_for_backend_at(stand.http, "example.com", "/bravo", "B");
    let before = Generation::of(&stand.capstan);
    (a, b, stand, before)
}

#[test]
fn a_path_added_to_a_service_with_an_exact_domain_is_served_without_a_reload() {
    let (a, b, stand, before) = domain_stand();

    let change = "a path added to a service with a domain";
    stand.apply(&stand.yaml(&domain_entries(&a, &b, "/bravo, /extra", "example.com")));
    assert_answers(
        stand.http,
        "example.com:80",
        change,
        &[("/extra", "B"), ("/bravo", "B"), ("/alpha", "A")],
    );
    // Its own domain only: the key is the host and the path.
    assert_answers(stand.http, "localhost", change, &[("/extra", "503")]);
    stand.assert_live(&before, change);
}

#[test]
fn a_domain_added_to_an_existing_service_is_served_without_a_reload() {
    let (a, b, stand, before) = domain_stand();

    let change = "a domain added to a service";
    stand.apply(&stand.yaml(&domain_entries(
        &a,
        &b,
        "/bravo",
        "example.com, example.org",
    )));
    assert_answers(stand.http, "example.org", change, &[("/bravo", "B")]);
    assert_answers(stand.http, "example.com", change, &[("/bravo", "B")]);
    stand.assert_live(&before, change);
}

/// A backend that takes a WebSocket upgrade on each connection and then
/// echoes every byte it receives.
fn start_websocket_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || websocket_echo(stream));
        }
    });
    port
}

fn websocket_echo(mut stream: TcpStream) {
    if read_head(&mut stream).is_none() {
        return;
    }
    // The accept value RFC 6455 gives for the key `websocket_upgrade` sends.
    let switched = stream.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    );
    if switched.is_err() {
        return;
    }
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut chunk) {
        if stream.write_all(&chunk[..n]).is_err() {
            return;
        }
    }
}

/// Reads up to the end of an HTTP head, byte by byte so that nothing after
/// it is taken: the head, or `None` when the connection ends first.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).to_string())
}

/// Opens a WebSocket to `path` through HAProxy: the connection once
/// switched (`101`).
fn websocket_upgrade(http: u16, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", http)).unwrap();
    // Guards against a hang only: every read here is answered at once.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut stream).expect("HAProxy answers the upgrade");
    assert!(
        head.starts_with("HTTP/1.1 101 "),
        "the upgrade was not switched: {head}"
    );
    stream
}

/// Sends `message` on the open WebSocket and reads it back.
fn echoes(stream: &mut TcpStream, message: &str) -> std::io::Result<String> {
    stream.write_all(message.as_bytes())?;
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back)?;
    Ok(String::from_utf8_lossy(&back).to_string())
}

#[test]
fn a_websocket_opened_before_ten_live_route_changes_outlives_hard_stop_after() {
    require_tools();
    let (a, ws) = (Backend::start("A"), start_websocket_echo());
    let entries = |a_paths: &str| {
        format!(
            "{}{}",
            route("a", a_paths, &a.address()),
            route("ws", "/ws", &format!("127.0.0.1:{ws}"))
        )
    };
    let stand = Stand::start(|http| routes_yaml(http, &entries("/alpha")));
    wait_for_backend(stand.http, "/alpha", "A");
    let config = std::fs::read_to_string(stand.capstan.state_dir.join("haproxy.cfg")).unwrap();
    // A reload would end the tunnel `hard-stop-after` later; `timeout
    // tunnel` must outlast the wait below for the test to mean that.
    assert!(config.contains("hard-stop-after 30s"), "{config}");
    assert!(config.contains("timeout tunnel 1h"), "{config}");

    let mut socket = websocket_upgrade(stand.http, "/ws");
    assert_eq!(echoes(&mut socket, "before").unwrap(), "before");
    let before = Generation::of(&stand.capstan);
    for i in 0..10 {
        // Each change adds a path and removes the one the change before added.
        let change = format!("change {i}");
        stand.apply(&stand.yaml(&entries(&format!("/alpha, /p{i}"))));
        assert_answers(
            stand.http,
            "localhost",
            &change,
            &[(&format!("/p{i}"), "A")],
        );
        if i > 0 {
            assert_answers(
                stand.http,
                "localhost",
                &change,
                &[(&format!("/p{}", i - 1), "503")],
            );
        }
        stand.assert_live(&before, &change);
    }

    // Past hard-stop-after: an old worker holding the socket would be gone.
    std::thread::sleep(Duration::from_secs(60));
    assert_eq!(
        echoes(&mut socket, "after a minute").expect("the WebSocket is still open"),
        "after a minute"
    );
    assert_eq!(Generation::of(&stand.capstan), before);
}

#[test]
fn routes_changed_live_are_served_after_capstan_and_haproxy_start_again() {
    require_tools();
    let (a, c) = (Backend::start("A"), Backend::start("C"));
    let entries = |a_paths: &str, c_paths: &str| two_services(&a, a_paths, &c, c_paths);
    let mut stand = Stand::start(|http| routes_yaml(http, &entries("/alpha, /old", "/charlie")));
    wait_for_backend(stand.http, "/old", "A");
    let before = Generation::of(&stand.capstan);
    stand.apply(&stand.yaml(&entries("/alpha, /extra", "/charlie, /moved")));
    stand.assert_live(&before, "the live changes");
    let served = [
        ("/alpha", "A"),
        ("/extra", "A"),
        ("/charlie", "C"),
        ("/moved", "C"),
        ("/old", "503"),
    ];
    assert_answers(stand.http, "localhost", "the live changes", &served);

    // The map files HAProxy loads on start hold what was changed live.
    let prefix_map =
        std::fs::read_to_string(stand.capstan.state_dir.join("haproxy.cfg.maps/prefix.map"))
            .unwrap();
    assert!(prefix_map.contains("/extra a-be80\n"), "{prefix_map}");
    assert!(prefix_map.contains("/moved c-be80\n"), "{prefix_map}");
    assert!(!prefix_map.contains("/old "), "{prefix_map}");

    stand.capstan.stop_capstan();
    stand.capstan.stop_haproxy();
    assert_eq!(answered(stand.http, "localhost", "/alpha"), "no answer");
    stand.capstan.restart();
    wait_for_backend(stand.http, "/alpha", "A");
    wait_until("in sync again", Duration::from_secs(20), || {
        stand.capstan.status()["in_sync"] == true
    });
    assert_answers(stand.http, "localhost", "the restart", &served);
    assert_ne!(
        stand.capstan.haproxy_worker_pid(),
        before.worker_pid,
        "HAProxy was started again"
    );
}

#[test]
fn a_burst_of_dfp_reconfigures_adding_paths_to_existing_services_reloads_nothing() {
    require_tools();
    const SERVICES: usize = 4;
    const ROUNDS: usize = 5;
    let names: Vec<String> = (0..SERVICES).map(|n| format!("svc{n}")).collect();
    let backends: Vec<Backend> = names.iter().map(|n| Backend::start(n)).collect();
    let dns = Dns::start(&names.iter().map(String::as_str).collect::<Vec<_>>());
    // Declared as Docker Flow Proxy declares them: the service's name and
    // port, resolved by HAProxy; a reconfigure then only adds paths.
    let declared: String = names
        .iter()
        .zip(&backends)
        .map(|(name, b)| {
            format!(
                "  - service: {name}\n    port: {}\n    paths: [/{name}]\n",
                b.port
            )
        })
        .collect();
    let stand = Stand::start(|http| with_resolvers(&routes_yaml(http, &declared), &dns));
    for name in &names {
        wait_for_backend(stand.http, &format!("/{name}"), name);
    }
    let before = Generation::of(&stand.capstan);

    let api = stand.capstan.api_port;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    for round in 1..=ROUNDS {
        // Every service at once; each call names all of its service's paths so far.
        let calls = names.iter().zip(&backends).map(|(name, b)| {
            let paths: Vec<String> = std::iter::once(format!("/{name}"))
                .chain((1..=round).map(|k| format!("/added{k}-{name}")))
                .collect();
            let url = format!(
                "http://127.0.0.1:{api}/v1/docker-flow-proxy/reconfigure?serviceName={name}&servicePath={}&port={}",
                paths.join(","),
                b.port
            );
            let client = client.clone();
            runtime.spawn(async move {
                let response = client.get(&url).send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap(), url)
            })
        });
        for call in calls.collect::<Vec<_>>() {
            let (code, body, url) = runtime.block_on(call).unwrap();
            assert!(
                code == 200 && body.contains("\"Status\":\"OK\""),
                "{url}: {code} {body}"
            );
        }
    }

    for name in &names {
        for k in 1..=ROUNDS {
            assert_answers(
                stand.http,
                "localhost",
                "the burst",
                &[(&format!("/added{k}-{name}"), name)],
            );
        }
        assert_answers(
            stand.http,
            "localhost",
            "the burst",
            &[(&format!("/{name}"), name)],
        );
    }
    assert_eq!(
        Generation::of(&stand.capstan),
        before,
        "the burst reloaded HAProxy"
    );
}
