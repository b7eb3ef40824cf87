//! `capstan health`: a container's HEALTHCHECK. Asks the local capstan's
//! `GET /healthz`; healthy when capstan answers and its HAProxy runs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Args;

use capstan::api::HealthAnswer;
use capstan::model::duration::parse_flag;

use super::client::block_on;

/// Where `capstan serve` listens by default.
const DEFAULT_URL: &str = "http://127.0.0.1:8080";

#[derive(Args)]
pub struct HealthArgs {
    /// The capstan API address. Default: the address of CAPSTAN_LISTEN (as
    /// `capstan serve` reads it; 0.0.0.0 is asked on 127.0.0.1), else
    /// http://127.0.0.1:8080.
    #[arg(long, env = "CAPSTAN_URL")]
    url: Option<String>,
    /// How long capstan has to answer.
    #[arg(long, default_value = "3s", value_parser = parse_flag)]
    timeout: Duration,
}

/// Exits 0 and prints HAProxy's processes when healthy; otherwise exits 1
/// and prints one line saying why (Docker keeps it in the health log).
pub fn run(args: HealthArgs) -> Result<ExitCode> {
    let url = match args.url {
        Some(url) => url,
        None => listen_url(std::env::var("CAPSTAN_LISTEN").ok().as_deref())?,
    };
    let url = format!("{}/healthz", url.trim_end_matches('/'));
    match block_on(ask(&url, args.timeout)) {
        Ok(answer) => {
            let workers: Vec<String> = answer.workers.iter().map(u32::to_string).collect();
            println!(
                "healthy: HAProxy master {}, worker(s) {}",
                answer.master_pid.unwrap_or_default(),
                workers.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("unhealthy: {why:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The API address `capstan serve` listens on, given its CAPSTAN_LISTEN,
/// as a client reaches it from the same host.
fn listen_url(listen: Option<&str>) -> Result<String> {
    let Some(listen) = listen else {
        return Ok(DEFAULT_URL.to_string());
    };
    let mut address: SocketAddr = listen
        .parse()
        .with_context(|| format!("CAPSTAN_LISTEN={listen:?} is not an address"))?;
    if address.ip().is_unspecified() {
        address.set_ip(match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(format!("http://{address}"))
}

async fn ask(url: &str, timeout: Duration) -> Result<HealthAnswer> {
    // A proxy from the environment has no business between a container
    // and itself.
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()?;
    let response = client.get(url).send().await.map_err(|e| {
        let why = if e.is_timeout() {
            format!("no answer within {timeout:?}")
        } else {
            innermost(&e)
        };
        anyhow!("capstan does not answer at {url}: {why}")
    })?;
    let code = response.status();
    let answer: Option<HealthAnswer> = response.json().await.ok();
    match answer {
        Some(answer) if code.is_success() => Ok(answer),
        Some(HealthAnswer {
            error: Some(error), ..
        }) => Err(anyhow!("{error}")),
        _ => Err(anyhow!("GET {url}: {code}")),
    }
}

/// The root cause of an error, e.g. `Connection refused (os error 111)`.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_follows_capstan_listen_and_asks_wildcards_on_loopback() {
        let url = |listen| listen_url(listen).unwrap();
        assert_eq!(url(None), "http://127.0.0.1:8080");
        assert_eq!(url(Some("0.0.0.0:9090")), "http://127.0.0.1:9090");
        assert_eq!(url(Some("10.0.0.5:8080")), "http://10.0.0.5:8080");
        assert_eq!(url(Some("[::]:8080")), "http://[::1]:8080");
        let error = listen_url(Some("localhost")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "CAPSTAN_LISTEN=\"localhost\" is not an address"
        );
    }
}
