//! Where desired routes come from. Each source reads the outside world and
//! hands plain data to the pure stages.

pub mod git;
pub mod labels;
pub mod overrides;
pub mod swarm;
pub mod swarm_snapshot;
pub mod swarm_task;
pub mod user_files;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::model::validate;
use crate::sources::git::{GitError, RemoteRepo};

/// A problem with one route (or the labelled Swarm service that declares
/// it) that leaves the rest serving: status and diffs list them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The route id, or the service name for a service's labels.
    pub route: String,
    pub message: String,
}

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

/// A revision of the routes, as status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionInfo {
    /// `main (1a2b3c4)`, or a file path.
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The commit's message, author and time, for people reading status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<CommitDetails>,
}

/// Who made a commit, when, and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitDetails {
    /// The first line of the message.
    pub summary: String,
    /// The author's name.
    pub author: String,
    /// The commit time, RFC 3339 UTC.
    pub at: String,
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
    /// Refused from its size, before it is read.
    #[error("{0}")]
    TooLarge(crate::model::diagnostics::Diagnostic),
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
                    let details = repo.commit_details(&commit);
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
                            details,
                        },
                        file_name: file,
                        text,
                    })
                })
                .await
                .expect("the git task does not panic")
            }
            RoutesSource::File(path) => {
                let read = |source| SourceError::Read {
                    path: path.clone(),
                    source,
                };
                let name = path.display().to_string();
                let size = tokio::fs::metadata(path).await.map_err(read)?.len();
                if let Some(too_large) = validate::size_problem(&name, size) {
                    return Err(SourceError::TooLarge(too_large));
                }
                let text = tokio::fs::read_to_string(path).await.map_err(read)?;
                Ok(content_addressed(&name, text))
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
                kind: "git".into(),
                location: url.clone(),
                branch: Some(branch.clone()),
                file: file.clone(),
            },
            RoutesSource::File(path) => SourceInfo {
                kind: "file".into(),
                location: path.display().to_string(),
                branch: None,
                file: path.display().to_string(),
            },
            RoutesSource::Embedded => SourceInfo {
                kind: "embedded".into(),
                location: "built into capstan".into(),
                branch: None,
                file: "routes.yaml".into(),
            },
        }
    }
}

/// A file outside git is identified by a hash of its content.
fn content_addressed(name: &str, text: String) -> Fetched {
    let short = crate::util::sha256_hex_prefix(text.as_bytes(), 4);
    Fetched {
        revision: RevisionInfo {
            label: format!("{name} (sha256 {short})"),
            commit: None,
            details: None,
        },
        file_name: name.to_string(),
        text,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceInfo {
    pub kind: String,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub file: String,
}
