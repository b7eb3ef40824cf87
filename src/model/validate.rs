//! Validation of a routes file, in two layers: the JSON schema generated from
//! `model`, then the semantic checks a schema cannot express. Both report
//! every problem at once, each with file, line, column and field.

mod incremental;
mod route_rules;

mod tls;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use serde::Deserialize;

use crate::model::diagnostics::{Diagnostic, Diagnostics, FieldPath, Segment, excerpt};
use crate::model::yaml::{self, SourceMap};
use crate::model::{
    ConnectionMode, DomainMatch, Duration, FORMAT_VERSION, HttpsRedirectWhen, Mode, PathMatch,
    Route, RoutesFile,
};
use crate::model::{duration, grammar, names};

pub use incremental::{LoadCache, load_again};

/// The JSON schema of `routes.yaml`, as committed in `schema/routes.schema.json`.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RoutesFile)).expect("a schema is plain JSON")
}

/// The schema as the committed file holds it: pretty JSON with a final newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("a schema is plain JSON");
    text.push('\n');
    text
}

static VALIDATOR: LazyLock<jsonschema::Validator> =
    LazyLock::new(|| jsonschema::validator_for(&schema()).expect("the generated schema compiles"));

/// The largest routes file capstan reads: 16 MiB. A table of 10,000 routes
/// is 1-2 MB; anything much larger is a mistake or an attack, and is
/// refused before it is parsed (parsing costs several times its size).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The diagnostic for a routes file of `bytes` bytes, when that is over [`MAX_FILE_BYTES`].
pub fn size_problem(file: &str, bytes: u64) -> Option<Diagnostic> {
    (bytes > MAX_FILE_BYTES).then(|| Diagnostic {
        file: file.to_string(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!(
            "the file is {bytes} bytes; routes files are limited to {MAX_FILE_BYTES} bytes (16 MiB), so it was not read"
        ),
    })
}

/// Parses and validates a routes file. `file` is the name errors mention.
pub fn load(file: &str, text: &str) -> Result<RoutesFile, Diagnostics> {
    if let Some(too_large) = size_problem(file, text.len() as u64) {
        return Err(Diagnostics(vec![too_large]));
    }
    let yaml::Document { value, source_map } =
        yaml::parse(file, text).map_err(|d| Diagnostics(vec![d]))?;
    check_value(file, value, &source_map)
}

/// Validates an already parsed document (from YAML or from an API call).
/// Takes the value to move its strings into the table rather than copy them.
pub fn check_value(
    file: &str,
    value: serde_json::Value,
    source_map: &SourceMap,
) -> Result<RoutesFile, Diagnostics> {
    let schema_errors = schema_errors(file, &value, source_map);
    if !schema_errors.is_empty() {
        return Err(Diagnostics(schema_errors).sorted());
    }
    let routes = RoutesFile::deserialize(value).map_err(|e| {
        Diagnostics(vec![source_map.at_value(
            file,
            &FieldPath::root(),
            excerpt(&e.to_string()),
        )])
    })?;
    let problems = semantic_errors(&routes);
    if problems.is_empty() {
        Ok(routes)
    } else {
        let diagnostics = problems
            .into_iter()
            .map(|p| source_map.at_value(file, &p.path, p.message))
            .collect();
        Err(Diagnostics(diagnostics).sorted())
    }
}

/// Validates a routes file built in code (an override, a Swarm label): the
/// same checks, with field paths but no line numbers.
pub fn check(file: &str, routes: &RoutesFile) -> Result<(), Diagnostics> {
    let value = serde_json::to_value(routes).expect("routes serialize to JSON");
    check_value(file, value, &SourceMap::default()).map(|_| ())
}

/// The semantic checks alone, for tables whose parts already passed the
/// schema (git's file and each override): catches what only the combination
/// can break (two routes on one path, one id twice, a port used twice).
pub fn check_semantics(file: &str, routes: &RoutesFile) -> Result<(), Diagnostics> {
    let problems = semantic_errors(routes);
    if problems.is_empty() {
        return Ok(());
    }
    let source_map = SourceMap::default();
    Err(Diagnostics(
        problems
            .into_iter()
            .map(|p| source_map.at_value(file, &p.path, p.message))
            .collect(),
    ))
}

fn schema_errors(file: &str, value: &serde_json::Value, map: &SourceMap) -> Vec<Diagnostic> {
    if value.is_null() {
        return vec![map.at_value(
            file,
            &FieldPath::root(),
            format!("the file is empty; it needs at least `version: {FORMAT_VERSION}`"),
        )];
    }
    // Most documents are valid: checked without collecting errors first.
    if VALIDATOR.is_valid(value) {
        return Vec::new();
    }
    VALIDATOR
        .iter_errors(value)
        .flat_map(|error| diagnose(file, map, &error))
        .collect()
}

/// One schema error as diagnostics, at the most precise place known.
fn diagnose(
    file: &str,
    map: &SourceMap,
    error: &jsonschema::ValidationError<'_>,
) -> Vec<Diagnostic> {
    use jsonschema::error::ValidationErrorKind as Kind;
    let path = segments_of(error.instance_path());
    match error.kind() {
        // One diagnostic per unknown field, each at its own key.
        Kind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| {
                let message = format!("unknown field `{}`", excerpt(name));
                map.at_key(file, &path.key(name), message)
            })
            .collect(),
        Kind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            vec![
                map.at_value(file, &path, format!("missing required field `{name}`"))
                    .with_field(path.key(name)),
            ]
        }
        // An optional field (`T` or null), or one written either as an object
        // or as a list: say what is wrong with the branch the value meant.
        Kind::AnyOf { context } => {
            let branch = optional_branch_errors(context)
                .or_else(|| same_type_branch_errors(error.instance_path(), context));
            match branch {
                Some(inner) => diagnose(file, map, inner),
                None => vec![map.at_value(file, &path, schema_message(error))],
            }
        }
        _ => vec![map.at_value(file, &path, schema_message(error))],
    }
}

/// The schema error's message with the value it quotes cut short: the
/// validator quotes the whole value (`"<50 MB>" is longer than 1024 characters`).
fn schema_message(error: &jsonschema::ValidationError<'_>) -> String {
    use crate::model::diagnostics::MAX_QUOTED_CHARS;
    let message = error.to_string();
    let instance = error.instance();
    let quoted = instance.to_string();
    let shown = match instance.as_ref() {
        serde_json::Value::String(s) if s.chars().count() > MAX_QUOTED_CHARS => {
            format!("\"{}\"", excerpt(s))
        }
        serde_json::Value::Array(_) | serde_json::Value::Object(_)
            if quoted.chars().count() > MAX_QUOTED_CHARS =>
        {
            excerpt(&quoted)
        }
        _ => return message,
    };
    let message = message.replace(&quoted, &shown);
    // A message that quotes the value some other way is cut as a whole.
    if message.len() > 16 * MAX_QUOTED_CHARS {
        excerpt(&message)
    } else {
        message
    }
}

fn segments_of(location: &jsonschema::paths::Location) -> FieldPath {
    use jsonschema::paths::LocationSegment;
    let segments: Vec<Segment> = location
        .iter()
        .map(|s| match s {
            LocationSegment::Property(p) => Segment::Key(p.to_string()),
            LocationSegment::Index(i) => Segment::Index(i),
        })
        .collect();
    FieldPath::from(segments.as_slice())
}

/// For `anyOf: [T, null]`, the first error of the `T` branch.
fn optional_branch_errors<'e>(
    context: &'e [Vec<jsonschema::ValidationError<'static>>],
) -> Option<&'e jsonschema::ValidationError<'static>> {
    use jsonschema::error::{TypeKind, ValidationErrorKind as Kind};
    let is_null_branch = |errors: &Vec<jsonschema::ValidationError<'static>>| {
        errors.iter().any(|e| {
            matches!(e.kind(), Kind::Type { kind: TypeKind::Single(t) } if format!("{t:?}").eq_ignore_ascii_case("null"))
        })
    };
    if context.len() != 2 || !context.iter().any(is_null_branch) {
        return None;
    }
    context
        .iter()
        .find(|errors| !is_null_branch(errors))?
        .first()
}

/// For an `anyOf` whose branches take different types (`{...}` or `[...]`),
/// the first error of the one branch whose type the value at `at` has.
fn same_type_branch_errors<'e>(
    at: &jsonschema::paths::Location,
    context: &'e [Vec<jsonschema::ValidationError<'static>>],
) -> Option<&'e jsonschema::ValidationError<'static>> {
    use jsonschema::error::ValidationErrorKind as Kind;
    let wrong_type = |errors: &Vec<jsonschema::ValidationError<'static>>| {
        errors
            .iter()
            .any(|e| matches!(e.kind(), Kind::Type { .. }) && e.instance_path() == at)
    };
    let mut same_type = context.iter().filter(|errors| !wrong_type(errors));
    match (same_type.next(), same_type.next()) {
        (Some(errors), None) => errors.first(),
        _ => None,
    }
}

impl Diagnostic {
    fn with_field(mut self, field: FieldPath) -> Self {
        self.field = field.to_string();
        self
    }
}

/// A semantic problem, located by field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: FieldPath,
    pub message: String,
}

fn route_path(index: usize) -> FieldPath {
    FieldPath::root().key("routes").index(index)
}

/// A route's place, `routes[<index>]`, for the checks of its fields: the
/// path to a field is written only when a problem there is reported.
struct RouteAt(usize);

impl RouteAt {
    fn key(&self, key: &str) -> FieldPath {
        route_path(self.0).key(key)
    }
}

/// The checks the schema cannot express, on typed data.
pub fn semantic_errors(file: &RoutesFile) -> Vec<Problem> {
    semantic_errors_of(file, |_| true)
}

/// [`semantic_errors`], checking on its own only each route `recheck`
/// names (the others passed, in the same file, before); the checks between
/// routes cover them all.
fn semantic_errors_of(file: &RoutesFile, recheck: impl Fn(usize) -> bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut report = |path: FieldPath, message: String| problems.push(Problem { path, message });

    check_listener_ports(file, &mut report);
    for (index, route) in file.routes.iter().enumerate() {
        if recheck(index) {
            check_route(file, index, route, &mut report);
        }
    }
    check_unique_ids(&file.routes, &mut report);
    check_unique_claims(&file.routes, &mut report);
    route_rules::check_table(&file.routes, &mut report);
    tls::check_sni_ports(&file.routes, &mut report);
    tls::check_https_backend_names(&file.routes, &mut report);
    for (name, list) in &file.userlists {
        let mut seen = HashMap::new();
        for (i, user) in list.listed().iter().enumerate() {
            if let Some(first) = seen.insert(&user.name, i) {
                report(
                    FieldPath::root()
                        .key("userlists")
                        .key(name.as_str())
                        .index(i)
                        .key("name"),
                    format!(
                        "user `{}` is already listed at index {first}",
                        excerpt(user.name.as_str())
                    ),
                );
            }
        }
    }
    problems
}

/// A regular expression HAProxy would refuse (its PCRE is close to
/// fancy-regex's syntax), or one it would read as a flag.
fn regex_problem(pattern: &str) -> Option<String> {
    if pattern.starts_with('-') {
        return Some(format!(
            "`{}` would be read as a flag; escape the `-`",
            excerpt(pattern)
        ));
    }
    fancy_regex::Expr::parse_tree(pattern).err().map(|e| {
        format!(
            "`{}` is not a valid regular expression: {}",
            excerpt(pattern),
            excerpt(&e.to_string())
        )
    })
}

/// A backslash in a word HAProxy should read literally (a path, a URI).
/// HAProxy decodes `\\`, `\xHH`, `\n`, `\t`, `\r`, `\ `, `\#` and quotes
/// in every config word, so `/app\x00zz` would match as `/app`: refused, not
/// escaped, because no request path holds a raw backslash anyway.
pub fn literal_word_problem(value: &str) -> Option<String> {
    value.contains('\\').then(|| {
        format!(
            "`{}`: `\\` is not allowed: HAProxy would read it as an escape (`\\x00` is a NUL byte that ends the word), so the value would not mean what it says; percent-encode it (`%5C`)",
            excerpt(value)
        )
    })
}

/// `host:port` with a port HAProxy accepts.
fn address_problem(address: &str) -> Option<String> {
    let port = address.rsplit_once(':').map_or("", |(_, port)| port);
    grammar::port(port)
        .is_none()
        .then(|| format!("`{}`: the port must be 1 to 65535", excerpt(address)))
}

/// A timer longer than HAProxy's longest. One the schema refused already
/// (not in HAProxy's syntax) is not reported again.
fn duration_problem(duration: &Duration) -> Option<String> {
    let too_long = duration.to_std().is_some_and(|d| d > duration::HAPROXY_MAX);
    too_long.then(|| {
        format!(
            "`{}` is longer than HAProxy's longest timer (24 days)",
            excerpt(&duration.0)
        )
    })
}

fn check_listener_ports(file: &RoutesFile, report: &mut impl FnMut(FieldPath, String)) {
    let defaults = FieldPath::root().key("defaults");
    let d = &file.defaults;
    if d.bind_address != "*" && d.bind_address.parse::<std::net::Ipv4Addr>().is_err() {
        report(
            defaults.key("bind_address"),
            format!("`{}` is not an IPv4 address", excerpt(&d.bind_address)),
        );
    }
    for (i, resolver) in d.resolvers.iter().enumerate() {
        if let Some(problem) = address_problem(&resolver.0) {
            report(defaults.key("resolvers").index(i), problem);
        }
    }
    let t = &d.timeouts;
    for (name, value) in [
        ("connect", &t.connect),
        ("client", &t.client),
        ("server", &t.server),
        ("http_request", &t.http_request),
        ("tunnel", &t.tunnel),
    ] {
        if let Some(problem) = duration_problem(value) {
            report(defaults.key("timeouts").key(name), problem);
        }
    }
    let mut ports: BTreeMap<u16, FieldPath> = BTreeMap::new();
    let mut claim = |port: u16, path: FieldPath, report: &mut dyn FnMut(FieldPath, String)| {
        if let Some(first) = ports.get(&port) {
            report(path, format!("port {port} is already used by {first}"));
        } else {
            ports.insert(port, path);
        }
    };
    claim(file.defaults.http_port, defaults.key("http_port"), report);
    if let Some(https) = &file.defaults.https {
        claim(https.port, defaults.key("https").key("port"), report);
    }
    if let Some(stats) = &file.defaults.stats {
        claim(stats.port, defaults.key("stats").key("port"), report);
        if !stats.uri.0.starts_with('/') {
            report(
                defaults.key("stats").key("uri"),
                "must start with `/`".into(),
            );
        }
        if let Some(problem) = literal_word_problem(&stats.uri.0) {
            report(defaults.key("stats").key("uri"), problem);
        }
    }
    // The sni routes of one port share its frontend: they claim it once.
    let mut sni_ports = BTreeSet::new();
    for (index, route) in file.routes.iter().enumerate() {
        match (route.mode, route.listen_port) {
            (Mode::Tcp, Some(port)) => claim(port, route_path(index).key("listen_port"), report),
            (Mode::Sni, Some(port)) if sni_ports.insert(port) => {
                claim(port, route_path(index).key("listen_port"), report)
            }
            _ => {}
        }
    }
}

fn check_route(
    file: &RoutesFile,
    index: usize,
    route: &Route,
    report: &mut impl FnMut(FieldPath, String),
) {
    let at = RouteAt(index);
    check_mode(route, &at, report);
    route_rules::check_route(index, route, report);
    tls::check_route_tls(route, &at, report);
    for (i, path) in route.paths.iter().enumerate() {
        if route.path_match == PathMatch::Regex {
            if let Some(problem) = regex_problem(&path.0) {
                report(at.key("paths").index(i), problem);
            }
        } else if !path.0.starts_with('/') {
            report(
                at.key("paths").index(i),
                format!("`{}` must start with `/`", excerpt(&path.0)),
            );
        } else if let Some(problem) = literal_word_problem(&path.0) {
            report(at.key("paths").index(i), problem);
        }
    }
    for (i, rewrite) in route.rewrite_path.iter().enumerate() {
        if let Some(problem) = regex_problem(&rewrite.regex) {
            // One rewrite is usually written as an object, not a list.
            let field = match route.rewrite_path.len() {
                1 => at.key("rewrite_path"),
                _ => at.key("rewrite_path").index(i),
            };
            report(field.key("regex"), problem);
        }
    }
    for (i, server) in route.servers.iter().enumerate() {
        if let Some(problem) = address_problem(&server.0) {
            report(at.key("servers").index(i), problem);
        }
    }
    let t = &route.timeouts;
    for (name, value) in [
        ("connect", &t.connect),
        ("server", &t.server),
        ("tunnel", &t.tunnel),
        ("client", &t.client),
    ] {
        if let Some(problem) = value.as_ref().and_then(duration_problem) {
            report(at.key("timeouts").key(name), problem);
        }
    }
    if route.redirect_code.is_some() && !route.https_only {
        report(
            at.key("redirect_code"),
            "only used with `https_only: true`".into(),
        );
    }
    if let Some(auth) = &route.auth
        && !file.userlists.contains_key(&auth.userlist)
    {
        report(
            at.key("auth").key("userlist"),
            format!(
                "no userlist `{}` in `userlists`",
                excerpt(auth.userlist.as_str())
            ),
        );
    }
    check_match_conditions(route, &at, report);
    if let Some(path) = route.health_check.as_ref().and_then(|h| h.path.as_ref()) {
        if !path.0.starts_with('/') {
            report(
                at.key("health_check").key("path"),
                "must start with `/`".into(),
            );
        }
        if let Some(problem) = literal_word_problem(&path.0) {
            report(at.key("health_check").key("path"), problem);
        }
    }
}

/// Header and user-agent conditions HAProxy would never match, or match
/// other than written; repeated names, agents and compression settings.
fn check_match_conditions(route: &Route, at: &RouteAt, report: &mut impl FnMut(FieldPath, String)) {
    if !route.domain_match.is_exact() && route.domains.is_empty() {
        report(at.key("domain_match"), "only used with `domains`".into());
    }
    let mut names = HashMap::new();
    for (name, value) in &route.match_headers {
        let field = at.key("match_headers").key(name.0.as_str());
        if let Some(first) = names.insert(name.0.to_ascii_lowercase(), &name.0) {
            report(
                field.clone(),
                format!(
                    "`{}` is `{}` already: header names ignore case",
                    excerpt(&name.0),
                    excerpt(first)
                ),
            );
        }
        // HAProxy splits header values at commas and trims the parts.
        let problem = if value.0.is_empty() {
            Some("must not be empty")
        } else if value.0.contains(',') {
            Some(
                "a value with `,` never matches: HAProxy compares each comma-separated value of the header",
            )
        } else if value.0.starts_with(' ') || value.0.ends_with(' ') {
            Some(
                "starts or ends with a space: HAProxy trims header values, so it would never match",
            )
        } else {
            None
        };
        if let Some(problem) = problem {
            report(field, problem.into());
        }
    }
    let mut agents = HashMap::new();
    for (i, agent) in route.user_agents.iter().enumerate() {
        let field = at.key("user_agents").index(i);
        if agent.0.is_empty() {
            report(
                field.clone(),
                "must not be empty: it would match every request".into(),
            );
        }
        if let Some(first) = agents.insert(agent.0.to_ascii_lowercase(), i) {
            report(
                field,
                format!("is user_agents[{first}] already: agents match ignoring case"),
            );
        }
    }
    if let Some(compression) = &route.compression {
        let at = at.key("compression");
        for (i, algorithm) in compression.algorithms.iter().enumerate() {
            if compression.algorithms[..i].contains(algorithm) {
                report(
                    at.key("algorithms").index(i),
                    format!("`{}` is listed twice", algorithm.haproxy_name()),
                );
            }
        }
        for (i, mime) in compression.types.iter().enumerate() {
            let seen = compression.types[..i]
                .iter()
                .any(|t| t.0.eq_ignore_ascii_case(&mime.0));
            if seen {
                report(
                    at.key("types").index(i),
                    format!("`{}` is listed twice", excerpt(&mime.0)),
                );
            }
        }
    }
}

/// The http-only fields a route sets.
fn http_only_fields(route: &Route) -> Vec<&'static str> {
    [
        ("paths", !route.paths.is_empty()),
        // sni routes are routed by them (see `tls::check_route_tls`).
        (
            "domains",
            route.mode == Mode::Tcp && !route.domains.is_empty(),
        ),
        ("https_only", route.https_only),
        ("redirect_code", route.redirect_code.is_some()),
        ("auth", route.auth.is_some()),
        ("request_headers", !route.request_headers.is_empty()),
        ("response_headers", !route.response_headers.is_empty()),
        ("rewrite_path", !route.rewrite_path.is_empty()),
        (
            "connection_mode",
            route.connection_mode != ConnectionMode::KeepAlive,
        ),
        ("priority", route.priority != 0),
        ("exclude_paths", !route.exclude_paths.is_empty()),
        ("redirect_from", !route.redirect_from.is_empty()),
        ("default_backend", route.default_backend),
        (
            "https_redirect_when",
            route.https_redirect_when != HttpsRedirectWhen::NotTls,
        ),
        ("deny_http", route.deny_http),
        ("allowed_methods", !route.allowed_methods.is_empty()),
        ("denied_methods", !route.denied_methods.is_empty()),
        ("domain_match", !route.domain_match.is_exact()),
        ("match_headers", !route.match_headers.is_empty()),
        ("user_agents", !route.user_agents.is_empty()),
        ("compression", route.compression.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect()
}

/// What a route's mode requires and rules out.
fn check_mode(route: &Route, at: &RouteAt, report: &mut impl FnMut(FieldPath, String)) {
    match route.mode {
        Mode::Tcp | Mode::Sni => {
            let a_route = if route.mode == Mode::Sni {
                "an sni route"
            } else {
                "a tcp route"
            };
            if route.listen_port.is_none() {
                report(
                    at.key("listen_port"),
                    format!("{a_route} needs `listen_port`"),
                );
            }
            for field in http_only_fields(route) {
                report(
                    at.key(field),
                    format!("`{field}` applies to http routes only"),
                );
            }
            if route
                .health_check
                .as_ref()
                .is_some_and(|h| h.path.is_some())
            {
                report(
                    at.key("health_check").key("path"),
                    format!("{a_route} is checked by connecting; `path` applies to http routes"),
                );
            }
        }
        Mode::Http => {
            if route.listen_port.is_some() {
                report(
                    at.key("listen_port"),
                    "`listen_port` applies to tcp routes and sni routes; http routes share the http frontend"
                        .into(),
                );
            }
            if route.paths.is_empty() && route.domains.is_empty() && !route.default_backend {
                report(
                    at.key("paths"),
                    "an http route needs `paths` or `domains` to know which requests it serves (or `default_backend: true` alone: the requests no route matches)"
                        .into(),
                );
            }
            if route.timeouts.client.is_some() {
                report(
                    at.key("timeouts").key("client"),
                    "applies to tcp routes and sni routes; http routes use `defaults.timeouts.client`"
                        .into(),
                );
            }
        }
    }
}

/// Route ids and the HAProxy names built from them must be unique, or two
/// routes would silently share (or fight over) one backend.
fn check_unique_ids(routes: &[Route], report: &mut impl FnMut(FieldPath, String)) {
    // Sized for every route up front: growing a map rehashes all it holds.
    let mut ids = HashMap::with_capacity(routes.len());
    let mut backends = HashMap::with_capacity(routes.len());
    let mut acls = HashMap::with_capacity(routes.len());
    for (index, route) in routes.iter().enumerate() {
        // The id is `<key>:<port>`: compared as its parts, without writing it.
        if let Err((_, first)) = take(&mut ids, (route.key(), route.port), index) {
            report(
                route_path(index),
                format!(
                    "route `{}` is already defined at routes[{first}]; give one of them a distinct `name`",
                    route.id()
                ),
            );
            continue;
        }
        if let Err((backend, first)) = take(&mut backends, names::backend(route), index) {
            report(
                route_path(index),
                format!(
                    "renders to the backend name `{backend}` that routes[{first}] uses too; give one of them a distinct `name`"
                ),
            );
            continue;
        }
        // `url_<name><port>`: `a1` on 80 and `a` on 180 would share ACLs,
        // which HAProxy silently ORs.
        if let Err((acl, first)) = take(&mut acls, names::path_acl(route, None), index) {
            report(
                route_path(index),
                format!(
                    "renders to the ACL name `{acl}` that routes[{first}] uses too; give one of them a distinct `name`"
                ),
            );
        }
    }
}

/// Records that route `index` takes `name`; when another took it first,
/// the name and that route instead.
fn take<K: Clone + Eq + std::hash::Hash>(
    taken: &mut HashMap<K, usize>,
    name: K,
    index: usize,
) -> Result<(), (K, usize)> {
    use std::collections::hash_map::Entry;
    match taken.entry(name) {
        Entry::Occupied(first) => Err((first.key().clone(), *first.get())),
        Entry::Vacant(slot) => {
            slot.insert(index);
            Ok(())
        }
    }
}

/// What narrows a route beyond its domains and paths: two routes that differ
/// here serve different requests on the same domain and path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Narrowing {
    /// Header names (lowercased) and values.
    headers: Vec<(String, String)>,
    /// User agents, lowercased and sorted.
    user_agents: Vec<String>,
}

impl Narrowing {
    fn is_none(&self) -> bool {
        self.headers.is_empty() && self.user_agents.is_empty()
    }
}

fn narrowing(route: &Route) -> Narrowing {
    let mut user_agents: Vec<String> = route
        .user_agents
        .iter()
        .map(|a| a.0.to_ascii_lowercase())
        .collect();
    user_agents.sort();
    user_agents.dedup();
    let mut headers: Vec<(String, String)> = route
        .match_headers
        .iter()
        .map(|(n, v)| (n.0.to_ascii_lowercase(), v.0.clone()))
        .collect();
    headers.sort();
    Narrowing {
        headers,
        user_agents,
    }
}

/// A domain as claimed: lowercased, with how it matches (a wildcard always
/// matches subdomains, whatever `domain_match` says).
type DomainClaim = (String, DomainMatch);

/// Two http routes may not claim the same domain and path with the same
/// header and user-agent conditions.
fn check_unique_claims(routes: &[Route], report: &mut impl FnMut(FieldPath, String)) {
    // Each route's conditions and domains first, so that the claims borrow
    // them instead of copying them once per path.
    let http: Vec<(usize, &Route, Narrowing, Vec<Option<DomainClaim>>)> = routes
        .iter()
        .enumerate()
        .filter(|(_, route)| route.mode == Mode::Http)
        .map(|(index, route)| {
            let domains = if route.domains.is_empty() {
                vec![None]
            } else {
                route
                    .domains
                    .iter()
                    .map(|d| {
                        let how = match d.wildcard_suffix() {
                            Some(_) => DomainMatch::Exact,
                            None => route.domain_match,
                        };
                        Some((d.0.to_ascii_lowercase(), how))
                    })
                    .collect()
            };
            (index, route, narrowing(route), domains)
        })
        .collect();
    type Claim<'a> = (&'a Option<DomainClaim>, PathMatch, &'a str, &'a Narrowing);
    // Sized for a claim per route up front: growing a map rehashes all it holds.
    let mut claims: HashMap<Claim<'_>, usize> = HashMap::with_capacity(http.len());
    for (index, route, narrowing, domains) in &http {
        let index = *index;
        // A domain without paths claims the whole domain, like the prefix `/`.
        let paths: Vec<(usize, PathMatch, &str)> = if route.paths.is_empty() {
            vec![(0, PathMatch::Prefix, "/")]
        } else {
            route
                .paths
                .iter()
                .enumerate()
                .map(|(i, p)| (i, route.path_match, p.0.as_str()))
                .collect()
        };
        for domain in domains {
            for &(i, path_match, path) in &paths {
                match claims.get(&(domain, path_match, path, narrowing)) {
                    Some(&first) if first != index => {
                        let on = domain
                            .as_ref()
                            .map(|(d, _)| format!(" on {}", excerpt(d)))
                            .unwrap_or_default();
                        let field = if route.paths.is_empty() {
                            route_path(index).key("domains")
                        } else {
                            route_path(index).key("paths").index(i)
                        };
                        let same = if narrowing.is_none() {
                            ""
                        } else {
                            " with the same `match_headers` and `user_agents`"
                        };
                        report(
                            field,
                            format!(
                                "`{}`{on} is already routed by routes[{first}] ({}){same}",
                                excerpt(path),
                                routes[first].id()
                            ),
                        );
                    }
                    Some(_) => {}
                    None => {
                        claims.insert((domain, path_match, path, narrowing), index);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The diagnostics of loading `text`, as text; none when it loads.
    pub(super) fn errors(text: &str) -> Vec<String> {
        match load("routes.yaml", text) {
            Ok(_) => vec![],
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_minimal_file_is_valid() {
        let routes = load(
            "routes.yaml",
            "version: 1\nroutes:\n  - service: go-demo\n    port: 8080\n    paths: [/demo]\n",
        )
        .unwrap();
        assert_eq!(routes.routes[0].id().0, "go-demo:8080");
    }

    #[test]
    fn schema_errors_name_file_line_and_field() {
        let text = "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n  - service: b\n    port: 70000\n    paths: [/b]\n";
        assert_eq!(
            errors(text),
            ["routes.yaml:7:11: routes[1].port: 70000 is greater than the maximum of 65535"]
        );
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let text =
            "version: 1\nroutes:\n  - service: a\n    port: 0\n    pth: [/a]\n  - port: 80\n";
        let errors = errors(text);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with("routes.yaml:4:11: routes[0].port:"),
            "{errors:#?}"
        );
        assert_eq!(
            errors[1],
            "routes.yaml:5:5: routes[0].pth: unknown field `pth`"
        );
        assert_eq!(
            errors[2],
            "routes.yaml:6:5: routes[1].service: missing required field `service`"
        );
    }

    #[test]
    fn semantic_errors_follow_a_clean_schema() {
        let text = "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n  - service: b\n    port: 80\n    paths: [a, /a]\n";
        assert_eq!(
            errors(text),
            [
                "routes.yaml:8:13: routes[1].paths[0]: `a` must start with `/`",
                "routes.yaml:8:16: routes[1].paths[1]: `/a` is already routed by routes[0] (a:80)",
            ]
        );
    }

    #[test]
    fn routes_on_one_path_may_differ_by_headers_or_user_agents() {
        let route = |name: &str, extra: &str| {
            format!("  - service: {name}\n    port: 80\n    paths: [/a]\n{extra}")
        };
        let file = |routes: &[String]| format!("version: 1\nroutes:\n{}", routes.concat());
        let v2 = route("v2", "    match_headers: {X-Version: '2'}\n");
        let v3 = route("v3", "    match_headers: {X-Version: '3'}\n");
        let mobile = route("mobile", "    user_agents: [iPhone]\n");
        let all = route("all", "");
        assert_eq!(
            errors(&file(&[v2.clone(), v3, mobile, all])),
            [] as [String; 0]
        );
        let again = route("again", "    match_headers: {x-version: '2'}\n");
        assert_eq!(
            errors(&file(&[v2, again])),
            [
                "routes.yaml:9:13: routes[1].paths[0]: `/a` is already routed by routes[0] (v2:80) with the same `match_headers` and `user_agents`"
            ]
        );
        let agents = route("b", "    user_agents: [IPHONE]\n");
        let mobile = route("mobile", "    user_agents: [iPhone]\n");
        assert_eq!(errors(&file(&[mobile, agents])).len(), 1);
        // How a domain matches makes another claim; a wildcard matches one way.
        let exact = "  - service: a\n    port: 80\n    domains: [a.com, '*.b.com']\n".to_string();
        let labels =
            "  - service: b\n    port: 80\n    domains: [a.com]\n    domain_match: labels\n"
                .to_string();
        let wildcard =
            "  - service: c\n    port: 80\n    domains: ['*.b.com']\n    domain_match: labels\n"
                .to_string();
        assert_eq!(errors(&file(&[exact.clone(), labels])), [] as [String; 0]);
        assert_eq!(errors(&file(&[exact, wildcard])).len(), 1);
    }

    #[test]
    fn match_conditions_that_would_never_match_are_refused() {
        let text = "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n    domain_match: suffix\n    match_headers: {X-A: '', X-B: '1,2', X-C: ' 1', x-a: '1'}\n    user_agents: ['', bot, BOT]\n    compression: {algorithms: [gzip, gzip], types: [text/html, TEXT/html]}\n  - service: t\n    port: 5432\n    mode: tcp\n    listen_port: 15432\n    user_agents: [bot]\n    compression: {algorithms: [gzip]}\n";
        let fields: Vec<String> = errors(text)
            .iter()
            .map(|e| e.split(": ").nth(1).unwrap().to_string())
            .collect();
        assert_eq!(
            fields,
            [
                "routes[0].domain_match",
                "routes[0].match_headers.X-A",
                "routes[0].match_headers.X-B",
                "routes[0].match_headers.X-C",
                "routes[0].match_headers.x-a",
                "routes[0].user_agents[0]",
                "routes[0].user_agents[2]",
                "routes[0].compression.algorithms[1]",
                "routes[0].compression.types[1]",
                "routes[1].user_agents",
                "routes[1].compression",
            ],
            "{:#?}",
            errors(text)
        );
        let empty = "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n    compression: {algorithms: []}\n";
        assert_eq!(errors(empty).len(), 1, "{:?}", errors(empty));
        let compression = |c: &str| {
            errors(&format!(
                "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n    compression: {c}\n"
            ))
        };
        let unknown = compression("{algorithms: [br]}");
        assert!(
            unknown.len() == 1
                && unknown[0].starts_with(
                    "routes.yaml:6:32: routes[0].compression.algorithms[0]: \"br\" is not one of \"gzip\""
                ),
            "{unknown:?}"
        );
        let bad_type = compression("{algorithms: [gzip], types: ['text/html; charset=utf-8']}");
        assert_eq!(bad_type.len(), 1, "{bad_type:?}");
        assert!(
            bad_type[0].contains("routes[0].compression.types[0]"),
            "{bad_type:?}"
        );
    }

    #[test]
    fn committed_schema_matches_the_types() {
        let committed = include_str!("../../schema/routes.schema.json");
        assert!(
            committed == schema_text(),
            "schema/routes.schema.json is stale: run `capstan schema > schema/routes.schema.json`"
        );
    }
}
