//! Shared test rig: real HTTP backends on loopback, real git remotes, and
//! real `capstan serve` processes driving a real HAProxy.
#![allow(dead_code)] // each test binary uses part of the rig

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `capstan <args>` run to its end: (exit code, stdout, stderr).
pub fn run_capstan(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(args)
        .output()
        .expect("capstan runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// Fails loudly when the tests' real dependencies are missing.
pub fn require_tools() {
    for tool in ["haproxy", "git"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{tool}` is not installed: run scripts/install-test-deps"
        );
    }
}

/// A port nobody listens on right now, and not handed out before in this
/// test process: the kernel may give a port just released again, and two
/// listeners of one test (HAProxy's and capstan's) must not share it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// An HTTP backend on loopback that answers every request with its name.
pub struct Backend {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Requests received so far (counted before answering).
    received: Arc<AtomicUsize>,
}

impl Backend {
    pub fn start(name: &str) -> Self {
        Self::start_on(0, name)
    }

    /// On a given port (0: any free one).
    pub fn start_on(port: u16, name: &str) -> Self {
        Self::listen(port, name, false, Duration::ZERO)
    }

    /// A backend that waits `delay` before answering each request: a slow
    /// request stays in flight that long.
    pub fn start_slow(name: &str, delay: Duration) -> Self {
        Self::listen(0, name, false, delay)
    }

    /// A backend whose answer is `<name> <path>`, a newline, then the request
    /// head it received (request line and headers, as sent by HAProxy).
    pub fn start_echoing(name: &str) -> Self {
        Self::listen(0, name, true, Duration::ZERO)
    }

    fn listen(port: u16, name: &str, echo: bool, delay: Duration) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}"));
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicUsize::new(0));
        let (name, flag, count) = (name.to_string(), stop.clone(), received.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (name, count) = (name.clone(), count.clone());
                std::thread::spawn(move || serve_connection(stream, &name, echo, delay, &count));
            }
        });
        Self {
            port,
            stop,
            received,
        }
    }

    /// How many requests reached this backend.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Answers requests on one connection (keep-alive aware) with `name`,
/// `delay` after reading each.
fn serve_connection(
    mut stream: TcpStream,
    name: &str,
    echo: bool,
    delay: Duration,
    received: &AtomicUsize,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&buffer[..end]).to_string();
        buffer.drain(..end);
        received.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(delay);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let close = head.to_ascii_lowercase().contains("connection: close")
            || head.starts_with("GET / HTTP/1.0")
                && !head.to_ascii_lowercase().contains("keep-alive");
        let body = if echo {
            format!("{name} {path}\n{head}")
        } else {
            format!("{name} {path}")
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if stream.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// One HTTP/1.1 request on a new connection: (status, body).
pub fn http_get(port: u16, path: &str, host: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // One write: `write!` sends each piece on its own, and Nagle's
    // algorithm then holds the rest until HAProxy's delayed ACK (40 ms).
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Sends `request` (a whole HTTP/1.1 request; say `Connection: close`) on a
/// new connection: (status, the whole response, head and body).
pub fn http_raw(port: u16, request: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

/// `curl` over HTTPS to 127.0.0.1:`port` for `host` (sent as SNI and Host),
/// certificates unchecked; `extra` are more curl arguments (`-H`, `-X`).
/// Returns (status, the whole response: head and body).
pub fn https_get(port: u16, path: &str, host: &str, extra: &[&str]) -> Option<(u16, String)> {
    let output = Command::new("curl")
        .args(["-sS", "-k", "-i", "--max-time", "5", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl runs (scripts/install-test-deps installs it)");
    let response = String::from_utf8_lossy(&output.stdout).to_string();
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response))
}

/// A self-signed certificate for `names` (the first is the CN) in `dir`:
/// one PEM file with certificate and key, as HAProxy's `crt` reads it.
pub fn self_signed_pem(dir: &Path, file: &str, names: &[&str]) -> PathBuf {
    let (key, cert) = (
        dir.join(format!("{file}.key")),
        dir.join(format!("{file}.crt")),
    );
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={}", names[0])])
        .args(["-addext", &format!("subjectAltName={san}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let mut pem = std::fs::read(&cert).unwrap();
    pem.extend(std::fs::read(&key).unwrap());
    let path = dir.join(file);
    std::fs::write(&path, pem).unwrap();
    path
}

/// A POST with a JSON body on a new connection: the status code.
pub fn http_post(port: u16, path: &str, body: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Polls until `check` holds or `timeout` passes; panics with `what` then.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Waits until a request for `path` through HAProxy is answered by `backend`.
pub fn wait_for_backend(port: u16, path: &str, backend: &str) {
    wait_for_backend_at(port, "localhost", path, backend);
}

/// [`wait_for_backend`] for a request to `host`.
pub fn wait_for_backend_at(port: u16, host: &str, path: &str, backend: &str) {
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        last = http_get(port, path, host);
        if let Some((200, body)) = &last
            && body.starts_with(&format!("{backend} "))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{host}{path} on port {port} never reached {backend}; last answer: {last:?}");
}

/// Runs git in `dir`, isolated from the user's and the system's git config;
/// panics with git's words when it fails. Returns stdout, trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=capstan-test",
            "-c",
            "user.email=test@capstan.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(["-c", "core.autocrlf=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A bare remote and a clone that pushes routes.yaml to it.
pub struct GitRemote {
    pub dir: tempfile::TempDir,
}

impl GitRemote {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "--bare", "remote.git"]);
        git(dir.path(), &["init", "-q", "work"]);
        let work = dir.path().join("work");
        git(&work, &["checkout", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", "../remote.git"]);
        Self { dir }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().join("remote.git").display())
    }

    /// Commits `routes.yaml` with `text` and pushes it; returns the commit id.
    pub fn push(&self, text: &str) -> String {
        self.push_files(&[("routes.yaml", text)])
    }

    /// Commits the files `(name, text)` and pushes them; returns the commit id.
    pub fn push_files(&self, files: &[(&str, &str)]) -> String {
        let work = self.dir.path().join("work");
        for (name, text) in files {
            std::fs::write(work.join(name), text).unwrap();
            git(&work, &["add", name]);
        }
        git(&work, &["commit", "-q", "--allow-empty", "-m", "routes"]);
        git(&work, &["push", "-q", "origin", "HEAD:main"]);
        git(&work, &["rev-parse", "HEAD"])
    }
}

/// A routes.yaml on `http_port` with the given route entries (YAML list items).
pub fn routes_yaml(http_port: u16, routes: &str) -> String {
    format!(
        "version: 1\ndefaults:\n  bind_address: 127.0.0.1\n  http_port: {http_port}\nroutes:\n{routes}"
    )
}

/// `routes` (from [`routes_yaml`]) with HAProxy resolving server names through `dns`.
pub fn with_resolvers(routes: &str, dns: &Dns) -> String {
    routes.replace(
        "defaults:\n",
        &format!("defaults:\n  resolvers: [\"127.0.0.1:{}\"]\n", dns.port),
    )
}

/// `routes` (from [`routes_yaml`]) with HTTPS on `port` and `certificates`.
pub fn with_https(routes: &str, port: u16, certificates: &str) -> String {
    routes.replace(
        "defaults:\n",
        &format!("defaults:\n  https:\n    port: {port}\n    certificates: {certificates}\n"),
    )
}

/// Pushes `routes` with HTTPS from a certificate this host does not have:
/// valid for capstan, rejected by `haproxy -c`. Waits until `capstan`
/// reports it failed, and returns the commit.
pub fn push_rejected_by_haproxy(remote: &GitRemote, capstan: &Capstan, routes: &str) -> String {
    let rejected = remote.push(&with_https(routes, free_port(), "/nonexistent/site.pem"));
    wait_until(
        "the rejected config reported",
        Duration::from_secs(20),
        || capstan.status()["last_error"]["revision"]["commit"] == rejected,
    );
    rejected
}

/// `capstan serve` on `remote`'s branch main, with `extra` flags.
pub fn serve_git(remote: &GitRemote, extra: &[&str]) -> Capstan {
    let url = remote.url();
    let mut args = vec!["--repo", url.as_str(), "--branch", "main"];
    args.extend_from_slice(extra);
    Capstan::start(&args)
}

/// `capstan serve` on `remote` polling hourly, its API requiring `token`
/// (kept in a file of the returned directory, which must outlive capstan).
pub fn serve_git_with_token(remote: &GitRemote, token: &str) -> (Capstan, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let capstan = serve_git(
        remote,
        &[
            "--poll-interval",
            "1h",
            "--api-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    (capstan, dir)
}

/// Waits until `capstan` reports `commit` applied.
pub fn wait_applied(capstan: &Capstan, commit: &str) {
    wait_until(
        &format!("commit {commit} applied"),
        Duration::from_secs(20),
        || capstan.status()["applied"]["revision"]["commit"] == commit,
    );
}

/// The smallest stand: backend A behind `/a`, pushed to a git remote and
/// served by capstan (polling every hour: only what a test triggers runs).
pub struct OneRoute {
    pub a: Backend,
    pub http: u16,
    pub remote: GitRemote,
    pub first: String,
    pub capstan: Capstan,
}

impl OneRoute {
    pub fn start() -> Self {
        let (a, http) = (Backend::start("A"), free_port());
        let remote = GitRemote::new();
        let first = remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
        let capstan = serve_git(&remote, &["--poll-interval", "1h"]);
        wait_applied(&capstan, &first);
        Self {
            a,
            http,
            remote,
            first,
            capstan,
        }
    }

    /// The routes.yaml of the first commit.
    pub fn routes(&self) -> String {
        routes_yaml(self.http, &route("a", "/a", &self.a.address()))
    }
}

/// A route entry for `routes_yaml`.
pub fn route(service: &str, path: &str, backend: &str) -> String {
    format!(
        "  - service: {service}\n    port: 80\n    paths: [{path}]\n    servers: [\"{backend}\"]\n"
    )
}

/// A `capstan serve` process with its own state directory. Dropping it
/// stops capstan and the HAProxy it started.
pub struct Capstan {
    pub api_port: u16,
    pub state_dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
    /// RLIMIT_NOFILE (soft and hard) capstan runs under, when set.
    fd_limit: Option<u64>,
    _state: Option<tempfile::TempDir>,
}

impl Capstan {
    /// Starts `capstan serve` with `args` (plus state dir and API address).
    pub fn start(args: &[&str]) -> Self {
        Self::start_limited(args, None)
    }

    /// Starts `capstan serve` allowed `fd_limit` open files (hard limit too).
    pub fn start_with_fd_limit(args: &[&str], fd_limit: u64) -> Self {
        Self::start_limited(args, Some(fd_limit))
    }

    fn start_limited(args: &[&str], fd_limit: Option<u64>) -> Self {
        let state = tempfile::tempdir().unwrap();
        Self::launch(state.path().to_path_buf(), args, fd_limit, Some(state))
    }

    /// Like [`Capstan::start`], on a state directory the caller owns.
    pub fn start_in(state_dir: PathBuf, args: &[&str]) -> Self {
        Self::launch(state_dir, args, None, None)
    }

    fn launch(
        state_dir: PathBuf,
        args: &[&str],
        fd_limit: Option<u64>,
        state: Option<tempfile::TempDir>,
    ) -> Self {
        std::fs::create_dir_all(&state_dir).unwrap();
        let mut capstan = Self {
            api_port: free_port(),
            state_dir,
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            fd_limit,
            _state: state,
        };
        capstan.spawn();
        capstan
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("capstan.log"))
            .unwrap();
        // prlimit execs capstan: the child's id stays capstan's.
        let mut command = match self.fd_limit {
            Some(limit) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={limit}:{limit}")).arg("--");
                prlimit.arg(env!("CARGO_BIN_EXE_capstan"));
                prlimit
            }
            None => Command::new(env!("CARGO_BIN_EXE_capstan")),
        };
        let child = command
            .arg("serve")
            .args(&self.args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.api_port))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("capstan starts");
        self.child = Some(child);
        let port = self.api_port;
        wait_until("capstan's API", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops capstan only (HAProxy keeps serving), then starts it again on the same state.
    pub fn restart(&mut self) {
        self.stop_capstan();
        self.spawn();
    }

    pub fn stop_capstan(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// `capstan diff --live` of the routes.yaml in `repo`'s working tree
    /// against this capstan, as JSON: (exit code, report).
    pub fn diff_live(&self, repo: &Path) -> (Option<i32>, serde_json::Value) {
        let output = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["diff", "--live", &self.url(), "--format", "json", "--repo"])
            .arg(repo)
            .output()
            .expect("capstan diff runs");
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "diff --live printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code(), report)
    }

    /// capstan's own process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("capstan runs").id()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.api_port, path, "localhost").expect("capstan's API answers")
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, body) = self.get("/v1/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The value of a metric line, e.g. `capstan_reloads_total{result="ok"}`.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// HAProxy's own reload counter, from its master CLI.
    pub fn haproxy_reloads(&self) -> u32 {
        let text = self.show_proc();
        // The master's line: `<pid> master <reloads> [failed: N] <uptime> <version>`.
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some("master"))
            .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
            .unwrap_or_else(|| panic!("no master line in show proc: {text}"))
    }

    /// The pid of HAProxy's current worker (listed before the old ones),
    /// from its master CLI: a reload or a restart changes it.
    pub fn haproxy_worker_pid(&self) -> u32 {
        let text = self.show_proc();
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some("worker"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no worker in show proc: {text}"))
    }

    /// `show proc` on HAProxy's master CLI.
    fn show_proc(&self) -> String {
        let output = Command::new("socat")
            .args(["-t", "1", "stdio"])
            .arg(format!(
                "unix-connect:{}",
                self.state_dir.join("run/master.sock").display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(b"show proc\n")?;
                child.wait_with_output()
            })
            .expect("socat runs");
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// Stops HAProxy (its master, which stops its workers; capstan stopped
    /// first, or it would start HAProxy again) and waits until both are gone.
    pub fn stop_haproxy(&self) {
        let (master, worker) = (
            self.haproxy_pid().expect("HAProxy's pid file"),
            self.haproxy_worker_pid(),
        );
        let _ = Command::new("kill").arg(master.to_string()).status();
        wait_until("HAProxy gone", Duration::from_secs(20), || {
            [master, worker].into_iter().all(process_gone)
        });
    }

    /// The lines (`<key> <backend>`) of the map file `name` (`prefix.map`) the
    /// http frontend routes through, as capstan last wrote it for HAProxy.
    pub fn map_lines(&self, name: &str) -> Vec<String> {
        let path = self.state_dir.join("haproxy.cfg.maps").join(name);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("capstan.log")).unwrap_or_default()
    }

    fn haproxy_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.state_dir.join("run/haproxy.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Whether `pid` has exited (a zombie nobody reaped yet counts as exited).
fn process_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        // `pid (comm) state ...`: the state follows the last `)`.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

impl Drop for Capstan {
    fn drop(&mut self) {
        self.stop_capstan();
        if let Some(pid) = self.haproxy_pid() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        if std::thread::panicking() {
            eprintln!("--- capstan log ---\n{}", self.log());
        }
    }
}

/// A DNS server on loopback UDP that answers A queries for `names` with
/// 127.0.0.1 (and NXDOMAIN otherwise): lets HAProxy's own resolvers find
/// service names such as `go-demo` without touching /etc/hosts.
pub struct Dns {
    pub port: u16,
}

impl Dns {
    pub fn start(names: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", names)
    }

    /// On `address`: `127.0.0.11:53` is where Docker's embedded DNS answers
    /// (port 53 needs root, which the test suite runs as).
    pub fn start_on(address: &str, names: &[&str]) -> Self {
        let socket = std::net::UdpSocket::bind(address)
            .unwrap_or_else(|e| panic!("binding the test DNS to {address}: {e}"));
        let port = socket.local_addr().unwrap().port();
        let names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((len, peer)) = socket.recv_from(&mut buf) {
                if let Some(answer) = dns_answer(&buf[..len], &names) {
                    let _ = socket.send_to(&answer, peer);
                }
            }
        });
        Self { port }
    }
}

fn dns_answer(query: &[u8], names: &[String]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels, then type and class.
    let (mut at, mut labels) = (12, Vec::new());
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = &query[12..at + 4];
    let known = names.contains(&labels.join("."));
    let answer_a = known && qtype == 1;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[..2]); // id
    out.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]); // response, RA, rcode
    out.extend_from_slice(&[0, 1, 0, u8::from(answer_a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if answer_a {
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}
