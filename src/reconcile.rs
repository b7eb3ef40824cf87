//! The reconcile loop: fetch the desired routes, validate, render, observe
//! live, plan, apply, remember. One reconcile runs at a time; triggers that
//! arrive meanwhile coalesce into one more run, which fetches the latest
//! desired state, so nothing is lost and the newest commit wins.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::apply::Haproxy;
use crate::diagnostics::Diagnostics;
use crate::endpoints::{self, Endpoints, Warning};
use crate::metrics::{Metrics, ResultLabel};
use crate::model::RoutesFile;
use crate::overrides::{Drift, OverrideChange, OverrideSet, OverrideStore, merge};
use crate::plan::{DesiredConfig, Method, Plan, plan};
use crate::render::render_with;
use crate::sources::git::{GitError, RemoteRepo};
use crate::state::{
    self, ApplyRecord, LastError, Outcome, RECORDED_CHANGES, RevisionInfo, State, StateDir, Timings,
};
use crate::swarm::Swarm;
use crate::validate;

/// Where the desired routes come from.
pub enum RoutesSource {
    /// A file in a git repository, at the tip of a branch.
    Git {
        url: String,
        repo: Arc<Mutex<RemoteRepo>>,
        branch: String,
        file: String,
    },
    /// A file on disk, re-read on every reconcile.
    File(PathBuf),
    /// The example table built into capstan.
    Embedded,
}

/// Desired routes as fetched, before validation.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub revision: RevisionInfo,
    /// The name diagnostics mention.
    pub file_name: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} does not exist on branch {branch}")]
    MissingFile { file: String, branch: String },
}

impl RoutesSource {
    pub async fn fetch(&self) -> Result<Fetched, SourceError> {
        match self {
            RoutesSource::Git {
                repo, branch, file, ..
            } => {
                let (repo, branch, file) = (repo.clone(), branch.clone(), file.clone());
                tokio::task::spawn_blocking(move || {
                    let repo = repo.lock().expect("git mutex");
                    let revision = repo.fetch(&branch)?;
                    let commit = revision.commit.clone().unwrap_or_default();
                    let text = repo.read_file(&commit, &file)?.ok_or_else(|| {
                        SourceError::MissingFile {
                            file: file.clone(),
                            branch: branch.clone(),
                        }
                    })?;
                    Ok(Fetched {
                        revision: RevisionInfo {
                            label: revision.label(),
                            commit: revision.commit,
                        },
                        file_name: file,
                        text,
                    })
                })
                .await
                .expect("the git task does not panic")
            }
            RoutesSource::File(path) => {
                let text =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|source| SourceError::Read {
                            path: path.clone(),
                            source,
                        })?;
                Ok(content_addressed(&path.display().to_string(), text))
            }
            RoutesSource::Embedded => Ok(content_addressed(
                "<embedded routes.yaml>",
                crate::EMBEDDED_ROUTES.to_string(),
            )),
        }
    }

    pub fn describe(&self) -> SourceInfo {
        match self {
            RoutesSource::Git {
                url, branch, file, ..
            } => SourceInfo {
                kind: "git",
                location: url.clone(),
                branch: Some(branch.clone()),
                file: file.clone(),
            },
            RoutesSource::File(path) => SourceInfo {
                kind: "file",
                location: path.display().to_string(),
                branch: None,
                file: path.display().to_string(),
            },
            RoutesSource::Embedded => SourceInfo {
                kind: "embedded",
                location: "built into capstan".into(),
                branch: None,
                file: "routes.yaml".into(),
            },
        }
    }
}

/// A file outside git is identified by a hash of its content.
fn content_addressed(name: &str, text: String) -> Fetched {
    let digest = Sha256::digest(text.as_bytes());
    let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    Fetched {
        revision: RevisionInfo {
            label: format!("{name} (sha256 {short})"),
            commit: None,
        },
        file_name: name.to_string(),
        text,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    pub kind: &'static str,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub file: String,
}

/// The state of git fetching, for status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FetchStatus {
    pub last_success_at: Option<String>,
    pub error: Option<String>,
    pub consecutive_failures: u32,
    /// Seconds until the next attempt, while failing.
    pub retry_in_seconds: Option<u64>,
}

/// What `GET /v1/status` and `capstan status` show.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub source: SourceInfo,
    /// The newest revision fetched, valid or not.
    pub desired: Option<RevisionInfo>,
    /// The revision HAProxy serves.
    pub applied: Option<AppliedInfo>,
    /// HAProxy serves the newest desired revision.
    pub in_sync: bool,
    pub last_error: Option<LastError>,
    pub fetch: FetchStatus,
    /// What the next apply would do; `nothing` when in sync.
    pub pending_plan: Option<Plan>,
    /// Overrides in force and how they differ from git.
    pub overrides: Vec<Drift>,
    /// Swarm-side problems with routes (a missing service, no running task).
    pub warnings: Vec<Warning>,
    /// Routes declared by `com.df.*` service labels (under git's, under overrides).
    pub label_routes: Vec<String>,
    /// The latest applies, newest first.
    pub history: Vec<ApplyRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppliedInfo {
    pub revision: RevisionInfo,
    pub at: String,
}

/// The applies status shows, newest first.
fn recent(state: &State) -> Vec<ApplyRecord> {
    state.history.iter().take(STATUS_HISTORY).cloned().collect()
}

/// How long after a Docker event capstan looks at Swarm once more.
const SWARM_FOLLOW_UP: Duration = Duration::from_millis(750);

/// How many applies status shows.
const STATUS_HISTORY: usize = 20;

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
}

type PendingChange = (OverrideChange, oneshot::Sender<Result<u64, OverrideError>>);

/// The override set, its store, and a generation counting its changes.
pub struct Overrides {
    pub set: OverrideSet,
    pub generation: u64,
    store: OverrideStore,
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
}

impl Shared {
    /// Checks `change` against git and the other overrides, persists it,
    /// and asks for a reconcile. Returns the generation to wait for.
    ///
    /// Concurrent submissions are committed in groups: one check of the
    /// merged table and one atomic write for all of them (a change that
    /// breaks the table is then found and refused alone).
    pub async fn submit_override(&self, change: OverrideChange) -> Result<u64, OverrideError> {
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
    pub async fn wait_for(&self, generation: u64) -> Completion {
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
    pub shared: Arc<Shared>,
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
                }),
                git_routes: Mutex::new(None),
                completed: watch::channel(Completion::default()).0,
                runs_started: AtomicU64::new(0),
                pending: Mutex::new(Vec::new()),
                commit_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Takes each route's servers from the service's running tasks.
    pub fn with_swarm(mut self, swarm: SwarmSource) -> Self {
        self.swarm = Some(swarm);
        self
    }

    /// Reconciles now, then on every trigger and every `poll` interval; while
    /// fetching fails, retries with exponential backoff up to `poll`.
    pub async fn run(mut self, poll: Duration) {
        let mut fetch = true;
        let mut follow_up: Option<Instant> = None;
        loop {
            let _ = self.reconcile(fetch).await;
            let failures = self.status().fetch.consecutive_failures;
            let wait = if failures > 0 {
                let backoff = Duration::from_secs(1 << failures.min(6)).min(poll);
                self.status().fetch.retry_in_seconds = Some(backoff.as_secs());
                backoff
            } else {
                poll
            };
            let wait = self.next_expiry().map_or(wait, |expiry| wait.min(expiry));
            let wait = follow_up.map_or(wait, |at: Instant| {
                wait.min(at.saturating_duration_since(Instant::now()))
            });
            let swarm_event = async {
                match self.swarm.as_mut() {
                    Some(swarm) => swarm.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            fetch = tokio::select! {
                () = self.shared.trigger.notified() => {
                    self.shared.fetch_requested.swap(false, Ordering::SeqCst)
                }
                Some(()) = swarm_event => {
                    // Tasks start and stop a moment after the event that
                    // announced them: look again shortly.
                    follow_up = Some(Instant::now() + SWARM_FOLLOW_UP);
                    false
                }
                () = tokio::time::sleep(wait) => {
                    if follow_up.is_some_and(|at| at <= Instant::now()) {
                        follow_up = None;
                        false
                    } else {
                        true
                    }
                }
            };
        }
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

    /// One pass of the pipeline.
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
        let result = self.reconcile_inner(fetch).await;
        let metrics = &self.shared.metrics;
        metrics
            .reconciles
            .get_or_create(&ResultLabel::of(&result))
            .inc();
        metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
        let in_sync = result.is_ok();
        metrics.in_sync.set(i64::from(in_sync));
        self.status().in_sync = in_sync;
        let error = result.as_ref().err().map(|e| self.describe_failure(*e));
        self.shared.completed.send_replace(Completion {
            run,
            generation,
            error,
        });
        release_freed_memory();
        result
    }

    /// The message a waiting API caller gets for a failed reconcile.
    fn describe_failure(&self, error: ReconcileError) -> String {
        let status = self.status();
        match (&status.last_error, error) {
            (
                Some(last),
                ReconcileError::Invalid
                | ReconcileError::Apply
                | ReconcileError::AlreadyFailed
                | ReconcileError::Swarm,
            ) => last.message.clone(),
            _ => status
                .fetch
                .error
                .clone()
                .unwrap_or_else(|| error.to_string()),
        }
    }

    async fn reconcile_inner(&mut self, fetch: bool) -> Result<Method, ReconcileError> {
        let started = Instant::now();
        let fetched = match &self.last_fetched {
            Some(last) if !fetch => Ok(last.clone()),
            _ => self.source.fetch().await,
        };
        let fetched = match fetched {
            Ok(fetched) => {
                self.last_fetched = Some(fetched.clone());
                let mut status = self.status();
                status.fetch.last_success_at = Some(state::now());
                status.fetch.error = None;
                status.fetch.consecutive_failures = 0;
                status.fetch.retry_in_seconds = None;
                status.desired = Some(fetched.revision.clone());
                drop(status);
                fetched
            }
            Err(error) => {
                tracing::warn!(%error, "fetching routes failed; HAProxy keeps serving the last applied config");
                self.shared.metrics.git_fetch_errors.inc();
                let mut status = self.status();
                status.fetch.error = Some(error.to_string());
                status.fetch.consecutive_failures += 1;
                drop(status);
                // Overrides still apply on top of the last revision fetched.
                match &self.last_fetched {
                    Some(last) => last.clone(),
                    None => return Err(ReconcileError::Fetch),
                }
            }
        };
        let fetch_ms = millis(started.elapsed());
        let revision = fetched.revision.clone();
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
        let swarm_state = match &self.swarm {
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
        let routes = match (&swarm_state, self.swarm.as_ref().is_some_and(|s| s.labels)) {
            (Some(state), true) => {
                let (table, label_warnings) = endpoints::with_label_routes(&routes, state);
                warnings.extend(label_warnings);
                self.status().label_routes = table.routes[routes.routes.len()..]
                    .iter()
                    .map(|r| r.id().0)
                    .collect();
                table
            }
            _ => routes,
        };
        let routes = match self.merge_overrides(&routes) {
            Ok(routes) => routes,
            Err(diagnostics) => {
                let message = format!(
                    "{} at {} conflicts with the overrides ({} problem(s)); still serving {}; remove the override or fix git",
                    fetched.file_name,
                    revision.label,
                    diagnostics.0.len(),
                    self.serving_label()
                );
                tracing::warn!(revision = %revision.label, "{message}:\n{diagnostics}");
                self.fail(revision, "overrides", message, diagnostics.0, None, None);
                return Err(ReconcileError::Invalid);
            }
        };
        let endpoints = match (&swarm_state, &self.swarm) {
            (Some(state), Some(swarm)) => {
                let (endpoints, route_warnings) =
                    endpoints::resolve(&routes, state, &swarm.networks);
                warnings.extend(route_warnings);
                endpoints
            }
            _ => Endpoints::new(),
        };
        for warning in &warnings {
            tracing::warn!(route = %warning.route, "{}", warning.message);
        }
        self.status().warnings = warnings;
        let desired = DesiredConfig::new(
            render_with(&routes, &endpoints),
            self.haproxy.admin_socket(),
        );
        let live = self.haproxy.observe().await;
        let plan = plan(&desired, &live);
        self.status().pending_plan = Some(plan.clone());

        if let Some(error) = &self.state.last_error
            && error.marker.as_deref() == Some(desired.marker.as_str())
            && !plan.is_empty()
        {
            // This exact config already failed to apply: retrying every poll
            // would be a reload storm. Wait for a new desired state.
            return Err(ReconcileError::AlreadyFailed);
        }

        let plan_ms = millis(started.elapsed()) - fetch_ms;
        let result = self.haproxy.apply(&desired, &plan, &live).await;
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
            duration_ms: millis(started.elapsed()),
            timings: Timings {
                fetch_ms,
                plan_ms,
                check_ms: result.as_ref().map_or(0, |a| millis(a.check)),
                apply_ms: millis(started.elapsed()) - fetch_ms - plan_ms,
            },
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
            Method::Nothing => {}
        }
        match result {
            Ok(_) => {
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
                self.succeed(revision, &desired, routes);
                Ok(plan.method)
            }
            Err(error) => {
                let stage = error.stage();
                let message = format!("{error}\nstill serving {}", self.serving_label());
                tracing::error!(revision = %revision.label, stage, "apply failed: {message}");
                record.outcome = Outcome::Failed;
                record.error = Some(error.to_string());
                self.state.record(record);
                self.fail(
                    revision,
                    stage,
                    message,
                    vec![],
                    Some(desired.marker.clone()),
                    Some(plan),
                );
                Err(ReconcileError::Apply)
            }
        }
    }

    /// Lays the overrides over git's table. Expired overrides, and those git
    /// now declares itself, are dropped (and the store updated).
    fn merge_overrides(&mut self, git: &RoutesFile) -> Result<RoutesFile, Diagnostics> {
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
        drop(overrides);
        let drift: Vec<Drift> = merged.drift.into_iter().filter(|d| !d.redundant).collect();
        self.status().overrides = drift;
        validate::check_semantics("overrides", &merged.routes)?;
        Ok(merged.routes)
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
        diagnostics: Vec<crate::diagnostics::Diagnostic>,
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

/// Why a reconcile did not bring HAProxy in sync. Details are in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    #[error("fetching the routes failed")]
    Fetch,
    #[error("the routes are invalid")]
    Invalid,
    #[error("applying failed")]
    Apply,
    #[error("this config already failed to apply; waiting for a new revision")]
    AlreadyFailed,
    #[error("reading Swarm failed")]
    Swarm,
}
