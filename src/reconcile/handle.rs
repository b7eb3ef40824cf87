//! What the HTTP API and the loop share: status, the override set and its
//! callers, triggers and completions. Every field is private; the API calls
//! methods, and no lock guard leaves this module.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};

use super::certificates::CertificateRegistry;
use super::status::Status;
use crate::desired::overlay::{check_overlay, overlay};
use crate::metrics::Metrics;
use crate::model::RoutesFile;
use crate::model::diagnostics::Diagnostics;
use crate::plan::{Change, Method};
use crate::sources::RevisionInfo;
use crate::sources::overrides::swarm_store::{Shared, SwarmStore};
use crate::sources::overrides::{OverrideChange, OverrideSet, OverrideStore, StoreError};
use crate::sources::swarm_snapshot::SwarmState;
use crate::sources::swarm_task::TaskIdentity;
use crate::util::unix_now;

/// How long a caller waits for its change to be applied.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// How many rejections are kept for callers that have not looked yet.
const REJECTIONS_KEPT: usize = 1024;

/// Shared state between the reconcile loop and the HTTP API.
pub struct ReconcilerHandle {
    metrics: Metrics,
    status: Mutex<Status>,
    /// Wakes the loop for a reconcile now (webhook, API).
    trigger: Notify,
    /// Set with `trigger` when git must be fetched again (a webhook); an
    /// override change alone re-merges the last fetched revision.
    fetch_requested: AtomicBool,
    /// Set by a DFP `reload`: apply even a config that failed before.
    reload_requested: AtomicBool,
    /// The routes HAProxy serves (git and overrides merged), for `capstan diff --live`.
    applied_routes: Mutex<Option<(RevisionInfo, RoutesFile)>>,
    overrides: Mutex<Overrides>,
    /// Where the overrides are kept; written by one writer at a time (the
    /// holder of `commit_lock`), so that what it writes is a change from
    /// what it read.
    store: OverrideStore,
    /// git's last valid table: overrides are validated against it when submitted.
    git_routes: Mutex<Option<RoutesFile>>,
    /// The last finished reconcile: which overrides it included, and how it ended.
    completed: watch::Sender<Completion>,
    /// Submitted override changes not committed yet, with their callers.
    pending: Mutex<Vec<PendingChange>>,
    /// Held by the one writer of the override set (a caller committing a
    /// group, the loop dropping overrides, a refresh from Swarm).
    commit_lock: tokio::sync::Mutex<()>,
    /// Reconciles started so far.
    runs_started: AtomicU64,
    /// Override changes HAProxy rejected (and capstan dropped), newest last,
    /// for their callers to find.
    rejections: Mutex<VecDeque<Rejection>>,
    /// Uploaded certificates, and what HAProxy serves of every certificate.
    certificates: CertificateRegistry,
    /// The last Swarm snapshot read, for the tasks behind servers.
    swarm: Mutex<Option<Arc<SwarmState>>>,
    /// New backends a spare backend serves until the next reload: backend → spare.
    lent_spares: Mutex<BTreeMap<String, String>>,
}

/// An override change whose config `haproxy -c` rejected: it was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rejection {
    service: String,
    /// The overrides generation that committed the change.
    generation: u64,
    /// What HAProxy said.
    message: String,
}

type PendingChange = (OverrideChange, oneshot::Sender<Result<u64, OverrideError>>);

/// The override set, and a generation counting its changes.
struct Overrides {
    set: OverrideSet,
    generation: u64,
    /// The set the last successful apply served; services whose override
    /// differs from it are pending: not known to be accepted by HAProxy.
    served: OverrideSet,
    /// Per service, the generation of its latest change.
    changed_in: BTreeMap<String, u64>,
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

/// What one reconcile starts from.
pub(super) struct RunStart {
    pub run: u64,
    pub generation: u64,
    /// Apply even a config HAProxy rejected before.
    pub force: bool,
}

/// Why an override was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// With git's routes and the other overrides, the table would be invalid.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// The override set could not be saved.
    #[error("saving the overrides: {0}")]
    Store(#[source] std::sync::Arc<StoreError>),
    /// The commit of the change was lost (capstan is shutting down).
    #[error("saving the overrides: the commit was lost")]
    Lost,
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

/// A poisoned lock only means a panic elsewhere; the data is still whole.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ReconcilerHandle {
    pub(super) fn new(
        status: Status,
        applied_routes: Option<(RevisionInfo, RoutesFile)>,
        overrides: OverrideSet,
        store: OverrideStore,
        certificates: CertificateRegistry,
    ) -> Self {
        Self {
            metrics: Metrics::default(),
            status: Mutex::new(status),
            trigger: Notify::new(),
            fetch_requested: AtomicBool::new(false),
            reload_requested: AtomicBool::new(false),
            applied_routes: Mutex::new(applied_routes),
            overrides: Mutex::new(Overrides {
                set: overrides,
                generation: 0,
                // Nothing is known to serve until the first apply: a stored
                // override HAProxy rejects is found then.
                served: OverrideSet::default(),
                changed_in: BTreeMap::new(),
            }),
            store,
            git_routes: Mutex::new(None),
            completed: watch::channel(Completion::default()).0,
            pending: Mutex::new(Vec::new()),
            commit_lock: tokio::sync::Mutex::new(()),
            runs_started: AtomicU64::new(0),
            rejections: Mutex::new(VecDeque::new()),
            certificates,
            swarm: Mutex::new(None),
            lent_spares: Mutex::new(BTreeMap::new()),
        }
    }

    /// Uploaded certificates, and what HAProxy serves of every certificate.
    pub fn certificates(&self) -> &CertificateRegistry {
        &self.certificates
    }

    /// Asks for a reconcile of the last fetched revision (the certificates
    /// changed); returns what to pass to [`ReconcilerHandle::wait_for_run_after`].
    pub fn request_reconcile(&self) -> u64 {
        let started = self.runs_started.load(Ordering::SeqCst);
        self.trigger.notify_one();
        started
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What `GET /v1/status` shows.
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// Status shows which Swarm task this capstan runs in.
    pub fn set_replica(&self, task: TaskIdentity) {
        lock(&self.status).replica = Some(task);
    }

    /// The revision and routes HAProxy serves, once anything was applied.
    pub fn applied_routes(&self) -> Option<(RevisionInfo, RoutesFile)> {
        lock(&self.applied_routes).clone()
    }

    /// The last Swarm snapshot read, when Swarm discovery is on.
    pub fn swarm_snapshot(&self) -> Option<Arc<SwarmState>> {
        lock(&self.swarm).clone()
    }

    /// Backends a spare backend serves until the next reload: backend → spare.
    pub fn lent_spares(&self) -> BTreeMap<String, String> {
        lock(&self.lent_spares).clone()
    }

    /// The overrides in force.
    pub fn overrides(&self) -> OverrideSet {
        lock(&self.overrides).set.clone()
    }

    pub fn has_override(&self, service: &str) -> bool {
        lock(&self.overrides).set.overrides.contains_key(service)
    }

    /// Whether git's last valid table routes `service`.
    pub fn git_declares(&self, service: &str) -> bool {
        lock(&self.git_routes)
            .as_ref()
            .is_some_and(|git| git.routes.iter().any(|r| r.service.as_str() == service))
    }

    /// git's table with every override but `service`'s laid over it: what a
    /// new override of `service` is validated against.
    pub fn routes_without(&self, service: &str) -> RoutesFile {
        let mut set = self.overrides();
        set.overrides.remove(service);
        overlay(&self.git_table(), &set, unix_now()).routes
    }

    fn git_table(&self) -> RoutesFile {
        lock(&self.git_routes)
            .clone()
            .unwrap_or_else(RoutesFile::empty)
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

    /// Like [`ReconcilerHandle::request_fetch`], and the reconcile applies
    /// even a config that failed before (Docker Flow Proxy's `reload`).
    pub fn request_reload(&self) -> u64 {
        self.reload_requested.store(true, Ordering::SeqCst);
        self.request_fetch()
    }

    /// Asks for a fetch of git and a reconcile; returns what to pass to
    /// [`ReconcilerHandle::wait_for_run_after`].
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

    /// Checks `change` against git and the other overrides, persists it,
    /// and asks for a reconcile. Returns the generation to wait for.
    ///
    /// Concurrent submissions are committed in groups: one check of the
    /// merged table and one atomic write for all of them (a change that
    /// breaks the table is then found and refused alone).
    async fn submit_override(&self, change: OverrideChange) -> Result<u64, OverrideError> {
        let (reply, answer) = oneshot::channel();
        lock(&self.pending).push((change, reply));
        {
            let _writer = self.commit_lock.lock().await;
            self.commit_pending().await;
        }
        answer.await.unwrap_or(Err(OverrideError::Lost))
    }

    async fn commit_pending(&self) {
        let batch = std::mem::take(&mut *lock(&self.pending));
        if batch.is_empty() {
            return;
        }
        let git = self.git_table();
        let check = |set: &OverrideSet| check_overlay(&overlay(&git, set, unix_now()));
        let current = self.overrides();
        let mut candidate = current.clone();
        for (change, _) in &batch {
            change.apply(&mut candidate);
        }
        let mut outcomes: Vec<Result<(), Diagnostics>> = vec![Ok(()); batch.len()];
        if check(&candidate).is_err() {
            // Find the offenders: add the changes one by one.
            candidate = current.clone();
            for ((change, _), outcome) in batch.iter().zip(&mut outcomes) {
                let mut next = candidate.clone();
                change.apply(&mut next);
                match check(&next) {
                    Ok(()) => candidate = next,
                    Err(diagnostics) => *outcome = Err(diagnostics),
                }
            }
        }
        let saved = self
            .store
            .save(&current, &candidate)
            .await
            .map_err(std::sync::Arc::new);
        let mut overrides = lock(&self.overrides);
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
        if saved.is_ok() {
            self.overrides_changed();
        }
        for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
            let result = match (&saved, outcome) {
                (Err(e), _) => Err(OverrideError::Store(e.clone())),
                (Ok(()), Err(diagnostics)) => Err(OverrideError::Invalid(diagnostics)),
                (Ok(()), Ok(())) => Ok(generation),
            };
            let _ = reply.send(result);
        }
    }

    /// Reads the overrides other replicas share through Swarm and serves
    /// them: a change one of them made is reconciled here too.
    pub async fn refresh_shared(&self, store: &SwarmStore) -> Result<Shared, StoreError> {
        let _writer = self.commit_lock.lock().await;
        let shared = store.load().await?;
        let mut overrides = lock(&self.overrides);
        if overrides.set != shared.overrides {
            let changed = pending(&overrides.set, &shared.overrides);
            tracing::info!(services = ?changed, "overrides changed by another replica");
            overrides.set = shared.overrides.clone();
            overrides.generation += 1;
            let generation = overrides.generation;
            for service in changed {
                overrides.changed_in.insert(service, generation);
            }
            drop(overrides);
            self.overrides_changed();
        }
        Ok(shared)
    }

    /// The override set changed: not in sync until a reconcile applies it.
    fn overrides_changed(&self) {
        self.mark_out_of_sync();
        self.trigger.notify_one();
    }

    /// Not in sync, in status and metrics, until a reconcile says otherwise.
    pub(super) fn mark_out_of_sync(&self) {
        self.update_status(|status| status.in_sync = false);
        self.metrics.in_sync.set(0);
    }

    /// Records whether the shared overrides could be read; while they
    /// cannot, the desired state is unknown and capstan is not in sync.
    pub(super) fn set_store_error(&self, error: Option<String>) {
        let failing = error.is_some();
        let cleared = self.update_status(|status| {
            let cleared = status.overrides_store.error.is_some() && !failing;
            status.overrides_store.error = error;
            cleared
        });
        if failing {
            self.mark_out_of_sync();
        }
        if cleared {
            // The next reconcile tells whether capstan is in sync again.
            self.trigger.notify_one();
        }
    }

    /// Passes a push webhook on to the other replicas, when the overrides
    /// are shared through Swarm: they fetch git at once, not at their next poll.
    pub async fn pass_on_fetch(&self) {
        if let OverrideStore::Swarm(store) = &self.store
            && let Err(error) = store.signal_fetch().await
        {
            tracing::warn!(%error, "could not pass the push webhook on to the other replicas");
        }
    }

    /// The loop's own change to the overrides: made by `edit`, then saved;
    /// a failure to save is logged (the change stays in force here, and is
    /// saved with the next change).
    async fn edit_for_loop(&self, edit: impl FnOnce(&mut Overrides)) {
        let _writer = self.commit_lock.lock().await;
        let (before, after) = {
            let mut overrides = lock(&self.overrides);
            let before = overrides.set.clone();
            edit(&mut overrides);
            (before, overrides.set.clone())
        };
        if let Err(error) = self.store.save(&before, &after).await {
            tracing::error!(%error, "could not save the overrides");
        }
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

    /// Why HAProxy rejected `service`'s change committed in `generation`,
    /// if it did (the change was then dropped).
    fn rejection(&self, service: &str, generation: u64) -> Option<String> {
        lock(&self.rejections)
            .iter()
            .rev()
            .find(|r| r.service == service && r.generation == generation)
            .map(|r| r.message.clone())
    }

    // The loop's side.

    pub(super) fn update_status<R>(&self, change: impl FnOnce(&mut Status) -> R) -> R {
        change(&mut lock(&self.status))
    }

    /// Waits for a trigger; returns whether git must be fetched again.
    pub(super) async fn triggered(&self) -> bool {
        self.trigger.notified().await;
        self.fetch_requested.swap(false, Ordering::SeqCst)
    }

    pub(super) fn start_run(&self) -> RunStart {
        RunStart {
            run: self.runs_started.fetch_add(1, Ordering::SeqCst) + 1,
            generation: lock(&self.overrides).generation,
            force: self.reload_requested.swap(false, Ordering::SeqCst),
        }
    }

    /// Counts the changes of the override set.
    pub(super) fn overrides_generation(&self) -> u64 {
        lock(&self.overrides).generation
    }

    pub(super) fn complete(&self, completion: Completion) {
        self.completed.send_replace(completion);
    }

    pub(super) fn set_git_routes(&self, routes: RoutesFile) {
        *lock(&self.git_routes) = Some(routes);
    }

    pub(super) fn set_swarm(&self, swarm: SwarmState) {
        *lock(&self.swarm) = Some(Arc::new(swarm));
    }

    /// HAProxy serves what `method` applied: a reload (or a restart) gives
    /// every backend its own name again, run-time changes may lend spares.
    pub(super) fn served_with(&self, method: Method, changes: &[Change]) {
        let mut lent = lock(&self.lent_spares);
        match method {
            Method::Reload | Method::Restart => lent.clear(),
            Method::Runtime => {
                for change in changes {
                    if let Change::LendSpareBackend { backend, spare } = change {
                        lent.insert(backend.clone(), spare.clone());
                    }
                }
            }
            Method::Nothing => {}
        }
    }

    pub(super) fn set_applied_routes(&self, revision: RevisionInfo, routes: RoutesFile) {
        *lock(&self.applied_routes) = Some((revision, routes));
    }

    /// The set HAProxy now serves: nothing in it is pending any more.
    pub(super) fn served(&self, set: OverrideSet) {
        lock(&self.overrides).served = set;
    }

    /// Drops overrides that expired or that git now declares, judged in
    /// `judged` (unless changed since), and saves.
    pub(super) async fn drop_stale(&self, judged: &OverrideSet, stale: &[String]) {
        if stale.is_empty() {
            return;
        }
        self.edit_for_loop(|overrides| {
            for service in stale {
                if overrides.set.overrides.get(service) != judged.overrides.get(service) {
                    continue;
                }
                tracing::info!(
                    service,
                    "dropping an override that expired or that git now declares"
                );
                overrides.set.overrides.remove(service);
            }
        })
        .await;
    }

    /// The services of `tried` whose override HAProxy never served, and
    /// `tried` with each of them restored to what was served.
    pub(super) fn pending_in(&self, tried: &OverrideSet) -> (Vec<String>, OverrideSet) {
        let overrides = lock(&self.overrides);
        let pending = pending(&overrides.served, tried);
        let mut base = tried.clone();
        for service in &pending {
            take_override(&mut base, &overrides.served, service);
        }
        (pending, base)
    }

    /// Drops the `rejected` services' changes in `tried` (restoring what was
    /// served), unless a newer change replaced one meanwhile, and keeps why
    /// for their callers. Returns whether any was dropped.
    pub(super) async fn reject(
        &self,
        tried: &OverrideSet,
        rejected: Vec<(String, String)>,
    ) -> bool {
        if rejected.is_empty() {
            return false;
        }
        self.edit_for_loop(|overrides| {
            let mut rejections = lock(&self.rejections);
            for (service, message) in rejected {
                if overrides.set.overrides.get(&service) != tried.overrides.get(&service) {
                    continue;
                }
                let served = overrides.served.clone();
                take_override(&mut overrides.set, &served, &service);
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
        })
        .await;
        true
    }

    /// Time until the next override expires.
    pub(super) fn next_expiry(&self) -> Option<Duration> {
        let next = lock(&self.overrides)
            .set
            .overrides
            .values()
            .filter_map(|o| o.expires_at)
            .min()?;
        Some(Duration::from_secs(next.saturating_sub(unix_now())))
    }
}

/// Services whose override (or its absence) in `set` is not what `served` has.
fn pending(served: &OverrideSet, set: &OverrideSet) -> Vec<String> {
    let services: BTreeSet<&String> = set
        .overrides
        .keys()
        .chain(served.overrides.keys())
        .collect();
    services
        .into_iter()
        .filter(|s| set.overrides.get(*s) != served.overrides.get(*s))
        .cloned()
        .collect()
}

/// `set` with `service`'s override as in `from` (present or absent).
pub(super) fn take_override(set: &mut OverrideSet, from: &OverrideSet, service: &str) {
    match from.overrides.get(service) {
        Some(o) => set.overrides.insert(service.to_string(), o.clone()),
        None => set.overrides.remove(service),
    };
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
        // `a` unchanged, `b` changed, `gone` deleted, `new` added.
        let tried = set(&[remove("a", "t1"), remove("b", "t2"), remove("new", "t2")]);
        assert_eq!(pending(&served, &tried), ["b", "gone", "new"]);

        // Restoring what was served undoes each kind of change.
        let mut restored = tried.clone();
        for service in pending(&served, &tried) {
            take_override(&mut restored, &served, &service);
        }
        assert_eq!(restored, served);
        assert!(pending(&served, &restored).is_empty());
    }
}
