//! `GET /`, `GET /dashboard/fragment` and `GET /v1/routes`: the dashboard
//! and the routes it shows, read from the reconciler and HAProxy at one
//! moment, rendered by `crate::dashboard`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiState, redact_overrides};
use crate::dashboard::view::{RoutesInput, RoutesView, routes_view};
use crate::dashboard::{ConfigText, Dashboard, page};
use crate::haproxy::admin::{AdminSocket, ServerStat};
use crate::reconcile::Status;

/// How long one `show stat` answers every dashboard request: however many
/// browsers poll, HAProxy is asked at most once per this.
const STATS_FRESH_FOR: Duration = Duration::from_secs(1);

/// HAProxy's `show stat` of every server, shared by the requests of one
/// second (at 10,000 routes an answer is megabytes of CSV).
pub struct ServerStats {
    admin_socket: PathBuf,
    last: tokio::sync::Mutex<Option<(Instant, Arc<StatsAnswer>)>>,
}

type StatsAnswer = Result<Vec<ServerStat>, String>;

impl ServerStats {
    pub fn new(admin_socket: PathBuf) -> Self {
        Self {
            admin_socket,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The last answer while it is fresh, else a new one. Requests that
    /// arrive while HAProxy is asked wait for that answer (the lock is held
    /// across the call), so they never ask twice.
    async fn read(&self) -> Arc<StatsAnswer> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < STATS_FRESH_FOR
        {
            return answer.clone();
        }
        let answer = Arc::new(
            AdminSocket::new(&self.admin_socket)
                .show_stat_servers()
                .await
                .map_err(|e| e.to_string()),
        );
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

/// `?q=`: show only the routes whose text contains it (ignoring case).
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    q: String,
}

pub async fn routes(State(state): State<ApiState>, Query(filter): Query<Filter>) -> Response {
    let status = state.reconciler.status();
    let view = read_routes(&state, &status, &filter.q).await;
    (StatusCode::OK, axum::Json(view)).into_response()
}

pub async fn page(State(state): State<ApiState>, Query(filter): Query<Filter>) -> Response {
    let dashboard = read(&state, &filter.q).await;
    html(page::page(&dashboard))
}

pub async fn fragment(State(state): State<ApiState>, Query(filter): Query<Filter>) -> Response {
    let dashboard = read(&state, &filter.q).await;
    html(page::fragment(&dashboard))
}

/// The routes view with HAProxy's servers as they are now, and the labels
/// and warnings of `status`.
async fn read_routes(state: &ApiState, status: &Status, filter: &str) -> RoutesView {
    let stats = state.server_stats.read().await;
    let applied = state.reconciler.applied_routes();
    let overrides = state.reconciler.overrides();
    let swarm = state.reconciler.swarm_snapshot();
    let lent_spares = state.reconciler.lent_spares();
    let input = RoutesInput {
        at: crate::state::now(),
        applied: applied.as_ref(),
        overrides: &overrides,
        label_routes: &status.label_routes,
        warnings: &status.warnings,
        stats: stats.as_ref().as_deref().map_err(Clone::clone),
        swarm: swarm.as_deref(),
        lent_spares: &lent_spares,
    };
    routes_view(&input, filter)
}

/// Everything the page shows; sync, overrides and history from one status.
async fn read(state: &ApiState, filter: &str) -> Dashboard {
    let status = state.reconciler.status();
    let routes = read_routes(state, &status, filter).await;
    let mut overrides = state.reconciler.overrides();
    redact_overrides(&mut overrides);
    let config = match tokio::fs::read_to_string(&state.config_file).await {
        Ok(text) => ConfigText::new(&text),
        Err(e) => ConfigText::Unreadable(format!("{}: {e}", state.config_file.display())),
    };
    let now = crate::util::unix_now();
    Dashboard {
        status,
        routes,
        overrides,
        config,
        now,
        rendered_at: crate::state::rfc3339(now),
    }
}

fn html(body: String) -> Response {
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response();
    if let Ok(policy) = HeaderValue::from_str(&page::content_security_policy()) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}
