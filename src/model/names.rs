//! HAProxy identifiers built from routes, named the way Docker Flow Proxy
//! named them so that its users find their way around.

use std::fmt::Write;

use crate::model::Route;

/// `<before><key><between><port>`, the shape of most names, then `_<n>`
/// when `suffix` is given. Names are built several times per route, so in
/// one allocation of the right size (`format!` grows its string as it goes).
pub(crate) fn key_port(
    before: &str,
    route: &Route,
    between: &str,
    suffix: Option<usize>,
) -> String {
    // At most: a port's 5 digits; `_` and a usize's 20.
    let numbers = 5 + suffix.map_or(0, |_| 21);
    let key = route.key().as_str();
    let mut name = String::with_capacity(before.len() + key.len() + between.len() + numbers);
    name.push_str(before);
    name.push_str(key);
    name.push_str(between);
    write!(name, "{}", route.port).expect("a String takes every write");
    if let Some(n) = suffix {
        write!(name, "_{n}").expect("a String takes every write");
    }
    name
}

/// `go-demo-be8080`.
pub fn backend(route: &Route) -> String {
    key_port("", route, "-be", None)
}

/// `url_go-demo8080`, with `_<n>` when the route has several paths.
pub fn path_acl(route: &Route, index: Option<usize>) -> String {
    key_port("url_", route, "", index)
}

/// `domain_go-demo8080`.
pub fn domain_acl(route: &Route) -> String {
    key_port("domain_", route, "", None)
}

/// `url_exclude_go-demo8080`: the paths a route does not take, as DFP named it.
pub fn exclude_acl(route: &Route) -> String {
    key_port("url_exclude_", route, "", None)
}

/// `redirect_from_go-demo8080`: the hosts redirected to a route's domain.
pub fn redirect_from_acl(route: &Route) -> String {
    key_port("redirect_from_", route, "", None)
}

/// `hdr_go-demo8080_1`: the route's `n`-th header condition (from 1), as DFP numbers them.
pub fn header_acl(route: &Route, n: usize) -> String {
    key_port("hdr_", route, "", Some(n))
}

/// `user_agent_go-demo8080`.
pub fn user_agent_acl(route: &Route) -> String {
    key_port("user_agent_", route, "", None)
}

/// `tcp_5432`: the frontend of a tcp route.
pub fn tcp_frontend(listen_port: u16) -> String {
    format!("tcp_{listen_port}")
}

/// `https-go-demo-be8443`: the backend of a route's `https_port`, as
/// Docker Flow Proxy named it.
pub fn https_backend(route: &Route) -> Option<String> {
    route
        .https_port
        .map(|port| format!("https-{}-be{port}", route.key()))
}

/// `spare-3`: a spare backend, which a new service takes until the next
/// reload. No route's backend is named so (theirs end in `-be<port>`).
pub fn spare_backend(k: usize) -> String {
    format!("{SPARE_PREFIX}{k}")
}

/// What every spare backend's name starts with.
pub const SPARE_PREFIX: &str = "spare-";

/// `sni_8443`: the frontend every `sni` route on that listen port shares.
pub fn sni_frontend(listen_port: u16) -> String {
    format!("sni_{listen_port}")
}

/// The frontend every http route shares.
pub const HTTP_FRONTEND: &str = "services";
/// The resolvers section used when `defaults.resolvers` is set, or a route
/// resolves at run time.
pub const RESOLVERS: &str = "docker";
