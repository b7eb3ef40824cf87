//! Checks of a route's request rules: `exclude_paths`, `redirect_from`,
//! `default_backend`, `https_redirect_when` and the method lists.

use super::{RouteAt, literal_word_problem, regex_problem, route_path};
use crate::model::diagnostics::{FieldPath, excerpt};
use crate::model::{Domain, HttpsRedirectWhen, Mode, PathMatch, Route};

/// What one route's rules require of the route itself.
pub(super) fn check_route(index: usize, route: &Route, report: &mut impl FnMut(FieldPath, String)) {
    let at = RouteAt(index);
    check_exclude_paths(route, &at, report);
    if !route.redirect_from.is_empty() {
        match route.domains.first() {
            None => report(
                at.key("redirect_from"),
                "needs `domains`: requests are redirected to the first of them".into(),
            ),
            Some(first) if first.wildcard_suffix().is_some() => report(
                at.key("redirect_from"),
                format!(
                    "redirects go to the first of `domains`, and `{}` is a wildcard: put an exact domain first",
                    excerpt(&first.0)
                ),
            ),
            Some(_) => {}
        }
    }
    if route.https_redirect_when != HttpsRedirectWhen::NotTls && !route.https_only {
        report(
            at.key("https_redirect_when"),
            "only used with `https_only: true`".into(),
        );
    }
    for (i, method) in route.denied_methods.iter().enumerate() {
        if route.allowed_methods.contains(method) {
            report(
                at.key("denied_methods").index(i),
                format!(
                    "`{}` is in `allowed_methods` too; list it in one of them",
                    method.0
                ),
            );
        }
    }
}

fn check_exclude_paths(route: &Route, at: &RouteAt, report: &mut impl FnMut(FieldPath, String)) {
    if route.exclude_paths.is_empty() {
        return;
    }
    if route.paths.is_empty() && route.domains.is_empty() {
        report(
            at.key("exclude_paths"),
            "needs `paths` or `domains` to exclude from".into(),
        );
        return;
    }
    for (i, exclude) in route.exclude_paths.iter().enumerate() {
        let field = at.key("exclude_paths").index(i);
        let problem = match route.path_match {
            PathMatch::Regex => regex_problem(&exclude.0),
            PathMatch::Exact => Some(
                "with `path_match: exact` the route takes only its own paths: remove one from `paths` instead"
                    .into(),
            ),
            PathMatch::Prefix if !exclude.0.starts_with('/') => {
                Some(format!("`{}` must start with `/`", excerpt(&exclude.0)))
            }
            PathMatch::Prefix => literal_word_problem(&exclude.0).or_else(|| {
                let under = route.paths.is_empty()
                    || route.paths.iter().any(|p| exclude.0.starts_with(&p.0));
                (!under).then(|| {
                    format!(
                        "`{}` is under none of the route's `paths`, so excluding it changes nothing",
                        excerpt(&exclude.0)
                    )
                })
            }),
        };
        if let Some(problem) = problem {
            report(field, problem);
        }
    }
}

/// What the rules require of the whole table: one default backend, and
/// redirects that take no other route's (or their own route's) host.
pub(super) fn check_table(routes: &[Route], report: &mut impl FnMut(FieldPath, String)) {
    let defaults: Vec<usize> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.mode == Mode::Http && r.default_backend)
        .map(|(i, _)| i)
        .collect();
    if let [first, others @ ..] = defaults.as_slice() {
        for &other in others {
            report(
                route_path(other).key("default_backend"),
                format!(
                    "routes[{first}] ({}) is the default backend already: only one route takes the requests no route matches",
                    routes[*first].id()
                ),
            );
        }
    }
    check_redirects(routes, report);
}

fn check_redirects(routes: &[Route], report: &mut impl FnMut(FieldPath, String)) {
    let redirecting: Vec<(usize, &Route)> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.mode == Mode::Http && !r.redirect_from.is_empty())
        .collect();
    for &(index, route) in &redirecting {
        for (k, from) in route.redirect_from.iter().enumerate() {
            let field = route_path(index).key("redirect_from").index(k);
            let served = routes.iter().enumerate().find_map(|(s, server)| {
                let domain = server
                    .domains
                    .iter()
                    .find(|d| server.mode == Mode::Http && covers(from, d))?;
                Some((s, server, domain))
            });
            if let Some((s, server, domain)) = served {
                let whose = if s == index {
                    "this route's own domain".to_string()
                } else {
                    format!("a domain of routes[{s}] ({})", server.id())
                };
                report(
                    field,
                    format!(
                        "`{}` takes `{}`, {whose}: its requests would be redirected instead of routed",
                        excerpt(&from.0),
                        excerpt(&domain.0)
                    ),
                );
                continue;
            }
            let target = route.domains.first();
            let elsewhere = redirecting.iter().find_map(|&(o, other)| {
                let same = other.redirect_from.iter().find(|f| {
                    o < index
                        && (covers(from, f) || covers(f, from))
                        && other.domains.first() != target
                })?;
                Some((o, other, same))
            });
            if let Some((o, other, same)) = elsewhere {
                report(
                    field,
                    format!(
                        "`{}` overlaps `{}`, which routes[{o}] ({}) redirects elsewhere",
                        excerpt(&from.0),
                        excerpt(&same.0),
                        other.id()
                    ),
                );
            }
        }
    }
}

/// Whether every host `domain` matches is a host `from` matches (case and
/// a trailing port ignored, as routing ignores them).
fn covers(from: &Domain, domain: &Domain) -> bool {
    let lower = |d: &Domain| d.0.to_ascii_lowercase();
    match (from.wildcard_suffix(), domain.wildcard_suffix()) {
        (None, None) => lower(from) == lower(domain),
        (None, Some(_)) => false,
        (Some(suffix), None) => lower(domain).ends_with(&suffix.to_ascii_lowercase()),
        (Some(suffix), Some(inner)) => inner
            .to_ascii_lowercase()
            .ends_with(&suffix.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(d: &str) -> Domain {
        Domain(d.into())
    }

    #[test]
    fn wildcards_cover_their_subdomains_only() {
        assert!(covers(&domain("A.com"), &domain("a.COM")));
        assert!(!covers(&domain("a.com"), &domain("*.a.com")));
        assert!(covers(&domain("*.a.com"), &domain("x.a.com")));
        assert!(covers(&domain("*.a.com"), &domain("*.x.a.com")));
        assert!(!covers(&domain("*.a.com"), &domain("a.com")));
        assert!(!covers(&domain("*.a.com"), &domain("xa.com")));
    }
}

#[cfg(test)]
mod file_tests {
    use crate::model::validate::load;

    fn errors(routes: &str) -> Vec<String> {
        crate::model::validate::tests::errors(&format!("version: 1\nroutes:\n{routes}"))
    }

    const API: &str = "  - service: api\n    port: 80\n    paths: [/api]\n";

    #[test]
    fn one_default_backend_named_in_the_error() {
        assert_eq!(
            errors(&format!(
                "{API}    default_backend: true\n  - service: b\n    port: 80\n    default_backend: true\n"
            )),
            [
                "routes.yaml:9:22: routes[1].default_backend: routes[0] (api:80) is the default backend already: only one route takes the requests no route matches"
            ]
        );
        assert!(errors("  - service: b\n    port: 80\n    default_backend: true\n").is_empty());
        let tcp = errors(
            "  - service: db\n    port: 5432\n    mode: tcp\n    listen_port: 15432\n    default_backend: true\n    deny_http: true\n    allowed_methods: [GET]\n",
        );
        assert_eq!(tcp.len(), 3, "{tcp:#?}");
        assert!(
            tcp.iter()
                .all(|e| e.contains("applies to http routes only")),
            "{tcp:#?}"
        );
    }

    #[test]
    fn redirects_need_an_exact_first_domain_and_take_no_served_host() {
        let site = "  - service: site\n    port: 80\n";
        let message = |routes: &str| errors(routes).join("\n");
        assert!(
            message(&format!(
                "{site}    paths: [/]\n    redirect_from: [old.com]\n"
            ))
            .contains("routes[0].redirect_from: needs `domains`")
        );
        assert!(
            message(&format!(
                "{site}    domains: ['*.a.com']\n    redirect_from: [old.com]\n"
            ))
            .contains("is a wildcard: put an exact domain first")
        );
        assert!(
            message(&format!(
                "{site}    domains: [www.a.com]\n    redirect_from: ['*.a.com']\n"
            ))
            .contains(
                "routes[0].redirect_from[0]: `*.a.com` takes `www.a.com`, this route's own domain"
            )
        );
        assert!(
            message(&format!(
                "{site}    domains: [a.com]\n    redirect_from: [OLD.com]\n  - service: old\n    port: 80\n    domains: [old.com]\n"
            ))
            .contains("a domain of routes[1] (old:80)")
        );
        // Two routes redirecting the same host: fine to one place, not to two.
        let two = |second: &str| {
            format!(
                "{site}    domains: [a.com]\n    paths: [/x]\n    redirect_from: [x.old.com]\n  - service: other\n    port: 80\n    domains: [{second}]\n    paths: [/y]\n    redirect_from: ['*.old.com']\n"
            )
        };
        assert!(
            message(&two("a.com")).is_empty(),
            "{}",
            message(&two("a.com"))
        );
        assert!(
            message(&two("b.org")).contains("routes[1].redirect_from[0]: `*.old.com` overlaps `x.old.com`, which routes[0] (site:80) redirects elsewhere"),
            "{}",
            message(&two("b.org"))
        );
    }

    #[test]
    fn exclusions_are_under_the_paths() {
        assert!(errors(&format!("{API}    exclude_paths: [/api/x]\n")).is_empty());
        assert_eq!(
            errors(&format!("{API}    exclude_paths: [/other, api/x]\n")),
            [
                "routes.yaml:6:21: routes[0].exclude_paths[0]: `/other` is under none of the route's `paths`, so excluding it changes nothing",
                "routes.yaml:6:29: routes[0].exclude_paths[1]: `api/x` must start with `/`",
            ]
        );
        assert!(
            errors(&format!(
                "{API}    path_match: exact\n    exclude_paths: [/api]\n"
            ))[0]
                .contains("remove one from `paths` instead")
        );
        assert!(
            errors(&format!(
                "{API}    path_match: regex\n    exclude_paths: ['(']\n"
            ))[0]
                .contains("not a valid regular expression")
        );
        assert!(
            errors(
                "  - service: b\n    port: 80\n    default_backend: true\n    exclude_paths: [/x]\n"
            )[0]
            .contains("needs `paths` or `domains`")
        );
    }

    #[test]
    fn normalizing_keeps_the_redirect_target_first() {
        let load_one = |domains: &str, redirect: &str| {
            let text = format!(
                "version: 1\nroutes:\n  - service: s\n    port: 80\n    domains: [{domains}]\n{redirect}"
            );
            load("routes.yaml", &text).unwrap().routes[0].normalized()
        };
        let redirect = "    redirect_from: [old.com]\n";
        let target = |r: &crate::model::Route| r.domains[0].0.clone();
        assert_eq!(
            target(&load_one("z.com, b.com, a.com, b.com", redirect)),
            "z.com"
        );
        assert_eq!(
            load_one("z.com, b.com, a.com", redirect),
            load_one("z.com, a.com, b.com, a.com", redirect)
        );
        assert_ne!(
            load_one("z.com, a.com", redirect),
            load_one("a.com, z.com", redirect)
        );
        // Without redirects the order means nothing.
        assert_eq!(load_one("z.com, a.com", ""), load_one("a.com, z.com", ""));
    }

    #[test]
    fn methods_and_redirect_conditions() {
        assert_eq!(
            errors(&format!("{API}    allowed_methods: [GET, get]\n")).len(),
            1
        );
        assert!(
            errors(&format!(
                "{API}    allowed_methods: [GET]\n    denied_methods: [GET]\n"
            ))[0]
                .contains("routes[0].denied_methods[0]: `GET` is in `allowed_methods` too")
        );
        assert!(
            errors(&format!(
                "{API}    https_redirect_when: x_forwarded_proto_http\n"
            ))[0]
                .contains("routes[0].https_redirect_when: only used with `https_only: true`")
        );
        assert!(
            errors(&format!(
                "{API}    https_only: true\n    https_redirect_when: x_forwarded_proto_http\n"
            ))
            .is_empty()
        );
    }
}
