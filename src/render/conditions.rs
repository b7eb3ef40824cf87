//! The ACLs that narrow a route's `use_backend` rule beyond its paths:
//! domains (as `domain_match` says), request headers and user agents.

use super::Section;
use crate::model::{Domain, DomainMatch, Route, names};

/// At most this many patterns on one `acl` line: HAProxy reads at most 64
/// words a line and silently drops the rest.
const PATTERNS_PER_LINE: usize = 48;

/// `acl <name> <criterion> <pattern>...`, over as many lines as needed
/// (HAProxy ORs the lines of one ACL name).
fn acl_lines(frontend: &mut Section, name: &str, criterion: &str, patterns: &[String]) {
    for chunk in patterns.chunks(PATTERNS_PER_LINE) {
        frontend.line(format!("acl {name} {criterion} {}", chunk.join(" ")));
    }
}

/// A literal as an ACL pattern: quoted, because it may hold spaces. Header
/// values admit no `"`, `\`, `$` or `%`, so nothing inside is decoded.
fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

/// Host matching ignores the port and case; `*.example.com` matches any
/// subdomain, other names as `domain_match` says.
pub(super) fn domain_acls(frontend: &mut Section, route: &Route) {
    let acl = names::domain_acl(route);
    host_acls(frontend, &acl, &route.domains, route.domain_match);
}

/// `acl` lines that match the request's host (without port, ignoring case)
/// against `domains`: `*.` names as suffixes, others as `how` says.
pub(super) fn host_acls(frontend: &mut Section, acl: &str, domains: &[Domain], how: DomainMatch) {
    let mut names: Vec<String> = Vec::new();
    let mut suffixes: Vec<String> = Vec::new();
    for domain in domains {
        match domain.wildcard_suffix() {
            Some(suffix) => suffixes.push(suffix.to_ascii_lowercase()),
            None => names.push(domain.0.to_ascii_lowercase()),
        }
    }
    for (method, mut values) in [(how.haproxy_method(), names), ("end", suffixes)] {
        if values.is_empty() {
            continue;
        }
        values.sort();
        values.dedup();
        let criterion = format!("hdr(host),field(1,:) -i -m {method}");
        acl_lines(frontend, acl, &criterion, &values);
    }
}

/// The ACLs of a route's header and user-agent conditions. Header values
/// are compared as DFP's `hdr(<name>) <value>` does: exactly, with each
/// comma-separated value of the header. User agents match anywhere in the
/// whole `User-Agent` (commas included), ignoring case.
pub(super) fn condition_acls(frontend: &mut Section, route: &Route) {
    for (n, (name, value)) in route.match_headers.iter().enumerate() {
        // `--` ends the flags: a value may start with `-`.
        frontend.line(format!(
            "acl {} hdr({}) -m str -- {}",
            names::header_acl(route, n + 1),
            name.0,
            quoted(&value.0)
        ));
    }
    if route.user_agents.is_empty() {
        return;
    }
    let mut agents: Vec<String> = route.user_agents.iter().map(|a| quoted(&a.0)).collect();
    agents.sort();
    agents.dedup();
    acl_lines(
        frontend,
        &names::user_agent_acl(route),
        "req.fhdr(User-Agent) -i -m sub --",
        &agents,
    );
}

/// The names of the ACLs [`condition_acls`] writes, all of which a request
/// must match.
pub(super) fn condition_names(route: &Route) -> Vec<String> {
    let mut conditions: Vec<String> = (1..=route.match_headers.len())
        .map(|n| names::header_acl(route, n))
        .collect();
    if !route.user_agents.is_empty() {
        conditions.push(names::user_agent_acl(route));
    }
    conditions
}
