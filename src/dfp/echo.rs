//! Every answer of the Docker-Flow-Proxy-compatible API, in DFP's JSON
//! shape: `Status`, `Message`, and a service's settings under DFP's Go
//! field names.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use super::regsub::search_replace_of;
use crate::model::duration;
use crate::model::{
    self, DomainMatch, HeaderRules, HeaderValue, HttpsRedirectWhen, Method, Name, PathMatch, Route,
    TlsVerify, Userlist,
};

/// The service's settings in DFP's vocabulary, echoed by the reconfigure
/// answer (and fit for `config?type=json`). Serializes with DFP's Go field
/// names; empty lists as `null`, as Go's nil slices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEcho {
    /// `aclName` as sent; empty when not.
    pub acl_name: String,
    /// Request headers added, `Name Value` each.
    #[serde(serialize_with = "null_if_empty")]
    pub add_req_header: Vec<String>,
    /// Response headers added, `Name Value` each.
    #[serde(serialize_with = "null_if_empty")]
    pub add_res_header: Vec<String>,
    /// Whether the servers' names are resolved at run time; echoed when true.
    #[serde(skip_serializing_if = "is_false")]
    pub check_resolvers: bool,
    /// The first http destination's compression algorithms, space-separated; echoed when set.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub compression_algo: String,
    /// The media types it compresses, space-separated; echoed when set.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub compression_type: String,
    /// Request headers deleted.
    #[serde(serialize_with = "null_if_empty")]
    pub del_req_header: Vec<String>,
    /// Response headers deleted.
    #[serde(serialize_with = "null_if_empty")]
    pub del_res_header: Vec<String>,
    /// `distribute` as sent.
    pub distribute: bool,
    /// The first destination's `httpsOnly`.
    pub https_only: bool,
    /// The first destination's `httpsPort`; 0 without.
    pub https_port: u16,
    /// Whether a destination takes the requests no route matches.
    pub is_default_backend: bool,
    /// The first destination's `outboundHostname`.
    pub outbound_hostname: String,
    /// `path_beg`, `path` or `path_reg`.
    pub path_type: String,
    /// The first destination's `reqMode`.
    pub req_mode: String,
    /// Whether the first destination redirects to HTTPS unless `X-Forwarded-Proto` is `https`.
    pub redirect_unless_https_proto: bool,
    /// Whether the first destination redirects to HTTPS when `X-Forwarded-Proto` is `http`.
    pub redirect_when_http_proto: bool,
    /// The first destination's path rewrite replacement (DFP's older form).
    pub req_path_replace: String,
    /// The first destination's path rewrite search (DFP's older form).
    pub req_path_search: String,
    /// The first destination's domains.
    #[serde(serialize_with = "null_if_empty")]
    pub service_domain: Vec<String>,
    /// How domains match, as DFP's host fetch (`hdr_dom(host)`); echoed
    /// when not capstan's default (the whole host).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_domain_algo: String,
    /// `sticky-server` or empty.
    pub session_type: String,
    /// Request headers set, `Name Value` each.
    #[serde(serialize_with = "null_if_empty")]
    pub set_req_header: Vec<String>,
    /// Response headers set, `Name Value` each.
    #[serde(serialize_with = "null_if_empty")]
    pub set_res_header: Vec<String>,
    /// The first destination's `sslVerifyNone`.
    pub ssl_verify_none: bool,
    /// The first destination's server timeout in seconds.
    pub timeout_server: String,
    /// The first destination's tunnel timeout in seconds.
    pub timeout_tunnel: String,
    /// The basic-auth users, by name only: never a password or hash.
    #[serde(serialize_with = "null_if_empty")]
    pub users: Vec<UserEcho>,
    /// One entry per destination.
    pub service_dest: Vec<DestEcho>,
}

/// A basic-auth user as echoed: the name only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserEcho {
    /// The user name.
    pub username: String,
}

/// One destination as DFP's `ServiceDest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestEcho {
    /// Methods that pass; empty: all.
    #[serde(serialize_with = "null_if_empty")]
    pub allowed_methods: Vec<String>,
    /// Methods refused.
    #[serde(serialize_with = "null_if_empty")]
    pub denied_methods: Vec<String>,
    /// Whether requests not over TLS are refused.
    pub deny_http: bool,
    /// Whether plain HTTP is redirected to HTTPS.
    pub https_only: bool,
    /// The service's port for requests that came over HTTPS; 0 without.
    pub https_port: u16,
    /// The redirect's status code, empty for the default.
    pub https_redirect_code: String,
    /// The destination's position, from 0.
    pub index: usize,
    /// The host requests go to instead of the service.
    pub outbound_hostname: String,
    /// The service's port, as a string like DFP's.
    pub port: String,
    /// Host names redirected to the first of `ServiceDomain`.
    #[serde(serialize_with = "null_if_empty")]
    pub redirect_from_domain: Vec<String>,
    /// `http`, `tcp` or `sni`.
    pub req_mode: String,
    /// `search,replace`, empty without a rewrite.
    pub req_path_search_replace: String,
    /// Host names.
    #[serde(serialize_with = "null_if_empty")]
    pub service_domain: Vec<String>,
    /// Headers a request must carry, by name; echoed when set.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_header: BTreeMap<String, String>,
    /// Paths.
    #[serde(serialize_with = "null_if_empty")]
    pub service_path: Vec<String>,
    /// Paths under `ServicePath` left to other routes.
    #[serde(serialize_with = "null_if_empty")]
    pub service_path_exclude: Vec<String>,
    /// The port a tcp or sni destination listens on; 0 for http.
    pub src_port: u16,
    /// Whether HAProxy speaks TLS to the servers without checking their certificates.
    pub ssl_verify_none: bool,
    /// Client timeout in seconds (tcp).
    pub timeout_client: String,
    /// Server timeout in seconds.
    pub timeout_server: String,
    /// Tunnel timeout in seconds.
    pub timeout_tunnel: String,
    /// User agents, one of which a request's must contain; echoed when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<UserAgentEcho>,
}

/// A destination's user agents as DFP's `UserAgent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserAgentEcho {
    /// The agents.
    pub value: Vec<String>,
    /// DFP's name for them: joined with `_`, other characters than letters
    /// and digits `_` too (`Mozilla/5.0` → `Mozilla_5_0`).
    pub acl_name: String,
}

impl UserAgentEcho {
    fn of(agents: &[HeaderValue]) -> Option<Self> {
        if agents.is_empty() {
            return None;
        }
        let value: Vec<String> = agents.iter().map(|a| a.0.clone()).collect();
        let mut acl_name = String::new();
        for c in value.join("_").chars() {
            if c.is_ascii_alphanumeric() {
                acl_name.push(c);
            } else if !acl_name.ends_with('_') {
                acl_name.push('_');
            }
        }
        Some(Self { value, acl_name })
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn null_if_empty<T: Serialize, S: Serializer>(
    items: &[T],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if items.is_empty() {
        serializer.serialize_none()
    } else {
        items.serialize(serializer)
    }
}

/// `Status` of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerStatus {
    /// `"OK"`.
    Ok,
    /// `"NOK"`.
    Nok,
}

impl AnswerStatus {
    /// `"OK"` or `"NOK"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerStatus::Ok => "OK",
            AnswerStatus::Nok => "NOK",
        }
    }
}

/// DFP's reconfigure answer: `Status`, `Message`, `ServiceName`, the service's
/// fields at top level (Go names) and `ServiceDest`.
pub fn reconfigure_answer(
    status: AnswerStatus,
    message: &str,
    service_name: &str,
    echo: &ServiceEcho,
) -> Value {
    let mut answer = json!({
        "Status": status.as_str(),
        "Message": message,
        "ServiceName": service_name,
        // Fields of DFP's answer that capstan never sets.
        "Host": "",
        "Mode": "swarm",
        "ServiceCert": "",
        "ServiceColor": "",
        "SkipCheck": false,
    });
    if let (Some(answer), Value::Object(fields)) = (
        answer.as_object_mut(),
        serde_json::to_value(echo).expect("the echo is plain data"),
    ) {
        answer.extend(fields);
    }
    answer
}

/// DFP's error answer: `{"Status":"NOK","Message":...}`.
pub fn error_answer(message: &str) -> Value {
    json!({"Status": AnswerStatus::Nok.as_str(), "Message": message})
}

/// DFP's answer to `ping` and to a `reload` done: `{"Status":"OK"}`.
pub fn ok_answer() -> Value {
    json!({"Status": AnswerStatus::Ok.as_str()})
}

/// DFP's answer to a `remove` done.
pub fn remove_answer(service_name: &str) -> Value {
    json!({"Status": AnswerStatus::Ok.as_str(), "Message": "", "ServiceName": service_name})
}

/// `config?type=json`: each service of `routes` as its reconfigure answer,
/// by service name.
pub fn config_answer(routes: &[Route]) -> Value {
    let mut by_service: BTreeMap<&str, Vec<Route>> = BTreeMap::new();
    for route in routes {
        by_service
            .entry(route.service.as_str())
            .or_default()
            .push(route.clone());
    }
    let services = by_service
        .into_iter()
        .map(|(service, routes)| {
            let echo = service_echo(&routes);
            let answer = reconfigure_answer(AnswerStatus::Ok, "", service, &echo);
            (service.to_string(), answer)
        })
        .collect();
    Value::Object(services)
}

/// The DFP view of one service's routes, e.g. a stored override, to echo it
/// again. `Users` stays empty: use [`service_echo_with_users`] to list the
/// user names. `AclName` and `Distribute` are not kept in routes: set them on
/// the result when known.
pub(super) fn service_echo(routes: &[Route]) -> ServiceEcho {
    service_echo_with_users(routes, &BTreeMap::new())
}

/// [`service_echo`], with `Users` listing the names (never the hashes) of the
/// userlist the routes' `auth` names, looked up in `userlists`.
pub(super) fn service_echo_with_users(
    routes: &[Route],
    userlists: &BTreeMap<Name, Userlist>,
) -> ServiceEcho {
    let dests: Vec<DestEcho> = routes
        .iter()
        .enumerate()
        .map(|(index, route)| dest_echo(index, route))
        .collect();
    let Some(first) = routes.first() else {
        return ServiceEcho::default();
    };
    let headers = |rules: &HeaderRules, add: bool| -> Vec<String> {
        let map = if add { &rules.add } else { &rules.set };
        map.iter()
            .map(|(n, v)| format!("{} {}", n.0, v.0))
            .collect()
    };
    let deleted =
        |rules: &HeaderRules| -> Vec<String> { rules.delete.iter().map(|n| n.0.clone()).collect() };
    let (search, replace) = first
        .rewrite_path
        .first()
        .map(search_replace_of)
        .unwrap_or_default();
    let users = first
        .auth
        .as_ref()
        .and_then(|auth| userlists.get(&auth.userlist))
        .map(|list| {
            list.listed()
                .iter()
                .map(|u| UserEcho {
                    username: u.name.0.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let dest = &dests[0];
    let compression = routes.iter().find_map(|r| r.compression.as_ref());
    let words = |words: Vec<&str>| words.join(" ");
    let service_domain_algo = routes
        .iter()
        .find(|r| !r.domains.is_empty())
        .and_then(|r| dfp_domain_algo(r.domain_match))
        .unwrap_or_default();
    ServiceEcho {
        acl_name: String::new(),
        add_req_header: headers(&first.request_headers, true),
        add_res_header: headers(&first.response_headers, true),
        check_resolvers: first.resolve_at_runtime,
        compression_algo: compression
            .map(|c| words(c.algorithms.iter().map(|a| a.haproxy_name()).collect()))
            .unwrap_or_default(),
        compression_type: compression
            .map(|c| words(c.types.iter().map(|t| t.0.as_str()).collect()))
            .unwrap_or_default(),
        del_req_header: deleted(&first.request_headers),
        del_res_header: deleted(&first.response_headers),
        distribute: false,
        https_only: dest.https_only,
        https_port: dest.https_port,
        is_default_backend: routes.iter().any(|r| r.default_backend),
        outbound_hostname: dest.outbound_hostname.clone(),
        path_type: match first.path_match {
            PathMatch::Prefix => "path_beg",
            PathMatch::Exact => "path",
            PathMatch::Regex => "path_reg",
        }
        .to_string(),
        redirect_unless_https_proto: https_redirect_when(first)
            == Some(HttpsRedirectWhen::XForwardedProtoNotHttps),
        redirect_when_http_proto: https_redirect_when(first)
            == Some(HttpsRedirectWhen::XForwardedProtoHttp),
        req_mode: dest.req_mode.clone(),
        req_path_replace: replace,
        req_path_search: search,
        service_domain: dest.service_domain.clone(),
        service_domain_algo,
        session_type: if first.sticky { "sticky-server" } else { "" }.to_string(),
        set_req_header: headers(&first.request_headers, false),
        set_res_header: headers(&first.response_headers, false),
        ssl_verify_none: dest.ssl_verify_none,
        timeout_server: dest.timeout_server.clone(),
        timeout_tunnel: dest.timeout_tunnel.clone(),
        users,
        service_dest: dests,
    }
}

fn dest_echo(index: usize, route: &Route) -> DestEcho {
    let seconds = |d: &Option<model::Duration>| d.as_ref().map(dfp_seconds).unwrap_or_default();
    let outbound_hostname = match route.servers.as_slice() {
        [only] => only
            .0
            .strip_suffix(&format!(":{}", route.port))
            .unwrap_or(&only.0)
            .to_string(),
        _ => String::new(),
    };
    let names = |list: &[Method]| list.iter().map(|m| m.0.clone()).collect();
    DestEcho {
        allowed_methods: names(&route.allowed_methods),
        denied_methods: names(&route.denied_methods),
        deny_http: route.deny_http,
        https_only: https_redirect_when(route) == Some(HttpsRedirectWhen::NotTls),
        https_port: route.https_port.unwrap_or(0),
        https_redirect_code: route
            .redirect_code
            .map(|c| u16::from(c).to_string())
            .unwrap_or_default(),
        index,
        outbound_hostname,
        port: route.port.to_string(),
        redirect_from_domain: route.redirect_from.iter().map(|d| d.0.clone()).collect(),
        req_mode: route.mode.as_str().to_string(),
        req_path_search_replace: route
            .rewrite_path
            .iter()
            .map(|r| {
                let (search, replace) = search_replace_of(r);
                format!("{search},{replace}")
            })
            .collect::<Vec<_>>()
            .join(":"),
        service_domain: route.domains.iter().map(|d| d.0.clone()).collect(),
        service_header: route
            .match_headers
            .iter()
            .map(|(n, v)| (n.0.clone(), v.0.clone()))
            .collect(),
        service_path: route.paths.iter().map(|p| p.0.clone()).collect(),
        service_path_exclude: route.exclude_paths.iter().map(|p| p.0.clone()).collect(),
        src_port: route.listen_port.unwrap_or(0),
        ssl_verify_none: route
            .backend_tls
            .as_ref()
            .is_some_and(|tls| tls.verify == TlsVerify::None),
        timeout_client: seconds(&route.timeouts.client),
        timeout_server: seconds(&route.timeouts.server),
        timeout_tunnel: seconds(&route.timeouts.tunnel),
        user_agent: UserAgentEcho::of(&route.user_agents),
    }
}

/// When the route redirects to HTTPS, if it does: DFP says `httpsOnly`,
/// `redirectWhenHttpProto` or `redirectUnlessHttpsProto` for each condition.
fn https_redirect_when(route: &Route) -> Option<HttpsRedirectWhen> {
    route.https_only.then_some(route.https_redirect_when)
}

/// DFP's host fetch for a domain match; `None` for capstan's default.
fn dfp_domain_algo(domain_match: DomainMatch) -> Option<String> {
    let algo = match domain_match {
        DomainMatch::Exact => return None,
        DomainMatch::Prefix => "hdr_beg(host)",
        DomainMatch::Suffix => "hdr_end(host)",
        DomainMatch::Labels => "hdr_dom(host)",
    };
    Some(algo.to_string())
}

/// A capstan duration as DFP's seconds when it is a whole number of them,
/// else as written.
fn dfp_seconds(written: &model::Duration) -> String {
    written
        .to_std()
        .and_then(|d| duration::whole(d, duration::Unit::Seconds))
        .map_or_else(|| written.0.clone(), |seconds| seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dfp::{parse_reconfigure, query};
    use crate::model::PathRewrite;

    fn ok(q: &str) -> crate::dfp::Reconfigure {
        parse_reconfigure(&query(q)).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    #[test]
    fn answers_have_dfp_shape() {
        let r = ok("serviceName=go-demo&servicePath=/demo&port=8080");
        let answer = reconfigure_answer(AnswerStatus::Ok, "", "go-demo", &r.echo);
        assert_eq!(answer["Status"], "OK");
        assert_eq!(answer["ServiceName"], "go-demo");
        assert_eq!(answer["ReqMode"], "http");
        assert_eq!(answer["PathType"], "path_beg");
        assert_eq!(answer["ServiceDest"][0]["Port"], "8080");
        assert_eq!(answer["ServiceDest"][0]["SrcPort"], 0);
        assert_eq!(answer["Users"], Value::Null);
        assert_eq!(answer["Mode"], "swarm");
        assert_eq!(
            error_answer("bad"),
            json!({"Status": "NOK", "Message": "bad"})
        );
        let nok = reconfigure_answer(AnswerStatus::Nok, "boom", "go-demo", &r.echo);
        assert_eq!(
            (nok["Status"].as_str(), nok["Message"].as_str()),
            (Some("NOK"), Some("boom"))
        );
    }

    #[test]
    fn tls_settings_are_echoed_as_dfp_does() {
        let r = ok("serviceName=app&port=8080&httpsPort=8443&servicePath=/app&sslVerifyNone=true");
        let answer = reconfigure_answer(AnswerStatus::Ok, "", "app", &r.echo);
        assert_eq!(answer["HttpsPort"], 8443);
        assert_eq!(answer["SslVerifyNone"], true);
        assert_eq!(answer["ServiceDest"][0]["HttpsPort"], 8443);
        assert_eq!(answer["ServiceDest"][0]["SslVerifyNone"], true);
        let r = ok("serviceName=api&port=443&reqMode=sni&srcPort=8443&serviceDomain=a.com");
        let answer = reconfigure_answer(AnswerStatus::Ok, "", "api", &r.echo);
        assert_eq!(answer["ReqMode"], "sni");
        assert_eq!(answer["HttpsPort"], 0);
        assert_eq!(answer["SslVerifyNone"], false);
        assert_eq!(answer["ServiceDest"][0]["ReqMode"], "sni");
        assert_eq!(answer["ServiceDest"][0]["SrcPort"], 8443);
    }

    #[test]
    fn plain_and_config_answers() {
        assert_eq!(ok_answer(), json!({"Status": "OK"}));
        assert_eq!(
            remove_answer("a"),
            json!({"Status": "OK", "Message": "", "ServiceName": "a"})
        );
        let r = ok("serviceName=a&port=80&servicePath=/a&port.1=81&servicePath.1=/b");
        let mut routes = r.routes.clone();
        routes.insert(1, Route::new("b", 90));
        let config = config_answer(&routes);
        assert_eq!(
            config["a"],
            reconfigure_answer(AnswerStatus::Ok, "", "a", &r.echo)
        );
        assert_eq!(config["b"]["ServiceDest"][0]["Port"], "90");
    }

    #[test]
    fn echo_of_stored_routes() {
        let r =
            ok("serviceName=a&port=80&servicePath=/a&timeoutServer=120&sessionType=sticky-server");
        assert_eq!(service_echo(&r.routes), r.echo);
        assert_eq!(service_echo(&[]), ServiceEcho::default());
        // Routes written in routes.yaml, in capstan's own units.
        let mut route = Route::new("b", 80);
        route.timeouts.server = Some(model::Duration("2m".into()));
        route.timeouts.tunnel = Some(model::Duration("1500ms".into()));
        route.rewrite_path = vec![PathRewrite {
            regex: "^/b/(.*)".into(),
            replace: "/\\1".into(),
        }];
        let echo = service_echo(&[route]);
        assert_eq!(echo.timeout_server, "120");
        assert_eq!(echo.timeout_tunnel, "1500ms");
        assert_eq!(
            echo.service_dest[0].req_path_search_replace,
            "^/b/(.*),/\\1"
        );
    }

    #[test]
    fn matching_settings_are_echoed_in_dfp_names_when_set() {
        let r = ok(
            "serviceName=a&port=80&serviceDomain=a.com&serviceDomainAlgo=hdr_end(host)&serviceHeader=X-Version:3&userAgent=Mozilla/5.0 (iPhone&compressionAlgo=gzip&compressionType=text/plain&checkResolvers=true",
        );
        assert_eq!(service_echo(&r.routes), r.echo);
        let answer = reconfigure_answer(AnswerStatus::Ok, "", "a", &r.echo);
        assert_eq!(answer["ServiceDomainAlgo"], "hdr_end(host)");
        assert_eq!(answer["CompressionAlgo"], "gzip");
        assert_eq!(answer["CompressionType"], "text/plain");
        assert_eq!(answer["CheckResolvers"], true);
        assert_eq!(
            answer["ServiceDest"][0]["ServiceHeader"],
            json!({"X-Version": "3"})
        );
        assert_eq!(
            answer["ServiceDest"][0]["UserAgent"],
            json!({"Value": ["Mozilla/5.0 (iPhone"], "AclName": "Mozilla_5_0_iPhone"})
        );
        let plain = ok("serviceName=a&port=80&serviceDomain=a.com");
        let answer = reconfigure_answer(AnswerStatus::Ok, "", "a", &plain.echo);
        for absent in [
            "ServiceDomainAlgo",
            "CompressionAlgo",
            "CompressionType",
            "CheckResolvers",
        ] {
            assert!(answer.get(absent).is_none(), "{absent}: {answer}");
        }
        let dest = &answer["ServiceDest"][0];
        assert!(dest.get("ServiceHeader").is_none() && dest.get("UserAgent").is_none());
    }

    #[test]
    fn dfp_seconds_converts_whole_seconds() {
        let s = |d: &str| dfp_seconds(&model::Duration(d.into()));
        assert_eq!(s("30s"), "30");
        assert_eq!(s("2m"), "120");
        assert_eq!(s("1h"), "3600");
        assert_eq!(s("1d"), "86400");
        assert_eq!(s("5000"), "5");
        assert_eq!(s("5000ms"), "5");
        assert_eq!(s("1500ms"), "1500ms");
        assert_eq!(s("10us"), "10us");
    }
}
