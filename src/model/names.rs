//! HAProxy identifiers built from routes, named the way Docker Flow Proxy
//! named them so that its users find their way around.

use crate::model::Route;

/// `go-demo-be8080`.
pub fn backend(route: &Route) -> String {
    format!("{}-be{}", route.key(), route.port)
}

/// `url_go-demo8080`, with `_<n>` when the route has several paths.
pub fn path_acl(route: &Route, index: Option<usize>) -> String {
    match index {
        None => format!("url_{}{}", route.key(), route.port),
        Some(i) => format!("url_{}{}_{i}", route.key(), route.port),
    }
}

/// `domain_go-demo8080`.
pub fn domain_acl(route: &Route) -> String {
    format!("domain_{}{}", route.key(), route.port)
}

/// `url_exclude_go-demo8080`: the paths a route does not take, as DFP named it.
pub fn exclude_acl(route: &Route) -> String {
    format!("url_exclude_{}{}", route.key(), route.port)
}

/// `redirect_from_go-demo8080`: the hosts redirected to a route's domain.
pub fn redirect_from_acl(route: &Route) -> String {
    format!("redirect_from_{}{}", route.key(), route.port)
}

/// `hdr_go-demo8080_1`: the route's `n`-th header condition (from 1), as DFP numbers them.
pub fn header_acl(route: &Route, n: usize) -> String {
    format!("hdr_{}{}_{n}", route.key(), route.port)
}

/// `user_agent_go-demo8080`.
pub fn user_agent_acl(route: &Route) -> String {
    format!("user_agent_{}{}", route.key(), route.port)
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
