//! `capstan diff` output as text (a terminal), Markdown (a pull-request
//! comment) and JSON (machines). The JSON shape is documented in the README
//! and versioned by its `capstan_diff` field.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::diff::{ChangeKind, DiffReport, FieldChange, RouteChange};
use crate::model::diagnostics::Diagnostics;

/// Version of the JSON output; bumped on any incompatible change.
pub const JSON_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

/// The report of a successful comparison.
pub fn diff(report: &DiffReport, format: Format) -> String {
    match format {
        Format::Text => text(report),
        Format::Markdown => markdown(report),
        Format::Json => {
            let mut value = serde_json::to_value(report).expect("reports serialize");
            let object = value.as_object_mut().expect("a report is an object");
            let status = if report.has_changes() {
                "changes"
            } else {
                "no_changes"
            };
            object.insert("capstan_diff".into(), json!(JSON_VERSION));
            object.insert("status".into(), json!(status));
            object.insert("summary".into(), summary_json(report));
            pretty(&value)
        }
    }
}

/// The report when a side could not be read or validated.
pub fn error(message: &str, diagnostics: Option<&Diagnostics>, format: Format) -> String {
    match format {
        Format::Text => {
            let mut out = format!("error: {message}\n");
            for d in diagnostics.iter().flat_map(|d| d.iter()) {
                let _ = writeln!(out, "  {d}");
            }
            out
        }
        Format::Markdown => {
            let mut out = format!("### capstan diff: error\n\n{}\n", escape_markdown(message));
            if let Some(diagnostics) = diagnostics {
                let body: String = diagnostics.iter().map(|d| format!("{d}\n")).collect();
                let fence = fence_for(&body);
                let _ = write!(out, "\n{fence}\n{body}{fence}\n");
            }
            out
        }
        Format::Json => pretty(&json!({
            "capstan_diff": JSON_VERSION,
            "status": "error",
            "message": message,
            "errors": diagnostics.map(|d| d.0.clone()).unwrap_or_default(),
        })),
    }
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values print");
    text.push('\n');
    text
}

fn summary_json(report: &DiffReport) -> Value {
    json!({
        "added": report.routes.count(ChangeKind::Added),
        "removed": report.routes.count(ChangeKind::Removed),
        "changed": report.routes.count(ChangeKind::Changed),
        "unchanged": report.routes.unchanged,
        "settings_changed": report.routes.settings.len(),
    })
}

fn summary_line(report: &DiffReport) -> String {
    let mut line = format!(
        "{} added, {} changed, {} removed, {} unchanged",
        report.routes.count(ChangeKind::Added),
        report.routes.count(ChangeKind::Changed),
        report.routes.count(ChangeKind::Removed),
        report.routes.unchanged,
    );
    if !report.routes.settings.is_empty() {
        let _ = write!(line, "; {} settings changed", report.routes.settings.len());
    }
    line
}

fn show(value: &Option<Value>) -> String {
    match value {
        None => "(unset)".to_string(),
        Some(value) => value.to_string(),
    }
}

fn field_text(change: &FieldChange) -> String {
    format!(
        "{}: {} → {}",
        change.field,
        show(&change.old),
        show(&change.new)
    )
}

fn sign(change: ChangeKind) -> &'static str {
    match change {
        ChangeKind::Added => "+",
        ChangeKind::Removed => "-",
        ChangeKind::Changed => "~",
    }
}

fn text(report: &DiffReport) -> String {
    let mut out = format!(
        "capstan diff: {} → {}\n",
        report.base.label, report.head.label
    );
    if !report.has_changes() {
        out.push_str("no changes\n");
        return out;
    }
    let width = report
        .routes
        .routes
        .iter()
        .map(|r| r.route.0.len())
        .max()
        .unwrap_or(0);
    for RouteChange {
        route,
        change,
        fields,
    } in &report.routes.routes
    {
        let _ = write!(out, "  {} {:width$}  {:?}", sign(*change), route.0, change);
        out.truncate(out.trim_end().len());
        out.push('\n');
        for field in fields {
            let _ = writeln!(out, "      {}", field_text(field));
        }
    }
    if !report.routes.settings.is_empty() {
        out.push_str("  settings:\n");
        for field in &report.routes.settings {
            let _ = writeln!(out, "      {}", field_text(field));
        }
    }
    let _ = writeln!(out, "{}", summary_line(report));
    for line in drift_lines(report) {
        let _ = writeln!(out, "drift: {line}");
    }
    for w in &report.warnings {
        let _ = writeln!(out, "warning: {}: {}", w.route, w.message);
    }
    if !report.config_diff.is_empty() {
        out.push('\n');
        out.push_str(&report.config_diff);
    }
    out
}

fn markdown(report: &DiffReport) -> String {
    let mut out = String::from("### capstan diff: ");
    if report.has_changes() {
        out.push_str(&summary_line(report));
    } else {
        out.push_str("no changes");
    }
    let _ = writeln!(
        out,
        "\n\n{} → {}\n",
        code(&report.base.label),
        code(&report.head.label)
    );
    if !report.routes.routes.is_empty() {
        out.push_str("| | Route | Change | Fields |\n|---|---|---|---|\n");
        for change in &report.routes.routes {
            let fields: Vec<String> = change
                .fields
                .iter()
                .map(|f| {
                    format!(
                        "{}: {} → {}",
                        code(&f.field),
                        code(&show(&f.old)),
                        code(&show(&f.new))
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {:?} | {} |",
                sign(change.change),
                code(&change.route.0),
                change.change,
                fields.join("<br>")
            );
        }
        out.push('\n');
    }
    if !report.routes.settings.is_empty() {
        out.push_str("Settings:\n\n");
        for f in &report.routes.settings {
            let _ = writeln!(
                out,
                "- {}: {} → {}",
                code(&f.field),
                code(&show(&f.old)),
                code(&show(&f.new))
            );
        }
        out.push('\n');
    }
    if !report.warnings.is_empty() {
        out.push_str("Warnings (live Swarm):\n\n");
        for w in &report.warnings {
            let _ = writeln!(out, "- {}: {}", code(&w.route), escape_markdown(&w.message));
        }
        out.push('\n');
    }
    let drift = drift_lines(report);
    if !drift.is_empty() {
        out.push_str(
            "Drift (overrides in force that git does not declare; they stay after the merge):\n\n",
        );
        for line in drift {
            let _ = writeln!(out, "- {}", escape_markdown(&line));
        }
        out.push('\n');
    }
    if !report.config_diff.is_empty() {
        let fence = fence_for(&report.config_diff);
        let _ = write!(
            out,
            "<details><summary>haproxy.cfg diff</summary>\n\n{fence}diff\n{}{fence}\n\n</details>\n",
            report.config_diff
        );
    }
    out
}

/// One line per override in force: what it does against git.
fn drift_lines(report: &DiffReport) -> Vec<String> {
    report
        .drift
        .iter()
        .map(|d| {
            let mut effects = Vec::new();
            for (verb, ids) in [
                ("adds", &d.adds),
                ("replaces", &d.replaces),
                ("hides", &d.removes),
            ] {
                if !ids.is_empty() {
                    effects.push(format!("{verb} {}", ids.join(", ")));
                }
            }
            let expires = d
                .expires_at
                .map(|t| format!(" (expires at unix {t})"))
                .unwrap_or_default();
            format!(
                "{} override of `{}`: {}{expires}",
                d.kind,
                d.service,
                effects.join("; ")
            )
        })
        .collect()
}

/// Inline code that survives any content inside a Markdown table cell.
fn code(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "&#124;")
        .replace('`', "&#96;");
    format!("<code>{escaped}</code>")
}

fn escape_markdown(text: &str) -> String {
    text.replace('<', "&lt;").replace('>', "&gt;")
}

/// A code fence longer than any run of backticks in `body`.
fn fence_for(body: &str) -> String {
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// What `capstan status` reads of `GET /v1/status`. Every field is optional
/// so that an answer missing one (an error without diagnostics, an older or
/// newer server) is still shown rather than refused.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct StatusView {
    pub source: SourceView,
    pub desired: Option<RevisionView>,
    pub applied: Option<AppliedView>,
    pub in_sync: bool,
    pub last_error: Option<ErrorView>,
    pub fetch: FetchView,
    pub overrides: Vec<DriftView>,
    pub warnings: Vec<WarningView>,
    pub pending_plan: Option<PlanView>,
    pub history: Vec<ApplyView>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct SourceView {
    pub kind: String,
    pub location: String,
    pub branch: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct RevisionView {
    pub label: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AppliedView {
    pub revision: Option<RevisionView>,
    pub at: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ErrorView {
    pub stage: String,
    pub message: String,
    pub diagnostics: Vec<DiagnosticView>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct DiagnosticView {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct FetchView {
    pub error: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct DriftView {
    pub service: String,
    pub kind: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct WarningView {
    pub route: String,
    pub message: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct PlanView {
    pub method: String,
    pub changes: Vec<Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ApplyView {
    pub at: String,
    pub method: String,
    pub outcome: String,
    pub duration_ms: Option<u64>,
    pub revision: Option<RevisionView>,
}

impl StatusView {
    /// In sync, and neither the last apply nor git fetching is failing.
    pub fn is_healthy(&self) -> bool {
        self.in_sync && self.last_error.is_none() && self.fetch.error.is_none()
    }
}

/// `capstan status` as text.
pub fn status(status: &StatusView) -> String {
    fn label(revision: Option<&RevisionView>) -> &str {
        revision.and_then(|r| r.label.as_deref()).unwrap_or("-")
    }
    let mut out = String::new();
    let source = &status.source;
    let _ = writeln!(
        out,
        "source:   {} {} {}",
        source.kind,
        source.location,
        source
            .branch
            .as_ref()
            .map(|b| format!("(branch {b})"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "desired:  {}", label(status.desired.as_ref()));
    let applied = status.applied.as_ref();
    let _ = writeln!(
        out,
        "applied:  {} at {}",
        label(applied.and_then(|a| a.revision.as_ref())),
        applied.and_then(|a| a.at.as_deref()).unwrap_or("-")
    );
    let in_sync = if status.in_sync { "yes" } else { "NO" };
    let _ = writeln!(out, "in sync:  {in_sync}");
    if let Some(error) = &status.fetch.error {
        let _ = writeln!(out, "fetch:    failing: {error}");
    }
    if let Some(error) = &status.last_error {
        let _ = writeln!(out, "error:    [{}] {}", error.stage, error.message);
        for d in &error.diagnostics {
            let place = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
            let _ = writeln!(
                out,
                "          {}:{}:{}: {}: {}",
                d.file,
                place(d.line),
                place(d.column),
                d.field,
                d.message
            );
        }
    }
    for d in &status.overrides {
        let _ = writeln!(
            out,
            "override: {} ({}) — see `capstan overrides list`",
            d.service, d.kind
        );
    }
    for w in &status.warnings {
        let _ = writeln!(out, "warning:  {}: {}", w.route, w.message);
    }
    if let Some(plan) = &status.pending_plan {
        let _ = writeln!(
            out,
            "pending:  {} ({} change(s))",
            plan.method,
            plan.changes.len()
        );
    }
    let _ = writeln!(out, "last applies:");
    for record in status.history.iter().take(10) {
        let _ = writeln!(
            out,
            "  {}  {:<7} {:<6} {:>5} ms  {}",
            record.at,
            record.method,
            record.outcome,
            record
                .duration_ms
                .map(|ms| ms.to_string())
                .unwrap_or_default(),
            label(record.revision.as_ref())
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Snapshot;
    use crate::model::validate::load;

    fn report() -> DiffReport {
        let base = load(
            "r",
            "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n",
        )
        .unwrap();
        let head = load("r", "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a, /b]\n  - service: c\n    port: 80\n    paths: [/c]\n").unwrap();
        DiffReport::between(
            &Snapshot::rendered("main", None, base),
            &Snapshot::rendered("working tree", None, head),
        )
    }

    #[test]
    fn status_shows_an_error_without_diagnostics() {
        // What a `haproxy -c` rejection looks like: no file:line diagnostics.
        let view: StatusView = serde_json::from_value(json!({
            "in_sync": false,
            "last_error": {"stage": "check", "message": "haproxy -c rejected the config"},
            "history": [{"at": "now", "method": "reload", "outcome": "failed"}],
        }))
        .unwrap();
        let text = status(&view);
        assert!(
            text.contains("error:    [check] haproxy -c rejected the config"),
            "{text}"
        );
        assert!(!view.is_healthy());
    }

    #[test]
    fn json_is_versioned_and_summarised() {
        let value: Value = serde_json::from_str(&diff(&report(), Format::Json)).unwrap();
        assert_eq!(value["capstan_diff"], 1);
        assert_eq!(value["status"], "changes");
        assert_eq!(value["summary"]["added"], 1);
        assert_eq!(value["summary"]["changed"], 1);
        assert_eq!(value["routes"][0]["route"], "a:80");
        assert_eq!(value["routes"][0]["fields"][0]["field"], "paths");
        assert!(
            value["config_diff"]
                .as_str()
                .unwrap()
                .contains("+    acl url_c80 path_beg /c")
        );
    }

    #[test]
    fn markdown_has_a_table_and_a_collapsed_diff() {
        let md = diff(&report(), Format::Markdown);
        assert!(
            md.starts_with("### capstan diff: 1 added, 1 changed, 0 removed"),
            "{md}"
        );
        assert!(md.contains("| + | <code>c:80</code> | Added |"), "{md}");
        assert!(
            md.contains("<details><summary>haproxy.cfg diff</summary>\n\n```diff\n"),
            "{md}"
        );
    }

    #[test]
    fn fences_outgrow_backticks_in_content() {
        assert_eq!(fence_for("no ticks"), "```");
        assert_eq!(fence_for("a ```` b"), "`````");
    }
}
