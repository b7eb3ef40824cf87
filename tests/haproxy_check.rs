//! Every table capstan ships, and a generated 10,000-route one, renders to a
//! config that the real HAProxy accepts (`haproxy -c`) without warnings or
//! alerts, except "could not resolve address": Swarm service names do not
//! resolve outside the cluster, which `default-server init-addr
//! last,libc,none` makes harmless.
//!
//! Needs `haproxy` (and `openssl`, for the HTTPS examples) on PATH:
//! `scripts/install-test-deps` installs them. Missing tools fail the tests;
//! they are never skipped.

#[path = "support/rendered.rs"]
mod rendered;
#[path = "support/table.rs"]
mod table;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capstan::model::validate::{self, load};
use capstan::model::{FilePath, RoutesFile};
use capstan::render::render;
use tempfile::TempDir;

const INSTALL_HINT: &str = "run scripts/install-test-deps (installs haproxy, openssl, socat, git)";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program args`, failing the test with the install hint when the
/// program is missing.
fn run(program: &str, args: &[&str]) -> std::process::Output {
    match Command::new(program).args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{program}` is not on PATH: {INSTALL_HINT}")
        }
        Err(e) => panic!("running {program}: {e}"),
    }
}

/// A self-signed certificate and its key in one PEM file, as HAProxy's `crt` wants.
struct Certificate {
    _dir: TempDir,
    pem: PathBuf,
}

fn self_signed_certificate() -> Certificate {
    let dir = TempDir::new().unwrap();
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    let output = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=capstan.test",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "openssl req failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pem = dir.path().join("site.pem");
    let mut both = std::fs::read(&cert).unwrap();
    both.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, both).unwrap();
    Certificate { _dir: dir, pem }
}

/// Points `defaults.https.certificates` (when set) at a real certificate:
/// `haproxy -c` loads it.
fn with_certificate(mut routes: RoutesFile, certificate: &Certificate) -> RoutesFile {
    if let Some(https) = routes.defaults.https.as_mut() {
        https.certificates = Some(FilePath(certificate.pem.to_str().unwrap().to_string()));
    }
    validate::check("routes.yaml", &routes).expect("still valid with the test certificate");
    routes
}

/// How long one `haproxy -c` may take before the test fails.
const HAPROXY_DEADLINE: Duration = Duration::from_secs(300);

/// `haproxy -c` on `routes` rendered (the config and its map files), as
/// [`haproxy_check_file`] judges it.
fn haproxy_check(label: &str, routes: &RoutesFile) -> Result<(), String> {
    let dir = TempDir::new().unwrap();
    let (file, _) = rendered::write_rendered(dir.path(), routes);
    haproxy_check_file(label, &file)
}

/// `haproxy -c` on a config file: Err with everything HAProxy said when it
/// fails or says more than "could not resolve address".
///
/// Service names are looked up through libc when HAProxy loads the config.
/// They never resolve here, and a DNS server that drops queries would make
/// each lookup wait 5 s: `RES_OPTIONS` caps that at one 1-second try.
fn haproxy_check_file(label: &str, file: &Path) -> Result<(), String> {
    let config = std::fs::read_to_string(file).unwrap();
    let dir = TempDir::new().unwrap();
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let started = Instant::now();
    let mut child = match Command::new("haproxy")
        .args(["-c", "-f", file.to_str().unwrap()])
        .env("RES_OPTIONS", "timeout:1 attempts:1")
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`haproxy` is not on PATH: {INSTALL_HINT}")
        }
        Err(e) => panic!("running haproxy: {e}"),
    };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HAPROXY_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{label}: haproxy -c still running after {HAPROXY_DEADLINE:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("[WARNING]") || l.contains("[ALERT]"))
        .filter(|l| !l.contains("could not resolve address"))
        .collect();
    if status.success() && unexpected.is_empty() {
        return Ok(());
    }
    let numbered: String = config
        .lines()
        .enumerate()
        .filter(|(i, _)| {
            unexpected
                .iter()
                .any(|u| u.contains(&format!(":{}]", i + 1)))
        })
        .map(|(i, l)| format!("  {:>6}: {l}\n", i + 1))
        .collect();
    Err(format!(
        "{label}: haproxy -c exited with {status}; unexpected messages:\n{}\n{stdout}\nconfig lines named:\n{numbered}",
        unexpected.join("\n"),
    ))
}

fn load_file(path: &Path) -> RoutesFile {
    let text = std::fs::read_to_string(path).unwrap();
    load(&path.display().to_string(), &text)
        .unwrap_or_else(|d| panic!("{} is invalid:\n{d}", path.display()))
}

fn example_files() -> Vec<PathBuf> {
    let dir = repo().join("examples/routes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "only {} examples", files.len());
    files
}

#[test]
fn haproxy_is_installed() {
    let output = run("haproxy", &["-v"]);
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(
        version.starts_with("HAProxy version 2.") || version.starts_with("HA-Proxy version 2."),
        "unexpected `haproxy -v`: {version}"
    );
}

#[test]
fn root_routes_yaml_passes_haproxy_check() {
    let routes = load_file(&repo().join("routes.yaml"));
    let certificate = self_signed_certificate();
    haproxy_check("routes.yaml", &with_certificate(routes, &certificate)).unwrap();
}

#[test]
fn every_example_passes_haproxy_check() {
    let certificate = self_signed_certificate();
    let failures: Vec<String> = example_files()
        .iter()
        .filter_map(|path| {
            let routes = with_certificate(load_file(path), &certificate);
            haproxy_check(&path.display().to_string(), &routes).err()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The examples open with the modeline that gives editors the schema.
#[test]
fn every_example_names_the_schema() {
    for path in example_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../../schema/routes.schema.json\n"),
            "{} lacks the schema modeline",
            path.display()
        );
    }
    assert!(repo().join("schema/routes.schema.json").is_file());
}

/// A tiny deterministic generator (xorshift), so shuffles repeat run to run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

fn generated_routes() -> RoutesFile {
    let text = table::generated_table(10_000, Some("/etc/capstan/certs/site.pem"), 500);
    let routes =
        load("generated.yaml", &text).unwrap_or_else(|d| panic!("generated table invalid:\n{d}"));
    assert_eq!(routes.routes.len(), 10_000);
    routes
}

#[test]
fn ten_thousand_routes_pass_haproxy_check() {
    let certificate = self_signed_certificate();
    let routes = with_certificate(generated_routes(), &certificate);
    let config = render(&routes).to_string();
    // One per route, and the spare backends.
    assert_eq!(
        config.matches("\nbackend ").count(),
        10_000 + capstan::desired::SPARE_BACKENDS
    );
    assert!(config.matches("\nfrontend tcp_").count() == 1_000);
    haproxy_check("generated 10,000-route table", &routes).unwrap();
}

/// Order in routes.yaml never matters: a shuffled table (routes, and the
/// paths and domains of each) renders byte for byte the same.
#[test]
fn ten_thousand_routes_shuffled_render_identically() {
    let routes = generated_routes();
    let expected = render(&routes).with_maps_listed();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..3 {
        let mut shuffled = routes.clone();
        rng.shuffle(&mut shuffled.routes);
        for route in &mut shuffled.routes {
            rng.shuffle(&mut route.paths);
            rng.shuffle(&mut route.domains);
        }
        assert_ne!(
            shuffled.routes, routes.routes,
            "round {round} did not shuffle"
        );
        let config = render(&shuffled).with_maps_listed();
        if config != expected {
            let first = config
                .lines()
                .zip(expected.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "round {round}: rendering depends on order; first difference at line {}:\n  expected: {:?}\n  got:      {:?}",
                first + 1,
                expected.lines().nth(first),
                config.lines().nth(first)
            );
        }
    }
}

/// A missing tool fails the test with the way to install it; it never skips.
#[test]
#[should_panic(expected = "scripts/install-test-deps")]
fn a_missing_tool_fails_with_the_install_hint() {
    run("capstan-test-no-such-program", &["-v"]);
}

/// The check itself catches alerts and warnings, and lets the resolver one pass.
#[test]
fn haproxy_check_reports_anything_but_unresolved_names() {
    let dir = TempDir::new().unwrap();
    let haproxy_check = |label: &str, config: &str| {
        let file = dir.path().join(label);
        std::fs::write(&file, config).unwrap();
        haproxy_check_file(label, &file)
    };
    let timeouts = "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n    default-server init-addr last,libc,none\n";
    let fine = format!(
        "{timeouts}frontend f\n    bind 127.0.0.1:18080\n    default_backend b\nbackend b\n    server s capstan-test-unresolvable:80\n"
    );
    haproxy_check("unresolvable name", &fine).unwrap();

    let alert = format!("{timeouts}frontend f\n    bind 127.0.0.1:18080\n    no-such-keyword on\n");
    let error = haproxy_check("alert", &alert).unwrap_err();
    assert!(error.contains("[ALERT]"), "{error}");

    // No timeouts at all: HAProxy warns but exits 0.
    let warning = "frontend f\n    bind 127.0.0.1:18080\n    mode http\n    default_backend b\nbackend b\n    mode http\n    server s 127.0.0.1:80\n";
    let error = haproxy_check("warning", warning).unwrap_err();
    assert!(error.contains("[WARNING]"), "{error}");
}
