//! A route's request rules beyond where it routes: the paths it leaves to
//! other routes, hosts redirected to its domain, the default backend, the
//! HTTPS redirect, and the requests it refuses (plain HTTP, methods).

use super::conditions::host_acls;
use super::{Section, path_match_words};
use crate::model::{DomainMatch, HttpsRedirectWhen, Mode, Route, names};

/// The route's `exclude_paths` ACL, and its `redirect_from` redirects, in
/// the http frontend. The redirects keep path, query and scheme.
pub(super) fn frontend_lines(frontend: &mut Section, route: &Route) {
    if !route.exclude_paths.is_empty() {
        let mut paths: Vec<&str> = route.exclude_paths.iter().map(|p| p.0.as_str()).collect();
        paths.sort_unstable();
        paths.dedup();
        let acl = names::exclude_acl(route);
        for path in paths {
            frontend.line(format!(
                "acl {acl} {}",
                path_match_words(route.path_match, path)
            ));
        }
    }
    // Validated: a route with `redirect_from` has an exact first domain.
    if let Some(target) = route
        .domains
        .first()
        .filter(|_| !route.redirect_from.is_empty())
    {
        let acl = names::redirect_from_acl(route);
        host_acls(frontend, &acl, &route.redirect_from, DomainMatch::Exact);
        let target = target.0.to_ascii_lowercase();
        for (scheme, tls) in [("https", ""), ("http", "!")] {
            frontend.line(format!(
                "http-request redirect prefix {scheme}://{target} code 301 if {acl} {tls}{{ ssl_fc }}"
            ));
        }
    }
}

/// `!url_exclude_<route>` for the route's `use_backend` condition, when it excludes paths.
pub(super) fn exclusion(route: &Route) -> Option<String> {
    (!route.exclude_paths.is_empty()).then(|| format!("!{}", names::exclude_acl(route)))
}

/// `default_backend` of the http frontend: the route that says so (validated: at most one).
pub(super) fn default_backend(frontend: &mut Section, routes: &[&Route]) {
    if let Some(route) = routes
        .iter()
        .find(|r| r.mode == Mode::Http && r.default_backend)
    {
        frontend.line(format!("default_backend {}", names::backend(route)));
    }
}

/// The HTTPS redirect, then the refusals (403), in the route's backend:
/// before authentication, as Docker Flow Proxy ordered them.
pub(super) fn backend_lines(backend: &mut Section, route: &Route) {
    if route.https_only {
        let code = route.redirect_code.map_or(302, u16::from);
        // The last `X-Forwarded-Proto` is the one the nearest proxy set.
        let condition = match route.https_redirect_when {
            HttpsRedirectWhen::NotTls => "if !{ ssl_fc }",
            HttpsRedirectWhen::XForwardedProtoHttp => {
                "if { req.hdr(x-forwarded-proto,-1) -i http }"
            }
            HttpsRedirectWhen::XForwardedProtoNotHttps => {
                "unless { req.hdr(x-forwarded-proto,-1) -i https }"
            }
        };
        backend.line(format!(
            "http-request redirect scheme https code {code} {condition}"
        ));
    }
    if route.deny_http {
        backend.line("http-request deny if !{ ssl_fc }");
    }
    for (methods, verb) in [
        (&route.allowed_methods, "unless"),
        (&route.denied_methods, "if"),
    ] {
        if methods.is_empty() {
            continue;
        }
        let mut methods: Vec<&str> = methods.iter().map(|m| m.0.as_str()).collect();
        methods.sort_unstable();
        methods.dedup();
        backend.line(format!(
            "http-request deny {verb} {{ method {} }}",
            methods.join(" ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::model::validate::load;
    use crate::render::render;

    fn render_text(routes: &str) -> String {
        let text = format!("version: 1\nroutes:\n{routes}");
        render(&load("routes.yaml", &text).unwrap_or_else(|d| panic!("{d}"))).to_string()
    }

    #[test]
    fn excluded_paths_leave_the_rule_to_later_routes() {
        let cfg = render_text(
            "  - service: api\n    port: 80\n    paths: [/api]\n    exclude_paths: [/api/internal, /api/admin]\n  - service: site\n    port: 80\n    domains: [a.com]\n    exclude_paths: [/metrics]\n",
        );
        assert!(
            cfg.contains("    acl url_exclude_api80 path_beg /api/admin\n    acl url_exclude_api80 path_beg /api/internal\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("    use_backend api-be80 if url_api80 !url_exclude_api80\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("    use_backend site-be80 if !url_exclude_site80 domain_site80\n"),
            "{cfg}"
        );
    }

    #[test]
    fn a_default_backend_alone_has_no_use_backend_rule() {
        let text = "version: 1\nroutes:\n  - service: api\n    port: 80\n    paths: [/api]\n  - service: fallback\n    port: 80\n    default_backend: true\n";
        let config = render(&load("routes.yaml", text).unwrap());
        assert_eq!(
            config.routing(),
            [
                "path,map_beg(prefix.map): /api api-be80",
                "default_backend fallback-be80"
            ]
        );
    }

    #[test]
    fn redirected_hosts_keep_scheme_path_and_query() {
        let cfg = render_text(
            "  - service: site\n    port: 80\n    domains: [New.example.com, www.example.com]\n    redirect_from: [old.example.com, '*.old.example.com']\n",
        );
        for line in [
            "acl redirect_from_site80 hdr(host),field(1,:) -i -m str old.example.com",
            "acl redirect_from_site80 hdr(host),field(1,:) -i -m end .old.example.com",
            "http-request redirect prefix https://new.example.com code 301 if redirect_from_site80 { ssl_fc }",
            "http-request redirect prefix http://new.example.com code 301 if redirect_from_site80 !{ ssl_fc }",
        ] {
            assert!(cfg.contains(&format!("    {line}\n")), "{line}\n{cfg}");
        }
        // Before every `use_backend`: HAProxy runs `http-request` rules first anyway, and warns otherwise.
        let redirect = cfg.find("http-request redirect").unwrap();
        assert!(redirect < cfg.find("use_backend").unwrap(), "{cfg}");
    }

    #[test]
    fn redirect_then_refusals_then_auth() {
        let cfg = render_text(
            "  - service: api\n    port: 80\n    paths: [/api]\n    https_only: true\n    https_redirect_when: x_forwarded_proto_not_https\n    deny_http: true\n    allowed_methods: [POST, GET, GET]\n    denied_methods: [DELETE]\n    auth:\n      userlist: ops\nuserlists:\n  ops: []\n",
        );
        assert!(
            cfg.contains(concat!(
                "    http-request redirect scheme https code 302 unless { req.hdr(x-forwarded-proto,-1) -i https }\n",
                "    http-request deny if !{ ssl_fc }\n",
                "    http-request deny unless { method GET POST }\n",
                "    http-request deny if { method DELETE }\n",
                "    http-request auth realm capstan unless { http_auth(ops) }\n",
            )),
            "{cfg}"
        );
        let cfg = render_text(
            "  - service: api\n    port: 80\n    paths: [/api]\n    https_only: true\n    redirect_code: 301\n",
        );
        assert!(
            cfg.contains("    http-request redirect scheme https code 301 if !{ ssl_fc }\n"),
            "{cfg}"
        );
    }
}
