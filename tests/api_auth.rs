//! Password hashes in the API: a real `capstan serve` shows them only to
//! clients with the API's credentials, and fingerprints when it has none;
//! `capstan diff --live` sees no change either way.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use support::*;

const GIT_HASH: &str = "$6$saltsaltsalt$GITgitGITgitGITgitGITgitGITgitGITgit";
const DFP_HASH: &str = "$2y$05$abcdefghijklmnopqrstuv";
const TOKEN: &str = "s3cret";
/// Where the API shows hashes, and which ones.
const HASH_BEARING: [(&str, &[&str]); 3] = [
    ("/v1/overrides", &[DFP_HASH]),
    ("/v1/live", &[GIT_HASH, DFP_HASH]),
    ("/v1/docker-flow-proxy/config", &[GIT_HASH, DFP_HASH]),
];

/// `hash <first 4 bytes of the SHA-256 of the hash, in hex>`, as `capstan diff` shows it.
fn fingerprint(hash: &str) -> String {
    let digest = Sha256::digest(hash.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("hash {hex}")
}

/// A GET with an optional bearer token: (status, body).
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (code, body)
}

/// A git userlist on a route, and a Docker-Flow-Proxy override with users:
/// capstan in sync with both. `extra`: more `capstan serve` arguments.
fn serve_userlists(token: Option<&str>, extra: &[&str]) -> (Capstan, GitRemote, Backend, Dns) {
    require_tools();
    let (a, dns, http) = (Backend::start("A"), Dns::start(&["b"]), free_port());
    let remote = GitRemote::new();
    let routes = routes_yaml(
        http,
        &format!(
            "{}    auth:\n      userlist: ops\n",
            route("a", "/a", &a.address())
        ),
    )
    .replace(
        "routes:\n",
        &format!(
            "  resolvers: [\"127.0.0.1:{}\"]\nuserlists:\n  ops:\n    - name: admin\n      password_hash: \"{GIT_HASH}\"\nroutes:\n",
            dns.port
        ),
    );
    remote.push(&routes);
    let url = remote.url();
    let mut args = vec!["--repo", url.as_str(), "--poll-interval", "1h"];
    args.extend_from_slice(extra);
    let capstan = Capstan::start(&args);
    let (code, body) = get(
        capstan.api_port,
        &format!(
            "/v1/docker-flow-proxy/reconfigure?serviceName=b&servicePath=/b&port=80&users=bob:{DFP_HASH}&usersPassEncrypted=true"
        ),
        token,
    );
    assert_eq!(code, 200, "{body}");
    wait_until("capstan in sync", Duration::from_secs(20), || {
        capstan.status()["in_sync"] == true
    });
    (capstan, remote, a, dns)
}

/// `capstan diff --live` of the remote's head against capstan, as JSON,
/// with `--token-file` when given: (exit code, report).
fn diff_live(capstan: &Capstan, repo: &Path, token_file: Option<&Path>) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_capstan"));
    command
        .args([
            "diff",
            "--live",
            &capstan.url(),
            "--format",
            "json",
            "--repo",
        ])
        .arg(repo)
        .env_remove("CAPSTAN_API_TOKEN_FILE");
    if let Some(file) = token_file {
        command.arg("--token-file").arg(file);
    }
    let output = command.output().expect("capstan diff runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

fn assert_no_change(code: Option<i32>, report: &str) {
    assert_eq!(code, Some(0), "{report}");
    let report: serde_json::Value = serde_json::from_str(report).expect("a JSON report");
    assert_eq!(report["routes"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["settings"], serde_json::json!([]), "{report:#}");
}

#[test]
fn with_a_token_hashes_are_shown_only_to_clients_that_send_it() {
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (capstan, remote, _a, _dns) = serve_userlists(
        Some(TOKEN),
        &["--api-token-file", token_file.to_str().unwrap()],
    );
    for (path, hashes) in HASH_BEARING {
        let (code, body) = get(capstan.api_port, path, None);
        assert_eq!(code, 401, "{path} without the token: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(answer["Status"], "NOK", "{path}");
        assert!(!body.contains('$'), "{path}: {body}");

        let (code, body) = get(capstan.api_port, path, Some(TOKEN));
        assert_eq!(code, 200, "{path} with the token: {body}");
        for hash in hashes {
            assert!(body.contains(hash), "{path} shows {hash}: {body}");
        }
    }
    let (code, status) = get(capstan.api_port, "/v1/status", None);
    assert_eq!(code, 200, "status stays open");
    assert!(
        !status.contains("$6$") && !status.contains("$2y$"),
        "{status}"
    );

    let repo = remote.dir.path().join("work");
    let (code, report) = diff_live(&capstan, &repo, Some(&token_file));
    assert_no_change(code, &report);
    let (code, report) = diff_live(&capstan, &repo, None);
    assert_eq!(code, Some(1), "without the token: {report}");
    assert!(report.contains("401"), "{report}");
}

#[test]
fn without_credentials_configured_hashes_are_shown_as_fingerprints() {
    let (capstan, remote, _a, _dns) = serve_userlists(None, &[]);
    for (path, hashes) in &HASH_BEARING[..2] {
        let (code, body) = get(capstan.api_port, path, None);
        assert_eq!(code, 200, "{path}: {body}");
        for marker in ["$6$", "$5$", "$2y$"] {
            assert!(!body.contains(marker), "{path} shows a hash: {body}");
        }
        for hash in *hashes {
            assert!(body.contains(&fingerprint(hash)), "{path}: {body}");
        }
    }
    // As Docker Flow Proxy did, the config stays open (README, HTTP API).
    assert_eq!(
        get(capstan.api_port, "/v1/docker-flow-proxy/config", None).0,
        200
    );

    let (code, report) = diff_live(&capstan, &remote.dir.path().join("work"), None);
    assert_no_change(code, &report);
}
