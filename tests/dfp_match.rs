//! Docker Flow Proxy's matching and answer parameters end to end, through
//! both doors (routes.yaml from git, and the DFP API of `capstan serve`),
//! with real HAProxy and real traffic: `serviceDomainAlgo` (`domain_match`),
//! `serviceHeader` (`match_headers`), `userAgent` (`user_agents`),
//! `compressionAlgo`/`compressionType` (`compression`) and `checkResolvers`
//! (`resolve_at_runtime`).

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// A routes.yaml on `http` with these route entries, each a YAML list item.
fn routes(http: u16, entries: &[String]) -> String {
    routes_yaml(http, &entries.concat())
}

/// A route entry for service `name` on `path` served by `backend`, with `extra` lines.
fn entry(name: &str, path: &str, backend: &Backend, extra: &str) -> String {
    format!(
        "  - service: {name}\n    port: 80\n    paths: [{path}]\n    servers: [\"{}\"]\n{extra}",
        backend.address()
    )
}

/// `capstan serve` of `remote`, once it serves `commit`.
fn serve(remote: &GitRemote, commit: &str) -> Capstan {
    let capstan = serve_git(remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, commit);
    capstan
}

/// Which backend answered `GET path` with `Host: host` and these extra
/// header lines: its name, or the status when it is not 200.
fn served_by(http: u16, path: &str, host: &str, headers: &[&str]) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for header in headers {
        request.push_str(&format!("{header}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    match http_raw(http, &request) {
        Some((200, response)) => {
            let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            body.split(' ').next().unwrap_or_default().to_string()
        }
        Some((status, _)) => status.to_string(),
        None => "no answer".into(),
    }
}

/// A DFP reconfigure: the JSON answer, after asserting it is 200 OK.
fn reconfigure(capstan: &Capstan, query: &str) -> serde_json::Value {
    let (code, body) = capstan.get(&format!("/v1/docker-flow-proxy/reconfigure?{query}"));
    assert_eq!(code, 200, "{query}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["Status"], "OK", "{answer:#}");
    answer
}

#[test]
fn domain_match_routes_hosts_as_dfp_host_fetches() {
    require_tools();
    let backends: Vec<Backend> = ["EXACT", "PREFIX", "SUFFIX", "LABELS", "DFP"]
        .map(Backend::start)
        .into_iter()
        .collect();
    let http = free_port();
    let remote = GitRemote::new();
    let domains = |name: &str, backend: &Backend, how: &str| {
        format!(
            "  - service: {name}\n    port: 80\n    domains: [{name}.test]\n    servers: [\"{}\"]\n{how}",
            backend.address()
        )
    };
    let commit = remote.push(&routes(
        http,
        &[
            domains("exact", &backends[0], ""),
            domains("prefix", &backends[1], "    domain_match: prefix\n"),
            domains("suffix", &backends[2], "    domain_match: suffix\n"),
            domains("labels", &backends[3], "    domain_match: labels\n"),
        ],
    ));
    let capstan = serve(&remote, &commit);

    for (host, expected) in [
        // The default: the whole host, its port and case ignored.
        ("exact.test", "EXACT"),
        ("EXACT.test:8080", "EXACT"),
        ("www.exact.test", "503"),
        // hdr_beg(host): the host starts with the domain.
        ("prefix.test", "PREFIX"),
        ("prefix.test.example.net", "PREFIX"),
        ("www.prefix.test", "503"),
        // hdr_end(host): the host ends with it, on a label boundary or not.
        ("www.suffix.test", "SUFFIX"),
        ("mysuffix.test:8080", "SUFFIX"),
        ("suffix.test.example.net", "503"),
        // hdr_dom(host): whole dot-separated labels anywhere in the host.
        ("www.labels.test", "LABELS"),
        ("labels.test.example.net", "LABELS"),
        ("mylabels.test", "503"),
    ] {
        assert_eq!(served_by(http, "/", host, &[]), expected, "Host: {host}");
    }

    // The DFP API: `serviceDomainAlgo=hdr_dom(host)`, echoed.
    let answer = reconfigure(
        &capstan,
        &format!(
            "serviceName=dfp&port={}&serviceDomain=dfp.test&serviceDomainAlgo=hdr_dom(host)&outboundHostname=127.0.0.1",
            backends[4].port
        ),
    );
    assert_eq!(answer["ServiceDomainAlgo"], "hdr_dom(host)", "{answer:#}");
    assert_eq!(served_by(http, "/x", "api.dfp.test", &[]), "DFP");
    assert_eq!(served_by(http, "/x", "mydfp.test", &[]), "503");
}

#[test]
fn header_conditions_choose_the_backend_on_one_path() {
    require_tools();
    let (v2, v3, dfp2, dfp3) = (
        Backend::start("V2"),
        Backend::start("V3"),
        Backend::start("DFP2"),
        Backend::start("DFP3"),
    );
    let http = free_port();
    let remote = GitRemote::new();
    let commit = remote.push(&routes(
        http,
        &[
            entry("v2", "/app", &v2, "    match_headers: {X-Version: '2'}\n"),
            entry(
                "v3",
                "/app",
                &v3,
                "    match_headers: {X-Version: '3', name: Viktor Farcic}\n",
            ),
        ],
    ));
    let capstan = serve(&remote, &commit);

    for (headers, expected) in [
        (&["X-Version: 3", "name: Viktor Farcic"][..], "V3"),
        (&["X-Version: 3"][..], "503"),
        (&["X-Version: 3", "name: viktor farcic"][..], "503"),
        (&["X-Version: 2"][..], "V2"),
        (&["x-version: 2"][..], "V2"),
        (&["X-Version: 1, 2"][..], "V2"),
        (&["X-Version: 22"][..], "503"),
        (&[][..], "503"),
    ] {
        assert_eq!(
            served_by(http, "/app/x", "localhost", headers),
            expected,
            "{headers:?}"
        );
    }

    // The DFP API: two services on one path, told apart by `serviceHeader`,
    // are both accepted and both served.
    for (service, backend, version) in [("dfp2", &dfp2, 2), ("dfp3", &dfp3, 3)] {
        let answer = reconfigure(
            &capstan,
            &format!(
                "serviceName={service}&port={}&servicePath=/dfp&serviceHeader=X-Version:{version}&outboundHostname=127.0.0.1",
                backend.port
            ),
        );
        assert_eq!(
            answer["ServiceDest"][0]["ServiceHeader"]["X-Version"],
            version.to_string()
        );
    }
    assert_eq!(
        served_by(http, "/dfp", "localhost", &["X-Version: 2"]),
        "DFP2"
    );
    assert_eq!(
        served_by(http, "/dfp", "localhost", &["X-Version: 3"]),
        "DFP3"
    );
    assert_eq!(served_by(http, "/dfp", "localhost", &[]), "503");
    // The same path with the same header is still a conflict.
    let (code, body) = capstan.get(&format!(
        "/v1/docker-flow-proxy/reconfigure?serviceName=again&port={}&servicePath=/dfp&serviceHeader=X-Version:3",
        dfp3.port
    ));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("already routed"), "{body}");
}

#[test]
fn user_agents_choose_the_backend() {
    require_tools();
    let (mobile, bot) = (Backend::start("MOBILE"), Backend::start("BOT"));
    let http = free_port();
    let remote = GitRemote::new();
    let commit = remote.push(&routes(
        http,
        &[entry(
            "mobile",
            "/m",
            &mobile,
            "    user_agents: [iPhone, 'Linux; Android']\n",
        )],
    ));
    let capstan = serve(&remote, &commit);

    for (agent, expected) in [
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
            "MOBILE",
        ),
        ("mozilla/5.0 (linux; android 14; pixel 8)", "MOBILE"),
        // The whole header is searched, commas included.
        (
            "Mozilla/5.0 (KHTML, like Gecko) Mobile/15E148 IPHONE",
            "MOBILE",
        ),
        ("Mozilla/5.0 (Linux x86_64) Android-less", "503"),
        ("curl/8.5.0", "503"),
    ] {
        let header = format!("User-Agent: {agent}");
        assert_eq!(
            served_by(http, "/m", "localhost", &[&header]),
            expected,
            "{agent}"
        );
    }
    assert_eq!(served_by(http, "/m", "localhost", &[]), "503");

    let answer = reconfigure(
        &capstan,
        &format!(
            "serviceName=crawl&port={}&servicePath=/m&userAgent=googlebot,bingbot&outboundHostname=127.0.0.1",
            bot.port
        ),
    );
    assert_eq!(
        answer["ServiceDest"][0]["UserAgent"]["Value"],
        serde_json::json!(["googlebot", "bingbot"])
    );
    let googlebot = "User-Agent: Mozilla/5.0 (compatible; Googlebot/2.1)";
    assert_eq!(served_by(http, "/m", "localhost", &[googlebot]), "BOT");
    let iphone = "User-Agent: Mozilla/5.0 (iPhone)";
    assert_eq!(served_by(http, "/m", "localhost", &[iphone]), "MOBILE");
}

/// `curl` of `path`: the response head (lowercased) and the body, decoded
/// when the client accepted compression (curl's `--compressed`).
fn curl(http: u16, path: &str, accept_compression: bool) -> (String, String) {
    let mut command = Command::new("curl");
    command.args(["-sS", "-i", "--max-time", "5"]);
    if accept_compression {
        command.arg("--compressed");
    }
    let output = command
        .arg(format!("http://127.0.0.1:{http}{path}"))
        .output()
        .expect("curl runs (scripts/install-test-deps installs it)");
    assert!(output.status.success(), "{output:?}");
    let response = String::from_utf8_lossy(&output.stdout).to_string();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {response}"));
    (head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn compression_gzips_compressible_answers_for_clients_that_accept_it() {
    require_tools();
    let (zipped, html_only, plain, dfp) = (
        Backend::start("ZIPPED"),
        Backend::start("HTMLONLY"),
        Backend::start("PLAIN"),
        Backend::start("DFP"),
    );
    let http = free_port();
    let remote = GitRemote::new();
    let commit = remote.push(&routes(
        http,
        &[
            entry(
                "zipped",
                "/z",
                &zipped,
                "    compression: {algorithms: [gzip], types: [text/plain]}\n",
            ),
            entry(
                "htmlonly",
                "/h",
                &html_only,
                "    compression: {algorithms: [gzip], types: [text/html]}\n",
            ),
            entry("plain", "/p", &plain, ""),
        ],
    ));
    let capstan = serve(&remote, &commit);

    let (head, body) = curl(http, "/z/page", true);
    assert!(head.contains("\r\ncontent-encoding: gzip"), "{head}");
    assert_eq!(body, "ZIPPED /z/page");
    let (head, body) = curl(http, "/z/page", false);
    assert!(!head.contains("content-encoding"), "{head}");
    assert_eq!(body, "ZIPPED /z/page");
    // The backends answer text/plain: not a type /h compresses; /p compresses nothing.
    for path in ["/h", "/p"] {
        let (head, _) = curl(http, path, true);
        assert!(!head.contains("content-encoding"), "{path}: {head}");
    }

    let answer = reconfigure(
        &capstan,
        &format!(
            "serviceName=dfp&port={}&servicePath=/d&compressionAlgo=gzip&compressionType=text/plain%20text/html&outboundHostname=127.0.0.1",
            dfp.port
        ),
    );
    assert_eq!(answer["CompressionAlgo"], "gzip");
    assert_eq!(answer["CompressionType"], "text/plain text/html");
    let (head, body) = curl(http, "/d", true);
    assert!(head.contains("\r\ncontent-encoding: gzip"), "{head}");
    assert_eq!(body, "DFP /d");
}

/// Both doors in one test: it holds 127.0.0.11:53, Docker's DNS address.
#[test]
fn check_resolvers_resolves_service_names_at_run_time() {
    require_tools();
    let web = Backend::start("WEB");
    let http = free_port();
    let remote = GitRemote::new();
    // No `defaults.resolvers`: a route resolving at run time asks Docker's
    // DNS, 127.0.0.11:53. Neither name resolves through the system's resolver.
    let service = |name: &str, path: &str, extra: &str| {
        format!(
            "  - name: {name}\n    service: web\n    port: {}\n    paths: [{path}]\n{extra}",
            web.port
        )
    };
    let commit = remote.push(&routes(
        http,
        &[
            service("runtime", "/w", "    resolve_at_runtime: true\n"),
            service("loaded", "/s", ""),
        ],
    ));
    let capstan = serve(&remote, &commit);
    assert_eq!(served_by(http, "/w", "localhost", &[]), "503");
    let reloads = capstan.haproxy_reloads();

    // Docker's DNS comes to know the name: HAProxy finds it without a reload.
    let _dns = Dns::start_on("127.0.0.11:53", &["web", "api", "plain"]);
    wait_until(
        "/w served once web resolves",
        Duration::from_secs(20),
        || served_by(http, "/w", "localhost", &[]) == "WEB",
    );
    assert_eq!(capstan.haproxy_reloads(), reloads);
    // A route without it keeps the address it had when the config loaded: none.
    assert_eq!(served_by(http, "/s", "localhost", &[]), "503");

    let answer = reconfigure(
        &capstan,
        &format!(
            "serviceName=api&port={}&servicePath=/api&checkResolvers=true",
            web.port
        ),
    );
    assert_eq!(answer["CheckResolvers"], true);
    reconfigure(
        &capstan,
        &format!("serviceName=plain&port={}&servicePath=/plain", web.port),
    );
    wait_until(
        "/api served through the DNS",
        Duration::from_secs(20),
        || served_by(http, "/api", "localhost", &[]) == "WEB",
    );
    assert_eq!(served_by(http, "/plain", "localhost", &[]), "503");
}
