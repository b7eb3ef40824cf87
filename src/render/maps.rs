//! Routing through HAProxy maps, so that a path or domain added to (or
//! removed from) an existing backend is a map entry HAProxy takes at run
//! time instead of a reload.
//!
//! The http frontend's `use_backend` rules are sorted by precedence; HAProxy
//! takes the first that matches. A run of consecutive rules that only match
//! a path (exact or prefix) and exact domains, and that share a precedence
//! class (priority, well-known, catch-all, domain, path kind), is the same
//! as one map lookup: within a class the rules are ordered longest path
//! first, which is what `map_beg` answers (the longest matching prefix) and
//! what `map_str` answers (the one exact key). Rules that match more
//! (headers, user agents, excluded paths, an `https_port` twin, wildcard or
//! non-exact domains, regexes) keep their ACL and split the run, so the
//! order HAProxy tries things in is exactly the order of the rules.
//!
//! The common classes always have a map, empty or not: the first path or
//! domain of a kind is then a map entry too, not a new map file (a reload).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::path::Path;

use super::{Precedence, Rule};
use crate::model::{Duration, PathMatch, RouteTimeouts};

/// The variable holding `<host><path>` for the lookups by domain: the
/// request's host without its port, lowercased, then its path.
const HOST_PATH_VAR: &str = "txn.host_path";

/// A map file HAProxy looks up: the http frontend's routing maps (key →
/// backend name) and the timeout maps (backend name → milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapFile {
    /// Absolute path, as the config names it.
    pub path: String,
    /// `/demo` → `go-demo-be8080`, or `example.com/demo` → ... for the maps
    /// by domain; `go-demo-be8080` → `120000` for a timeout map.
    pub entries: BTreeMap<String, String>,
}

impl MapFile {
    /// The file's contents: a `key backend` line per entry, sorted by key
    /// (the order does not matter to HAProxy's lookups).
    pub fn text(&self) -> String {
        let mut text = String::new();
        for (key, backend) in &self.entries {
            text.push_str(key);
            text.push(' ');
            text.push_str(backend);
            text.push('\n');
        }
        text
    }

    /// A map file as [`MapFile::text`] writes it.
    pub fn parse(path: String, text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|l| {
                let (key, backend) = l.trim().split_once(char::is_whitespace)?;
                Some((key.to_string(), backend.trim().to_string()))
            })
            .collect();
        Self { path, entries }
    }

    /// The file name: `prefix.map`.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// The entries of each map that has some, as config comments: appended to
/// a config, the whole routing table in one readable text.
pub fn listing(maps: &[MapFile]) -> String {
    let mut text = String::new();
    for map in maps.iter().filter(|m| !m.entries.is_empty()) {
        for piece in ["\n# ", &map.path, ":\n"] {
            text.push_str(piece);
        }
        for line in map.text().lines() {
            for piece in ["#   ", line, "\n"] {
                text.push_str(piece);
            }
        }
    }
    text
}

/// The part of a rule's precedence that a map lookup keeps whole: rules of
/// one class differ only in path length, path and route, which the lookup
/// itself orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Class {
    priority: Reverse<i16>,
    not_well_known: bool,
    takes_everything: bool,
    /// 0: exact domains, 2: no domain (1, other domains, never routes by map).
    domain_class: u8,
    /// 0: exact paths, 1: prefixes.
    path_class: u8,
}

impl Class {
    fn of(p: &Precedence<'_>) -> Self {
        Self {
            priority: p.priority,
            not_well_known: p.not_well_known,
            takes_everything: p.takes_everything,
            domain_class: p.domain_class,
            path_class: p.path_class,
        }
    }

    /// The classes that always have a map: default priority, not
    /// well-known, by domain or not, exact, prefix and catch-all (`/`).
    fn common() -> Vec<Class> {
        let mut classes = Vec::new();
        for domain_class in [0, 2] {
            for (takes_everything, path_class) in [(false, 0), (false, 1), (true, 1)] {
                classes.push(Class {
                    priority: Reverse(0),
                    not_well_known: true,
                    takes_everything,
                    domain_class,
                    path_class,
                });
            }
        }
        classes.sort();
        classes
    }

    fn by_host(&self) -> bool {
        self.domain_class == 0
    }

    /// `prefix`, `exact-host`, `all`, `well-known-prefix-p10`, then `.2`
    /// for a class's second run.
    fn file_name(&self, run: usize) -> String {
        let mut name = String::new();
        if !self.not_well_known {
            name.push_str("well-known-");
        }
        name.push_str(match (self.takes_everything, self.path_class) {
            (true, _) => "all",
            (false, 0) => "exact",
            (false, _) => "prefix",
        });
        if self.by_host() {
            name.push_str("-host");
        }
        match self.priority.0 {
            0 => {}
            p if p < 0 => name.push_str(&format!("-pm{}", p.unsigned_abs())),
            p => name.push_str(&format!("-p{p}")),
        }
        if run > 1 {
            name.push_str(&format!(".{run}"));
        }
        name.push_str(".map");
        name
    }
}

/// The keys a rule routes by in its class's map, or `None` when the rule
/// needs its ACL (see [`routes_by_map`]).
fn map_keys(rule: &Rule<'_>) -> Option<Vec<String>> {
    let path = rule.path.filter(|_| routes_by_map(rule))?;
    let route = rule.route;
    if route.domains.is_empty() {
        return Some(vec![path.to_string()]);
    }
    Some(
        route
            .domains
            .iter()
            .map(|d| {
                let mut key = String::with_capacity(d.0.len() + path.len());
                key.push_str(&d.0);
                key.make_ascii_lowercase();
                key.push_str(path);
                key
            })
            .collect(),
    )
}

/// Whether `rule` is routed through a map rather than its own ACL: it
/// matches a path and exact domains, nothing more.
pub(super) fn routes_by_map(rule: &Rule<'_>) -> bool {
    let route = rule.route;
    let Some(path) = rule.path else {
        return false;
    };
    route.match_headers.is_empty()
        && route.user_agents.is_empty()
        && route.exclude_paths.is_empty()
        && route.https_port.is_none()
        && matches!(route.path_match, PathMatch::Exact | PathMatch::Prefix)
        && rule.precedence.domain_class != 1
        // The runtime API reads `;` as the end of a command.
        && !path.contains(';')
}

/// One step of the http frontend's routing, in the order HAProxy tries them.
pub(super) enum Routing<'r, 'a> {
    /// A `use_backend ... if <acl>` rule.
    Rule(&'r Rule<'a>),
    /// A lookup in one of the maps: its `use_backend` line.
    Map(String),
}

/// The routing steps for `rules` (sorted by precedence) and the maps they
/// look up, in `maps_dir`.
pub(super) fn route<'r, 'a>(
    rules: &'r [Rule<'a>],
    maps_dir: &Path,
) -> (Vec<Routing<'r, 'a>>, Vec<MapFile>) {
    let mut steps = Vec::new();
    let mut maps: Vec<MapFile> = Vec::new();
    let mut runs: BTreeMap<Class, usize> = BTreeMap::new();
    // The class of the map the last step looks up, if it is a map.
    let mut open: Option<Class> = None;
    let mut start = |class: Class, steps: &mut Vec<Routing<'r, 'a>>, maps: &mut Vec<MapFile>| {
        let run = runs.entry(class).or_default();
        *run += 1;
        let map = MapFile {
            path: maps_dir
                .join(class.file_name(*run))
                .to_string_lossy()
                .into_owned(),
            entries: BTreeMap::new(),
        };
        steps.push(Routing::Map(use_backend_line(class, &map.path)));
        maps.push(map);
    };
    let mut common = Class::common().into_iter().peekable();
    for rule in rules {
        let class = Class::of(&rule.precedence);
        while let Some(first) = common.next_if(|c| *c <= class) {
            if open != Some(first) {
                start(first, &mut steps, &mut maps);
                open = Some(first);
            }
        }
        match map_keys(rule) {
            Some(keys) => {
                if open != Some(class) {
                    start(class, &mut steps, &mut maps);
                    open = Some(class);
                }
                let backend = super::names::backend(rule.route);
                let map = maps.last_mut().expect("a map was started");
                for key in keys {
                    // The first rule in precedence order wins a key, as the first ACL would.
                    map.entries.entry(key).or_insert_with(|| backend.clone());
                }
            }
            None => {
                steps.push(Routing::Rule(rule));
                open = None;
            }
        }
    }
    for class in common {
        start(class, &mut steps, &mut maps);
    }
    (steps, maps)
}

/// The map files a config looks up: the http frontend's, in lookup order,
/// then the timeout maps.
pub fn referenced(config: &super::HaproxyConfig) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for line in config.sections.iter().flat_map(|s| s.lines.iter()) {
        let Some(rest) = line
            .strip_prefix("use_backend %[")
            .or_else(|| line.strip_prefix(SET_TIMEOUT))
        else {
            continue;
        };
        let path = ["map_beg(", "map_str(", "map_str_int("]
            .iter()
            .find_map(|c| rest.split_once(c))
            .and_then(|(_, tail)| tail.split_once(')'))
            .map(|(path, _)| path.to_string());
        if let Some(path) = path
            && !paths.contains(&path)
        {
            paths.push(path);
        }
    }
    paths
}

/// The lines that compute the key of the lookups by domain; before every
/// `use_backend`. A host holding `/` is no domain: without this guard it
/// could reach past the host into the path part of a key.
pub(super) fn key_lines() -> [String; 2] {
    [
        "http-request set-var(txn.path) path".to_string(),
        format!(
            "http-request set-var({HOST_PATH_VAR}) req.hdr(host),field(1,:),lower,concat(,txn.path) unless {{ req.hdr(host),field(1,:) -m sub / }}"
        ),
    ]
}

/// `use_backend %[path,map_beg(<file>)] if { path,map_beg(<file>) -m found }`.
fn use_backend_line(class: Class, path: &str) -> String {
    let fetch = if class.by_host() {
        format!("var({HOST_PATH_VAR})")
    } else {
        "path".to_string()
    };
    let converter = if class.path_class == 0 {
        "map_str"
    } else {
        "map_beg"
    };
    let lookup = format!("{fetch},{converter}({path})");
    format!("use_backend %[{lookup}] if {{ {lookup} -m found }}")
}

/// The timeouts a route may set that HAProxy 2.6 can also set per request
/// (`connect` and `client` it cannot): each is a map from backend name to
/// milliseconds, so that a route's timeout changes at run time.
const TIMEOUTS: [(&str, TimeoutOf); 2] = [
    ("server", |t| t.server.as_ref()),
    ("tunnel", |t| t.tunnel.as_ref()),
];

/// Where a route sets one of [`TIMEOUTS`].
type TimeoutOf = fn(&RouteTimeouts) -> Option<&Duration>;

const SET_TIMEOUT: &str = "http-request set-timeout ";

fn timeout_map_path(maps_dir: &Path, timeout: &str) -> String {
    maps_dir
        .join(format!("timeout-{timeout}.map"))
        .to_string_lossy()
        .into_owned()
}

/// The rules that give a request its backend's own timeouts, from the
/// timeout maps: in the `defaults` section of the backends, so that each map
/// is referenced once (`show map` describes a map with every place that uses
/// it, and a description longer than HAProxy's buffer breaks the listing
/// capstan reads the maps from). A backend not in a map keeps the default
/// timeout.
pub(super) fn timeout_lines(maps_dir: &Path) -> Vec<String> {
    TIMEOUTS
        .iter()
        .map(|(t, _)| {
            format!(
                "{SET_TIMEOUT}{t} be_name,map_str_int({})",
                timeout_map_path(maps_dir, t)
            )
        })
        .collect()
}

/// The timeout maps, each always rendered (the first entry is then a map
/// entry, not a new file), with an entry for each of the http `backends`
/// (name, its route's timeouts) that sets that timeout.
pub(super) fn timeout_maps(maps_dir: &Path, backends: &[(String, &RouteTimeouts)]) -> Vec<MapFile> {
    TIMEOUTS
        .iter()
        .map(|(t, of)| MapFile {
            path: timeout_map_path(maps_dir, t),
            entries: backends
                .iter()
                .filter_map(|(backend, timeouts)| Some((backend.clone(), millis(of(timeouts)?))))
                .collect(),
        })
        .collect()
}

/// A duration as the whole milliseconds `set-timeout` reads from a map,
/// rounded up as HAProxy rounds `timeout server 10us`.
fn millis(duration: &Duration) -> String {
    let d = duration.to_std().expect("validated: durations parse");
    d.as_nanos().div_ceil(1_000_000).to_string()
}

#[cfg(test)]
mod tests {
    use crate::desired::DEFAULT_MAPS_DIR;
    use crate::model::validate::load;
    use crate::model::{Route, RoutesFile, UrlPath};
    use crate::render::{HaproxyConfig, render};

    fn render_routes(routes: &str) -> HaproxyConfig {
        let text = format!("version: 1\nroutes:\n{routes}");
        render(&load("routes.yaml", &text).unwrap_or_else(|d| panic!("{d}")))
    }

    fn map_names(config: &HaproxyConfig) -> Vec<&str> {
        config.maps.iter().map(|m| m.name()).collect()
    }

    #[test]
    fn a_rule_with_conditions_splits_its_class_into_two_maps_in_precedence_order() {
        let config = render_routes(concat!(
            "  - service: long\n    port: 80\n    paths: [/long/er]\n",
            "  - service: v2\n    port: 80\n    paths: [/api]\n    match_headers: {X-Version: '2'}\n",
            "  - service: short\n    port: 80\n    paths: [/a]\n",
        ));
        // `/a` also matches `/api`: looked up before v2's rule, it would take
        // v2's requests.
        assert_eq!(
            config.routing(),
            [
                "path,map_beg(prefix.map): /long/er long-be80",
                "v2-be80",
                "path,map_beg(prefix.2.map): /a short-be80",
            ]
        );
    }

    #[test]
    fn the_common_maps_exist_for_an_empty_table() {
        let config = render_routes("  []\n");
        let names = [
            "exact-host.map",
            "prefix-host.map",
            "exact.map",
            "prefix.map",
            "all-host.map",
            "all.map",
        ];
        let timeouts = ["timeout-server.map", "timeout-tunnel.map"];
        assert_eq!(map_names(&config), [&names[..], &timeouts].concat());
        for map in &config.maps {
            assert!(map.entries.is_empty(), "{map:?}");
            assert_eq!(map.path, format!("{DEFAULT_MAPS_DIR}/{}", map.name()));
        }
        // Looked up in that order: the first path of a kind is an entry, not a new lookup.
        let lookups: Vec<&str> = config
            .section("frontend services")
            .unwrap()
            .lines
            .iter()
            .filter(|l| l.starts_with("use_backend "))
            .map(|l| {
                names
                    .into_iter()
                    .find(|n| l.contains(&format!("/{n})")))
                    .unwrap()
            })
            .collect();
        assert_eq!(lookups, names);
    }

    #[test]
    fn domain_keys_are_the_lowercased_host_then_the_path() {
        let config = render_routes(
            "  - service: site\n    port: 80\n    domains: [Example.COM, www.Example.com]\n    paths: [/Api]\n",
        );
        assert_eq!(
            config.routing(),
            [
                "var(txn.host_path),map_beg(prefix-host.map): example.com/Api site-be80, www.example.com/Api site-be80"
            ]
        );
        // The key looked up: the request's host lowercased, without its port.
        let frontend = config.section("frontend services").unwrap();
        assert!(
            frontend.lines.iter().any(|l| l
                == "http-request set-var(txn.host_path) req.hdr(host),field(1,:),lower,concat(,txn.path) unless { req.hdr(host),field(1,:) -m sub / }"),
            "{config}"
        );
    }

    #[test]
    fn route_server_and_tunnel_timeouts_are_timeout_map_entries_not_backend_lines() {
        let config = render_routes(concat!(
            "  - service: api\n    port: 3000\n    paths: [/api]\n    https_port: 3443\n",
            "    timeouts: {server: 2m, tunnel: 1500us, connect: 2s}\n",
            "  - service: db\n    port: 5432\n    mode: tcp\n    listen_port: 15432\n    timeouts: {server: 1h}\n",
            "  - service: web\n    port: 80\n    paths: [/]\n",
        ));
        let api = config.section("backend api-be3000").unwrap();
        assert_eq!(
            api.lines,
            ["mode http", "balance roundrobin", "timeout connect 2s"]
        );
        // HAProxy runs no http rules for a tcp backend: its timeout stays its own.
        let db = config.section("backend db-be5432").unwrap();
        assert!(db.lines.iter().any(|l| l == "timeout server 1h"), "{db:?}");

        let timeouts: Vec<(&str, Vec<(&str, &str)>)> = config
            .maps
            .iter()
            .filter(|m| m.name().starts_with("timeout-"))
            .map(|m| {
                let entries = m.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()));
                (m.name(), entries.collect())
            })
            .collect();
        assert_eq!(
            timeouts,
            [
                (
                    "timeout-server.map",
                    vec![("api-be3000", "120000"), ("https-api-be3443", "120000")]
                ),
                (
                    "timeout-tunnel.map",
                    vec![("api-be3000", "2"), ("https-api-be3443", "2")]
                ),
            ]
        );
        // The backends' defaults look them up, once for all backends.
        let defaults = config.section("defaults backends").unwrap();
        assert_eq!(
            defaults.lines[defaults.lines.len() - 2..],
            [
                format!(
                    "http-request set-timeout server be_name,map_str_int({DEFAULT_MAPS_DIR}/timeout-server.map)"
                ),
                format!(
                    "http-request set-timeout tunnel be_name,map_str_int({DEFAULT_MAPS_DIR}/timeout-tunnel.map)"
                ),
            ]
        );
        let after_defaults = config
            .sections
            .iter()
            .skip_while(|s| s.header != "defaults backends")
            .skip(1);
        assert!(after_defaults.clone().count() > 0);
        assert!(after_defaults.clone().all(|s| s.backend_name().is_some()));
        assert!(
            config
                .with_maps_listed()
                .contains("\n# /etc/haproxy/maps/timeout-server.map:\n#   api-be3000 120000\n"),
            "{}",
            config.with_maps_listed()
        );
        let referenced = crate::render::maps::referenced(&config);
        assert_eq!(
            referenced[referenced.len() - 2..],
            [
                format!("{DEFAULT_MAPS_DIR}/timeout-server.map"),
                format!("{DEFAULT_MAPS_DIR}/timeout-tunnel.map"),
            ]
        );
    }

    #[test]
    fn a_path_with_a_semicolon_keeps_its_acl() {
        let config = render_routes("  - service: a\n    port: 80\n    paths: ['/a;b']\n");
        let cfg = config.to_string();
        assert!(cfg.contains("    acl url_a80 path_beg /a;b\n"), "{cfg}");
        assert!(cfg.contains("    use_backend a-be80 if url_a80\n"), "{cfg}");
        assert_eq!(config.routing(), ["a-be80"]);
    }

    #[test]
    fn a_key_routed_twice_goes_to_the_first_rule_in_precedence_order() {
        // Validation refuses a path claimed twice; the render does not rely on it.
        let mut file = RoutesFile::empty();
        for service in ["b", "a"] {
            let mut route = Route::new(service, 80);
            route.paths = vec![UrlPath("/p".into())];
            file.routes.push(route);
        }
        // Ties go by route id, as the order of the rules did.
        assert_eq!(
            render(&file).routing(),
            ["path,map_beg(prefix.map): /p a-be80"]
        );
    }

    #[test]
    fn priority_and_well_known_paths_get_maps_of_their_own() {
        let config = render_routes(concat!(
            "  - service: low\n    port: 80\n    paths: [/low]\n    priority: -3\n",
            "  - service: high\n    port: 80\n    paths: [/high]\n    priority: 5\n",
            "  - service: acme\n    port: 80\n    paths: [/.well-known/acme-challenge]\n",
            "  - service: token\n    port: 80\n    domains: [a.test]\n    paths: [/.well-known/token]\n    path_match: exact\n",
            "  - service: demo\n    port: 80\n    paths: [/demo]\n",
        ));
        assert_eq!(
            config.routing(),
            [
                "path,map_beg(prefix-p5.map): /high high-be80",
                "var(txn.host_path),map_str(well-known-exact-host.map): a.test/.well-known/token token-be80",
                "path,map_beg(well-known-prefix.map): /.well-known/acme-challenge acme-be80",
                "path,map_beg(prefix.map): /demo demo-be80",
                "path,map_beg(prefix-pm3.map): /low low-be80",
            ]
        );
    }
}
