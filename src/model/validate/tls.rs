//! Checks of the TLS fields: `sni` routes, `backend_tls`, `https_port`.

use std::collections::HashMap;

use super::{FieldPath, RouteAt, route_path};
use crate::model::diagnostics::excerpt;
use crate::model::{Duration, Mode, Route, TlsVerify, names};

/// What one route's TLS fields require and rule out.
pub(super) fn check_route_tls(
    route: &Route,
    at: &RouteAt,
    report: &mut impl FnMut(FieldPath, String),
) {
    if route.mode == Mode::Sni {
        if route.domains.is_empty() {
            report(
                at.key("domains"),
                "an sni route needs `domains`: the TLS server names (SNI) it serves".into(),
            );
        }
        if route.backend_tls.is_some() {
            report(
                at.key("backend_tls"),
                "does not apply to sni routes: the client's TLS passes through to the service untouched"
                    .into(),
            );
        }
    }
    if route.https_port.is_some() && route.mode != Mode::Http {
        report(
            at.key("https_port"),
            "`https_port` applies to http routes only".into(),
        );
    }
    let Some(tls) = &route.backend_tls else {
        return;
    };
    let at = at.key("backend_tls");
    match (tls.verify, &tls.ca_file) {
        (TlsVerify::Required, None) => report(
            at.key("ca_file"),
            "`verify: required` needs `ca_file`, the CA certificates the servers' certificates are checked against"
                .into(),
        ),
        (TlsVerify::None, Some(_)) => report(
            at.key("ca_file"),
            "only used with `verify: required`; `verify: none` checks no certificate".into(),
        ),
        _ => {}
    }
    if let Some(sni) = &tls.sni
        && sni.wildcard_suffix().is_some()
    {
        report(
            at.key("sni"),
            format!(
                "`{}` is a wildcard; the server name sent must be one name",
                excerpt(&sni.0)
            ),
        );
    }
}

/// The sni routes of one listen port share a frontend: each server name
/// routes to one of them, and they agree on the client timeout.
pub(super) fn check_sni_ports(routes: &[Route], report: &mut impl FnMut(FieldPath, String)) {
    let mut claims: HashMap<(u16, String), usize> = HashMap::new();
    let mut client_timeouts: HashMap<u16, (usize, &Duration)> = HashMap::new();
    for (index, route) in routes.iter().enumerate() {
        let (Mode::Sni, Some(port)) = (route.mode, route.listen_port) else {
            continue;
        };
        for (i, domain) in route.domains.iter().enumerate() {
            let key = (port, domain.0.to_ascii_lowercase());
            match claims.get(&key) {
                Some(&first) if first != index => report(
                    route_path(index).key("domains").index(i),
                    format!(
                        "`{}` on listen port {port} is already routed by routes[{first}] ({})",
                        excerpt(&domain.0),
                        routes[first].id()
                    ),
                ),
                Some(_) => {}
                None => {
                    claims.insert(key, index);
                }
            }
        }
        if let Some(client) = &route.timeouts.client {
            match client_timeouts.get(&port) {
                Some(&(first, other)) if other != client => report(
                    route_path(index).key("timeouts").key("client"),
                    format!(
                        "the sni routes on listen port {port} share one frontend, and routes[{first}] sets its client timeout to `{}`",
                        excerpt(&other.0)
                    ),
                ),
                Some(_) => {}
                None => {
                    client_timeouts.insert(port, (index, client));
                }
            }
        }
    }
}

/// The backend of an `https_port` must not take another backend's name.
pub(super) fn check_https_backend_names(
    routes: &[Route],
    report: &mut impl FnMut(FieldPath, String),
) {
    // Most tables have no https_port: nothing to compare then.
    if routes.iter().all(|r| r.https_port.is_none()) {
        return;
    }
    let mut backends: HashMap<String, usize> = routes
        .iter()
        .enumerate()
        .rev()
        .map(|(index, route)| (names::backend(route), index))
        .collect();
    for (index, route) in routes.iter().enumerate() {
        let Some(name) = names::https_backend(route) else {
            continue;
        };
        if let Some(&first) = backends.get(&name) {
            report(
                route_path(index).key("https_port"),
                format!(
                    "renders to the backend name `{name}` that routes[{first}] uses too; give one of them a distinct `name`"
                ),
            );
        } else {
            backends.insert(name, index);
        }
    }
}

#[cfg(test)]
mod tests {

    use crate::model::validate::tests::errors;

    fn sni(service: &str, port: u16, domains: &str) -> String {
        format!(
            "  - service: {service}\n    port: 443\n    mode: sni\n    listen_port: {port}\n    domains: {domains}\n"
        )
    }

    #[test]
    fn sni_routes_share_a_port_but_not_a_name() {
        let ok = format!(
            "version: 1\nroutes:\n{}{}",
            sni("a", 8443, "[a.com]"),
            sni("b", 8443, "[b.com, '*.a.com']")
        );
        assert_eq!(errors(&ok), Vec::<String>::new());
        let clash = format!(
            "version: 1\nroutes:\n{}{}{}",
            sni("a", 8443, "[a.com]"),
            sni("b", 8443, "[b.com, A.com]"),
            sni("c", 9443, "[a.com]")
        );
        assert_eq!(
            errors(&clash),
            [
                "routes.yaml:12:22: routes[1].domains[1]: `A.com` on listen port 8443 is already routed by routes[0] (a:443)"
            ]
        );
    }

    #[test]
    fn sni_ports_clash_with_other_listeners() {
        let text = format!(
            "version: 1\ndefaults:\n  http_port: 8080\n  https:\n    port: 8443\n    certificates: /c.pem\n  stats:\n    port: 9000\nroutes:\n{}{}{}  - service: db\n    port: 5432\n    mode: tcp\n    listen_port: 7000\n",
            sni("a", 8080, "[a.com]"),
            sni("b", 8443, "[b.com]"),
            sni("c", 7000, "[c.com]"),
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].ends_with(
                "routes[0].listen_port: port 8080 is already used by defaults.http_port"
            ),
            "{errors:#?}"
        );
        assert!(
            errors[1].ends_with(
                "routes[1].listen_port: port 8443 is already used by defaults.https.port"
            ),
            "{errors:#?}"
        );
        assert!(
            errors[2].ends_with(
                "routes[3].listen_port: port 7000 is already used by routes[2].listen_port"
            ),
            "{errors:#?}"
        );
    }

    #[test]
    fn sni_routes_need_domains_and_a_port_and_take_no_http_fields() {
        let text = "version: 1\nroutes:\n  - service: a\n    port: 443\n    mode: sni\n    paths: [/a]\n    backend_tls: {verify: none}\n    https_port: 8443\n";
        let errors = errors(text);
        let fields: Vec<&str> = errors
            .iter()
            .map(|e| e.split(": ").nth(1).unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "routes[0].domains",
                "routes[0].listen_port",
                "routes[0].paths",
                "routes[0].backend_tls",
                "routes[0].https_port",
            ],
            "{errors:#?}"
        );
        assert!(errors[0].contains("needs `domains`"), "{errors:#?}");
        assert!(
            errors[1].contains("an sni route needs `listen_port`"),
            "{errors:#?}"
        );
    }

    #[test]
    fn sni_routes_of_a_port_agree_on_the_client_timeout() {
        let text = format!(
            "version: 1\nroutes:\n{}    timeouts: {{client: 1h}}\n{}    timeouts: {{client: 2h}}\n{}    timeouts: {{client: 1h}}\n",
            sni("a", 8443, "[a.com]"),
            sni("b", 8443, "[b.com]"),
            sni("c", 8443, "[c.com]")
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("routes[1].timeouts.client: the sni routes on listen port 8443 share one frontend, and routes[0] sets its client timeout to `1h`"),
            "{errors:#?}"
        );
    }

    #[test]
    fn backend_tls_verify_needs_its_ca_file() {
        let route = |tls: &str| {
            format!(
                "version: 1\nroutes:\n  - service: a\n    port: 443\n    paths: [/a]\n    backend_tls: {tls}\n"
            )
        };
        assert_eq!(errors(&route("{verify: none}")), Vec::<String>::new());
        assert_eq!(
            errors(&route(
                "{verify: required, ca_file: /ca.pem, sni: a.internal}"
            )),
            Vec::<String>::new()
        );
        let needs = errors(&route("{verify: required}"));
        assert!(
            needs.len() == 1
                && needs[0].contains("backend_tls.ca_file: `verify: required` needs `ca_file`"),
            "{needs:#?}"
        );
        let unused = errors(&route("{verify: none, ca_file: /ca.pem}"));
        assert!(
            unused.len() == 1 && unused[0].contains("backend_tls.ca_file: only used with"),
            "{unused:#?}"
        );
        let wildcard = errors(&route("{verify: none, sni: '*.a.com'}"));
        assert!(
            wildcard.len() == 1 && wildcard[0].contains("backend_tls.sni: `*.a.com` is a wildcard"),
            "{wildcard:#?}"
        );
        let unknown = errors(&route("{verify: maybe}"));
        assert!(
            unknown.len() == 1 && unknown[0].contains("backend_tls.verify"),
            "{unknown:#?}"
        );
    }

    #[test]
    fn https_port_is_for_http_routes_with_a_backend_name_of_their_own() {
        let tcp = "version: 1\nroutes:\n  - service: db\n    port: 5432\n    mode: tcp\n    listen_port: 15432\n    https_port: 5433\n";
        assert!(
            errors(tcp)[0]
                .contains("routes[0].https_port: `https_port` applies to http routes only"),
            "{:#?}",
            errors(tcp)
        );
        let clash = "version: 1\nroutes:\n  - service: app\n    port: 80\n    https_port: 443\n    paths: [/a]\n  - service: https-app\n    port: 443\n    paths: [/b]\n  - name: app2\n    service: app\n    port: 81\n    https_port: 443\n    paths: [/c]\n";
        assert_eq!(
            errors(clash),
            [
                "routes.yaml:5:17: routes[0].https_port: renders to the backend name `https-app-be443` that routes[1] uses too; give one of them a distinct `name`"
            ]
        );
    }
}
