//! The master CLI of an HAProxy started with `-W -S <socket>`.
//!
//! Traps handled here (HAProxy 2.6):
//! * the master does not close the connection after a reply: the client
//!   half-closes its write side, and every exchange has a timeout;
//! * while a reload is in progress the socket refuses connections (about
//!   70 ms for a good reload, about 2 s for a failed one): connections are
//!   retried with a short backoff up to a deadline;
//! * `reload` is answered with nothing, success or failure: its outcome is
//!   read from `show proc`, where the master's reload counter grows and
//!   either a new current worker appears or `[failed: N]` becomes non-zero.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::Mutex;

use super::wire;

/// How long one exchange may take once connected.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`MasterCli::command`] retries a socket that refuses connections
/// (a failed reload keeps it closed for about 2 s).
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// The first and the longest pause between two refused connections.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(100);
/// Pause between two `show proc` while a reload is being confirmed.
const RELOAD_POLL: Duration = Duration::from_millis(10);

/// How long [`MasterCli::reload`] waits for the outcome to show: a reload
/// of 10,000 routes takes about 2.6 s; anything near this is stuck.
const DEFAULT_RELOAD_DEADLINE: Duration = Duration::from_secs(30);

/// What can go wrong talking to the master CLI.
#[derive(Debug, Error)]
pub enum MasterError {
    /// Connecting, writing or reading failed (a reply timeout is
    /// [`io::ErrorKind::TimedOut`]).
    #[error("master CLI {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The socket kept refusing connections: no master, or a reload that
    /// never ends.
    #[error("master CLI {path} refused connections for {waited:?}")]
    Unavailable { path: PathBuf, waited: Duration },
    /// The command was not sent: it would have been more than one command.
    #[error("refusing to send to the master CLI: {0}")]
    InvalidCommand(String),
    /// `show proc` printed something this parser does not understand.
    #[error("unexpected `show proc` output ({reason}):\n{output}")]
    Parse { reason: String, output: String },
    /// The reload was sent but neither its success nor its failure showed in
    /// `show proc` before the deadline.
    #[error("reload not confirmed within {after:?}; last observation: {last}")]
    ReloadTimeout { after: Duration, last: String },
}

/// One worker process in `show proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    pub pid: u32,
    /// Reloads this worker has lived through (0 for a worker started by the
    /// latest load; a current worker that survived a failed reload shows 1).
    pub reloads: u32,
    /// As HAProxy prints it: `0d00h00m16s`.
    pub uptime: String,
}

/// The master's view of its processes: `show proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub master_pid: u32,
    /// Reloads since the master started, failed ones included.
    pub reloads: u32,
    /// The `[failed: N]` counter: failed loads since the last good one
    /// (HAProxy resets it to 0 on success).
    pub failed_reloads: u32,
    /// Current workers: those serving the latest successfully loaded config.
    pub workers: Vec<WorkerInfo>,
    /// Workers of earlier configs that still finish their connections.
    pub old_workers: Vec<WorkerInfo>,
}

impl ProcInfo {
    /// Parses the output of `show proc` (HAProxy 2.6 layout).
    pub fn parse(output: &str) -> Result<Self, MasterError> {
        let fail = |reason: String| MasterError::Parse {
            reason,
            output: output.to_string(),
        };
        #[derive(PartialEq)]
        enum Part {
            Master,
            Workers,
            OldWorkers,
            Other,
        }
        let mut part = Part::Master;
        let mut master: Option<(u32, u32, u32)> = None;
        let mut workers = Vec::new();
        let mut old_workers = Vec::new();
        for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(title) = line.strip_prefix('#') {
                part = match title.trim() {
                    "workers" => Part::Workers,
                    "old workers" => Part::OldWorkers,
                    t if t.starts_with("<PID>") => Part::Master,
                    _ => Part::Other,
                };
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize, what: &str| -> Result<u32, MasterError> {
                fields
                    .get(i)
                    .and_then(|f| f.parse().ok())
                    .ok_or_else(|| fail(format!("no {what} in {line:?}")))
            };
            match (&part, fields.get(1).copied()) {
                (Part::Master, Some("master")) => {
                    // `<pid> master <reloads> [failed: <n>] <uptime> <version>`
                    let failed = line
                        .split_once("[failed:")
                        .and_then(|(_, rest)| rest.split_once(']'))
                        .and_then(|(n, _)| n.trim().parse().ok())
                        .ok_or_else(|| fail(format!("no [failed: N] in {line:?}")))?;
                    master = Some((number(0, "pid")?, number(2, "reloads")?, failed));
                }
                (Part::Workers | Part::OldWorkers, Some("worker")) => {
                    let worker = WorkerInfo {
                        pid: number(0, "pid")?,
                        reloads: number(2, "reloads")?,
                        uptime: fields
                            .get(3)
                            .ok_or_else(|| fail(format!("no uptime in {line:?}")))?
                            .to_string(),
                    };
                    if part == Part::Workers {
                        workers.push(worker);
                    } else {
                        old_workers.push(worker);
                    }
                }
                (Part::Other, _) => {}
                _ => return Err(fail(format!("unexpected line {line:?}"))),
            }
        }
        let (master_pid, reloads, failed_reloads) =
            master.ok_or_else(|| fail("no master line".to_string()))?;
        Ok(Self {
            master_pid,
            reloads,
            failed_reloads,
            workers,
            old_workers,
        })
    }

    /// Pids of the current and the old workers.
    pub fn all_workers(&self) -> impl Iterator<Item = u32> + '_ {
        self.workers.iter().chain(&self.old_workers).map(|w| w.pid)
    }

    fn knows_pid(&self, pid: u32) -> bool {
        self.all_workers().any(|p| p == pid)
    }
}

/// The result of a reload, read back from `show proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// A new worker runs the new config. When false the old workers keep
    /// serving the old config, and the reason is on the master's stderr.
    pub succeeded: bool,
    /// From sending `reload` to seeing its outcome.
    pub duration: Duration,
    /// The worker started by this reload, on success.
    pub new_worker_pid: Option<u32>,
    /// `show proc` once the outcome was known.
    pub after: ProcInfo,
}

/// A client of the master CLI socket. Clones share one reload lock, so that
/// reloads through them never overlap.
#[derive(Debug, Clone)]
pub struct MasterCli {
    path: PathBuf,
    connect_deadline: Duration,
    reload_deadline: Duration,
    reload_lock: Arc<Mutex<()>>,
}

impl MasterCli {
    /// A client of the master CLI listening at `path` (nothing is connected
    /// until a command is sent).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            connect_deadline: CONNECT_DEADLINE,
            reload_deadline: DEFAULT_RELOAD_DEADLINE,
            reload_lock: Arc::new(Mutex::new(())),
        }
    }

    /// How long [`reload`](Self::reload) waits for the outcome to show.
    #[cfg(test)]
    pub(crate) fn with_reload_deadline(mut self, deadline: Duration) -> Self {
        self.reload_deadline = deadline;
        self
    }

    /// The socket's path.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Sends one command and returns the whole reply. Retries for a few
    /// seconds while the socket refuses connections (a reload in progress).
    pub async fn command(&self, command: &str) -> Result<String, MasterError> {
        if let Some(problem) = wire::command_problem(command) {
            return Err(MasterError::InvalidCommand(problem));
        }
        self.exchange_until(command, Instant::now() + self.connect_deadline)
            .await
    }

    async fn exchange_until(
        &self,
        command: &str,
        deadline: Instant,
    ) -> Result<String, MasterError> {
        let started = Instant::now();
        let mut backoff = BACKOFF_FIRST;
        loop {
            match wire::exchange(&self.path, command, REPLY_TIMEOUT).await {
                Ok(reply) => return Ok(reply),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    if Instant::now() + backoff > deadline {
                        return Err(MasterError::Unavailable {
                            path: self.path.clone(),
                            waited: started.elapsed(),
                        });
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(source) => {
                    return Err(MasterError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// `show proc`, parsed.
    pub async fn show_proc(&self) -> Result<ProcInfo, MasterError> {
        ProcInfo::parse(&self.command("show proc").await?)
    }

    /// Reloads HAProxy (it re-reads its config files) and waits until
    /// `show proc` tells whether the new config loaded. A reload that fails
    /// leaves the old workers serving: it is `Ok` with `succeeded == false`.
    /// Reloads through this client and its clones run one at a time.
    pub async fn reload(&self) -> Result<ReloadOutcome, MasterError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let before = self.show_proc().await?;
        let started = Instant::now();
        let deadline = started + self.reload_deadline;
        // 2.6 answers nothing; later versions print a status, which
        // `show proc` confirms just as well.
        let mut last = match self.exchange_until("reload", deadline).await {
            Ok(reply) => format!("reload answered {:?}", reply.trim()),
            Err(e @ MasterError::Unavailable { .. }) => return Err(e),
            Err(e) => format!("sending reload: {e}"),
        };
        loop {
            tokio::time::sleep(RELOAD_POLL).await;
            match wire::exchange(&self.path, "show proc", REPLY_TIMEOUT).await {
                Ok(output) => match ProcInfo::parse(&output) {
                    Ok(now) if now.reloads > before.reloads => {
                        let new_worker = now.workers.iter().find(|w| !before.knows_pid(w.pid));
                        if new_worker.is_some() || now.failed_reloads > 0 {
                            return Ok(ReloadOutcome {
                                succeeded: new_worker.is_some(),
                                duration: started.elapsed(),
                                new_worker_pid: new_worker.map(|w| w.pid),
                                after: now,
                            });
                        }
                        last = "reload counted, no new worker yet".to_string();
                    }
                    Ok(_) => last = "reload not counted yet".to_string(),
                    Err(e) => last = e.to_string(),
                },
                // Refused while the master re-executes itself; anything else
                // is reported if it lasts until the deadline.
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(MasterError::ReloadTimeout {
                    after: started.elapsed(),
                    last,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    // Captured from HAProxy 2.6.12 on this machine, in this order: started;
    // reloaded; a reload that failed (a bind on a port in use); reloaded
    // while the previous worker still had a connection.
    const STARTED: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n15051           master          0 [failed: 0]   0d00h00m01s     2.6.12-1+deb12u4\n# workers\n15054           worker          0               0d00h00m01s     2.6.12-1+deb12u4\n# programs\n\n";
    const RELOADED: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n15051           master          1 [failed: 0]   0d00h00m16s     2.6.12-1+deb12u4\n# workers\n16253           worker          0               0d00h00m00s     2.6.12-1+deb12u4\n# programs\n\n";
    const FAILED: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n15051           master          2 [failed: 1]   0d00h00m30s     2.6.12-1+deb12u4\n# workers\n16253           worker          1               0d00h00m14s     2.6.12-1+deb12u4\n# programs\n\n";
    const WITH_OLD: &str = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n15051           master          3 [failed: 0]   0d00h00m42s     2.6.12-1+deb12u4\n# workers\n18621           worker          0               0d00h00m00s     2.6.12-1+deb12u4\n# old workers\n16253           worker          2               0d00h00m26s     2.6.12-1+deb12u4\n# programs\n\n";

    fn worker(pid: u32, reloads: u32, uptime: &str) -> WorkerInfo {
        WorkerInfo {
            pid,
            reloads,
            uptime: uptime.to_string(),
        }
    }

    #[test]
    fn parses_captured_show_proc() {
        assert_eq!(
            ProcInfo::parse(STARTED).unwrap(),
            ProcInfo {
                master_pid: 15051,
                reloads: 0,
                failed_reloads: 0,
                workers: vec![worker(15054, 0, "0d00h00m01s")],
                old_workers: vec![],
            }
        );
        let failed = ProcInfo::parse(FAILED).unwrap();
        assert_eq!((failed.reloads, failed.failed_reloads), (2, 1));
        assert_eq!(failed.workers, [worker(16253, 1, "0d00h00m14s")]);
        let with_old = ProcInfo::parse(WITH_OLD).unwrap();
        assert_eq!((with_old.reloads, with_old.failed_reloads), (3, 0));
        assert_eq!(with_old.workers, [worker(18621, 0, "0d00h00m00s")]);
        assert_eq!(with_old.old_workers, [worker(16253, 2, "0d00h00m26s")]);
    }

    #[test]
    fn rejects_what_is_not_show_proc() {
        for bad in [
            "",
            "Unknown command.\n",
            "#<PID> <type>\n15051 master x [failed: 0] 0d\n",
            "#<PID> <type>\n15051 master 0 0d00h00m01s\n",
            "#<PID> <type>\n15051 master 0 [failed: 0] 0d\n# workers\nabc worker 0 0d\n",
        ] {
            assert!(
                matches!(ProcInfo::parse(bad), Err(MasterError::Parse { .. })),
                "{bad:?}"
            );
        }
    }

    /// A stand-in for the master CLI: answers `show proc` with the current
    /// state; on `reload` answers nothing, refuses connections for `pause`
    /// (as the real master does while it re-executes), then moves to the
    /// next state. Returns the commands it received.
    fn fake_master(
        path: PathBuf,
        states: Vec<&'static str>,
        pause: Duration,
    ) -> tokio::task::JoinHandle<Vec<String>> {
        tokio::spawn(async move {
            let mut listener = UnixListener::bind(&path).unwrap();
            let mut state = 0;
            let mut received = Vec::new();
            loop {
                let Ok(Ok((mut conn, _))) =
                    tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
                else {
                    return received;
                };
                let mut command = String::new();
                conn.read_to_string(&mut command).await.unwrap();
                let command = command.trim().to_string();
                received.push(command.clone());
                if command == "reload" {
                    drop(conn);
                    // The socket file stays: connecting is refused.
                    drop(listener);
                    tokio::time::sleep(pause).await;
                    std::fs::remove_file(&path).unwrap();
                    listener = UnixListener::bind(&path).unwrap();
                    state = (state + 1).min(states.len() - 1);
                } else if command == "show proc" {
                    conn.write_all(states[state].as_bytes()).await.unwrap();
                }
            }
        })
    }

    #[tokio::test]
    async fn reload_success_is_a_new_worker_and_failure_the_failed_counter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        let fake = fake_master(
            path.clone(),
            vec![STARTED, RELOADED, FAILED, WITH_OLD],
            Duration::from_millis(50),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cli = MasterCli::new(&path);
        assert_eq!(cli.path(), path);
        assert_eq!(cli.reload_deadline, DEFAULT_RELOAD_DEADLINE);

        let ok = cli.reload().await.unwrap();
        assert!(ok.succeeded);
        assert_eq!(ok.new_worker_pid, Some(16253));
        assert!(
            ok.duration >= Duration::from_millis(50),
            "{:?}",
            ok.duration
        );
        assert_eq!(ok.after.reloads, 1);

        let failed = cli.reload().await.unwrap();
        assert!(!failed.succeeded);
        assert_eq!(failed.new_worker_pid, None);
        assert_eq!(failed.after.failed_reloads, 1);

        // The counter went back to 0: success, with the previous worker old.
        let ok = cli.reload().await.unwrap();
        assert!(ok.succeeded);
        assert_eq!(ok.new_worker_pid, Some(18621));
        drop(cli);
        let received = fake.await.unwrap();
        assert_eq!(received.iter().filter(|c| *c == "reload").count(), 3);
    }

    #[tokio::test]
    async fn concurrent_reloads_do_not_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        let fake = fake_master(
            path.clone(),
            vec![STARTED, RELOADED, WITH_OLD],
            Duration::from_millis(50),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cli = MasterCli::new(&path);
        let other = cli.clone();
        let (a, b) = tokio::join!(cli.reload(), other.reload());
        let mut pids = [a.unwrap().new_worker_pid, b.unwrap().new_worker_pid];
        pids.sort();
        assert_eq!(pids, [Some(16253), Some(18621)]);
        let received = fake.await.unwrap();
        // Each reload read `show proc` before sending: never two reloads in a row.
        assert!(
            !received
                .windows(2)
                .any(|w| w[0] == "reload" && w[1] == "reload"),
            "{received:?}"
        );
    }

    #[tokio::test]
    async fn a_reload_that_never_shows_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        let _fake = fake_master(path.clone(), vec![STARTED], Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cli = MasterCli::new(&path).with_reload_deadline(Duration::from_millis(200));
        let err = cli.reload().await.unwrap_err();
        assert!(matches!(err, MasterError::ReloadTimeout { .. }), "{err}");
        assert!(err.to_string().contains("not counted"), "{err}");
    }

    #[tokio::test]
    async fn refused_until_the_deadline_then_unavailable_and_injection_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let mut cli = MasterCli::new(&path);
        cli.connect_deadline = Duration::from_millis(300);
        let started = Instant::now();
        let err = cli.show_proc().await.unwrap_err();
        assert!(matches!(err, MasterError::Unavailable { .. }), "{err}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(1),
            "{waited:?}"
        );

        let missing = MasterCli::new(dir.path().join("missing.sock"));
        let err = missing.command("show proc").await.unwrap_err();
        assert!(
            matches!(&err, MasterError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound),
            "{err}"
        );

        let err = cli.command("show proc\nreload").await.unwrap_err();
        assert!(matches!(err, MasterError::InvalidCommand(_)), "{err}");
    }
}
