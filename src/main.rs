//! The `capstan` command line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use capstan::diff::{DiffReport, Snapshot};
use capstan::model::RoutesFile;
use capstan::model::diagnostics::Diagnostics;
use capstan::model::validate;
use capstan::report::{self, Format};
use capstan::sources::git::{LocalRepo, Revision};
use capstan::{EMBEDDED_ROUTES, render};

/// mimalloc rather than glibc's malloc: capstan builds and drops large
/// short-lived trees (a parsed table, a rendered config), and glibc hands
/// big blocks back to the kernel and faults them in again each time; with
/// mimalloc, validate + render + diff of 10,000 routes takes about half the
/// time (`cargo bench --bench core`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

use cli::{client, health, replicas, serve};

/// Declarative GitOps reconciler for HAProxy on Docker Swarm.
///
/// Routes live in a git-versioned routes.yaml; capstan validates it, renders
/// haproxy.cfg and shows what a change would do before it merges.
#[derive(Parser)]
#[command(name = "capstan", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reconciler: keep HAProxy serving what the routes say.
    ///
    /// Pulls routes.yaml from a git branch (or reads a local file, or the
    /// example table built into capstan), validates and renders it, and applies
    /// only the changes to HAProxy: through its runtime API when it can,
    /// otherwise through a checked, hitless reload. HAProxy keeps serving when
    /// capstan stops, unless --stop-grace (for a container) stops it too.
    Serve(Box<serve::ServeArgs>),
    /// Show a running capstan's status: desired and applied revisions, last
    /// error, pending plan, last applies.
    ///
    /// With --all-replicas, one line per replica of the Swarm service the
    /// capstan at --url runs in (or of --service): task, node, applied
    /// commit and config marker, in sync or not, overrides. Run it inside a
    /// replica (`docker exec <task container> capstan status
    /// --all-replicas`): replicas are found through `tasks.<service>`, which
    /// only Docker's DNS in a container on the service's network answers,
    /// and asked on --url's port (their API must listen on it, e.g.
    /// --listen 0.0.0.0:8080).
    ///
    /// Exit status: 0 in sync with no error, 2 not in sync or an error (the
    /// last apply or git fetching failing; with --all-replicas also a
    /// replica unreachable or serving another commit or config), 1 capstan
    /// unreachable (or the replicas not found).
    Status {
        /// The capstan API address.
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "CAPSTAN_URL")]
        url: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
        /// Show every replica of the Swarm service the capstan at --url
        /// runs in.
        #[arg(long)]
        all_replicas: bool,
        /// Show every replica of this Swarm service (implies
        /// --all-replicas; --url's capstan is then not asked, only its port
        /// is used).
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
    },
    /// Check that a running capstan answers and its HAProxy runs: a
    /// container's HEALTHCHECK. Out of sync with git is not unhealthy.
    ///
    /// Exit status: 0 healthy, 1 not (one line says why).
    Health(health::HealthArgs),
    /// List, export or delete the overrides of a running capstan (changes
    /// made through the Docker-Flow-Proxy-compatible API).
    Overrides {
        /// The capstan API address.
        #[arg(
            long,
            default_value = "http://127.0.0.1:8080",
            env = "CAPSTAN_URL",
            global = true
        )]
        url: String,
        #[command(flatten)]
        credentials: client::Credentials,
        #[command(subcommand)]
        command: client::OverridesCommand,
    },
    /// Validate, render and show what applying a routes file would change
    /// against a proxy with nothing running.
    ///
    /// Without FILE: ./routes.yaml, or the example table built into capstan
    /// when there is none.
    Plan {
        /// Routes file (`-` for standard input).
        file: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check a routes file against the schema and the semantic rules; print
    /// every problem with file:line:column and field.
    ///
    /// Exit status: 0 valid, 1 invalid.
    Validate {
        /// Routes file (`-` for standard input).
        #[arg(default_value = "routes.yaml")]
        file: PathBuf,
    },
    /// Print the haproxy.cfg a routes file renders to.
    Render {
        /// Routes file (`-` for standard input).
        #[arg(default_value = "routes.yaml")]
        file: PathBuf,
    },
    /// Print the JSON schema of routes.yaml (committed as schema/routes.schema.json).
    Schema,
    /// Compare routes.yaml between two git revisions (or a revision and what
    /// a running capstan serves): a route-level summary and the unified diff
    /// of haproxy.cfg.
    ///
    /// Exit status: 0 no change, 2 changes, 1 error (an invalid routes.yaml at
    /// head is an error, reported with file:line messages in every format).
    Diff {
        /// Base revision: a branch, tag, commit or expression like HEAD~1.
        #[arg(long, required_unless_present = "live", conflicts_with = "live")]
        base: Option<String>,
        /// Compare against what a running capstan serves instead of a base
        /// revision: its API address, e.g. http://127.0.0.1:8080.
        #[arg(long, value_name = "URL")]
        live: Option<String>,
        /// Credentials for --live, when the API requires them. Without
        /// them, capstan shows password fingerprints, which are compared.
        #[command(flatten)]
        credentials: client::Credentials,
        /// Head revision; the working tree when omitted.
        #[arg(long)]
        head: Option<String>,
        /// The git repository (any directory inside it).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Path of the routes file inside the repository.
        #[arg(long, default_value = "routes.yaml")]
        file: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Plan { file, format } => plan(file, format),
        Command::Validate { file } => validate_file(&file),
        Command::Render { file } => read_routes(&file).map(|(_, routes)| {
            emit(&render::render(&routes).with_maps_listed());
            ExitCode::SUCCESS
        }),
        Command::Schema => {
            emit(&validate::schema_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff {
            base,
            live,
            credentials,
            head,
            repo,
            file,
            format,
        } => {
            let base = match (base, live) {
                (_, Some(url)) => Base::Live(url, credentials),
                (Some(rev), None) => Base::Revision(rev),
                (None, None) => unreachable!("clap requires --base or --live"),
            };
            Ok(diff(&base, head.as_deref(), &repo, &file, format))
        }
        Command::Serve(args) => serve::run(*args),
        Command::Status {
            url,
            json,
            all_replicas,
            service,
        } => {
            if all_replicas || service.is_some() {
                replicas::status(&url, service, json)
            } else {
                client::status(&url, json)
            }
        }
        Command::Health(args) => health::run(args),
        Command::Overrides {
            url,
            credentials,
            command,
        } => client::overrides(&url, &credentials, command),
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

/// Writes to standard output; a reader that went away (`| head`) is not an error.
fn emit(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Reads a routes file from disk or standard input (`-`).
fn read_text(file: &Path) -> Result<(String, String)> {
    if file == Path::new("-") {
        // One byte over the limit is enough for `load` to refuse it.
        let mut text = String::new();
        std::io::stdin()
            .take(capstan::model::validate::MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(("<stdin>".into(), text));
    }
    let name = file.display().to_string();
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {name}"))?
        .len();
    if let Some(too_large) = capstan::model::validate::size_problem(&name, size) {
        return Err(Diagnostics(vec![too_large]).into());
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok((file.display().to_string(), text))
}

/// The file's display name and its validated routes.
fn read_routes(file: &Path) -> Result<(String, RoutesFile)> {
    let (name, text) = read_text(file)?;
    let routes = load(&name, &text)?;
    Ok((name, routes))
}

/// Validates; on failure prints every diagnostic and fails with their count.
fn load(name: &str, text: &str) -> Result<RoutesFile> {
    validate::load(name, text).map_err(|diagnostics| {
        eprintln!("{diagnostics}");
        anyhow::anyhow!("{name}: {} problem(s)", diagnostics.0.len())
    })
}

fn validate_file(file: &Path) -> Result<ExitCode> {
    let (name, routes) = read_routes(file)?;
    emit(&format!(
        "{name}: valid, {} route(s)\n",
        routes.routes.len()
    ));
    Ok(ExitCode::SUCCESS)
}

fn plan(file: Option<PathBuf>, format: Format) -> Result<ExitCode> {
    let (name, text) = match file {
        Some(file) => read_text(&file)?,
        None if Path::new("routes.yaml").exists() => read_text(Path::new("routes.yaml"))?,
        None => {
            eprintln!("no ./routes.yaml: planning the example table built into capstan");
            (
                "<embedded routes.yaml>".to_string(),
                EMBEDDED_ROUTES.to_string(),
            )
        }
    };
    let routes = load(&name, &text)?;
    let report = DiffReport::between(
        &Snapshot::nothing_running(),
        &Snapshot::rendered(name, None, routes),
    );
    emit(&report::diff(&report, format));
    Ok(ExitCode::SUCCESS)
}

/// Exit codes of `capstan diff`.
const DIFF_NO_CHANGE: u8 = 0;
const DIFF_ERROR: u8 = 1;
const DIFF_CHANGES: u8 = 2;

enum Base {
    Revision(String),
    Live(String, client::Credentials),
}

fn diff(base: &Base, head: Option<&str>, repo: &Path, file: &str, format: Format) -> ExitCode {
    match diff_report(base, head, repo, file) {
        Ok(report) => {
            emit(&report::diff(&report, format));
            ExitCode::from(if report.has_changes() {
                DIFF_CHANGES
            } else {
                DIFF_NO_CHANGE
            })
        }
        Err(DiffError {
            message,
            diagnostics,
        }) => {
            let text = report::error(&message, diagnostics.as_ref(), format);
            // A terminal user reads errors on stderr; CI jobs post stdout.
            if format == Format::Text {
                eprint!("{text}");
            } else {
                emit(&text);
            }
            ExitCode::from(DIFF_ERROR)
        }
    }
}

struct DiffError {
    message: String,
    diagnostics: Option<Diagnostics>,
}

impl From<capstan::sources::git::GitError> for DiffError {
    fn from(error: capstan::sources::git::GitError) -> Self {
        Self {
            message: error.to_string(),
            diagnostics: None,
        }
    }
}

fn diff_report(
    base: &Base,
    head: Option<&str>,
    repo: &Path,
    file: &str,
) -> Result<DiffReport, DiffError> {
    let repo = LocalRepo::discover(repo)?;
    let head = match head {
        Some(rev) => repo.resolve(rev)?,
        None => Revision::working_tree(),
    };
    let (base, overrides, warnings) = match base {
        Base::Revision(rev) => {
            let revision = repo.resolve(rev)?;
            // The pull request that adds routes.yaml diffs against an empty table.
            let routes = validated_table(&repo, &revision, file)?.unwrap_or_else(RoutesFile::empty);
            let base = Snapshot::rendered(revision.label(), revision.commit.clone(), routes);
            (base, None, Vec::new())
        }
        Base::Live(url, credentials) => {
            let (live, overrides, warnings) =
                client::live_snapshot(url, credentials).map_err(|e| DiffError {
                    message: format!("{e:#}"),
                    diagnostics: None,
                })?;
            (live, Some(overrides), warnings)
        }
    };
    let mut git_routes = validated_table(&repo, &head, file)?.ok_or_else(|| DiffError {
        message: format!("{file} does not exist at {}", head.label()),
        diagnostics: None,
    })?;
    let Some(overrides) = overrides else {
        let head = Snapshot::rendered(head.label(), head.commit, git_routes);
        return Ok(DiffReport::between(&base, &head));
    };
    // The live side carries fingerprints in place of password hashes.
    capstan::api::redact_routes(&mut git_routes);
    // Against a live capstan, the overrides stay in force after the merge:
    // the head that would serve is git's table with them laid over, and
    // each override is reported as drift.
    let merged =
        capstan::desired::overlay::merge(&git_routes, &overrides, capstan::util::unix_now());
    let head = Snapshot::rendered(head.label(), head.commit, merged.routes);
    let mut report = DiffReport::between(&base, &head);
    report.drift = merged.drift;
    report.warnings = warnings;
    Ok(report)
}

/// The validated table at one revision; `None` when the file is not there.
/// Rendered by the caller: against a live capstan, the head is rendered
/// only once the overrides are laid over it.
fn validated_table(
    repo: &LocalRepo,
    revision: &Revision,
    file: &str,
) -> Result<Option<RoutesFile>, DiffError> {
    let Some(text) = repo.read(revision, file)? else {
        return Ok(None);
    };
    let routes = validate::load(file, &text).map_err(|diagnostics| DiffError {
        message: format!("{file} at {} is invalid", revision.label()),
        diagnostics: Some(diagnostics),
    })?;
    Ok(Some(routes))
}
