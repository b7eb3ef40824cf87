//! Verification of git push webhooks: GitHub's HMAC-SHA256 signature
//! (`X-Hub-Signature-256`) and GitLab's shared token (`X-Gitlab-Token`),
//! and the branch a push is for. Pure functions over header values and the
//! raw request body, independent of the HTTP server.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header GitHub signs push deliveries with (lowercase, as HTTP header
/// names are case-insensitive).
pub const GITHUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The header GitLab sends the configured secret token in.
pub const GITLAB_TOKEN_HEADER: &str = "x-gitlab-token";

/// The forge a verified webhook came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Signed with `X-Hub-Signature-256`.
    GitHub,
    /// Authenticated with `X-Gitlab-Token`.
    GitLab,
}

/// Why a webhook request is refused. The messages never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The configured secret is empty: nothing could be verified.
    #[error("the webhook secret is empty; refusing every request")]
    EmptySecret,
    /// The request lacks the header its verification needs.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// The request carries neither a GitHub signature nor a GitLab token.
    #[error("unauthenticated webhook: no X-Hub-Signature-256 or X-Gitlab-Token header")]
    Unauthenticated,
    /// `X-Hub-Signature-256` is not `sha256=` and 64 hex digits.
    #[error("malformed X-Hub-Signature-256 header: {0}")]
    MalformedSignature(&'static str),
    /// The GitHub signature does not match the body and secret.
    #[error("X-Hub-Signature-256 does not match the body: wrong secret or altered payload")]
    SignatureMismatch,
    /// The GitLab token is not the secret.
    #[error("X-Gitlab-Token does not match the webhook secret")]
    TokenMismatch,
}

/// Checks GitHub's `X-Hub-Signature-256: sha256=<hex>` header: the
/// HMAC-SHA256 of the raw `body` keyed with `secret`, compared in constant
/// time.
pub fn verify_github(
    secret: &[u8],
    body: &[u8],
    signature_header: Option<&str>,
) -> Result<(), WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::EmptySecret);
    }
    let header = signature_header.ok_or(WebhookError::MissingHeader("X-Hub-Signature-256"))?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::MalformedSignature("expected sha256=<hex>"))?;
    let signature =
        hex::decode(hex).map_err(|_| WebhookError::MalformedSignature("not hexadecimal"))?;
    if signature.len() != 32 {
        return Err(WebhookError::MalformedSignature(
            "expected 64 hex digits (32 bytes)",
        ));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::EmptySecret)?;
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| WebhookError::SignatureMismatch)
}

/// Checks GitLab's `X-Gitlab-Token` header against `secret`. Both are hashed
/// before a constant-time comparison, so that neither the content nor the
/// length of the secret leaks through timing.
pub fn verify_gitlab(secret: &[u8], token_header: Option<&str>) -> Result<(), WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::EmptySecret);
    }
    let token = token_header.ok_or(WebhookError::MissingHeader("X-Gitlab-Token"))?;
    let expected = Sha256::digest(secret);
    let given = Sha256::digest(token.as_bytes());
    if bool::from(expected.ct_eq(&given)) {
        Ok(())
    } else {
        Err(WebhookError::TokenMismatch)
    }
}

/// The shared secret of the push webhook, configured identically on the
/// forge and in capstan. `Debug` does not show it.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Wraps the secret.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }

    /// Authenticates a request: with GitHub's signature when
    /// `X-Hub-Signature-256` is present, else with GitLab's token when
    /// `X-Gitlab-Token` is present. `header` looks a header up by its
    /// lowercase name and must ignore case, as HTTP does (an axum
    /// `HeaderMap` does: `|name| map.get(name).and_then(|v| v.to_str().ok())`).
    /// `body` is the raw request body, before any JSON parsing.
    pub fn verify<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
    ) -> Result<Source, WebhookError> {
        if let Some(signature) = header(GITHUB_SIGNATURE_HEADER) {
            verify_github(&self.0, body, Some(signature)).map(|()| Source::GitHub)
        } else if let Some(token) = header(GITLAB_TOKEN_HEADER) {
            verify_gitlab(&self.0, Some(token)).map(|()| Source::GitLab)
        } else {
            Err(WebhookError::Unauthenticated)
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// The branch a GitHub or GitLab push event is for: its `ref` without
/// `refs/heads/`. `None` for a tag push, a payload without `ref` (GitHub's
/// `ping`, other events) or a body that is not JSON: the caller ignores the
/// delivery when this is not the branch it follows.
pub fn pushed_branch(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Push {
        #[serde(rename = "ref")]
        reference: String,
    }
    let push: Push = serde_json::from_slice(body).ok()?;
    push.reference
        .strip_prefix("refs/heads/")
        .filter(|branch| !branch.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's documented test vector:
    // https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_test_vector_verifies() {
        assert_eq!(verify_github(SECRET, BODY, Some(SIGNATURE)), Ok(()));
        let upper = format!("sha256={}", SIGNATURE[7..].to_uppercase());
        assert_eq!(verify_github(SECRET, BODY, Some(&upper)), Ok(()));
    }

    #[test]
    fn github_wrong_secret_or_body_is_a_mismatch() {
        assert_eq!(
            verify_github(b"another secret", BODY, Some(SIGNATURE)),
            Err(WebhookError::SignatureMismatch)
        );
        assert_eq!(
            verify_github(SECRET, b"Hello, World?", Some(SIGNATURE)),
            Err(WebhookError::SignatureMismatch)
        );
    }

    #[test]
    fn github_missing_header_or_secret() {
        assert_eq!(
            verify_github(SECRET, BODY, None),
            Err(WebhookError::MissingHeader("X-Hub-Signature-256"))
        );
        assert_eq!(
            verify_github(b"", BODY, Some(SIGNATURE)),
            Err(WebhookError::EmptySecret)
        );
    }

    #[test]
    fn github_malformed_signatures() {
        let malformed = |header: &str| match verify_github(SECRET, BODY, Some(header)) {
            Err(WebhookError::MalformedSignature(reason)) => reason,
            other => panic!("{header}: {other:?}"),
        };
        // No prefix, or the old SHA-1 header's prefix.
        assert!(malformed(&SIGNATURE[7..]).contains("sha256="));
        assert!(malformed("sha1=757107ea0eb2509fc211221cce984b8a37570b6d").contains("sha256="));
        // Not hex.
        let not_hex = SIGNATURE.replace("757107", "75710g");
        assert!(malformed(&not_hex).contains("hexadecimal"));
        assert!(malformed(&SIGNATURE[..SIGNATURE.len() - 1]).contains("hexadecimal"));
        // Wrong length: truncated, extended, empty.
        assert!(malformed(&SIGNATURE[..SIGNATURE.len() - 2]).contains("64 hex digits"));
        assert!(malformed(&format!("{SIGNATURE}00")).contains("64 hex digits"));
        assert!(malformed("sha256=").contains("64 hex digits"));
    }

    #[test]
    fn gitlab_token_is_compared_to_the_secret() {
        assert_eq!(verify_gitlab(b"t0ken", Some("t0ken")), Ok(()));
        assert_eq!(
            verify_gitlab(b"t0ken", Some("t0ke")),
            Err(WebhookError::TokenMismatch)
        );
        assert_eq!(
            verify_gitlab(b"t0ken", Some("")),
            Err(WebhookError::TokenMismatch)
        );
        assert_eq!(
            verify_gitlab(b"t0ken", None),
            Err(WebhookError::MissingHeader("X-Gitlab-Token"))
        );
        assert_eq!(verify_gitlab(b"", Some("")), Err(WebhookError::EmptySecret));
    }

    /// A case-insensitive lookup in a list of headers.
    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        }
    }

    #[test]
    fn secret_picks_the_verification_from_the_headers() {
        let secret = WebhookSecret::new(SECRET);
        let github = [("X-Hub-Signature-256", SIGNATURE)];
        assert_eq!(secret.verify(headers(&github), BODY), Ok(Source::GitHub));
        let token = std::str::from_utf8(SECRET).unwrap();
        let gitlab = [("X-Gitlab-Token", token)];
        assert_eq!(secret.verify(headers(&gitlab), BODY), Ok(Source::GitLab));
        let neither = [("Content-Type", "application/json")];
        assert_eq!(
            secret.verify(headers(&neither), BODY),
            Err(WebhookError::Unauthenticated)
        );
        // A signature present is always checked, even next to a good token.
        let both = [
            ("X-Gitlab-Token", token),
            ("X-Hub-Signature-256", "sha256=00"),
        ];
        assert!(matches!(
            secret.verify(headers(&both), BODY),
            Err(WebhookError::MalformedSignature(_))
        ));
        let lowercase = [("x-gitlab-token", token)];
        assert_eq!(
            WebhookSecret::new("nope").verify(headers(&lowercase), BODY),
            Err(WebhookError::TokenMismatch)
        );
    }

    #[test]
    fn debug_and_errors_hide_the_secret() {
        assert_eq!(
            format!("{:?}", WebhookSecret::new(SECRET)),
            "WebhookSecret(***)"
        );
        let error = verify_gitlab(b"t0ken", Some("guess")).unwrap_err();
        assert!(!error.to_string().contains("t0ken"));
    }

    #[test]
    fn pushed_branch_of_github_and_gitlab_payloads() {
        let github = br#"{"ref":"refs/heads/main","before":"0","after":"1","repository":{}}"#;
        assert_eq!(pushed_branch(github).as_deref(), Some("main"));
        let gitlab = br#"{"object_kind":"push","ref":"refs/heads/feature/x","checkout_sha":"1"}"#;
        assert_eq!(pushed_branch(gitlab).as_deref(), Some("feature/x"));
        assert_eq!(pushed_branch(br#"{"ref":"refs/tags/v1"}"#), None);
        assert_eq!(pushed_branch(br#"{"ref":"refs/heads/"}"#), None);
        assert_eq!(pushed_branch(br#"{"zen":"ping","hook_id":1}"#), None);
        assert_eq!(pushed_branch(b"not json"), None);
    }
}
