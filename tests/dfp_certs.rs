//! Certificates end to end: Docker Flow Proxy's `PUT /cert`, `GET /certs`
//! and `serviceCert`, and routes.yaml's `certificate_dirs`, against a real
//! `capstan serve`, a real HAProxy and real TLS clients (curl, openssl).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

/// routes.yaml: route `/a` to `backend`, HTTPS on `https` with no
/// certificate of its own; `extra_https` is more of `defaults.https`.
fn routes(http: u16, https: u16, backend: &Backend, extra_https: &str) -> String {
    routes_yaml(http, &route("a", "/a", &backend.address())).replace(
        "defaults:\n",
        &format!("defaults:\n  https:\n    port: {https}\n{extra_https}"),
    )
}

/// An HTTP request with a body, on a new connection: (status, JSON answer).
fn send(capstan: &Capstan, method: &str, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let output = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--max-time",
            "60",
            "-X",
            method,
            "--data-binary",
            "@-",
        ])
        .arg(format!("{}{path}", capstan.url()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(body)?;
            child.wait_with_output()
        })
        .expect("curl runs");
    let response = String::from_utf8_lossy(&output.stdout).to_string();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no answer: {response}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {response}"));
    (status, json)
}

fn put_cert(capstan: &Capstan, name: &str, pem: &[u8]) -> (u16, serde_json::Value) {
    send(
        capstan,
        "PUT",
        &format!("/v1/docker-flow-proxy/cert?certName={name}"),
        pem,
    )
}

/// The serial number and subject of the certificate HAProxy presents on
/// `port` for the TLS server name `sni`.
fn served(port: u16, sni: &str) -> String {
    let handshake = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            sni,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    describe(&handshake.stdout)
}

/// `serial=... subject=...` of the first certificate in `pem`.
fn describe(pem: &[u8]) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-subject"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(pem)?;
            child.wait_with_output()
        })
        .expect("openssl runs");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .replace('\n', " ")
}

fn certificate(dir: &Path, file: &str, names: &[&str]) -> Vec<u8> {
    std::fs::read(self_signed_pem(dir, file, names)).unwrap()
}

fn wait_served(port: u16, sni: &str, expected: &str) {
    let mut last = String::new();
    wait_until(
        &format!("{expected} served for {sni}"),
        Duration::from_secs(20),
        || {
            last = served(port, sni);
            last == expected
        },
    );
}

#[test]
fn an_uploaded_certificate_serves_at_once_and_is_replaced_without_a_reload() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let (a, http, https) = (Backend::start("A"), free_port(), free_port());
    let remote = GitRemote::new();
    let commit = remote.push(&routes(http, https, &a, ""));
    let mut capstan = serve_git(&remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, &commit);
    // No certificate yet: no HTTPS listener.
    assert_eq!(https_get(https, "/a", "a.test", &[]), None);

    let first = certificate(dir.path(), "a1.pem", &["a.test"]);
    let reloads = capstan.haproxy_reloads();
    let (code, answer) = put_cert(&capstan, "a.test", &first);
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(answer["Status"], "OK");
    assert_eq!(answer["Certs"][0]["ProxyServiceName"], "a.test");
    assert_eq!(answer["Certs"][0]["Served"], true, "{answer:#}");
    // The answer came once HAProxy serves it: the first certificate opened
    // the HTTPS listener, which takes one reload.
    assert_eq!(served(https, "a.test"), describe(&first));
    assert_eq!(capstan.haproxy_reloads(), reloads + 1);
    let (status, response) = https_get(https, "/a", "a.test", &[]).expect("HTTPS answers");
    assert_eq!(status, 200, "{response}");
    assert!(response.ends_with("A /a"), "{response}");

    // A renewal (new serial) and a second name: runtime API only.
    let reloads = capstan.haproxy_reloads();
    let renewed = certificate(dir.path(), "a2.pem", &["a.test"]);
    assert_ne!(describe(&renewed), describe(&first));
    let (code, answer) = put_cert(&capstan, "a.test", &renewed);
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(served(https, "a.test"), describe(&renewed));
    let b = certificate(dir.path(), "b.pem", &["b.test"]);
    let (code, answer) = put_cert(&capstan, "b.test", &b);
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(served(https, "b.test"), describe(&b));
    assert_eq!(served(https, "a.test"), describe(&renewed));
    assert_eq!(
        capstan.haproxy_reloads(),
        reloads,
        "no reload for a renewal or a new name"
    );

    // Listed as drift from git, without a key.
    let certs = capstan.status()["certificates"].clone();
    let names: Vec<&str> = certs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.test", "b.test"], "{certs:#}");
    assert_eq!(certs[0]["source"]["kind"], "uploaded");
    assert_eq!(certs[0]["served"]["subject"], "/CN=a.test");
    let (code, listing) = capstan.get("/v1/docker-flow-proxy/certs");
    assert_eq!(code, 200);
    let listing: serde_json::Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(listing["Status"], "OK");
    let content = listing["Certs"][0]["CertContent"].as_str().unwrap();
    assert!(
        content.starts_with("-----BEGIN CERTIFICATE-----"),
        "{listing:#}"
    );
    assert!(!listing.to_string().contains("PRIVATE"), "{listing:#}");
    assert!(!capstan.status().to_string().contains("PRIVATE"));
    let listed = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["overrides", "list", "--url", &capstan.url()])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listed
            .contains("certificate a.test (uploaded, not in git): serves /CN=a.test (DNS:a.test)"),
        "{listed}"
    );

    // capstan restarts: nothing to redo, the renewal still serves.
    capstan.restart();
    wait_until("in sync after the restart", Duration::from_secs(20), || {
        capstan.status()["in_sync"] == true
    });
    assert_eq!(capstan.haproxy_reloads(), reloads);
    assert_eq!(served(https, "a.test"), describe(&renewed));
    // HAProxy itself starts again from the files: the renewal was written too.
    let pid = std::fs::read_to_string(capstan.state_dir.join("run/haproxy.pid")).unwrap();
    Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    wait_served(https, "a.test", &describe(&renewed));
    wait_served(https, "b.test", &describe(&b));

    // Deleting one: the other serves as the default, still without a reload.
    let reloads = capstan.haproxy_reloads();
    let (code, answer) = send(
        &capstan,
        "DELETE",
        "/v1/docker-flow-proxy/cert?certName=b.test",
        b"",
    );
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(served(https, "b.test"), describe(&renewed));
    assert_eq!(capstan.haproxy_reloads(), reloads);
    assert!(!capstan.state_dir.join("certs/b.test.pem").exists());
}

#[test]
fn bad_certificates_are_refused_with_json_and_nothing_is_stored() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let a = certificate(dir.path(), "a.pem", &["a.test"]);
    let b = certificate(dir.path(), "b.pem", &["b.test"]);
    let text = |pem: &[u8]| String::from_utf8(pem.to_vec()).unwrap();
    let block = |pem: &str, label: &str| {
        let start = pem.find(&format!("-----BEGIN {label}")).unwrap();
        let end = pem.find(&format!("-----END {label}-----")).unwrap() + label.len() + 14;
        pem[start..end].to_string()
    };
    let mismatched = format!(
        "{}\n{}\n",
        block(&text(&a), "CERTIFICATE"),
        block(&text(&b), "PRIVATE KEY")
    );
    let one = OneRoute::start();
    let capstan = &one.capstan;
    let cases: Vec<(String, Vec<u8>, u16, &str)> = vec![
        (
            "a.test".into(),
            b"hello world".to_vec(),
            400,
            "holds no PEM block",
        ),
        (
            "a.test".into(),
            block(&text(&a), "CERTIFICATE").into_bytes(),
            400,
            "holds no private key",
        ),
        (
            "a.test".into(),
            mismatched.into_bytes(),
            400,
            "inconsistencies between private key and certificate",
        ),
        ("a.test".into(), Vec::new(), 400, "Body is empty"),
        ("..%2Fetc%2Fx".into(), a.clone(), 400, "certName"),
        ("a%20b".into(), a.clone(), 400, "certName"),
        (
            "a.test&distribute=true&x=1".into(),
            a.clone(),
            400,
            "unsupported parameter(s): x",
        ),
        ("a.test".into(), vec![b'A'; 300 * 1024], 413, "larger than"),
    ];
    for (name, body, expected, words) in cases {
        let (code, answer) = put_cert(capstan, &name, &body);
        assert_eq!(code, expected, "{name}: {answer:#}");
        assert_eq!(answer["Status"], "NOK", "{answer:#}");
        let message = answer["Message"].as_str().unwrap();
        assert!(message.contains(words), "{name}: {message}");
        assert!(!message.contains("/tls-check/"), "{message}");
    }
    let (code, answer) = send(capstan, "PUT", "/v1/docker-flow-proxy/cert", &a);
    assert_eq!(
        (code, answer["Message"].as_str()),
        (400, Some("Query parameter certName is mandatory"))
    );
    let stored: Vec<_> = std::fs::read_dir(capstan.state_dir.join("certs"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(stored.is_empty(), "{stored:?}");
    assert_eq!(capstan.haproxy_reloads(), 0, "nothing was applied");
}

#[test]
fn every_unknown_endpoint_answers_json() {
    require_tools();
    let one = OneRoute::start();
    let capstan = &one.capstan;
    for (method, path, code) in [
        ("GET", "/v1/docker-flow-proxy/nope", 404),
        ("PUT", "/v1/docker-flow-proxy/metrics-typo", 404),
        ("GET", "/v1/nope", 404),
        ("GET", "/dashboard", 404),
        ("GET", "/v1/docker-flow-proxy/cert", 405),
        ("POST", "/v1/docker-flow-proxy/certs", 405),
        ("POST", "/v1/status", 405),
    ] {
        let (status, answer) = send(capstan, method, path, b"");
        assert_eq!(status, code, "{method} {path}: {answer:#}");
        assert_eq!(answer["Status"], "NOK", "{answer:#}");
        assert!(
            answer["Message"].as_str().unwrap().contains(path),
            "{answer:#}"
        );
    }
}

#[test]
fn docker_secrets_named_cert_are_served_and_follow_changes_without_a_reload() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let a = certificate(dir.path(), "a.pem", &["a.test"]);
    std::fs::write(secrets.join("cert-a.test"), &a).unwrap();
    std::fs::write(secrets.join("git-token"), "ghp_not-a-certificate").unwrap();
    std::fs::write(secrets.join("cert-broken"), "not a certificate").unwrap();
    let (backend, http, https) = (Backend::start("A"), free_port(), free_port());
    let remote = GitRemote::new();
    let dirs = format!(
        "    certificate_dirs:\n      - path: {}\n        prefixes: [cert-, cert_]\n",
        secrets.display()
    );
    let commit = remote.push(&routes(http, https, &backend, &dirs));
    let capstan = serve_git(&remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, &commit);
    assert_eq!(served(https, "a.test"), describe(&a));
    let (status, response) = https_get(https, "/a", "a.test", &[]).expect("HTTPS answers");
    assert_eq!(
        (status, response.ends_with("A /a")),
        (200, true),
        "{response}"
    );
    let warnings = capstan.status()["warnings"].to_string();
    assert!(
        warnings.contains("cert-broken: skipped: holds no PEM block"),
        "{warnings}"
    );
    assert!(!warnings.contains("git-token"), "{warnings}");

    // A new secret, and a renewal of the first: served at the next reconcile.
    let reloads = capstan.haproxy_reloads();
    let b = certificate(dir.path(), "b.pem", &["b.test"]);
    std::fs::write(secrets.join("cert_b.test"), &b).unwrap();
    let renewed = certificate(dir.path(), "a2.pem", &["a.test"]);
    std::fs::write(secrets.join("cert-a.test"), &renewed).unwrap();
    assert_eq!(
        http_post(capstan.api_port, "/v1/webhook/git", "{}"),
        Some(202)
    );
    wait_served(https, "b.test", &describe(&b));
    wait_served(https, "a.test", &describe(&renewed));
    assert_eq!(capstan.haproxy_reloads(), reloads);
}

/// `s` as a query value: every byte but unreserved ones percent-encoded.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn service_cert_stores_the_certificate_under_the_service_domain() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let (backend, http, https) = (Backend::start("C"), free_port(), free_port());
    let remote = GitRemote::new();
    let commit = remote.push(&routes(http, https, &Backend::start("A"), ""));
    let capstan = serve_git(&remote, &["--poll-interval", "1h"]);
    wait_applied(&capstan, &commit);
    let c = certificate(dir.path(), "c.pem", &["c.test"]);
    // Labels carry newlines as `\n`: DFP turned them back into newlines.
    let label_style = String::from_utf8(c.clone()).unwrap().replace('\n', "\\n");
    let (code, answer) = send(
        &capstan,
        "GET",
        &format!(
            "/v1/docker-flow-proxy/reconfigure?serviceName=c&serviceDomain=c.test&port={}&outboundHostname=127.0.0.1&serviceCert={}",
            backend.port,
            query_value(&label_style)
        ),
        b"",
    );
    assert_eq!(code, 200, "{answer:#}");
    assert_eq!(served(https, "c.test"), describe(&c));
    let (status, response) = https_get(https, "/x", "c.test", &[]).expect("HTTPS answers");
    assert_eq!(
        (status, response.ends_with("C /x")),
        (200, true),
        "{response}"
    );
    assert!(capstan.state_dir.join("certs/c.test.pem").exists());

    // A bad one is a 400 naming the parameter, and changes nothing.
    let (code, answer) = send(
        &capstan,
        "GET",
        &format!(
            "/v1/docker-flow-proxy/reconfigure?serviceName=d&serviceDomain=d.test&port=80&serviceCert={}",
            query_value("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        ),
        b"",
    );
    assert_eq!(code, 400, "{answer:#}");
    assert!(
        answer["Message"].as_str().unwrap().contains("serviceCert"),
        "{answer:#}"
    );
    assert!(capstan.status()["overrides"].to_string().contains("\"c\""));
    assert!(!capstan.status()["overrides"].to_string().contains("\"d\""));
}

#[test]
fn uploading_and_deleting_need_the_api_credentials_when_configured() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let remote = GitRemote::new();
    let commit = remote.push(&routes(free_port(), free_port(), &Backend::start("A"), ""));
    let capstan = serve_git(
        &remote,
        &[
            "--poll-interval",
            "1h",
            "--api-token-file",
            token.to_str().unwrap(),
        ],
    );
    wait_applied(&capstan, &commit);
    let a = certificate(dir.path(), "a.pem", &["a.test"]);
    let (code, answer) = put_cert(&capstan, "a.test", &a);
    assert_eq!(
        (code, answer["Status"].as_str()),
        (401, Some("NOK")),
        "{answer:#}"
    );
    let (code, _) = send(
        &capstan,
        "DELETE",
        "/v1/docker-flow-proxy/cert?certName=a.test",
        b"",
    );
    assert_eq!(code, 401);
    assert!(!capstan.state_dir.join("certs/a.test.pem").exists());
    // Listing shows no key: open, as in Docker Flow Proxy.
    assert_eq!(capstan.get("/v1/docker-flow-proxy/certs").0, 200);
}
