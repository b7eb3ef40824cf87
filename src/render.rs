//! Desired routes to haproxy.cfg: a pure function.
//!
//! The output is deterministic: routes, paths and domains are sorted, so the
//! same table in any order renders byte-identically. HTTP routing precedence
//! is computed, never taken from file order (see `precedence`).

pub mod answer;
mod conditions;
pub mod maps;
mod route_rules;
mod tls;

use std::fmt;
use std::path::Path;

use crate::desired::FileUsers;
use crate::desired::servers::{self, TaskServer, TaskServers};
use crate::desired::{DesiredState, Spares};
pub use maps::MapFile;

use crate::model::{
    Address, Compression, Defaults, DomainMatch, Https, Mode, PathMatch, Route, RoutesFile,
    Userlist, names,
};

/// A rendered config: sections in file order, and the map files the http
/// frontend routes through (their contents change at run time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyConfig {
    pub sections: Vec<Section>,
    pub maps: Vec<MapFile>,
}

/// One section (`global`, `defaults`, `frontend x`, `backend y`, ...).
/// Servers are kept apart from the other lines because they are the part of
/// a backend that HAProxy can change at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The header line: `backend go-demo-be8080`.
    pub header: String,
    pub lines: Vec<String>,
    pub servers: Vec<Server>,
}

impl Section {
    fn new(header: impl Into<String>) -> Self {
        Self {
            header: header.into(),
            lines: Vec::new(),
            servers: Vec::new(),
        }
    }

    pub fn line(&mut self, line: impl Into<String>) -> &mut Self {
        self.lines.push(line.into());
        self
    }
}

/// A `server` line: `server <name> <address> <options>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// The words after the address: `check`, `inter`, `5s`.
    pub options: Vec<String>,
    /// Desired at run time: drain (a task Swarm is stopping). The file says
    /// `disabled`, so that a reload does not send it new connections.
    pub drain: bool,
}

impl fmt::Display for HaproxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_config(
            f,
            self.sections.iter().map(|section| {
                let servers = section
                    .servers
                    .iter()
                    .map(|s| (s.name.as_str(), s.address.as_str(), &s.options));
                (section.header.as_str(), &section.lines, servers)
            }),
        )
    }
}

/// Writes a config in haproxy.cfg's layout from each section's header,
/// lines and servers (name, address, options): what `Display` writes, and
/// what `plan` hashes for its marker without building that config first.
pub(crate) fn write_config<'a, L, S, O>(
    out: &mut (impl fmt::Write + ?Sized),
    sections: impl IntoIterator<Item = (&'a str, L, S)>,
) -> fmt::Result
where
    L: IntoIterator<Item = &'a String>,
    S: IntoIterator<Item = (&'a str, &'a str, O)>,
    O: IntoIterator<Item = &'a String>,
{
    out.write_str("# Rendered by capstan. Do not edit: changes are overwritten.\n")?;
    // Piece by piece: `write!` with arguments costs more than the copy.
    for (header, lines, servers) in sections {
        out.write_str("\n")?;
        out.write_str(header)?;
        out.write_str("\n")?;
        for line in lines {
            out.write_str("    ")?;
            out.write_str(line)?;
            out.write_str("\n")?;
        }
        for (name, address, options) in servers {
            out.write_str("    server ")?;
            out.write_str(name)?;
            out.write_str(" ")?;
            out.write_str(address)?;
            for option in options {
                out.write_str(" ")?;
                out.write_str(option)?;
            }
            out.write_str("\n")?;
        }
    }
    Ok(())
}

impl HaproxyConfig {
    /// Reads back a config in the layout `Display` writes (header lines at
    /// column 0, indented body lines, `server` lines last). Comments and blank
    /// lines are dropped. Used to compare against the config HAProxy runs.
    pub fn parse(text: &str) -> Self {
        let mut sections: Vec<Section> = Vec::new();
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if !raw.starts_with(char::is_whitespace) {
                sections.push(Section::new(line));
                continue;
            }
            let Some(section) = sections.last_mut() else {
                continue;
            };
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("server"), Some(name), Some(address)) => section.servers.push(Server {
                    name: name.to_string(),
                    address: address.to_string(),
                    options: words.map(str::to_string).collect(),
                    drain: false,
                }),
                _ => section.lines.push(line.to_string()),
            }
        }
        Self {
            sections,
            maps: Vec::new(),
        }
    }

    /// The config followed by the entries of each map file that has some, as comments: the
    /// whole routing table in one readable text (`capstan render`).
    pub fn with_maps_listed(&self) -> String {
        self.to_string() + &maps::listing(&self.maps)
    }

    /// `spares.count` spare backends after the others: a new service with
    /// default settings takes one at run time (see `plan`), and gets its own
    /// name at the next reload. Their server slots are those of Swarm tasks,
    /// or of fixed `servers:` addresses.
    fn with_spare_backends(mut self, file: &RoutesFile, spares: Spares) -> Self {
        let no_tasks = Vec::new();
        for k in 1..=spares.count {
            let name = names::spare_backend(k);
            let mut route = Route::new(&name, 1);
            let tasks = if spares.for_tasks {
                Some(&no_tasks)
            } else {
                route.servers = vec![Address(SPARE_SLOT.to_string()); servers::slots(0)];
                None
            };
            let mut section = backend(file, &route, tasks);
            section.header = format!("backend {name}");
            for slot in &mut section.servers {
                if !slot.options.iter().any(|o| o == "disabled") {
                    slot.options.push("disabled".to_string());
                }
            }
            self.sections.push(section);
        }
        self
    }

    /// The section with this header (`backend go-demo-be8080`).
    pub fn section(&self, header: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.header == header)
    }

    /// The `global` section, created when missing.
    pub fn global_mut(&mut self) -> &mut Section {
        if let Some(i) = self.sections.iter().position(|s| s.header == "global") {
            return &mut self.sections[i];
        }
        self.sections.insert(0, Section::new("global"));
        &mut self.sections[0]
    }
}

#[cfg(test)]
impl HaproxyConfig {
    /// The http frontend's routing in the order HAProxy tries it, for tests:
    /// a rule's backend (`api-be80`), a lookup as its fetch, converter and
    /// map file name with the map's entries (`path,map_beg(prefix.map): /a
    /// a-be80, /b b-be80`), then `default_backend x-be80`. Lookups in empty
    /// maps are left out: they route nothing.
    pub(crate) fn routing(&self) -> Vec<String> {
        let frontend = self
            .section(&format!("frontend {}", names::HTTP_FRONTEND))
            .expect("an http frontend");
        let mut steps = Vec::new();
        for line in &frontend.lines {
            if let Some(backend) = line.strip_prefix("default_backend ") {
                steps.push(format!("default_backend {backend}"));
                continue;
            }
            let Some(target) = line.strip_prefix("use_backend ") else {
                continue;
            };
            let Some(lookup) = target
                .strip_prefix("%[")
                .and_then(|t| t.split_once(']'))
                .map(|(lookup, _)| lookup)
            else {
                steps.push(target.split(' ').next().unwrap_or_default().to_string());
                continue;
            };
            let (fetch_converter, file) = lookup
                .strip_suffix(')')
                .and_then(|l| l.rsplit_once('('))
                .expect("a lookup names its map: fetch,converter(file)");
            let map = self
                .maps
                .iter()
                .find(|m| m.path == file)
                .unwrap_or_else(|| panic!("{file} is looked up but not rendered"));
            if map.entries.is_empty() {
                continue;
            }
            let entries: Vec<String> = map
                .entries
                .iter()
                .map(|(key, backend)| format!("{key} {backend}"))
                .collect();
            steps.push(format!(
                "{fetch_converter}({}): {}",
                map.name(),
                entries.join(", ")
            ));
        }
        steps
    }
}

impl Section {
    /// The backend name when this is a backend section.
    pub fn backend_name(&self) -> Option<&str> {
        self.header.strip_prefix("backend ")
    }
}

/// Renders a validated routes file, each route's servers at its service's
/// name (or its fixed `servers`).
/// A userlist read from a file renders empty here (nobody authenticates):
/// its users are read when capstan reconciles (see [`render_desired`]).
pub fn render(file: &RoutesFile) -> HaproxyConfig {
    render_with(
        file,
        &TaskServers::new(),
        &FileUsers::new(),
        None,
        Path::new(crate::desired::DEFAULT_MAPS_DIR),
    )
    .with_spare_backends(file, Spares::for_fixed_servers())
}

/// Where an unused spare server slot points (it is in maintenance).
pub const SPARE_SLOT: &str = "127.0.0.1:1";

/// Renders the desired state: Swarm's tasks serve the routes they were
/// resolved for, userlists of files hold the users read from them.
pub fn render_desired(desired: &DesiredState) -> HaproxyConfig {
    render_with(
        &desired.routes,
        &desired.servers,
        &desired.file_users,
        desired.crt_list.as_deref(),
        &desired.maps_dir,
    )
    .with_spare_backends(&desired.routes, desired.spares)
}

fn render_with(
    file: &RoutesFile,
    endpoints: &TaskServers,
    file_users: &FileUsers,
    crt_list: Option<&Path>,
    maps_dir: &Path,
) -> HaproxyConfig {
    let mut routes: Vec<&Route> = file.routes.iter().collect();
    routes.sort_by_cached_key(|r| names::backend(r));

    let mut sections = vec![global(file), defaults(file)];
    sections.extend(resolvers(file));
    for (name, list) in &file.userlists {
        let mut userlist = Section::new(format!("userlist {name}"));
        let users = match list {
            Userlist::Users(users) => users.as_slice(),
            Userlist::File(_) => file_users.get(name).map_or(&[][..], Vec::as_slice),
        };
        let mut users: Vec<_> = users.iter().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        for user in users {
            userlist.line(format!(
                "user {} password {}",
                user.name, user.password_hash
            ));
        }
        sections.push(userlist);
    }
    if let Some(stats) = &file.defaults.stats {
        let mut frontend = Section::new("frontend stats");
        frontend
            .line(format!(
                "bind {}:{}",
                file.defaults.bind_address, stats.port
            ))
            .line("mode http")
            .line("stats enable")
            .line(format!("stats uri {}", stats.uri))
            .line("stats refresh 10s")
            .line("http-request use-service prometheus-exporter if { path /metrics }");
        sections.push(frontend);
    }
    let (frontend, mut maps) = http_frontend(file, &routes, crt_list, maps_dir);
    sections.push(frontend);
    for route in routes.iter().filter(|r| r.mode == Mode::Tcp) {
        sections.push(tcp_frontend(file, route));
    }
    sections.extend(tls::sni_frontends(file, &routes));
    // Every section after it is a backend: the defaults it takes.
    sections.push(backend_defaults(file, maps_dir));
    // Each http backend whose route sets a timeout of the timeout maps.
    let mut timeouts = Vec::new();
    for route in &routes {
        // Without tasks (`capstan render`, `diff`), no id to write.
        let tasks = if endpoints.is_empty() {
            None
        } else {
            endpoints.get(&route.id())
        };
        let own = backend(file, route, tasks);
        let twin = tls::https_port_backend(file, route, tasks);
        let t = &route.timeouts;
        if route.mode == Mode::Http && (t.server.is_some() || t.tunnel.is_some()) {
            for section in std::iter::once(&own).chain(&twin) {
                let name = section.backend_name().expect("a backend section");
                timeouts.push((name.to_string(), t));
            }
        }
        sections.push(own);
        sections.extend(twin);
    }
    maps.extend(maps::timeout_maps(maps_dir, &timeouts));
    HaproxyConfig { sections, maps }
}

/// Docker's embedded DNS server, which routes that resolve at run time ask
/// when `defaults.resolvers` names none (Docker Flow Proxy's default).
const DOCKER_DNS: &str = "127.0.0.11:53";

/// The `resolvers` section, when `defaults.resolvers` or a route's
/// `resolve_at_runtime` needs one.
fn resolvers(file: &RoutesFile) -> Option<Section> {
    let nameservers: Vec<&str> = if !file.defaults.resolvers.is_empty() {
        file.defaults
            .resolvers
            .iter()
            .map(|a| a.0.as_str())
            .collect()
    } else if file.routes.iter().any(|r| r.resolve_at_runtime) {
        vec![DOCKER_DNS]
    } else {
        return None;
    };
    let mut resolvers = Section::new(format!("resolvers {}", names::RESOLVERS));
    for (i, address) in nameservers.iter().enumerate() {
        resolvers.line(format!("nameserver dns{i} {address}"));
    }
    resolvers
        .line("hold valid 10s")
        .line("accepted_payload_size 8192");
    Some(resolvers)
}

/// How long an HAProxy worker may finish its connections once told to stop
/// (an old worker after a reload, every worker at a soft stop); then
/// HAProxy closes what is left.
pub const HARD_STOP_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

fn global(file: &RoutesFile) -> Section {
    let mut global = Section::new("global");
    if let Some(maxconn) = file.defaults.maxconn {
        global.line(format!("maxconn {maxconn}"));
    }
    // Bounds how long an old worker may keep serving long connections after a reload.
    global.line(format!("hard-stop-after {}s", HARD_STOP_AFTER.as_secs()));
    global
}

/// The defaults of the backends: the others', and the rules that give
/// the requests of a backend its route's server and tunnel timeouts from
/// the timeout maps (changed at run time, unlike a backend's own lines).
fn backend_defaults(file: &RoutesFile, maps_dir: &Path) -> Section {
    let mut section = defaults(file);
    section.header = "defaults backends".to_string();
    for line in maps::timeout_lines(maps_dir) {
        section.line(line);
    }
    section
}

fn defaults(file: &RoutesFile) -> Section {
    let t = &file.defaults.timeouts;
    let mut defaults = Section::new("defaults");
    defaults
        .line("mode http")
        .line("option dontlognull")
        .line(format!("timeout connect {}", t.connect))
        .line(format!("timeout client {}", t.client))
        .line(format!("timeout server {}", t.server))
        .line(format!("timeout http-request {}", t.http_request))
        .line(format!("timeout tunnel {}", t.tunnel))
        // A connection refused by a replica that just went away is retried
        // on another one instead of failing the request.
        .line("retries 3")
        .line("option redispatch 1");
    // A service name that does not resolve must not stop HAProxy from loading
    // every other route (`none`). With resolvers, names are resolved by them,
    // asynchronously, instead of by libc one after another while the config
    // loads: with thousands of names that is minutes on a slow resolver.
    defaults.line(if file.defaults.resolvers.is_empty() {
        "default-server init-addr last,libc,none"
    } else {
        "default-server init-addr last,none"
    });
    defaults
}

/// The HTTPS bind, when there is a certificate to serve: routes.yaml's
/// `certificates` first (the default certificate), then capstan's crt-list.
/// With no `defaults.https`, uploaded certificates are served on 443.
fn https_bind(d: &Defaults, crt_list: Option<&Path>) -> Option<String> {
    let https = d.https.as_ref();
    let mut sources: Vec<String> = https
        .and_then(|h| h.certificates.as_ref())
        .map(|file| format!("crt {}", file.0))
        .into_iter()
        .collect();
    sources.extend(crt_list.map(|list| format!("crt-list {}", list.display())));
    if sources.is_empty() {
        return None;
    }
    let port = https.map_or(Https::DEFAULT_PORT, |h| h.port);
    Some(format!(
        "bind {}:{port} ssl {}",
        d.bind_address,
        sources.join(" ")
    ))
}

/// One `use_backend` rule: a route's path (or its whole domain) with the
/// route's domains, and where it sorts.
struct Rule<'a> {
    route: &'a Route,
    path: Option<&'a str>,
    path_acl: Option<String>,
    precedence: Precedence<'a>,
}

/// Sort key of an http rule; smaller wins, because HAProxy takes the first
/// `use_backend` that matches. In order:
/// 1. a higher `priority`, the route's explicit say;
/// 2. paths under `/.well-known/` (ACME HTTP-01 challenges) before all
///    others, so that they reach their service on every domain;
/// 3. rules with a path other than the prefix `/` before rules that take a
///    whole domain or `/`: a domain-only route does not shadow a path route,
///    as in Docker Flow Proxy;
/// 4. routes with domains before catch-all routes (exact-only domains before
///    wildcards and other `domain_match`es);
/// 5. exact paths, then prefixes longest first, then regexes;
/// 6. on the same path, routes with more header and user-agent conditions
///    first: a narrower route is not shadowed by its catch-all;
/// 7. ties by path and route id, so that the order never depends on the file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Precedence<'a> {
    priority: std::cmp::Reverse<i16>,
    not_well_known: bool,
    takes_everything: bool,
    domain_class: u8,
    path_class: u8,
    longer_first: std::cmp::Reverse<usize>,
    path: &'a str,
    more_conditions_first: std::cmp::Reverse<usize>,
    route_id: String,
}

/// Where ACME HTTP-01 challenges (and other RFC 8615 well-known URIs) live.
const WELL_KNOWN: &str = "/.well-known/";

/// `route_id` is the route's id, written once for all its rules.
fn precedence<'a>(route: &Route, route_id: &str, path: Option<&'a str>) -> Precedence<'a> {
    let domain_class = if route.domains.is_empty() {
        2
    } else if route.domain_match == DomainMatch::Exact
        && route.domains.iter().all(|d| d.wildcard_suffix().is_none())
    {
        0
    } else {
        1
    };
    let takes_everything = matches!(
        (path, route.path_match),
        (None, _) | (Some("/"), PathMatch::Prefix)
    );
    let path_class = match route.path_match {
        PathMatch::Exact => 0,
        PathMatch::Prefix => 1,
        PathMatch::Regex => 2,
    };
    let well_known = route.path_match != PathMatch::Regex
        && path.is_some_and(|p| p.starts_with(WELL_KNOWN) || p == WELL_KNOWN.trim_end_matches('/'));
    Precedence {
        priority: std::cmp::Reverse(route.priority),
        not_well_known: !well_known,
        takes_everything,
        domain_class,
        path_class,
        longer_first: std::cmp::Reverse(path.map_or(0, str::len)),
        path: path.unwrap_or_default(),
        more_conditions_first: std::cmp::Reverse(
            route.match_headers.len() + usize::from(!route.user_agents.is_empty()),
        ),
        route_id: route_id.to_string(),
    }
}

/// A route's `use_backend` rules: one per path, or one for its whole
/// domains. A route with neither (a `default_backend` alone) has none.
fn rules_of(route: &Route) -> Vec<Rule<'_>> {
    let route_id = route.id().0;
    let mut paths: Vec<(&str, Precedence<'_>)> = route
        .paths
        .iter()
        .map(|p| (p.0.as_str(), precedence(route, &route_id, Some(&p.0))))
        .collect();
    paths.sort_by(|a, b| a.1.cmp(&b.1));
    paths.dedup_by(|a, b| a.0 == b.0);
    let indexed = paths.len() > 1;
    let mut rules: Vec<Rule<'_>> = paths
        .into_iter()
        .enumerate()
        .map(|(i, (path, precedence))| Rule {
            route,
            path: Some(path),
            path_acl: Some(names::path_acl(route, indexed.then_some(i))),
            precedence,
        })
        .collect();
    if rules.is_empty() && !route.domains.is_empty() {
        rules.push(Rule {
            route,
            path: None,
            path_acl: None,
            precedence: precedence(route, &route_id, None),
        });
    }
    rules
}

/// The order HAProxy tries the rules in: the first that matches wins.
fn sort_by_precedence(rules: &mut [Rule<'_>]) {
    rules.sort_by(|a, b| a.precedence.cmp(&b.precedence));
}

/// Every http route's rules, in the order HAProxy tries them.
fn http_rules(file: &RoutesFile) -> Vec<Rule<'_>> {
    let mut rules: Vec<Rule<'_>> = file
        .routes
        .iter()
        .filter(|r| r.mode == Mode::Http)
        .flat_map(rules_of)
        .collect();
    sort_by_precedence(&mut rules);
    rules
}

fn http_frontend(
    file: &RoutesFile,
    routes: &[&Route],
    crt_list: Option<&Path>,
    maps_dir: &Path,
) -> (Section, Vec<MapFile>) {
    let d = &file.defaults;
    let mut frontend = Section::new(format!("frontend {}", names::HTTP_FRONTEND));
    frontend.line(format!("bind {}:{}", d.bind_address, d.http_port));
    if let Some(bind) = https_bind(d, crt_list) {
        frontend.line(bind);
    }
    frontend
        .line("mode http")
        .line("option forwardfor")
        // Tells services a request came over TLS, so that they build https
        // redirects and secure cookies. On plain HTTP a value set by a TLS
        // load balancer in front is left as it is (as Docker Flow Proxy does).
        .line("http-request set-header X-Forwarded-Proto https if { ssl_fc }")
        // Tells keep-alive clients to close idle connections before a reload, which
        // is what makes reloads lose no request (see haproxy-2.6 notes in README).
        .line("option idle-close-on-response");
    for line in maps::key_lines() {
        frontend.line(line);
    }

    let mut rules = Vec::new();
    for route in routes.iter().filter(|r| r.mode == Mode::Http) {
        // Whether a rule of this route matches by ACL (and so needs its domain ACL).
        let mut by_acl = false;
        for rule in rules_of(route) {
            // A path routed through a map needs no ACL: a change to it (or to
            // the route's domains) is then a map entry, not a config change.
            if !maps::routes_by_map(&rule) {
                by_acl = true;
                if let (Some(acl), Some(path)) = (&rule.path_acl, rule.path) {
                    let words = path_match_words(route.path_match, path);
                    frontend.line(["acl ", acl, " ", &words].concat());
                }
            }
            rules.push(rule);
        }
        if by_acl {
            conditions::domain_acls(&mut frontend, route);
        }
        conditions::condition_acls(&mut frontend, route);
        route_rules::frontend_lines(&mut frontend, route);
    }
    sort_by_precedence(&mut rules);
    let (steps, maps) = maps::route(&rules, maps_dir);
    for step in steps {
        let rule = match step {
            maps::Routing::Map(line) => {
                frontend.line(line);
                continue;
            }
            maps::Routing::Rule(rule) => rule,
        };
        let mut condition: Vec<String> = rule.path_acl.iter().cloned().collect();
        condition.extend(route_rules::exclusion(rule.route));
        if !rule.route.domains.is_empty() {
            condition.push(names::domain_acl(rule.route));
        }
        condition.extend(conditions::condition_names(rule.route));
        let condition = condition.join(" ");
        if let Some(https) = tls::https_port_rule(rule.route, &condition) {
            frontend.line(https);
        }
        let backend = names::backend(rule.route);
        frontend.line(["use_backend ", &backend, " if ", &condition].concat());
    }
    route_rules::default_backend(&mut frontend, routes);
    (frontend, maps)
}

/// `path_beg /demo`: the fetch and the word an ACL matches `path` with.
fn path_match_words(path_match: PathMatch, path: &str) -> String {
    // Literal paths hold no backslash (validated); only regexes need escaping.
    match path_match {
        PathMatch::Prefix => format!("path_beg {path}"),
        PathMatch::Exact => format!("path {path}"),
        PathMatch::Regex => format!("path_reg {}", regex_word(path)),
    }
}

/// A regular expression as a config word. HAProxy decodes `\\`, `\xHH`,
/// `\n`, `\t`, `\r`, `\ `, `\#` and quotes in every word before PCRE sees it
/// (`^/x\x2eb` would match `/xyb`, `\x00` would end the word); each
/// backslash doubled reaches PCRE as the one the user wrote, so the pattern
/// means exactly what routes.yaml says.
fn regex_word(pattern: &str) -> String {
    pattern.replace('\\', "\\\\")
}

fn tcp_frontend(file: &RoutesFile, route: &Route) -> Section {
    let listen_port = route
        .listen_port
        .expect("validated: tcp routes have a listen_port");
    let mut frontend = Section::new(format!("frontend {}", names::tcp_frontend(listen_port)));
    frontend
        .line(format!(
            "bind {}:{}",
            file.defaults.bind_address, listen_port
        ))
        .line("mode tcp");
    if let Some(client) = &route.timeouts.client {
        frontend.line(format!("timeout client {client}"));
    }
    frontend.line(format!("default_backend {}", names::backend(route)));
    frontend
}

fn backend(file: &RoutesFile, route: &Route, tasks: Option<&Vec<TaskServer>>) -> Section {
    // Lines are built with `concat`, which allocates once: there are
    // several per route.
    let mut backend = Section::new(["backend ", &names::backend(route)].concat());
    let http = route.mode == Mode::Http;
    backend.line(if http { "mode http" } else { "mode tcp" });
    let balance = route.balance.unwrap_or(file.defaults.balance);
    backend.line(["balance ", balance.haproxy_name()].concat());
    let t = &route.timeouts;
    // An http backend's server and tunnel timeouts are in the timeout maps.
    let own = [
        ("connect", &t.connect),
        ("server", if http { &None } else { &t.server }),
        ("tunnel", if http { &None } else { &t.tunnel }),
    ];
    for (name, value) in own {
        if let Some(value) = value {
            backend.line(["timeout ", name, " ", &value.0].concat());
        }
    }
    if let Some(option) = route.connection_mode.haproxy_option() {
        backend.line(option);
    }
    if route.sticky {
        if http {
            // Named after the service, as Docker Flow Proxy names it.
            backend.line(
                [
                    "cookie ",
                    route.service.as_str(),
                    " insert indirect nocache",
                ]
                .concat(),
            );
        } else {
            backend
                .line("stick-table type ip size 200k expire 30m")
                .line("stick on src");
        }
    }
    if let Some(compression) = &route.compression {
        compress(&mut backend, compression);
    }
    if let Some(path) = route.health_check.as_ref().and_then(|h| h.path.as_ref()) {
        backend
            .line("option httpchk")
            .line(["http-check send meth GET uri ", &path.0].concat());
    }
    route_rules::backend_lines(&mut backend, route);
    if let Some(auth) = &route.auth {
        let realm = auth.realm.as_ref().map_or("capstan", |r| r.as_str());
        backend.line(format!(
            "http-request auth realm {realm} unless {{ http_auth({}) }}",
            auth.userlist
        ));
        if !auth.forward_credentials {
            // The header holds the user's password; the service has no use for it.
            backend.line("http-request del-header Authorization");
        }
    }
    for rewrite in &route.rewrite_path {
        let regex = regex_word(&rewrite.regex);
        backend.line(["http-request replace-path ", &regex, " ", &rewrite.replace].concat());
    }
    for (direction, rules) in [
        ("http-request", &route.request_headers),
        ("http-response", &route.response_headers),
    ] {
        let mut deletes: Vec<_> = rules.delete.iter().collect();
        deletes.sort();
        deletes.dedup();
        for name in deletes {
            backend.line([direction, " del-header ", &name.0].concat());
        }
        for (name, value) in &rules.set {
            backend.line([direction, " set-header ", &name.0, " \"", &value.0, "\""].concat());
        }
        for (name, value) in &rules.add {
            backend.line([direction, " add-header ", &name.0, " \"", &value.0, "\""].concat());
        }
    }
    backend.servers = servers(file, route, tasks);
    backend
}

/// HAProxy compresses an answer when the client accepts one of the
/// algorithms and its type is listed (any type when none is).
fn compress(backend: &mut Section, compression: &Compression) {
    let algorithms: Vec<&str> = compression
        .algorithms
        .iter()
        .map(|a| a.haproxy_name())
        .collect();
    backend.line(format!("compression algo {}", algorithms.join(" ")));
    if !compression.types.is_empty() {
        let mut types: Vec<&str> = compression.types.iter().map(|t| t.0.as_str()).collect();
        types.sort();
        types.dedup();
        backend.line(format!("compression type {}", types.join(" ")));
    }
}

/// The options every server of `route` takes (`check`, resolvers, TLS);
/// `from_tasks`: the servers are Swarm tasks' addresses.
fn server_options(file: &RoutesFile, route: &Route, from_tasks: bool) -> Vec<String> {
    let mut options = Vec::new();
    if let Some(check) = &route.health_check {
        options.push("check".to_string());
        if let Some(interval) = &check.interval {
            options.extend(["inter".to_string(), interval.to_string()]);
        }
    } else if from_tasks {
        // HAProxy health-checks every replica itself (a TCP connect).
        options.extend(["check", "inter", "2s"].map(String::from));
    }
    if !from_tasks {
        // Task servers are addresses Swarm gave; names are for DNS.
        if route.resolve_at_runtime && !options.iter().any(|o| o == "check") {
            // Health-checked as with Docker Flow Proxy's `checkResolvers`:
            // a server that stops answering is taken out until it answers.
            options.push("check".to_string());
        }
        if !file.defaults.resolvers.is_empty() || route.resolve_at_runtime {
            options.extend(
                ["resolvers", names::RESOLVERS, "resolve-prefer", "ipv4"].map(String::from),
            );
        }
    }
    if let Some(backend_tls) = &route.backend_tls {
        options.extend(tls::server_tls_options(backend_tls));
    }
    options
}

/// `go-demo-1`: the name of a route's server in slot `i` (from 0).
fn slot_name(route: &Route, i: usize) -> String {
    use std::fmt::Write;
    let service = route.service.as_str();
    // `-` and a usize's 20 digits at most: written in one allocation.
    let mut name = String::with_capacity(service.len() + 21);
    name.push_str(service);
    write!(name, "-{}", i + 1).expect("a String takes every write");
    name
}

fn servers(file: &RoutesFile, route: &Route, tasks: Option<&Vec<TaskServer>>) -> Vec<Server> {
    let options = server_options(file, route, tasks.is_some());
    // (name, address, disabled, draining)
    let addresses: Vec<(String, String, bool, bool)> = match tasks {
        // A slot per task, and spare slots (disabled) to scale into without a
        // reload: a scale changes addresses and states at run time only.
        Some(tasks) => servers::assign_slots(tasks)
            .into_iter()
            .enumerate()
            .map(|(i, task)| {
                let name = slot_name(route, i);
                match task {
                    Some(task) => (
                        name,
                        format!("{}:{}", task.ip, route.port),
                        task.draining,
                        task.draining,
                    ),
                    None => (name, format!("127.0.0.1:{}", route.port), true, false),
                }
            })
            .collect(),
        // Swarm's VIP for the service, as Docker Flow Proxy did.
        None if route.servers.is_empty() => vec![(
            route.service.0.clone(),
            format!("{}:{}", route.service, route.port),
            false,
            false,
        )],
        None => route
            .servers
            .iter()
            .enumerate()
            .map(|(i, a)| (slot_name(route, i), a.0.clone(), false, false))
            .collect(),
    };
    addresses
        .into_iter()
        .map(|(name, address, disabled, drain)| {
            let mut options = options.clone();
            if route.sticky && route.mode == Mode::Http {
                options.extend(["cookie".to_string(), name.clone()]);
            }
            if disabled {
                options.push("disabled".to_string());
            }
            Server {
                name,
                address,
                options,
                drain,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Name;
    use crate::model::validate::load;

    fn render_text(yaml: &str) -> String {
        render(&load("routes.yaml", yaml).unwrap()).to_string()
    }

    fn routing(yaml: &str) -> Vec<String> {
        render(&load("routes.yaml", yaml).unwrap()).routing()
    }

    #[test]
    fn parse_reads_back_what_display_writes() {
        let file = load("routes.yaml", crate::EMBEDDED_ROUTES).unwrap();
        let config = render(&file);
        // The map files are not part of the text.
        let sections = HaproxyConfig {
            maps: Vec::new(),
            ..config.clone()
        };
        assert_eq!(HaproxyConfig::parse(&config.to_string()), sections);
    }

    #[test]
    fn docker_flow_proxy_example_reads_familiarly() {
        let config = render(
            &load(
                "routes.yaml",
                "version: 1\nroutes:\n  - service: go-demo\n    port: 8080\n    paths: [/demo]\n",
            )
            .unwrap(),
        );
        // `path_beg /demo`, as a prefix map's entry.
        assert_eq!(
            config.routing(),
            ["path,map_beg(prefix.map): /demo go-demo-be8080"]
        );
        let cfg = config.with_maps_listed();
        assert!(
            cfg.ends_with("\n# /etc/haproxy/maps/prefix.map:\n#   /demo go-demo-be8080\n"),
            "{cfg}"
        );
        assert!(cfg.contains("\nbackend go-demo-be8080\n"), "{cfg}");
        assert!(cfg.contains("    server go-demo go-demo:8080\n"), "{cfg}");
    }

    #[test]
    fn order_of_routes_paths_and_domains_does_not_matter() {
        let a = "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a, /a/b]\n    domains: [x.com, y.com]\n  - service: b\n    port: 81\n    paths: [/]\n";
        let b = "version: 1\nroutes:\n  - service: b\n    port: 81\n    paths: [/]\n  - service: a\n    port: 80\n    domains: [y.com, x.com]\n    paths: [/a/b, /a]\n";
        assert_eq!(render_text(a), render_text(b));
    }

    #[test]
    fn precedence_longest_prefix_domains_first_root_last() {
        let routing = routing(
            "version: 1\nroutes:\n  - service: root\n    port: 80\n    paths: [/]\n  - service: api\n    port: 80\n    paths: [/api]\n  - service: apiv2\n    port: 80\n    paths: [/api/v2]\n  - service: site\n    port: 80\n    domains: [example.com]\n    paths: [/api]\n",
        );
        // Within a map, `map_beg` takes the longest prefix: /api/v2 before /api.
        assert_eq!(
            routing,
            [
                "var(txn.host_path),map_beg(prefix-host.map): example.com/api site-be80",
                "path,map_beg(prefix.map): /api api-be80, /api/v2 apiv2-be80",
                "path,map_beg(all.map): / root-be80",
            ]
        );
    }

    #[test]
    fn well_known_first_domain_only_after_paths_priority_above_all() {
        let routing = routing(
            "version: 1\nroutes:\n  - service: whole\n    port: 80\n    domains: [whole.test]\n  - service: demo\n    port: 80\n    paths: [/demo]\n  - service: acme\n    port: 80\n    paths: [/.well-known/acme-challenge]\n  - service: root\n    port: 80\n    paths: [/]\n  - service: vip\n    port: 80\n    paths: [/]\n    domains: [vip.test]\n    priority: 5\n",
        );
        assert_eq!(
            routing,
            [
                "var(txn.host_path),map_beg(all-host-p5.map): vip.test/ vip-be80",
                "path,map_beg(well-known-prefix.map): /.well-known/acme-challenge acme-be80",
                "path,map_beg(prefix.map): /demo demo-be80",
                "whole-be80",
                "path,map_beg(all.map): / root-be80",
            ]
        );
    }

    #[test]
    fn a_route_with_conditions_comes_before_its_catch_all() {
        let routing = routing(
            "version: 1\nroutes:\n  - service: app\n    port: 80\n    paths: [/]\n  - service: mobile\n    port: 80\n    paths: [/]\n    user_agents: [iPhone]\n  - service: v3\n    port: 80\n    paths: [/]\n    user_agents: [iPhone]\n    match_headers: {X-Version: '3'}\n",
        );
        // The catch-all is looked up after both rules: in a map of its own.
        assert_eq!(
            routing,
            [
                "v3-be80",
                "mobile-be80",
                "path,map_beg(all.2.map): / app-be80"
            ]
        );
    }

    #[test]
    fn several_paths_get_indexed_acls_each_with_its_own_rule() {
        let cfg = render_text(
            "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/x, /long/er]\n    domains: ['*.a.com', b.com]\n",
        );
        assert!(cfg.contains("acl url_a80_0 path_beg /long/er\n"), "{cfg}");
        assert!(cfg.contains("acl url_a80_1 path_beg /x\n"), "{cfg}");
        assert!(
            cfg.contains("acl domain_a80 hdr(host),field(1,:) -i -m str b.com\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("acl domain_a80 hdr(host),field(1,:) -i -m end .a.com\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("use_backend a-be80 if url_a80_0 domain_a80\n"),
            "{cfg}"
        );
    }

    #[test]
    fn sticky_cookies_are_named_after_the_service() {
        let cfg = render_text(
            "version: 1\nroutes:\n  - service: shop\n    port: 80\n    paths: [/shop]\n    sticky: true\n    servers: ['10.0.0.1:80', '10.0.0.2:80']\n",
        );
        assert!(
            cfg.contains("    cookie shop insert indirect nocache\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("    server shop-1 10.0.0.1:80 cookie shop-1\n"),
            "{cfg}"
        );
        assert!(!cfg.contains("SERVERID"), "{cfg}");
    }

    #[test]
    fn path_rewrites_render_in_order() {
        let one = "    rewrite_path: {regex: '^/a/(.*)', replace: '/b/\\1'}\n";
        let list = "    rewrite_path:\n      - {regex: '^/a/(.*)', replace: '/b/\\1'}\n      - {regex: '^/b/(.*)', replace: '/c/\\1'}\n";
        let route = "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n";
        let rewrites = |cfg: String| -> Vec<String> {
            cfg.lines()
                .filter_map(|l| l.trim().strip_prefix("http-request replace-path "))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            rewrites(render_text(&format!("{route}{one}"))),
            ["^/a/(.*) /b/\\1"]
        );
        assert_eq!(
            rewrites(render_text(&format!("{route}{list}"))),
            ["^/a/(.*) /b/\\1", "^/b/(.*) /c/\\1"]
        );
        // One rewrite reads back as the object it is usually written as.
        let file = load("routes.yaml", &format!("{route}{one}")).unwrap();
        let yaml = serde_saphyr::to_string(&file).unwrap();
        assert!(yaml.contains("rewrite_path:\n    regex:"), "{yaml}");
    }

    #[test]
    fn userlists_of_files_hold_the_users_read_for_them() {
        let file = load(
            "routes.yaml",
            "version: 1\nuserlists:\n  ops: {file: /run/secrets/dfp_users_ops}\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n    auth: {userlist: ops}\n",
        )
        .unwrap();
        // Not read yet: nobody gets in.
        let cfg = render(&file).to_string();
        assert!(cfg.contains("\nuserlist ops\n\nfrontend"), "{cfg}");
        let admin = crate::model::User::new(Name("admin".into()), "$6$salt$hash").unwrap();
        let users = FileUsers::from([(Name("ops".into()), vec![admin])]);
        let cfg = render_desired(&DesiredState::new(file).with_file_users(users)).to_string();
        assert!(
            cfg.contains("userlist ops\n    user admin password $6$salt$hash\n"),
            "{cfg}"
        );
    }

    #[test]
    fn https_binds_routes_yaml_certificate_first_then_the_crt_list() {
        let bind = |yaml: &str, crt_list: Option<&str>| {
            let file = load("routes.yaml", yaml).unwrap();
            https_bind(&file.defaults, crt_list.map(Path::new))
        };
        let own =
            "version: 1\ndefaults:\n  https:\n    port: 8443\n    certificates: /etc/site.pem\n";
        assert_eq!(
            bind(own, None).as_deref(),
            Some("bind *:8443 ssl crt /etc/site.pem")
        );
        assert_eq!(
            bind(own, Some("/s/crt-list")).as_deref(),
            Some("bind *:8443 ssl crt /etc/site.pem crt-list /s/crt-list")
        );
        let port_only = "version: 1\ndefaults:\n  https:\n    port: 8443\n";
        assert_eq!(bind(port_only, None), None, "no certificate, no listener");
        assert_eq!(
            bind("version: 1\n", Some("/s/crt-list")).as_deref(),
            Some("bind *:443 ssl crt-list /s/crt-list"),
            "uploads without defaults.https serve on Docker Flow Proxy's port"
        );
    }

    #[test]
    fn header_and_user_agent_conditions_are_anded_into_the_rule() {
        let cfg = render_text(
            "version: 1\nroutes:\n  - service: v3\n    port: 80\n    paths: [/app]\n    domains: [a.com]\n    match_headers: {X-Version: '3', name: Viktor Farcic}\n    user_agents: ['Mozilla/5.0 (iPhone', '-m']\n",
        );
        for line in [
            "acl hdr_v380_1 hdr(X-Version) -m str -- \"3\"\n",
            "acl hdr_v380_2 hdr(name) -m str -- \"Viktor Farcic\"\n",
            "acl user_agent_v380 req.fhdr(User-Agent) -i -m sub -- \"-m\" \"Mozilla/5.0 (iPhone\"\n",
            "use_backend v3-be80 if url_v380 domain_v380 hdr_v380_1 hdr_v380_2 user_agent_v380\n",
        ] {
            assert!(cfg.contains(line), "{line}{cfg}");
        }
    }

    #[test]
    fn domain_match_picks_the_host_method_wildcards_stay_suffixes() {
        for (how, method) in [
            ("exact", "str"),
            ("prefix", "beg"),
            ("suffix", "end"),
            ("labels", "dom"),
        ] {
            let cfg = render_text(&format!(
                "version: 1\nroutes:\n  - service: a\n    port: 80\n    domains: [A.com, '*.b.com']\n    domain_match: {how}\n"
            ));
            assert!(
                cfg.contains(&format!(
                    "acl domain_a80 hdr(host),field(1,:) -i -m {method} a.com\n"
                )),
                "{cfg}"
            );
            assert!(
                cfg.contains("acl domain_a80 hdr(host),field(1,:) -i -m end .b.com\n"),
                "{cfg}"
            );
        }
    }

    #[test]
    fn long_pattern_lists_are_split_below_haproxys_64_words() {
        let domains: Vec<String> = (0..100).map(|i| format!("d{i}.com")).collect();
        let cfg = render_text(&format!(
            "version: 1\nroutes:\n  - service: a\n    port: 80\n    domains: [{}]\n",
            domains.join(", ")
        ));
        let lines: Vec<&str> = cfg
            .lines()
            .filter(|l| l.trim_start().starts_with("acl domain_a80 "))
            .collect();
        assert_eq!(lines.len(), 3, "{cfg}");
        assert!(lines.iter().all(|l| l.split_whitespace().count() < 64));
        let listed: usize = lines.iter().map(|l| l.split_whitespace().count() - 6).sum();
        assert_eq!(listed, 100);
    }

    #[test]
    fn compression_is_the_routes_own() {
        let cfg = render_text(
            "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n    compression: {algorithms: [gzip, raw-deflate], types: [text/plain, application/json]}\n  - service: b\n    port: 80\n    paths: [/b]\n",
        );
        assert!(
            cfg.contains("backend a-be80\n    mode http\n    balance roundrobin\n    compression algo gzip raw-deflate\n    compression type application/json text/plain\n"),
            "{cfg}"
        );
        assert_eq!(cfg.matches("compression").count(), 2, "{cfg}");
    }

    #[test]
    fn resolving_at_run_time_asks_defaults_resolvers_else_docker() {
        let route = "routes:\n  - service: a\n    port: 80\n    paths: [/a]\n    resolve_at_runtime: true\n  - service: b\n    port: 80\n    paths: [/b]\n";
        let cfg = render_text(&format!("version: 1\n{route}"));
        assert!(
            cfg.contains("resolvers docker\n    nameserver dns0 127.0.0.11:53\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("    server a a:80 check resolvers docker resolve-prefer ipv4\n"),
            "{cfg}"
        );
        assert!(cfg.contains("    server b b:80\n"), "{cfg}");
        assert!(
            cfg.contains("default-server init-addr last,libc,none\n"),
            "{cfg}"
        );
        let cfg = render_text(&format!(
            "version: 1\ndefaults:\n  resolvers: ['10.0.0.2:53']\n{route}"
        ));
        assert!(
            cfg.contains("resolvers docker\n    nameserver dns0 10.0.0.2:53\n    hold"),
            "{cfg}"
        );
        assert!(
            cfg.contains("    server a a:80 check resolvers docker resolve-prefer ipv4\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("    server b b:80 resolvers docker resolve-prefer ipv4\n"),
            "{cfg}"
        );
        assert!(!render_text("version: 1\nroutes: []\n").contains("resolvers"));
    }

    #[test]
    fn tcp_routes_get_their_own_frontend() {
        let cfg = render_text(
            "version: 1\nroutes:\n  - service: db\n    port: 5432\n    mode: tcp\n    listen_port: 15432\n    timeouts: {client: 1h}\n",
        );
        assert!(
            cfg.contains("frontend tcp_15432\n    bind *:15432\n    mode tcp\n    timeout client 1h\n    default_backend db-be5432\n"),
            "{cfg}"
        );
        assert!(cfg.contains("backend db-be5432\n    mode tcp\n"), "{cfg}");
    }
}
