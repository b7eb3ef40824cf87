//! The `capstan` command line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use capstan::diagnostics::Diagnostics;
use capstan::diff::{DiffReport, Snapshot};
use capstan::model::RoutesFile;
use capstan::report::{self, Format};
use capstan::sources::git::{LocalRepo, Revision};
use capstan::{EMBEDDED_ROUTES, render, validate};

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
    /// Compare routes.yaml between two git revisions: a route-level summary
    /// and the unified diff of haproxy.cfg.
    ///
    /// Exit status: 0 no change, 2 changes, 1 error (an invalid routes.yaml at
    /// head is an error, reported with file:line messages in every format).
    Diff {
        /// Base revision: a branch, tag, commit or expression like HEAD~1.
        #[arg(long)]
        base: String,
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
        Command::Render { file } => read_routes(&file).map(|routes| {
            print!("{}", render::render(&routes));
            ExitCode::SUCCESS
        }),
        Command::Schema => {
            print!("{}", validate::schema_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff {
            base,
            head,
            repo,
            file,
            format,
        } => Ok(diff(&base, head.as_deref(), &repo, &file, format)),
    };
    outcome.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

/// Reads a routes file from disk or standard input (`-`).
fn read_text(file: &Path) -> Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(("<stdin>".into(), text));
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok((file.display().to_string(), text))
}

fn read_routes(file: &Path) -> Result<RoutesFile> {
    let (name, text) = read_text(file)?;
    load(&name, &text)
}

/// Validates; on failure prints every diagnostic and fails with their count.
fn load(name: &str, text: &str) -> Result<RoutesFile> {
    validate::load(name, text).map_err(|diagnostics| {
        eprintln!("{diagnostics}");
        anyhow::anyhow!("{name}: {} problem(s)", diagnostics.0.len())
    })
}

fn validate_file(file: &Path) -> Result<ExitCode> {
    let routes = read_routes(file)?;
    println!(
        "{}: valid, {} route(s)",
        file.display(),
        routes.routes.len()
    );
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
    print!("{}", report::diff(&report, format));
    Ok(ExitCode::SUCCESS)
}

/// Exit codes of `capstan diff`.
const DIFF_NO_CHANGE: u8 = 0;
const DIFF_ERROR: u8 = 1;
const DIFF_CHANGES: u8 = 2;

fn diff(base: &str, head: Option<&str>, repo: &Path, file: &str, format: Format) -> ExitCode {
    match diff_report(base, head, repo, file) {
        Ok(report) => {
            print!("{}", report::diff(&report, format));
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
            print!("{}", report::error(&message, diagnostics.as_ref(), format));
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
    base: &str,
    head: Option<&str>,
    repo: &Path,
    file: &str,
) -> Result<DiffReport, DiffError> {
    let repo = LocalRepo::discover(repo)?;
    let base = repo.resolve(base)?;
    let head = match head {
        Some(rev) => repo.resolve(rev)?,
        None => Revision::working_tree(),
    };
    Ok(DiffReport::between(
        &snapshot(&repo, &base, file)?,
        &snapshot(&repo, &head, file)?,
    ))
}

/// The table at one revision. A file missing at a revision is an empty
/// table, so that the pull request adding routes.yaml diffs cleanly.
fn snapshot(repo: &LocalRepo, revision: &Revision, file: &str) -> Result<Snapshot, DiffError> {
    let label = revision.label();
    let routes = match repo.read(revision, file)? {
        None => RoutesFile::empty(),
        Some(text) => validate::load(file, &text).map_err(|diagnostics| DiffError {
            message: format!("{file} at {label} is invalid"),
            diagnostics: Some(diagnostics),
        })?,
    };
    Ok(Snapshot::rendered(label, revision.commit.clone(), routes))
}
