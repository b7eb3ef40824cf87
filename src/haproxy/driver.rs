//! Apply: observe the live HAProxy and carry out a plan, through the runtime
//! API or a checked, hitless reload. The I/O edge of the pipeline.
//!
//! A reload never leaves HAProxy without a good config: the candidate is
//! checked with `haproxy -c` and its new bind ports probed before it replaces
//! the live file; if the reload still fails, the previous file is restored and
//! the old worker keeps serving.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::haproxy::admin::{AdminError, AdminSocket};
use crate::haproxy::master::MasterCli;
use crate::haproxy::process::{
    self, CheckError, MasterExit, ProcessError, RuntimePaths, StopMode, Stopped, Supervisor,
};
use crate::plan::{
    self, Change, DesiredConfig, LiveServer, LiveState, MARKER_PREFIX, Method, Plan, ServerState,
};
use crate::render::{HaproxyConfig, MapFile};
use crate::tls::ServedCertificate;
use crate::util::write_atomic;

/// Why an apply failed. Whatever the cause, the previous config keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("haproxy -c rejected the new config:\n{0}")]
    Check(#[source] CheckError),
    #[error("port {0} is already in use by another program; not reloading")]
    PortInUse(u16),
    /// The reload could not be carried out or confirmed.
    #[error("HAProxy refused the new config; the previous one keeps serving:\n{0}")]
    Reload(#[source] ProcessError),
    /// HAProxy did not load the new config; `alerts` are its `[ALERT]`
    /// lines about it, when capstan holds its stderr.
    #[error(
        "HAProxy refused the new config; the previous one keeps serving:\n{}",
        refusal(alerts)
    )]
    Refused { alerts: Vec<String> },
    /// The reload seemed to succeed, but no worker reports the new config.
    #[error(
        "HAProxy refused the new config; the previous one keeps serving:\nthe new worker does not report {expected}"
    )]
    Unconfirmed { expected: String },
    #[error("runtime API: {0}")]
    Runtime(#[source] AdminError),
    /// A planned server address is not `ip:port`.
    #[error("runtime API: bad address {0}")]
    BadAddress(String),
    /// A planned certificate change names a certificate the desired state has not.
    #[error("runtime API: no certificate {0} to load")]
    UnknownCertificate(String),
    #[error("starting HAProxy: {0}")]
    Start(#[source] ProcessError),
    /// HAProxy is not running and capstan, attached, may not start it.
    #[error(
        "starting HAProxy: HAProxy does not answer on {} and capstan is attached, not supervising",
        .0.display()
    )]
    NotSupervising(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why HAProxy refused a config, in its words if capstan has them.
fn refusal(alerts: &[String]) -> String {
    if alerts.is_empty() {
        "the new config did not load (HAProxy wrote why to its own stderr)".to_string()
    } else {
        alerts.join("\n")
    }
}

impl ApplyError {
    /// True when HAProxy rejected the config on its merits (`haproxy -c`):
    /// the same config would fail again, so it is remembered as failed.
    /// Every other failure (a port held by another program, a full disk,
    /// HAProxy not starting, the haproxy binary missing) may go away and is
    /// retried.
    pub fn is_rejection(&self) -> bool {
        matches!(self, ApplyError::Check(CheckError::Invalid { .. }))
    }

    /// The stage that failed, as status reports it: `check` (the config was
    /// never loaded), `runtime` or `reload`.
    pub fn stage(&self) -> &'static str {
        match self {
            ApplyError::Check(_) | ApplyError::PortInUse(_) => "check",
            ApplyError::Runtime(_)
            | ApplyError::BadAddress(_)
            | ApplyError::UnknownCertificate(_) => "runtime",
            ApplyError::Reload(_)
            | ApplyError::Refused { .. }
            | ApplyError::Unconfirmed { .. }
            | ApplyError::Start(_)
            | ApplyError::NotSupervising(_)
            | ApplyError::Io { .. } => "reload",
        }
    }
}

/// A running HAProxy that capstan drives: supervised (capstan starts it,
/// or finds the one it started earlier) or attached (started by someone
/// else, driven through its sockets).
pub struct Haproxy {
    binary: PathBuf,
    config_file: PathBuf,
    paths: RuntimePaths,
    supervised: bool,
    master: MasterCli,
    admin: AdminSocket,
    supervisor: Option<Supervisor>,
    /// What the worker (by pid) serves of each certificate, as last asked.
    served_memo: Mutex<(u32, BTreeMap<PathBuf, ServedCertificate>)>,
}

/// What one successful apply reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyReport {
    /// How long `haproxy -c` took (reloads only).
    pub check: Duration,
}

impl Haproxy {
    /// An HAProxy that capstan starts with `config_file` and `paths`.
    pub fn supervised(binary: PathBuf, config_file: PathBuf, paths: RuntimePaths) -> Self {
        Self::new(binary, config_file, paths, true)
    }

    /// An HAProxy started elsewhere in master-worker mode, loading
    /// `config_file`; capstan rewrites that file and reloads through the
    /// master socket. The admin socket is the one capstan renders into the file.
    pub fn attached(binary: PathBuf, config_file: PathBuf, paths: RuntimePaths) -> Self {
        Self::new(binary, config_file, paths, false)
    }

    fn new(binary: PathBuf, config_file: PathBuf, paths: RuntimePaths, supervised: bool) -> Self {
        Self {
            binary,
            config_file,
            master: MasterCli::new(&paths.master_socket),
            admin: AdminSocket::new(&paths.admin_socket),
            paths,
            supervised,
            supervisor: None,
            served_memo: Mutex::new((0, BTreeMap::new())),
        }
    }

    /// The haproxy binary, which also checks configs and certificates.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The admin socket the rendered config must open.
    pub fn admin_socket(&self) -> &Path {
        &self.paths.admin_socket
    }

    /// The master CLI of the HAProxy driven: whether it answers says
    /// whether HAProxy runs.
    pub fn master_socket(&self) -> &Path {
        &self.paths.master_socket
    }

    /// Ends the HAProxy capstan supervises, for a capstan whose container
    /// ends with it: a soft stop (listeners close, requests in flight
    /// finish) for up to `grace`, then SIGKILL. `None` when capstan
    /// supervises none: an attached HAProxy is not capstan's, and keeps
    /// running.
    pub async fn stop(self, grace: Duration) -> std::io::Result<Option<Stopped>> {
        match self.supervisor {
            Some(supervisor) => supervisor.stop(StopMode::Soft, grace).await.map(Some),
            None => Ok(None),
        }
    }

    /// At startup: takes over the HAProxy an earlier capstan started, or,
    /// when a last good config is on disk, starts HAProxy with it so that
    /// serving resumes before the first fetch.
    pub async fn resume(&mut self) -> Result<(), ApplyError> {
        if !self.supervised || !self.config_file.exists() {
            return Ok(());
        }
        let supervisor = Supervisor::start_or_attach(&self.binary, &self.config_file, &self.paths)
            .await
            .map_err(ApplyError::Start)?;
        self.supervisor = Some(supervisor);
        Ok(())
    }

    /// Resolves when the HAProxy capstan supervises exits; never for an
    /// attached one, or while none runs.
    pub fn exited(&self) -> impl std::future::Future<Output = MasterExit> + Send + 'static {
        let exit = self.supervisor.as_ref().map(Supervisor::exited);
        async move {
            match exit {
                Some(exit) => exit.await,
                None => std::future::pending().await,
            }
        }
    }

    /// Starts HAProxy again with the config on disk, the last one applied,
    /// after it died. Returns the new master's pid.
    pub async fn restart(&mut self) -> Result<u32, ApplyError> {
        self.supervisor = None;
        self.start().await?;
        Ok(self.supervisor.as_ref().map_or(0, Supervisor::master_pid))
    }

    /// Runs `haproxy -c` on `desired` without touching the live files: judges
    /// a candidate config, e.g. with one override left out. Map files it
    /// names that do not exist yet are created (with its entries): nothing
    /// running reads them.
    pub async fn check(&self, desired: &DesiredConfig) -> Result<(), ApplyError> {
        let missing: Vec<_> = desired
            .config
            .maps
            .iter()
            .filter(|m| !Path::new(&m.path).exists())
            .cloned()
            .collect();
        self.write_maps(&HaproxyConfig {
            sections: Vec::new(),
            maps: missing,
        })?;
        let candidate = sibling(&self.config_file, "probe");
        write(&candidate, &desired.text())?;
        let checked = process::check_config(&self.binary, &candidate).await;
        let _ = std::fs::remove_file(&candidate);
        checked.map_err(ApplyError::Check)
    }

    /// What HAProxy runs now: its generation marker, its servers' runtime
    /// addresses, its maps' entries, and the config its worker loaded. That
    /// config is read only when the worker did not load `desired_marker`
    /// (parsing thousands of sections is the plan's business only then). An
    /// HAProxy that does not answer is observed as running nothing, with the
    /// config file on disk.
    pub async fn observe(&self, desired_marker: &str) -> LiveState {
        let read = |path: &Path| std::fs::read_to_string(path).ok();
        // One connection each, at once: HAProxy answers them side by side.
        let (info, servers, maps) = tokio::join!(
            self.admin.show_info(),
            self.admin.show_servers_state(),
            self.live_maps()
        );
        let Ok(info) = info else {
            return LiveState {
                config: read(&self.config_file).map(|text| HaproxyConfig::parse(&text)),
                ..LiveState::default()
            };
        };
        let marker = info
            .description
            .and_then(|d| d.strip_prefix(MARKER_PREFIX).map(str::to_string));
        let config = if marker.as_deref() == Some(desired_marker) {
            None
        } else {
            // The file the worker loaded: the config file, or, after backends
            // were left unused at run time, the copy kept of what it loaded.
            let on_disk = read(&self.config_file);
            let loads =
                |text: &String| marker.is_some() && plan::marker_in(text) == marker.as_deref();
            let loaded = match on_disk {
                Some(text) if loads(&text) => Some(text),
                on_disk => read(&self.loaded_file()).filter(loads).or(on_disk),
            };
            loaded.map(|text| HaproxyConfig::parse(&text))
        };
        let servers = servers
            .unwrap_or_default()
            .into_iter()
            .map(|s| LiveServer {
                state: s.state(),
                address: format!("{}:{}", s.address, s.port),
                backend: s.backend,
                server: s.server,
            })
            .collect();
        // Routes HAProxy could not list are unknown: planned as a reload of
        // everything rather than as every entry added again.
        let (marker, maps) = match maps {
            Ok(maps) => (marker, maps),
            Err(e) => {
                tracing::warn!("reading HAProxy's routing maps failed: {e}");
                (None, BTreeMap::new())
            }
        };
        LiveState {
            marker,
            config,
            servers,
            certificates: self.served_by(info.pid).await,
            maps,
        }
    }

    /// A copy of the config the running worker loaded, kept while the config
    /// file says more than it (backends left unused at run time).
    fn loaded_file(&self) -> PathBuf {
        sibling(&self.config_file, "loaded")
    }

    /// The directory of the http frontend's map files: next to the config file.
    pub fn maps_dir(&self) -> PathBuf {
        maps_dir(&self.config_file)
    }

    /// The entries of the maps in [`Haproxy::maps_dir`] HAProxy routes
    /// through, or the error that kept them unknown.
    async fn live_maps(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, AdminError> {
        let dir = self.maps_dir();
        let files = self.admin.map_files().await?;
        let files = files.into_iter().filter(|f| Path::new(f).starts_with(&dir));
        let listed = files.map(|file| async move {
            let entries = self.admin.map_entries(&file).await?;
            Ok::<_, AdminError>((file, entries))
        });
        futures_util::future::try_join_all(listed)
            .await
            .map(BTreeMap::from_iter)
    }

    /// Writes the desired map files that differ from those on disk, all or
    /// none; returns what each file held before (`None`: it did not exist),
    /// for [`restore`].
    fn write_maps(&self, config: &HaproxyConfig) -> Result<Vec<Previous>, ApplyError> {
        let dir = self.maps_dir();
        std::fs::create_dir_all(&dir).map_err(|source| ApplyError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut previous = Vec::new();
        for map in &config.maps {
            let path = PathBuf::from(&map.path);
            let text = map.text();
            let before = std::fs::read_to_string(&path).ok();
            if before.as_deref() != Some(text.as_str()) {
                // All or none: a failure puts back what was written so far.
                if let Err(e) = write(&path, &text) {
                    restore(previous);
                    return Err(e);
                }
                previous.push((path, before));
            }
        }
        Ok(previous)
    }

    /// The crt-list of the certificates capstan manages: next to the config file.
    pub fn crt_list_file(&self) -> PathBuf {
        sibling(&self.config_file, "crt-list")
    }

    /// The certificates of capstan's crt-list as HAProxy serves them;
    /// `None` when it runs no such crt-list or does not answer.
    pub async fn served_certificates(&self) -> Option<BTreeMap<PathBuf, ServedCertificate>> {
        let pid = self.admin.show_info().await.ok()?.pid;
        self.served_by(pid).await
    }

    /// [`Haproxy::served_certificates`] of the worker `pid`: one `show ssl
    /// cert` per certificate it was not asked about yet (after a reload,
    /// every one; between changes, none).
    async fn served_by(&self, pid: u32) -> Option<BTreeMap<PathBuf, ServedCertificate>> {
        let paths = self
            .admin
            .crt_list_paths(&self.crt_list_file())
            .await
            .ok()
            .flatten()?;
        let mut known = {
            let mut memo = lock(&self.served_memo);
            if memo.0 != pid {
                *memo = (pid, BTreeMap::new());
            }
            memo.1.clone()
        };
        known.retain(|path, _| paths.contains(path));
        for path in paths {
            if let std::collections::btree_map::Entry::Vacant(slot) = known.entry(path) {
                // One it cannot describe is replaced: better than added twice.
                let served = self.admin.served_certificate(slot.key()).await;
                slot.insert(served.unwrap_or_default());
            }
        }
        let mut memo = lock(&self.served_memo);
        if memo.0 == pid {
            memo.1 = known.clone();
        }
        Some(known)
    }

    /// Carries out `plan`. On any failure the config file is left as it was
    /// and HAProxy keeps serving what it served.
    pub async fn apply(
        &mut self,
        desired: &DesiredConfig,
        plan: &Plan,
        live: &LiveState,
    ) -> Result<ApplyReport, ApplyError> {
        let text = desired.text();
        // Before a reload loads it, and so that a later reload keeps what
        // changes at run time.
        if desired.crt_list.is_some() {
            let list = crate::tls::crt_list(&desired.certificates);
            write_if_changed(&self.crt_list_file(), &list)?;
        }
        let check = match plan.method {
            Method::Nothing | Method::Restart => {
                self.write_maps(&desired.config)?;
                self.write_if_changed(&text)?;
                Duration::ZERO
            }
            Method::Runtime => {
                self.apply_runtime(desired, &plan.changes).await?;
                // The config file is about to say more than the worker
                // loaded: keep what it loaded, which the next plan compares with.
                if let Some(loaded) = &live.config
                    && live.marker.as_deref() != Some(desired.marker.as_str())
                    && plan::marker_of(loaded) == live.marker.as_deref()
                {
                    write_if_changed(&self.loaded_file(), &loaded.to_string())?;
                }
                // So that a later reload keeps what was changed live.
                self.write_maps(&desired.config)?;
                self.write_if_changed(&text)?;
                Duration::ZERO
            }
            Method::Reload => self.reload(desired, &text, live).await?,
        };
        Ok(ApplyReport { check })
    }

    async fn apply_runtime(
        &self,
        desired: &DesiredConfig,
        changes: &[Change],
    ) -> Result<(), ApplyError> {
        // Addresses first, so that a slot is put in service at its new address.
        for change in changes {
            if let Change::SetServerAddress {
                backend,
                server,
                address,
            } = change
            {
                let (ip, port) = address
                    .rsplit_once(':')
                    .and_then(|(ip, port)| Some((ip, port.parse::<u16>().ok()?)))
                    .ok_or_else(|| ApplyError::BadAddress(address.clone()))?;
                self.admin
                    .set_server_addr(backend, server, ip, port)
                    .await
                    .map_err(ApplyError::Runtime)?;
            }
        }
        for change in changes {
            if let Change::SetServerState {
                backend,
                server,
                state,
            } = change
            {
                self.admin
                    .set_server_state(backend, server, *state)
                    .await
                    .map_err(ApplyError::Runtime)?;
                if *state == ServerState::Ready {
                    // A new task serves at once; its health checks take over
                    // from here instead of first having to pass `rise` times.
                    self.admin
                        .command(&format!("set server {backend}/{server} health up"))
                        .await
                        .map_err(ApplyError::Runtime)?;
                }
            }
        }
        self.apply_map_entries(changes).await?;
        self.apply_certificates(desired, changes).await
    }

    /// New and changed entries first, then removals: a path that moves from
    /// one map to another is routed all along.
    async fn apply_map_entries(&self, changes: &[Change]) -> Result<(), ApplyError> {
        for change in changes {
            let done = match change {
                Change::AddMapEntry { map, key, value } => {
                    self.admin.add_map_entry(map, key, value).await
                }
                Change::SetMapEntry { map, key, value } => {
                    self.admin.set_map_entry(map, key, value).await
                }
                _ => continue,
            };
            done.map_err(ApplyError::Runtime)?;
        }
        for change in changes {
            if let Change::RemoveMapEntry { map, key } = change {
                self.admin
                    .remove_map_entry(map, key)
                    .await
                    .map_err(ApplyError::Runtime)?;
            }
        }
        Ok(())
    }

    async fn apply_certificates(
        &self,
        desired: &DesiredConfig,
        changes: &[Change],
    ) -> Result<(), ApplyError> {
        let crt_list = self.crt_list_file();
        let pem = |path: &str| {
            desired
                .certificates
                .iter()
                .find(|c| c.path.as_os_str() == path)
                .map(|c| c.pem.clone())
                .ok_or_else(|| ApplyError::UnknownCertificate(path.to_string()))
        };
        for change in changes {
            let result = match change {
                Change::AddCertificate { path } => {
                    self.admin
                        .add_certificate(&crt_list, Path::new(path), &*pem(path)?)
                        .await
                }
                Change::ReplaceCertificate { path } => {
                    self.admin
                        .replace_certificate(Path::new(path), &*pem(path)?)
                        .await
                }
                Change::RemoveCertificate { path } => {
                    self.admin
                        .remove_certificate(&crt_list, Path::new(path))
                        .await
                }
                _ => continue,
            };
            // Asked again at the next look, whatever happened.
            if let Change::AddCertificate { path }
            | Change::ReplaceCertificate { path }
            | Change::RemoveCertificate { path } = change
            {
                lock(&self.served_memo).1.remove(Path::new(path));
            }
            result.map_err(ApplyError::Runtime)?;
        }
        Ok(())
    }

    fn write_if_changed(&self, text: &str) -> Result<(), ApplyError> {
        write_if_changed(&self.config_file, text)
    }

    async fn reload(
        &mut self,
        desired: &DesiredConfig,
        text: &str,
        live: &LiveState,
    ) -> Result<Duration, ApplyError> {
        // The maps the candidate names are loaded by the check and the reload.
        let previous_maps = self.write_maps(&desired.config)?;
        let outcome = self.checked_reload(desired, text, live).await;
        if outcome.is_err() {
            restore(previous_maps);
        }
        outcome
    }

    async fn checked_reload(
        &mut self,
        desired: &DesiredConfig,
        text: &str,
        live: &LiveState,
    ) -> Result<Duration, ApplyError> {
        let candidate = sibling(&self.config_file, "new");
        write(&candidate, text)?;
        let check_started = Instant::now();
        let checked = process::check_config(&self.binary, &candidate).await;
        let check = check_started.elapsed();
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&candidate);
            return Err(ApplyError::Check(e));
        }
        // `haproxy -c` passes a bind on a port someone else holds; the reload
        // would then fail and pause the old listeners. Probe new ports first.
        // Not observed when the worker runs the desired marker: then the
        // config file is what it loaded.
        let running = match &live.config {
            Some(config) => plan::bind_ports(config),
            None => std::fs::read_to_string(&self.config_file)
                .map(|text| plan::bind_ports(&HaproxyConfig::parse(&text)))
                .unwrap_or_default(),
        };
        for port in plan::bind_ports(&desired.config) {
            if !running.contains(&port) && port_in_use(port) {
                let _ = std::fs::remove_file(&candidate);
                return Err(ApplyError::PortInUse(port));
            }
        }
        let previous = std::fs::read_to_string(&self.config_file).ok();
        std::fs::rename(&candidate, &self.config_file).map_err(|source| ApplyError::Io {
            path: self.config_file.clone(),
            source,
        })?;
        let outcome = if self.master.show_proc().await.is_err() {
            self.start().await
        } else {
            self.master_reload().await
        };
        let outcome = match outcome {
            Ok(()) => self.confirm_marker(desired).await,
            Err(e) => Err(e),
        };
        match &outcome {
            // The worker loaded the config file: no copy to keep.
            Ok(()) => {
                let _ = std::fs::remove_file(self.loaded_file());
                self.remove_stale_maps(&desired.config);
            }
            Err(_) => match &previous {
                Some(previous) => write(&self.config_file, previous)?,
                None => {
                    let _ = std::fs::remove_file(&self.config_file);
                }
            },
        }
        outcome.map(|()| check)
    }

    async fn master_reload(&self) -> Result<(), ApplyError> {
        let (outcome, messages) = match &self.supervisor {
            Some(supervisor) => {
                let reload = supervisor.reload().await.map_err(ApplyError::Reload)?;
                (reload.outcome, reload.messages)
            }
            None => {
                let outcome = self
                    .master
                    .reload()
                    .await
                    .map_err(|e| ApplyError::Reload(e.into()))?;
                (outcome, Vec::new())
            }
        };
        if outcome.succeeded {
            return Ok(());
        }
        let alerts = messages
            .into_iter()
            .filter(|l| l.contains("[ALERT]"))
            .collect();
        Err(ApplyError::Refused { alerts })
    }

    /// The new worker must report the desired marker: proof it loaded our file.
    async fn confirm_marker(&self, desired: &DesiredConfig) -> Result<(), ApplyError> {
        let expected = format!("{MARKER_PREFIX}{}", desired.marker);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(info) = self.admin.show_info().await
                && info.description.as_deref() == Some(expected.as_str())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ApplyError::Unconfirmed { expected });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn start(&mut self) -> Result<(), ApplyError> {
        if !self.supervised {
            return Err(ApplyError::NotSupervising(self.paths.master_socket.clone()));
        }
        let supervisor = Supervisor::start(&self.binary, &self.config_file, &self.paths)
            .await
            .map_err(ApplyError::Start)?;
        self.supervisor = Some(supervisor);
        // It loaded the config file: no copy of an older one to keep.
        let _ = std::fs::remove_file(self.loaded_file());
        Ok(())
    }

    /// Removes the map files of `config`'s directory that it does not name
    /// (older configs' maps), once HAProxy runs it.
    fn remove_stale_maps(&self, config: &HaproxyConfig) {
        let Ok(entries) = std::fs::read_dir(self.maps_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let named = config.maps.iter().any(|m| Path::new(&m.path) == path);
            if !named && path.extension().is_some_and(|e| e == "map") {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// A poisoned lock only means a panic elsewhere; the data is still whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The directory of the map files of the config at `config_file`.
pub fn maps_dir(config_file: &Path) -> PathBuf {
    sibling(config_file, "maps")
}

/// The config at `config_file` as text, followed by the entries of its map
/// files as comments: what a user reads to see what HAProxy routes where.
pub fn config_with_maps(config_file: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(config_file)?;
    let config = HaproxyConfig::parse(&text);
    let dir = maps_dir(config_file);
    let maps: Vec<MapFile> = crate::render::maps::referenced(&config)
        .into_iter()
        .filter(|path| Path::new(path).starts_with(&dir))
        .filter_map(|path| {
            let entries = std::fs::read_to_string(&path).ok()?;
            Some(MapFile::parse(path, &entries))
        })
        .collect();
    Ok(text + &crate::render::maps::listing(&maps))
}

/// A file's path and what it held before a write (`None`: it did not exist).
type Previous = (PathBuf, Option<String>);

/// Puts files back as they were, after a reload that did not take them.
fn restore(previous: Vec<Previous>) {
    for (path, before) in previous {
        let _ = match before {
            Some(text) => write(&path, &text),
            None => std::fs::remove_file(&path).map_err(|source| ApplyError::Io {
                path: path.clone(),
                source,
            }),
        };
    }
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), ApplyError> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    write(path, text)
}

fn write(path: &Path, text: &str) -> Result<(), ApplyError> {
    write_atomic(path, text.as_bytes()).map_err(|source| ApplyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn sibling(path: &Path, extension: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(extension);
    path.with_file_name(name)
}

fn port_in_use(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_config_haproxy_rejects_is_a_rejection() {
        let rejected = ApplyError::Check(CheckError::Invalid {
            path: "haproxy.cfg.new".into(),
            output: "[ALERT] unknown keyword".into(),
        });
        assert!(rejected.is_rejection());
        assert_eq!(rejected.stage(), "check");
        assert!(!ApplyError::PortInUse(80).is_rejection());
        let start = ApplyError::Start(ProcessError::AlreadyRunning("master.sock".into()));
        assert!(!start.is_rejection());
        assert_eq!(start.stage(), "reload");
        let unrunnable = ApplyError::Check(CheckError::Spawn {
            bin: "/usr/sbin/haproxy".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        assert!(!unrunnable.is_rejection(), "a missing binary is retried");
        assert_eq!(unrunnable.stage(), "check");
    }

    #[test]
    fn errors_keep_their_cause_and_their_words() {
        use std::error::Error;
        let error = ApplyError::Check(CheckError::Invalid {
            path: "h.cfg.new".into(),
            output: "[ALERT] bad".into(),
        });
        assert_eq!(
            error.to_string(),
            "haproxy -c rejected the new config:\nhaproxy -c rejected h.cfg.new:\n[ALERT] bad"
        );
        assert!(error.source().unwrap().is::<CheckError>());
        let runtime = ApplyError::Runtime(AdminError::InvalidArgument("port 0".into()));
        assert_eq!(runtime.stage(), "runtime");
        assert!(runtime.source().unwrap().is::<AdminError>());
        assert_eq!(
            ApplyError::Refused { alerts: vec![] }.to_string(),
            "HAProxy refused the new config; the previous one keeps serving:\nthe new config did not load (HAProxy wrote why to its own stderr)"
        );
        assert_eq!(
            ApplyError::Refused {
                alerts: vec!["[ALERT] a".into(), "[ALERT] b".into()]
            }
            .to_string(),
            "HAProxy refused the new config; the previous one keeps serving:\n[ALERT] a\n[ALERT] b"
        );
        assert_eq!(
            ApplyError::NotSupervising("/run/m.sock".into()).to_string(),
            "starting HAProxy: HAProxy does not answer on /run/m.sock and capstan is attached, not supervising"
        );
    }
}
