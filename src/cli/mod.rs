//! The binary's commands that talk to a daemon or run one.

use std::path::Path;

use anyhow::{Context, Result, bail};

pub mod client;
pub mod health;
pub mod replicas;
pub mod serve;

/// The trimmed content of a file holding a secret (a token, `user:password`);
/// an empty one is an error.
fn read_secret(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(secret)
}
