//! capstan's durable state: the state directory's layout and `state.json`
//! (what was applied, the last error, a history of applies). Every write is
//! atomic (write, fsync, rename, fsync the directory), so a crash leaves the
//! old file or the new one, never a torn one.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::RoutesFile;
use crate::model::diagnostics::Diagnostic;
use crate::plan::{Change, Method};
use crate::sources::RevisionInfo;
use crate::util::write_atomic;

/// How many applies the history keeps.
pub const HISTORY_LIMIT: usize = 100;
/// How many changes of one apply the history keeps (a first apply of a large
/// table changes thousands of sections).
pub const RECORDED_CHANGES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a capstan state file: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The state directory:
/// `state.json`, `haproxy.cfg` (what HAProxy loads), `run/` (sockets, pid
/// file) and `git/` (the repository cache).
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn open(root: &Path) -> Result<Self, StateError> {
        for dir in [root.to_path_buf(), root.join("run")] {
            fs::create_dir_all(&dir).map_err(|source| StateError::Io { path: dir, source })?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("haproxy.cfg")
    }
    /// HAProxy's sockets and pid file.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn git_cache(&self) -> PathBuf {
        self.root.join("git")
    }
    fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The saved state; empty on first start.
    pub fn load(&self) -> Result<State, StateError> {
        let path = self.state_file();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let path = self.state_file();
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        write_atomic(&path, &bytes).map_err(|source| StateError::Io { path, source })
    }
}

/// What HAProxy runs, as far as capstan applied it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub revision: RevisionInfo,
    pub marker: String,
    pub at: String,
    pub routes: RoutesFile,
}

/// Why the latest desired state is not serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionInfo>,
    /// `git`, `validate`, `check`, `reload`, `runtime`, `haproxy`.
    pub stage: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
    /// The generation marker of a config that failed to apply: it is not
    /// retried until the desired config changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
}

/// Where the time of one reconcile went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Fetching and reading the routes.
    pub fetch_ms: u64,
    /// Validating, rendering, observing HAProxy and planning.
    pub plan_ms: u64,
    /// `haproxy -c` (reloads only).
    pub check_ms: u64,
    /// Applying, `check_ms` included: runtime commands, or write, check,
    /// reload and confirmation.
    pub apply_ms: u64,
}

/// One apply, successful or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRecord {
    pub revision: RevisionInfo,
    pub at: String,
    pub method: Method,
    /// The first [`RECORDED_CHANGES`] changes.
    pub changes: Vec<Change>,
    /// How many changes there were in all.
    #[serde(default)]
    pub changes_total: usize,
    pub outcome: Outcome,
    /// From the start of the reconcile to the end of the apply.
    pub duration_ms: u64,
    #[serde(default)]
    pub timings: Timings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything capstan remembers across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub applied: Option<Applied>,
    pub last_error: Option<LastError>,
    /// Newest first.
    pub history: VecDeque<ApplyRecord>,
}

impl State {
    pub fn record(&mut self, record: ApplyRecord) {
        self.history.push_front(record);
        self.history.truncate(HISTORY_LIMIT);
    }
}

/// Now, as RFC 3339 UTC with second precision: `2026-11-25T11:22:33Z`.
pub fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

pub fn rfc3339(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn state_survives_a_reopen_and_history_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = StateDir::open(dir.path()).unwrap();
        assert_eq!(state_dir.load().unwrap(), State::default());
        let mut state = State::default();
        for i in 0..(HISTORY_LIMIT + 5) {
            state.record(ApplyRecord {
                revision: RevisionInfo {
                    label: format!("r{i}"),
                    commit: None,
                    details: None,
                },
                at: now(),
                method: Method::Reload,
                changes: vec![],
                changes_total: 0,
                outcome: Outcome::Ok,
                duration_ms: 1,
                timings: Timings::default(),
                error: None,
            });
        }
        state_dir.save(&state).unwrap();
        let reopened = StateDir::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(reopened.history.len(), HISTORY_LIMIT);
        assert_eq!(
            reopened.history[0].revision.label,
            format!("r{}", HISTORY_LIMIT + 4)
        );
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("state.json"), "{not json").unwrap();
        let err = StateDir::open(dir.path()).unwrap().load().unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
    }
}
