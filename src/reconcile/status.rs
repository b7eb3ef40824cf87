//! What `GET /v1/status` shows and `capstan status` reads back.

use serde::{Deserialize, Serialize};

use crate::desired::overlay::Drift;
use crate::plan::Plan;
use crate::sources::swarm_task::TaskIdentity;
use crate::sources::{RevisionInfo, SourceInfo, Warning};
use crate::state::{ApplyRecord, LastError, State};

/// The state of git fetching, for status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FetchStatus {
    pub last_success_at: Option<String>,
    pub error: Option<String>,
    pub consecutive_failures: u32,
    /// Since when fetching fails: the desired state is unknown since then,
    /// and capstan is not in sync whatever HAProxy serves.
    pub failing_since: Option<String>,
    /// Seconds until the next attempt, while failing.
    pub retry_in_seconds: Option<u64>,
}

/// The HAProxy process capstan supervises, for status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HaproxyStatus {
    /// Times HAProxy died and capstan started it again.
    pub restarts: u64,
    /// How the last death looked, e.g. `haproxy master 42 exited (signal: 9 (SIGKILL))`.
    pub last_exit: Option<String>,
    pub last_exit_at: Option<String>,
}

/// Where the overrides are kept, for status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OverridesStoreStatus {
    /// `overrides.json` in the state directory, or the Swarm group.
    pub location: String,
    /// Why the shared overrides could not be read, while they cannot: the
    /// desired state is unknown meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `GET /v1/status` and `capstan status` show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The Swarm task this capstan runs in, when it runs in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<TaskIdentity>,
    pub source: SourceInfo,
    /// The newest revision fetched, valid or not.
    pub desired: Option<RevisionInfo>,
    /// The revision HAProxy serves.
    pub applied: Option<AppliedInfo>,
    /// HAProxy serves the newest desired revision, and that revision is
    /// known (the last fetch succeeded).
    #[serde(default)]
    pub in_sync: bool,
    pub last_error: Option<LastError>,
    #[serde(default)]
    pub fetch: FetchStatus,
    #[serde(default)]
    pub haproxy: HaproxyStatus,
    /// What the next apply would do; `nothing` when in sync.
    pub pending_plan: Option<Plan>,
    /// Overrides in force and how they differ from git.
    #[serde(default)]
    pub overrides: Vec<Drift>,
    #[serde(default)]
    pub overrides_store: OverridesStoreStatus,
    /// Swarm-side problems with routes (a missing service, no running task).
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// Routes declared by `com.df.*` service labels (under git's, under overrides).
    #[serde(default)]
    pub label_routes: Vec<String>,
    /// The certificates capstan serves besides routes.yaml's own: uploaded
    /// ones (not in git) and those of `certificate_dirs`, with what HAProxy
    /// serves for each. Never a key.
    #[serde(default)]
    pub certificates: Vec<crate::tls::CertificateInfo>,
    /// The latest applies, newest first.
    #[serde(default)]
    pub history: Vec<ApplyRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedInfo {
    pub revision: RevisionInfo,
    /// The generation marker of the config HAProxy runs: replicas that
    /// serve the same config report the same one.
    #[serde(default)]
    pub marker: String,
    pub at: String,
}

/// How many applies status shows.
const STATUS_HISTORY: usize = 20;

/// The applies status shows, newest first.
pub(super) fn recent(state: &State) -> Vec<ApplyRecord> {
    state.history.iter().take(STATUS_HISTORY).cloned().collect()
}
