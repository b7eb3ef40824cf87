//! capstan's HTTP API: status, the push webhook, live routes for
//! `capstan diff --live`, Prometheus metrics, a health check and the
//! dashboard.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

mod certs;
mod dashboard;

pub use dashboard::ServerStats;
mod dfp;
mod health;

pub use health::HealthAnswer;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::desired::overlay::Drift;
use crate::metrics::ResultLabel;
use crate::model::{RoutesFile, Userlist};
use crate::reconcile::ReconcilerHandle;
use crate::sources::overrides::{Action, Override, OverrideSet};
use crate::sources::{RevisionInfo, Warning};
use crate::webhook::WebhookSecret;

/// `GET /v1/live`: what HAProxy serves, for `capstan diff --live`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LiveAnswer {
    pub revision: RevisionInfo,
    pub routes: RoutesFile,
    pub overrides: BTreeMap<String, Override>,
    #[serde(default)]
    pub warnings: Vec<Warning>,
}

/// `GET /v1/overrides`: the overrides in force and how they differ from git.
#[derive(Debug, Serialize, Deserialize)]
pub struct OverridesAnswer {
    pub overrides: BTreeMap<String, Override>,
    #[serde(default)]
    pub drift: Vec<Drift>,
    /// Uploaded certificates: served, and not in git. Never a key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<crate::tls::CertificateInfo>,
}

/// Largest request body accepted (webhook payloads are far smaller).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Largest query string accepted by the Docker-Flow-Proxy endpoints.
pub const QUERY_LIMIT: usize = 16 * 1024;

/// Credentials the mutating endpoints require.
#[derive(Clone)]
pub enum ApiAuth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic <base64 user:password>`, given as `user:password`.
    Basic(String),
}

/// What the handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub reconciler: Arc<ReconcilerHandle>,
    /// Verifies push webhooks; `None` accepts any push (warned at startup).
    pub webhook_secret: Option<Arc<WebhookSecret>>,
    /// Pushes to other branches are acknowledged and ignored.
    pub branch: Option<String>,
    /// Required by reconfigure, remove, reload and override deletion; `None`
    /// for Docker Flow Proxy's open behaviour (warned at startup).
    pub auth: Option<Arc<ApiAuth>>,
    /// Lifetime of overrides whose request sets no `ttl`.
    pub default_ttl: Option<std::time::Duration>,
    /// The haproxy.cfg HAProxy loads, for `config`.
    pub config_file: std::path::PathBuf,
    /// Where `usersSecret=<name>` files are (`dfp_users_<name>`).
    pub secrets_dir: crate::dfp::SecretsDir,
    /// The master CLI of the HAProxy capstan drives, for `/healthz`.
    pub master_socket: std::path::PathBuf,
    /// HAProxy's servers as the dashboard shows them, asked at most once a second.
    pub server_stats: Arc<dashboard::ServerStats>,
}

impl ApiState {
    /// A 401 answer, unless no credentials are configured or the request
    /// carries them.
    pub fn unauthorized(&self, headers: &HeaderMap) -> Option<Response> {
        let auth = self.auth.as_ref()?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if auth.accepts(given) {
            return None;
        }
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"capstan\", Bearer")],
                axum::Json(crate::dfp::error_answer("missing or wrong credentials")),
            )
                .into_response(),
        )
    }
}

impl ApiAuth {
    /// Whether an `Authorization` header value carries the credentials,
    /// compared in constant time. A token is also accepted as the password
    /// of HTTP Basic with any user name, so that a browser can log in to
    /// the dashboard.
    fn accepts(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq;
        let same = |a: &[u8], b: &[u8]| bool::from(a.ct_eq(b));
        match self {
            ApiAuth::Bearer(token) => {
                let bearer = same(given.as_bytes(), format!("Bearer {token}").as_bytes());
                let password = basic_password(given).unwrap_or_default();
                // Both compared, whichever matches: no early exit to time.
                let basic = same(&password, token.as_bytes());
                bearer | basic
            }
            ApiAuth::Basic(user_password) => same(
                given.as_bytes(),
                format!("Basic {}", base64_encode(user_password.as_bytes())).as_bytes(),
            ),
        }
    }
}

/// The password of an `Authorization: Basic` value, whatever the user name.
fn basic_password(given: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let (scheme, encoded) = given.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Password hashes as clients without credentials see them: fingerprints,
/// as `capstan diff` shows them. A fingerprint stays as it is, so that
/// `capstan diff --live` can put both sides through this whichever the
/// server sent.
fn redact_users<'a>(lists: impl IntoIterator<Item = &'a mut Userlist>) {
    let listed = lists.into_iter().filter_map(|list| match list {
        Userlist::Users(users) => Some(users),
        Userlist::File(_) => None,
    });
    for user in listed.flatten() {
        user.password_hash = crate::diff::redacted(&user.password_hash);
    }
}

/// The table with every password hash replaced by its fingerprint.
pub fn redact_routes(file: &mut RoutesFile) {
    redact_users(file.userlists.values_mut());
}

/// The overrides with every password hash replaced by its fingerprint.
pub fn redact_overrides(set: &mut OverrideSet) {
    for o in set.overrides.values_mut() {
        if let Action::Reconfigure { userlists, .. } = &mut o.action {
            redact_users(userlists.values_mut());
        }
    }
}

/// Whether the API showed fingerprints in place of some overrides' password hashes.
pub fn has_fingerprints(set: &OverrideSet) -> bool {
    set.overrides.values().any(|o| match &o.action {
        Action::Reconfigure { userlists, .. } => userlists
            .values()
            .flat_map(Userlist::listed)
            .any(|u| crate::diff::is_fingerprint(&u.password_hash)),
        Action::Remove => false,
    })
}

/// Lets a request through only with the configured credentials, if any.
async fn require_auth(
    State(state): State<ApiState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.unauthorized(request.headers()) {
        Some(denied) => denied,
        None => next.run(request).await,
    }
}

pub fn router(state: ApiState) -> Router {
    // What shows password hashes (and the whole config) needs the
    // credentials the mutating endpoints need, when there are any.
    let guarded = Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard/fragment", get(dashboard::fragment))
        .route("/v1/routes", get(dashboard::routes))
        .route("/v1/live", get(live))
        .route("/v1/overrides", get(list_overrides))
        .route("/v1/docker-flow-proxy/config", get(dfp::config))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_auth,
        ));
    Router::new()
        .merge(guarded)
        .route("/v1/status", get(status))
        .route("/v1/overrides/{service}", delete(delete_override))
        .route("/v1/webhook/git", post(webhook))
        .route(
            "/v1/docker-flow-proxy/reconfigure",
            get(dfp::reconfigure)
                .put(dfp::reconfigure)
                .post(dfp::reconfigure),
        )
        .route(
            "/v1/docker-flow-proxy/remove",
            get(dfp::remove).delete(dfp::remove).post(dfp::remove),
        )
        .route(
            "/v1/docker-flow-proxy/reload",
            get(dfp::reload).post(dfp::reload),
        )
        .route("/v1/docker-flow-proxy/ping", get(dfp::ping))
        .route(
            "/v1/docker-flow-proxy/cert",
            axum::routing::put(certs::put).delete(certs::delete),
        )
        .route("/v1/docker-flow-proxy/certs", get(certs::list))
        .route("/metrics", get(metrics))
        .route("/healthz", get(health::healthz))
        .fallback(certs::not_found)
        .method_not_allowed_fallback(certs::method_not_allowed)
        .layer(axum::middleware::from_fn(limit_query))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Refuses oversized query strings before any parsing.
async fn limit_query(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if request.uri().query().is_some_and(|q| q.len() > QUERY_LIMIT) {
        return json_response(
            StatusCode::URI_TOO_LONG,
            crate::dfp::error_answer(&format!(
                "the query string is longer than {QUERY_LIMIT} bytes"
            )),
        );
    }
    next.run(request).await
}

async fn list_overrides(State(state): State<ApiState>) -> Response {
    let mut set = state.reconciler.overrides();
    let drift = state.reconciler.status().overrides;
    if state.auth.is_none() {
        redact_overrides(&mut set);
    }
    let certificates = state
        .reconciler
        .status()
        .certificates
        .into_iter()
        .filter(|c| c.source == crate::tls::CertSource::Uploaded)
        .collect();
    let answer = OverridesAnswer {
        overrides: set.overrides,
        drift,
        certificates,
    };
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn delete_override(
    State(state): State<ApiState>,
    headers: HeaderMap,
    axum::extract::Path(service): axum::extract::Path<String>,
) -> Response {
    if let Some(denied) = state.unauthorized(&headers) {
        return denied;
    }
    if !state.reconciler.has_override(&service) {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no override for service {service}")}),
        );
    }
    let change = crate::sources::overrides::OverrideChange::Delete(service.clone());
    match state.reconciler.change_override(change).await {
        Ok(()) => json_response(
            StatusCode::OK,
            json!({"status": "deleted", "service": service}),
        ),
        Err(e) => {
            let code = if e.is_client_error() {
                StatusCode::CONFLICT
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            json_response(code, json!({"error": e.to_string()}))
        }
    }
}

fn json_response(code: StatusCode, value: serde_json::Value) -> Response {
    (code, axum::Json(value)).into_response()
}

async fn status(State(state): State<ApiState>) -> Response {
    (StatusCode::OK, axum::Json(state.reconciler.status())).into_response()
}

async fn live(State(state): State<ApiState>) -> Response {
    let applied = state.reconciler.applied_routes();
    let mut overrides = state.reconciler.overrides();
    let warnings = state.reconciler.status().warnings;
    match applied {
        Some((revision, mut routes)) => {
            // Without credentials configured, anyone reading this is anonymous.
            if state.auth.is_none() {
                redact_routes(&mut routes);
                redact_overrides(&mut overrides);
            }
            let answer = LiveAnswer {
                revision,
                routes,
                overrides: overrides.overrides,
                warnings,
            };
            (StatusCode::OK, axum::Json(answer)).into_response()
        }
        None => json_response(
            StatusCode::NOT_FOUND,
            json!({ "error": "nothing applied yet" }),
        ),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.reconciler.metrics().encode(),
    )
        .into_response()
}

async fn webhook(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let count = |result: &'static str| {
        state
            .reconciler
            .metrics()
            .webhook_requests
            .get_or_create(&ResultLabel { result })
            .inc();
    };
    if let Some(secret) = &state.webhook_secret {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Err(error) = secret.verify(header, &body) {
            count("unauthorized");
            tracing::warn!(%error, "webhook rejected");
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({ "error": error.to_string() }),
            );
        }
    }
    if let (Some(branch), Some(pushed)) = (&state.branch, crate::webhook::pushed_branch(&body))
        && &pushed != branch
    {
        count("ignored");
        return json_response(
            StatusCode::ACCEPTED,
            json!({ "status": "ignored", "reason": format!("push to {pushed}, watching {branch}") }),
        );
    }
    count("accepted");
    let _ = state.reconciler.request_fetch();
    let reconciler = state.reconciler.clone();
    tokio::spawn(async move { reconciler.pass_on_fetch().await });
    json_response(
        StatusCode::ACCEPTED,
        json!({ "status": "reconcile triggered" }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_password: &str) -> String {
        format!("Basic {}", base64_encode(user_password.as_bytes()))
    }

    #[test]
    fn a_token_is_also_a_basic_password_with_any_user() {
        let auth = ApiAuth::Bearer("s3cret:token".into());
        assert!(auth.accepts("Bearer s3cret:token"));
        assert!(auth.accepts(&basic("anyone:s3cret:token")));
        assert!(auth.accepts(&basic(":s3cret:token")));
        assert!(auth.accepts(&format!("basic {}", base64_encode(b"me:s3cret:token"))));
        for wrong in [
            String::new(),
            "Bearer s3cret".into(),
            "Bearer s3cret:token2".into(),
            basic("s3cret:token"),
            basic("me:s3cret:tokenX"),
            basic("me"),
            "Basic not-base64!".into(),
            format!("Digest {}", base64_encode(b"me:s3cret:token")),
        ] {
            assert!(!auth.accepts(&wrong), "{wrong:?} accepted");
        }
    }

    #[test]
    fn basic_credentials_must_match_user_and_password() {
        let auth = ApiAuth::Basic("ops:pw".into());
        assert!(auth.accepts(&basic("ops:pw")));
        assert!(!auth.accepts(&basic("other:pw")));
        assert!(!auth.accepts("Bearer pw"));
    }
}
