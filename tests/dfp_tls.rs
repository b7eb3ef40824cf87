//! TLS end to end, through routes.yaml and through the Docker-Flow-Proxy API:
//! `sni` routes (TLS passed through, routed by the client's server name),
//! TLS to backends (`backend_tls`, DFP's `sslVerifyNone`), and a second
//! backend for requests that came over HTTPS (`https_port`, DFP's
//! `httpsPort`). Real HAProxy, real TLS servers (HAProxy processes with
//! their own certificates), real clients (curl).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// A TLS server on loopback: an HAProxy of its own, presenting `pem`'s
/// certificate and answering every request with `<name> sni=<server name it
/// was asked for> <path>`.
struct TlsBackend {
    port: u16,
    child: Child,
    _config: tempfile::NamedTempFile,
}

impl TlsBackend {
    fn start(name: &str, pem: &Path) -> Self {
        let port = free_port();
        let config = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            config.path(),
            format!(
                "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
                 frontend tls\n    bind 127.0.0.1:{port} ssl crt {}\n    \
                 http-request return status 200 content-type text/plain lf-string \"{name} sni=%[ssl_fc_sni] %[path]\"\n",
                pem.display()
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(config.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        wait_until(
            &format!("TLS backend {name}"),
            Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        Self {
            port,
            child,
            _config: config,
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `names` in `dir`: (the PEM with its key,
/// for a server; the certificate alone, for a client that trusts it).
fn certificate(dir: &Path, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let pem = self_signed_pem(dir, file, names);
    (pem, dir.join(format!("{file}.crt")))
}

/// GET `https://<host>:<port><path>` through curl, trusting only `ca` and
/// checking the certificate against `host`: the body, or curl's complaint.
fn https_trusting(port: u16, host: &str, path: &str, ca: &Path) -> Result<String, String> {
    let output = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(ca)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).to_string())
    }
}

/// Waits until `https_trusting` answers `expected`.
fn wait_for_tls_answer(port: u16, host: &str, path: &str, ca: &Path, expected: &str) {
    let mut last = Err(String::new());
    wait_until(
        &format!("{host}:{port}{path} answering {expected:?}"),
        Duration::from_secs(20),
        || {
            last = https_trusting(port, host, path, ca);
            last.as_deref() == Ok(expected)
        },
    );
}

/// `text` (from [`routes_yaml`]) with HAProxy resolving names through `dns`.
fn with_resolvers(text: &str, dns: &Dns) -> String {
    text.replace(
        "defaults:\n",
        &format!("defaults:\n  resolvers: [\"127.0.0.1:{}\"]\n", dns.port),
    )
}

/// A routes.yaml on `http_port` without routes.
fn no_routes(http_port: u16) -> String {
    routes_yaml(http_port, "").replace("routes:\n", "routes: []\n")
}

/// `capstan serve` on `remote`, polling once an hour (only what the test triggers runs).
fn serve(remote: &GitRemote, commit: &str) -> Capstan {
    let capstan = serve_git(remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, commit);
    capstan
}

/// A DFP call: (status code, JSON answer).
fn dfp(capstan: &Capstan, query: &str) -> (u16, serde_json::Value) {
    let (code, body) = capstan.get(&format!("/v1/docker-flow-proxy/{query}"));
    let answer = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (code, answer)
}

fn sni_route(service: &str, listen: u16, domains: &str, server: &str) -> String {
    format!(
        "  - service: {service}\n    port: 443\n    mode: sni\n    listen_port: {listen}\n    domains: {domains}\n    servers: [\"{server}\"]\n"
    )
}

#[test]
fn sni_routes_pass_tls_through_to_the_backend_named_by_the_client() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let (a_pem, a_cert) = certificate(dir.path(), "a.pem", &["a.sni.test"]);
    let (b_pem, b_cert) = certificate(dir.path(), "b.pem", &["b.sni.test", "*.w.sni.test"]);
    let (a, b) = (
        TlsBackend::start("A", &a_pem),
        TlsBackend::start("B", &b_pem),
    );
    let (http, listen) = (free_port(), free_port());
    let remote = GitRemote::new();
    let commit = remote.push(&routes_yaml(
        http,
        &format!(
            "{}{}",
            sni_route("a", listen, "[a.sni.test]", &a.address()),
            sni_route("b", listen, "[b.sni.test, '*.w.sni.test']", &b.address())
        ),
    ));
    let capstan = serve(&remote, &commit);

    // Each name reaches its own server, which does the TLS handshake itself:
    // the client sees the backend's certificate, trusted for that name.
    assert_eq!(
        https_trusting(listen, "a.sni.test", "/x", &a_cert).as_deref(),
        Ok("A sni=a.sni.test /x")
    );
    assert_eq!(
        https_trusting(listen, "b.sni.test", "/y", &b_cert).as_deref(),
        Ok("B sni=b.sni.test /y")
    );
    assert_eq!(
        https_trusting(listen, "deep.w.sni.test", "/z", &b_cert).as_deref(),
        Ok("B sni=deep.w.sni.test /z")
    );
    // B's name does not get A's certificate, and an unknown name nothing.
    let wrong = https_trusting(listen, "b.sni.test", "/", &a_cert);
    assert!(wrong.is_err(), "{wrong:?}");
    assert_eq!(https_get(listen, "/", "c.sni.test", &[]), None);

    let config = std::fs::read_to_string(capstan.state_dir.join("haproxy.cfg")).unwrap();
    assert_eq!(
        config.matches(&format!("frontend sni_{listen}\n")).count(),
        1,
        "{config}"
    );
}

#[test]
fn sni_destinations_through_the_dfp_api() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let (a_pem, a_cert) = certificate(dir.path(), "a.pem", &["a.sni.test"]);
    let (b_pem, b_cert) = certificate(dir.path(), "b.pem", &["b.sni.test"]);
    let (a, b) = (
        TlsBackend::start("A", &a_pem),
        TlsBackend::start("B", &b_pem),
    );
    let dns = Dns::start(&["sni-a", "sni-b"]);
    let (http, listen) = (free_port(), free_port());
    let remote = GitRemote::new();
    let commit = remote.push(&with_resolvers(&no_routes(http), &dns));
    let capstan = serve(&remote, &commit);

    for (service, backend, name) in [("sni-a", &a, "a.sni.test"), ("sni-b", &b, "b.sni.test")] {
        let (code, answer) = dfp(
            &capstan,
            &format!(
                "reconfigure?serviceName={service}&port={}&reqMode=sni&srcPort={listen}&serviceDomain={name}",
                backend.port
            ),
        );
        assert_eq!(code, 200, "{answer:#}");
        assert_eq!(answer["ReqMode"], "sni");
        assert_eq!(answer["ServiceDest"][0]["SrcPort"], listen);
        assert_eq!(answer["ServiceDest"][0]["ServiceDomain"][0], name);
    }
    wait_for_tls_answer(listen, "a.sni.test", "/x", &a_cert, "A sni=a.sni.test /x");
    wait_for_tls_answer(listen, "b.sni.test", "/y", &b_cert, "B sni=b.sni.test /y");

    // A name another service on the port has, a port the http frontend
    // has, no name at all, DFP's raw SNI ACL: each a 400 naming the parameter.
    for (query, param) in [
        (
            format!(
                "serviceName=sni-c&port=1&reqMode=sni&srcPort={listen}&serviceDomain=a.sni.test"
            ),
            "serviceDomain",
        ),
        (
            format!("serviceName=sni-c&port=1&reqMode=sni&srcPort={http}&serviceDomain=c.sni.test"),
            "srcPort",
        ),
        (
            format!("serviceName=sni-c&port=1&reqMode=sni&srcPort={listen}"),
            "serviceDomain",
        ),
        (
            format!(
                "serviceName=sni-c&port=1&reqMode=sni&srcPort={listen}&servicePath=c.&pathType=req_ssl_sni%20-i%20-m%20beg"
            ),
            "pathType",
        ),
    ] {
        let (code, answer) = dfp(&capstan, &format!("reconfigure?{query}"));
        assert_eq!(code, 400, "{query}: {answer:#}");
        let message = answer["Message"].as_str().unwrap();
        assert!(message.contains(param), "{query}: {message}");
    }
    // a.sni.test still reaches A.
    assert_eq!(
        https_trusting(listen, "a.sni.test", "/", &a_cert).as_deref(),
        Ok("A sni=a.sni.test /")
    );

    let (code, _) = dfp(&capstan, "remove?serviceName=sni-a");
    assert_eq!(code, 200);
    wait_until("a.sni.test unrouted", Duration::from_secs(20), || {
        https_trusting(listen, "a.sni.test", "/", &a_cert).is_err()
    });
    assert_eq!(
        https_trusting(listen, "b.sni.test", "/", &b_cert).as_deref(),
        Ok("B sni=b.sni.test /")
    );
}

#[test]
fn backend_tls_reaches_tls_servers_and_verifies_them_when_asked() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let (server_pem, server_cert) = certificate(dir.path(), "server.pem", &["tls.internal"]);
    let (_, other_cert) = certificate(dir.path(), "other.pem", &["tls.internal"]);
    let server = TlsBackend::start("T", &server_pem);
    let http = free_port();
    // Health-checked (over TLS, as the traffic) when verifying.
    let route = |service: &str, tls: &str| {
        let mut route = support::route(service, &format!("/{service}"), &server.address());
        if !tls.is_empty() {
            route.push_str(&format!("    backend_tls: {tls}\n"));
        }
        if tls.contains("required") {
            route.push_str("    health_check: {}\n");
        }
        route
    };
    let routes = [
        route("plain", ""),
        route("none", "{verify: none}"),
        route(
            "trusted",
            &format!(
                "{{verify: required, ca_file: {}, sni: tls.internal}}",
                server_cert.display()
            ),
        ),
        route(
            "untrusted",
            &format!(
                "{{verify: required, ca_file: {}, sni: tls.internal}}",
                other_cert.display()
            ),
        ),
        route(
            "misnamed",
            &format!(
                "{{verify: required, ca_file: {}, sni: other.internal}}",
                server_cert.display()
            ),
        ),
    ]
    .concat();
    let remote = GitRemote::new();
    let commit = remote.push(&routes_yaml(http, &routes));
    let _capstan = serve(&remote, &commit);

    assert_eq!(
        http_get(http, "/none/a", "localhost"),
        Some((200, "T sni= /none/a".to_string()))
    );
    // Verified: the certificate chains to the CA file and is for the name sent.
    assert_eq!(
        http_get(http, "/trusted/a", "localhost"),
        Some((200, "T sni=tls.internal /trusted/a".to_string()))
    );
    // Plain HTTP to a TLS server, a certificate the CA file does not vouch
    // for, a certificate for another name: HAProxy uses no such server.
    for path in ["/plain/a", "/untrusted/a", "/misnamed/a"] {
        let answer = http_get(http, path, "localhost").map(|(code, _)| code);
        assert!(matches!(answer, Some(502 | 503)), "{path}: {answer:?}");
    }
    assert_eq!(
        http_get(http, "/untrusted/a", "localhost").map(|(code, _)| code),
        Some(503)
    );
}

#[test]
fn ssl_verify_none_through_the_dfp_api() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = certificate(dir.path(), "server.pem", &["tls-svc"]);
    let server = TlsBackend::start("T", &pem);
    let dns = Dns::start(&["tls-svc"]);
    let http = free_port();
    let remote = GitRemote::new();
    let commit = remote.push(&with_resolvers(&no_routes(http), &dns));
    let capstan = serve(&remote, &commit);

    let (code, answer) = dfp(
        &capstan,
        &format!(
            "reconfigure?serviceName=tls-svc&port={}&servicePath=/tls&sslVerifyNone=true",
            server.port
        ),
    );
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(answer["SslVerifyNone"], true);
    assert_eq!(answer["ServiceDest"][0]["SslVerifyNone"], true);
    wait_for_backend(http, "/tls/x", "T");

    // The same service without it speaks plain HTTP to a TLS server.
    let (code, answer) = dfp(
        &capstan,
        &format!(
            "reconfigure?serviceName=tls-svc&port={}&servicePath=/tls&sslVerifyNone=false",
            server.port
        ),
    );
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(answer["SslVerifyNone"], false);
    let answer = http_get(http, "/tls/x", "localhost").map(|(code, _)| code);
    assert!(matches!(answer, Some(502 | 503)), "{answer:?}");
}

#[test]
fn https_port_serves_requests_that_came_over_https() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let site = self_signed_pem(dir.path(), "site.pem", &["app.test"]);
    let (plain, secure) = (Backend::start("plain"), Backend::start("secure"));
    let (http, https) = (free_port(), free_port());
    let routes = format!(
        "  - service: app\n    port: {}\n    https_port: {}\n    paths: [/app]\n    servers: [\"127.0.0.1:{}\"]\n{}",
        plain.port,
        secure.port,
        plain.port,
        route("other", "/other", &plain.address())
    );
    let remote = GitRemote::new();
    let commit = remote.push(&with_https(
        &routes_yaml(http, &routes),
        https,
        &site.display().to_string(),
    ));
    let _capstan = serve(&remote, &commit);

    assert_eq!(
        http_get(http, "/app/x", "app.test"),
        Some((200, "plain /app/x".to_string()))
    );
    let (code, response) = https_get(https, "/app/x", "app.test", &[]).unwrap();
    assert_eq!(code, 200, "{response}");
    assert!(response.ends_with("\r\n\r\nsecure /app/x"), "{response}");
    // A route without `https_port` is the same over both.
    let (code, response) = https_get(https, "/other/x", "app.test", &[]).unwrap();
    assert!(
        code == 200 && response.ends_with("\r\n\r\nplain /other/x"),
        "{response}"
    );
}

#[test]
fn https_port_through_the_dfp_api() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let site = self_signed_pem(dir.path(), "site.pem", &["app.test"]);
    let (plain, secure) = (Backend::start("plain"), Backend::start("secure"));
    let dns = Dns::start(&["app"]);
    let (http, https) = (free_port(), free_port());
    let remote = GitRemote::new();
    let commit = remote.push(&with_resolvers(
        &with_https(&no_routes(http), https, &site.display().to_string()),
        &dns,
    ));
    let capstan = serve(&remote, &commit);

    let (code, answer) = dfp(
        &capstan,
        &format!(
            "reconfigure?serviceName=app&port={}&httpsPort={}&servicePath=/app",
            plain.port, secure.port
        ),
    );
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(answer["HttpsPort"], secure.port);
    assert_eq!(answer["ServiceDest"][0]["HttpsPort"], secure.port);
    wait_for_backend(http, "/app/x", "plain");
    wait_until("https to the https port", Duration::from_secs(20), || {
        https_get(https, "/app/x", "app.test", &[])
            .is_some_and(|(code, r)| code == 200 && r.ends_with("\r\n\r\nsecure /app/x"))
    });
    let (code, answer) = dfp(
        &capstan,
        "reconfigure?serviceName=app&port=80&httpsPort=x&servicePath=/app",
    );
    assert_eq!(code, 400, "{answer:#}");
    assert!(
        answer["Message"].as_str().unwrap().contains("httpsPort"),
        "{answer:#}"
    );
}
