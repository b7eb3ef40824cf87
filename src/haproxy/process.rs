//! The HAProxy process: started in master-worker mode and supervised, or
//! found again after capstan restarts; config checks with `haproxy -c`.
//!
//! The master is started in its own process group and is not killed when
//! capstan exits or drops its [`Supervisor`]: HAProxy keeps serving, and
//! the next capstan finds it through the pid file and the sockets of its
//! [`RuntimePaths`] ([`Supervisor::start_or_attach`]). Only
//! [`Supervisor::stop`] ends it (`capstan serve --stop-grace`, in a
//! container that ends with capstan).

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::admin::{AdminError, AdminSocket};
use super::master::{MasterCli, MasterError, ProcInfo, ReloadOutcome};
use super::wire;

/// How many lines of HAProxy's stderr are kept.
const STDERR_LINES: usize = 200;
/// Longer lines are cut to this many bytes.
const MAX_LINE: usize = 4096;
/// How long [`Supervisor::start`] waits for the master CLI and a worker.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Supervisor::reload`] waits for the master's last message.
const MESSAGES_SETTLE: Duration = Duration::from_millis(500);
/// How often the liveness of a master capstan did not start is checked
/// (it is not our child, so there is no exit to wait on).
const LIVENESS_POLL: Duration = Duration::from_millis(50);

/// Where a supervised HAProxy keeps its sockets and its pid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePaths {
    /// The master CLI (`-S`), created by HAProxy with mode 600.
    pub master_socket: PathBuf,
    /// The admin socket: the config's `global` section must declare it,
    /// as the one capstan renders does ([`crate::plan::DesiredConfig::new`]).
    pub admin_socket: PathBuf,
    /// `-p`: holds the master's pid.
    pub pid_file: PathBuf,
}

impl RuntimePaths {
    /// `master.sock`, `admin.sock` and `haproxy.pid` in `dir`. Unix socket
    /// paths are limited to 107 bytes, and `-S` takes no `,` in its path:
    /// keep `dir` short and plain.
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self {
            master_socket: dir.join("master.sock"),
            admin_socket: dir.join("admin.sock"),
            pid_file: dir.join("haproxy.pid"),
        }
    }
}

/// `haproxy -c` did not accept a config.
#[derive(Debug, Error)]
pub enum CheckError {
    /// HAProxy could not be run at all.
    #[error("cannot run {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: io::Error,
    },
    /// HAProxy rejected the file; `output` is what it printed.
    #[error("haproxy -c rejected {path}:\n{output}")]
    Invalid { path: PathBuf, output: String },
}

/// Runs `haproxy -c -f <path>`. This catches syntax and semantic errors,
/// not everything that can fail at load time: a `bind` on a port another
/// process holds passes, and fails only at the reload.
pub async fn check_config(haproxy_bin: &Path, path: &Path) -> Result<(), CheckError> {
    let output = Command::new(haproxy_bin)
        .arg("-c")
        .arg("-f")
        .arg(path)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| CheckError::Spawn {
            bin: haproxy_bin.to_path_buf(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    Err(CheckError::Invalid {
        path: path.to_path_buf(),
        output: text.trim().to_string(),
    })
}

/// What can go wrong starting, finding or stopping HAProxy.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// The HAProxy binary could not be run.
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Something already answers on the master socket: starting another
    /// HAProxy there would take the socket over; attach to it instead.
    #[error("an HAProxy master already answers on {0}")]
    AlreadyRunning(PathBuf),
    /// HAProxy exited while starting; `stderr` says why.
    #[error("haproxy exited while starting ({status}):\n{stderr}")]
    Exited { status: ExitStatus, stderr: String },
    /// HAProxy runs but its master CLI, a worker or its admin socket did not
    /// show up in time.
    #[error("haproxy not ready after {after:?} ({last}):\n{stderr}")]
    NotReady {
        after: Duration,
        last: String,
        stderr: String,
    },
    #[error(transparent)]
    Master(#[from] MasterError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A file of the runtime paths could not be created or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A reload through the [`Supervisor`], with what HAProxy printed meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisedReload {
    pub outcome: ReloadOutcome,
    /// Stderr lines printed during the reload: for a failed reload, the
    /// `[ALERT]` lines saying why. Empty for an attached HAProxy, whose
    /// stderr capstan does not hold.
    pub messages: Vec<String>,
}

/// The last [`STDERR_LINES`] lines, with a count of every line ever read.
#[derive(Debug, Clone, Default)]
struct StderrRing(Arc<Mutex<Ring>>);

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<String>,
    total: u64,
}

impl StderrRing {
    fn push(&self, line: String) {
        let mut ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ring.lines.len() == STDERR_LINES {
            ring.lines.pop_front();
        }
        ring.lines.push_back(line);
        ring.total += 1;
    }

    fn total(&self) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Lines read since `total()` returned `mark`, as far as still kept.
    fn since(&self, mark: u64) -> Vec<String> {
        let ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let first_kept = ring.total - ring.lines.len() as u64;
        let skip = mark.saturating_sub(first_kept);
        ring.lines
            .iter()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }
}

/// Copies HAProxy's stderr (master and workers share it) into the ring and
/// the log, until every holder of the pipe has exited.
async fn read_stderr(stderr: ChildStderr, ring: StderrRing) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        buf.truncate(MAX_LINE);
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        if line.starts_with("[ALERT]") {
            tracing::error!(target: "haproxy", "{line}");
        } else if line.starts_with("[WARNING]") {
            tracing::warn!(target: "haproxy", "{line}");
        } else {
            tracing::info!(target: "haproxy", "{line}");
        }
        ring.push(line);
    }
}

/// How the master process ended, as far as capstan can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterExit {
    pub master_pid: u32,
    /// `exit status: 0`, `signal: 9 (SIGKILL)`; for a master capstan did not
    /// start, the status is not known.
    pub status: String,
}

impl std::fmt::Display for MasterExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "haproxy master {} exited ({})",
            self.master_pid, self.status
        )
    }
}

/// A running HAProxy in master-worker mode: started here, or found running.
#[derive(Debug)]
pub struct Supervisor {
    master: MasterCli,
    master_pid: u32,
    /// Set once when the master exits; watched by a task that waits on it.
    exit: watch::Receiver<Option<MasterExit>>,
    watcher: JoinHandle<()>,
    /// HAProxy's stderr, kept when this supervisor started the master (and
    /// its process group is ours); `None` for one found running.
    stderr: Option<StderrRing>,
    reader: Option<JoinHandle<()>>,
}

impl Drop for Supervisor {
    /// HAProxy keeps running; only the stderr copy and the exit watch stop
    /// (HAProxy ignores the broken pipe).
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
        self.watcher.abort();
    }
}

/// Waits for our child master to exit (which also reaps it).
fn watch_child(
    mut child: Child,
    pid: u32,
) -> (watch::Receiver<Option<MasterExit>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("waiting for it failed: {e}"),
        };
        let _ = tx.send(Some(MasterExit {
            master_pid: pid,
            status,
        }));
    });
    (rx, task)
}

/// Polls the liveness of a master that is not our child.
fn watch_pid(pid: u32) -> (watch::Receiver<Option<MasterExit>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        while sys::is_running(pid) {
            tokio::time::sleep(LIVENESS_POLL).await;
        }
        let _ = tx.send(Some(MasterExit {
            master_pid: pid,
            status: "not started by this capstan: status unknown".into(),
        }));
    });
    (rx, task)
}

impl Supervisor {
    /// Starts `haproxy -W -S <master_socket>,mode,600 -f <config> -p
    /// <pid_file>` in its own process group, not daemonized, its stderr
    /// kept in memory, and waits (up to 10 s) until the master
    /// CLI answers, a worker runs and the admin socket answers. Refuses to
    /// start when a master already answers on `paths.master_socket`.
    pub async fn start(
        haproxy_bin: &Path,
        config: &Path,
        paths: &RuntimePaths,
    ) -> Result<Self, ProcessError> {
        if tokio::net::UnixStream::connect(&paths.master_socket)
            .await
            .is_ok()
        {
            return Err(ProcessError::AlreadyRunning(paths.master_socket.clone()));
        }
        let mut child = spawn_master(haproxy_bin, config, paths).await?;
        let ring = StderrRing::default();
        let mut reader = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(read_stderr(stderr, ring.clone())));
        let master_pid = child.id().unwrap_or_default();
        tracing::info!(master_pid, config = %config.display(), "haproxy started");

        let started = Instant::now();
        let admin = AdminSocket::new(&paths.admin_socket);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // Let the reader reach EOF, so that the error is complete.
                if let Some(reader) = reader.as_mut() {
                    let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
                }
                return Err(ProcessError::Exited {
                    status,
                    stderr: ring.since(0).join("\n"),
                });
            }
            let last = match ready(&paths.master_socket, &admin).await {
                Ok(proc_info) => {
                    tracing::info!(
                        master_pid,
                        workers = ?proc_info.workers.iter().map(|w| w.pid).collect::<Vec<_>>(),
                        after = ?started.elapsed(),
                        "haproxy ready"
                    );
                    let (exit, watcher) = watch_child(child, master_pid);
                    return Ok(Self {
                        master: MasterCli::new(&paths.master_socket),
                        master_pid,
                        exit,
                        watcher,
                        stderr: Some(ring),
                        reader,
                    });
                }
                Err(why) => why,
            };
            if started.elapsed() >= READY_TIMEOUT {
                // Leave nothing half-started behind.
                let _ = sys::signal_group(master_pid, sys::SIGKILL);
                let _ = child.wait().await;
                return Err(ProcessError::NotReady {
                    after: started.elapsed(),
                    last,
                    stderr: ring.since(0).join("\n"),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Takes over an HAProxy that is already running (started by an
    /// earlier capstan): its master CLI must answer with a worker, and its
    /// admin socket must answer. Its stderr is not available.
    pub async fn attach(
        master_socket: impl Into<PathBuf>,
        admin_socket: impl Into<PathBuf>,
    ) -> Result<Self, ProcessError> {
        let master = MasterCli::new(master_socket);
        let proc_info = master.show_proc().await?;
        let admin = AdminSocket::new(admin_socket);
        let info = admin.show_info().await?;
        tracing::info!(
            master_pid = proc_info.master_pid,
            worker = info.pid,
            generation = info.description.as_deref().unwrap_or("-"),
            "attached to running haproxy"
        );
        let (exit, watcher) = watch_pid(proc_info.master_pid);
        Ok(Self {
            master,
            master_pid: proc_info.master_pid,
            exit,
            watcher,
            stderr: None,
            reader: None,
        })
    }

    /// Attaches to the HAProxy named by `paths.pid_file` if that process is
    /// alive and runs `haproxy_bin`, else starts one. An attached HAProxy runs whatever config it
    /// loaded last: reload it if `config` may have changed since.
    pub async fn start_or_attach(
        haproxy_bin: &Path,
        config: &Path,
        paths: &RuntimePaths,
    ) -> Result<Self, ProcessError> {
        let pid = match tokio::fs::read_to_string(&paths.pid_file).await {
            Ok(text) => text.trim().parse::<u32>().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ProcessError::Io {
                    path: paths.pid_file.clone(),
                    source,
                });
            }
        };
        let name = haproxy_bin.file_name().unwrap_or_default();
        match pid.filter(|&pid| sys::is_running(pid) && sys::runs(pid, name)) {
            Some(pid) => {
                let supervisor = Self::attach(&paths.master_socket, &paths.admin_socket).await?;
                if supervisor.master_pid != pid {
                    tracing::warn!(
                        pid_file = pid,
                        master_pid = supervisor.master_pid,
                        "the pid file names another process than the master answering"
                    );
                }
                Ok(supervisor)
            }
            None => Self::start(haproxy_bin, config, paths).await,
        }
    }

    /// Resolves when the master exits: at once for a child of capstan's,
    /// within `LIVENESS_POLL` for one found running. The future owns what
    /// it needs, so the supervisor stays usable meanwhile.
    pub fn exited(&self) -> impl std::future::Future<Output = MasterExit> + Send + 'static {
        let mut exit = self.exit.clone();
        async move {
            let exit = exit
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|e| e.clone());
            match exit {
                Some(exit) => exit,
                // The watcher is gone only when the supervisor is dropped.
                None => std::future::pending().await,
            }
        }
    }

    /// The master process's pid.
    pub fn master_pid(&self) -> u32 {
        self.master_pid
    }

    /// Reloads through the master CLI (see [`MasterCli::reload`]) and
    /// collects what HAProxy printed meanwhile.
    pub async fn reload(&self) -> Result<SupervisedReload, ProcessError> {
        let mark = self.stderr.as_ref().map(StderrRing::total);
        let outcome = self.master.reload().await?;
        // Only a failure needs HAProxy's words, and they may lag behind
        // `show proc`: wait for the master's last message then, not on success.
        let messages = match (&self.stderr, mark) {
            (Some(ring), Some(mark)) if !outcome.succeeded => {
                let settled = Instant::now() + MESSAGES_SETTLE;
                loop {
                    let lines = ring.since(mark);
                    let done = lines
                        .iter()
                        .any(|l| l.contains("Loading success") || l.contains("Loading failure"));
                    if done || Instant::now() >= settled {
                        break lines;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            (Some(ring), Some(mark)) => ring.since(mark),
            _ => Vec::new(),
        };
        if !outcome.succeeded {
            tracing::error!(messages = ?messages, "haproxy reload failed; old workers keep serving");
        }
        Ok(SupervisedReload { outcome, messages })
    }
}

/// Spawns `haproxy -W -S <master_socket>,mode,600 -f <config> -p
/// <pid_file>` in its own process group (so that it outlives capstan),
/// creating the directories of `paths` first.
async fn spawn_master(
    haproxy_bin: &Path,
    config: &Path,
    paths: &RuntimePaths,
) -> Result<Child, ProcessError> {
    for path in [&paths.master_socket, &paths.admin_socket, &paths.pid_file] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| ProcessError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
    }
    let mut master_arg = paths.master_socket.clone().into_os_string();
    master_arg.push(",mode,600");
    Command::new(haproxy_bin)
        .arg("-W")
        .arg("-S")
        .arg(master_arg)
        .arg("-f")
        .arg(config)
        .arg("-p")
        .arg(&paths.pid_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| ProcessError::Spawn {
            bin: haproxy_bin.to_path_buf(),
            source,
        })
}

/// One readiness probe: the master lists a worker, and the admin socket
/// answers. `Err` says what is missing.
async fn ready(master_socket: &Path, admin: &AdminSocket) -> Result<ProcInfo, String> {
    let output = wire::exchange(master_socket, "show proc", Duration::from_secs(1))
        .await
        .map_err(|e| format!("master CLI: {e}"))?;
    let proc_info = ProcInfo::parse(&output).map_err(|e| e.to_string())?;
    if proc_info.workers.is_empty() {
        return Err("no worker yet".to_string());
    }
    admin
        .show_info()
        .await
        .map_err(|e| format!("admin socket: {e}"))?;
    Ok(proc_info)
}

/// How often [`Supervisor::stop`] repeats its signal.
const RESIGNAL: Duration = Duration::from_millis(250);

/// How to stop HAProxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGUSR1: stop listening, let current connections finish (bounded by
    /// `hard-stop-after`).
    Soft,
    /// SIGTERM: close everything now.
    Hard,
}

/// How HAProxy ended after [`Supervisor::stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited on the requested signal.
    Exited,
    /// It was still running at the timeout and got SIGKILL.
    Killed,
}

impl Supervisor {
    /// True when this supervisor found HAProxy running rather than started it.
    pub(crate) fn is_attached(&self) -> bool {
        self.stderr.is_none()
    }

    /// Stops HAProxy: `mode`'s signal to the master (repeated, since one
    /// that arrives during a reload is lost), then SIGKILL to the master and
    /// its workers if it is still running after `timeout`.
    pub async fn stop(mut self, mode: StopMode, timeout: Duration) -> io::Result<Stopped> {
        let pid = self.master_pid;
        let workers = self.master.show_proc().await.ok();
        let signal = match mode {
            StopMode::Soft => sys::SIGUSR1,
            StopMode::Hard => sys::SIGTERM,
        };
        // A signal that reaches the master while it re-executes itself for a
        // reload is lost (measured on 2.6): send it again until it exits.
        let deadline = Instant::now() + timeout;
        loop {
            match sys::signal(pid, signal) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(sys::ESRCH) => return Ok(Stopped::Exited),
                Err(e) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.wait_exit(left.min(RESIGNAL)).await {
                tracing::info!(master_pid = pid, ?mode, "haproxy stopped");
                return Ok(Stopped::Exited);
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        tracing::warn!(master_pid = pid, ?timeout, "haproxy still running: SIGKILL");
        if !self.is_attached() {
            let _ = sys::signal_group(pid, sys::SIGKILL);
        }
        let _ = sys::signal(pid, sys::SIGKILL);
        for worker in workers.iter().flat_map(ProcInfo::all_workers) {
            let _ = sys::signal(worker, sys::SIGKILL);
        }
        self.wait_exit(Duration::from_secs(2)).await;
        Ok(Stopped::Killed)
    }

    /// Whether the master exited within `timeout`.
    async fn wait_exit(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.exited()).await.is_ok()
    }
}

/// What only tests do with a supervisor: read its master CLI and its whole
/// stderr back.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub(crate) use super::sys::is_running;

    impl Supervisor {
        /// The master CLI.
        pub(crate) fn master(&self) -> &MasterCli {
            &self.master
        }

        /// The last [`STDERR_LINES`] lines HAProxy printed, oldest first; empty
        /// for an attached HAProxy.
        pub(crate) fn stderr_lines(&self) -> Vec<String> {
            self.stderr.as_ref().map_or_else(Vec::new, |r| r.since(0))
        }
    }
}

/// Signals and process liveness, Linux.
mod sys {
    use std::ffi::OsStr;
    use std::io;
    use std::os::unix::ffi::OsStrExt;

    /// Linux signal numbers (x86, ARM, RISC-V).
    pub const SIGKILL: i32 = 9;
    pub const SIGUSR1: i32 = 10;
    pub const SIGTERM: i32 = 15;
    /// `kill(2)`: no such process.
    pub const ESRCH: i32 = 3;

    unsafe extern "C" {
        // kill(2) takes two integers and touches no memory: safe to call.
        safe fn kill(pid: i32, sig: i32) -> i32;
    }

    fn kill_checked(target: i32, sig: i32) -> io::Result<()> {
        if kill(target, sig) == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Sends `sig` to process `pid`. Pids 0 and 1 (which would mean our own
    /// group, or init) and pids beyond `i32` are refused.
    pub fn signal(pid: u32, sig: i32) -> io::Result<()> {
        kill_checked(checked_pid(pid)?, sig)
    }

    /// Sends `sig` to every process of the group led by `pgid`.
    pub fn signal_group(pgid: u32, sig: i32) -> io::Result<()> {
        kill_checked(-checked_pid(pgid)?, sig)
    }

    fn checked_pid(pid: u32) -> io::Result<i32> {
        i32::try_from(pid)
            .ok()
            .filter(|&p| p > 1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("pid {pid}")))
    }

    /// Whether process `pid` runs the program `name` (as the kernel shows
    /// it: cut to 15 bytes).
    pub fn runs(pid: u32, name: &OsStr) -> bool {
        let Ok(comm) = std::fs::read(format!("/proc/{pid}/comm")) else {
            return false;
        };
        let name = name.as_bytes();
        comm.strip_suffix(b"\n").unwrap_or(&comm) == &name[..name.len().min(15)]
    }

    /// Whether `pid` is a live process (a zombie is not).
    pub fn is_running(pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `<pid> (<comm>) <state> ...`; comm may hold spaces and parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        !matches!(state, None | Some('Z' | 'X' | 'x'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn runtime_paths_live_in_one_directory() {
        let paths = RuntimePaths::in_dir("/run/capstan");
        assert_eq!(paths.master_socket, Path::new("/run/capstan/master.sock"));
        assert_eq!(paths.pid_file, Path::new("/run/capstan/haproxy.pid"));
    }

    #[test]
    fn the_ring_keeps_the_last_lines_and_counts_them_all() {
        let ring = StderrRing::default();
        for i in 0..STDERR_LINES + 5 {
            ring.push(format!("line {i}"));
        }
        assert_eq!(ring.total(), STDERR_LINES as u64 + 5);
        let all = ring.since(0);
        assert_eq!(all.len(), STDERR_LINES);
        assert_eq!(all[0], "line 5");
        let mark = ring.total();
        ring.push("after".into());
        assert_eq!(ring.since(mark), ["after"]);
        assert_eq!(
            ring.since(mark - 1),
            [format!("line {}", STDERR_LINES + 4), "after".into()]
        );
    }

    #[test]
    fn liveness_and_signals_refuse_dangerous_pids() {
        let me = std::process::id();
        assert!(sys::is_running(me));
        let exe = std::env::current_exe().unwrap();
        assert!(sys::runs(me, exe.file_name().unwrap()));
        assert!(!sys::runs(me, OsStr::new("haproxy")));
        assert!(!sys::runs(u32::MAX, OsStr::new("haproxy")));
        assert!(!sys::is_running(u32::MAX));
        for pid in [0, 1, u32::MAX] {
            let err = sys::signal(pid, sys::SIGTERM).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(sys::signal_group(pid, sys::SIGTERM).is_err());
        }
    }

    #[tokio::test]
    async fn a_zombie_is_not_running_and_a_missing_binary_is_reported() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!sys::is_running(pid), "an unreaped child is a zombie");
        child.wait().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-haproxy");
        let err = Supervisor::start(
            &missing,
            &dir.path().join("h.cfg"),
            &RuntimePaths::in_dir(dir.path()),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err}");
        let err = check_config(&missing, &dir.path().join("h.cfg"))
            .await
            .unwrap_err();
        assert!(matches!(err, CheckError::Spawn { .. }), "{err}");
    }
}
