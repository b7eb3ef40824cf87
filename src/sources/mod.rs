//! Where desired routes come from. Each source reads the outside world and
//! hands plain data to the pure stages.

pub mod git;
pub mod overrides;
pub mod swarm;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::validate;
use crate::sources::git::{GitError, RemoteRepo};
use crate::state::RevisionInfo;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceInfo {
    pub kind: String,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub file: String,
}
