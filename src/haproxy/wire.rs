//! One command over a unix socket, and the checks that keep it one command.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Sends `command` and a newline, half-closes the write side and reads the
/// reply to EOF. HAProxy's master CLI does not close after a reply on its
/// own; the half-close makes it do so, and `reply_timeout` bounds the wait
/// either way (reported as [`io::ErrorKind::TimedOut`]).
pub(crate) async fn exchange(
    path: &Path,
    command: &str,
    reply_timeout: Duration,
) -> io::Result<String> {
    let mut stream = UnixStream::connect(path).await?;
    let talk = async {
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        stream.shutdown().await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, io::Error>(reply)
    };
    match tokio::time::timeout(reply_timeout, talk).await {
        Ok(reply) => Ok(String::from_utf8_lossy(&reply?).into_owned()),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no complete reply to `{command}` within {reply_timeout:?}"),
        )),
    }
}

/// Why `command` must not be sent as is, if it must not: HAProxy's CLI
/// starts a new command at a newline or a `;`, and other control characters
/// have no business in a command.
pub(crate) fn command_problem(command: &str) -> Option<String> {
    if command.trim().is_empty() {
        return Some("empty command".to_string());
    }
    command
        .chars()
        .find(|&c| c == ';' || c.is_control())
        .map(|c| format!("{c:?} in {command:?} could start another command"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_control_characters_are_refused() {
        assert_eq!(command_problem("show info"), None);
        for bad in [
            "",
            "  ",
            "show info\nshutdown sessions",
            "a;b",
            "a\rb",
            "a\0b",
            "a\tb",
        ] {
            assert!(command_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn exchange_half_closes_and_times_out_on_a_peer_that_never_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            // First peer: answers once its client half-closed, then closes.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).await.unwrap();
            s.write_all(format!("echo {got}").as_bytes()).await.unwrap();
            drop(s);
            // Second peer: answers but keeps the connection open.
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"partial").await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let reply = exchange(&path, "hello", Duration::from_secs(2)).await;
        assert_eq!(reply.unwrap(), "echo hello\n");
        let err = exchange(&path, "hello", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        server.abort();
    }
}
