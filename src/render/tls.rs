//! The TLS parts of the config: `sni` frontends (TLS passed through, routed
//! by the client's server name), a route's second backend for requests that
//! arrived over HTTPS (`https_port`), and TLS to servers (`backend_tls`).

use std::collections::BTreeMap;

use super::{Section, backend};
use crate::desired::servers::TaskServer;
use crate::model::{BackendTls, Mode, Route, RoutesFile, TlsVerify, names};

/// How long an `sni` frontend waits for the client's TLS hello before it
/// gives up on routing the connection.
const HELLO_WAIT: &str = "5s";

/// One frontend per listen port of the `sni` routes, in port order.
pub(super) fn sni_frontends(file: &RoutesFile, routes: &[&Route]) -> Vec<Section> {
    let mut by_port: BTreeMap<u16, Vec<&Route>> = BTreeMap::new();
    for route in routes.iter().filter(|r| r.mode == Mode::Sni) {
        let port = route
            .listen_port
            .expect("validated: sni routes have a listen_port");
        by_port.entry(port).or_default().push(route);
    }
    by_port
        .into_iter()
        .map(|(port, routes)| sni_frontend(file, port, &routes))
        .collect()
}

/// `routes` share `port` (sorted by backend name, as given). Exact names are
/// tried before wildcards, and longer wildcard suffixes before shorter ones,
/// so that the most specific route wins whatever the order of the file.
fn sni_frontend(file: &RoutesFile, port: u16, routes: &[&Route]) -> Section {
    let mut frontend = Section::new(format!("frontend {}", names::sni_frontend(port)));
    frontend
        .line(format!("bind {}:{port}", file.defaults.bind_address))
        .line("mode tcp");
    // Validated: the routes of one port agree on it.
    if let Some(client) = routes.iter().find_map(|r| r.timeouts.client.as_ref()) {
        frontend.line(format!("timeout client {client}"));
    }
    frontend
        .line(format!("tcp-request inspect-delay {HELLO_WAIT}"))
        .line("tcp-request content accept if { req_ssl_hello_type 1 }");
    let mut wildcards: Vec<(String, String)> = Vec::new();
    for route in routes {
        let backend = names::backend(route);
        let mut exact: Vec<String> = Vec::new();
        for domain in &route.domains {
            match domain.wildcard_suffix() {
                Some(suffix) => wildcards.push((suffix.to_ascii_lowercase(), backend.clone())),
                None => exact.push(domain.0.to_ascii_lowercase()),
            }
        }
        exact.sort();
        exact.dedup();
        if !exact.is_empty() {
            frontend.line(format!(
                "use_backend {backend} if {{ req.ssl_sni -i {} }}",
                exact.join(" ")
            ));
        }
    }
    wildcards.sort_by(|(a, a_backend), (b, b_backend)| {
        b.len()
            .cmp(&a.len())
            .then_with(|| a.cmp(b))
            .then_with(|| a_backend.cmp(b_backend))
    });
    wildcards.dedup();
    for (suffix, backend) in wildcards {
        frontend.line(format!(
            "use_backend {backend} if {{ req.ssl_sni -i -m end {suffix} }}"
        ));
    }
    frontend
}

/// The `use_backend` line that sends a route's requests that arrived over
/// HTTPS to its `https_port` backend; `condition` is the route's own. It
/// goes right before the route's own line, so it has the route's precedence.
pub(super) fn https_port_rule(route: &Route, condition: &str) -> Option<String> {
    let backend = names::https_backend(route)?;
    Some(format!("use_backend {backend} if {{ ssl_fc }} {condition}"))
}

/// The backend of a route's `https_port`: the route's own settings, its
/// servers on `https_port` instead of `port`.
pub(super) fn https_port_backend(
    file: &RoutesFile,
    route: &Route,
    tasks: Option<&Vec<TaskServer>>,
) -> Option<Section> {
    let name = names::https_backend(route)?;
    let https_port = route.https_port?;
    let mut twin = route.clone();
    twin.port = https_port;
    // Only requests that came over HTTPS get here: nothing to redirect.
    twin.https_only = false;
    twin.redirect_code = None;
    for server in &mut twin.servers {
        if let Some((host, _)) = server.0.rsplit_once(':') {
            server.0 = format!("{host}:{https_port}");
        }
    }
    let mut section = backend(file, &twin, tasks);
    section.header = format!("backend {name}");
    Some(section)
}

/// The words of a `server` line that make HAProxy speak TLS to it.
pub(super) fn server_tls_options(tls: &BackendTls) -> Vec<String> {
    let mut options = vec!["ssl".to_string(), "verify".to_string()];
    match tls.verify {
        TlsVerify::None => options.push("none".into()),
        TlsVerify::Required => {
            options.push("required".into());
            if let Some(ca_file) = &tls.ca_file {
                options.extend(["ca-file".to_string(), ca_file.0.clone()]);
            }
        }
    }
    if let Some(name) = &tls.sni {
        // Health checks make connections of their own: same name, same certificate.
        options.extend([
            "sni".to_string(),
            format!("str({name})"),
            "check-sni".to_string(),
            name.0.clone(),
        ]);
        if tls.verify == TlsVerify::Required {
            options.extend(["verifyhost".to_string(), name.0.clone()]);
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use crate::model::validate::load;
    use crate::render::render;

    fn render_text(yaml: &str) -> String {
        render(&load("routes.yaml", yaml).unwrap()).to_string()
    }

    #[test]
    fn sni_routes_on_one_port_share_a_frontend_most_specific_first() {
        let cfg = render_text(
            "version: 1\nroutes:\n  - service: wild\n    port: 443\n    mode: sni\n    listen_port: 8443\n    domains: ['*.example.com']\n  - service: deep\n    port: 443\n    mode: sni\n    listen_port: 8443\n    domains: ['*.api.example.com']\n  - service: api\n    port: 8443\n    mode: sni\n    listen_port: 8443\n    domains: [API.example.com, b.com]\n    timeouts: {client: 1h}\n",
        );
        assert!(
            cfg.contains(
                "frontend sni_8443\n    bind *:8443\n    mode tcp\n    timeout client 1h\n    tcp-request inspect-delay 5s\n    tcp-request content accept if { req_ssl_hello_type 1 }\n    use_backend api-be8443 if { req.ssl_sni -i api.example.com b.com }\n    use_backend deep-be443 if { req.ssl_sni -i -m end .api.example.com }\n    use_backend wild-be443 if { req.ssl_sni -i -m end .example.com }\n"
            ),
            "{cfg}"
        );
        assert_eq!(cfg.matches("frontend sni_").count(), 1, "{cfg}");
        assert!(cfg.contains("backend api-be8443\n    mode tcp\n"), "{cfg}");
    }

    #[test]
    fn backend_tls_options_on_every_server() {
        let cfg = render_text(
            "version: 1\nroutes:\n  - service: a\n    port: 443\n    paths: [/a]\n    backend_tls: {verify: none}\n  - service: b\n    port: 443\n    paths: [/b]\n    servers: ['10.0.0.1:443', '10.0.0.2:443']\n    backend_tls: {verify: required, ca_file: /etc/ca.pem, sni: b.internal}\n",
        );
        assert!(
            cfg.contains("    server a a:443 ssl verify none\n"),
            "{cfg}"
        );
        for server in ["b-1 10.0.0.1:443", "b-2 10.0.0.2:443"] {
            assert!(
                cfg.contains(&format!("    server {server} ssl verify required ca-file /etc/ca.pem sni str(b.internal) check-sni b.internal verifyhost b.internal\n")),
                "{cfg}"
            );
        }
    }

    #[test]
    fn https_port_is_a_second_backend_for_requests_over_tls() {
        let cfg = render_text(
            "version: 1\nroutes:\n  - service: app\n    port: 8080\n    https_port: 8443\n    paths: [/app]\n    https_only: true\n    servers: ['10.0.0.1:8080']\n    request_headers: {set: {X-A: b}}\n",
        );
        assert!(
            cfg.contains(
                "    use_backend https-app-be8443 if { ssl_fc } url_app8080\n    use_backend app-be8080 if url_app8080\n"
            ),
            "{cfg}"
        );
        let https = cfg.split("backend https-app-be8443\n").nth(1).unwrap();
        let https = https.split("\n\n").next().unwrap();
        assert!(
            https.contains("http-request set-header X-A \"b\""),
            "{https}"
        );
        assert!(!https.contains("redirect"), "{https}");
        assert!(https.contains("server app-1 10.0.0.1:8443"), "{https}");
        assert!(cfg.contains("backend app-be8080\n"), "{cfg}");
    }
}
