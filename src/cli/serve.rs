//! `capstan serve`, `capstan status` and the live side of `capstan diff`:
//! the binary's wiring of sources, reconciler, HAProxy and the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use capstan::api::{self, ApiAuth, ApiState};
use capstan::desired::servers::Warning;
use capstan::diff::Snapshot;
use capstan::haproxy::driver::Haproxy;
use capstan::haproxy::process::RuntimePaths;
use capstan::model::RoutesFile;
use capstan::model::duration::parse_flag;
use capstan::reconcile::{Reconciler, SwarmSource};
use capstan::report::{self, StatusView};
use capstan::sources::RoutesSource;
use capstan::sources::git::{GitAuth, RemoteRepo};
use capstan::sources::overrides::{OverrideSet, OverrideStore};
use capstan::sources::swarm::Swarm;
use capstan::state::{RevisionInfo, StateDir};
use capstan::webhook::WebhookSecret;

#[derive(Args)]
pub struct ServeArgs {
    /// Git remote holding the routes (file://, https:// or ssh://). Without
    /// it, --routes-file is served, or else the example built into capstan.
    #[arg(long, env = "CAPSTAN_REPO", value_name = "URL")]
    repo: Option<String>,
    /// Branch to follow.
    #[arg(long, env = "CAPSTAN_BRANCH", default_value = "main")]
    branch: String,
    /// Path of the routes file inside the repository.
    #[arg(long, env = "CAPSTAN_FILE", default_value = "routes.yaml")]
    file: String,
    /// A local routes file to serve instead of a git repository (re-read on
    /// every poll and trigger).
    #[arg(long, env = "CAPSTAN_ROUTES_FILE", conflicts_with = "repo")]
    routes_file: Option<PathBuf>,
    /// Where capstan keeps haproxy.cfg, its sockets, the git cache and
    /// state.json. Survives restarts.
    #[arg(long, env = "CAPSTAN_STATE_DIR", default_value = "/var/lib/capstan")]
    state_dir: PathBuf,
    /// How often to pull the repository (also the longest retry backoff).
    #[arg(long, env = "CAPSTAN_POLL_INTERVAL", default_value = "30s", value_parser = parse_flag)]
    poll_interval: Duration,
    /// Address of capstan's HTTP API (status, webhook, metrics).
    #[arg(long, env = "CAPSTAN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// File holding the push webhook secret (GitHub's HMAC secret or
    /// GitLab's token). Without it, webhooks are accepted unverified.
    #[arg(long, env = "CAPSTAN_WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<PathBuf>,
    /// File holding a bearer token that the mutating API endpoints
    /// (Docker Flow Proxy's reconfigure, remove, reload; override deletion)
    /// require. Without it, or --api-basic-auth-file, they are open, as in
    /// Docker Flow Proxy.
    #[arg(long, env = "CAPSTAN_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    /// File holding `user:password` for basic auth on the mutating endpoints.
    #[arg(
        long,
        env = "CAPSTAN_API_BASIC_AUTH_FILE",
        conflicts_with = "api_token_file"
    )]
    api_basic_auth_file: Option<PathBuf>,
    /// Lifetime of overrides whose request sets no `ttl` (e.g. 24h); without
    /// it they last until removed or declared by git.
    #[arg(long, env = "CAPSTAN_OVERRIDE_TTL", value_parser = parse_flag)]
    override_ttl: Option<Duration>,
    /// File holding an https access token for the repository.
    #[arg(long, env = "CAPSTAN_GIT_TOKEN_FILE")]
    git_token_file: Option<PathBuf>,
    /// User name sent with the token (GitHub: x-access-token, GitLab: oauth2).
    #[arg(long, env = "CAPSTAN_GIT_USERNAME", default_value = "x-access-token")]
    git_username: String,
    /// Private key for ssh:// remotes.
    #[arg(long, env = "CAPSTAN_SSH_KEY")]
    ssh_key: Option<PathBuf>,
    /// known_hosts file that ssh:// remotes' host keys are checked against.
    #[arg(
        long,
        env = "CAPSTAN_KNOWN_HOSTS",
        default_value = "/etc/ssh/ssh_known_hosts"
    )]
    known_hosts: PathBuf,
    /// The haproxy binary.
    #[arg(long, env = "CAPSTAN_HAPROXY", default_value = "haproxy")]
    haproxy: PathBuf,
    /// Drive an HAProxy started elsewhere through this master CLI socket
    /// instead of starting one (it must run in master-worker mode with
    /// -S <socket> and load --attach-config).
    #[arg(long, env = "CAPSTAN_ATTACH_MASTER_SOCKET", requires = "attach_config")]
    attach_master_socket: Option<PathBuf>,
    /// The config file the attached HAProxy loads; capstan rewrites it.
    #[arg(long, env = "CAPSTAN_ATTACH_CONFIG")]
    attach_config: Option<PathBuf>,
    /// Take each route's servers from Docker Swarm: every running task of its
    /// service (through the local Docker Engine, or DOCKER_HOST), scaled at
    /// run time without reloads. Routes with `endpoint: vip` or `servers`
    /// keep their fixed servers.
    #[arg(long, env = "CAPSTAN_SWARM")]
    swarm: bool,
    /// A network the proxy shares with the services (repeatable); tasks are
    /// reached on these. Default: every network of a service but ingress.
    #[arg(
        long = "swarm-network",
        env = "CAPSTAN_SWARM_NETWORKS",
        value_delimiter = ','
    )]
    swarm_networks: Vec<String>,
    /// Also route services labelled `com.df.notify=true` by their `com.df.*`
    /// labels, as Docker Flow Swarm Listener did (migration path). Git's
    /// routes win over label routes of the same id; overrides win over both.
    #[arg(long, env = "CAPSTAN_SWARM_LABELS", requires = "swarm")]
    swarm_labels: bool,
    /// How long an API client has to send its request headers, and how long
    /// an idle keep-alive connection stays open; then capstan closes it.
    #[arg(long, env = "CAPSTAN_API_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_flag)]
    api_header_timeout: Duration,
    /// Most API connections served at once; more wait in the kernel's listen
    /// backlog. Lowered at startup so that 64 file descriptors of the limit
    /// (RLIMIT_NOFILE, raised to its hard limit) stay for reconciling.
    #[arg(long, env = "CAPSTAN_MAX_CONNECTIONS", default_value_t = 512)]
    max_connections: usize,
    /// Log format.
    #[arg(long, env = "CAPSTAN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn read_secret(path: &PathBuf) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(secret)
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> Result<()> {
    let state_dir = StateDir::open(&args.state_dir)?;
    let state = state_dir.load()?;
    let source = routes_source(&args, &state_dir)?;
    let paths = RuntimePaths::in_dir(state_dir.run_dir());
    let mut haproxy = match (&args.attach_master_socket, &args.attach_config) {
        (Some(master), Some(config)) => Haproxy::attached(
            args.haproxy.clone(),
            config.clone(),
            RuntimePaths {
                master_socket: master.clone(),
                ..paths
            },
        ),
        _ => Haproxy::supervised(args.haproxy.clone(), state_dir.config_file(), paths),
    };
    if let Err(error) = haproxy.resume().await {
        tracing::error!(%error, "could not resume HAProxy with the last applied config");
    }
    let webhook_secret = match &args.webhook_secret_file {
        Some(path) => Some(Arc::new(WebhookSecret::new(
            read_secret(path)?.into_bytes(),
        ))),
        None => {
            tracing::warn!("no --webhook-secret-file: push webhooks are accepted unverified");
            None
        }
    };
    let overrides = OverrideStore::new(state_dir.root()).load()?;
    if !overrides.overrides.is_empty() {
        tracing::info!(
            count = overrides.overrides.len(),
            "overrides in force (see /v1/status)"
        );
    }
    let auth = match (&args.api_token_file, &args.api_basic_auth_file) {
        (Some(path), _) => Some(Arc::new(ApiAuth::Bearer(read_secret(path)?))),
        (None, Some(path)) => Some(Arc::new(ApiAuth::Basic(read_secret(path)?))),
        (None, None) => {
            if args.listen.ip().is_loopback() {
                tracing::info!("the reconfigure API is open (loopback only)");
            } else {
                tracing::warn!(
                    listen = %args.listen,
                    "THE RECONFIGURE API IS OPEN TO THE NETWORK: anyone who reaches it can change routes; set --api-token-file or --api-basic-auth-file"
                );
            }
            None
        }
    };
    let config_file = args
        .attach_config
        .clone()
        .unwrap_or_else(|| state_dir.config_file());
    let mut reconciler = Reconciler::new(source, state_dir, haproxy, state, overrides);
    if args.swarm {
        let client = Swarm::connect().await.context("connecting to Docker")?;
        let (tx, events) = tokio::sync::mpsc::channel(1);
        let watcher = client.clone();
        tokio::spawn(async move { watcher.watch(tx).await });
        reconciler = reconciler.with_swarm(SwarmSource {
            client,
            networks: args.swarm_networks.clone(),
            events,
            labels: args.swarm_labels,
        });
        tracing::info!(networks = ?args.swarm_networks, "Swarm discovery on");
    }
    let api_state = ApiState {
        shared: reconciler.shared.clone(),
        webhook_secret,
        branch: args.repo.as_ref().map(|_| args.branch.clone()),
        auth,
        default_ttl: args.override_ttl,
        config_file,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the API to {}", args.listen))?;
    tracing::info!(listen = %args.listen, state_dir = %args.state_dir.display(), "capstan serving");
    let api = serve_api(
        listener,
        api::router(api_state),
        connection_cap(args.max_connections),
        args.api_header_timeout,
    );
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    tokio::select! {
        () = reconciler.run(args.poll_interval) => {}
        () = api => {}
        () = shutdown => tracing::info!("stopping; HAProxy keeps serving"),
    }
    Ok(())
}

/// File descriptors kept for the reconciler (git, HAProxy's sockets,
/// `haproxy -c`, files) whatever the API's clients do.
const FD_RESERVE: u64 = 64;

/// The most API connections to serve at once: `requested`, lowered so that
/// the connections, the descriptors already open and `FD_RESERVE` fit in
/// the descriptor limit (first raised to its hard limit).
fn connection_cap(requested: usize) -> usize {
    let limit = raise_fd_limit();
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |fds| fds.count() as u64);
    let Some(limit) = limit else {
        tracing::warn!(
            max_connections = requested,
            "could not read the file descriptor limit"
        );
        return requested;
    };
    let room = usize::try_from(limit.saturating_sub(open + FD_RESERVE)).unwrap_or(usize::MAX);
    let cap = requested.min(room).max(1);
    if cap < requested {
        tracing::warn!(
            max_connections = cap,
            requested,
            fd_limit = limit,
            open_fds = open,
            reserve = FD_RESERVE,
            "API connections lowered to fit the file descriptor limit"
        );
    } else {
        tracing::info!(
            max_connections = cap,
            fd_limit = limit,
            open_fds = open,
            reserve = FD_RESERVE,
            "API connection limit"
        );
    }
    cap
}

/// Raises the soft RLIMIT_NOFILE to the hard one; returns the soft limit in force.
fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// Serves the API so that no client can hold capstan's file descriptors:
/// each connection must send its request headers within `header_timeout`
/// (hyper restarts that timer while a keep-alive connection waits for its
/// next request, so it is the idle timeout too), and at most
/// `max_connections` are served at once. The others wait in the kernel's
/// backlog, costing capstan nothing, until a slot frees.
async fn serve_api(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    max_connections: usize,
    header_timeout: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, most likely: a pause lets some free
                // rather than spinning on the error.
                tracing::warn!(%error, "accepting an API connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "API connection closed");
            }
            drop(slot);
        });
    }
}

fn routes_source(args: &ServeArgs, state_dir: &StateDir) -> Result<RoutesSource> {
    if let Some(path) = &args.routes_file {
        return Ok(RoutesSource::File(path.clone()));
    }
    let Some(url) = &args.repo else {
        tracing::info!("no --repo or --routes-file: serving the example routes built into capstan");
        return Ok(RoutesSource::Embedded);
    };
    let auth = if let Some(token_file) = &args.git_token_file {
        GitAuth::Token {
            username: args.git_username.clone(),
            token: read_secret(token_file)?,
        }
    } else if let Some(key) = &args.ssh_key {
        GitAuth::SshKey {
            username: "git".into(),
            private_key: key.clone(),
            passphrase: None,
            known_hosts: args.known_hosts.clone(),
        }
    } else {
        GitAuth::None
    };
    let repo = RemoteRepo::open(url, &state_dir.git_cache(), auth)?;
    Ok(RoutesSource::Git {
        url: url.clone(),
        repo: Arc::new(Mutex::new(repo)),
        branch: args.branch.clone(),
        file: args.file.clone(),
    })
}

fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

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

/// What a running capstan serves, as the base of a diff, and the
/// overrides in force there.
pub fn live_snapshot(
    url: &str,
    credentials: &Credentials,
) -> Result<(Snapshot, OverrideSet, Vec<Warning>)> {
    let url = format!("{}/v1/live", url.trim_end_matches('/'));
    let body = block_on(get_json(&url, credentials))?;
    let revision: RevisionInfo = serde_json::from_value(body["revision"].clone())
        .with_context(|| format!("{url}: no revision"))?;
    let mut routes: RoutesFile = serde_json::from_value(body["routes"].clone())
        .with_context(|| format!("{url}: no routes"))?;
    let mut overrides: OverrideSet =
        serde_json::from_value(serde_json::json!({ "overrides": body["overrides"] }))
            .with_context(|| format!("{url}: no overrides"))?;
    let warnings: Vec<Warning> =
        serde_json::from_value(body["warnings"].clone()).unwrap_or_default();
    // The API shows password fingerprints to clients without credentials:
    // the diff compares fingerprints, whichever it sent (git's side too).
    api::redact_routes(&mut routes);
    api::redact_overrides(&mut overrides);
    let snapshot = Snapshot::rendered(format!("live {}", revision.label), revision.commit, routes);
    Ok((snapshot, overrides, warnings))
}

/// `capstan overrides list|export|delete`.
pub fn overrides(
    url: &str,
    credentials: &Credentials,
    command: OverridesCommand,
) -> Result<ExitCode> {
    let base = url.trim_end_matches('/');
    match command {
        OverridesCommand::List { json } => {
            let body = block_on(get_json(&format!("{base}/v1/overrides"), credentials))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(ExitCode::SUCCESS);
            }
            let drift = body["drift"].as_array().cloned().unwrap_or_default();
            let overrides = body["overrides"].as_object().cloned().unwrap_or_default();
            if overrides.is_empty() {
                println!("no overrides: HAProxy serves what git declares");
            }
            for (service, o) in &overrides {
                let d = drift.iter().find(|d| d["service"] == service.as_str());
                let list = |key: &str| {
                    d.and_then(|d| d[key].as_array())
                        .map(|v| {
                            v.iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .filter(|s| !s.is_empty())
                };
                let mut effects = Vec::new();
                for (key, verb) in [
                    ("adds", "adds"),
                    ("replaces", "replaces git's"),
                    ("removes", "hides git's"),
                ] {
                    if let Some(ids) = list(key) {
                        effects.push(format!("{verb} {ids}"));
                    }
                }
                let expires = o["expires_at"]
                    .as_u64()
                    .map(|t| {
                        format!(
                            ", expires in {}s",
                            t.saturating_sub(capstan::reconcile::unix_now())
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "{service}: {} since {}{expires}: {}",
                    o["kind"].as_str().unwrap_or_default(),
                    o["created_at"].as_str().unwrap_or_default(),
                    if effects.is_empty() {
                        "no effect".to_string()
                    } else {
                        effects.join("; ")
                    }
                );
            }
        }
        OverridesCommand::Export => {
            let body = block_on(get_json(&format!("{base}/v1/overrides"), credentials))?;
            let set: capstan::sources::overrides::OverrideSet =
                serde_json::from_value(serde_json::json!({ "overrides": body["overrides"] }))
                    .context("reading the overrides")?;
            if api::has_fingerprints(&set) {
                eprintln!(
                    "warning: the API showed password fingerprints, not hashes: put the real hashes in before committing (the API shows them to clients with credentials, when it requires them)"
                );
            }
            print!("{}", capstan::sources::overrides::export(&set));
        }
        OverridesCommand::Delete { service } => {
            let request = credentials
                .apply(reqwest::Client::new().delete(format!("{base}/v1/overrides/{service}")))?;
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

/// Exit codes of `capstan status`.
const STATUS_HEALTHY: u8 = 0;
const STATUS_UNHEALTHY: u8 = 2;

pub fn status(url: &str, json: bool) -> Result<ExitCode> {
    let url = format!("{}/v1/status", url.trim_end_matches('/'));
    let body = block_on(get_json(&url, &Credentials::default()))?;
    let status: StatusView =
        serde_json::from_value(body.clone()).with_context(|| format!("{url}: not a status"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", report::status(&status));
    }
    Ok(ExitCode::from(if status.is_healthy() {
        STATUS_HEALTHY
    } else {
        STATUS_UNHEALTHY
    }))
}
