//! The dashboard's HTML, rendered from a [`Dashboard`]. Pure: the same
//! value renders the same page. The DOM's ids, classes and data attributes
//! are a contract the browser test relies on (README "Dashboard").

use std::fmt::Write;

use serde_json::Value;

use super::html::esc;
use super::view::{RouteView, ServerView};
use super::{CONFIG_SHOWN, ConfigText, Dashboard, ROUTES_SHOWN};
use crate::plan::{Change, Method, Plan};
use crate::reconcile::{FetchStatus, Status};
use crate::sources::RevisionInfo;
use crate::sources::overrides::{self, OverrideSet};
use crate::state::LastError;

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

/// How many pending changes the page lists (status has them all).
const CHANGES_SHOWN: usize = 50;

/// Hours the reload sparkline covers.
const SPARK_HOURS: u64 = 12;

/// The whole page.
pub fn page(d: &Dashboard) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>capstan dashboard</title>\n\
         <noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>\n\
         <style>{CSS}</style>\n</head>\n<body>\n\
         <a class=\"skip\" href=\"#dashboard\">Skip to the dashboard</a>\n\
         <header>\n<h1>capstan</h1>\n<nav aria-label=\"Sections\"><ul>\
         <li><a href=\"#sync\">Sync</a></li><li><a href=\"#routes\">Routes</a></li>\
         <li><a href=\"#overrides\">Overrides</a></li><li><a href=\"#history\">History</a></li>\
         <li><a href=\"#config\">Config</a></li></ul></nav>\n</header>\n\
         <div id=\"offline\" role=\"alert\" hidden>capstan is not answering</div>\n\
         <main id=\"dashboard\" data-updated=\"{}\">\n",
        esc(&d.rendered_at)
    );
    out.push_str(&fragment(d));
    let _ = write!(
        out,
        "</main>\n<footer>Read-only. Refreshes every 2 s. The same facts as JSON: \
         <a href=\"/v1/status\">/v1/status</a>, <a href=\"/v1/routes\">/v1/routes</a>.</footer>\n\
         <script>{JS}</script>\n</body>\n</html>\n"
    );
    out
}

/// The inner HTML of `<main id="dashboard">`, which the page's script polls.
pub fn fragment(d: &Dashboard) -> String {
    let mut out = String::with_capacity(32 * 1024);
    sync(&mut out, d);
    routes(&mut out, d);
    overrides_section(&mut out, d);
    history(&mut out, d);
    config(&mut out, d);
    out
}

/// The page's Content-Security-Policy: its own inline style and script
/// (by hash) and requests to capstan only, so that even a text that
/// escaped escaping could not run.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; style-src '{}'; script-src '{}'; connect-src 'self'; \
         img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        hash_source(CSS),
        hash_source(JS)
    )
}

fn hash_source(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn sync(out: &mut String, d: &Dashboard) {
    let s = &d.status;
    let _ = write!(
        out,
        "<section id=\"sync\" aria-labelledby=\"sync-h\" data-updated=\"{}\">\n<h2 id=\"sync-h\">Sync</h2>\n",
        esc(&d.rendered_at)
    );
    let (class, mark, words) = if s.in_sync {
        ("ok", "✓", "in sync")
    } else {
        ("bad", "✗", "not in sync")
    };
    let _ = write!(
        out,
        "<p class=\"sync-state\"><span class=\"badge {class}\"><span aria-hidden=\"true\">{mark}</span> \
         <span data-field=\"in-sync\">{words}</span></span> \
         <span class=\"muted\">updated <time datetime=\"{at}\">{at}</time></span></p>\n<dl class=\"facts\">\n",
        at = esc(&d.rendered_at)
    );
    out.push_str("<dt>Desired</dt>");
    revision(out, "desired-revision", s.desired.as_ref(), "", d.now);
    out.push_str("<dt>Applied</dt>");
    match &s.applied {
        Some(applied) => {
            let extra = format!(
                " · applied {}{}",
                time(&applied.at, d.now),
                if applied.marker.is_empty() {
                    String::new()
                } else {
                    format!(" · marker <code>{}</code>", esc(&applied.marker))
                }
            );
            revision(
                out,
                "applied-revision",
                Some(&applied.revision),
                &extra,
                d.now,
            );
        }
        None => revision(out, "applied-revision", None, "", d.now),
    }
    fetch_state(out, &s.fetch, d.now);
    where_from(out, s, d.now);
    if let Some(error) = &s.last_error {
        last_error(out, error, d.now);
    }
    pending_plan(out, s.pending_plan.as_ref());
    out.push_str("</section>\n");
}

/// Where the routes come from, the HAProxy process, the replica and the
/// overrides' store, closing the facts list.
fn where_from(out: &mut String, s: &Status, now: u64) {
    let source = &s.source;
    let _ = writeln!(
        out,
        "<dt>Source</dt><dd>{} <code>{}</code>{} · <code>{}</code></dd>",
        esc(&source.kind),
        esc(&source.location),
        source
            .branch
            .as_ref()
            .map(|b| format!(" branch <code>{}</code>", esc(b)))
            .unwrap_or_default(),
        esc(&source.file)
    );
    let _ = write!(out, "<dt>HAProxy</dt><dd>{} restart(s)", s.haproxy.restarts);
    if let Some(exit) = &s.haproxy.last_exit {
        let at = s.haproxy.last_exit_at.as_deref().unwrap_or_default();
        let _ = write!(out, " · last: {} {}", esc(exit), time(at, now));
    }
    out.push_str("</dd>\n");
    if let Some(task) = &s.replica {
        let _ = writeln!(
            out,
            "<dt>Replica</dt><dd><code>{}</code> on node <code>{}</code> (service <code>{}</code>)</dd>",
            esc(&task.task_name),
            esc(task.node()),
            esc(&task.service_name)
        );
    }
    let store = &s.overrides_store;
    let _ = write!(
        out,
        "<dt>Overrides kept in</dt><dd>{}{}</dd>\n</dl>\n",
        esc(&store.location),
        store
            .error
            .as_ref()
            .map(|e| format!(" · <span class=\"badge bad\">unreadable</span> {}", esc(e)))
            .unwrap_or_default()
    );
}

fn fetch_state(out: &mut String, fetch: &FetchStatus, now: u64) {
    out.push_str("<dt>Fetch</dt><dd data-field=\"fetch\">");
    match &fetch.error {
        Some(error) => {
            let _ = write!(
                out,
                "<span class=\"badge bad\">failing</span> {}",
                esc(error)
            );
            if let Some(since) = &fetch.failing_since {
                let _ = write!(out, " · since {}", time(since, now));
            }
            let _ = write!(out, " · {} attempt(s)", fetch.consecutive_failures);
            if let Some(retry) = fetch.retry_in_seconds {
                let _ = write!(out, " · next in {retry}s");
            }
        }
        None => {
            out.push_str("<span class=\"badge ok\">ok</span>");
            if let Some(at) = &fetch.last_success_at {
                let _ = write!(out, " · last fetched {}", time(at, now));
            }
        }
    }
    out.push_str("</dd>\n");
}

fn last_error(out: &mut String, error: &LastError, now: u64) {
    let _ = write!(
        out,
        "<div id=\"last-error\" role=\"alert\">\n<h3>Last error <span class=\"muted\">({}, {})</span></h3>\n<p>{}</p>\n",
        esc(&error.stage),
        time(&error.at, now),
        esc(&error.message)
    );
    if !error.diagnostics.is_empty() {
        out.push_str("<ul class=\"plain\">\n");
        for diagnostic in &error.diagnostics {
            let _ = writeln!(
                out,
                "<li><code>{}</code></li>",
                esc(&diagnostic.to_string())
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</div>\n");
}

fn pending_plan(out: &mut String, plan: Option<&Plan>) {
    out.push_str("<div data-field=\"pending-plan\">\n<h3>Pending plan</h3>\n");
    match plan {
        None => out.push_str("<p class=\"muted\">not planned yet</p>\n"),
        Some(plan) if plan.changes.is_empty() => {
            let _ = writeln!(
                out,
                "<p><span class=\"badge ok\">{}</span> nothing to change</p>",
                method_word(plan.method)
            );
        }
        Some(plan) => {
            let _ = writeln!(
                out,
                "<p><span class=\"badge warn\">{}</span> {} change(s)</p>\n<ul class=\"plain\">",
                method_word(plan.method),
                plan.changes.len()
            );
            for change in plan.changes.iter().take(CHANGES_SHOWN) {
                let _ = writeln!(out, "<li><code>{}</code></li>", esc(&change_text(change)));
            }
            if plan.changes.len() > CHANGES_SHOWN {
                let _ = writeln!(
                    out,
                    "<li class=\"muted\">and {} more (see /v1/status)</li>",
                    plan.changes.len() - CHANGES_SHOWN
                );
            }
            out.push_str("</ul>\n");
        }
    }
    out.push_str("</div>\n");
}

/// A revision as a `<dd>`: the full commit in `title`, the short one as
/// text, then the commit's summary, author and age when known.
fn revision(out: &mut String, field: &str, rev: Option<&RevisionInfo>, extra: &str, now: u64) {
    let Some(rev) = rev else {
        let _ = writeln!(
            out,
            "<dd data-field=\"{field}\" title=\"\"><span class=\"muted\">none yet</span>{extra}</dd>"
        );
        return;
    };
    let (full, short) = match &rev.commit {
        Some(commit) => (commit.as_str(), &commit[..commit.len().min(7)]),
        None => (rev.label.as_str(), rev.label.as_str()),
    };
    let _ = write!(
        out,
        "<dd data-field=\"{field}\" title=\"{}\"><code title=\"{}\">{}</code>",
        esc(full),
        esc(full),
        esc(short)
    );
    if rev.commit.is_some() {
        let _ = write!(out, " <span class=\"muted\">{}</span>", esc(&rev.label));
    }
    if let Some(details) = &rev.details {
        let _ = write!(
            out,
            " · <q class=\"summary\">{}</q> by <span class=\"author\">{}</span>, committed {}",
            esc(&details.summary),
            esc(&details.author),
            time(&details.at, now)
        );
    }
    let _ = writeln!(out, "{extra}</dd>");
}

fn routes(out: &mut String, d: &Dashboard) {
    let view = &d.routes;
    out.push_str(
        "<section id=\"routes\" aria-labelledby=\"routes-h\">\n<h2 id=\"routes-h\">Routes</h2>\n",
    );
    let _ = writeln!(
        out,
        "<form class=\"filter\" method=\"get\" action=\"/\" role=\"search\">\
         <label for=\"route-filter\">Filter routes</label> \
         <input id=\"route-filter\" type=\"search\" name=\"q\" value=\"{}\" autocomplete=\"off\" \
         placeholder=\"name, path, domain, server, state…\"> \
         <button type=\"submit\">Filter</button></form>",
        esc(&view.filter)
    );
    let matching = view.routes.len();
    let shown = matching.min(ROUTES_SHOWN);
    let note = match (view.filter.is_empty(), shown < matching) {
        (true, false) => format!("{} route(s)", view.total),
        (true, true) => format!("showing {shown} of {}; filter to narrow", view.total),
        (false, false) => format!(
            "{matching} of {} route(s) match “{}”",
            view.total,
            esc(&view.filter)
        ),
        (false, true) => format!(
            "showing {shown} of {matching} matching “{}” ({} in all); filter to narrow",
            esc(&view.filter),
            view.total
        ),
    };
    let _ = writeln!(
        out,
        "<p class=\"note\" id=\"routes-count\" role=\"status\">{note}</p>"
    );
    if let Some(error) = &view.stat_error {
        let _ = writeln!(
            out,
            "<p class=\"warning\">HAProxy's server state is unavailable: {}</p>",
            esc(error)
        );
    }
    out.push_str(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-labelledby=\"routes-h\">\n\
         <table class=\"routes\">\n<thead><tr><th scope=\"col\">Route</th><th scope=\"col\">Paths</th>\
         <th scope=\"col\">Domains</th><th scope=\"col\">Backend</th><th scope=\"col\">Source</th>\
         <th scope=\"col\">Servers</th></tr></thead>\n",
    );
    for route in view.routes.iter().take(ROUTES_SHOWN) {
        route_body(out, route);
    }
    out.push_str("</table>\n</div>\n</section>\n");
}

fn route_body(out: &mut String, r: &RouteView) {
    let _ = write!(
        out,
        "<tbody class=\"route\" data-route=\"{}\" data-backend=\"{}\" data-source=\"{}\">\n\
         <tr class=\"route-row\"><th scope=\"rowgroup\">{} <span class=\"muted\">{}:{} {}</span>",
        esc(&r.name),
        esc(&r.backend),
        r.source.as_str(),
        esc(&r.name),
        esc(&r.service),
        r.port,
        esc(&r.mode)
    );
    for warning in &r.warnings {
        let _ = write!(
            out,
            "<br><span class=\"warning\"><span aria-hidden=\"true\">⚠ </span>{}</span>",
            esc(warning)
        );
    }
    out.push_str("</th><td>");
    list(out, &r.paths);
    out.push_str("</td><td>");
    list(out, &r.domains);
    let _ = write!(out, "</td><td><code>{}</code>", esc(&r.backend));
    if let Some(spare) = &r.served_by {
        let _ = write!(
            out,
            "<br><span class=\"muted\">served by <code>{}</code> until the next reload</span>",
            esc(spare)
        );
    }
    let up = r
        .servers
        .iter()
        .filter(|s| s.stat.status.starts_with("UP") || s.stat.status == "no check")
        .count();
    let _ = writeln!(
        out,
        "</td><td>{}</td><td>{up} of {} serving</td></tr>",
        r.source.as_str(),
        r.servers.len()
    );
    for server in &r.servers {
        server_row(out, server);
    }
    out.push_str("</tbody>\n");
}

fn list(out: &mut String, items: &[String]) {
    if items.is_empty() {
        out.push_str("<span class=\"muted\">any</span>");
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str("<br>");
        }
        let _ = write!(out, "<code>{}</code>", esc(item));
    }
}

fn server_row(out: &mut String, s: &ServerView) {
    let stat = &s.stat;
    let class = match stat.status.as_str() {
        "UP" | "no check" => "ok",
        status if status.starts_with("DOWN") => "bad",
        status if status.starts_with("MAINT") => "off",
        _ => "warn",
    };
    let _ = write!(
        out,
        "<tr class=\"server\" data-server=\"{}\" data-state=\"{}\"><td><code>{}</code></td>\
         <td colspan=\"5\" class=\"facts-inline\"><span><span class=\"badge {class}\">{}</span></span>\
         <span>{}</span><span>{} session(s)</span><span>{}/s</span>",
        esc(&stat.server),
        esc(&stat.status),
        esc(&stat.server),
        esc(&stat.status),
        if stat.address.is_empty() {
            "no address".to_string()
        } else {
            format!("<code>{}</code>", esc(&stat.address))
        },
        stat.scur,
        stat.rate
    );
    match (&stat.check_status, &stat.last_chk) {
        (None, None) => {}
        (check, last) => {
            let _ = write!(
                out,
                "<span>check {}{}</span>",
                esc(check.as_deref().unwrap_or_default()),
                last.as_ref()
                    .map(|l| format!(" ({})", esc(l)))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(seconds) = stat.lastchg {
        let _ = write!(out, "<span>changed {} ago</span>", duration_words(seconds));
    }
    if let Some(task) = &s.task {
        let _ = write!(
            out,
            "<span>task <code>{}</code> on node <code title=\"{}\">{}</code></span>",
            esc(&task.id),
            esc(&task.node),
            esc(if task.node_hostname.is_empty() {
                &task.node
            } else {
                &task.node_hostname
            })
        );
    }
    out.push_str("</td></tr>\n");
}

fn overrides_section(out: &mut String, d: &Dashboard) {
    out.push_str(
        "<section id=\"overrides\" aria-labelledby=\"overrides-h\">\n<h2 id=\"overrides-h\">Overrides</h2>\n",
    );
    if d.overrides.overrides.is_empty() {
        out.push_str(
            "<p class=\"muted\">No overrides: HAProxy serves what git declares.</p>\n</section>\n",
        );
        return;
    }
    out.push_str(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-labelledby=\"overrides-h\">\n\
         <table>\n<thead><tr><th scope=\"col\">Service</th><th scope=\"col\">Kind</th>\
         <th scope=\"col\">Made</th><th scope=\"col\">Expires</th><th scope=\"col\">Against git</th>\
         <th scope=\"col\">To commit it (routes.yaml)</th></tr></thead>\n<tbody>\n",
    );
    for (service, o) in &d.overrides.overrides {
        let drift = d
            .status
            .overrides
            .iter()
            .find(|drift| &drift.service == service);
        let kind = match o.action {
            overrides::Action::Reconfigure { .. } => "reconfigure",
            overrides::Action::Remove => "remove",
        };
        let expires = match o.expires_at {
            Some(at) if at > d.now => format!("in {}", duration_words(at - d.now)),
            Some(_) => "expired".to_string(),
            None => "never (no TTL)".to_string(),
        };
        let mut against = String::new();
        if let Some(drift) = drift {
            for (words, ids) in [
                ("adds", &drift.adds),
                ("replaces git's", &drift.replaces),
                ("hides git's", &drift.removes),
            ] {
                if !ids.is_empty() {
                    let ids: Vec<String> = ids.iter().map(|i| esc(i).to_string()).collect();
                    let _ = write!(against, "{words} <code>{}</code><br>", ids.join(", "));
                }
            }
            if drift.redundant {
                against.push_str("git declares the same: dropped at the next reconcile");
            }
        }
        let single = OverrideSet {
            overrides: std::iter::once((service.clone(), o.clone())).collect(),
        };
        let _ = writeln!(
            out,
            "<tr class=\"override\" data-service=\"{}\"><th scope=\"row\">{}</th><td>{kind}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            esc(service),
            esc(service),
            time(&o.created_at, d.now),
            expires,
            if against.is_empty() {
                "<span class=\"muted\">not known yet</span>".to_string()
            } else {
                against
            },
            esc(&overrides::export(&single))
        );
    }
    out.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}

fn history(out: &mut String, d: &Dashboard) {
    out.push_str(
        "<section id=\"history\" aria-labelledby=\"history-h\">\n<h2 id=\"history-h\">History</h2>\n",
    );
    sparkline(out, d);
    if d.status.history.is_empty() {
        out.push_str("<p class=\"muted\">Nothing applied yet.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-labelledby=\"history-h\">\n\
         <table>\n<thead><tr><th scope=\"col\">When</th><th scope=\"col\">Revision</th>\
         <th scope=\"col\">Method</th><th scope=\"col\">Outcome</th><th scope=\"col\">Changes</th>\
         <th scope=\"col\">Timings</th></tr></thead>\n<tbody>\n",
    );
    for record in &d.status.history {
        let method = method_word(record.method);
        let outcome = word(&record.outcome);
        let t = &record.timings;
        let _ = writeln!(
            out,
            "<tr class=\"apply\" data-method=\"{method}\" data-outcome=\"{}\"><td>{}</td>\
             <td><code>{}</code></td><td>{method}</td><td><span class=\"badge {}\">{}</span>{}</td>\
             <td>{}</td><td>fetch {} ms · plan {} ms · check {} ms · apply {} ms · total {} ms</td></tr>",
            esc(&outcome),
            time(&record.at, d.now),
            esc(&record.revision.label),
            if outcome == "ok" { "ok" } else { "bad" },
            esc(&outcome),
            record
                .error
                .as_ref()
                .map(|e| format!("<br>{}", esc(e)))
                .unwrap_or_default(),
            record.changes_total,
            t.fetch_ms,
            t.plan_ms,
            t.check_ms,
            t.apply_ms,
            record.duration_ms
        );
    }
    out.push_str("</tbody>\n</table>\n</div>\n</section>\n");
}

/// Reloads per hour over the last [`SPARK_HOURS`] hours, from the applies
/// status keeps, as bars.
fn sparkline(out: &mut String, d: &Dashboard) {
    let mut per_hour = [0u32; SPARK_HOURS as usize];
    for record in &d.status.history {
        if record.method != Method::Reload {
            continue;
        }
        let Some(at) = unix_seconds(&record.at) else {
            continue;
        };
        let hours_ago = d.now.saturating_sub(at) / 3600;
        if hours_ago < SPARK_HOURS {
            per_hour[(SPARK_HOURS - 1 - hours_ago) as usize] += 1;
        }
    }
    let max = per_hour.iter().copied().max().unwrap_or(0).max(1);
    let counts: Vec<String> = per_hour.iter().map(u32::to_string).collect();
    let _ = write!(
        out,
        "<p class=\"note\">Reloads per hour, the last {SPARK_HOURS} hours</p>\n<svg class=\"sparkline\" width=\"{w}\" height=\"32\" viewBox=\"0 0 {w} 32\" role=\"img\" \
         aria-label=\"Reloads per hour, the last {SPARK_HOURS} hours, oldest first: {}\">\
         <title>Reloads per hour, the last {SPARK_HOURS} hours: {}</title>\
         <line x1=\"0\" y1=\"31.5\" x2=\"{w}\" y2=\"31.5\"/>",
        counts.join(", "),
        counts.join(", "),
        w = SPARK_HOURS * 12
    );
    for (i, count) in per_hour.iter().enumerate() {
        let height = count * 30 / max;
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"9\" height=\"{height}\"/>",
            i * 12 + 1,
            31 - height
        );
    }
    out.push_str("</svg>\n");
}

fn config(out: &mut String, d: &Dashboard) {
    out.push_str(
        "<section id=\"config\" aria-labelledby=\"config-h\">\n<h2 id=\"config-h\">Config</h2>\n",
    );
    match &d.config {
        ConfigText::Shown { text, total_bytes } => {
            let _ = write!(
                out,
                "<p class=\"note\">The haproxy.cfg HAProxy runs ({total_bytes} bytes; password hashes shown as fingerprints{}).</p>\n\
                 <pre id=\"haproxy-cfg\" tabindex=\"0\">{}</pre>\n",
                if *total_bytes > text.len() {
                    format!(
                        "; the first {} KiB, all of it at /v1/docker-flow-proxy/config",
                        CONFIG_SHOWN / 1024
                    )
                } else {
                    String::new()
                },
                esc(text)
            );
        }
        ConfigText::Unreadable(why) => {
            let _ = write!(
                out,
                "<p class=\"warning\">haproxy.cfg could not be read: {}</p>\n<pre id=\"haproxy-cfg\"></pre>\n",
                esc(why)
            );
        }
    }
    out.push_str("</section>\n");
}

/// A `<time>` with the moment in full and its age as text.
fn time(at: &str, now: u64) -> String {
    let age = match unix_seconds(at) {
        Some(then) if then <= now => format!("{} ago", duration_words(now - then)),
        Some(then) => format!("in {}", duration_words(then - now)),
        None => at.to_string(),
    };
    format!(
        "<time datetime=\"{}\" title=\"{}\">{}</time>",
        esc(at),
        esc(at),
        esc(&age)
    )
}

fn unix_seconds(rfc3339: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339_weak(rfc3339).ok()?;
    Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs())
}

/// `42s`, `5m`, `3h 10m`, `2d 4h`.
fn duration_words(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn method_word(method: Method) -> String {
    word(&method)
}

/// The word serde gives a unit enum value (`runtime`, `ok`).
fn word(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(word)) => word,
        _ => String::new(),
    }
}

/// A plan change as one line: its kind, then its fields, as `/v1/status`
/// has them.
fn change_text(change: &Change) -> String {
    let Ok(Value::Object(fields)) = serde_json::to_value(change) else {
        return String::new();
    };
    let kind = fields
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let rest: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k.as_str() != "kind")
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    if rest.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", rest.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::dashboard::view::{RouteSource, RoutesView, TaskRef};
    use crate::haproxy::admin::ServerStat;
    use crate::model::{Route, UrlPath};
    use crate::sources::overrides::{Action, Override};

    const HOSTILE: &str = r#"<script>alert("x")</script> & it's"#;
    const ESCAPED: &str = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; it&#39;s";

    fn status() -> crate::reconcile::Status {
        let revision = json!({
            "label": "main (0123456)",
            "commit": "0123456789abcdef0123456789abcdef01234567",
            "details": {"summary": HOSTILE, "author": HOSTILE, "at": "2026-01-01T00:00:00Z"}
        });
        serde_json::from_value(json!({
            "source": {"kind": "git", "location": HOSTILE, "branch": "main", "file": "routes.yaml"},
            "desired": revision,
            "applied": {"revision": revision, "marker": "m1", "at": "2026-01-01T00:00:00Z"},
            "in_sync": false,
            "last_error": {
                "stage": "validate",
                "message": HOSTILE,
                "diagnostics": [{"file": "routes.yaml", "line": 7, "column": 5,
                                 "field": "routes[0].paths", "message": HOSTILE}],
                "at": "2026-01-01T00:00:00Z"
            },
            "fetch": {"error": HOSTILE, "consecutive_failures": 2},
            "pending_plan": {"method": "runtime", "changes": [
                {"kind": "add_map_entry", "map": "/m/prefix.map", "key": HOSTILE, "value": "b"}
            ]},
            "overrides": [{"service": "evil", "kind": "reconfigure", "adds": [HOSTILE], "redundant": false}],
            "history": [{
                "revision": {"label": HOSTILE}, "at": "2026-01-01T00:00:00Z", "method": "reload",
                "changes": [], "changes_total": 3, "outcome": "failed", "duration_ms": 9,
                "timings": {"fetch_ms": 1, "plan_ms": 2, "check_ms": 3, "apply_ms": 4},
                "error": HOSTILE
            }]
        }))
        .expect("a status")
    }

    fn dashboard() -> Dashboard {
        let server = ServerView {
            stat: ServerStat {
                backend: "b".into(),
                server: HOSTILE.into(),
                status: "UP 1/3".into(),
                address: HOSTILE.into(),
                scur: 2,
                rate: 1,
                lastchg: Some(75),
                check_status: Some("L7STS".into()),
                last_chk: Some(HOSTILE.into()),
                weight: 1,
            },
            task: Some(TaskRef {
                id: HOSTILE.into(),
                node: HOSTILE.into(),
                node_hostname: HOSTILE.into(),
            }),
        };
        let route = RouteView {
            name: HOSTILE.into(),
            id: HOSTILE.into(),
            service: HOSTILE.into(),
            port: 80,
            mode: "http".into(),
            backend: HOSTILE.into(),
            served_by: Some(HOSTILE.into()),
            source: RouteSource::Override,
            paths: vec![HOSTILE.into()],
            domains: vec![HOSTILE.into()],
            warnings: vec![HOSTILE.into()],
            servers: vec![server],
        };
        let mut dfp_route = Route::new("evil", 80);
        dfp_route.paths = vec![UrlPath("/<script>&x".into())];
        let evil = Override {
            service: "evil".into(),
            action: Action::Reconfigure {
                routes: vec![dfp_route],
                userlists: BTreeMap::new(),
            },
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: Some(1_767_225_900),
        };
        Dashboard {
            status: status(),
            routes: RoutesView {
                at: "2026-01-01T00:00:00Z".into(),
                revision: None,
                filter: HOSTILE.into(),
                total: 1,
                routes: vec![route],
                stat_error: Some(HOSTILE.into()),
            },
            overrides: OverrideSet {
                overrides: BTreeMap::from([("evil".to_string(), evil)]),
            },
            config: ConfigText::new(&format!(
                "# {HOSTILE}\nuserlist u\n    user admin password $6$salt$secrethash\n"
            )),
            now: 1_767_225_700,
            rendered_at: "2026-01-01T00:01:40Z".into(),
        }
    }

    #[test]
    fn user_text_is_escaped_everywhere() {
        let html = page(&dashboard());
        assert!(!html.contains(HOSTILE), "raw hostile text in the page");
        assert!(!html.contains("<script>alert"), "{html}");
        // The one script element is the page's own.
        assert_eq!(html.matches("<script>").count(), 1);
        // Every place shows the text, escaped: revision (twice), author (twice),
        // source, error, diagnostic, fetch, plan key, drift, history label and
        // error, filter, route fields, server fields, config.
        assert!(html.matches(ESCAPED).count() >= 25, "{html}");
        assert!(html.contains("/&lt;script&gt;&amp;x"), "DFP path: {html}");
    }

    #[test]
    fn the_page_follows_the_dom_contract() {
        let html = page(&dashboard());
        for needle in [
            "<main id=\"dashboard\" data-updated=\"2026-01-01T00:01:40Z\">",
            "<section id=\"sync\"",
            "<section id=\"routes\"",
            "<section id=\"overrides\"",
            "<section id=\"history\"",
            "<section id=\"config\"",
            "<span data-field=\"in-sync\">not in sync</span>",
            "<dd data-field=\"desired-revision\" title=\"0123456789abcdef0123456789abcdef01234567\"><code title=\"0123456789abcdef0123456789abcdef01234567\">0123456</code>",
            "data-field=\"applied-revision\"",
            "data-field=\"fetch\"",
            "data-field=\"pending-plan\"",
            "<div id=\"last-error\"",
            "<li><code>routes.yaml:7:5: routes[0].paths: &lt;script&gt;",
            "<input id=\"route-filter\" type=\"search\"",
            "data-source=\"override\"",
            "<tr class=\"server\" data-server=\"&lt;script&gt;",
            "data-state=\"UP 1/3\"",
            "<tr class=\"override\" data-service=\"evil\">",
            "<tr class=\"apply\" data-method=\"reload\" data-outcome=\"failed\">",
            "<pre id=\"haproxy-cfg\"",
            "<div id=\"offline\" role=\"alert\" hidden>",
            "<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>",
            "<meta name=\"viewport\"",
        ] {
            assert!(html.contains(needle), "no {needle} in\n{html}");
        }
        // The fragment is exactly what main holds.
        let d = dashboard();
        let (page, fragment) = (page(&d), fragment(&d));
        let inner = page
            .split_once("data-updated=\"2026-01-01T00:01:40Z\">\n")
            .and_then(|(_, rest)| rest.split_once("</main>"))
            .map(|(inner, _)| inner);
        assert_eq!(inner, Some(fragment.as_str()));
    }

    #[test]
    fn no_secret_no_external_url() {
        let html = page(&dashboard());
        assert!(!html.contains("secrethash"), "a password hash is shown");
        assert!(!html.contains("$6$"), "a password hash is shown");
        for external in ["http://", "https://", "//cdn", "src=\"http"] {
            assert!(!html.contains(external), "{external} in the page");
        }
        let policy = content_security_policy();
        assert!(policy.contains("script-src 'sha256-"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
    }

    #[test]
    fn at_most_the_bound_of_routes_is_rendered() {
        let mut d = dashboard();
        let route = d.routes.routes[0].clone();
        d.routes.filter.clear();
        d.routes.routes = vec![route; ROUTES_SHOWN + 7];
        d.routes.total = ROUTES_SHOWN + 7;
        let html = fragment(&d);
        assert_eq!(html.matches("<tbody class=\"route\"").count(), ROUTES_SHOWN);
        assert!(
            html.contains(&format!(
                "showing {ROUTES_SHOWN} of {}; filter to narrow",
                ROUTES_SHOWN + 7
            )),
            "{html}"
        );
    }
}
