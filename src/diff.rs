//! What changes between two route tables: a route-level summary (which
//! routes were added, removed or changed, and which of their fields), a
//! unified diff of the rendered haproxy.cfg, and what applying it costs
//! HAProxy (run-time changes or a reload, and why). Pure functions over
//! plain data.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::model::{Name, Route, RouteId, RoutesFile, Userlist};
use crate::plan::{self, Change, DesiredConfig, LiveState, Method};
use crate::render::{HaproxyConfig, Section};

/// How one route differs between base and head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// A field whose value differs; `None` where the field is unset on that side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// Dotted path inside the route (or the file, for settings): `timeouts.server`.
    pub field: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// One added, removed or changed route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteChange {
    pub route: RouteId,
    pub change: ChangeKind,
    /// The changed fields; empty for added and removed routes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
}

/// Route-level differences between two tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteDiff {
    /// Sorted by route id.
    pub routes: Vec<RouteChange>,
    /// Changes outside the routes: `defaults.*`, `userlists.*` (password hashes shown as fingerprints).
    pub settings: Vec<FieldChange>,
    /// Routes present and identical on both sides.
    pub unchanged: usize,
}

impl RouteDiff {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.settings.is_empty()
    }

    pub fn count(&self, kind: ChangeKind) -> usize {
        self.routes.iter().filter(|r| r.change == kind).count()
    }
}

/// Compares two route tables route by route (routes are matched by id, `<name or service>:<port>`).
pub fn diff_routes(base: &RoutesFile, head: &RoutesFile) -> RouteDiff {
    // Keyed by the id's parts, `<key>:<port>` written only for the routes reported.
    fn index(file: &RoutesFile) -> HashMap<(&Name, u16), &Route> {
        file.routes.iter().map(|r| ((r.key(), r.port), r)).collect()
    }
    let (old, new) = (index(base), index(head));
    let mut diff = RouteDiff::default();
    for (key, old_route) in &old {
        // Written the same means the same: normalized only when not.
        let changed = new.get(key).map(|new_route| {
            (old_route != new_route)
                .then(|| (old_route.normalized(), new_route.normalized()))
                .filter(|(old, new)| old != new)
        });
        match changed {
            None => diff.routes.push(RouteChange {
                route: old_route.id(),
                change: ChangeKind::Removed,
                fields: Vec::new(),
            }),
            Some(None) => diff.unchanged += 1,
            Some(Some((old_route, new_route))) => {
                // Field by field, through JSON: only for the routes that changed.
                let json = |r: &Route| serde_json::to_value(r).expect("routes serialize");
                let mut fields = Vec::new();
                diff_values(
                    "",
                    Some(&json(&old_route)),
                    Some(&json(&new_route)),
                    &mut fields,
                );
                diff.routes.push(RouteChange {
                    // Normalized: the same id.
                    route: old_route.id(),
                    change: ChangeKind::Changed,
                    fields,
                });
            }
        }
    }
    for (_, new_route) in new.iter().filter(|(key, _)| !old.contains_key(*key)) {
        diff.routes.push(RouteChange {
            route: new_route.id(),
            change: ChangeKind::Added,
            fields: Vec::new(),
        });
    }
    diff.routes.sort_by(|a, b| a.route.cmp(&b.route));
    diff_values(
        "",
        Some(&settings_view(base)),
        Some(&settings_view(head)),
        &mut diff.settings,
    );
    diff
}

/// Everything but the routes, with password hashes replaced by fingerprints
/// so that a PR comment never carries them.
fn settings_view(file: &RoutesFile) -> Value {
    let userlists: BTreeMap<String, Value> = file
        .userlists
        .iter()
        .map(|(list, userlist)| {
            let view = match userlist {
                Userlist::Users(users) => users
                    .iter()
                    .map(|u| (u.name.0.clone(), Value::from(redacted(&u.password_hash))))
                    .collect(),
                Userlist::File(file) => serde_json::to_value(file).expect("plain data"),
            };
            (list.0.clone(), view)
        })
        .collect();
    serde_json::json!({ "defaults": file.defaults, "userlists": userlists })
}

/// How a fingerprint starts (a password hash starts with `$`).
const FINGERPRINT_PREFIX: &str = "hash ";

/// A password hash's fingerprint; a fingerprint (what capstan's API shows
/// clients without credentials) stays as it is.
pub fn redacted(password_hash: &str) -> String {
    if is_fingerprint(password_hash) {
        password_hash.to_string()
    } else {
        fingerprint(password_hash)
    }
}

pub fn is_fingerprint(text: &str) -> bool {
    text.starts_with(FINGERPRINT_PREFIX)
}

/// `hash 1a2b3c4d`: tells two password hashes apart without showing them.
fn fingerprint(password_hash: &str) -> String {
    let hex = crate::util::sha256_hex_prefix(password_hash.as_bytes(), 4);
    format!("{FINGERPRINT_PREFIX}{hex}")
}

/// The config with every userlist password hash replaced by its fingerprint,
/// so that a diff posted to a pull request never carries one; borrowed
/// when there is none.
pub fn redact_passwords(config: &str) -> Cow<'_, str> {
    // The text between two hashes is copied in one piece.
    let mut out: Option<String> = None;
    let (mut offset, mut copied) = (0, 0);
    for line in config.split_inclusive('\n') {
        if let Some(redacted) = redacted_user_line(line) {
            let out = out.get_or_insert_with(|| String::with_capacity(config.len()));
            out.push_str(&config[copied..offset]);
            out.push_str(&redacted);
            copied = offset + line.len();
        }
        offset += line.len();
    }
    match out {
        Some(mut out) => {
            out.push_str(&config[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(config),
    }
}

/// A `user <name> password <hash>` line with its hash as a fingerprint;
/// `None` for any other line.
fn redacted_user_line(line: &str) -> Option<String> {
    let body = line.trim_start();
    // Most lines are not a user's: told apart without splitting them.
    if !body.starts_with("user") {
        return None;
    }
    let words: Vec<&str> = body.split_whitespace().collect();
    match words.as_slice() {
        ["user", name, "password", hash] => {
            let indent = &line[..line.len() - body.len()];
            Some(format!(
                "{indent}user {name} password <{}>\n",
                fingerprint(hash)
            ))
        }
        _ => None,
    }
}

/// Collects the leaves where two JSON values differ; objects are compared key
/// by key, anything else (lists included) as a whole.
fn diff_values(prefix: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<FieldChange>) {
    if let (Some(Value::Object(a)), Some(Value::Object(b))) = (old, new) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let field = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            diff_values(&field, a.get(key), b.get(key), out);
        }
    } else if old != new {
        out.push(FieldChange {
            field: prefix.to_string(),
            old: old.cloned(),
            new: new.cloned(),
        });
    }
}

/// One side of a comparison, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// `main (1a2b3c4)`, `working tree`, `live`.
    pub label: String,
    /// Full commit id when the side is a commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub routes: usize,
}

/// A route table with its rendered config: one side of a diff.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub label: String,
    pub commit: Option<String>,
    pub routes: RoutesFile,
    pub config: String,
    /// The config capstan would have HAProxy run; `None` when nothing runs.
    pub haproxy: Option<DesiredConfig>,
}

/// The admin socket both sides of a diff are planned with: any path does,
/// as long as both sides name the same one.
const PLANNED_ADMIN_SOCKET: &str = "/run/capstan/admin.sock";

impl Snapshot {
    /// A validated table and the config it renders to.
    pub fn rendered(label: impl Into<String>, commit: Option<String>, routes: RoutesFile) -> Self {
        let rendered = crate::render::render(&routes);
        Self::from_rendered(label, commit, routes, rendered)
    }

    /// A validated table and `rendered`, the config [`crate::render::render`]
    /// made of it: for a caller that rendered it already.
    pub fn from_rendered(
        label: impl Into<String>,
        commit: Option<String>,
        routes: RoutesFile,
        rendered: HaproxyConfig,
    ) -> Self {
        let config = rendered.with_maps_listed();
        Self {
            label: label.into(),
            commit,
            routes,
            config,
            haproxy: Some(DesiredConfig::new(
                rendered,
                Path::new(PLANNED_ADMIN_SOCKET),
            )),
        }
    }

    /// A proxy with no config at all: what a first apply starts from.
    pub fn nothing_running() -> Self {
        Self {
            label: "live (nothing running)".into(),
            commit: None,
            routes: RoutesFile::empty(),
            config: String::new(),
            haproxy: None,
        }
    }

    fn side(&self) -> Side {
        Side {
            label: self.label.clone(),
            commit: self.commit.clone(),
            routes: self.routes.routes.len(),
        }
    }
}

/// What applying the head costs HAProxy, planned as if HAProxy ran the base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Impact {
    /// `nothing`, `runtime` (through the admin socket, no reload) or `reload`.
    pub method: Method,
    /// Map entries added, re-pointed or removed at run time.
    pub map_entries: usize,
    /// Servers whose address or state changes at run time.
    pub servers: usize,
    /// Certificates added, replaced or removed at run time.
    pub certificates: usize,
    /// Why a reload: `backend x added`, `backend y: -timeout connect 1s, +timeout connect 2s`.
    pub reasons: Vec<String>,
}

/// Lines of a modified section a reload reason quotes; the config diff has them all.
const REASON_LINES: usize = 3;

impl Impact {
    /// Plans the head against HAProxy running the base, as capstan would
    /// apply it after the merge.
    pub fn between(base: &Snapshot, head: &Snapshot) -> Self {
        // capstan never stops HAProxy: a side with nothing running asks nothing of it.
        let Some(head) = &head.haproxy else {
            return Self {
                method: Method::Nothing,
                map_entries: 0,
                servers: 0,
                certificates: 0,
                reasons: Vec::new(),
            };
        };
        let live = match &base.haproxy {
            None => LiveState::default(),
            // The base's config is copied only for a plan that reads it.
            Some(base) if base.marker == head.marker => LiveState::running_but_config(base),
            Some(base) => LiveState::running(base),
        };
        let plan = plan::plan(head, &live);
        let servers: BTreeSet<(&str, &str)> = plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::SetServerAddress {
                    backend, server, ..
                }
                | Change::SetServerState {
                    backend, server, ..
                } => Some((backend.as_str(), server.as_str())),
                _ => None,
            })
            .collect();
        let certificates = plan
            .changes
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Change::AddCertificate { .. }
                        | Change::ReplaceCertificate { .. }
                        | Change::RemoveCertificate { .. }
                )
            })
            .count();
        let reasons = if base.haproxy.is_none() {
            vec!["nothing runs yet: HAProxy starts with this config".to_string()]
        } else {
            let base_config = base.haproxy.as_ref().map(|base| &base.config);
            reload_reasons(&plan, base_config, &head.config)
        };
        Self {
            method: plan.method,
            map_entries: plan.changes.iter().filter(|c| c.is_map_entry()).count(),
            servers: servers.len(),
            certificates,
            reasons,
        }
    }
}

/// Why a planned reload: the sections added or removed, and for each
/// modified section the first lines that differ.
fn reload_reasons(
    plan: &plan::Plan,
    base: Option<&HaproxyConfig>,
    head: &HaproxyConfig,
) -> Vec<String> {
    // Why no spare backend serves a new backend, by its section.
    let no_spare = |section: &str| {
        plan.changes.iter().find_map(|c| match c {
            Change::NoSpareBackend { backend, reason }
                if section.strip_prefix("backend ") == Some(backend.as_str()) =>
            {
                Some(reason.as_str())
            }
            _ => None,
        })
    };
    plan.changes
        .iter()
        .filter_map(|change| match change {
            Change::AddSection { section } => Some(match no_spare(section) {
                Some(reason) => format!("{section} added (no spare backend: {reason})"),
                None => format!("{section} added"),
            }),
            Change::RemoveSection { section } => Some(format!("{section} removed")),
            Change::ModifySection { section } => {
                let lines = |config: Option<&HaproxyConfig>| {
                    config
                        .and_then(|c| c.section(section))
                        .map(body_lines)
                        .unwrap_or_default()
                };
                let (old, new) = (lines(base), lines(Some(head)));
                Some(format!("{section}: {}", changed_lines(&old, &new)))
            }
            Change::ReloadRunningConfig => Some("HAProxy runs another config".to_string()),
            _ => None,
        })
        .collect()
}

/// A section's lines as haproxy.cfg writes them (servers included), without
/// the marker, and password hashes as fingerprints, as in the config diff.
fn body_lines(section: &Section) -> Vec<String> {
    let alone = HaproxyConfig {
        sections: vec![section.clone()],
        maps: Vec::new(),
    };
    redact_passwords(&alone.to_string())
        .lines()
        .filter(|l| l.starts_with(char::is_whitespace))
        .map(|l| l.trim().to_string())
        .filter(|l| !plan::is_marker_line(l))
        .collect()
}

/// `-old line, +new line`: the first lines that differ, in order.
fn changed_lines(old: &[String], new: &[String]) -> String {
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    let new: Vec<&str> = new.iter().map(String::as_str).collect();
    let diff = similar::TextDiff::from_slices(&old, &new);
    let changed: Vec<String> = diff
        .iter_all_changes()
        .filter_map(|c| match c.tag() {
            similar::ChangeTag::Equal => None,
            similar::ChangeTag::Delete => Some(format!("-{}", c.value())),
            similar::ChangeTag::Insert => Some(format!("+{}", c.value())),
        })
        .collect();
    let mut text = changed
        .iter()
        .take(REASON_LINES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match changed.len().saturating_sub(REASON_LINES) {
        0 => {}
        1 => text.push_str(" and 1 more line"),
        more => text.push_str(&format!(" and {more} more lines")),
    }
    text
}

/// Everything `capstan diff` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiffReport {
    pub base: Side,
    pub head: Side,
    #[serde(flatten)]
    pub routes: RouteDiff,
    /// Unified diff of haproxy.cfg; empty when the rendered configs are equal.
    pub config_diff: String,
    /// What applying the head costs HAProxy.
    pub haproxy: Impact,
    /// Overrides in force on the live side (API changes git does not
    /// declare); only for a diff against a running capstan.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<crate::desired::overlay::Drift>,
    /// Swarm-side problems of the live routes (a missing service, no running
    /// task); only for a diff against a running capstan.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<crate::sources::Warning>,
}

impl DiffReport {
    pub fn between(base: &Snapshot, head: &Snapshot) -> Self {
        Self {
            base: base.side(),
            head: head.side(),
            routes: diff_routes(&base.routes, &head.routes),
            config_diff: config_diff(
                &redact_passwords(&base.config),
                &redact_passwords(&head.config),
                "base/haproxy.cfg",
                "head/haproxy.cfg",
            ),
            haproxy: Impact::between(base, head),
            drift: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn has_changes(&self) -> bool {
        !self.routes.is_empty() || !self.config_diff.is_empty()
    }
}

/// A unified diff of two rendered configs, empty when they are equal.
pub fn config_diff(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Duration, Route, RouteTimeouts, UrlPath};

    fn table(routes: Vec<Route>) -> RoutesFile {
        RoutesFile {
            routes,
            ..RoutesFile::empty()
        }
    }

    fn route(service: &str, path: &str) -> Route {
        Route {
            paths: vec![UrlPath(path.into())],
            ..Route::new(service, 8080)
        }
    }

    #[test]
    fn added_removed_and_changed_routes_with_their_fields() {
        let base = table(vec![route("a", "/a"), route("b", "/b"), route("c", "/c")]);
        let mut changed = route("b", "/bee");
        changed.timeouts = RouteTimeouts {
            server: Some(Duration("90s".into())),
            ..Default::default()
        };
        let head = table(vec![route("c", "/c"), changed, route("d", "/d")]);
        let diff = diff_routes(&base, &head);
        let summary: Vec<(String, ChangeKind)> = diff
            .routes
            .iter()
            .map(|r| (r.route.0.clone(), r.change))
            .collect();
        assert_eq!(
            summary,
            [
                ("a:8080".to_string(), ChangeKind::Removed),
                ("b:8080".to_string(), ChangeKind::Changed),
                ("d:8080".to_string(), ChangeKind::Added),
            ]
        );
        let fields: Vec<&str> = diff.routes[1]
            .fields
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["paths", "timeouts"]);
        assert_eq!(diff.unchanged, 1);
        assert!(diff.settings.is_empty());
    }

    #[test]
    fn nested_settings_changes_are_dotted() {
        let base = table(vec![]);
        let mut head = table(vec![]);
        head.defaults.timeouts.server = Duration("1m".into());
        let diff = diff_routes(&base, &head);
        assert_eq!(diff.settings.len(), 1);
        assert_eq!(diff.settings[0].field, "defaults.timeouts.server");
        assert_eq!(diff.settings[0].new, Some(Value::from("1m")));
    }

    #[test]
    fn userlist_files_and_rewrite_lists_show_as_fields() {
        use crate::model::{FilePath, Name, PathRewrite, UsersFile};
        let ops = |path: &str| {
            let file = UsersFile {
                file: FilePath(path.into()),
                hashed: false,
            };
            BTreeMap::from([(Name("ops".into()), Userlist::File(file))])
        };
        let rewrite = |regex: &str| PathRewrite {
            regex: regex.into(),
            replace: "/".into(),
        };
        let mut base = table(vec![route("a", "/a")]);
        base.userlists = ops("/run/secrets/dfp_users_ops");
        base.routes[0].rewrite_path = vec![rewrite("^/a")];
        let mut head = table(vec![route("a", "/a")]);
        head.userlists = ops("/run/secrets/dfp_users_admins");
        head.routes[0].rewrite_path = vec![rewrite("^/a"), rewrite("^/b")];
        let diff = diff_routes(&base, &head);
        assert_eq!(diff.settings[0].field, "userlists.ops.file");
        assert_eq!(
            diff.settings[0].new,
            Some(Value::from("/run/secrets/dfp_users_admins"))
        );
        assert_eq!(diff.routes[0].fields[0].field, "rewrite_path");
    }

    #[test]
    fn matching_and_compression_changes_are_listed() {
        use crate::model::{Compression, CompressionAlgorithm, DomainMatch, HeaderValue};
        let base = route("a", "/a");
        let mut head = base.clone();
        head.domain_match = DomainMatch::Labels;
        head.match_headers
            .insert("X-Version".parse().unwrap(), "3".parse().unwrap());
        head.user_agents = vec![HeaderValue("iPhone".into())];
        head.compression = Some(Compression {
            algorithms: vec![CompressionAlgorithm::Gzip],
            types: vec![],
        });
        head.resolve_at_runtime = true;
        let diff = diff_routes(&table(vec![base]), &table(vec![head]));
        let fields: Vec<&str> = diff.routes[0]
            .fields
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "compression",
                "domain_match",
                "match_headers",
                "resolve_at_runtime",
                "user_agents"
            ]
        );
    }

    #[test]
    fn reordered_lists_inside_a_route_are_no_change() {
        let mut a = route("a", "/x");
        a.paths.push(UrlPath("/y".into()));
        let mut b = a.clone();
        b.paths.reverse();
        assert!(diff_routes(&table(vec![a]), &table(vec![b])).is_empty());
    }

    #[test]
    fn userlist_files_never_reach_the_config_diff() {
        let config = "userlist ops\n    user admin password $6$salt$secret\n";
        let redacted = redact_passwords(config);
        assert!(!redacted.contains("secret"), "{redacted}");
        assert!(
            redacted.contains("    user admin password <hash "),
            "{redacted}"
        );
    }

    fn rendered(yaml: &str) -> Snapshot {
        Snapshot::rendered(
            "side",
            None,
            crate::model::validate::load("r", yaml).unwrap(),
        )
    }

    const ONE: &str = "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n    servers: [127.0.0.1:9001]\n";

    #[test]
    fn paths_and_server_addresses_apply_live() {
        let head = rendered(&ONE.replace("[/a]", "[/a, /b, /c]").replace("9001", "9002"));
        let impact = Impact::between(&rendered(ONE), &head);
        assert_eq!(impact.method, Method::Runtime);
        assert_eq!((impact.map_entries, impact.servers), (2, 1));
        assert!(impact.reasons.is_empty());
        let same = Impact::between(&rendered(ONE), &rendered(ONE));
        assert_eq!(same.method, Method::Nothing);
    }

    #[test]
    fn a_reload_names_sections_and_the_first_lines_that_differ() {
        let head = rendered(&ONE.replace(
            "    servers:",
            "    balance: leastconn\n    timeouts:\n      server: 2m\n      connect: 1s\n    connection_mode: server_close\n    servers:",
        ));
        let impact = Impact::between(&rendered(ONE), &head);
        assert_eq!(impact.method, Method::Reload);
        assert_eq!(
            impact.reasons,
            [
                "backend a-be80: -balance roundrobin, +balance leastconn, +timeout connect 1s and 1 more line"
            ]
        );
        let with_user = |hash: &str| {
            rendered(&format!(
                "{ONE}userlists:\n  ops:\n    - name: admin\n      password_hash: \"{hash}\"\n"
            ))
        };
        let password = Impact::between(&with_user("$6$salt$old"), &with_user("$6$salt$new"));
        let reason = &password.reasons[0];
        assert!(
            reason.starts_with("userlist ops: -user admin password <hash "),
            "{reason}"
        );
        assert!(!reason.contains("$6$"), "{reason}");
        let first = Impact::between(&Snapshot::nothing_running(), &rendered(ONE));
        assert_eq!(
            first.reasons,
            ["nothing runs yet: HAProxy starts with this config"]
        );
    }

    #[test]
    fn equal_configs_have_an_empty_diff() {
        assert_eq!(config_diff("a\n", "a\n", "x", "y"), "");
        let diff = config_diff("a\nb\n", "a\nc\n", "base", "head");
        assert!(diff.starts_with("--- base\n+++ head\n"), "{diff}");
        assert!(diff.contains("-b\n+c\n"), "{diff}");
    }
}
