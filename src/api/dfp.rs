//! The Docker-Flow-Proxy-compatible API under `/v1/docker-flow-proxy/`:
//! `reconfigure`, `remove`, `reload`, `config`, `ping`. Same parameters and
//! JSON answers as Docker Flow Proxy; each change becomes a persisted
//! override on top of git, and the answer is sent once it serves (or failed).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ApiState;
use crate::dfp::{self, AnswerStatus, DfpError, ParamProblem};
use crate::model::Userlist;
use crate::reconcile::{APPLY_TIMEOUT, OverrideError};
use crate::sources::overrides::{Action, Override, OverrideChange};
use crate::sources::user_files::read_entries;
use crate::state;
use crate::util::unix_now;

fn answer(code: StatusCode, body: Value) -> Response {
    (code, axum::Json(body)).into_response()
}

fn nok(code: StatusCode, message: &str) -> Response {
    answer(code, dfp::error_answer(message))
}

/// A Docker Flow Proxy error as its answer: 400 or 409, `Status: NOK`.
fn refused(e: &dfp::DfpError) -> Response {
    let code = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::BAD_REQUEST);
    nok(code, &e.to_string())
}

fn authorized(state: &ApiState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    state
        .unauthorized(headers)
        .map_or(Ok(()), |denied| Err(Box::new(denied)))
}

/// Persists an override change, then waits until a reconcile including it
/// finished: the answer tells whether HAProxy serves it.
async fn submit(state: &ApiState, change: OverrideChange) -> Result<(), Box<Response>> {
    state.reconciler.change_override(change).await.map_err(|e| {
        let code = if e.is_client_error() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        let message = match e {
            OverrideError::Invalid(diagnostics) => {
                format!("the change conflicts with git's routes or other overrides: {diagnostics}")
            }
            other => other.to_string(),
        };
        Box::new(nok(code, &message))
    })
}

pub async fn reconfigure(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let request = match authorized(&state, &headers).and_then(|()| {
        dfp::parse_reconfigure_in(&params, &state.secrets_dir)
            .and_then(|request| users_files_readable(&request).map(|()| request))
            .map_err(|e| Box::new(refused(&e)))
    }) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    // DFP stored the certificate before applying the routes.
    if let Some(cert) = &request.service_cert
        && let Err((code, message)) =
            super::certs::store(&state, &cert.name, cert.pem.text().as_bytes()).await
    {
        return nok(code, &format!("serviceCert: {message}"));
    }
    let expires_at = request
        .ttl
        .or(state.default_ttl)
        .map(|ttl| unix_now() + ttl.as_secs());
    let service = request.service_name.clone();
    let change = Override {
        service: service.clone(),
        action: Action::Reconfigure {
            routes: request.routes.clone(),
            userlists: request.userlists.clone(),
        },
        created_at: state::now(),
        expires_at,
    };
    if let Err(response) = submit(&state, OverrideChange::Put(change)).await {
        // A conflict with git or other overrides: say it in Docker Flow
        // Proxy's parameter names when the request's own routes are at fault.
        if response.status() == StatusCode::BAD_REQUEST {
            let mut table = state.reconciler.routes_without(&service);
            let ids: Vec<_> = request.routes.iter().map(|r| r.id()).collect();
            table.routes.retain(|r| !ids.contains(&r.id()));
            if let Err(e) = request.validate_in(&table) {
                return refused(&e);
            }
        }
        return *response;
    }
    answer(
        StatusCode::OK,
        dfp::reconfigure_answer(AnswerStatus::Ok, "", &service, &request.echo),
    )
}

/// A `usersSecret` whose file cannot be read now is refused rather than
/// stored: it would fail every reconcile until the file is fixed.
fn users_files_readable(request: &dfp::Reconfigure) -> Result<(), DfpError> {
    for list in request.userlists.values() {
        if let Userlist::File(file) = list {
            read_entries(file).map_err(|e| DfpError::Invalid {
                problems: vec![ParamProblem {
                    param: "usersSecret".into(),
                    message: e.to_string(),
                }],
            })?;
        }
    }
    Ok(())
}

pub async fn remove(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let request = match authorized(&state, &headers)
        .and_then(|()| dfp::parse_remove(&params).map_err(|e| Box::new(refused(&e))))
    {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let service = request.service_name.clone();
    let in_git = state.reconciler.git_declares(&service);
    // A service only an override added goes with its override; one git
    // declares is hidden by a remove override until that is deleted.
    let change = if in_git {
        OverrideChange::Put(Override {
            service: service.clone(),
            action: Action::Remove,
            created_at: state::now(),
            expires_at: None,
        })
    } else {
        OverrideChange::Delete(service.clone())
    };
    let result = submit(&state, change).await;
    match result {
        Ok(()) => answer(StatusCode::OK, dfp::remove_answer(&service)),
        Err(response) => *response,
    }
}

pub async fn reload(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(denied) = state.unauthorized(&headers) {
        return denied;
    }
    // capstan reloads only when the config changed: a reload request
    // re-fetches git and reconciles (retrying even a config that failed
    // before), and answers once that is done. OK only when HAProxy serves
    // git's newest revision.
    let run = state.reconciler.request_reload();
    let completion =
        tokio::time::timeout(APPLY_TIMEOUT, state.reconciler.wait_for_run_after(run)).await;
    match completion {
        Ok(c) => match c.error.or(c.fetch_error) {
            None => answer(StatusCode::OK, dfp::ok_answer()),
            Some(error) => nok(StatusCode::INTERNAL_SERVER_ERROR, &error),
        },
        Err(_) => nok(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reconcile did not finish in time",
        ),
    }
}

pub async fn config(
    State(state): State<ApiState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let applied = state.reconciler.applied_routes();
    let Some((_, routes)) = applied else {
        return nok(StatusCode::SERVICE_UNAVAILABLE, "nothing applied yet");
    };
    if params.iter().any(|(k, v)| k == "type" && v == "json") {
        return answer(StatusCode::OK, dfp::config_answer(&routes.routes));
    }
    let text = crate::haproxy::driver::config_with_maps(&state.config_file).unwrap_or_default();
    (StatusCode::OK, text).into_response()
}

pub async fn ping() -> Response {
    answer(StatusCode::OK, dfp::ok_answer())
}
