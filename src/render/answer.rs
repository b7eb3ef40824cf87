//! Which backend answers an http request, worked out from the routes alone:
//! the documented precedence (see `Precedence`) over the same sorted rules
//! the renderer writes, each matched as its ACLs would match it. It never
//! reads a rendered config, so that the config (maps and ACLs, run by a real
//! HAProxy) can be held to it.
//!
//! Redirects of `redirect_from` hosts happen before routing and are not
//! answered here; neither is what a backend then does (`https_only`, auth).

use super::{Rule, http_rules};
use crate::model::{Domain, DomainMatch, Mode, PathMatch, RoutesFile, names};

/// An http request, as far as routing looks at it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The `Host` header as sent (a port and any case allowed); `None`: none sent.
    pub host: Option<String>,
    /// The path, without the query string.
    pub path: String,
    /// The other header lines, `User-Agent` among them; names ignore case.
    pub headers: Vec<(String, String)>,
    /// Whether the request came over TLS (routes with an `https_port` send
    /// it to their second backend).
    pub tls: bool,
}

impl Request {
    /// A plain-HTTP request for `path` on `host`, without other headers.
    pub fn new(host: &str, path: &str) -> Self {
        Self {
            host: Some(host.to_string()),
            path: path.to_string(),
            ..Self::default()
        }
    }

    /// With one more header line.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The values of every header line named `name`, as HAProxy's parser
    /// keeps them (surrounding blanks trimmed).
    fn lines<'r>(&'r self, name: &'r str) -> impl Iterator<Item = &'r str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim_matches(BLANKS))
    }
}

/// The name of the backend that answers `request`, or `None`: no route
/// takes it (HAProxy answers 503).
pub fn answer(file: &RoutesFile, request: &Request) -> Option<String> {
    // `hdr(host),field(1,:)`: the host without its port.
    let host = request
        .host
        .as_deref()
        .map(|h| h.split(':').next().unwrap_or(h).trim_matches(BLANKS));
    for rule in http_rules(file) {
        if matches(&rule, host, request) {
            // The `https_port` twin goes right before the route's own rule.
            if request.tls
                && let Some(https) = names::https_backend(rule.route)
            {
                return Some(https);
            }
            return Some(names::backend(rule.route));
        }
    }
    file.routes
        .iter()
        .find(|r| r.mode == Mode::Http && r.default_backend)
        .map(names::backend)
}

/// Spaces and tabs: what HAProxy trims around header values.
const BLANKS: &[char] = &[' ', '\t'];

/// Whether every ACL of `rule`'s `use_backend` matches.
fn matches(rule: &Rule<'_>, host: Option<&str>, request: &Request) -> bool {
    let route = rule.route;
    let path = request.path.as_str();
    rule.path
        .is_none_or(|p| path_matches(route.path_match, p, path))
        && !route
            .exclude_paths
            .iter()
            .any(|p| path_matches(route.path_match, &p.0, path))
        && (route.domains.is_empty()
            || host.is_some_and(|h| {
                route
                    .domains
                    .iter()
                    .any(|d| domain_matches(d, route.domain_match, h))
            }))
        && route
            .match_headers
            .iter()
            .all(|(name, value)| has_value(request, &name.0, &value.0))
        && (route.user_agents.is_empty()
            || request.lines("User-Agent").any(|agent| {
                let agent = agent.to_ascii_lowercase();
                route
                    .user_agents
                    .iter()
                    .any(|a| agent.contains(&a.0.to_ascii_lowercase()))
            }))
}

/// `path_beg`, `path` and `path_reg` (a search, unanchored unless the
/// pattern says so).
fn path_matches(how: PathMatch, pattern: &str, path: &str) -> bool {
    match how {
        PathMatch::Prefix => path.starts_with(pattern),
        PathMatch::Exact => path == pattern,
        // Validated patterns compile; a search that gives up matches nothing.
        PathMatch::Regex => fancy_regex::Regex::new(pattern)
            .is_ok_and(|regex| regex.is_match(path).unwrap_or(false)),
    }
}

/// `-i -m str|beg|end|dom`, and `-m end` for `*.` wildcards.
fn domain_matches(domain: &Domain, how: DomainMatch, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if let Some(suffix) = domain.wildcard_suffix() {
        return host.ends_with(&suffix.to_ascii_lowercase());
    }
    let domain = domain.0.to_ascii_lowercase();
    match how {
        DomainMatch::Exact => host == domain,
        DomainMatch::Prefix => host.starts_with(&domain),
        DomainMatch::Suffix => host.ends_with(&domain),
        DomainMatch::Labels => labels_match(&host, &domain),
    }
}

/// HAProxy's `-m dom`: `pattern` (its outer delimiters dropped) appears in
/// `host` starting right after a delimiter or at the start, and ending right
/// before one or at the end. Delimiters: `/ ? . :`.
fn labels_match(host: &str, pattern: &str) -> bool {
    let delimiter = |b: u8| matches!(b, b'/' | b'?' | b'.' | b':');
    let pattern = pattern.trim_matches(|c: char| c.is_ascii() && delimiter(c as u8));
    let (h, p) = (host.as_bytes(), pattern.as_bytes());
    if p.len() > h.len() {
        return false;
    }
    let mut may_match = true;
    for start in 0..=h.len() - p.len() {
        if delimiter(h[start]) {
            may_match = true;
            continue;
        }
        if !may_match {
            continue;
        }
        let end = start + p.len();
        if &h[start..end] == p && (end == h.len() || delimiter(h[end])) {
            return true;
        }
        may_match = false;
    }
    false
}

/// `hdr(<name>) -m str <value>`: one of the comma-separated values of a
/// `name` header line is `value`, exactly.
fn has_value(request: &Request, name: &str, value: &str) -> bool {
    request
        .lines(name)
        .any(|line| comma_values(line).any(|v| v == value))
}

/// A header line's values as HAProxy splits them: at commas outside
/// double-quoted strings, each trimmed.
fn comma_values(line: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted {
            match c {
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
        } else if c == '"' {
            quoted = true;
        } else if c == ',' {
            parts.push(&line[start..i]);
            start = i + 1;
        }
    }
    parts.push(&line[start..]);
    parts.into_iter().map(|p| p.trim_matches(BLANKS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate::load;

    fn table(routes: &str) -> RoutesFile {
        load("routes.yaml", &format!("version: 1\nroutes:\n{routes}"))
            .unwrap_or_else(|d| panic!("{d}"))
    }

    fn backend(file: &RoutesFile, request: Request) -> String {
        answer(file, &request).unwrap_or_else(|| "none".into())
    }

    #[test]
    fn longest_prefix_then_paths_before_whole_domains_then_default() {
        let file = table(
            "  - service: api\n    port: 80\n    paths: [/api]\n  - service: v2\n    port: 80\n    paths: [/api/v2]\n  - service: whole\n    port: 80\n    domains: [a.test]\n  - service: fb\n    port: 80\n    default_backend: true\n",
        );
        for (host, path, expected) in [
            ("a.test", "/api/v2/x", "v2-be80"),
            ("a.test", "/api/v", "api-be80"),
            ("A.Test:8080", "/other", "whole-be80"),
            ("b.test", "/other", "fb-be80"),
        ] {
            assert_eq!(
                backend(&file, Request::new(host, path)),
                expected,
                "{host}{path}"
            );
        }
    }

    #[test]
    fn priority_and_well_known_come_first_exact_domains_before_wildcards() {
        let file = table(
            "  - service: acme\n    port: 80\n    paths: [/.well-known/acme]\n  - service: vip\n    port: 80\n    paths: [/]\n    domains: [vip.test]\n    priority: 5\n  - service: star\n    port: 80\n    paths: [/x]\n    domains: ['*.w.test']\n  - service: one\n    port: 80\n    paths: [/x]\n    domains: [a.w.test]\n",
        );
        for (host, path, expected) in [
            ("vip.test", "/.well-known/acme/t", "vip-be80"),
            ("other.test", "/.well-known/acme/t", "acme-be80"),
            ("a.w.test", "/x", "one-be80"),
            ("b.w.test", "/x", "star-be80"),
            ("w.test", "/x", "none"),
        ] {
            assert_eq!(
                backend(&file, Request::new(host, path)),
                expected,
                "{host}{path}"
            );
        }
    }

    #[test]
    fn conditions_exclusions_and_regexes() {
        let file = table(
            "  - service: app\n    port: 80\n    paths: [/]\n    exclude_paths: [/private]\n  - service: v3\n    port: 80\n    paths: [/]\n    match_headers: {X-Version: '3'}\n  - service: mobile\n    port: 80\n    paths: [/]\n    user_agents: [iPhone]\n  - service: re\n    port: 80\n    paths: ['^/r[0-9]+$']\n    path_match: regex\n",
        );
        for (request, expected) in [
            (
                Request::new("h", "/x").header("x-version", "1, 3"),
                "v3-be80",
            ),
            (
                Request::new("h", "/x").header("X-Version", "33"),
                "app-be80",
            ),
            (
                Request::new("h", "/x").header("User-Agent", "an IPHONE"),
                "mobile-be80",
            ),
            (Request::new("h", "/r12"), "re-be80"),
            (Request::new("h", "/r12x"), "app-be80"),
            (Request::new("h", "/private/x"), "none"),
        ] {
            assert_eq!(backend(&file, request.clone()), expected, "{request:?}");
        }
    }

    #[test]
    fn domain_match_methods_and_the_https_port_twin() {
        let file = table(
            "  - service: lab\n    port: 80\n    domains: [lab.test]\n    domain_match: labels\n  - service: pre\n    port: 80\n    domains: [pre.test]\n    domain_match: prefix\n  - service: tw\n    port: 80\n    paths: [/tw]\n    https_port: 443\n",
        );
        for (host, expected) in [
            ("www.lab.test", "lab-be80"),
            ("lab.test.example", "lab-be80"),
            ("mylab.test", "none"),
            ("pre.test.example", "pre-be80"),
            ("www.pre.test", "none"),
        ] {
            assert_eq!(backend(&file, Request::new(host, "/")), expected, "{host}");
        }
        let mut tls = Request::new("h", "/tw");
        assert_eq!(backend(&file, tls.clone()), "tw-be80");
        tls.tls = true;
        assert_eq!(backend(&file, tls), "https-tw-be443");
    }

    #[test]
    fn header_values_split_at_commas_outside_quotes() {
        let values: Vec<&str> = comma_values(r#" a , "b,c" ,d\,e"#).collect();
        assert_eq!(values, ["a", r#""b,c""#, r"d\", "e"]);
    }
}
