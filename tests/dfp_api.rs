//! The Docker-Flow-Proxy-compatible API end to end: `curl`-style calls to a
//! real `capstan serve`, a real HAProxy, real backends, and a real git remote.

mod support;

use std::time::Duration;

use support::*;

/// A routes.yaml whose HAProxy resolves service names through `dns`.
fn base_routes(http: u16, dns: &Dns, routes: &str) -> String {
    format!(
        "version: 1\ndefaults:\n  bind_address: 127.0.0.1\n  http_port: {http}\n  resolvers: [\"127.0.0.1:{}\"]\nroutes:{}",
        dns.port,
        if routes.is_empty() {
            " []\n".to_string()
        } else {
            format!("\n{routes}")
        }
    )
}

fn get_json(capstan: &Capstan, path_and_query: &str) -> (u16, serde_json::Value) {
    let (code, body) = capstan.get(path_and_query);
    let value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (code, value)
}

fn start(remote: &GitRemote, extra: &[&str]) -> Capstan {
    let url = remote.url();
    let mut args = vec!["--repo", url.as_str(), "--poll-interval", "1h"];
    args.extend_from_slice(extra);
    Capstan::start(&args)
}

fn wait_in_sync(capstan: &Capstan) {
    wait_until("capstan in sync", Duration::from_secs(20), || {
        capstan.status()["in_sync"] == true
    });
}

#[test]
fn the_book_example_end_to_end() {
    require_tools();
    // go-demo answers on 127.0.0.1:8080 as the book's service does, and the
    // name go-demo resolves to it through HAProxy's resolvers.
    let _go_demo = Backend::start_on(8080, "go-demo");
    let dns = Dns::start(&["go-demo"]);
    let http = free_port();
    let remote = GitRemote::new();
    remote.push(&base_routes(http, &dns, ""));
    let capstan = start(&remote, &[]);
    wait_in_sync(&capstan);

    let (code, answer) = get_json(
        &capstan,
        "/v1/docker-flow-proxy/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080",
    );
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(answer["Status"], "OK");
    assert_eq!(answer["ServiceName"], "go-demo");
    assert_eq!(answer["ReqMode"], "http");
    assert_eq!(answer["ServiceDest"][0]["Port"], "8080");
    assert_eq!(
        answer["ServiceDest"][0]["ServicePath"],
        serde_json::json!(["/demo"])
    );
    assert_eq!(answer["ServiceDest"][0]["SrcPort"], 0);

    let (code, config) = capstan.get("/v1/docker-flow-proxy/config");
    assert_eq!(code, 200);
    // `acl url_go-demo8080 path_beg /demo`, as an entry of the prefix map.
    let prefix_map = capstan.state_dir.join("haproxy.cfg.maps/prefix.map");
    assert!(
        config.contains(&format!("path,map_beg({})", prefix_map.display())),
        "{config}"
    );
    assert_eq!(capstan.map_lines("prefix.map"), ["/demo go-demo-be8080"]);

    // Status OK means it serves: no waiting needed beyond DNS resolution.
    wait_for_backend(http, "/demo/hello", "go-demo");

    // The override is drift, listed in status.
    let status = capstan.status();
    assert_eq!(status["overrides"][0]["service"], "go-demo", "{status:#}");
    assert_eq!(
        status["overrides"][0]["adds"],
        serde_json::json!(["go-demo:8080"])
    );

    let (code, answer) = get_json(&capstan, "/v1/docker-flow-proxy/remove?serviceName=go-demo");
    assert_eq!(
        (code, answer["Status"].as_str()),
        (200, Some("OK")),
        "{answer:#}"
    );
    assert_eq!(
        http_get(http, "/demo/hello", "localhost").map(|r| r.0),
        Some(503)
    );
    assert!(capstan.status()["overrides"].as_array().unwrap().is_empty());
}

#[test]
fn overrides_survive_a_restart_and_git_wins_once_it_declares_the_same() {
    require_tools();
    let (a, b) = (Backend::start("A"), Backend::start("B"));
    let dns = Dns::start(&[]);
    let http = free_port();
    let remote = GitRemote::new();
    remote.push(&base_routes(http, &dns, &route("a", "/a", &a.address())));
    let mut capstan = start(&remote, &[]);
    wait_in_sync(&capstan);

    // An override for a service git does not know.
    let (code, answer) = get_json(
        &capstan,
        &format!(
            "/v1/docker-flow-proxy/reconfigure?serviceName=b&servicePath=/b&port={}",
            b.port
        ),
    );
    assert_eq!(code, 200, "{answer:#}");
    let overrides = std::fs::read_to_string(capstan.state_dir.join("overrides.json")).unwrap();
    assert!(overrides.contains("\"service\": \"b\""), "{overrides}");

    capstan.restart();
    wait_in_sync(&capstan);
    let status = capstan.status();
    assert_eq!(status["overrides"][0]["service"], "b", "{status:#}");
    let prefix_map = capstan.map_lines("prefix.map");
    assert!(
        prefix_map.contains(&format!("/b b-be{}", b.port)),
        "{prefix_map:?}"
    );

    // A pull request's diff against the live capstan shows the override as
    // drift, not as a route the merge would remove.
    let work = remote.dir.path().join("work");
    let (code, report) = capstan.diff_live(&work);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["drift"][0]["service"], "b", "{report:#}");
    assert_eq!(report["drift"][0]["adds"][0], format!("b:{}", b.port));

    // A commit that does not declare b leaves the override in force.
    let commit = remote.push(&base_routes(http, &dns, &route("a", "/a2", &a.address())));
    assert_eq!(
        http_post(capstan.api_port, "/v1/webhook/git", "{}"),
        Some(202)
    );
    wait_until("the commit applied", Duration::from_secs(20), || {
        capstan.status()["applied"]["revision"]["commit"] == commit
    });
    assert_eq!(capstan.status()["overrides"][0]["service"], "b");
    wait_for_backend(http, "/a2", "A");

    // Git declares exactly what the override says: it is dropped as redundant.
    let declared = format!(
        "{}  - service: b\n    port: {}\n    paths: [/b]\n",
        route("a", "/a2", &a.address()),
        b.port
    );
    let commit = remote.push(&base_routes(http, &dns, &declared));
    assert_eq!(
        http_post(capstan.api_port, "/v1/webhook/git", "{}"),
        Some(202)
    );
    wait_until(
        "the redundant override dropped",
        Duration::from_secs(20),
        || {
            let status = capstan.status();
            status["applied"]["revision"]["commit"] == commit
                && status["overrides"].as_array().is_some_and(Vec::is_empty)
        },
    );
}

#[test]
fn bad_requests_get_4xx_json_and_inject_nothing() {
    require_tools();
    let dns = Dns::start(&[]);
    let http = free_port();
    let remote = GitRemote::new();
    remote.push(&base_routes(http, &dns, ""));
    let capstan = start(&remote, &[]);
    wait_in_sync(&capstan);
    let config_before = capstan.get("/v1/docker-flow-proxy/config").1;
    for (query, code, names) in [
        ("servicePath=/demo&port=8080", 400, "serviceName"),
        ("serviceName=go-demo&servicePath=/demo", 400, "port"),
        ("serviceName=go-demo&port=8080", 409, "servicePath"),
        (
            "serviceName=go-demo&servicePath=/demo&port=70000",
            400,
            "port",
        ),
        (
            "serviceName=go-demo&servicePath=/demo%0Aacl%20x%20always_true&port=8080",
            400,
            "servicePath",
        ),
        (
            "serviceName=go-demo&servicePath=/demo%23x&port=8080",
            400,
            "servicePath",
        ),
        (
            "serviceName=go%20demo&servicePath=/demo&port=8080",
            400,
            "serviceName",
        ),
        (
            "serviceName=go-demo&servicePath=/demo&port=8080&frobnicate=1",
            400,
            "frobnicate",
        ),
        (
            "serviceName=go-demo&servicePath=/demo&port=8080&users=admin:secret",
            400,
            "users",
        ),
    ] {
        let (got, answer) = get_json(
            &capstan,
            &format!("/v1/docker-flow-proxy/reconfigure?{query}"),
        );
        assert_eq!(got, code, "{query}: {answer:#}");
        assert_eq!(answer["Status"], "NOK", "{query}");
        let message = answer["Message"].as_str().unwrap();
        assert!(message.contains(names), "{query}: {message}");
    }
    let long = "a".repeat(20_000);
    let (code, _) = capstan.get(&format!(
        "/v1/docker-flow-proxy/reconfigure?serviceName={long}"
    ));
    assert_eq!(code, 414);
    assert_eq!(
        capstan.get("/v1/docker-flow-proxy/config").1,
        config_before,
        "nothing reached haproxy.cfg"
    );
    assert!(capstan.status()["overrides"].as_array().unwrap().is_empty());
}

/// HAProxy decodes escapes such as `\x00` inside config words: a path
/// `/app\x00zz` used to be accepted and matched as `/app`, taking it from
/// the git route that owns it. Every escape is refused, `/app` keeps reaching
/// git's backend, and a regex's escapes reach PCRE exactly as written.
#[test]
fn escapes_in_paths_are_refused_and_regexes_mean_what_they_say() {
    require_tools();
    let (app, dots) = (Backend::start("APP"), Backend::start("DOTS"));
    let dns = Dns::start(&[]);
    let http = free_port();
    let remote = GitRemote::new();
    let regex_route = format!(
        "  - service: dots\n    port: 80\n    path_match: regex\n    paths: ['^/x\\x2eb$', '^/a\\.b$']\n    servers: [\"{}\"]\n",
        dots.address()
    );
    // HAProxy expands `$HOME` only inside double quotes: a path is literal.
    let routes = format!(
        "{}{}{regex_route}",
        route("app", "/app", &app.address()),
        route("cash", "'/pay$HOME'", &dots.address())
    );
    remote.push(&base_routes(http, &dns, &routes));
    let capstan = start(&remote, &[]);
    wait_in_sync(&capstan);
    wait_for_backend(http, "/app/x", "APP");
    wait_for_backend(http, "/x.b", "DOTS");
    wait_for_backend(http, "/pay$HOME/x", "DOTS");
    wait_for_backend(http, "/a.b", "DOTS");
    // `\x2e` and `\.` are PCRE's literal dot; decoded by HAProxy, `\x2e`
    // would be `.`, any character.
    for path in ["/xyb", "/axb"] {
        let answer = http_get(http, path, "localhost");
        assert!(
            !answer
                .as_ref()
                .is_some_and(|(_, body)| body.starts_with("DOTS ")),
            "{path} matched a regex meant for a literal dot: {answer:?}"
        );
    }

    // `%5C` is `\`.
    for path in [
        "/app%5Cx00zz",
        "/app%5Cx0a",
        "/app%5C%5C",
        "/app%5Cn",
        "/app%5C%20x",
    ] {
        let (code, answer) = get_json(
            &capstan,
            &format!(
                "/v1/docker-flow-proxy/reconfigure?serviceName=evil&servicePath={path}&port=8080"
            ),
        );
        assert_eq!(code, 400, "{path}: {answer:#}");
        assert_eq!(answer["Status"], "NOK", "{path}");
        let message = answer["Message"].as_str().unwrap();
        assert!(message.contains("servicePath"), "{path}: {message}");
    }
    assert!(capstan.status()["overrides"].as_array().unwrap().is_empty());
    let (code, body) = http_get(http, "/app", "localhost").expect("HAProxy answers");
    assert!(
        code == 200 && body.starts_with("APP "),
        "/app left git's route: {code} {body}"
    );
}

#[test]
fn mutating_endpoints_can_require_a_token() {
    require_tools();
    let dns = Dns::start(&[]);
    let http = free_port();
    let remote = GitRemote::new();
    remote.push(&base_routes(http, &dns, ""));
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let capstan = start(&remote, &["--api-token-file", token_file.to_str().unwrap()]);
    wait_in_sync(&capstan);
    let (code, answer) = get_json(
        &capstan,
        "/v1/docker-flow-proxy/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080",
    );
    assert_eq!(code, 401, "{answer:#}");
    assert_eq!(answer["Status"], "NOK");
    assert_eq!(
        capstan.get("/v1/docker-flow-proxy/ping").0,
        200,
        "reads stay open"
    );
}

#[test]
fn a_thousand_concurrent_reconfigures_coalesce_into_few_reloads() {
    require_tools();
    let backend = Backend::start("B");
    let dns = Dns::start(&[]);
    let http = free_port();
    let remote = GitRemote::new();
    remote.push(&base_routes(
        http,
        &dns,
        &route("keep", "/keep", &backend.address()),
    ));
    let capstan = start(&remote, &[]);
    wait_in_sync(&capstan);
    let reloads_before = capstan.haproxy_reloads();

    const CALLS: usize = 1000;
    let api = capstan.api_port;
    // All calls in flight at once, as a deploy script fanning out would.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answers: Vec<(u16, String)> = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let calls = (0..CALLS).map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                let url = format!(
                    "http://127.0.0.1:{api}/v1/docker-flow-proxy/reconfigure?serviceName=svc{n}&servicePath=/svc{n}&port=80"
                );
                match client.get(url).send().await {
                    Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
                    Err(e) => (0, e.to_string()),
                }
            })
        });
        let mut answers = Vec::new();
        for call in calls.collect::<Vec<_>>() {
            answers.push(call.await.unwrap());
        }
        answers
    });
    let ok = answers
        .iter()
        .filter(|(code, body)| *code == 200 && body.contains("\"Status\":\"OK\""))
        .count();
    assert_eq!(
        ok,
        CALLS,
        "every call answered OK: {:?}",
        answers.iter().find(|(c, _)| *c != 200)
    );
    let reloads = capstan.haproxy_reloads() - reloads_before;
    println!("{CALLS} concurrent reconfigures: {reloads} reloads");
    assert!(reloads <= 20, "{reloads} reloads for {CALLS} calls");
    let (_, config) = capstan.get("/v1/docker-flow-proxy/config");
    for n in [0, CALLS / 2, CALLS - 1] {
        assert!(
            config.contains(&format!("backend svc{n}-be80\n")),
            "svc{n} is served"
        );
    }
}
