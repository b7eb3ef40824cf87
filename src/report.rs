//! `capstan diff` output as text (a terminal), Markdown (a pull-request
//! comment) and JSON (machines), and the text of `capstan status` and
//! `capstan overrides list`. The diff's JSON shape is documented in the
//! README and versioned by its `capstan_diff` field.

use std::fmt::Write;

use serde::Serialize;
use serde_json::{Value, json};

use crate::desired::overlay::Drift;
use crate::diff::{ChangeKind, DiffReport, FieldChange, Impact, RouteChange};
use crate::model::diagnostics::Diagnostics;
use crate::plan::Method;
use crate::reconcile::Status;
use crate::sources::RevisionInfo;
use crate::sources::overrides::{Action, OverrideSet};
use crate::state::LastError;

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

/// Reload reasons a sentence names; the JSON has them all.
const SENTENCE_REASONS: usize = 5;

/// What applying the change costs HAProxy, in a sentence: `applies live: 3
/// map entries, 2 servers` or `1 reload, because: backend x added`; each
/// reason as `quote` writes it.
fn impact_sentence(impact: &Impact, quote: impl Fn(&str) -> String) -> String {
    let count = |n: usize, one: &str, many: &str| match n {
        0 => None,
        1 => Some(format!("1 {one}")),
        n => Some(format!("{n} {many}")),
    };
    match impact.method {
        Method::Nothing => "no change to HAProxy".to_string(),
        Method::Runtime => {
            let counts: Vec<String> = [
                count(impact.map_entries, "map entry", "map entries"),
                count(impact.servers, "server", "servers"),
                count(impact.certificates, "certificate", "certificates"),
            ]
            .into_iter()
            .flatten()
            .collect();
            format!("applies live: {}", counts.join(", "))
        }
        Method::Reload | Method::Restart => {
            let mut reasons: Vec<String> = impact
                .reasons
                .iter()
                .take(SENTENCE_REASONS)
                .map(|r| quote(r))
                .collect();
            if impact.reasons.len() > SENTENCE_REASONS {
                reasons.push(format!(
                    "and {} more",
                    impact.reasons.len() - SENTENCE_REASONS
                ));
            }
            format!("1 reload, because: {}", reasons.join("; "))
        }
    }
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
    let _ = writeln!(
        out,
        "HAProxy: {}",
        impact_sentence(&report.haproxy, str::to_string)
    );
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
    if report.has_changes() {
        let _ = writeln!(
            out,
            "**HAProxy:** {}\n",
            impact_sentence(&report.haproxy, code)
        );
    }
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
            let effects = drift_effects(d, ["adds", "replaces", "hides"]);
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

/// What an override does to git's routes, one phrase per kind of effect,
/// each with its verb: for the routes it adds, replaces and hides.
fn drift_effects(d: &Drift, [adds, replaces, hides]: [&str; 3]) -> Vec<String> {
    [
        (adds, &d.adds),
        (replaces, &d.replaces),
        (hides, &d.removes),
    ]
    .into_iter()
    .filter(|(_, ids)| !ids.is_empty())
    .map(|(verb, ids)| format!("{verb} {}", ids.join(", ")))
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

/// In sync, and neither the last apply nor git fetching is failing:
/// `capstan status` exits 0.
pub fn is_healthy(status: &Status) -> bool {
    status.in_sync && status.last_error.is_none() && status.fetch.error.is_none()
}

/// The word the JSON shows for a unit variant (`reload`, `failed`).
fn word(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(word)) => word,
        _ => String::new(),
    }
}

fn label(revision: Option<&RevisionInfo>) -> &str {
    revision.map_or("-", |r| r.label.as_str())
}

/// `capstan status` as text.
pub fn status(status: &Status) -> String {
    let mut out = String::new();
    if let Some(task) = &status.replica {
        let _ = writeln!(
            out,
            "replica:  {} on node {} (service {})",
            task.task_name,
            task.node(),
            task.service_name
        );
    }
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
        "applied:  {} at {}{}",
        label(applied.map(|a| &a.revision)),
        applied.map_or("-", |a| a.at.as_str()),
        applied
            .filter(|a| !a.marker.is_empty())
            .map(|a| format!(" (marker {})", a.marker))
            .unwrap_or_default()
    );
    let in_sync = if status.in_sync { "yes" } else { "NO" };
    let _ = writeln!(out, "in sync:  {in_sync}");
    if let Some(error) = &status.fetch.error {
        let _ = writeln!(out, "fetch:    failing: {error}");
    }
    if let Some(error) = &status.last_error {
        last_error(&mut out, error);
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
            word(&plan.method),
            plan.changes.len()
        );
    }
    let _ = writeln!(out, "last applies:");
    for record in status.history.iter().take(10) {
        let _ = writeln!(
            out,
            "  {}  {:<7} {:<6} {:>5} ms  {}",
            record.at,
            word(&record.method),
            word(&record.outcome),
            record.duration_ms,
            record.revision.label
        );
    }
    out
}

fn last_error(out: &mut String, error: &LastError) {
    let _ = writeln!(out, "error:    [{}] {}", error.stage, error.message);
    for d in &error.diagnostics {
        let _ = writeln!(
            out,
            "          {}:{}:{}: {}: {}",
            d.file, d.line, d.column, d.field, d.message
        );
    }
}

/// The uploaded certificates, one line each, for `capstan overrides list`.
pub fn uploaded_certificates(certificates: &[crate::tls::CertificateInfo]) -> String {
    let mut out = String::new();
    for c in certificates {
        let serves = match &c.served {
            Some(s) if s.fingerprint == c.fingerprint => {
                format!(
                    "serves {} ({}) until {}",
                    s.subject, s.alt_names, s.not_after
                )
            }
            _ => "not served yet".to_string(),
        };
        let _ = writeln!(
            out,
            "certificate {} (uploaded, not in git): {serves}",
            c.name
        );
    }
    out
}

/// `capstan overrides list` as text: each override in force and what it
/// does against git, as of unix time `now`.
pub fn overrides(set: &OverrideSet, drift: &[Drift], now: u64) -> String {
    if set.overrides.is_empty() {
        return "no overrides: HAProxy serves what git declares\n".to_string();
    }
    let mut out = String::new();
    for (service, o) in &set.overrides {
        let effects = drift
            .iter()
            .find(|d| d.service == *service)
            .map(|d| drift_effects(d, ["adds", "replaces git's", "hides git's"]))
            .unwrap_or_default();
        let expires = o
            .expires_at
            .map(|t| format!(", expires in {}s", t.saturating_sub(now)))
            .unwrap_or_default();
        let kind = match o.action {
            Action::Reconfigure { .. } => "reconfigure",
            Action::Remove => "remove",
        };
        let _ = writeln!(
            out,
            "{service}: {kind} since {}{expires}: {}",
            o.created_at,
            if effects.is_empty() {
                "no effect".to_string()
            } else {
                effects.join("; ")
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::overlay::DriftKind;
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

    /// A status as `GET /v1/status` answers it after a failed reload.
    fn failed_status() -> Status {
        serde_json::from_value(json!({
            "source": {"kind": "git", "location": "https://example.com/r.git", "branch": "main", "file": "routes.yaml"},
            "desired": {"label": "main (1a2b3c4)", "commit": "1a2b3c4"},
            "applied": null,
            "in_sync": false,
            "last_error": {"stage": "check", "message": "haproxy -c rejected the config", "at": "2026-11-25T11:22:33Z"},
            "fetch": {"last_success_at": "2026-11-25T11:22:33Z", "error": null, "consecutive_failures": 0, "failing_since": null, "retry_in_seconds": null},
            "haproxy": {"restarts": 0, "last_exit": null, "last_exit_at": null},
            "pending_plan": {"method": "reload", "changes": [{"kind": "reload_running_config"}]},
            "overrides": [],
            "warnings": [],
            "label_routes": [],
            "history": [{
                "revision": {"label": "main (1a2b3c4)", "commit": "1a2b3c4"},
                "at": "now", "method": "reload", "changes": [], "changes_total": 0,
                "outcome": "failed", "duration_ms": 12,
                "timings": {"fetch_ms": 1, "plan_ms": 2, "check_ms": 9, "apply_ms": 9},
            }],
        }))
        .unwrap()
    }

    #[test]
    fn status_shows_an_error_without_diagnostics() {
        // What a `haproxy -c` rejection looks like: no file:line diagnostics.
        let view = failed_status();
        let text = status(&view);
        assert!(
            text.contains("error:    [check] haproxy -c rejected the config"),
            "{text}"
        );
        assert!(!is_healthy(&view));
    }

    #[test]
    fn status_reads_back_what_the_server_writes() {
        let mut written = failed_status();
        written.overrides = vec![Drift {
            service: "b".into(),
            kind: DriftKind::Remove,
            adds: vec![],
            replaces: vec![],
            removes: vec!["b:80".into()],
            redundant: false,
            expires_at: None,
        }];
        let read: Status = serde_json::from_str(&serde_json::to_string(&written).unwrap()).unwrap();
        let text = status(&read);
        assert_eq!(text, status(&written));
        for line in [
            "source:   git https://example.com/r.git (branch main)\n",
            "desired:  main (1a2b3c4)\napplied:  - at -\nin sync:  NO\n",
            "override: b (remove) — see `capstan overrides list`\n",
            "pending:  reload (1 change(s))\n",
            "  now  reload  failed    12 ms  main (1a2b3c4)\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }

    #[test]
    fn status_names_the_replica_and_the_applied_marker() {
        let mut view = failed_status();
        view.replica = Some(
            serde_json::from_value(json!({
                "service_id": "s1", "service_name": "proxy", "task_id": "t1",
                "task_name": "proxy.2.t1", "node_id": "n1", "node_hostname": "manager-1",
            }))
            .unwrap(),
        );
        view.applied = serde_json::from_value(json!({
            "revision": {"label": "main (1a2b3c4)", "commit": "1a2b3c4"},
            "marker": "9f8e7d6c", "at": "t",
        }))
        .unwrap();
        let text = status(&view);
        assert!(
            text.starts_with("replica:  proxy.2.t1 on node manager-1 (service proxy)\n"),
            "{text}"
        );
        assert!(
            text.contains("applied:  main (1a2b3c4) at t (marker 9f8e7d6c)\n"),
            "{text}"
        );
    }

    #[test]
    fn a_status_missing_what_older_servers_did_not_send_is_read() {
        let status: Status = serde_json::from_value(json!({
            "source": {"kind": "file", "location": "r.yaml", "file": "r.yaml"},
            "in_sync": true,
        }))
        .unwrap();
        assert!(is_healthy(&status));
        assert!(super::status(&status).ends_with("last applies:\n"));
    }

    #[test]
    fn overrides_list_says_what_each_does_against_git() {
        let set: OverrideSet = serde_json::from_value(json!({"overrides": {
            "a": {"service": "a", "kind": "remove", "created_at": "t0", "expires_at": 130},
            "b": {"service": "b", "kind": "remove", "created_at": "t1"},
        }}))
        .unwrap();
        let drift = [Drift {
            service: "a".into(),
            kind: DriftKind::Remove,
            adds: vec![],
            replaces: vec![],
            removes: vec!["a:80".into(), "a:81".into()],
            redundant: false,
            expires_at: Some(130),
        }];
        assert_eq!(
            overrides(&set, &drift, 100),
            "a: remove since t0, expires in 30s: hides git's a:80, a:81\nb: remove since t1: no effect\n"
        );
        assert_eq!(
            overrides(&OverrideSet::default(), &[], 0),
            "no overrides: HAProxy serves what git declares\n"
        );
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
                .contains("\n+#   /c c-be80\n")
        );
        assert_eq!(
            value["haproxy"],
            json!({
                "method": "reload", "map_entries": 0, "servers": 0, "certificates": 0,
                "reasons": ["backend c-be80 added (no spare backend: server c:80 is a name)"],
            })
        );
    }

    #[test]
    fn text_says_what_applying_costs_haproxy() {
        let text = diff(&report(), Format::Text);
        assert!(
            text.contains(
                "0 removed, 0 unchanged\nHAProxy: 1 reload, because: backend c-be80 added (no spare backend: server c:80 is a name)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_impact_counts_what_applies_live_and_names_a_few_reasons() {
        let mut impact = Impact {
            method: Method::Runtime,
            map_entries: 3,
            servers: 1,
            certificates: 0,
            reasons: vec![],
        };
        assert_eq!(
            impact_sentence(&impact, str::to_string),
            "applies live: 3 map entries, 1 server"
        );
        impact.method = Method::Reload;
        impact.reasons = (1..=7).map(|i| format!("backend b{i} added")).collect();
        assert_eq!(
            impact_sentence(&impact, code),
            "1 reload, because: <code>backend b1 added</code>; <code>backend b2 added</code>; \
             <code>backend b3 added</code>; <code>backend b4 added</code>; \
             <code>backend b5 added</code>; and 2 more"
        );
        impact.method = Method::Nothing;
        assert_eq!(impact_sentence(&impact, code), "no change to HAProxy");
    }

    #[test]
    fn markdown_has_a_table_and_a_collapsed_diff() {
        let md = diff(&report(), Format::Markdown);
        assert!(
            md.starts_with("### capstan diff: 1 added, 1 changed, 0 removed"),
            "{md}"
        );
        assert!(md.contains("| + | <code>c:80</code> | Added |"), "{md}");
        // What it costs HAProxy comes before the table.
        let impact = md
            .find("\n**HAProxy:** 1 reload, because: <code>backend c-be80 added (no spare backend: server c:80 is a name)</code>\n\n| |")
            .unwrap_or_else(|| panic!("{md}"));
        assert!(impact < md.find("| + |").unwrap(), "{md}");
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
