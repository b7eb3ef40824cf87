//! routes.yaml as it stands at a git revision (or in the working tree).

use std::path::{Path, PathBuf};

/// A git failure, with what capstan was doing.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{path}: not a git repository (or any parent): {source}")]
    NotARepository { path: PathBuf, source: git2::Error },
    #[error("revision `{rev}` not found: {source}")]
    UnknownRevision { rev: String, source: git2::Error },
    #[error("{file} at {rev}: {message}")]
    Unreadable {
        rev: String,
        file: String,
        message: String,
    },
}

/// A resolved revision: what the user named and the commit it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// What the user named: `main`, `HEAD~1`, `abc1234`, or `working tree`.
    pub name: String,
    /// Full commit id; `None` for the working tree.
    pub commit: Option<String>,
}

impl Revision {
    pub fn working_tree() -> Self {
        Self {
            name: "working tree".into(),
            commit: None,
        }
    }

    /// `main (1a2b3c4)`, or the bare name when it is the commit id itself.
    pub fn label(&self) -> String {
        match &self.commit {
            Some(commit) if !commit.starts_with(&self.name) => {
                format!("{} ({})", self.name, &commit[..7.min(commit.len())])
            }
            Some(commit) => commit[..7.min(commit.len())].to_string(),
            None => self.name.clone(),
        }
    }
}

/// A repository on disk, for the offline diff.
pub struct LocalRepo {
    repo: git2::Repository,
}

impl LocalRepo {
    /// Opens the repository containing `path`.
    pub fn discover(path: &Path) -> Result<Self, GitError> {
        git2::Repository::discover(path)
            .map(|repo| Self { repo })
            .map_err(|source| GitError::NotARepository {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Resolves `rev` (a branch, tag, `HEAD~1`, a commit id) to a commit.
    pub fn resolve(&self, rev: &str) -> Result<Revision, GitError> {
        let commit = self
            .repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|source| GitError::UnknownRevision {
                rev: rev.to_string(),
                source,
            })?;
        Ok(Revision {
            name: rev.to_string(),
            commit: Some(commit.id().to_string()),
        })
    }

    /// The text of `file` (relative to the repository root) at a resolved
    /// revision, or `None` when the file does not exist there.
    pub fn read(&self, revision: &Revision, file: &str) -> Result<Option<String>, GitError> {
        let unreadable = |message: String| GitError::Unreadable {
            rev: revision.name.clone(),
            file: file.to_string(),
            message,
        };
        let Some(commit) = &revision.commit else {
            let workdir = self
                .repo
                .workdir()
                .ok_or_else(|| unreadable("a bare repository has no working tree".into()))?;
            return match std::fs::read_to_string(workdir.join(file)) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(unreadable(e.to_string())),
            };
        };
        let oid = git2::Oid::from_str(commit).map_err(|e| unreadable(e.message().into()))?;
        let tree = self
            .repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(|e| unreadable(e.message().into()))?;
        let entry = match tree.get_path(Path::new(file)) {
            Ok(entry) => entry,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(unreadable(e.message().into())),
        };
        let blob = entry
            .to_object(&self.repo)
            .and_then(|o| o.peel_to_blob())
            .map_err(|e| unreadable(e.message().into()))?;
        String::from_utf8(blob.content().to_vec())
            .map(Some)
            .map_err(|_| unreadable("not UTF-8 text".into()))
    }
}
