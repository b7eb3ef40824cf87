//! The reconcile loop: fetch the desired routes, validate, render, observe
//! live, plan, apply, remember. One reconcile runs at a time; triggers that
//! arrive meanwhile coalesce into one more run, which fetches the latest
//! desired state, so nothing is lost and the newest commit wins.
//!
//! * `step`: the decisions, pure (fallback after a failed fetch, the
//!   desired config, the already-failed guard); overrides meet git in
//!   `desired::overlay`.
//! * `handle`: what the API shares with the loop, behind methods.
//! * `status`: what `GET /v1/status` shows.
//! * this module: the I/O around them (sources, Swarm, HAProxy, the state
//!   dir, metrics, logs).

mod certificates;
mod handle;
mod shared;
mod status;
mod step;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};

pub use certificates::{CertificateRegistry, UploadError};
pub use handle::{APPLY_TIMEOUT, Completion, OverrideError, ReconcilerHandle};
pub use shared::follow_shared;
pub use status::{AppliedInfo, FetchStatus, HaproxyStatus, OverridesStoreStatus, Status};

use crate::desired::overlay::{check_overlay, lay_labels_under, overlay};
use crate::dfp::SecretsDir;
use crate::haproxy::driver::{ApplyError, Haproxy};
use crate::haproxy::process::MasterExit;
use crate::metrics::ResultLabel;
use crate::model::RoutesFile;
use crate::model::diagnostics::{Diagnostic, Diagnostics};
use crate::model::validate::{self, LoadCache};
use crate::plan::{Change, DesiredConfig, LiveState, Method, Plan};
use crate::sources::overrides::{OverrideSet, OverrideStore};
use crate::sources::swarm::{Swarm, SwarmError};
use crate::sources::user_files::{UserlistError, UserlistFiles};
use crate::sources::{Fetched, RevisionInfo, RoutesSource, SourceError, Warning, labels};
use crate::state::{
    self, ApplyRecord, LastError, Outcome, RECORDED_CHANGES, State, StateDir, Timings,
};
use crate::util::{self, unix_now};
use certificates::{TlsDesired, Verdicts, tls_desired};
use status::recent;
use step::{Assembled, Decision, Fetch, GitDesired, SwarmView};

/// The longest wait between retries of a failing reconcile (or `--poll-interval`).
const RETRY_MAX: Duration = Duration::from_secs(64);

/// How long after a Docker event capstan looks at Swarm once more.
const SWARM_FOLLOW_UP: Duration = Duration::from_millis(750);

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
    /// Where labels' `com.df.usersSecret` files are.
    pub secrets_dir: SecretsDir,
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
    handle: Arc<ReconcilerHandle>,
    /// Reads the userlists that are files and hashes their passwords.
    userlist_files: UserlistFiles,
    /// What HAProxy said of each directory certificate, by content.
    verdicts: Verdicts,
    /// What the last routes file loaded to, by text: a reconcile with the
    /// same file (a Swarm change, an override, a poll that found no new
    /// commit) does not parse and check thousands of routes again, nor a
    /// commit that changed a few of them.
    loaded: LoadCache,
    /// Told after every reconcile; freed memory is handed back once it
    /// has been quiet for a while (see [`trim_when_quiet`]).
    reconciled: Arc<Notify>,
}

impl Reconciler {
    pub fn new(
        source: RoutesSource,
        state_dir: StateDir,
        haproxy: Haproxy,
        state: State,
        overrides: OverrideSet,
        store: OverrideStore,
    ) -> Self {
        let status = Status {
            replica: None,
            source: source.describe(),
            desired: None,
            applied: state.applied.as_ref().map(|a| AppliedInfo {
                revision: a.revision.clone(),
                marker: a.marker.clone(),
                at: a.at.clone(),
            }),
            in_sync: false,
            last_error: state.last_error.clone(),
            fetch: FetchStatus::default(),
            haproxy: HaproxyStatus::default(),
            pending_plan: None,
            overrides: Vec::new(),
            overrides_store: OverridesStoreStatus {
                location: store.describe(),
                error: None,
            },
            warnings: Vec::new(),
            label_routes: Vec::new(),
            certificates: Vec::new(),
            history: recent(&state),
        };
        let applied_routes = state
            .applied
            .as_ref()
            .map(|a| (a.revision.clone(), a.routes.clone()));
        let userlist_files = UserlistFiles::new(state_dir.root());
        let certificates = CertificateRegistry::open(state_dir.root(), haproxy.binary());
        Self {
            source,
            state_dir,
            haproxy,
            state,
            last_fetched: None,
            transient_failures: 0,
            swarm: None,
            handle: Arc::new(ReconcilerHandle::new(
                status,
                applied_routes,
                overrides,
                store,
                certificates,
            )),
            userlist_files,
            verdicts: Verdicts::default(),
            loaded: LoadCache::default(),
            reconciled: Arc::new(Notify::new()),
        }
    }

    /// Takes each route's servers from the service's running tasks.
    pub fn with_swarm(mut self, swarm: SwarmSource) -> Self {
        self.swarm = Some(swarm);
        self
    }

    /// What the API uses to read status and submit changes.
    pub fn handle(&self) -> Arc<ReconcilerHandle> {
        self.handle.clone()
    }

    /// Runs the loop (see [`Reconciler::run`]) until `stop` resolves, even
    /// mid-reconcile, and returns the HAProxy it drove: the caller decides
    /// whether it keeps serving or is stopped, and nothing restarts it.
    pub async fn run_until(mut self, poll: Duration, stop: impl Future<Output = ()>) -> Haproxy {
        tokio::select! {
            () = self.run(poll) => {}
            () = stop => {}
        }
        self.haproxy
    }

    /// Reconciles now, then on every trigger and every `poll` interval;
    /// while fetching or applying fails for a reason that may go away,
    /// retries with exponential backoff up to `poll`. When the HAProxy it
    /// supervises dies, starts it again at once with the last applied config.
    async fn run(&mut self, poll: Duration) {
        tokio::spawn(trim_when_quiet(self.reconciled.clone()));
        let mut fetch = true;
        let mut follow_up: Option<Instant> = None;
        loop {
            let wait = self.reconcile(fetch, poll).await;
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
                fetch_requested = self.handle.triggered() => {
                    fetch = fetch_requested;
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

    /// One pass of the pipeline (`fetch` pulls git first, else the last
    /// fetched revision is merged with the current overrides again); returns
    /// how long to wait before the next unprompted one.
    async fn reconcile(&mut self, fetch: bool, poll: Duration) -> Duration {
        let started = Instant::now();
        let run = self.handle.start_run();
        let result = self.reconcile_inner(fetch, run.force).await;
        let metrics = self.handle.metrics();
        metrics
            .reconciles
            .get_or_create(&ResultLabel::of(&result))
            .inc();
        metrics
            .reconcile_seconds
            .observe(started.elapsed().as_secs_f64());
        let fetch_error = self.handle.update_status(|s| s.fetch.error.clone());
        let fetch_error = fetch_error.map(|error| {
            format!(
                "fetching the routes failed: {error}; the desired state is unknown; still serving {}",
                self.serving_label()
            )
        });
        let store_error = self
            .handle
            .update_status(|s| s.overrides_store.error.clone());
        // Unknown desired state is not "in sync", whatever HAProxy serves;
        // nor are overrides that changed during the run.
        let in_sync = result.is_ok()
            && fetch_error.is_none()
            && store_error.is_none()
            && self.handle.overrides_generation() == run.generation;
        metrics.in_sync.set(i64::from(in_sync));
        if result.as_ref().is_err_and(ReconcileError::is_transient) {
            self.transient_failures += 1;
        } else {
            self.transient_failures = 0;
        }
        let wait = self.handle.update_status(|status| {
            status.in_sync = in_sync;
            let failures = self
                .transient_failures
                .max(status.fetch.consecutive_failures);
            let backoff = (failures > 0)
                .then(|| util::backoff(failures, Duration::from_secs(1), RETRY_MAX.min(poll)));
            status.fetch.retry_in_seconds = backoff.map(|b| b.as_secs());
            backoff.unwrap_or(poll)
        });
        self.handle.complete(Completion {
            run: run.run,
            generation: run.generation,
            error: result.err().map(|e| e.to_string()),
            fetch_error,
        });
        self.reconciled.notify_one();
        self.handle
            .next_expiry()
            .map_or(wait, |expiry| wait.min(expiry))
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
            let assembled = self.assemble(&git).await?;
            for warning in &assembled.warnings {
                tracing::warn!(route = %warning.route, "{}", warning.message);
            }
            let live = self.haproxy.observe(&assembled.desired.marker).await;
            let failed_marker = self
                .state
                .last_error
                .as_ref()
                .and_then(|e| e.marker.as_deref());
            let decision = step::decide(&assembled.desired, &live, failed_marker, force);
            let plan = match decision {
                Decision::Apply(plan) => {
                    // Status must not say "in sync" with the old state while
                    // HAProxy already serves part of the new one.
                    if !plan.is_empty() {
                        self.handle.mark_out_of_sync();
                    }
                    plan
                }
                Decision::AlreadyFailed(plan) => {
                    self.show_pending(&assembled, plan);
                    let message = self.state.last_error.as_ref().map(|e| e.message.clone());
                    return Err(ReconcileError::AlreadyFailed(message.unwrap_or_default()));
                }
            };
            self.show_pending(&assembled, plan.clone());
            let plan_ms = millis(started.elapsed()) - fetch_ms;
            let result = self.haproxy.apply(&assembled.desired, &plan, &live).await;
            if result.is_ok() {
                self.record_certificates(&assembled.desired, &plan, &live)
                    .await;
            }
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

    /// What HAProxy serves of each certificate now, for status and `GET /certs`.
    async fn record_certificates(&self, desired: &DesiredConfig, plan: &Plan, live: &LiveState) {
        let changed = plan.method == Method::Reload
            || plan.changes.iter().any(|c| {
                matches!(
                    c,
                    Change::AddCertificate { .. }
                        | Change::ReplaceCertificate { .. }
                        | Change::RemoveCertificate { .. }
                )
            });
        let served = if changed {
            self.haproxy.served_certificates().await
        } else {
            live.certificates.clone()
        };
        let registry = self.handle.certificates();
        registry.set_served(&desired.certificates, served.as_ref());
        let infos = registry.infos();
        self.handle
            .update_status(|status| status.certificates = infos);
    }

    fn show_pending(&self, assembled: &Assembled, plan: Plan) {
        self.handle.update_status(|status| {
            status.warnings = assembled.warnings.clone();
            status.pending_plan = Some(plan);
        });
    }

    /// The routes as fetched: fresh from the source when `fetch`, else the
    /// last fetch. A failed fetch falls back to the last fetch (overrides
    /// still apply on top of it) and is reported in status.
    async fn fetch_routes(&mut self, fetch: bool) -> Result<Fetched, ReconcileError> {
        let result = match &self.last_fetched {
            Some(last) if !fetch => return Ok(last.clone()),
            _ => self.source.fetch().await,
        };
        match step::after_fetch(result, self.last_fetched.as_ref()) {
            Fetch::Fresh(fetched) => {
                self.last_fetched = Some(fetched.clone());
                self.handle.update_status(|status| {
                    status.fetch.last_success_at = Some(state::now());
                    status.fetch.error = None;
                    status.fetch.consecutive_failures = 0;
                    status.fetch.failing_since = None;
                    status.desired = Some(fetched.revision.clone());
                });
                Ok(fetched)
            }
            Fetch::Stale { last, error } => {
                self.fetch_failed(&error);
                Ok(last)
            }
            Fetch::Unknown(error) => {
                self.fetch_failed(&error);
                Err(ReconcileError::Fetch(error))
            }
        }
    }

    fn fetch_failed(&self, error: &SourceError) {
        tracing::warn!(%error, "fetching routes failed; HAProxy keeps serving the last applied config");
        self.handle.metrics().git_fetch_errors.inc();
        self.handle.update_status(|status| {
            status.fetch.error = Some(error.to_string());
            status.fetch.consecutive_failures += 1;
            status.fetch.failing_since.get_or_insert_with(state::now);
        });
    }

    /// Validates git's routes and adds Swarm's view: the label routes and
    /// each service's tasks.
    async fn git_desired(&mut self, fetched: Fetched) -> Result<GitDesired, ReconcileError> {
        let revision = fetched.revision;
        let routes = match validate::load_again(&fetched.file_name, &fetched.text, &mut self.loaded)
        {
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
                return Err(self.invalid(revision, "validate", message, diagnostics));
            }
        };
        self.handle.set_git_routes(routes.clone());
        let swarm = match &self.swarm {
            Some(swarm) => match swarm.client.snapshot().await {
                Ok(state) => {
                    self.handle.set_swarm(state.clone());
                    Some(SwarmView {
                        state,
                        networks: swarm.networks.clone(),
                    })
                }
                Err(source) => {
                    let message = format!(
                        "reading Swarm's services failed: {source}; HAProxy keeps its servers"
                    );
                    tracing::warn!("{message}");
                    self.fail(revision, "swarm", message.clone(), vec![], None, None);
                    return Err(ReconcileError::Swarm { message, source });
                }
            },
            None => None,
        };
        let mut warnings = Vec::new();
        let labels = self.swarm.as_ref().filter(|s| s.labels);
        let file_only = swarm.is_none() || labels.is_none();
        let routes = match (&swarm, labels) {
            (Some(view), Some(source)) => {
                let labelled = lay_labels_under(
                    &routes,
                    labels::label_routes(&view.state, &source.secrets_dir),
                );
                warnings.extend(labelled.warnings);
                self.handle
                    .update_status(|status| status.label_routes = labelled.label_routes);
                labelled.routes
            }
            _ => routes,
        };
        let tls = self.desired_certificates(&routes).await;
        warnings.extend(tls.warnings.iter().cloned());
        Ok(GitDesired {
            revision,
            file_name: fetched.file_name,
            routes,
            file_only,
            swarm,
            warnings,
            tls,
        })
    }

    /// The certificates of capstan's crt-list: the uploaded ones, then those
    /// of routes.yaml's `certificate_dirs` that HAProxy can load.
    async fn desired_certificates(&mut self, routes: &RoutesFile) -> TlsDesired {
        let registry = self.handle.certificates();
        let mut certificates = registry.uploaded();
        let mut warnings = registry.damaged().to_vec();
        let dirs = routes
            .defaults
            .https
            .as_ref()
            .map_or(&[][..], |h| &h.certificate_dirs);
        let scanned = crate::tls::dirs::scan(dirs);
        warnings.extend(scanned.warnings);
        for certificate in scanned.certificates {
            match self.verdicts.judge(registry, &certificate.pem).await {
                None => certificates.push(certificate),
                Some(why) => warnings.push(Warning {
                    route: certificate.path.display().to_string(),
                    message: format!("certificate skipped: HAProxy cannot load it: {why}"),
                }),
            }
        }
        tls_desired(routes, certificates, self.haproxy.crt_list_file(), warnings)
    }

    /// Lays the overrides over git (dropping stale ones) and renders the
    /// desired config.
    async fn assemble(&mut self, git: &GitDesired) -> Result<Assembled, ReconcileError> {
        let overrides = self.handle.overrides();
        let overlay = overlay(&git.routes, &overrides, unix_now());
        self.handle.drop_stale(&overrides, &overlay.stale).await;
        let drift = overlay.drift.clone();
        self.handle.update_status(|status| status.overrides = drift);
        // git's file alone passed these checks when it was validated. With
        // no override in force, the overlay is git's routes unchanged.
        let only_git = (git.file_only && overrides.overrides.is_empty())
            || self.loaded.last() == Some(&overlay.routes);
        let checked = if only_git {
            Ok(())
        } else {
            check_overlay(&overlay)
        };
        if let Err(diagnostics) = checked {
            let message = format!(
                "{} at {} conflicts with the overrides ({} problem(s)); still serving {}; remove the override or fix git",
                git.file_name,
                git.revision.label,
                diagnostics.0.len(),
                self.serving_label()
            );
            tracing::warn!(revision = %git.revision.label, "{message}:\n{diagnostics}");
            return Err(self.invalid(git.revision.clone(), "overrides", message, diagnostics));
        }
        let file_users = match self.userlist_files.read(&overlay.routes) {
            Ok(users) => users,
            Err(source) => {
                let message = format!("{source}; still serving {}", self.serving_label());
                tracing::warn!(revision = %git.revision.label, "{message}");
                self.fail(
                    git.revision.clone(),
                    "users",
                    message.clone(),
                    vec![],
                    None,
                    None,
                );
                return Err(ReconcileError::Users { message, source });
            }
        };
        Ok(step::assemble(
            git,
            overlay.routes,
            overlay.overrides,
            file_users,
            &self.haproxy_files(),
        ))
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
        let (pending, mut accepted) = self.handle.pending_in(tried);
        if pending.is_empty() || self.check_overrides(git, &accepted).await.is_err() {
            return false;
        }
        // A group with a verdict already, or `None` to ask HAProxy.
        let mut groups = VecDeque::from([(pending, Some(why.to_string()))]);
        let mut rejected = Vec::new();
        while let Some((group, verdict)) = groups.pop_front() {
            let mut candidate = accepted.clone();
            for service in &group {
                handle::take_override(&mut candidate, tried, service);
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
        self.handle.reject(tried, rejected).await
    }

    /// Whether HAProxy accepts git with `overrides`.
    async fn check_overrides(
        &self,
        git: &GitDesired,
        overrides: &OverrideSet,
    ) -> Result<(), Verdict> {
        let overlay = overlay(&git.routes, overrides, unix_now());
        if let Err(diagnostics) = check_overlay(&overlay) {
            return Err(Verdict::Rejected(diagnostics.to_string()));
        }
        let file_users = self
            .userlist_files
            .read(&overlay.routes)
            .map_err(|e| Verdict::Rejected(e.to_string()))?;
        let assembled = step::assemble(
            git,
            overlay.routes,
            overrides.clone(),
            file_users,
            &self.haproxy_files(),
        );
        match self.haproxy.check(&assembled.desired).await {
            Ok(()) => Ok(()),
            Err(error) if error.is_rejection() => Err(Verdict::Rejected(error.to_string())),
            Err(error) => Err(Verdict::Unknown(error)),
        }
    }

    /// The files the rendered config names, where the HAProxy driven has them.
    fn haproxy_files(&self) -> step::HaproxyFiles {
        step::HaproxyFiles {
            admin_socket: self.haproxy.admin_socket().to_path_buf(),
            maps_dir: self.haproxy.maps_dir(),
        }
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
        self.count_apply(&plan, &result);
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
                self.handle.served(assembled.overrides);
                self.handle.served_with(plan.method, &plan.changes);
                self.succeed(revision.clone(), &assembled.desired, assembled.routes);
                Ok(plan.method)
            }
            Err(source) => {
                let stage = source.stage();
                let message = format!("{source}\nstill serving {}", self.serving_label());
                tracing::error!(revision = %revision.label, stage, "apply failed: {message}");
                record.outcome = Outcome::Failed;
                record.error = Some(source.to_string());
                self.state.record(record);
                // Only a config HAProxy rejects on its merits is remembered as
                // failed (and not retried until it changes); anything else may
                // go away and is retried.
                let rejected = source.is_rejection();
                let marker = rejected.then(|| assembled.desired.marker.clone());
                self.fail(
                    revision.clone(),
                    stage,
                    message.clone(),
                    vec![],
                    marker,
                    Some(plan),
                );
                Err(if rejected {
                    ReconcileError::Rejected { message, source }
                } else {
                    ReconcileError::Apply { message, source }
                })
            }
        }
    }

    fn count_apply(&self, plan: &Plan, result: &Result<(), ApplyError>) {
        let metrics = self.handle.metrics();
        match plan.method {
            Method::Reload => {
                metrics
                    .reloads
                    .get_or_create(&ResultLabel::of(result))
                    .inc();
            }
            Method::Runtime => {
                let count = plan.changes.len() as u64;
                metrics
                    .runtime_operations
                    .get_or_create(&ResultLabel::of(result))
                    .inc_by(count);
            }
            Method::Nothing | Method::Restart => {}
        }
    }

    /// HAProxy died: nothing serves until it runs again, so start it at
    /// once with the config on disk (the last one applied), and say so in
    /// the log, status, history and metrics. The reconcile that follows
    /// confirms what it serves.
    async fn restart_haproxy(&mut self, exit: MasterExit) {
        tracing::error!(%exit, "HAProxy died; starting it again with the last applied config");
        let started = Instant::now();
        self.handle.mark_out_of_sync();
        let result = self.haproxy.restart().await;
        self.handle
            .metrics()
            .haproxy_restarts
            .get_or_create(&ResultLabel::of(&result))
            .inc();
        let duration_ms = millis(started.elapsed());
        match &result {
            Ok(master_pid) => {
                self.handle.served_with(Method::Restart, &[]);
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
                details: None,
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
        self.handle.update_status(|status| {
            status.haproxy.restarts += 1;
            status.haproxy.last_exit = Some(exit.to_string());
            status.haproxy.last_exit_at = Some(state::now());
            status.history = recent(&self.state);
        });
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
            self.handle.update_status(|status| {
                status.applied = Some(AppliedInfo {
                    revision: revision.clone(),
                    marker: desired.marker.clone(),
                    at,
                });
                status.last_error = None;
                status.history = recent(&self.state);
            });
            self.handle.set_applied_routes(revision, routes);
            let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
            self.handle.metrics().last_successful_apply.set(now);
        }
        self.handle.update_status(|status| {
            status.pending_plan = Some(Plan {
                method: Method::Nothing,
                changes: vec![],
            })
        });
    }

    /// Records routes that cannot be served, and the error to return.
    fn invalid(
        &mut self,
        revision: RevisionInfo,
        stage: &str,
        message: String,
        diagnostics: Diagnostics,
    ) -> ReconcileError {
        self.fail(
            revision,
            stage,
            message.clone(),
            diagnostics.0.clone(),
            None,
            None,
        );
        ReconcileError::Invalid {
            message,
            diagnostics,
        }
    }

    fn fail(
        &mut self,
        revision: RevisionInfo,
        stage: &str,
        message: String,
        diagnostics: Vec<Diagnostic>,
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
        self.handle.update_status(|status| {
            status.last_error = Some(error);
            if pending.is_some() {
                status.pending_plan = pending;
            }
            status.history = recent(&self.state);
        });
    }

    fn save(&self) {
        if let Err(error) = self.state_dir.save(&self.state) {
            tracing::error!(%error, "could not save capstan's state");
        }
    }
}

/// How long reconciles must have been quiet before freed memory is handed
/// back to the system.
const TRIM_AFTER_QUIET: Duration = Duration::from_secs(2);

/// A reconcile of a large table allocates tens of megabytes for a moment
/// (parsed YAML, rendered configs), and the allocator keeps freed memory
/// mapped. Handing it back after every reconcile made the next one of a
/// burst pay page faults to map it again (~25 ms at 10,000 routes); so it
/// is handed back once `reconciled` has been quiet for [`TRIM_AFTER_QUIET`].
async fn trim_when_quiet(reconciled: Arc<Notify>) {
    loop {
        reconciled.notified().await;
        while tokio::time::timeout(TRIM_AFTER_QUIET, reconciled.notified())
            .await
            .is_ok()
        {}
        let _ = tokio::task::spawn_blocking(release_freed_memory).await;
    }
}

/// Both heaps: mimalloc's (the binary's allocator) and glibc's (what C
/// libraries such as libgit2 allocate).
fn release_freed_memory() {
    // SAFETY: mi_collect takes no pointers; it only returns mimalloc's free
    // pages, and is a no-op for a heap it never used.
    unsafe { libmimalloc_sys::mi_collect(true) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            safe fn malloc_trim(pad: usize) -> i32;
        }
        malloc_trim(0);
    }
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

/// Why a reconcile did not bring HAProxy in sync; its text is what a
/// waiting API caller is told.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Fetch(SourceError),
    #[error("{message}")]
    Invalid {
        message: String,
        diagnostics: Diagnostics,
    },
    #[error("{message}")]
    Rejected {
        message: String,
        #[source]
        source: ApplyError,
    },
    /// For a reason that may go away: retried with backoff.
    #[error("{message}")]
    Apply {
        message: String,
        #[source]
        source: ApplyError,
    },
    /// The config HAProxy rejected before, unchanged; says what it said then.
    #[error("{0}")]
    AlreadyFailed(String),
    #[error("{message}")]
    Swarm {
        message: String,
        #[source]
        source: SwarmError,
    },
    /// A userlist's file could not be read: it may appear or be fixed.
    #[error("{message}")]
    Users {
        message: String,
        #[source]
        source: UserlistError,
    },
}

impl ReconcileError {
    /// Failures that may go away by themselves: retried with backoff.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ReconcileError::Fetch(_)
                | ReconcileError::Apply { .. }
                | ReconcileError::Swarm { .. }
                | ReconcileError::Users { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_that_may_go_away_are_retried() {
        let message = String::new();
        let missing = SourceError::MissingFile {
            file: "routes.yaml".into(),
            branch: "main".into(),
        };
        assert!(ReconcileError::Fetch(missing).is_transient());
        let apply = |source| ReconcileError::Apply {
            message: message.clone(),
            source,
        };
        assert!(apply(ApplyError::PortInUse(80)).is_transient());
        let rejected = ReconcileError::Rejected {
            message: message.clone(),
            source: ApplyError::PortInUse(80),
        };
        assert!(!rejected.is_transient());
        let invalid = ReconcileError::Invalid {
            message: message.clone(),
            diagnostics: Diagnostics(vec![]),
        };
        assert!(!invalid.is_transient());
        assert!(!ReconcileError::AlreadyFailed(message).is_transient());
    }
}
