//! Docker Flow Proxy's certificate endpoints: `PUT /cert?certName=<name>`
//! with a PEM body (certificate, chain, key) and `GET /certs`; capstan adds
//! `DELETE /cert?certName=<name>`. A PUT is checked (PEM rules, then
//! `haproxy -c`), stored in `<state>/certs/`, and answered once HAProxy
//! serves it: through the runtime API, without a reload, when HTTPS is
//! already served. Answers never hold a private key.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiState;
use crate::model::CertName;
use crate::reconcile::APPLY_TIMEOUT;
use crate::tls::{CertSource, Certificate, MAX_PEM_BYTES, ServedCertificate};

fn answer(code: StatusCode, message: &str, certs: Value) -> Response {
    let status = if code.is_success() { "OK" } else { "NOK" };
    (
        code,
        axum::Json(json!({"Status": status, "Message": message, "Certs": certs})),
    )
        .into_response()
}

fn refused(code: StatusCode, message: &str) -> Response {
    answer(code, message, Value::Null)
}

/// `certName`, the only parameter besides DFP's `distribute` (every capstan
/// serves what it is sent; there are no replicas to forward to).
fn cert_name(params: &[(String, String)]) -> Result<CertName, Box<Response>> {
    let bad = |message: String| Box::new(refused(StatusCode::BAD_REQUEST, &message));
    let unknown: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !matches!(*k, "certName" | "distribute"))
        .collect();
    if !unknown.is_empty() {
        return Err(bad(format!(
            "unsupported parameter(s): {}; only certName (and distribute) are accepted",
            unknown.join(", ")
        )));
    }
    let name = params
        .iter()
        .find(|(k, _)| k == "certName")
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad("Query parameter certName is mandatory".into()))?;
    name.parse().map_err(|e| {
        let shown: String = name
            .chars()
            .take(64)
            .flat_map(char::escape_default)
            .collect();
        bad(format!(
            "certName `{shown}` {e} (letters, digits, `.`, `_`, `-`; not starting with `.`)"
        ))
    })
}

/// The `certName` of a request that may change certificates: it needs the
/// API credentials when they are configured.
fn authorized_cert_name(
    state: &ApiState,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<CertName, Box<Response>> {
    match state.unauthorized(headers) {
        Some(denied) => Err(Box::new(denied)),
        None => cert_name(params),
    }
}

/// Waits for a reconcile that started after the change; `None` when HAProxy serves it.
async fn applied(state: &ApiState, run: u64) -> Option<String> {
    let completion =
        tokio::time::timeout(APPLY_TIMEOUT, state.reconciler.wait_for_run_after(run)).await;
    match completion {
        Ok(c) => c.error,
        Err(_) => Some("not applied in time; see /v1/status".into()),
    }
}

/// Stores a certificate (uploaded, or a reconfigure's `serviceCert`), asks
/// for a reconcile, and waits until HAProxy serves it. An error is the
/// status to answer and why.
pub(super) async fn store(
    state: &ApiState,
    name: &CertName,
    pem: &[u8],
) -> Result<Certificate, (StatusCode, String)> {
    let registry = state.reconciler.certificates();
    let certificate = registry.upload(name, pem).await.map_err(|e| {
        let code = if e.is_client_error() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        (code, e.to_string())
    })?;
    tracing::info!(cert = %name, fingerprint = certificate.pem.fingerprint(), "certificate uploaded");
    let run = state.reconciler.request_reconcile();
    match applied(state, run).await {
        None => Ok(certificate),
        Some(error) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the certificate is stored but not served yet: {error}"),
        )),
    }
}

pub async fn put(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = match authorized_cert_name(&state, &headers, &params) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    let body = match body {
        Ok(body) if body.len() <= MAX_PEM_BYTES => body,
        _ => {
            let message = format!("the body is larger than {MAX_PEM_BYTES} bytes");
            return refused(StatusCode::PAYLOAD_TOO_LARGE, &message);
        }
    };
    if body.is_empty() {
        return refused(
            StatusCode::BAD_REQUEST,
            "Body is empty: send the PEM (certificate, chain and key)",
        );
    }
    match store(&state, &name, &body).await {
        Ok(certificate) => {
            let served = served_now(&state, &certificate);
            answer(
                StatusCode::OK,
                "",
                json!([cert_json(&certificate, served.as_ref())]),
            )
        }
        Err((code, message)) => refused(code, &message),
    }
}

pub async fn delete(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let name = match authorized_cert_name(&state, &headers, &params) {
        Ok(name) => name,
        Err(response) => return *response,
    };
    match state.reconciler.certificates().delete(&name) {
        Ok(true) => {}
        Ok(false) => {
            return refused(
                StatusCode::NOT_FOUND,
                &format!("no uploaded certificate {name}"),
            );
        }
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    tracing::info!(cert = %name, "uploaded certificate deleted");
    let run = state.reconciler.request_reconcile();
    match applied(&state, run).await {
        None => answer(StatusCode::OK, "", Value::Null),
        Some(error) => refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the certificate is deleted but still served: {error}"),
        ),
    }
}

/// Every certificate capstan serves besides routes.yaml's own, and uploaded
/// ones not served yet. Certificates and chains only, never a key.
pub async fn list(State(state): State<ApiState>) -> Response {
    let registry = state.reconciler.certificates();
    let mut listed = registry.served();
    for uploaded in registry.uploaded() {
        if !listed.iter().any(|(c, _)| c.path == uploaded.path) {
            listed.push((uploaded, None));
        }
    }
    let certs: Vec<Value> = listed
        .iter()
        .map(|(c, s)| cert_json(c, s.as_ref()))
        .collect();
    answer(StatusCode::OK, "", Value::Array(certs))
}

fn served_now(state: &ApiState, certificate: &Certificate) -> Option<ServedCertificate> {
    state
        .reconciler
        .certificates()
        .served()
        .into_iter()
        .find(|(c, _)| c.path == certificate.path)
        .and_then(|(_, served)| served)
}

/// DFP's fields (`ProxyServiceName` is the certificate's name, `CertContent`
/// its certificates without the key), then capstan's.
fn cert_json(certificate: &Certificate, served: Option<&ServedCertificate>) -> Value {
    let dir = certificate
        .path
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let source = match &certificate.source {
        CertSource::Uploaded => "uploaded",
        CertSource::Directory { .. } => "directory",
    };
    let mut value = json!({
        "ServicePort": "",
        "ProxyServiceName": certificate.name.as_str(),
        "CertsDir": dir,
        "CertContent": certificate.pem.chain(),
        "Source": source,
        "Path": certificate.path.display().to_string(),
        "Fingerprint": certificate.pem.fingerprint(),
        "Served": served.is_some_and(|s| s.fingerprint == certificate.pem.fingerprint()),
    });
    if let Some(served) = served {
        value["Subject"] = json!(served.subject);
        value["AltNames"] = json!(served.alt_names);
        value["Serial"] = json!(served.serial);
        value["NotAfter"] = json!(served.not_after);
        value["Issuer"] = json!(served.issuer);
    }
    value
}

/// Every path of the API capstan does not serve: JSON, as the rest of it.
pub async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let path: String = uri.path().chars().take(256).collect();
    refused(
        StatusCode::NOT_FOUND,
        &format!("no such endpoint: {method} {path}"),
    )
}

/// A known path with a method it does not take.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let path: String = uri.path().chars().take(256).collect();
    refused(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{path} does not take {method}"),
    )
}
