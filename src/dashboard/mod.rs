//! The dashboard: one page answering an operator's questions (is HAProxy
//! serving git's newest revision, which routes and servers it serves and in
//! what state, which overrides drift from git, what the last applies did,
//! which config runs), rendered from the values the JSON API serves.
//!
//! Pure: [`Dashboard`] is what the page shows, gathered by `api::dashboard`;
//! `view` builds the routes part (`GET /v1/routes`), `page` renders HTML,
//! every text through `html::esc`. The CSS and JavaScript are in the binary.

mod html;
pub mod page;
pub mod view;

use crate::reconcile::Status;
use crate::sources::overrides::OverrideSet;
use view::RoutesView;

/// How many routes the page lists at most; a filter narrows the rest.
pub const ROUTES_SHOWN: usize = 500;

/// The most of haproxy.cfg the page shows (a 10,000-route config is
/// megabytes; `/v1/docker-flow-proxy/config` serves all of it).
pub const CONFIG_SHOWN: usize = 128 * 1024;

/// Everything the page shows, read at one moment.
pub struct Dashboard {
    /// What `GET /v1/status` serves.
    pub status: Status,
    /// What `GET /v1/routes` serves, with the same filter.
    pub routes: RoutesView,
    /// The overrides in force, password hashes replaced by fingerprints.
    pub overrides: OverrideSet,
    pub config: ConfigText,
    /// Unix seconds when it was read: ages are counted from it.
    pub now: u64,
    /// The same moment, RFC 3339.
    pub rendered_at: String,
}

/// The haproxy.cfg HAProxy runs, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigText {
    /// Password hashes replaced by fingerprints; cut at a line end after
    /// [`CONFIG_SHOWN`] bytes, with the whole size.
    Shown { text: String, total_bytes: usize },
    /// Why it could not be read.
    Unreadable(String),
}

impl ConfigText {
    /// The config `raw` as shown: no password hash, at most about [`CONFIG_SHOWN`] bytes.
    pub fn new(raw: &str) -> Self {
        let cut = if raw.len() <= CONFIG_SHOWN {
            raw
        } else {
            let end = raw[..CONFIG_SHOWN].rfind('\n').map_or(0, |i| i + 1);
            &raw[..end]
        };
        ConfigText::Shown {
            text: crate::diff::redact_passwords(cut).into_owned(),
            total_bytes: raw.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_shows_no_password_hash_and_is_bounded() {
        let raw = "userlist ops\n    user admin password $6$salt$secrethash\n";
        let ConfigText::Shown { text, total_bytes } = ConfigText::new(raw) else {
            panic!("shown");
        };
        assert!(!text.contains("secrethash"), "{text}");
        assert!(text.contains("user admin password <hash "), "{text}");
        assert_eq!(total_bytes, raw.len());

        let big = "backend b\n".repeat(CONFIG_SHOWN / 10 + 100);
        let ConfigText::Shown { text, total_bytes } = ConfigText::new(&big) else {
            panic!("shown");
        };
        assert!(text.len() <= CONFIG_SHOWN && text.ends_with('\n'));
        assert_eq!(total_bytes, big.len());
    }
}
