//! Where Docker Flow Proxy read its Docker secrets: `usersSecret=<name>` is
//! the file `dfp_users_<name>` in the secrets directory.

use std::str::FromStr;

use crate::model::grammar::{self, InvalidValue};
use crate::model::{FilePath, Name};

/// DFP's prefix of users secrets' file names.
const USERS_SECRET_PREFIX: &str = "dfp_users_";

/// The directory Docker mounts the proxy's secrets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsDir(String);

impl SecretsDir {
    /// Where Docker mounts secrets, and DFP read them.
    pub const DEFAULT: &str = "/run/secrets";

    /// The users file of `usersSecret=<name>`: `<dir>/dfp_users_<name>`.
    pub(super) fn users_file(&self, name: &Name) -> FilePath {
        FilePath(format!("{}/{USERS_SECRET_PREFIX}{name}", self.0))
    }
}

impl Default for SecretsDir {
    fn default() -> Self {
        Self(Self::DEFAULT.to_string())
    }
}

/// An absolute path in routes.yaml's file-path grammar, short enough that
/// every users file in it is one too.
impl FromStr for SecretsDir {
    type Err = InvalidValue;
    fn from_str(dir: &str) -> Result<Self, InvalidValue> {
        let dir = dir
            .strip_suffix('/')
            .filter(|d| !d.is_empty())
            .unwrap_or(dir);
        grammar::FILE_PATH.check(dir)?;
        let longest = format!(
            "{dir}/{USERS_SECRET_PREFIX}{}",
            "x".repeat(grammar::NAME.max_len())
        );
        grammar::FILE_PATH.check(&longest)?;
        Ok(Self(dir.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_secrets_are_files_in_the_directory() {
        let name: Name = "monitoring".parse().unwrap();
        assert_eq!(
            SecretsDir::default().users_file(&name).0,
            "/run/secrets/dfp_users_monitoring"
        );
        let dir: SecretsDir = "/srv/secrets/".parse().unwrap();
        assert_eq!(dir.users_file(&name).0, "/srv/secrets/dfp_users_monitoring");
        for bad in ["relative", "/with space", "/quote\"", ""] {
            assert!(bad.parse::<SecretsDir>().is_err(), "{bad}");
        }
        assert!(
            format!("/{}", "a".repeat(4090))
                .parse::<SecretsDir>()
                .is_err()
        );
    }
}
