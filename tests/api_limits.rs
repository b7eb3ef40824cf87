//! Clients that open connections to capstan's API and never finish a
//! request: a real `capstan serve` under a small file descriptor limit keeps
//! reconciling, closes them, and answers its API again.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::*;

/// capstan's RLIMIT_NOFILE in these tests.
const FD_LIMIT: u64 = 256;
/// More slow connections than capstan may have descriptors.
const SLOW: usize = 300;
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection that sends half a request line and nothing more.
fn slow_connection(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.write_all(b"GET /v1/sta").expect("writes");
    stream
}

/// Whether capstan closed the connection (end of file or reset) within `wait`.
fn closed_by_peer(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        ),
    }
}

/// `count` slow clients, each opening a new slow connection as soon as
/// capstan closes its last one: the pressure never lets up.
struct SlowClients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl SlowClients {
    fn start(port: u16, count: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..count)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut stream = slow_connection(port);
                        while !stop.load(Ordering::Relaxed)
                            && !closed_by_peer(&mut stream, Duration::from_millis(100))
                        {
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for SlowClients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// `GET /v1/status` with a generous read timeout: (status code, time taken).
fn timed_status(port: u16) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let answer = (|| {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok()?;
        stream
            .write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    })();
    (answer, started.elapsed())
}

#[test]
fn slow_clients_neither_stop_reconciling_nor_lock_out_the_api() {
    require_tools();
    let (a, b, http) = (Backend::start("A"), Backend::start("B"), free_port());
    let remote = GitRemote::new();
    remote.push(&routes_yaml(http, &route("a", "/a", &a.address())));
    let url = remote.url();
    let timeout = format!("{}s", HEADER_TIMEOUT.as_secs());
    let capstan = Capstan::start_with_fd_limit(
        &[
            "--repo",
            &url,
            "--poll-interval",
            "200ms",
            "--api-header-timeout",
            &timeout,
        ],
        FD_LIMIT,
    );
    wait_for_backend(http, "/a", "A");
    assert!(
        capstan
            .log()
            .contains("API connections lowered to fit the file descriptor limit"),
        "{}",
        capstan.log()
    );

    // More slow clients than capstan has descriptors, for the whole time a
    // commit is fetched, checked and applied.
    let pressure = SlowClients::start(capstan.api_port, SLOW);
    std::thread::sleep(Duration::from_millis(500));
    remote.push(&routes_yaml(http, &route("a", "/a", &b.address())));
    wait_for_backend(http, "/a", "B");
    // The API answers as soon as slow clients time out and free a slot.
    let (code, took) = timed_status(capstan.api_port);
    assert_eq!(code, Some(200), "status under pressure, after {took:?}");
    assert!(
        took < HEADER_TIMEOUT * 3,
        "status took {took:?} under pressure"
    );
    drop(pressure);

    // Slow sockets that are not reopened: capstan closes every one of them,
    // those waiting in the backlog too, one header timeout after it took them.
    let started = Instant::now();
    let mut sockets: Vec<TcpStream> = (0..SLOW)
        .map(|_| slow_connection(capstan.api_port))
        .collect();
    for (n, socket) in sockets.iter_mut().enumerate() {
        assert!(
            closed_by_peer(socket, Duration::from_secs(15)),
            "slow connection {n} still open after {:?}",
            started.elapsed()
        );
    }
    let closed_after = started.elapsed();
    assert!(
        closed_after < HEADER_TIMEOUT * 4,
        "closing them all took {closed_after:?}"
    );
    let (code, took) = timed_status(capstan.api_port);
    assert_eq!(code, Some(200));
    assert!(took < Duration::from_secs(1), "status took {took:?}");
}
