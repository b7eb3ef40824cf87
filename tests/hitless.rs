//! Reloads lose no request: under continuous HTTP load through HAProxy
//! (keep-alive and new-connection clients), 50 route changes that each need
//! a reload are pushed to git and applied by capstan.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use support::*;

/// Request counters shared by the load threads.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Reads one response (status line, headers, Content-Length body). Returns
/// the status and whether the server asked to close.
fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<(u16, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut close) = (0usize, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(v) = header.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if header == "connection: close" {
            close = true;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((status, close))
}

/// Sends requests over one keep-alive connection, opening a new one only
/// when the server closed the previous one after a complete response.
fn keep_alive_client(port: u16, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut connection: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let reader = match &mut connection {
            Some(reader) => reader,
            None => match TcpStream::connect(("127.0.0.1", port)) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    connection.insert(BufReader::new(stream))
                }
                Err(_) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
        };
        let sent = reader
            .get_mut()
            .write_all(b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n");
        match sent.and_then(|()| read_response(reader)) {
            Ok((200, close)) => {
                counts.ok.fetch_add(1, Ordering::Relaxed);
                if close {
                    connection = None;
                }
            }
            _ => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                connection = None;
            }
        }
    }
}

/// A new connection for every request.
fn new_connection_client(port: u16, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stop.load(Ordering::Relaxed) {
        match http_get(port, "/a", "localhost") {
            Some((200, _)) => counts.ok.fetch_add(1, Ordering::Relaxed),
            _ => counts.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

#[test]
fn fifty_reloads_under_load_lose_no_request() {
    require_tools();
    let (a, x, http) = (Backend::start("A"), Backend::start("X"), free_port());
    let remote = GitRemote::new();
    let stable = route("a", "/a", &a.address());
    let first = remote.push(&routes_yaml(http, &stable));
    let capstan = Capstan::start(&["--repo", &remote.url(), "--poll-interval", "1h"]);
    wait_until("the first apply", Duration::from_secs(20), || {
        capstan.status()["applied"]["revision"]["commit"] == first
    });
    wait_for_backend(http, "/a", "A");

    let stop = Arc::new(AtomicBool::new(false));
    let keep_alive = Arc::new(Counts::default());
    let fresh = Arc::new(Counts::default());
    let mut load = Vec::new();
    let (stop_ka, counts) = (stop.clone(), keep_alive.clone());
    load.push(std::thread::spawn(move || {
        keep_alive_client(http, stop_ka, counts)
    }));
    for _ in 0..2 {
        let (stop, counts) = (stop.clone(), fresh.clone());
        load.push(std::thread::spawn(move || {
            new_connection_client(http, stop, counts)
        }));
    }

    let reloads_before = capstan.haproxy_reloads();
    const CHANGES: usize = 50;
    for i in 0..CHANGES {
        // Each change replaces the last change's route with one of a new
        // service with a setting of its own: a new backend no spare backend
        // can serve, so a reload (a path alone is a map entry, and a new
        // service with default settings, or only a server timeout of its
        // own, takes a spare, both without one).
        let changing = format!(
            "{}    timeouts:\n      connect: {}s\n",
            route(&format!("x{i}"), &format!("/x{i}"), &x.address()),
            i + 1
        );
        let commit = remote.push(&routes_yaml(http, &format!("{stable}{changing}")));
        let webhook = http_post(
            capstan.api_port,
            "/v1/webhook/git",
            r#"{"ref":"refs/heads/main"}"#,
        );
        assert_eq!(webhook, Some(202));
        wait_until(
            &format!("change {i} applied"),
            Duration::from_secs(20),
            || capstan.status()["applied"]["revision"]["commit"] == commit,
        );
    }
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    let reloads = capstan.haproxy_reloads() - reloads_before;
    let (ka_ok, ka_failed) = (
        keep_alive.ok.load(Ordering::Relaxed),
        keep_alive.failed.load(Ordering::Relaxed),
    );
    let (fresh_ok, fresh_failed) = (
        fresh.ok.load(Ordering::Relaxed),
        fresh.failed.load(Ordering::Relaxed),
    );
    println!(
        "hitless: {CHANGES} changes, {reloads} reloads; keep-alive: {ka_ok} ok, {ka_failed} failed; new connection: {fresh_ok} ok, {fresh_failed} failed"
    );
    assert!(
        reloads >= CHANGES as u32,
        "every change needed a reload: {reloads}"
    );
    assert!(ka_ok > 0 && fresh_ok > 0, "the load ran");
    assert_eq!(
        (ka_failed, fresh_failed),
        (0, 0),
        "requests failed during reloads"
    );
    wait_for_backend(http, &format!("/x{}", CHANGES - 1), "X");
}
