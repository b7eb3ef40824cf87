//! `capstan status`, `capstan overrides` and the live side of `capstan diff`:
//! clients of a running capstan's API. Its answers are read as the types the
//! server serializes them from, not by string keys.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::de::DeserializeOwned;

use capstan::api::{self, LiveAnswer, OverridesAnswer};
use capstan::diff::Snapshot;
use capstan::reconcile::Status;
use capstan::report;
use capstan::sources::Warning;
use capstan::sources::overrides::{self, OverrideSet};
use capstan::util::unix_now;

use super::read_secret;

/// The credentials a client command sends to capstan's API, when it requires
/// them (`capstan serve --api-token-file` or `--api-basic-auth-file`).
#[derive(Args, Default)]
pub struct Credentials {
    /// File holding the API bearer token, when the API requires one.
    #[arg(long, env = "CAPSTAN_API_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// File holding `user:password` for the API's basic auth, when it requires it.
    #[arg(
        long,
        env = "CAPSTAN_API_BASIC_AUTH_FILE",
        global = true,
        conflicts_with = "token_file"
    )]
    basic_auth_file: Option<PathBuf>,
}

impl Credentials {
    fn apply(&self, request: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder> {
        Ok(match (&self.token_file, &self.basic_auth_file) {
            (Some(path), _) => request.bearer_auth(read_secret(path)?),
            (None, Some(path)) => {
                let secret = read_secret(path)?;
                let (user, password) = secret
                    .split_once(':')
                    .with_context(|| format!("{}: expected `user:password`", path.display()))?;
                request.basic_auth(user, Some(password))
            }
            (None, None) => request,
        })
    }
}

pub(super) fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// `GET url` as JSON; an error status is an error, with the reason the
/// answer gives.
async fn get_json(url: &str, credentials: &Credentials) -> Result<serde_json::Value> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let response = credentials
        .apply(client.get(url))?
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let code = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("GET {url}: not JSON"))?;
    if !code.is_success() {
        // Errors say `error`; the Docker-Flow-Proxy-style 401 says `Message`.
        let reason = ["error", "Message"]
            .iter()
            .find_map(|key| body.get(key)?.as_str())
            .unwrap_or_default();
        bail!("GET {url}: {code}: {reason}");
    }
    Ok(body)
}

/// `GET url`, read as a `T`; `what` names it in the error.
fn get<T: DeserializeOwned>(url: &str, credentials: &Credentials, what: &str) -> Result<T> {
    let body = block_on(get_json(url, credentials))?;
    serde_json::from_value(body).with_context(|| format!("{url}: not {what}"))
}

/// What a running capstan serves, as the base of a diff, and the
/// overrides in force there.
pub fn live_snapshot(
    url: &str,
    credentials: &Credentials,
) -> Result<(Snapshot, OverrideSet, Vec<Warning>)> {
    let url = format!("{}/v1/live", url.trim_end_matches('/'));
    let LiveAnswer {
        revision,
        mut routes,
        overrides,
        warnings,
    } = get(&url, credentials, "what capstan serves")?;
    let mut overrides = OverrideSet { overrides };
    // The API shows password fingerprints to clients without credentials:
    // the diff compares fingerprints, whichever it sent (git's side too).
    api::redact_routes(&mut routes);
    api::redact_overrides(&mut overrides);
    let snapshot = Snapshot::rendered(format!("live {}", revision.label), revision.commit, routes);
    Ok((snapshot, overrides, warnings))
}

#[derive(clap::Subcommand)]
pub enum OverridesCommand {
    /// List the overrides in force and how they differ from git.
    List {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the overrides as routes.yaml entries, to commit to git.
    Export,
    /// Delete a service's override (git's routes serve again).
    Delete { service: String },
}

/// `capstan overrides list|export|delete`.
pub fn overrides(
    url: &str,
    credentials: &Credentials,
    command: OverridesCommand,
) -> Result<ExitCode> {
    let url = format!("{}/v1/overrides", url.trim_end_matches('/'));
    let answer = || get::<OverridesAnswer>(&url, credentials, "the overrides");
    match command {
        OverridesCommand::List { json: true } => {
            let body = block_on(get_json(&url, credentials))?;
            println!("{}", serde_json::to_string_pretty(&body)?);
        }
        OverridesCommand::List { json: false } => {
            let OverridesAnswer {
                overrides,
                drift,
                certificates,
            } = answer()?;
            print!(
                "{}",
                report::overrides(&OverrideSet { overrides }, &drift, unix_now())
            );
            print!("{}", report::uploaded_certificates(&certificates));
        }
        OverridesCommand::Export => {
            let set = OverrideSet {
                overrides: answer()?.overrides,
            };
            if api::has_fingerprints(&set) {
                eprintln!(
                    "warning: the API showed password fingerprints, not hashes: put the real hashes in before committing (the API shows them to clients with credentials, when it requires them)"
                );
            }
            print!("{}", overrides::export(&set));
        }
        OverridesCommand::Delete { service } => {
            let request =
                credentials.apply(reqwest::Client::new().delete(format!("{url}/{service}")))?;
            block_on(async {
                let response = request.send().await.context("DELETE override")?;
                let code = response.status();
                let body = response.text().await.unwrap_or_default();
                if !code.is_success() {
                    bail!("{code}: {body}");
                }
                println!("override of {service} deleted");
                Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit codes of `capstan status`.
const STATUS_HEALTHY: u8 = 0;
const STATUS_UNHEALTHY: u8 = 2;

/// `capstan status`: exits 0 when healthy, 2 when not (see
/// [`report::is_healthy`]), 1 when capstan cannot be asked.
pub fn status(url: &str, json: bool) -> Result<ExitCode> {
    let url = format!("{}/v1/status", url.trim_end_matches('/'));
    let body = block_on(get_json(&url, &Credentials::default()))?;
    let status: Status =
        serde_json::from_value(body.clone()).with_context(|| format!("{url}: not a status"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", report::status(&status));
    }
    Ok(ExitCode::from(if report::is_healthy(&status) {
        STATUS_HEALTHY
    } else {
        STATUS_UNHEALTHY
    }))
}
