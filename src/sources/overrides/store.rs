//! Where the override set is kept, and how a change to it is written.

use std::io;
use std::path::{Path, PathBuf};

use super::OverrideSet;
use super::swarm_store::SwarmStore;
use crate::sources::swarm::SwarmError;
use crate::util::write_atomic;

/// Where the override set is kept.
#[derive(Debug, Clone)]
pub enum OverrideStore {
    /// `overrides.json` in the state directory: one capstan's own.
    StateDir(PathBuf),
    /// Swarm config objects: shared by every replica of a service.
    Swarm(SwarmStore),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a capstan overrides file: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("overrides in Swarm: {0}")]
    Swarm(#[from] SwarmError),
    #[error("overrides in Swarm: the override of {service} is {size} bytes, over Swarm's {limit}")]
    TooLarge {
        service: String,
        size: usize,
        limit: usize,
    },
}

impl OverrideStore {
    /// `overrides.json` in `state_dir`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self::StateDir(state_dir.join("overrides.json"))
    }

    /// Where the set is, for logs and status.
    pub fn describe(&self) -> String {
        match self {
            Self::StateDir(path) => path.display().to_string(),
            Self::Swarm(store) => store.describe(),
        }
    }

    pub async fn load(&self) -> Result<OverrideSet, StoreError> {
        match self {
            Self::StateDir(path) => load_file(path),
            Self::Swarm(store) => Ok(store.load().await?.overrides),
        }
    }

    /// Makes the stored set `to`, from `from` (what this capstan last knew
    /// of it): the file is rewritten atomically (a crash leaves the old set
    /// or the new one); in Swarm only the services that differ are written,
    /// so that changes other replicas made to other services stay.
    pub async fn save(&self, from: &OverrideSet, to: &OverrideSet) -> Result<(), StoreError> {
        match self {
            Self::StateDir(path) => {
                let bytes = serde_json::to_vec_pretty(to).expect("overrides serialize");
                write_atomic(path, &bytes).map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })
            }
            Self::Swarm(store) => store.save(from, to).await,
        }
    }
}

fn load_file(path: &Path) -> Result<OverrideSet, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(OverrideSet::default()),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{reconfigure, route, set};
    use super::*;

    #[tokio::test]
    async fn the_state_dir_store_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = OverrideStore::in_state_dir(dir.path());
        assert_eq!(store.load().await.unwrap(), OverrideSet::default());
        let s = set(vec![reconfigure("c", vec![route("c", 90, "/c")], Some(5))]);
        store.save(&OverrideSet::default(), &s).await.unwrap();
        assert_eq!(
            OverrideStore::in_state_dir(dir.path())
                .load()
                .await
                .unwrap(),
            s
        );
    }
}
