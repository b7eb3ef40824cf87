//! capstan's HTTP API: status, the push webhook, live routes for
//! `capstan diff --live`, and Prometheus metrics.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::metrics::ResultLabel;
use crate::reconcile::Shared;
use crate::webhook::WebhookSecret;

/// Largest request body accepted (webhook payloads are far smaller).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What the handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub shared: Arc<Shared>,
    /// Verifies push webhooks; `None` accepts any push (warned at startup).
    pub webhook_secret: Option<Arc<WebhookSecret>>,
    /// Pushes to other branches are acknowledged and ignored.
    pub branch: Option<String>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/live", get(live))
        .route("/v1/webhook/git", post(webhook))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn json_response(code: StatusCode, value: serde_json::Value) -> Response {
    (code, axum::Json(value)).into_response()
}

async fn status(State(state): State<ApiState>) -> Response {
    let status = state.shared.status.lock().expect("status mutex").clone();
    (StatusCode::OK, axum::Json(status)).into_response()
}

async fn live(State(state): State<ApiState>) -> Response {
    let applied = state
        .shared
        .applied_routes
        .lock()
        .expect("routes mutex")
        .clone();
    match applied {
        Some((revision, routes)) => json_response(
            StatusCode::OK,
            json!({ "revision": revision, "routes": routes }),
        ),
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
        state.shared.metrics.encode(),
    )
        .into_response()
}

async fn webhook(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let count = |result: &'static str| {
        state
            .shared
            .metrics
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
    state.shared.request_fetch();
    json_response(
        StatusCode::ACCEPTED,
        json!({ "status": "reconcile triggered" }),
    )
}
