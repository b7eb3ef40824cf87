//! `GET /healthz`: whether the proxy serves, for a container health check
//! (`capstan health`).
//!
//! Healthy means capstan answers and the HAProxy it drives runs: its master
//! answers on the master CLI and lists a worker. Being out of sync with git,
//! or a failed apply, is not unhealthy: HAProxy still serves the last good
//! config, and restarting capstan would not fix an unreachable repository
//! but would drop the traffic (`/v1/status` tells those apart).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use crate::haproxy::master::MasterCli;

/// How long the master CLI has to answer. It refuses connections for
/// ~30-75 ms around a reload, then queues them: far less than this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `GET /healthz` answers: 200 with the HAProxy processes when
/// healthy, 503 with `error` when not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthAnswer {
    /// `ok` or `unhealthy`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_pid: Option<u32>,
    /// The current workers' pids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<u32>,
    /// Why it is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub async fn healthz(State(state): State<ApiState>) -> Response {
    let master = MasterCli::new(&state.master_socket);
    let answer = match tokio::time::timeout(PROBE_TIMEOUT, master.show_proc()).await {
        Ok(Ok(procs)) if !procs.workers.is_empty() => HealthAnswer {
            status: "ok".into(),
            master_pid: Some(procs.master_pid),
            workers: procs.workers.iter().map(|w| w.pid).collect(),
            error: None,
        },
        Ok(Ok(procs)) => unhealthy(format!(
            "the HAProxy master {} runs no worker",
            procs.master_pid
        )),
        Ok(Err(error)) => unhealthy(format!(
            "HAProxy is not running (not started yet, or died; see /v1/status): {error}"
        )),
        Err(_) => unhealthy(format!(
            "the HAProxy master did not answer within {PROBE_TIMEOUT:?}"
        )),
    };
    let code = if answer.error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(answer)).into_response()
}

fn unhealthy(error: String) -> HealthAnswer {
    HealthAnswer {
        status: "unhealthy".into(),
        master_pid: None,
        workers: Vec::new(),
        error: Some(error),
    }
}
