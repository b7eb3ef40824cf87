//! capstan-test-http: a tiny HTTP/1.1 server for capstan's Swarm tests.
//!
//! Answers every request with `200 OK` and the body `task=<name> path=<path>\n`
//! (plus an `X-Served-By: <name>` header), so a test can tell which task
//! served it. A path `/slow/<ms>` is answered `<ms>` milliseconds late (and
//! logged on arrival): a request that stays in flight. `<name>` is `$TASK_ID` when set (e.g. `--env
//! TASK_ID={{.Task.ID}}`), else the container's hostname (`/etc/hostname`,
//! else `$HOSTNAME`).
//!
//! - Listens on `0.0.0.0:$PORT` (default 8080), one thread per connection;
//!   HTTP/1.1 keep-alive (closed on `Connection: close`, or for HTTP/1.0
//!   without `Connection: keep-alive`), request bodies (`Content-Length` or
//!   chunked) are read and discarded.
//! - Exits 0 on SIGTERM or SIGINT: as PID 1 in a `FROM scratch` container it
//!   gets no default signal handler, so without one Swarm would wait its
//!   whole stop grace period and then SIGKILL it. With `$STOP_DELAY_MS` it
//!   keeps serving that long after the signal first (to observe draining).
//!
//! std only, so that it builds in seconds and links statically
//! (`-C target-feature=+crt-static`) for a `FROM scratch` image.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::raw::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// Longest request line or header line accepted.
const MAX_LINE: usize = 16 * 1024;
/// How long an idle keep-alive connection is kept open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;

unsafe extern "C" {
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
}

/// Set by the signal handler (an atomic store is async-signal-safe).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() {
    // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
    unsafe {
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
    }
    let name: Arc<str> = Arc::from(served_by());
    let port = env_number("PORT", 8080);
    let stop_delay = Duration::from_millis(env_number("STOP_DELAY_MS", 0));
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("capstan-test-http: bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("capstan-test-http: {name} listening on {addr}");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let name = Arc::clone(&name);
            thread::spawn(move || {
                // A peer that goes away mid-request is not our problem.
                let _ = serve(stream, &name);
            });
        }
    });
    while !STOP.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "capstan-test-http: stopping in {} ms",
        stop_delay.as_millis()
    );
    thread::sleep(stop_delay);
    std::process::exit(0);
}

/// The name this server reports: `$TASK_ID`, else the hostname.
fn served_by() -> String {
    let non_empty = |s: String| {
        let s = s.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    std::env::var("TASK_ID")
        .ok()
        .and_then(non_empty)
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .and_then(non_empty)
        })
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(non_empty))
        .unwrap_or_else(|| "unknown".to_string())
}

fn env_number<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Serves one connection until the peer closes it, asks to, or idles out.
fn serve(stream: TcpStream, name: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request_line) = read_line(&mut reader)? else {
            return Ok(());
        };
        if request_line.is_empty() {
            continue; // stray CRLF between requests (RFC 9112 §2.2)
        }
        let mut parts = request_line.split_whitespace();
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            writer.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        };
        let mut keep_alive = version == "HTTP/1.1";
        let mut content_length = 0u64;
        let mut chunked = false;
        loop {
            let Some(line) = read_line(&mut reader)? else {
                return Ok(());
            };
            if line.is_empty() {
                break;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if key.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            } else if key.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if key.eq_ignore_ascii_case("connection") {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    keep_alive = false;
                } else if value.contains("keep-alive") {
                    keep_alive = true;
                }
            }
        }
        if chunked {
            discard_chunked(&mut reader)?;
        } else {
            io::copy(&mut (&mut reader).take(content_length), &mut io::sink())?;
        }
        let path = target.split('?').next().unwrap_or(target);
        if let Some(delay) = path.strip_prefix("/slow/").and_then(|ms| ms.parse().ok()) {
            // Logged so that a test knows the request is in flight.
            eprintln!("capstan-test-http: answering {path} in {delay} ms");
            thread::sleep(Duration::from_millis(delay));
        }
        let body = format!("task={name} path={path}\n");
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             X-Served-By: {name}\r\nConnection: {connection}\r\n\r\n",
            body.len()
        );
        if method != "HEAD" {
            response.push_str(&body);
        }
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
        if !keep_alive {
            return Ok(());
        }
    }
}

/// One CRLF- (or LF-) terminated line without its terminator; `None` at EOF.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = reader.take(MAX_LINE as u64).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Reads and drops a chunked body, trailers included.
fn discard_chunked(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let line = read_line(reader)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // trailers, up to the empty line
            while !read_line(reader)?
                .ok_or(io::ErrorKind::UnexpectedEof)?
                .is_empty()
            {}
            return Ok(());
        }
        io::copy(&mut reader.take(size), &mut io::sink())?;
        read_line(reader)?; // the CRLF after the chunk
    }
}
