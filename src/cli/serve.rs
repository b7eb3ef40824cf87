//! `capstan serve`: the binary's wiring of sources, reconciler, HAProxy and
//! the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use capstan::api::{self, ApiAuth, ApiState, ServerStats};
use capstan::dfp::SecretsDir;
use capstan::haproxy::driver::Haproxy;
use capstan::haproxy::process::{RuntimePaths, Stopped};
use capstan::model::duration::parse_flag;
use capstan::reconcile::{Reconciler, ReconcilerHandle, SwarmSource, follow_shared};
use capstan::render::HARD_STOP_AFTER;
use capstan::sources::RoutesSource;
use capstan::sources::git::{GitAuth, RemoteRepo};
use capstan::sources::overrides::OverrideStore;
use capstan::sources::overrides::swarm_store::SwarmStore;
use capstan::sources::swarm::Swarm;
use capstan::state::StateDir;
use capstan::webhook::WebhookSecret;

use super::read_secret;

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
    /// Where Docker mounts the proxy's secrets: Docker Flow Proxy's
    /// `usersSecret=<name>` (API call or `com.df.usersSecret` label) reads the
    /// users of the file `dfp_users_<name>` in it.
    #[arg(long, env = "CAPSTAN_SECRETS_DIR", default_value = SecretsDir::DEFAULT)]
    secrets_dir: SecretsDir,
    /// How long an API client has to send its request headers, and how long
    /// an idle keep-alive connection stays open; then capstan closes it.
    #[arg(long, env = "CAPSTAN_API_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_flag)]
    api_header_timeout: Duration,
    /// Most API connections served at once; more wait in the kernel's listen
    /// backlog. Lowered at startup so that 64 file descriptors of the limit
    /// (RLIMIT_NOFILE, raised to its hard limit) stay for reconciling.
    #[arg(long, env = "CAPSTAN_MAX_CONNECTIONS", default_value_t = 512)]
    max_connections: usize,
    /// Where overrides (the reconfigure API's changes) are kept: `state-dir`
    /// (overrides.json, this capstan's own); `swarm`: Swarm config objects
    /// shared by every replica of the Swarm service this capstan runs as a
    /// task of; `swarm:<group>`: shared by every capstan started with the
    /// same group. Swarm keeps them in its replicated store, so they reach
    /// every replica and survive tasks being rescheduled; it needs a Swarm
    /// manager's Docker API (run the replicas on managers).
    #[arg(long, env = "CAPSTAN_OVERRIDES", default_value = "state-dir", value_parser = parse_overrides_location)]
    overrides: OverridesLocation,
    /// Log format.
    #[arg(long, env = "CAPSTAN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// On SIGTERM or SIGINT, stop the HAProxy capstan supervises too, softly:
    /// its listeners close and the requests in flight get up to this long to
    /// finish (e.g. 8s), then it is killed and capstan exits. For a
    /// container, which ends with capstan: give it a stop grace period a
    /// few seconds longer. Without it HAProxy keeps serving after capstan
    /// exits. At most 30s, HAProxy's hard-stop-after.
    #[arg(long, env = "CAPSTAN_STOP_GRACE", value_parser = parse_stop_grace)]
    stop_grace: Option<Duration>,
}

/// A `--stop-grace`: a duration HAProxy's `hard-stop-after` lets a soft
/// stop last.
fn parse_stop_grace(text: &str) -> Result<Duration, String> {
    let grace = parse_flag(text).map_err(|e| e.to_string())?;
    if grace > HARD_STOP_AFTER {
        return Err(format!(
            "at most {}s: HAProxy's hard-stop-after closes every connection then",
            HARD_STOP_AFTER.as_secs()
        ));
    }
    Ok(grace)
}

/// Where `--overrides` keeps the overrides.
#[derive(Clone, Debug)]
enum OverridesLocation {
    StateDir,
    /// The group; `None`: this task's service.
    Swarm {
        group: Option<String>,
    },
}

fn parse_overrides_location(value: &str) -> Result<OverridesLocation, String> {
    match value.split_once(':') {
        None if value == "state-dir" => Ok(OverridesLocation::StateDir),
        None if value == "swarm" => Ok(OverridesLocation::Swarm { group: None }),
        Some(("swarm", group)) if !group.trim().is_empty() => Ok(OverridesLocation::Swarm {
            group: Some(group.trim().to_string()),
        }),
        Some(("swarm", _)) => Err("swarm:<group> needs a group name, e.g. swarm:proxy".into()),
        _ => Err(format!(
            "`{value}`: expected state-dir, swarm or swarm:<group>"
        )),
    }
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
    let mut haproxy = haproxy(&args, &state_dir);
    if let Err(error) = haproxy.resume().await {
        tracing::error!(%error, "could not resume HAProxy with the last applied config");
    }
    let webhook_secret = webhook_secret(&args)?;
    let docker = match (args.swarm, &args.overrides) {
        (false, OverridesLocation::StateDir) => None,
        _ => Some(Swarm::connect().await.context("connecting to Docker")?),
    };
    let store = override_store(&args, &state_dir, docker.as_ref()).await?;
    let overrides = store
        .load()
        .await
        .with_context(|| format!("reading the overrides from {}", store.describe()))?;
    if !overrides.overrides.is_empty() {
        tracing::info!(
            count = overrides.overrides.len(),
            "overrides in force (see /v1/status)"
        );
    }
    let auth = api_auth(&args)?;
    let config_file = args
        .attach_config
        .clone()
        .unwrap_or_else(|| state_dir.config_file());
    let master_socket = haproxy.master_socket().to_path_buf();
    let admin_socket = haproxy.admin_socket().to_path_buf();
    let shared = match &store {
        OverrideStore::Swarm(shared) => Some(shared.clone()),
        OverrideStore::StateDir(_) => None,
    };
    let mut reconciler = Reconciler::new(source, state_dir, haproxy, state, overrides, store);
    if let Some(shared) = shared {
        tracing::info!(group = shared.group(), "overrides shared through Swarm");
        tokio::spawn(follow_shared(shared, reconciler.handle()));
    }
    if let Some(client) = docker.clone().filter(|_| args.swarm) {
        reconciler = reconciler.with_swarm(swarm_source(&args, client));
        tracing::info!(networks = ?args.swarm_networks, "Swarm discovery on");
    }
    tokio::spawn(find_replica(docker, reconciler.handle()));
    let api_state = ApiState {
        reconciler: reconciler.handle(),
        webhook_secret,
        branch: args.repo.as_ref().map(|_| args.branch.clone()),
        auth,
        default_ttl: args.override_ttl,
        config_file,
        secrets_dir: args.secrets_dir.clone(),
        master_socket,
        server_stats: Arc::new(ServerStats::new(admin_socket)),
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
    tokio::select! {
        haproxy = reconciler.run_until(args.poll_interval, shutdown()) => {
            stop(haproxy, args.stop_grace).await;
        }
        () = api => {}
    }
    Ok(())
}

/// On the way out: HAProxy keeps serving, or with `--stop-grace`, is
/// stopped softly (the API no longer answers meanwhile).
async fn stop(haproxy: Haproxy, grace: Option<Duration>) {
    let Some(grace) = grace else {
        tracing::info!("stopping; HAProxy keeps serving");
        return;
    };
    tracing::info!(
        ?grace,
        "stopping HAProxy softly: listeners close, requests in flight finish"
    );
    match haproxy.stop(grace).await {
        Ok(Some(Stopped::Exited)) => tracing::info!("HAProxy stopped; stopping"),
        Ok(Some(Stopped::Killed)) => tracing::warn!(
            ?grace,
            "HAProxy still had connections after the grace and was killed; stopping"
        ),
        Ok(None) => tracing::info!(
            "stopping; capstan supervises no HAProxy (an attached one keeps serving)"
        ),
        Err(error) => tracing::error!(%error, "stopping HAProxy failed; stopping"),
    }
}

/// The HAProxy capstan drives: one started elsewhere with `--attach-*`,
/// else one it supervises in the state directory.
fn haproxy(args: &ServeArgs, state_dir: &StateDir) -> Haproxy {
    let paths = RuntimePaths::in_dir(state_dir.run_dir());
    match (&args.attach_master_socket, &args.attach_config) {
        (Some(master), Some(config)) => Haproxy::attached(
            args.haproxy.clone(),
            config.clone(),
            RuntimePaths {
                master_socket: master.clone(),
                ..paths
            },
        ),
        _ => Haproxy::supervised(args.haproxy.clone(), state_dir.config_file(), paths),
    }
}

fn webhook_secret(args: &ServeArgs) -> Result<Option<Arc<WebhookSecret>>> {
    match &args.webhook_secret_file {
        Some(path) => Ok(Some(Arc::new(WebhookSecret::new(
            read_secret(path)?.into_bytes(),
        )))),
        None => {
            tracing::warn!("no --webhook-secret-file: push webhooks are accepted unverified");
            Ok(None)
        }
    }
}

/// What the mutating API endpoints require; `None` leaves them open.
fn api_auth(args: &ServeArgs) -> Result<Option<Arc<ApiAuth>>> {
    Ok(match (&args.api_token_file, &args.api_basic_auth_file) {
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
    })
}

/// Where the overrides are kept.
async fn override_store(
    args: &ServeArgs,
    state_dir: &StateDir,
    docker: Option<&Swarm>,
) -> Result<OverrideStore> {
    Ok(match (&args.overrides, docker) {
        (OverridesLocation::Swarm { group }, Some(swarm)) => {
            let group = match group {
                Some(group) => group.clone(),
                None => swarm
                    .this_task()
                    .await
                    .context("--overrides swarm: finding this capstan's Swarm task")?
                    .context(
                        "--overrides swarm: this capstan is not a Swarm task; name the group with swarm:<group>",
                    )?
                    .service_name,
            };
            OverrideStore::Swarm(SwarmStore::new(swarm.clone(), group))
        }
        _ => OverrideStore::in_state_dir(state_dir.root()),
    })
}

/// Docker Swarm, and a task that forwards its events to the reconciler.
fn swarm_source(args: &ServeArgs, client: Swarm) -> SwarmSource {
    let (tx, events) = tokio::sync::mpsc::channel(1);
    let watcher = client.clone();
    tokio::spawn(async move { watcher.watch(tx).await });
    SwarmSource {
        client,
        networks: args.swarm_networks.clone(),
        events,
        labels: args.swarm_labels,
        secrets_dir: args.secrets_dir.clone(),
    }
}

/// Puts the Swarm task this capstan runs in, if any, into its status:
/// through `docker` (`--swarm`'s client), else the local Engine when its
/// socket is there. Never fails: without Docker, status shows no replica.
async fn find_replica(docker: Option<Swarm>, handle: Arc<ReconcilerHandle>) {
    let docker = match docker {
        Some(docker) => docker,
        None if std::env::var_os("DOCKER_HOST").is_some()
            || std::path::Path::new("/var/run/docker.sock").exists() =>
        {
            match Swarm::connect().await {
                Ok(docker) => docker,
                Err(error) => {
                    tracing::debug!(%error, "no Docker: not looking for this capstan's Swarm task");
                    return;
                }
            }
        }
        None => {
            tracing::debug!("no Docker socket: not looking for this capstan's Swarm task");
            return;
        }
    };
    match docker.this_task().await {
        Ok(Some(task)) => {
            tracing::info!(
                service = task.service_name,
                task = task.task_name,
                node = task.node(),
                "running as a Swarm task"
            );
            handle.set_replica(task);
        }
        Ok(None) => tracing::info!("not running as a Swarm task: status shows no replica"),
        Err(error) => tracing::info!(%error, "cannot tell which Swarm task this capstan runs in"),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
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
        GitAuth::ssh_key(key.clone(), args.known_hosts.clone())
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
