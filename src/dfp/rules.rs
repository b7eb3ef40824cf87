//! Docker Flow Proxy's request-rule parameters: `servicePathExclude`,
//! `redirectFromDomain`, `allowedMethods`, `deniedMethods`, `denyHttp` (per
//! destination), and `isDefaultBackend`, `redirectWhenHttpProto`,
//! `redirectUnlessHttpsProto` (per service).

use super::error::ParamProblem;
use super::params::{Given, Params};
use super::translate::Sources;
use super::values::{bool_value, domains_value, paths_value};
use crate::model::diagnostics::excerpt;
use crate::model::{HttpsRedirectWhen, Method, Mode, PathMatch, Route};

/// A destination's own rule parameters (or their unindexed fallbacks).
pub(super) struct DestRules<'a> {
    pub(super) exclude: Option<&'a Given>,
    pub(super) redirect_from: Option<&'a Given>,
    pub(super) allowed: Option<&'a Given>,
    pub(super) denied: Option<&'a Given>,
    pub(super) deny_http: Option<&'a Given>,
}

impl DestRules<'_> {
    /// Sets them on the destination's route; excluded paths match as `path_match`.
    pub(super) fn apply(
        &self,
        route: &mut Route,
        path_match: PathMatch,
        problems: &mut Vec<ParamProblem>,
    ) {
        if let Some(given) = self.exclude {
            route.exclude_paths = given
                .parse(problems, |v| paths_value(v, path_match))
                .unwrap_or_default();
        }
        if let Some(given) = self.redirect_from {
            route.redirect_from = given.parse(problems, domains_value).unwrap_or_default();
        }
        if let Some(given) = self.allowed {
            route.allowed_methods = given.parse(problems, methods_value).unwrap_or_default();
        }
        if let Some(given) = self.denied {
            route.denied_methods = given.parse(problems, methods_value).unwrap_or_default();
        }
        route.deny_http = self
            .deny_http
            .and_then(|g| g.parse(problems, bool_value))
            .unwrap_or(false);
    }
}

/// DFP's methods: `GET,DELETE`.
fn methods_value(value: &str) -> Result<Vec<Method>, String> {
    let mut methods = Vec::new();
    for item in value.split(',').map(|i| i.trim_matches(' ')) {
        let method: Method = item.parse().map_err(|_| {
            let upper = item.to_ascii_uppercase();
            if upper != item && upper.parse::<Method>().is_ok() {
                format!("`{}`: methods are case-sensitive; write `{upper}`", excerpt(item))
            } else {
                format!(
                    "`{}` is not a method: upper-case letters and digits, with inner `-` or `_` (`GET`)",
                    excerpt(item)
                )
            }
        })?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    Ok(methods)
}

/// The service-wide rule flags, applied to its http destinations.
pub(super) struct ServiceRules<'a> {
    /// `isDefaultBackend=true`.
    default_backend: Option<&'a Given>,
    /// `redirectWhenHttpProto=true` or `redirectUnlessHttpsProto=true`.
    https_redirect: Option<(HttpsRedirectWhen, &'a Given)>,
}

impl<'a> ServiceRules<'a> {
    /// Reads the flags; `true` without an http destination is a problem.
    pub(super) fn read(
        params: &'a Params,
        any_http: bool,
        problems: &mut Vec<ParamProblem>,
    ) -> Self {
        let mut flag = |base: &'static str| {
            let given = params.take(base)?;
            if given.parse(problems, bool_value) != Some(true) {
                return None;
            }
            if !any_http {
                problems.push(given.problem(
                    "has no effect: it applies to http destinations, and there is none it could apply to",
                ));
                return None;
            }
            Some(given)
        };
        let default_backend = flag("isDefaultBackend");
        let when_http = flag("redirectWhenHttpProto");
        let unless_https = flag("redirectUnlessHttpsProto");
        let https_redirect = match (when_http, unless_https) {
            (Some(when), Some(unless)) => {
                problems.push(unless.problem(format!(
                    "conflicts with `{}`: capstan redirects on one condition; send one",
                    when.name
                )));
                None
            }
            (Some(when), None) => Some((HttpsRedirectWhen::XForwardedProtoHttp, when)),
            (None, Some(unless)) => Some((HttpsRedirectWhen::XForwardedProtoNotHttps, unless)),
            (None, None) => None,
        };
        ServiceRules {
            default_backend,
            https_redirect,
        }
    }

    /// Sets the flags on the http routes, recording where they came from.
    pub(super) fn apply(
        &self,
        routes: &mut [Route],
        sources: &mut [Sources],
        problems: &mut Vec<ParamProblem>,
    ) {
        let http: Vec<usize> = (0..routes.len())
            .filter(|&i| routes[i].mode == Mode::Http)
            .collect();
        if let Some((when, given)) = self.https_redirect {
            let mut conflict = false;
            for &i in &http {
                conflict |= routes[i].https_only;
                routes[i].https_only = true;
                routes[i].https_redirect_when = when;
                // Diagnostics about the condition name the flag sent.
                sources[i].insert("redirectWhenHttpProto", given.name.clone());
            }
            if conflict {
                problems.push(given.problem(
                    "conflicts with `httpsOnly`: capstan redirects on one condition, the connection not being TLS (`httpsOnly`) or this one; send one",
                ));
            }
        }
        if let Some(given) = self.default_backend {
            match http.as_slice() {
                [only] => {
                    routes[*only].default_backend = true;
                    sources[*only].insert("isDefaultBackend", given.name.clone());
                }
                several => problems.push(given.problem(format!(
                    "applies to one destination, and this service has {} http destinations: only one route takes the requests no route matches",
                    several.len()
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dfp::{DfpError, Reconfigure, parse_reconfigure, query};
    use crate::model::{Domain, RoutesFile, UrlPath};
    use crate::render;

    fn ok(q: &str) -> Reconfigure {
        parse_reconfigure(&query(q)).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    /// A 400 about `param` whose message names it; the message.
    fn bad(q: &str, param: &str) -> String {
        let e: DfpError = match parse_reconfigure(&query(q)) {
            Ok(r) => panic!("{q} was accepted: {:#?}", r.routes),
            Err(e) => e,
        };
        assert_eq!(e.status_code(), 400, "{q}: {e}");
        assert!(
            e.params().iter().any(|p| p == param),
            "{q}: {e} is not about `{param}` but {:?}",
            e.params()
        );
        e.to_string()
    }

    fn config(r: &Reconfigure) -> String {
        let mut file = RoutesFile::empty();
        file.routes = r.routes.clone();
        render::render(&file).to_string()
    }

    #[test]
    fn excluded_paths_negate_the_route_condition() {
        let r =
            ok("serviceName=a&port=80&servicePath=/a&servicePathExclude=/a/internal,/a/metrics");
        assert_eq!(
            r.routes[0].exclude_paths,
            [UrlPath("/a/internal".into()), UrlPath("/a/metrics".into())]
        );
        assert_eq!(
            r.echo.service_dest[0].service_path_exclude,
            ["/a/internal", "/a/metrics"]
        );
        let cfg = config(&r);
        assert!(
            cfg.contains("    acl url_exclude_a80 path_beg /a/internal\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("    use_backend a-be80 if url_a80 !url_exclude_a80\n"),
            "{cfg}"
        );
        // Indexed, and following `pathType`.
        let r = ok(
            "serviceName=a&pathType=path_reg&port=80&servicePath=^/a&port.1=81&servicePath.1=^/b&servicePathExclude.1=^/b/x",
        );
        assert!(r.routes[0].exclude_paths.is_empty());
        assert_eq!(r.routes[1].exclude_paths, [UrlPath("^/b/x".into())]);
        assert!(config(&r).contains("acl url_exclude_a81 path_reg ^/b/x\n"));

        let message = bad(
            "serviceName=a&port=80&servicePath=/a&servicePathExclude=/b",
            "servicePathExclude",
        );
        assert!(message.contains("under none"), "{message}");
        bad(
            "serviceName=a&port=80&servicePath=/a&servicePathExclude=/a/x y",
            "servicePathExclude",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&servicePathExclude=/a\\x00",
            "servicePathExclude",
        );
    }

    #[test]
    fn redirected_domains_go_to_the_first_service_domain() {
        let r = ok(
            "serviceName=a&port=80&serviceDomain=new.com,www.new.com&redirectFromDomain=old.com,*.old.com",
        );
        assert_eq!(
            r.routes[0].redirect_from,
            [Domain("old.com".into()), Domain("*.old.com".into())]
        );
        assert_eq!(
            r.echo.service_dest[0].redirect_from_domain,
            ["old.com", "*.old.com"]
        );
        let cfg = config(&r);
        assert!(
            cfg.contains("    http-request redirect prefix http://new.com code 301 if redirect_from_a80 !{ ssl_fc }\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("    acl redirect_from_a80 hdr(host),field(1,:) -i -m end .old.com\n"),
            "{cfg}"
        );
        let message = bad(
            "serviceName=a&port=80&servicePath=/a&redirectFromDomain=old.com",
            "redirectFromDomain",
        );
        assert!(message.contains("needs `domains`"), "{message}");
        let message = bad(
            "serviceName=a&port=80&serviceDomain=new.com&redirectFromDomain=*.new.com,new.com",
            "redirectFromDomain",
        );
        assert!(message.contains("own domain"), "{message}");
        bad(
            "serviceName=a&port=80&serviceDomain=new.com&redirectFromDomain=old.com:80",
            "redirectFromDomain",
        );
    }

    #[test]
    fn methods_and_plain_http_are_refused() {
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&allowedMethods=GET,DELETE&deniedMethods=PUT&denyHttp=true",
        );
        let route = &r.routes[0];
        assert_eq!(
            route.allowed_methods,
            [Method("GET".into()), Method("DELETE".into())]
        );
        assert_eq!(route.denied_methods, [Method("PUT".into())]);
        assert!(route.deny_http);
        let dest = &r.echo.service_dest[0];
        assert_eq!(
            (
                dest.allowed_methods.as_slice(),
                dest.denied_methods.as_slice(),
                dest.deny_http
            ),
            (
                &["GET".to_string(), "DELETE".to_string()][..],
                &["PUT".to_string()][..],
                true
            )
        );
        let cfg = config(&r);
        assert!(
            cfg.contains("    http-request deny if !{ ssl_fc }\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("    http-request deny unless { method DELETE GET }\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("    http-request deny if { method PUT }\n"),
            "{cfg}"
        );

        bad(
            "serviceName=a&port=80&servicePath=/a&allowedMethods=get",
            "allowedMethods",
        );
        let message = bad(
            "serviceName=a&port=80&servicePath=/a&allowedMethods=GET&deniedMethods=GET",
            "deniedMethods",
        );
        assert!(message.contains("allowed_methods"), "{message}");
        bad(
            "serviceName=a&port=80&servicePath=/a&denyHttp=maybe",
            "denyHttp",
        );
        // Not on a tcp destination.
        bad(
            "serviceName=a&port=80&servicePath=/a&port.1=5432&reqMode.1=tcp&srcPort.1=15432&deniedMethods.1=PUT",
            "deniedMethods.1",
        );
    }

    #[test]
    fn the_default_backend_is_one_http_destination() {
        let r = ok("serviceName=a&port=80&servicePath=/a&isDefaultBackend=true");
        assert!(r.routes[0].default_backend);
        assert!(r.echo.is_default_backend);
        assert!(config(&r).contains("    default_backend a-be80\n"));
        // With a tcp destination beside it.
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&isDefaultBackend=true&port.1=5432&reqMode.1=tcp&srcPort.1=15432",
        );
        assert!(r.routes[0].default_backend && !r.routes[1].default_backend);
        let message = bad(
            "serviceName=a&port=80&servicePath=/a&port.1=81&servicePath.1=/b&isDefaultBackend=true",
            "isDefaultBackend",
        );
        assert!(message.contains("2 http destinations"), "{message}");
        bad(
            "serviceName=a&port=5432&reqMode=tcp&srcPort=15432&isDefaultBackend=true",
            "isDefaultBackend",
        );
        ok("serviceName=a&port=5432&reqMode=tcp&srcPort=15432&isDefaultBackend=false");
        // Another route is the default already.
        let mut table = RoutesFile::empty();
        let mut other = Route::new("b", 80);
        other.paths = vec![UrlPath("/b".into())];
        other.default_backend = true;
        table.routes.push(other);
        let e = ok("serviceName=a&port=80&servicePath=/a&isDefaultBackend=true")
            .validate_in(&table)
            .unwrap_err();
        assert_eq!(e.params(), ["isDefaultBackend"], "{e}");
        assert!(e.to_string().contains("(b:80)"), "{e}");
    }

    #[test]
    fn forwarded_proto_redirects() {
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&redirectWhenHttpProto=true&httpsRedirectCode=301",
        );
        let route = &r.routes[0];
        assert!(route.https_only);
        assert_eq!(
            route.https_redirect_when,
            HttpsRedirectWhen::XForwardedProtoHttp
        );
        assert!(r.echo.redirect_when_http_proto && !r.echo.redirect_unless_https_proto);
        assert!(!r.echo.https_only && !r.echo.service_dest[0].https_only);
        assert!(config(&r).contains(
            "    http-request redirect scheme https code 301 if { req.hdr(x-forwarded-proto,-1) -i http }\n"
        ));
        let r = ok("serviceName=a&port=80&servicePath=/a&redirectUnlessHttpsProto=true");
        assert_eq!(
            r.routes[0].https_redirect_when,
            HttpsRedirectWhen::XForwardedProtoNotHttps
        );
        assert!(r.echo.redirect_unless_https_proto);
        assert!(config(&r).contains(
            "    http-request redirect scheme https code 302 unless { req.hdr(x-forwarded-proto,-1) -i https }\n"
        ));
        let r = ok("serviceName=a&port=80&servicePath=/a&httpsOnly=true");
        assert!(r.echo.https_only && !r.echo.redirect_when_http_proto);

        bad(
            "serviceName=a&port=80&servicePath=/a&redirectWhenHttpProto=true&httpsOnly=true",
            "redirectWhenHttpProto",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&redirectWhenHttpProto=true&redirectUnlessHttpsProto=true",
            "redirectUnlessHttpsProto",
        );
        bad(
            "serviceName=a&port=5432&reqMode=tcp&srcPort=15432&redirectUnlessHttpsProto=true",
            "redirectUnlessHttpsProto",
        );
        ok(
            "serviceName=a&port=80&servicePath=/a&redirectWhenHttpProto=false&redirectUnlessHttpsProto=false",
        );
    }

    #[test]
    fn methods_are_upper_case_tokens() {
        let methods = methods_value("GET, DELETE,GET,M-SEARCH").unwrap();
        let names: Vec<&str> = methods.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["GET", "DELETE", "M-SEARCH"]);
        let message = methods_value("get").unwrap_err();
        assert!(message.contains("write `GET`"), "{message}");
        for bad in ["", "GET,", "G ET", "GET;", "-GET", "GET%", "GE\\T"] {
            assert!(methods_value(bad).is_err(), "{bad}");
        }
    }
}
