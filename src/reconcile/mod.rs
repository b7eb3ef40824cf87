//! The reconcile loop: fetch the desired routes, validate, render, observe
//! live, plan, apply, remember. One reconcile runs at a time; triggers that
//! arrive meanwhile coalesce into one more run, which fetches the latest
//! desired state, so nothing is lost and the newest commit wins.

mod status;

use status::recent;
pub use status::{AppliedInfo, FetchStatus, HaproxyStatus, Status};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::desired::overlay::{Drift, lay_labels_under, merge};
use crate::desired::servers::{self, TaskServers};
use crate::haproxy::driver::{ApplyError, Haproxy};
use crate::haproxy::process::MasterExit;
use crate::metrics::{Metrics, ResultLabel};
use crate::model::RoutesFile;
use crate::model::diagnostics::Diagnostics;
use crate::model::validate;
use crate::plan::{DesiredConfig, Method, Plan, plan};
use crate::render::render_with;
use crate::sources::overrides::{OverrideChange, OverrideSet, OverrideStore};
use crate::sources::swarm::Swarm;
use crate::sources::swarm_snapshot::SwarmState;
use crate::sources::{Fetched, RevisionInfo, RoutesSource, Warning, labels};
use crate::state::{
    self, ApplyRecord, LastError, Outcome, RECORDED_CHANGES, State, StateDir, Timings,
};

/// How long after a Docker event capstan looks at Swarm once more.
const SWARM_FOLLOW_UP: Duration = Duration::from_millis(750);

/// What the HTTP API shares with the loop.
pub struct Shared {
    pub metrics: Metrics,
    pub status: Mutex<Status>,
    /// Wakes the loop for a reconcile now (webhook, API).
    pub trigger: Notify,
    /// Set with `trigger` when git must be fetched again (a webhook); an
    /// override change alone re-merges the last fetched revision.
    pub fetch_requested: AtomicBool,
    /// The routes HAProxy serves (git and overrides merged), for `capstan diff --live`.
    pub applied_routes: Mutex<Option<(RevisionInfo, RoutesFile)>>,
    /// Overrides from the imperative API.
    pub overrides: Mutex<Overrides>,
    /// git's last valid table: overrides are validated against it when submitted.
    pub git_routes: Mutex<Option<RoutesFile>>,
    /// The last finished reconcile: which overrides it included, and how it ended.
    pub completed: watch::Sender<Completion>,
    /// Submitted override changes not committed yet, with their callers.
    pending: Mutex<Vec<PendingChange>>,
    /// Held by the one caller committing a group.
    commit_lock: tokio::sync::Mutex<()>,
    /// Reconciles started so far.
    pub runs_started: AtomicU64,
    /// Set by a DFP `reload`: apply even a config that failed before.
    reload_requested: AtomicBool,
    /// Override changes HAProxy rejected (and capstan dropped), newest last,
    /// for their callers to find.
    rejections: Mutex<VecDeque<Rejection>>,
}

/// An override change whose config `haproxy -c` rejected: it was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub service: String,
    /// The overrides generation that committed the change.
    pub generation: u64,
    /// What HAProxy said.
    pub message: String,
}

/// How many rejections are kept for callers that have not looked yet.
const REJECTIONS_KEPT: usize = 1024;

type PendingChange = (OverrideChange, oneshot::Sender<Result<u64, OverrideError>>);

/// The override set, its store, and a generation counting its changes.
pub struct Overrides {
    pub set: OverrideSet,
    pub generation: u64,
    store: OverrideStore,
    /// The set the last successful apply served; services whose override
    /// differs from it are pending: not known to be accepted by HAProxy.
    applied: OverrideSet,
    /// Per service, the generation of its latest change.
    changed_in: BTreeMap<String, u64>,
}

impl Overrides {
    /// Services whose override (or its absence) is not yet served.
    fn pending(&self, set: &OverrideSet) -> Vec<String> {
        let services: BTreeSet<&String> = set
            .overrides
            .keys()
            .chain(self.applied.overrides.keys())
            .collect();
        services
            .into_iter()
            .filter(|s| set.overrides.get(*s) != self.applied.overrides.get(*s))
            .cloned()
            .collect()
    }
}

/// `set` with `service`'s override as in `from` (present or absent).
fn take_override(set: &mut OverrideSet, from: &OverrideSet, service: &str) {
    match from.overrides.get(service) {
        Some(o) => set.overrides.insert(service.to_string(), o.clone()),
        None => set.overrides.remove(service),
    };
}

/// How a reconcile ended, for callers waiting on their override.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// The number of the reconcile (they count from 1).
    pub run: u64,
    /// The overrides generation the reconcile included.
    pub generation: u64,
    /// `None` when HAProxy serves the result.
    pub error: Option<String>,
    /// Why the desired state is unknown (fetching failed), if it is: HAProxy
    /// may serve the overrides, but not git's newest revision.
    pub fetch_error: Option<String>,
}

/// Why an override was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// With git's routes and the other overrides, the table would be invalid.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// The override set could not be saved.
    #[error("saving the overrides: {0}")]
    Store(String),
    /// `haproxy -c` rejected the config with the change: it was dropped.
    #[error("HAProxy rejected the config with this change, so it was dropped: {0}")]
    Rejected(String),
    /// Stored, but applying failed for a reason that may go away: retried.
    #[error("the change is stored but not applied yet: {0}")]
    NotApplied(String),
}

impl OverrideError {
    /// The HTTP status an API caller gets: 400 for what the caller sent
    /// (invalid, or rejected by HAProxy), 500 for capstan's side.
    pub fn is_client_error(&self) -> bool {
        matches!(self, OverrideError::Invalid(_) | OverrideError::Rejected(_))
    }
}

/// How long a caller waits for its change to be applied.
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);

impl Shared {
    /// Checks `change` against git and the other overrides, persists it,
    /// and asks for a reconcile. Returns the generation to wait for.
    ///
    /// Concurrent submissions are committed in groups: one check of the
    /// merged table and one atomic write for all of them (a change that
    /// breaks the table is then found and refused alone).
    async fn submit_override(&self, change: OverrideChange) -> Result<u64, OverrideError> {
        let (reply, answer) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending mutex")
            .push((change, reply));
        {
            let _committer = self.commit_lock.lock().await;
            self.commit_pending();
        }
        answer
            .await
            .unwrap_or_else(|_| Err(OverrideError::Store("the commit was lost".into())))
    }

    fn commit_pending(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().expect("pending mutex"));
        if batch.is_empty() {
            return;
        }
        let git = self
            .git_routes
            .lock()
            .expect("git mutex")
            .clone()
            .unwrap_or_else(RoutesFile::empty);
        let check = |set: &OverrideSet| {
            validate::check_semantics("overrides", &merge(&git, set, unix_now()).routes)
        };
        let mut overrides = self.overrides.lock().expect("overrides mutex");
        let mut candidate = overrides.set.clone();
        for (change, _) in &batch {
            change.apply(&mut candidate);
        }
        let mut outcomes: Vec<Result<(), Diagnostics>> = vec![Ok(()); batch.len()];
        if check(&candidate).is_err() {
            // Find the offenders: add the changes one by one.
            candidate = overrides.set.clone();
            for ((change, _), outcome) in batch.iter().zip(&mut outcomes) {
                let mut next = candidate.clone();
                change.apply(&mut next);
                match check(&next) {
                    Ok(()) => candidate = next,
                    Err(diagnostics) => *outcome = Err(diagnostics),
                }
            }
        }
        let saved = overrides.store.save(&candidate).map_err(|e| e.to_string());
        if saved.is_ok() {
            overrides.set = candidate;
            overrides.generation += 1;
            let generation = overrides.generation;
            for ((change, _), outcome) in batch.iter().zip(&outcomes) {
                if outcome.is_ok() {
                    overrides
                        .changed_in
                        .insert(change.service().to_string(), generation);
                }
            }
        }
        let generation = overrides.generation;
        drop(overrides);
        self.trigger.notify_one();
        for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
            let result = match (&saved, outcome) {
                (Err(e), _) => Err(OverrideError::Store(e.clone())),
                (Ok(()), Err(diagnostics)) => Err(OverrideError::Invalid(diagnostics)),
                (Ok(()), Ok(())) => Ok(generation),
            };
            let _ = reply.send(result);
        }
    }

    /// git's table with every override but `service`'s laid over it: what a
    /// new override of `service` is validated against.
    pub fn routes_without(&self, service: &str) -> RoutesFile {
        let mut set = self.overrides.lock().expect("overrides mutex").set.clone();
        set.overrides.remove(service);
        let git = self
            .git_routes
            .lock()
            .expect("git mutex")
            .clone()
            .unwrap_or_else(RoutesFile::empty);
        merge(&git, &set, unix_now()).routes
    }

    /// Waits until a reconcile that includes overrides `generation` finished.
    async fn wait_for(&self, generation: u64) -> Completion {
        self.completion(|c| c.generation >= generation).await
    }

    /// The first finished reconcile that satisfies `done`.
    async fn completion(&self, done: impl FnMut(&Completion) -> bool) -> Completion {
        let mut completed = self.completed.subscribe();
        let result = completed.wait_for(done).await;
        result.map(|c| c.clone()).unwrap_or_else(|_| Completion {
            error: Some("capstan is shutting down".into()),
            ..Completion::default()
        })
    }

    /// Submits `change` and waits until a reconcile including it finished:
    /// `Ok` when HAProxy serves it.
    pub async fn change_override(&self, change: OverrideChange) -> Result<(), OverrideError> {
        let service = change.service().to_string();
        let generation = self.submit_override(change).await?;
        let completion = tokio::time::timeout(APPLY_TIMEOUT, self.wait_for(generation)).await;
        if let Some(why) = self.rejection(&service, generation) {
            return Err(OverrideError::Rejected(why));
        }
        match completion {
            Ok(Completion { error: None, .. }) => Ok(()),
            Ok(Completion {
                error: Some(error), ..
            }) => Err(OverrideError::NotApplied(error)),
            Err(_) => Err(OverrideError::NotApplied(
                "not applied in time; see /v1/status".into(),
            )),
        }
    }

    /// Why HAProxy rejected `service`'s change committed in `generation`,
    /// if it did (the change was then dropped).
    fn rejection(&self, service: &str, generation: u64) -> Option<String> {
        self.rejections
            .lock()
            .expect("rejections mutex")
            .iter()
            .rev()
            .find(|r| r.service == service && r.generation == generation)
            .map(|r| r.message.clone())
    }

    /// Like [`Shared::request_fetch`], and the reconcile applies even a
    /// config that failed before (Docker Flow Proxy's `reload`).
    pub fn request_reload(&self) -> u64 {
        self.reload_requested.store(true, Ordering::SeqCst);
        self.request_fetch()
    }

    /// Asks for a fetch of git and a reconcile; returns what to pass to
    /// [`Shared::wait_for_run_after`].
    pub fn request_fetch(&self) -> u64 {
        let started = self.runs_started.load(Ordering::SeqCst);
        self.fetch_requested.store(true, Ordering::SeqCst);
        self.trigger.notify_one();
        started
    }

    /// Waits until a reconcile numbered above `run` finished.
    pub async fn wait_for_run_after(&self, run: u64) -> Completion {
        self.completion(|c| c.run > run).await
    }
}

/// Swarm as a source of servers: the client, and the networks the proxy shares.
pub struct SwarmSource {
    pub client: Swarm,
    /// Network names (or ids) the proxy is attached to; empty: every network
    /// of each service but `ingress`.
    pub networks: Vec<String>,
    /// Wake-ups from Docker events.
    pub events: mpsc::Receiver<()>,
    /// Also route services by their Docker Flow Swarm Listener labels.
    pub labels: bool,
}

pub struct Reconciler {
    source: RoutesSource,
    swarm: Option<SwarmSource>,
    state_dir: StateDir,
    haproxy: Haproxy,
    state: State,
    /// The last fetch, re-merged when only overrides changed.
    last_fetched: Option<Fetched>,
    /// Consecutive reconciles that failed for a reason that may go away.
    transient_failures: u32,
    pub shared: Arc<Shared>,
}

/// git's routes for one reconcile, with Swarm's view of them.
struct GitDesired {
    revision: RevisionInfo,
    file_name: String,
    /// git's routes, plus the routes of `com.df.*` labels.
    routes: RoutesFile,
    swarm: Option<SwarmState>,
    warnings: Vec<Warning>,
}

/// A desired config with what was merged into it.
struct Assembled {
    routes: RoutesFile,
    /// The override set laid over git.
    overrides: OverrideSet,
    desired: DesiredConfig,
    warnings: Vec<Warning>,
}

impl Reconciler {
    pub fn new(
        source: RoutesSource,
        state_dir: StateDir,
        haproxy: Haproxy,
        state: State,
        overrides: OverrideSet,
    ) -> Self {
        let status = Status {
            source: source.describe(),
            desired: None,
            applied: state.applied.as_ref().map(|a| AppliedInfo {
                revision: a.revision.clone(),
                at: a.at.clone(),
            }),
            in_sync: false,
            last_error: state.last_error.clone(),
            fetch: FetchStatus::default(),
            haproxy: HaproxyStatus::default(),
            pending_plan: None,
            overrides: Vec::new(),
            warnings: Vec::new(),
            label_routes: Vec::new(),
            history: recent(&state),
        };
        let applied_routes = state
            .applied
            .as_ref()
            .map(|a| (a.revision.clone(), a.routes.clone()));
        let store = OverrideStore::new(state_dir.root());
        Self {
            source,
            state_dir,
            haproxy,
            state,
            last_fetched: None,
            transient_failures: 0,
            swarm: None,
            shared: Arc::new(Shared {
                metrics: Metrics::default(),
                status: Mutex::new(status),
                trigger: Notify::new(),
                fetch_requested: AtomicBool::new(false),
                applied_routes: Mutex::new(applied_routes),
                overrides: Mutex::new(Overrides {
                    set: overrides,
                    generation: 0,
                    store,
                    // Nothing is known to serve until the first apply: a
                    // stored override HAProxy rejects is found then.
                    applied: OverrideSet::default(),
                    changed_in: BTreeMap::new(),
                }),
                git_routes: Mutex::new(None),
                completed: watch::channel(Completion::default()).0,
                runs_started: AtomicU64::new(0),
                pending: Mutex::new(Vec::new()),
                commit_lock: tokio::sync::Mutex::new(()),
                reload_requested: AtomicBool::new(false),
                rejections: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Takes each route's servers from the service's running tasks.
    pub fn with_swarm(mut self, swarm: SwarmSource) -> Self {
        self.swarm = Some(swarm);
        self
    }

    /// Reconciles now, then on every trigger and every `poll` interval;
    /// while fetching or applying fails for a reason that may go away,
    /// retries with exponential backoff up to `poll`. When the HAProxy it
    /// supervises dies, starts it again at once with the last applied config.
    pub async fn run(mut self, poll: Duration) {
        let mut fetch = true;
        let mut follow_up: Option<Instant> = None;
        loop {
            let result = self.reconcile(fetch).await;
            if result.is_err_and(|e| e.is_transient()) {
                self.transient_failures += 1;
            } else {
                self.transient_failures = 0;
            }
            let failures = self
                .transient_failures
                .max(self.status().fetch.consecutive_failures);
            let wait = if failures > 0 {
                let backoff = Duration::from_secs(1 << failures.min(6)).min(poll);
                self.status().fetch.retry_in_seconds = Some(backoff.as_secs());
                backoff
            } else {
                self.status().fetch.retry_in_seconds = None;
                poll
            };
            let wait = self.next_expiry().map_or(wait, |expiry| wait.min(expiry));
            let wait = follow_up.map_or(wait, |at: Instant| {
                wait.min(at.saturating_duration_since(Instant::now()))
            });
            let haproxy_exit = self.haproxy.exited();
            let swarm_event = async {
                match self.swarm.as_mut() {
                    Some(swarm) => swarm.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            let exit = tokio::select! {
                () = self.shared.trigger.notified() => {
                    fetch = self.shared.fetch_requested.swap(false, Ordering::SeqCst);
                    None
                }
                exit = haproxy_exit => {
                    fetch = false;
                    Some(exit)
                }
                Some(()) = swarm_event => {
                    // Tasks start and stop a moment after the event that
                    // announced them: look again shortly.
                    follow_up = Some(Instant::now() + SWARM_FOLLOW_UP);
                    fetch = false;
                    None
                }
                () = tokio::time::sleep(wait) => {
                    fetch = follow_up.is_none_or(|at| at > Instant::now());
                    if !fetch {
                        follow_up = None;
                    }
                    None
                }
            };
            if let Some(exit) = exit {
                self.restart_haproxy(exit).await;
            }
        }
    }

    /// HAProxy died: nothing serves until it runs again, so start it at
    /// once with the config on disk (the last one applied), and say so in
    /// the log, status, history and metrics. The reconcile that follows
    /// confirms what it serves.
    async fn restart_haproxy(&mut self, exit: MasterExit) {
        tracing::error!(%exit, "HAProxy died; starting it again with the last applied config");
        let started = Instant::now();
        self.status().in_sync = false;
        self.shared.metrics.in_sync.set(0);
        let result = self.haproxy.restart().await;
        self.shared
            .metrics
            .haproxy_restarts
            .get_or_create(&ResultLabel::of(&result))
            .inc();
        let duration_ms = millis(started.elapsed());
        match &result {
            Ok(master_pid) => {
                tracing::info!(master_pid, duration_ms, "HAProxy restarted")
            }
            Err(error) => {
                tracing::error!(%error, "HAProxy could not be restarted; retrying with backoff")
            }
        }
        let revision = self.state.applied.as_ref().map_or_else(
            || RevisionInfo {
                label: "nothing applied yet".into(),
                commit: None,
            },
            |a| a.revision.clone(),
        );
        self.state.record(ApplyRecord {
            revision,
            at: state::now(),
            method: Method::Restart,
            changes: vec![],
            changes_total: 0,
            outcome: if result.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            duration_ms,
            timings: Timings {
                apply_ms: duration_ms,
                ..Timings::default()
            },
            error: Some(match &result {
                Ok(_) => exit.to_string(),
                Err(error) => format!("{exit}; restarting failed: {error}"),
            }),
        });
        self.save();
        let mut status = self.status();
        status.haproxy.restarts += 1;
        status.haproxy.last_exit = Some(exit.to_string());
        status.haproxy.last_exit_at = Some(state::now());
        status.history = recent(&self.state);
    }

    /// Time until the next override expires.
    fn next_expiry(&self) -> Option<Duration> {
        let overrides = self.shared.overrides.lock().expect("overrides mutex");
        let next = overrides
            .set
            .overrides
            .values()
            .filter_map(|o| o.expires_at)
            .min()?;
        Some(Duration::from_secs(next.saturating_sub(unix_now())))
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.shared.status.lock().expect("status mutex")
    }

    /// One pass of the pipeline; `fetch` pulls git first, else the last
    /// fetched revision is merged with the current overrides again.
    pub async fn reconcile(&mut self, fetch: bool) -> Result<Method, ReconcileError> {
        let started = Instant::now();
        let run = self.shared.runs_started.fetch_add(1, Ordering::SeqCst) + 1;
        let generation = self
            .shared
            .overrides
            .lock()
            .expect("overrides mutex")
            .generation;
        let force = self.shared.reload_requested.swap(false, Ordering::SeqCst);
        let result = self.reconcile_inner(fetch, force).await;
        let metrics = &self.shared.metrics;
        metrics
            .reconciles
            .get_or_create(&ResultLabel::of(&result))
            .inc();
        metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
        let fetch_error = self.status().fetch.error.clone().map(|error| {
            format!(
                "fetching the routes failed: {error}; the desired state is unknown; still serving {}",
                self.serving_label()
            )
        });
        // Unknown desired state is not "in sync", whatever HAProxy serves.
        let in_sync = result.is_ok() && fetch_error.is_none();
        metrics.in_sync.set(i64::from(in_sync));
        self.status().in_sync = in_sync;
        let error = result.as_ref().err().map(|e| self.describe_failure(*e));
        self.shared.completed.send_replace(Completion {
            run,
            generation,
            error,
            fetch_error,
        });
        release_freed_memory();
        result
    }

    /// The message a waiting API caller gets for a failed reconcile.
    fn describe_failure(&self, error: ReconcileError) -> String {
        let status = self.status();
        match (&status.last_error, error) {
            (_, ReconcileError::Fetch) => status
                .fetch
                .error
                .clone()
                .unwrap_or_else(|| error.to_string()),
            (Some(last), _) => last.message.clone(),
            (None, _) => error.to_string(),
        }
    }

    async fn reconcile_inner(
        &mut self,
        fetch: bool,
        force: bool,
    ) -> Result<Method, ReconcileError> {
        let started = Instant::now();
        let fetched = self.fetch_routes(fetch).await?;
        let fetch_ms = millis(started.elapsed());
        let git = self.git_desired(fetched).await?;
        loop {
            let assembled = self.assemble(&git)?;
            for warning in &assembled.warnings {
                tracing::warn!(route = %warning.route, "{}", warning.message);
            }
            self.status().warnings = assembled.warnings.clone();
            let live = self.haproxy.observe().await;
            let plan = plan(&assembled.desired, &live);
            self.status().pending_plan = Some(plan.clone());

            if !force
                && let Some(error) = &self.state.last_error
                && error.marker.as_deref() == Some(assembled.desired.marker.as_str())
                && !plan.is_empty()
            {
                // HAProxy rejected this exact config: retrying every poll
                // would be a reload storm. Wait for a new desired state (or
                // an explicit reload).
                return Err(ReconcileError::AlreadyFailed);
            }

            let plan_ms = millis(started.elapsed()) - fetch_ms;
            let result = self.haproxy.apply(&assembled.desired, &plan, &live).await;
            if let Err(error) = &result
                && error.is_rejection()
                && self
                    .drop_rejected_overrides(&git, &assembled.overrides, error)
                    .await
            {
                // Once more, without the overrides HAProxy rejected.
                continue;
            }
            let timings = Timings {
                fetch_ms,
                plan_ms,
                check_ms: result.as_ref().map_or(0, |a| millis(a.check)),
                apply_ms: millis(started.elapsed()) - fetch_ms - plan_ms,
            };
            return self.finish(&git.revision, assembled, plan, result.map(|_| ()), timings);
        }
    }

    /// The routes as fetched: fresh from the source when `fetch`, else the
    /// last fetch. A failed fetch falls back to the last fetch (overrides
    /// still apply on top of it) and is reported in status.
    async fn fetch_routes(&mut self, fetch: bool) -> Result<Fetched, ReconcileError> {
        let fetched = match &self.last_fetched {
            Some(last) if !fetch => return Ok(last.clone()),
            _ => self.source.fetch().await,
        };
        match fetched {
            Ok(fetched) => {
                self.last_fetched = Some(fetched.clone());
                let mut status = self.status();
                status.fetch.last_success_at = Some(state::now());
                status.fetch.error = None;
                status.fetch.consecutive_failures = 0;
                status.fetch.failing_since = None;
                status.desired = Some(fetched.revision.clone());
                Ok(fetched)
            }
            Err(error) => {
                tracing::warn!(%error, "fetching routes failed; HAProxy keeps serving the last applied config");
                self.shared.metrics.git_fetch_errors.inc();
                let mut status = self.status();
                status.fetch.error = Some(error.to_string());
                status.fetch.consecutive_failures += 1;
                status.fetch.failing_since.get_or_insert_with(state::now);
                drop(status);
                self.last_fetched.clone().ok_or(ReconcileError::Fetch)
            }
        }
    }

    /// Validates git's routes and adds Swarm's view: the label routes and
    /// each service's tasks.
    async fn git_desired(&mut self, fetched: Fetched) -> Result<GitDesired, ReconcileError> {
        let revision = fetched.revision;
        let routes = match validate::load(&fetched.file_name, &fetched.text) {
            Ok(routes) => routes,
            Err(diagnostics) => {
                tracing::warn!(revision = %revision.label, "invalid routes, not applied:\n{diagnostics}");
                let message = format!(
                    "{} at {} is invalid ({} problem(s)); still serving {}",
                    fetched.file_name,
                    revision.label,
                    diagnostics.0.len(),
                    self.serving_label()
                );
                self.fail(revision, "validate", message, diagnostics.0, None, None);
                return Err(ReconcileError::Invalid);
            }
        };
        *self.shared.git_routes.lock().expect("git mutex") = Some(routes.clone());
        let swarm = match &self.swarm {
            Some(swarm) => match swarm.client.snapshot().await {
                Ok(state) => Some(state),
                Err(e) => {
                    let message =
                        format!("reading Swarm's services failed: {e}; HAProxy keeps its servers");
                    tracing::warn!("{message}");
                    self.fail(revision, "swarm", message, vec![], None, None);
                    return Err(ReconcileError::Swarm);
                }
            },
            None => None,
        };
        let mut warnings = Vec::new();
        let routes = match (&swarm, self.swarm.as_ref().is_some_and(|s| s.labels)) {
            (Some(state), true) => {
                let labelled = lay_labels_under(&routes, labels::label_routes(state));
                warnings.extend(labelled.warnings);
                self.status().label_routes = labelled.label_routes;
                labelled.routes
            }
            _ => routes,
        };
        Ok(GitDesired {
            revision,
            file_name: fetched.file_name,
            routes,
            swarm,
            warnings,
        })
    }

    /// Lays the overrides over git and renders the desired config.
    fn assemble(&mut self, git: &GitDesired) -> Result<Assembled, ReconcileError> {
        match self.merge_overrides(&git.routes) {
            Ok((routes, overrides)) => Ok(self.render(git, routes, overrides)),
            Err(diagnostics) => {
                let message = format!(
                    "{} at {} conflicts with the overrides ({} problem(s)); still serving {}; remove the override or fix git",
                    git.file_name,
                    git.revision.label,
                    diagnostics.0.len(),
                    self.serving_label()
                );
                tracing::warn!(revision = %git.revision.label, "{message}:\n{diagnostics}");
                self.fail(
                    git.revision.clone(),
                    "overrides",
                    message,
                    diagnostics.0,
                    None,
                    None,
                );
                Err(ReconcileError::Invalid)
            }
        }
    }

    /// The desired config for `routes`, each route served by its Swarm tasks.
    fn render(&self, git: &GitDesired, routes: RoutesFile, overrides: OverrideSet) -> Assembled {
        let mut warnings = git.warnings.clone();
        let endpoints = match (&git.swarm, &self.swarm) {
            (Some(state), Some(swarm)) => {
                let (endpoints, route_warnings) = servers::resolve(&routes, state, &swarm.networks);
                warnings.extend(route_warnings);
                endpoints
            }
            _ => TaskServers::new(),
        };
        let desired = DesiredConfig::new(
            render_with(&routes, &endpoints),
            self.haproxy.admin_socket(),
        );
        Assembled {
            routes,
            overrides,
            desired,
            warnings,
        }
    }

    /// HAProxy rejected a config that includes override changes it never
    /// served (`why` is what it said). Finds the changes it rejects
    /// (`haproxy -c` on git plus the served overrides, then adding the
    /// pending changes in halving groups) and drops them, so that one bad
    /// call never blocks the others or git. Returns whether any was dropped;
    /// none is when git itself is rejected.
    async fn drop_rejected_overrides(
        &mut self,
        git: &GitDesired,
        tried: &OverrideSet,
        why: &ApplyError,
    ) -> bool {
        let (pending, mut accepted) = {
            let overrides = self.shared.overrides.lock().expect("overrides mutex");
            let pending = overrides.pending(tried);
            let mut base = tried.clone();
            for service in &pending {
                take_override(&mut base, &overrides.applied, service);
            }
            (pending, base)
        };
        if pending.is_empty() || self.check_overrides(git, &accepted).await.is_err() {
            return false;
        }
        // A group with a verdict already, or `None` to ask HAProxy.
        let mut groups = VecDeque::from([(pending, Some(why.to_string()))]);
        let mut rejected = Vec::new();
        while let Some((group, verdict)) = groups.pop_front() {
            let mut candidate = accepted.clone();
            for service in &group {
                take_override(&mut candidate, tried, service);
            }
            let verdict = match verdict {
                Some(rejection) => Err(Verdict::Rejected(rejection)),
                None => self.check_overrides(git, &candidate).await,
            };
            match verdict {
                Ok(()) => accepted = candidate,
                Err(Verdict::Unknown(error)) => {
                    tracing::warn!(%error, "could not judge the pending overrides");
                    return false;
                }
                Err(Verdict::Rejected(message)) if group.len() == 1 => {
                    rejected.push((group[0].clone(), message));
                }
                Err(Verdict::Rejected(_)) => {
                    let (first, second) = group.split_at(group.len() / 2);
                    groups.push_front((second.to_vec(), None));
                    groups.push_front((first.to_vec(), None));
                }
            }
        }
        self.reject(tried, rejected)
    }

    /// Whether HAProxy accepts git with `overrides`.
    async fn check_overrides(
        &self,
        git: &GitDesired,
        overrides: &OverrideSet,
    ) -> Result<(), Verdict> {
        let routes = merge(&git.routes, overrides, unix_now()).routes;
        if let Err(diagnostics) = validate::check_semantics("overrides", &routes) {
            return Err(Verdict::Rejected(diagnostics.to_string()));
        }
        let assembled = self.render(git, routes, overrides.clone());
        match self.haproxy.check(&assembled.desired.text()).await {
            Ok(()) => Ok(()),
            Err(error) if error.is_rejection() => Err(Verdict::Rejected(error.to_string())),
            Err(error) => Err(Verdict::Unknown(error)),
        }
    }

    /// Drops the `rejected` services' changes in `tried` (restoring what was
    /// served), unless a newer change replaced one meanwhile, and keeps why
    /// for their callers. Returns whether any was dropped.
    fn reject(&mut self, tried: &OverrideSet, rejected: Vec<(String, String)>) -> bool {
        if rejected.is_empty() {
            return false;
        }
        let mut overrides = self.shared.overrides.lock().expect("overrides mutex");
        let mut rejections = self.shared.rejections.lock().expect("rejections mutex");
        for (service, message) in rejected {
            if overrides.set.overrides.get(&service) != tried.overrides.get(&service) {
                continue;
            }
            let applied = overrides.applied.clone();
            take_override(&mut overrides.set, &applied, &service);
            tracing::warn!(
                service,
                "HAProxy rejected this override; it was dropped:\n{message}"
            );
            let generation = overrides.changed_in.get(&service).copied().unwrap_or(0);
            if rejections.len() == REJECTIONS_KEPT {
                rejections.pop_front();
            }
            rejections.push_back(Rejection {
                service,
                generation,
                message,
            });
        }
        if let Err(error) = overrides.store.save(&overrides.set) {
            tracing::error!(%error, "could not save the overrides");
        }
        true
    }

    /// Records the apply of `assembled` and updates status.
    fn finish(
        &mut self,
        revision: &RevisionInfo,
        assembled: Assembled,
        plan: Plan,
        result: Result<(), ApplyError>,
        timings: Timings,
    ) -> Result<Method, ReconcileError> {
        let mut record = ApplyRecord {
            revision: revision.clone(),
            at: state::now(),
            method: plan.method,
            changes: plan
                .changes
                .iter()
                .take(RECORDED_CHANGES)
                .cloned()
                .collect(),
            changes_total: plan.changes.len(),
            outcome: Outcome::Ok,
            duration_ms: timings.fetch_ms + timings.plan_ms + timings.apply_ms,
            timings,
            error: None,
        };
        let metrics = &self.shared.metrics;
        match plan.method {
            Method::Reload => {
                metrics
                    .reloads
                    .get_or_create(&ResultLabel::of(&result))
                    .inc();
            }
            Method::Runtime => {
                let count = plan.changes.len() as u64;
                metrics
                    .runtime_operations
                    .get_or_create(&ResultLabel::of(&result))
                    .inc_by(count);
            }
            Method::Nothing | Method::Restart => {}
        }
        match result {
            Ok(()) => {
                if plan.method != Method::Nothing {
                    tracing::info!(
                        revision = %revision.label,
                        method = ?plan.method,
                        changes = plan.changes.len(),
                        duration_ms = record.duration_ms,
                        check_ms = record.timings.check_ms,
                        "applied"
                    );
                    self.state.record(record);
                }
                self.shared
                    .overrides
                    .lock()
                    .expect("overrides mutex")
                    .applied = assembled.overrides;
                self.succeed(revision.clone(), &assembled.desired, assembled.routes);
                Ok(plan.method)
            }
            Err(error) => {
                let stage = error.stage();
                let message = format!("{error}\nstill serving {}", self.serving_label());
                tracing::error!(revision = %revision.label, stage, "apply failed: {message}");
                record.outcome = Outcome::Failed;
                record.error = Some(error.to_string());
                self.state.record(record);
                // Only a config HAProxy rejects on its merits is remembered as
                // failed (and not retried until it changes); anything else may
                // go away and is retried.
                let rejected = error.is_rejection();
                let marker = rejected.then(|| assembled.desired.marker.clone());
                self.fail(revision.clone(), stage, message, vec![], marker, Some(plan));
                Err(if rejected {
                    ReconcileError::Rejected
                } else {
                    ReconcileError::Apply
                })
            }
        }
    }
    /// Lays the overrides over git's table. Expired overrides, and those git
    /// now declares itself, are dropped (and the store updated).
    fn merge_overrides(
        &mut self,
        git: &RoutesFile,
    ) -> Result<(RoutesFile, OverrideSet), Diagnostics> {
        let now = unix_now();
        let mut overrides = self.shared.overrides.lock().expect("overrides mutex");
        let merged = merge(git, &overrides.set, now);
        let stale: Vec<String> = overrides
            .set
            .overrides
            .values()
            .filter(|o| o.is_expired(now))
            .map(|o| o.service.clone())
            .chain(
                merged
                    .drift
                    .iter()
                    .filter(|d| d.redundant)
                    .map(|d| d.service.clone()),
            )
            .collect();
        if !stale.is_empty() {
            for service in &stale {
                tracing::info!(
                    service,
                    "dropping an override that expired or that git now declares"
                );
                overrides.set.overrides.remove(service);
            }
            if let Err(error) = overrides.store.save(&overrides.set) {
                tracing::error!(%error, "could not save the overrides");
            }
        }
        let set = overrides.set.clone();
        drop(overrides);
        let drift: Vec<Drift> = merged.drift.into_iter().filter(|d| !d.redundant).collect();
        self.status().overrides = drift;
        validate::check_semantics("overrides", &merged.routes)?;
        Ok((merged.routes, set))
    }

    fn serving_label(&self) -> String {
        self.state
            .applied
            .as_ref()
            .map_or("nothing yet".to_string(), |a| a.revision.label.clone())
    }

    fn succeed(&mut self, revision: RevisionInfo, desired: &DesiredConfig, routes: RoutesFile) {
        let unchanged = self
            .state
            .applied
            .as_ref()
            .is_some_and(|a| a.revision == revision && a.marker == desired.marker);
        if !unchanged || self.state.last_error.is_some() {
            let at = state::now();
            self.state.applied = Some(state::Applied {
                revision: revision.clone(),
                marker: desired.marker.clone(),
                at: at.clone(),
                routes: routes.clone(),
            });
            self.state.last_error = None;
            self.save();
            let mut status = self.status();
            status.applied = Some(AppliedInfo {
                revision: revision.clone(),
                at,
            });
            status.last_error = None;
            status.history = recent(&self.state);
            drop(status);
            *self.shared.applied_routes.lock().expect("routes mutex") = Some((revision, routes));
            let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
            self.shared.metrics.last_successful_apply.set(now);
        }
        self.status().pending_plan = Some(Plan {
            method: Method::Nothing,
            changes: vec![],
        });
    }

    fn fail(
        &mut self,
        revision: RevisionInfo,
        stage: &str,
        message: String,
        diagnostics: Vec<crate::model::diagnostics::Diagnostic>,
        marker: Option<String>,
        pending: Option<Plan>,
    ) {
        let error = LastError {
            revision: Some(revision),
            stage: stage.to_string(),
            message,
            diagnostics,
            marker,
            at: state::now(),
        };
        self.state.last_error = Some(error.clone());
        self.save();
        let mut status = self.status();
        status.last_error = Some(error);
        if pending.is_some() {
            status.pending_plan = pending;
        }
        status.history = recent(&self.state);
    }

    fn save(&self) {
        if let Err(error) = self.state_dir.save(&self.state) {
            tracing::error!(%error, "could not save capstan's state");
        }
    }
}

/// A reconcile of a large table allocates tens of megabytes for a moment
/// (parsed YAML, rendered configs); glibc keeps freed memory mapped, so hand
/// it back between reconciles to keep capstan's resident size small.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            safe fn malloc_trim(pad: usize) -> i32;
        }
        malloc_trim(0);
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What HAProxy says of a candidate config.
enum Verdict {
    /// `haproxy -c` (or capstan's own checks) rejects it, saying why.
    Rejected(String),
    /// HAProxy could not be asked (e.g. a full disk).
    Unknown(ApplyError),
}

/// Why a reconcile did not bring HAProxy in sync. Details are in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    #[error("fetching the routes failed")]
    Fetch,
    #[error("the routes are invalid")]
    Invalid,
    #[error("HAProxy rejected the config")]
    Rejected,
    /// For a reason that may go away: retried with backoff.
    #[error("applying failed")]
    Apply,
    #[error("this config already failed to apply; waiting for a new revision")]
    AlreadyFailed,
    #[error("reading Swarm failed")]
    Swarm,
}

impl ReconcileError {
    /// Failures that may go away by themselves: retried with backoff.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ReconcileError::Fetch | ReconcileError::Apply | ReconcileError::Swarm
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::overrides::{Action, Override};

    fn remove(service: &str, created_at: &str) -> Override {
        Override {
            service: service.into(),
            action: Action::Remove,
            created_at: created_at.into(),
            expires_at: None,
        }
    }

    fn set(overrides: &[Override]) -> OverrideSet {
        OverrideSet {
            overrides: overrides
                .iter()
                .map(|o| (o.service.clone(), o.clone()))
                .collect(),
        }
    }

    #[test]
    fn pending_overrides_are_those_haproxy_has_not_served() {
        let served = set(&[remove("a", "t1"), remove("b", "t1"), remove("gone", "t1")]);
        let overrides = Overrides {
            set: OverrideSet::default(),
            generation: 0,
            store: OverrideStore::new(std::path::Path::new("/nonexistent")),
            applied: served.clone(),
            changed_in: BTreeMap::new(),
        };
        // `a` unchanged, `b` changed, `gone` deleted, `new` added.
        let tried = set(&[remove("a", "t1"), remove("b", "t2"), remove("new", "t2")]);
        assert_eq!(overrides.pending(&tried), ["b", "gone", "new"]);

        // Restoring what was served undoes each kind of change.
        let mut restored = tried.clone();
        for service in overrides.pending(&tried) {
            take_override(&mut restored, &served, &service);
        }
        assert_eq!(restored, served);
        assert!(overrides.pending(&restored).is_empty());
    }

    #[test]
    fn only_failures_that_may_go_away_are_retried() {
        assert!(ReconcileError::Fetch.is_transient());
        assert!(ReconcileError::Apply.is_transient());
        assert!(ReconcileError::Swarm.is_transient());
        assert!(!ReconcileError::Rejected.is_transient());
        assert!(!ReconcileError::Invalid.is_transient());
        assert!(!ReconcileError::AlreadyFailed.is_transient());
        assert!(ApplyError::Check("x".into()).is_rejection());
        assert!(!ApplyError::PortInUse(80).is_rejection());
        assert!(!ApplyError::Start("x".into()).is_rejection());
    }
}
