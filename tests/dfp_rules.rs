//! Docker Flow Proxy's request rules through both doors, routes.yaml and
//! the DFP API, checked with real traffic through a real HAProxy: excluded
//! paths falling through to the default backend, redirected domains,
//! refused methods and plain HTTP, and the HTTPS redirects a TLS-terminating
//! load balancer needs (`X-Forwarded-Proto`).

mod support;

use std::time::Duration;

use support::*;

/// The value of the response header `name` (case-insensitive), if any.
fn header(response: &str, name: &str) -> Option<String> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// One request with `method`, `host` and extra header lines: (status,
/// `Location`, the body's first word: the backend that answered).
fn request(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &str,
) -> (u16, Option<String>, String) {
    let (status, response) = http_raw(
        port,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
    .unwrap_or_else(|| panic!("no answer to {method} {host}{path}"));
    (
        status,
        header(&response, "location"),
        answered_by(&response),
    )
}

/// The backend that answered a response (its body's first word), or `-`.
fn answered_by(response: &str) -> String {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    match header(response, "content-type").as_deref() {
        Some("text/plain") => body.split(' ').next().unwrap_or("-").to_string(),
        _ => "-".to_string(),
    }
}

fn get(port: u16, host: &str, path: &str) -> (u16, Option<String>, String) {
    request(port, "GET", host, path, "")
}

/// `https_get` as (status, `Location`, the backend that answered).
fn tls_get(port: u16, host: &str, path: &str, extra: &[&str]) -> (u16, Option<String>, String) {
    let (status, response) = https_get(port, path, host, extra)
        .unwrap_or_else(|| panic!("no TLS answer for {host}{path}"));
    (
        status,
        header(&response, "location"),
        answered_by(&response),
    )
}

struct Stand {
    backends: Vec<Backend>,
    http: u16,
    https: u16,
    _certs: tempfile::TempDir,
    pem: String,
}

impl Stand {
    /// Backends A to F, and the ports and certificate of a proxy for them.
    fn new() -> Self {
        let backends = ["A", "B", "C", "D", "E", "F"].map(Backend::start).into();
        let certs = tempfile::tempdir().unwrap();
        let pem = self_signed_pem(
            certs.path(),
            "site.pem",
            &["new.test", "old.test", "localhost"],
        );
        Self {
            backends,
            http: free_port(),
            https: free_port(),
            pem: pem.display().to_string(),
            _certs: certs,
        }
    }

    fn port(&self, name: &str) -> u16 {
        let i = usize::from(name.as_bytes()[0] - b'A');
        self.backends[i].port
    }

    /// routes.yaml with `routes` (list items), HTTP and HTTPS.
    fn routes_yaml(&self, routes: &str) -> String {
        with_https(&routes_yaml(self.http, routes), self.https, &self.pem)
    }

    /// Every rule, checked by what a client sees, on the same table from
    /// either door: A serves /api (excluding /api/internal; GET and POST
    /// only), B is the default backend, C serves new.test (old.test
    /// redirected to it), D serves /secure (TLS only) and /ro (no DELETE),
    /// E and F serve /lb and /lb2 behind a TLS-terminating load balancer.
    fn check_traffic(&self) {
        let (http, https) = (self.http, self.https);
        let host = "localhost";

        // Excluded paths fall through to the default backend, like every
        // request no route matches.
        assert_eq!(get(http, host, "/api/x"), (200, None, "A".into()));
        assert_eq!(get(http, host, "/api/internal/x"), (200, None, "B".into()));
        assert_eq!(get(http, host, "/nowhere"), (200, None, "B".into()));
        // Methods: only GET and POST reach A; DELETE is refused on /ro.
        assert_eq!(
            request(http, "POST", host, "/api/x", ""),
            (200, None, "A".into())
        );
        assert_eq!(request(http, "PUT", host, "/api/x", "").0, 403);
        assert_eq!(request(http, "get", host, "/api/x", "").0, 403);
        assert_eq!(request(http, "DELETE", host, "/ro", "").0, 403);
        assert_eq!(
            request(http, "PUT", host, "/ro", ""),
            (200, None, "D".into())
        );

        // A moved domain: 301 to the first domain, same path and query, same scheme.
        assert_eq!(
            get(http, "old.test:8080", "/p/q?x=1&y=2"),
            (301, Some("http://new.test/p/q?x=1&y=2".into()), "-".into())
        );
        assert_eq!(
            tls_get(https, "old.test", "/p?x=1", &[]),
            (301, Some("https://new.test/p?x=1".into()), "-".into())
        );
        assert_eq!(get(http, "new.test", "/p"), (200, None, "C".into()));

        // Plain HTTP refused, TLS served.
        assert_eq!(get(http, host, "/secure").0, 403);
        assert_eq!(
            tls_get(https, host, "/secure", &[]),
            (200, None, "D".into())
        );

        // Behind a load balancer: redirect when it says it took plain HTTP.
        let lb_http = "X-Forwarded-Proto: http\r\n";
        let lb_https = "X-Forwarded-Proto: https\r\n";
        assert_eq!(
            request(http, "GET", "shop.test", "/lb/cart?id=1", lb_http),
            (
                302,
                Some("https://shop.test/lb/cart?id=1".into()),
                "-".into()
            )
        );
        assert_eq!(
            request(http, "GET", host, "/lb", lb_https),
            (200, None, "E".into())
        );
        assert_eq!(get(http, host, "/lb"), (200, None, "E".into()));
        // The nearest proxy's value (the last) decides.
        assert_eq!(
            request(
                http,
                "GET",
                host,
                "/lb",
                "X-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n"
            )
            .0,
            302
        );
        // ... and unless it says HTTPS.
        assert_eq!(
            request(http, "GET", "shop.test", "/lb2", "").1,
            Some("https://shop.test/lb2".into())
        );
        assert_eq!(request(http, "GET", host, "/lb2", lb_http).0, 302);
        assert_eq!(
            request(http, "GET", host, "/lb2", lb_https),
            (200, None, "F".into())
        );
    }
}

#[test]
fn routes_yaml_rules_with_real_traffic() {
    require_tools();
    let stand = Stand::new();
    let server = |name: &str| format!("    servers: [\"127.0.0.1:{}\"]\n", stand.port(name));
    let plain = format!(
        "  - service: api\n    port: 80\n    paths: [/api]\n{}  - service: site\n    port: 80\n    domains: [new.test]\n{}",
        server("A"),
        server("C")
    );
    let remote = GitRemote::new();
    let first = remote.push(&stand.routes_yaml(&plain));
    let capstan = serve_git(&remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, &first);
    // Without the rules: nothing is excluded, redirected or refused.
    assert_eq!(
        get(stand.http, "localhost", "/api/internal/x"),
        (200, None, "A".into())
    );
    assert_eq!(get(stand.http, "old.test", "/p").0, 503);
    assert_eq!(request(stand.http, "PUT", "localhost", "/api/x", "").0, 200);

    let rules = format!(
        concat!(
            "  - service: api\n    port: 80\n    paths: [/api]\n    exclude_paths: [/api/internal]\n    allowed_methods: [GET, POST]\n{}",
            "  - service: fallback\n    port: 80\n    default_backend: true\n{}",
            "  - service: site\n    port: 80\n    domains: [new.test]\n    redirect_from: [old.test]\n{}",
            "  - service: secure\n    port: 80\n    paths: [/secure]\n    deny_http: true\n{}",
            "  - service: ro\n    port: 80\n    paths: [/ro]\n    denied_methods: [DELETE]\n{}",
            "  - service: lb\n    port: 80\n    paths: [/lb]\n    https_only: true\n    https_redirect_when: x_forwarded_proto_http\n{}",
            "  - service: lb2\n    port: 80\n    paths: [/lb2]\n    https_only: true\n    https_redirect_when: x_forwarded_proto_not_https\n{}",
        ),
        server("A"),
        server("B"),
        server("C"),
        server("D"),
        server("D"),
        server("E"),
        server("F")
    );
    let second = remote.push(&stand.routes_yaml(&rules));
    assert_eq!(
        http_post(capstan.api_port, "/v1/webhook/git", "{}"),
        Some(202)
    );
    wait_applied(&capstan, &second);
    stand.check_traffic();

    // `capstan diff` names the new fields.
    let work = remote.dir.path().join("work");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args([
            "diff", "--base", &first, "--head", &second, "--format", "json", "--repo",
        ])
        .arg(&work)
        .output()
        .expect("capstan diff runs");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&output.stderr)));
    let fields: Vec<&str> = report["routes"]["routes"]
        .as_array()
        .or_else(|| report["routes"].as_array())
        .unwrap_or_else(|| panic!("{report:#}"))
        .iter()
        .flat_map(|r| r["fields"].as_array().into_iter().flatten())
        .filter_map(|f| f["field"].as_str())
        .collect();
    for field in ["exclude_paths", "allowed_methods", "redirect_from"] {
        assert!(
            fields.contains(&field),
            "{field} not in {fields:?}\n{report:#}"
        );
    }
}

#[test]
fn dfp_api_rules_with_real_traffic() {
    require_tools();
    let stand = Stand::new();
    let remote = GitRemote::new();
    let first = remote.push(&stand.routes_yaml("  []\n"));
    let capstan = serve_git(&remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, &first);

    let reconfigure = |query: String| -> serde_json::Value {
        let (code, body) = capstan.get(&format!("/v1/docker-flow-proxy/reconfigure?{query}"));
        let answer: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        assert_eq!(code, 200, "{query}: {answer:#}");
        answer
    };
    let at = |name: &str| format!("port={}&outboundHostname=127.0.0.1", stand.port(name));

    let api = reconfigure(format!(
        "serviceName=api&servicePath=/api&{}&servicePathExclude=/api/internal&allowedMethods=GET,POST",
        at("A")
    ));
    assert_eq!(
        api["ServiceDest"][0]["ServicePathExclude"],
        serde_json::json!(["/api/internal"])
    );
    assert_eq!(
        api["ServiceDest"][0]["AllowedMethods"],
        serde_json::json!(["GET", "POST"])
    );
    let fallback = reconfigure(format!(
        "serviceName=fallback&servicePath=/fallback&{}&isDefaultBackend=true",
        at("B")
    ));
    assert_eq!(fallback["IsDefaultBackend"], true);
    let site = reconfigure(format!(
        "serviceName=site&serviceDomain=new.test&redirectFromDomain=old.test&{}",
        at("C")
    ));
    assert_eq!(
        site["ServiceDest"][0]["RedirectFromDomain"],
        serde_json::json!(["old.test"])
    );
    // Two destinations of one service: TLS only on /secure, DELETE refused on /ro.
    let secure = reconfigure(format!(
        "serviceName=secure&{}&servicePath.1=/secure&denyHttp.1=true&servicePath.2=/ro&deniedMethods.2=DELETE",
        at("D")
    ));
    assert_eq!(secure["ServiceDest"][0]["DenyHttp"], true);
    assert_eq!(
        secure["ServiceDest"][1]["DeniedMethods"],
        serde_json::json!(["DELETE"])
    );
    let lb = reconfigure(format!(
        "serviceName=lb&servicePath=/lb&{}&redirectWhenHttpProto=true",
        at("E")
    ));
    assert_eq!(
        (
            lb["RedirectWhenHttpProto"].as_bool(),
            lb["HttpsOnly"].as_bool()
        ),
        (Some(true), Some(false))
    );
    let lb2 = reconfigure(format!(
        "serviceName=lb2&servicePath=/lb2&{}&redirectUnlessHttpsProto=true",
        at("F")
    ));
    assert_eq!(lb2["RedirectUnlessHttpsProto"], true);
    stand.check_traffic();

    // A second default backend is refused, naming the parameter and the route that is one.
    let (code, body) = capstan.get(&format!(
        "/v1/docker-flow-proxy/reconfigure?serviceName=other&servicePath=/other&{}&isDefaultBackend=true",
        at("A")
    ));
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("isDefaultBackend")
            && body.contains(&format!("fallback:{}", stand.port("B"))),
        "{body}"
    );
    // Removing the default backend's service: unmatched requests find none.
    let (code, _) = capstan.get("/v1/docker-flow-proxy/remove?serviceName=fallback");
    assert_eq!(code, 200);
    wait_until("no default backend", Duration::from_secs(20), || {
        get(stand.http, "localhost", "/nowhere").0 == 503
    });
}
