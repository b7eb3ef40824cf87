//! Verification of git push webhooks.
