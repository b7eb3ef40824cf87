//! Docker Flow Proxy compatibility: the pure translation between Docker Flow
//! Proxy's HTTP API (`/v1/docker-flow-proxy/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080`)
//! and capstan's routes. No I/O: HTTP handlers, persistence and the reconciler
//! build on [`parse_reconfigure`], [`parse_remove`], [`Reconfigure::validate_in`],
//! [`reconfigure_answer`], [`error_answer`] and [`service_echo`] /
//! [`service_echo_with_users`].
//!
//! Every route [`parse_reconfigure`] returns has passed [`validate::check`].
//! Anything capstan cannot honour exactly is an error naming the parameter
//! (status 400, or 409 for an http destination with nothing to route), never
//! silently dropped: values are printable ASCII only, at most
//! [`MAX_VALUE_LEN`] bytes, at most [`MAX_PARAMS`] parameters and
//! [`MAX_DESTINATIONS`] indexed destinations.
//!
//! # Parameters
//!
//! Parameters marked *dest* may carry an index (`port.1` … `port.10`): each
//! index is one destination, and the unindexed value is the fallback of every
//! destination it applies to (http-only values are not inherited by tcp
//! destinations, nor tcp-only values by http ones). The unindexed values make
//! a destination of their own (index 0) when no index is given, or when they
//! hold `port` and one of `servicePath`, `serviceDomain`, `srcPort`. A value that ends up
//! applying to no destination is an error. An empty value counts as absent, as
//! in DFP; a parameter repeated with different values is an error.
//!
//! | parameter | | capstan |
//! |---|---|---|
//! | `serviceName` | required | `service` |
//! | `port` | dest, required | `port` |
//! | `servicePath` | dest, comma list | `paths` |
//! | `pathType` | | `path_beg`, `path`, `path_reg` → `path_match` prefix, exact, regex; others 400 |
//! | `serviceDomain` | dest, comma list | `domains`; `*.a.com` → `*.a.com`; `*a.com` → `a.com` and `*.a.com` (suffix on a label boundary only) |
//! | `serviceDomainAlgo` | | `hdr_beg(host)` (DFP's default), `hdr(host)`: capstan matches the whole host, without its port; others 400 |
//! | `reqMode` | dest | `http`, `tcp` → `mode`; `sni` 400 |
//! | `srcPort` | dest, tcp only | `listen_port` |
//! | `httpsOnly`, `httpsRedirectCode` | dest | `https_only`, `redirect_code` |
//! | `outboundHostname` | dest | `servers: [<host>:<port>]` |
//! | `users`, `usersPassEncrypted` | http | crypt(3) hashes only, with `usersPassEncrypted=true`: a userlist named after the service, `auth` on every http destination; plaintext 400 |
//! | `addReqHeader`, `setReqHeader`, `addResHeader`, `setResHeader` | http, comma list of `Name Value` | `request_headers` / `response_headers` `add` / `set`; literal values only (no `%`, `$`, `"`, `\`) |
//! | `delReqHeader`, `delResHeader` | http, comma list | `delete` |
//! | `reqPathSearchReplace` | dest, `search,replace` | `rewrite_path` with DFP's `regsub` meaning; several `:`-separated pairs 400 |
//! | `reqPathSearch` + `reqPathReplace` | http | the same, DFP's older form |
//! | `timeoutServer`, `timeoutTunnel` | dest, seconds | `timeouts.server`, `timeouts.tunnel` (`Ns`) |
//! | `timeoutClient` | dest, tcp only, seconds | `timeouts.client` |
//! | `sessionType` | | `sticky-server` → `sticky`; others 400 |
//! | `aclName` | | echoed; ignored: capstan computes precedence |
//! | `distribute` | | echoed; ignored: every capstan replica reconciles the same state |
//! | `replicas`, `shortName` | | ignored (DFSL bookkeeping) |
//! | `isDefaultBackend`, `redirectWhenHttpProto`, `sslVerifyNone` | | `false` accepted; `true` 400 |
//! | `ttl` | capstan's own | `10m`, `2h`, `1d`, `3600` (seconds) → [`Reconfigure::ttl`] |
//!
//! Rejected (400 [`DfpError::Unsupported`]): `httpsPort`, `serviceCert`,
//! `usersSecret`, `servicePathExclude`, `serviceHeader`, `redirectFromDomain`,
//! `discoveryType`, `checkResolvers`, `balanceGroup`, `allowedMethods`,
//! `deniedMethods`, `backendExtra`, `templateFePath`, `templateBePath`, any
//! other name, and service-level parameters with an index.
//!
//! # Route names
//!
//! A destination is named after its service (`go-demo` → `url_go-demo8080`,
//! `go-demo-be8080`, as DFP did) unless an earlier destination of the same
//! request already uses its port: then it is `<service>.<index>`
//! (`go-demo.2-be8080`). Swarm service names never contain a `.`, so these
//! names never collide with another service's.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use crate::model::diagnostics::excerpt;
use crate::model::validate;
use crate::model::{
    self, Address, Auth, Domain, HeaderName, HeaderRules, HeaderValue, Mode, Name, PathMatch,
    PathRewrite, RedirectCode, Route, RoutesFile, UrlPath, User,
};

/// At most this many query parameters per request.
pub const MAX_PARAMS: usize = 100;
/// At most this many bytes per parameter value.
pub const MAX_VALUE_LEN: usize = 1024;
/// Indexed destinations are numbered 1 to this.
pub const MAX_DESTINATIONS: usize = 10;

/// Parameter names longer than this are cut short in error messages.
const MAX_SHOWN_NAME: usize = 64;

/// Parameters that may carry a destination index.
const DEST_PARAMS: &[&str] = &[
    "port",
    "servicePath",
    "serviceDomain",
    "srcPort",
    "reqMode",
    "httpsOnly",
    "httpsRedirectCode",
    "outboundHostname",
    "reqPathSearchReplace",
    "timeoutServer",
    "timeoutTunnel",
    "timeoutClient",
];

/// Service-level parameters.
const SERVICE_PARAMS: &[&str] = &[
    "serviceName",
    "pathType",
    "serviceDomainAlgo",
    "users",
    "usersPassEncrypted",
    "addReqHeader",
    "setReqHeader",
    "delReqHeader",
    "addResHeader",
    "setResHeader",
    "delResHeader",
    "reqPathSearch",
    "reqPathReplace",
    "sessionType",
    "aclName",
    "distribute",
    "replicas",
    "shortName",
    "isDefaultBackend",
    "redirectWhenHttpProto",
    "sslVerifyNone",
    "ttl",
];

/// Docker Flow Proxy parameters capstan knows and refuses, with the reason.
const REJECTED: &[(&str, &str)] = &[
    (
        "httpsPort",
        "capstan proxies to one port per destination; TLS backends are not supported",
    ),
    (
        "serviceCert",
        "certificates come from `defaults.https` in routes.yaml",
    ),
    (
        "usersSecret",
        "capstan reads no Docker secrets; send crypt(3) hashes in `users` with `usersPassEncrypted=true`",
    ),
    ("servicePathExclude", "capstan has no path exclusions"),
    ("serviceHeader", "capstan does not route by request headers"),
    ("redirectFromDomain", "capstan has no domain redirects"),
    (
        "discoveryType",
        "capstan proxies to the service's address; set `defaults.resolvers` for DNS",
    ),
    (
        "checkResolvers",
        "set `defaults.resolvers` in routes.yaml instead",
    ),
    ("balanceGroup", "capstan has no balance groups"),
    ("allowedMethods", "capstan does not filter methods"),
    ("deniedMethods", "capstan does not filter methods"),
    ("backendExtra", "raw HAProxy lines are never accepted"),
    ("templateFePath", "capstan renders its own config"),
    ("templateBePath", "capstan renders its own config"),
];

/// Parameters that only make sense on http destinations.
const HTTP_ONLY: &[&str] = &[
    "servicePath",
    "serviceDomain",
    "httpsOnly",
    "httpsRedirectCode",
    "reqPathSearchReplace",
];

/// Parameters that only make sense on tcp destinations.
const TCP_ONLY: &[&str] = &["srcPort", "timeoutClient"];

/// Why a request cannot be translated. [`DfpError::status_code`] gives the
/// HTTP status to answer with; [`DfpError::params`] the parameters it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DfpError {
    /// More than [`MAX_PARAMS`] query parameters.
    #[error("too many parameters: {count}; at most {MAX_PARAMS} are accepted")]
    TooManyParams {
        /// How many were sent.
        count: usize,
    },
    /// Parameters capstan does not support, all of them, in request order.
    #[error("{}", unsupported_message(.params))]
    Unsupported {
        /// Their names (cut short and escaped when long or unprintable).
        params: Vec<String>,
    },
    /// No `serviceName`.
    #[error("`serviceName` is required")]
    MissingServiceName,
    /// A destination without a port.
    #[error("`{param}` is required: the port the service listens on")]
    MissingPort {
        /// `port`, or `port.<index>` for an indexed destination.
        param: String,
    },
    /// A tcp destination without the port the proxy listens on.
    #[error("`{param}` is required with reqMode=tcp: the port the proxy listens on")]
    MissingSrcPort {
        /// `srcPort`, or `srcPort.<index>`.
        param: String,
    },
    /// An http destination with neither paths nor domains: DFSL reads its
    /// status (409) as "nothing to route" and stops retrying.
    #[error(
        "nothing to route: http destination {index} has neither `{}` nor `{}`",
        indexed("servicePath", *.index),
        indexed("serviceDomain", *.index)
    )]
    NothingToRoute {
        /// The destination's index (0 for the unindexed one).
        index: usize,
    },
    /// Values that are malformed, unsupported, unsafe or rejected by
    /// capstan's validation: every problem found.
    #[error("{}", invalid_message(.problems))]
    Invalid {
        /// One entry per problem, each naming its parameter.
        problems: Vec<ParamProblem>,
    },
}

/// One problem with one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamProblem {
    /// The parameter as sent (`servicePath.2`).
    pub param: String,
    /// What is wrong, for humans.
    pub message: String,
}

impl fmt::Display for ParamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.param, self.message)
    }
}

impl DfpError {
    /// The HTTP status DFP answers with: 409 for nothing to route, else 400.
    pub fn status_code(&self) -> u16 {
        match self {
            DfpError::NothingToRoute { .. } => 409,
            _ => 400,
        }
    }

    /// The parameters the error is about, as sent.
    pub fn params(&self) -> Vec<String> {
        match self {
            DfpError::TooManyParams { .. } => Vec::new(),
            DfpError::Unsupported { params } => params.clone(),
            DfpError::MissingServiceName => vec!["serviceName".into()],
            DfpError::MissingPort { param } | DfpError::MissingSrcPort { param } => {
                vec![param.clone()]
            }
            DfpError::NothingToRoute { index } => vec![
                indexed("servicePath", *index),
                indexed("serviceDomain", *index),
            ],
            DfpError::Invalid { problems } => problems.iter().map(|p| p.param.clone()).collect(),
        }
    }

    fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        DfpError::Invalid {
            problems: vec![ParamProblem {
                param: param.into(),
                message: message.into(),
            }],
        }
    }
}

fn unsupported_message(params: &[String]) -> String {
    let list: Vec<String> = params
        .iter()
        .map(|p| match REJECTED.iter().find(|(name, _)| name == p) {
            Some((_, why)) => format!("`{p}` ({why})"),
            None => format!("`{p}`"),
        })
        .collect();
    let s = if params.len() == 1 { "" } else { "s" };
    format!("unsupported parameter{s}: {}", list.join(", "))
}

fn invalid_message(problems: &[ParamProblem]) -> String {
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    list.join("; ")
}

/// `port` for index 0, else `port.<index>`.
fn indexed(base: &str, index: usize) -> String {
    if index == 0 {
        base.to_string()
    } else {
        format!("{base}.{index}")
    }
}

/// A reconfigure request, translated and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconfigure {
    /// The Swarm service.
    pub service_name: String,
    /// One route per destination, in index order.
    pub routes: Vec<Route>,
    /// The service's userlist (named after the service) when it sent `users`.
    pub userlists: BTreeMap<Name, Vec<User>>,
    /// How long the routes should live (`ttl`, capstan's extension); `None`: until removed.
    pub ttl: Option<Duration>,
    /// What the answer echoes, in DFP's field names.
    pub echo: ServiceEcho,
    /// For each route, DFP parameter → the name it was sent as (`port.2`).
    sources: Vec<BTreeMap<&'static str, String>>,
}

impl Reconfigure {
    /// Validates these routes added to `table` (say, the routes.yaml in
    /// force and the other services' overrides, without this service's
    /// previous routes), and names the DFP parameter of every problem found
    /// in them. [`parse_reconfigure`] does this against an empty table.
    ///
    /// The routes passed the schema in [`parse_reconfigure`]; here only the
    /// semantic checks run, which is what the table can break (and cheap
    /// enough to run on every call against thousands of routes).
    pub fn validate_in(&self, table: &RoutesFile) -> Result<(), DfpError> {
        self.validate_with(table, validate::check_semantics)
    }

    fn validate_with(
        &self,
        table: &RoutesFile,
        check: fn(&str, &RoutesFile) -> Result<(), crate::model::diagnostics::Diagnostics>,
    ) -> Result<(), DfpError> {
        let mut file = table.clone();
        let offset = file.routes.len();
        file.routes.extend(self.routes.iter().cloned());
        for (name, users) in &self.userlists {
            if file.userlists.contains_key(name) {
                return Err(DfpError::invalid(
                    "users",
                    format!("a userlist named `{name}` already exists"),
                ));
            }
            file.userlists.insert(name.clone(), users.clone());
        }
        let diagnostics = match check("dfp", &file) {
            Ok(()) => return Ok(()),
            Err(diagnostics) => diagnostics,
        };
        let problems = diagnostics
            .iter()
            .map(|d| self.problem_of(&d.field, &d.message, offset))
            .collect();
        Err(DfpError::Invalid { problems })
    }

    /// Maps a capstan diagnostic (`routes[3].paths[0]`) to the parameter it came from.
    fn problem_of(&self, field: &str, message: &str, offset: usize) -> ParamProblem {
        if let Some(rest) = field.strip_prefix("userlists.") {
            let ours = self.userlists.keys().any(|n| {
                rest.strip_prefix(n.as_str())
                    .is_some_and(|after| after.is_empty() || after.starts_with(['[', '.']))
            });
            if ours {
                // Never echo a password hash back.
                return ParamProblem {
                    param: "users".into(),
                    message: "a user entry is invalid (capstan field `userlists`)".into(),
                };
            }
        }
        let route = field.strip_prefix("routes[").and_then(|rest| {
            let (digits, tail) = rest.split_once(']')?;
            Some((digits.parse::<usize>().ok()?, tail))
        });
        let Some((index, tail)) = route else {
            return ParamProblem {
                param: "serviceName".into(),
                message: format!("{message} (capstan field `{field}`)"),
            };
        };
        let tail = tail.strip_prefix('.').unwrap_or(tail);
        let Some(ours) = index.checked_sub(offset) else {
            return ParamProblem {
                param: "serviceName".into(),
                message: format!("conflicts with an existing route: {field}: {message}"),
            };
        };
        let mut parts = tail.split('.');
        let top = parts.next().unwrap_or("");
        let top = top.split('[').next().unwrap_or(top);
        let sub = parts.next().unwrap_or("");
        let base = field_param(top, sub);
        let param = self
            .sources
            .get(ours)
            .and_then(|s| s.get(base))
            .cloned()
            .unwrap_or_else(|| base.to_string());
        let at = if tail.is_empty() {
            String::new()
        } else {
            format!(" (capstan field `{tail}`)")
        };
        ParamProblem {
            param,
            message: format!("{message}{at}"),
        }
    }
}

/// The DFP parameter behind a capstan route field (`request_headers.add` → `addReqHeader`).
fn field_param(top: &str, sub: &str) -> &'static str {
    match (top, sub) {
        ("port", _) => "port",
        ("mode", _) => "reqMode",
        ("listen_port", _) => "srcPort",
        ("paths", _) => "servicePath",
        ("path_match", _) => "pathType",
        ("domains", _) => "serviceDomain",
        ("https_only", _) => "httpsOnly",
        ("redirect_code", _) => "httpsRedirectCode",
        ("auth", _) => "users",
        ("request_headers", "add") => "addReqHeader",
        ("request_headers", "set") => "setReqHeader",
        ("request_headers", _) => "delReqHeader",
        ("response_headers", "add") => "addResHeader",
        ("response_headers", "set") => "setResHeader",
        ("response_headers", _) => "delResHeader",
        ("rewrite_path", _) => "reqPathSearchReplace",
        ("timeouts", "tunnel") => "timeoutTunnel",
        ("timeouts", "client") => "timeoutClient",
        ("timeouts", _) => "timeoutServer",
        ("sticky", _) => "sessionType",
        ("servers", _) => "outboundHostname",
        _ => "serviceName",
    }
}

/// A remove request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remove {
    /// The Swarm service whose routes go.
    pub service_name: String,
    /// DFP's `aclName`, when sent.
    pub acl_name: Option<String>,
}

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
    /// The first destination's `outboundHostname`.
    pub outbound_hostname: String,
    /// `path_beg`, `path` or `path_reg`.
    pub path_type: String,
    /// The first destination's `reqMode`.
    pub req_mode: String,
    /// The first destination's path rewrite replacement (DFP's older form).
    pub req_path_replace: String,
    /// The first destination's path rewrite search (DFP's older form).
    pub req_path_search: String,
    /// The first destination's domains.
    #[serde(serialize_with = "null_if_empty")]
    pub service_domain: Vec<String>,
    /// `sticky-server` or empty.
    pub session_type: String,
    /// Request headers set, `Name Value` each.
    #[serde(serialize_with = "null_if_empty")]
    pub set_req_header: Vec<String>,
    /// Response headers set, `Name Value` each.
    #[serde(serialize_with = "null_if_empty")]
    pub set_res_header: Vec<String>,
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
    /// Whether plain HTTP is redirected to HTTPS.
    pub https_only: bool,
    /// The redirect's status code, empty for the default.
    pub https_redirect_code: String,
    /// The destination's position, from 0.
    pub index: usize,
    /// The host requests go to instead of the service.
    pub outbound_hostname: String,
    /// The service's port, as a string like DFP's.
    pub port: String,
    /// `http` or `tcp`.
    pub req_mode: String,
    /// `search,replace`, empty without a rewrite.
    pub req_path_search_replace: String,
    /// Host names.
    #[serde(serialize_with = "null_if_empty")]
    pub service_domain: Vec<String>,
    /// Paths.
    #[serde(serialize_with = "null_if_empty")]
    pub service_path: Vec<String>,
    /// The port a tcp destination listens on; 0 for http.
    pub src_port: u16,
    /// Client timeout in seconds (tcp).
    pub timeout_client: String,
    /// Server timeout in seconds.
    pub timeout_server: String,
    /// Tunnel timeout in seconds.
    pub timeout_tunnel: String,
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
        "HttpsPort": 0,
        "IsDefaultBackend": false,
        "Mode": "swarm",
        "RedirectWhenHttpProto": false,
        "ServiceCert": "",
        "ServiceColor": "",
        "SkipCheck": false,
        "SslVerifyNone": false,
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

/// The DFP view of one service's routes, e.g. a stored override, to echo it
/// again. `Users` stays empty: use [`service_echo_with_users`] to list the
/// user names. `AclName` and `Distribute` are not kept in routes: set them on
/// the result when known.
pub fn service_echo(routes: &[Route]) -> ServiceEcho {
    service_echo_with_users(routes, &BTreeMap::new())
}

/// [`service_echo`], with `Users` listing the names (never the hashes) of the
/// userlist the routes' `auth` names, looked up in `userlists`.
pub fn service_echo_with_users(
    routes: &[Route],
    userlists: &BTreeMap<Name, Vec<User>>,
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
        .as_ref()
        .map(search_replace_of)
        .unwrap_or_default();
    let users = first
        .auth
        .as_ref()
        .and_then(|auth| userlists.get(&auth.userlist))
        .map(|users| {
            users
                .iter()
                .map(|u| UserEcho {
                    username: u.name.0.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let dest = &dests[0];
    ServiceEcho {
        acl_name: String::new(),
        add_req_header: headers(&first.request_headers, true),
        add_res_header: headers(&first.response_headers, true),
        del_req_header: deleted(&first.request_headers),
        del_res_header: deleted(&first.response_headers),
        distribute: false,
        https_only: first.https_only,
        outbound_hostname: dest.outbound_hostname.clone(),
        path_type: match first.path_match {
            PathMatch::Prefix => "path_beg",
            PathMatch::Exact => "path",
            PathMatch::Regex => "path_reg",
        }
        .to_string(),
        req_mode: dest.req_mode.clone(),
        req_path_replace: replace,
        req_path_search: search,
        service_domain: dest.service_domain.clone(),
        session_type: if first.sticky { "sticky-server" } else { "" }.to_string(),
        set_req_header: headers(&first.request_headers, false),
        set_res_header: headers(&first.response_headers, false),
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
    DestEcho {
        https_only: route.https_only,
        https_redirect_code: route
            .redirect_code
            .map(|c| u16::from(c).to_string())
            .unwrap_or_default(),
        index,
        outbound_hostname,
        port: route.port.to_string(),
        req_mode: match route.mode {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
        }
        .to_string(),
        req_path_search_replace: route
            .rewrite_path
            .as_ref()
            .map(|r| {
                let (search, replace) = search_replace_of(r);
                format!("{search},{replace}")
            })
            .unwrap_or_default(),
        service_domain: route.domains.iter().map(|d| d.0.clone()).collect(),
        service_path: route.paths.iter().map(|p| p.0.clone()).collect(),
        src_port: route.listen_port.unwrap_or(0),
        timeout_client: seconds(&route.timeouts.client),
        timeout_server: seconds(&route.timeouts.server),
        timeout_tunnel: seconds(&route.timeouts.tunnel),
    }
}

/// A capstan duration as DFP's seconds when it is a whole number of them,
/// else as written.
fn dfp_seconds(duration: &model::Duration) -> String {
    let text = duration.0.as_str();
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let Ok(n) = digits.parse::<u64>() else {
        return text.to_string();
    };
    let seconds = match &text[digits.len()..] {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86400),
        "" | "ms" if n % 1000 == 0 => Some(n / 1000),
        _ => None,
    };
    seconds.map_or_else(|| text.to_string(), |s| s.to_string())
}

/// Parses a reconfigure request's query parameters (URL-decoded, in order,
/// possibly repeated) into validated routes. See the module docs for the
/// vocabulary. Errors, in the order checked: too many parameters, unsupported
/// names, unsafe values (length, characters, conflicting repeats), missing
/// `serviceName`, missing `port`, a tcp destination without `srcPort`,
/// malformed or unsupported values, nothing to route (409), and problems
/// capstan's validation finds.
pub fn parse_reconfigure(params: &[(String, String)]) -> Result<Reconfigure, DfpError> {
    let params = Params::read(params, false)?;
    let service = params
        .take("serviceName")
        .ok_or(DfpError::MissingServiceName)?;
    let service_name = service.value.clone();
    let indices = params.indices();
    for &index in &indices {
        if params.lookup("port", index).is_none() {
            return Err(DfpError::MissingPort {
                param: indexed("port", index),
            });
        }
    }

    let mut problems = Vec::new();
    let mut modes = Vec::new();
    for &index in &indices {
        let mode = match params.lookup("reqMode", index) {
            None => Mode::Http,
            Some(given) => {
                params.mark(given);
                match given.value.as_str() {
                    "http" => Mode::Http,
                    "tcp" => Mode::Tcp,
                    "sni" => {
                        problems.push(given.problem(
                            "`sni` is not supported: capstan does not route by SNI; use `tcp` with `srcPort`",
                        ));
                        Mode::Http
                    }
                    _ => {
                        problems.push(given.problem(format!(
                            "`{}` is not a mode: `http` or `tcp`",
                            excerpt(&given.value)
                        )));
                        Mode::Http
                    }
                }
            }
        };
        if mode == Mode::Tcp && params.lookup("srcPort", index).is_none() {
            return Err(DfpError::MissingSrcPort {
                param: indexed("srcPort", index),
            });
        }
        modes.push(mode);
    }

    let name = service.parse(&mut problems, name_value);
    let any_http = modes.contains(&Mode::Http);
    let shared = Shared::read(&params, any_http, &mut problems);
    let acl_name = params
        .take("aclName")
        .and_then(|g| g.parse(&mut problems, acl_name_value));
    let distribute = params
        .take("distribute")
        .and_then(|g| g.parse(&mut problems, bool_value))
        .unwrap_or(false);
    if let Some(replicas) = params.take("replicas") {
        replicas.parse(&mut problems, |v| count_value(v).map(|_| ()));
    }
    if let Some(short) = params.take("shortName") {
        short.parse(&mut problems, bool_value);
    }
    for flag in ["isDefaultBackend", "redirectWhenHttpProto", "sslVerifyNone"] {
        if let Some(given) = params.take(flag)
            && given.parse(&mut problems, bool_value) == Some(true)
        {
            problems.push(given.problem(format!("`true` is not supported: {}", why_not(flag))));
        }
    }
    let ttl = params
        .take("ttl")
        .and_then(|g| g.parse(&mut problems, ttl_value));

    // With an invalid name the routes are only parsed for their problems.
    let route_service = name.clone().unwrap_or_else(|| Name("invalid".into()));
    let mut routes = Vec::new();
    let mut sources = Vec::new();
    let mut ports = BTreeSet::new();
    for (&index, &mode) in indices.iter().zip(&modes) {
        let dest = Dest {
            params: &params,
            index,
            mode,
        };
        let (mut route, source) = dest.route(&route_service, &shared, &mut problems);
        if !ports.insert(route.port) {
            route.name = Some(Name(format!("{route_service}.{index}")));
        }
        routes.push(route);
        sources.push(source);
    }
    problems.extend(params.unused());
    if !problems.is_empty() {
        return Err(DfpError::Invalid { problems });
    }
    for (route, &index) in routes.iter().zip(&indices) {
        if route.mode == Mode::Http && route.paths.is_empty() && route.domains.is_empty() {
            return Err(DfpError::NothingToRoute { index });
        }
    }

    let userlists = match (&name, shared.users.is_empty()) {
        (Some(name), false) => BTreeMap::from([(name.clone(), shared.users.clone())]),
        _ => BTreeMap::new(),
    };
    let mut echo = service_echo_with_users(&routes, &userlists);
    echo.acl_name = acl_name.unwrap_or_default();
    echo.distribute = distribute;
    let reconfigure = Reconfigure {
        service_name,
        routes,
        userlists,
        ttl,
        echo,
        sources,
    };
    reconfigure.validate_with(&RoutesFile::empty(), validate::check)?;
    Ok(reconfigure)
}

/// Parses a remove request: `serviceName` (required), `aclName`,
/// `distribute`. The rest of DFP's vocabulary is accepted and ignored (DFSL
/// may send a service's labels along); unknown names are
/// [`DfpError::Unsupported`].
pub fn parse_remove(params: &[(String, String)]) -> Result<Remove, DfpError> {
    let params = Params::read(params, true)?;
    let service = params
        .service("serviceName")
        .ok_or(DfpError::MissingServiceName)?;
    let mut problems = Vec::new();
    let name = service.parse(&mut problems, name_value);
    let acl_name = params
        .service("aclName")
        .and_then(|g| g.parse(&mut problems, acl_name_value));
    if let Some(distribute) = params.service("distribute") {
        distribute.parse(&mut problems, bool_value);
    }
    match name {
        Some(name) if problems.is_empty() => Ok(Remove {
            service_name: name.0,
            acl_name,
        }),
        _ => Err(DfpError::Invalid { problems }),
    }
}

/// One parameter as sent, with a non-empty value.
#[derive(Debug)]
struct Given {
    /// Where it is filed: (name without index, index).
    key: (&'static str, usize),
    /// The name as sent: `port.2`.
    name: String,
    value: String,
}

impl Given {
    fn problem(&self, message: impl Into<String>) -> ParamProblem {
        ParamProblem {
            param: self.name.clone(),
            message: message.into(),
        }
    }

    /// Parses the value, recording a problem when it fails.
    fn parse<T>(
        &self,
        problems: &mut Vec<ParamProblem>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(&self.value) {
            Ok(value) => Some(value),
            Err(message) => {
                problems.push(self.problem(message));
                None
            }
        }
    }
}

/// The request's parameters by (name, destination index); index 0 is the
/// unindexed value. Remembers which ones were used.
struct Params {
    given: BTreeMap<(&'static str, usize), Given>,
    used: RefCell<BTreeSet<(&'static str, usize)>>,
}

enum Class {
    Known(&'static str, usize),
    BadIndex,
    Rejected,
    Unknown,
}

fn classify(name: &str) -> Class {
    if let Some(&known) = SERVICE_PARAMS
        .iter()
        .chain(DEST_PARAMS)
        .find(|&&p| p == name)
    {
        return Class::Known(known, 0);
    }
    if REJECTED.iter().any(|(p, _)| *p == name) {
        return Class::Rejected;
    }
    if let Some((base, index)) = name.rsplit_once('.')
        && let Some(&known) = DEST_PARAMS.iter().find(|&&p| p == base)
    {
        let valid = !index.starts_with('0')
            && index.len() <= 2
            && index.bytes().all(|b| b.is_ascii_digit());
        return match index.parse::<usize>() {
            Ok(i) if valid && (1..=MAX_DESTINATIONS).contains(&i) => Class::Known(known, i),
            _ => Class::BadIndex,
        };
    }
    Class::Unknown
}

impl Params {
    /// Checks names, sizes and characters. `lenient` (remove) accepts every
    /// name of DFP's vocabulary, even those reconfigure rejects.
    fn read(params: &[(String, String)], lenient: bool) -> Result<Self, DfpError> {
        if params.len() > MAX_PARAMS {
            return Err(DfpError::TooManyParams {
                count: params.len(),
            });
        }
        let mut unsupported: Vec<String> = Vec::new();
        let mut problems = Vec::new();
        let mut given: BTreeMap<(&'static str, usize), Given> = BTreeMap::new();
        for (name, value) in params {
            let key = match classify(name) {
                Class::Known(base, index) => (base, index),
                Class::BadIndex => {
                    problems.push(ParamProblem {
                        param: shown(name),
                        message: format!(
                            "destinations are numbered 1 to {MAX_DESTINATIONS}: `{}` names none",
                            shown(name)
                        ),
                    });
                    continue;
                }
                Class::Rejected if lenient => continue,
                Class::Rejected | Class::Unknown => {
                    let name = shown(name);
                    if !unsupported.contains(&name) {
                        unsupported.push(name);
                    }
                    continue;
                }
            };
            let problem = |message: String| ParamProblem {
                param: name.clone(),
                message,
            };
            if let Err(message) = printable(value) {
                problems.push(problem(message));
                continue;
            }
            if value.is_empty() {
                continue;
            }
            match given.get(&key) {
                Some(first) if first.value != *value => problems.push(problem(
                    "is given more than once, with different values; send one value (lists are comma-separated)".into(),
                )),
                Some(_) => {}
                None => {
                    given.insert(
                        key,
                        Given {
                            key,
                            name: name.clone(),
                            value: value.clone(),
                        },
                    );
                }
            }
        }
        if !unsupported.is_empty() {
            return Err(DfpError::Unsupported {
                params: unsupported,
            });
        }
        if !problems.is_empty() {
            problems.dedup();
            return Err(DfpError::Invalid { problems });
        }
        Ok(Self {
            given,
            used: RefCell::new(BTreeSet::new()),
        })
    }

    /// A service-level parameter, without marking it used.
    fn service(&self, base: &'static str) -> Option<&Given> {
        self.given.get(&(base, 0))
    }

    /// A service-level parameter, marked used.
    fn take(&self, base: &'static str) -> Option<&Given> {
        let given = self.service(base)?;
        self.mark(given);
        Some(given)
    }

    /// A destination's own value, else the unindexed one; not marked used.
    fn lookup(&self, base: &'static str, index: usize) -> Option<&Given> {
        self.given
            .get(&(base, index))
            .or_else(|| self.given.get(&(base, 0)))
    }

    fn mark(&self, given: &Given) {
        self.used.borrow_mut().insert(given.key);
    }

    /// The destinations: every index given, and 0 when no index is, or when
    /// the unindexed values make a destination of their own (`port` and one
    /// of `servicePath`, `serviceDomain`, `srcPort`). Otherwise unindexed
    /// values are only fallbacks.
    fn indices(&self) -> Vec<usize> {
        let indexed: BTreeSet<usize> = self
            .given
            .keys()
            .map(|&(_, i)| i)
            .filter(|&i| i > 0)
            .collect();
        let mut indices = Vec::new();
        let own = |base| self.given.contains_key(&(base, 0));
        let complete =
            own("port") && (own("servicePath") || own("serviceDomain") || own("srcPort"));
        if indexed.is_empty() || complete {
            indices.push(0);
        }
        indices.extend(indexed);
        indices
    }

    /// Problems for every parameter that nothing used.
    fn unused(&self) -> Vec<ParamProblem> {
        let used = self.used.borrow();
        self.given
            .iter()
            .filter(|(key, _)| !used.contains(key))
            .map(|(&(base, _), given)| {
                let why = if HTTP_ONLY.contains(&base) || base_is_http_service(base) {
                    "it applies to http destinations, and there is none it could apply to"
                } else if TCP_ONLY.contains(&base) {
                    "it applies to reqMode=tcp destinations, and there is none it could apply to"
                } else if base == "usersPassEncrypted" {
                    "it is only used with `users`"
                } else {
                    "nothing uses it"
                };
                given.problem(format!("has no effect: {why}"))
            })
            .collect()
    }
}

/// Service-level parameters that only http destinations use.
fn base_is_http_service(base: &str) -> bool {
    matches!(
        base,
        "pathType"
            | "serviceDomainAlgo"
            | "users"
            | "addReqHeader"
            | "setReqHeader"
            | "delReqHeader"
            | "addResHeader"
            | "setResHeader"
            | "delResHeader"
            | "reqPathSearch"
            | "reqPathReplace"
    )
}

fn why_not(flag: &str) -> &'static str {
    match flag {
        "isDefaultBackend" => "capstan has no default backend; route `servicePath=/` instead",
        "redirectWhenHttpProto" => {
            "capstan redirects to HTTPS only when the connection to HAProxy is not TLS (`httpsOnly`)"
        }
        _ => "capstan does not proxy to TLS backends",
    }
}

/// Settings of the whole service, applied to its http destinations (and
/// `sticky` to all).
struct Shared {
    path_match: PathMatch,
    users: Vec<User>,
    request_headers: HeaderRules,
    response_headers: HeaderRules,
    rewrite: Option<PathRewrite>,
    sticky: bool,
    /// DFP parameter → the name it was sent as, for the settings given.
    sources: BTreeMap<&'static str, String>,
}

impl Shared {
    fn read(params: &Params, any_http: bool, problems: &mut Vec<ParamProblem>) -> Self {
        let mut shared = Shared {
            path_match: PathMatch::Prefix,
            users: Vec::new(),
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            rewrite: None,
            sticky: false,
            sources: BTreeMap::new(),
        };
        if let Some(given) = params.take("sessionType") {
            shared.sticky = given
                .parse(problems, |v| match v {
                    "sticky-server" => Ok(true),
                    other => Err(format!(
                        "`{}` is not supported: only `sticky-server`",
                        excerpt(other)
                    )),
                })
                .unwrap_or(false);
            shared.sources.insert("sessionType", given.name.clone());
        }
        if !any_http {
            // Left unused: reported as having no effect.
            return shared;
        }
        if let Some(given) = params.take("pathType") {
            shared.path_match = given
                .parse(problems, |v| match v {
                    "path_beg" => Ok(PathMatch::Prefix),
                    "path" => Ok(PathMatch::Exact),
                    "path_reg" => Ok(PathMatch::Regex),
                    other => Err(format!(
                        "`{}` is not supported: `path_beg`, `path` or `path_reg`",
                        excerpt(other)
                    )),
                })
                .unwrap_or_default();
            shared.sources.insert("pathType", given.name.clone());
        }
        if let Some(given) = params.take("serviceDomainAlgo") {
            given.parse(problems, |v| match v {
                "hdr_beg(host)" | "hdr(host)" => Ok(()),
                other => Err(format!(
                    "`{}` is not supported: capstan matches the whole host name (without its port), as `hdr(host)`",
                    excerpt(other)
                )),
            });
        }
        if let Some(users) = params.take("users") {
            let encrypted = params
                .take("usersPassEncrypted")
                .and_then(|g| g.parse(problems, bool_value))
                .unwrap_or(false);
            if encrypted {
                shared.users = users.parse(problems, users_value).unwrap_or_default();
            } else {
                problems.push(users.problem(
                    "plaintext passwords are not accepted: send crypt(3) hashes (`mkpasswd -m sha-512`) as `user:hash` with `usersPassEncrypted=true`",
                ));
            }
            shared.sources.insert("users", users.name.clone());
        }
        for (base, rules, add) in [
            ("addReqHeader", 0, true),
            ("setReqHeader", 0, false),
            ("addResHeader", 1, true),
            ("setResHeader", 1, false),
        ] {
            let Some(given) = params.take(base) else {
                continue;
            };
            let Some(headers) = given.parse(problems, header_values) else {
                continue;
            };
            let rules = if rules == 0 {
                &mut shared.request_headers
            } else {
                &mut shared.response_headers
            };
            if add {
                rules.add = headers;
            } else {
                rules.set = headers;
            }
        }
        for (base, rules) in [("delReqHeader", 0), ("delResHeader", 1)] {
            let Some(given) = params.take(base) else {
                continue;
            };
            let Some(names) = given.parse(problems, header_names) else {
                continue;
            };
            if rules == 0 {
                shared.request_headers.delete = names;
            } else {
                shared.response_headers.delete = names;
            }
        }
        let search = params.take("reqPathSearch");
        let replace = params.take("reqPathReplace");
        match (search, replace) {
            (Some(search), Some(replace)) => {
                shared.rewrite = search.parse(problems, |s| {
                    regsub_rewrite(s, &replace.value)
                        .map_err(|e| format!("with `reqPathReplace`: {e}"))
                });
                shared
                    .sources
                    .insert("reqPathSearchReplace", search.name.clone());
            }
            (Some(given), None) => {
                problems.push(given.problem("needs `reqPathReplace` too"));
            }
            (None, Some(given)) => {
                problems.push(given.problem("needs `reqPathSearch` too"));
            }
            (None, None) => {}
        }
        shared
    }
}

/// One destination being translated.
struct Dest<'a> {
    params: &'a Params,
    index: usize,
    mode: Mode,
}

impl Dest<'_> {
    /// The destination's value of `base`: its own, else the unindexed one
    /// when `base` applies to its mode. An own (indexed) value that does not
    /// apply is a problem; an unindexed one is left for other destinations.
    fn take(&self, base: &'static str, problems: &mut Vec<ParamProblem>) -> Option<&Given> {
        let applies = match self.mode {
            Mode::Http => !TCP_ONLY.contains(&base),
            Mode::Tcp => !HTTP_ONLY.contains(&base),
        };
        if self.index > 0
            && let Some(own) = self.params.given.get(&(base, self.index))
        {
            self.params.mark(own);
            if !applies {
                let kind = if self.mode == Mode::Tcp {
                    "http destinations; this one is reqMode=tcp"
                } else {
                    "reqMode=tcp destinations; this one is http"
                };
                problems.push(own.problem(format!("applies to {kind}")));
                return None;
            }
            return Some(own);
        }
        let fallback = self.params.given.get(&(base, 0))?;
        if !applies {
            return None;
        }
        self.params.mark(fallback);
        Some(fallback)
    }

    /// The destination's route for `service`, and where its settings came from.
    fn route(
        &self,
        service: &Name,
        shared: &Shared,
        problems: &mut Vec<ParamProblem>,
    ) -> (Route, BTreeMap<&'static str, String>) {
        let mut route = Route::new(service.as_str(), 1);
        let mut sources = BTreeMap::new();
        route.mode = self.mode;
        if let Some(given) = self.params.lookup("reqMode", self.index) {
            sources.insert("reqMode", given.name.clone());
        }
        let mut take = |base: &'static str| {
            let given = self.take(base, problems)?;
            sources.insert(base, given.name.clone());
            Some(given)
        };
        let port = take("port");
        let listen_port = take("srcPort");
        let paths = take("servicePath");
        let domains = take("serviceDomain");
        let https_only = take("httpsOnly");
        let redirect_code = take("httpsRedirectCode");
        let outbound = take("outboundHostname");
        let rewrite = take("reqPathSearchReplace");
        let server = take("timeoutServer");
        let tunnel = take("timeoutTunnel");
        let client = take("timeoutClient");

        if let Some(port) = port.and_then(|g| g.parse(problems, port_value)) {
            route.port = port;
        }
        route.listen_port = listen_port.and_then(|g| g.parse(problems, port_value));
        if let Some(given) = paths {
            let path_match = shared.path_match;
            route.paths = given
                .parse(problems, |v| paths_value(v, path_match))
                .unwrap_or_default();
        }
        if let Some(given) = domains {
            route.domains = given.parse(problems, domains_value).unwrap_or_default();
        }
        route.https_only = https_only
            .and_then(|g| g.parse(problems, bool_value))
            .unwrap_or(false);
        route.redirect_code = redirect_code.and_then(|g| {
            g.parse(problems, |v| {
                let code = v
                    .parse::<u16>()
                    .map_err(|_| "is not a number".to_string())?;
                RedirectCode::try_from(code)
                    .map_err(|_| format!("`{}` is not one of 301, 302, 303, 307, 308", excerpt(v)))
            })
        });
        if let Some(host) = outbound.and_then(|g| g.parse(problems, host_value)) {
            route.servers = vec![Address(format!("{host}:{}", route.port))];
        }
        if let Some(given) = rewrite {
            if shared.rewrite.is_some() {
                problems.push(
                    given.problem("conflicts with `reqPathSearch`/`reqPathReplace`: send one form"),
                );
            }
            route.rewrite_path = given.parse(problems, search_replace_value);
        }
        route.timeouts.server = server.and_then(|g| g.parse(problems, seconds_value));
        route.timeouts.tunnel = tunnel.and_then(|g| g.parse(problems, seconds_value));
        route.timeouts.client = client.and_then(|g| g.parse(problems, seconds_value));

        route.sticky = shared.sticky;
        sources.extend(
            shared
                .sources
                .iter()
                .filter(|(base, _)| **base == "sessionType" || self.mode == Mode::Http)
                .map(|(f, n)| (*f, n.clone())),
        );
        if self.mode == Mode::Http {
            route.path_match = shared.path_match;
            route.request_headers = shared.request_headers.clone();
            route.response_headers = shared.response_headers.clone();
            if route.rewrite_path.is_none() {
                route.rewrite_path = shared.rewrite.clone();
            }
            if !shared.users.is_empty() {
                route.auth = Some(Auth {
                    userlist: service.clone(),
                    realm: None,
                });
            }
        }
        (route, sources)
    }
}

/// Only printable ASCII, at most [`MAX_VALUE_LEN`] bytes.
fn printable(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_LEN {
        return Err(format!(
            "is {} bytes long; at most {MAX_VALUE_LEN} are accepted",
            value.len()
        ));
    }
    match value.chars().find(|c| !(' '..='~').contains(c)) {
        None => Ok(()),
        Some(c) => {
            let what = match c {
                '\n' => "a newline".to_string(),
                '\r' => "a carriage return".to_string(),
                '\t' => "a tab".to_string(),
                '\0' => "a NUL byte".to_string(),
                c if c.is_control() => format!("the control character U+{:04X}", c as u32),
                c => format!("the non-ASCII character U+{:04X}", c as u32),
            };
            Err(format!("contains {what}: only printable ASCII is accepted"))
        }
    }
}

/// A parameter name fit for a message: cut short and escaped when needed.
fn shown(name: &str) -> String {
    let plain = name.len() <= MAX_SHOWN_NAME && name.bytes().all(|b| b.is_ascii_graphic());
    if plain {
        return name.to_string();
    }
    let mut out: String = name
        .chars()
        .take(MAX_SHOWN_NAME)
        .flat_map(char::escape_default)
        .collect();
    if name.chars().count() > MAX_SHOWN_NAME {
        out.push('…');
    }
    out
}

fn is_name(value: &str) -> bool {
    let mut bytes = value.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && value.len() <= 63
}

fn name_value(value: &str) -> Result<Name, String> {
    if is_name(value) {
        Ok(Name(value.to_string()))
    } else {
        Err(format!(
            "`{}` is not a service name: a letter or digit, then letters, digits, `_`, `.` or `-`; at most 63",
            excerpt(value)
        ))
    }
}

fn acl_name_value(value: &str) -> Result<String, String> {
    let ok = value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "`{}` is not an ACL name: letters, digits, `_`, `.` or `-`; at most 63",
            excerpt(value)
        ))
    }
}

fn port_value(value: &str) -> Result<u16, String> {
    let number = (value.len() <= 5 && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse::<u32>().ok())
        .flatten();
    match number {
        Some(port @ 1..=65535) => Ok(port as u16),
        _ => Err(format!("`{}` is not a port: 1 to 65535", excerpt(value))),
    }
}

fn count_value(value: &str) -> Result<u32, String> {
    if value.len() <= 9 && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse().map_err(|_| "is not a number".to_string())
    } else {
        Err(format!("`{}` is not a number", excerpt(value)))
    }
}

/// Go's `strconv.ParseBool`, as DFP reads its flags.
fn bool_value(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        other => Err(format!(
            "`{}` is not a boolean: `true` or `false`",
            excerpt(other)
        )),
    }
}

/// DFP's timeouts: whole seconds, 1 to 999999999.
fn seconds_value(value: &str) -> Result<model::Duration, String> {
    let digits = value.len() <= 9 && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u32>() {
        Ok(n) if digits && n > 0 => Ok(model::Duration(format!("{n}s"))),
        _ => Err(format!(
            "`{}` is not a number of seconds: 1 to 999999999",
            excerpt(value)
        )),
    }
}

/// capstan's `ttl`: a number of seconds, or a number with `s`, `m`, `h` or `d`.
fn ttl_value(value: &str) -> Result<Duration, String> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &value[digits.len()..] {
        "" | "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86400),
        _ => None,
    };
    let number = (digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse::<u64>().ok())
        .flatten();
    match (number, unit) {
        (Some(n), Some(unit)) if n > 0 => Ok(Duration::from_secs(n * unit)),
        _ => Err(format!(
            "`{}` is not a duration: seconds, or a number with `s`, `m`, `h` or `d` (`10m`)",
            excerpt(value)
        )),
    }
}

/// The items of a comma list; empty items are an error.
fn items(value: &str) -> Result<Vec<&str>, String> {
    let items: Vec<&str> = value.split(',').collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err("has an empty item in its comma-separated list".into());
    }
    Ok(items)
}

fn paths_value(value: &str, path_match: PathMatch) -> Result<Vec<UrlPath>, String> {
    let mut paths = Vec::new();
    for path in items(value)? {
        if let Some(c) = path
            .chars()
            .find(|c| matches!(c, ' ' | '"' | '\'' | '#' | '`'))
        {
            let c = if c == ' ' {
                "a space".into()
            } else {
                format!("`{c}`")
            };
            return Err(format!("`{}`: {c} is not allowed in a path", excerpt(path)));
        }
        if path_match == PathMatch::Regex {
            if path.starts_with('-') {
                return Err(format!(
                    "`{}`: a regular expression may not start with `-` (HAProxy would read a flag); write `[-]`",
                    excerpt(path)
                ));
            }
            capture_groups(path).map_err(|e| format!("`{}`: {e}", excerpt(path)))?;
        } else if !path.starts_with('/') {
            return Err(format!("`{}` must start with `/`", excerpt(path)));
        } else if let Some(problem) = validate::literal_word_problem(path) {
            return Err(problem);
        }
        let path = UrlPath(path.to_string());
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    Ok(paths)
}

fn is_domain(value: &str) -> bool {
    value.len() <= 253
        && value.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

/// DFP's domains: `a.com`, `*.a.com` (any subdomain) and `*a.com` (DFP's
/// suffix match: here `a.com` and any subdomain of it).
fn domains_value(value: &str) -> Result<Vec<Domain>, String> {
    let mut domains = Vec::new();
    for item in items(value)? {
        let (name, exact, wildcard) = match item.strip_prefix('*') {
            Some(rest) => match rest.strip_prefix('.') {
                Some(name) => (name, false, true),
                None => (rest, true, true),
            },
            None => (item, true, false),
        };
        if !is_domain(name) {
            let hint = if name.contains(':') {
                " (without a port: capstan ignores the port of `Host`)"
            } else {
                ""
            };
            return Err(format!(
                "`{}` is not a host name{hint}: labels of letters, digits and inner `-`, separated by `.`, optionally after `*`",
                excerpt(item)
            ));
        }
        let mut add = |d: String| {
            let d = Domain(d);
            if !domains.contains(&d) {
                domains.push(d);
            }
        };
        if exact {
            add(name.to_string());
        }
        if wildcard {
            add(format!("*.{name}"));
        }
    }
    Ok(domains)
}

fn host_value(value: &str) -> Result<String, String> {
    let mut bytes = value.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!(
            "`{}` is not a host name (without port or scheme)",
            excerpt(value)
        ))
    }
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!&*+.^_`|~-".contains(&b));
    if ok {
        Ok(HeaderName(name.to_string()))
    } else {
        Err(format!(
            "`{}` is not a header name: letters, digits and ``!&*+.^_`|~-``",
            excerpt(name)
        ))
    }
}

/// DFP's headers: `Name Value,Name2 Value2`.
fn header_values(value: &str) -> Result<BTreeMap<HeaderName, HeaderValue>, String> {
    let mut headers = BTreeMap::new();
    for item in items(value)? {
        let item = item.trim_matches(' ');
        let Some((name, value)) = item.split_once(' ') else {
            return Err(format!("`{}` is not `Name Value`", excerpt(item)));
        };
        let name = header_name(name)?;
        let value = value.trim_matches(' ');
        if value.is_empty() {
            return Err(format!("`{}` has no value", name.0));
        }
        let bad = |c: char| match c {
            '%' => Some(
                "`%` starts an HAProxy sample expression (`%[src]`): capstan only sets literal values",
            ),
            '$' => Some("`$` would expand an environment variable of HAProxy"),
            '"' | '\\' => Some("quotes and backslashes are not allowed"),
            _ => None,
        };
        if let Some(why) = value.chars().find_map(bad) {
            return Err(format!("header `{}`: {why}", name.0));
        }
        if headers.contains_key(&name) {
            return Err(format!("header `{}` is listed twice", name.0));
        }
        headers.insert(name, HeaderValue(value.to_string()));
    }
    Ok(headers)
}

fn header_names(value: &str) -> Result<Vec<HeaderName>, String> {
    let mut names = Vec::new();
    for item in items(value)? {
        let name = header_name(item.trim_matches(' '))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

fn users_value(value: &str) -> Result<Vec<User>, String> {
    let mut users: Vec<User> = Vec::new();
    for item in items(value)? {
        let Some((name, hash)) = item.split_once(':') else {
            return Err("every user is `name:hash`".into());
        };
        if !is_name(name) {
            return Err(format!("`{}` is not a user name", excerpt(name)));
        }
        if !is_crypt_hash(hash) {
            // Never echo what may be a password.
            return Err(format!(
                "the password of `{name}` is not a crypt(3) hash (`$6$...`, `$5$...`, `$2y$...`, `$y$...`); plaintext is not accepted"
            ));
        }
        if users.iter().any(|u| u.name.0 == name) {
            return Err(format!("user `{name}` is listed twice"));
        }
        users.push(User {
            name: Name(name.to_string()),
            password_hash: hash.to_string(),
        });
    }
    Ok(users)
}

/// capstan's hash pattern: `$<id>$` then `[A-Za-z0-9./$=,-]+`.
fn is_crypt_hash(hash: &str) -> bool {
    let Some(rest) = hash.strip_prefix('$') else {
        return false;
    };
    let Some((id, body)) = rest.split_once('$') else {
        return false;
    };
    matches!(id, "1" | "5" | "6" | "2a" | "2b" | "2y" | "y")
        && !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"./$=,-".contains(&b))
}

/// `reqPathSearchReplace`: one `search,replace` pair.
fn search_replace_value(value: &str) -> Result<PathRewrite, String> {
    if value.contains(':') {
        return Err(
            "several `search,replace` pairs (`:`) are not supported: capstan applies one rewrite per destination".into(),
        );
    }
    match value.split(',').collect::<Vec<_>>().as_slice() {
        [search, replace] => regsub_rewrite(search, replace),
        _ => Err("is not `search,replace`".into()),
    }
}

/// DFP's rewrite `http-request set-path %[path,regsub(search,replace)]`
/// (the first match of `search` in the path is replaced) as capstan's
/// `replace-path`, which replaces the whole path: `^(.*?)(search)(.*)$` →
/// `\1replace\N`, with `replace`'s back-references shifted by two.
fn regsub_rewrite(search: &str, replace: &str) -> Result<PathRewrite, String> {
    if search.is_empty() {
        return Err("the search is empty".into());
    }
    if let Some(c) = search
        .chars()
        .find(|c| matches!(c, ' ' | '"' | '\'' | '#' | '`'))
    {
        return Err(format!("`{c}` is not allowed in the search"));
    }
    if let Some(c) = replace
        .chars()
        .find(|c| matches!(c, ' ' | '"' | '\'' | '#' | '`' | '%'))
    {
        return Err(format!("`{c}` is not allowed in the replacement"));
    }
    let groups = capture_groups(search).map_err(|e| format!("the search: {e}"))?;
    let rest = groups + 3;
    if rest > 9 {
        return Err(format!(
            "the search has {groups} capture groups; at most 6 are supported"
        ));
    }
    let mut out = String::from("\\1");
    let mut chars = replace.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().and_then(|d| d.to_digit(10)) {
            Some(k) if (k as usize) <= groups => {
                out.push('\\');
                out.push_str(&(k as usize + 2).to_string());
            }
            Some(k) => {
                return Err(format!(
                    "the replacement refers to group {k}; the search has {groups}"
                ));
            }
            None => {
                return Err("a `\\` in the replacement must be followed by a group number".into());
            }
        }
    }
    out.push('\\');
    out.push_str(&rest.to_string());
    Ok(PathRewrite {
        regex: format!("^(.*?)({search})(.*)$"),
        replace: out,
    })
}

/// The `search,replace` a rewrite made by [`regsub_rewrite`] came from; any
/// other rewrite as its regex and replacement.
fn search_replace_of(rewrite: &PathRewrite) -> (String, String) {
    let raw = || (rewrite.regex.clone(), rewrite.replace.clone());
    let Some(search) = rewrite
        .regex
        .strip_prefix("^(.*?)(")
        .and_then(|r| r.strip_suffix(")(.*)$"))
    else {
        return raw();
    };
    let Ok(groups) = capture_groups(search) else {
        return raw();
    };
    let Some(middle) = rewrite
        .replace
        .strip_prefix("\\1")
        .and_then(|r| r.strip_suffix(&format!("\\{}", groups + 3)))
    else {
        return raw();
    };
    let mut replace = String::new();
    let mut chars = middle.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            replace.push(c);
            continue;
        }
        match chars.next().and_then(|d| d.to_digit(10)) {
            Some(k) if k >= 2 => {
                replace.push('\\');
                replace.push_str(&(k - 2).to_string());
            }
            _ => return raw(),
        }
    }
    (search.to_string(), replace)
}

/// Counts the capture groups of a PCRE pattern, and checks that its
/// parentheses and brackets balance: a structural check, so that an obviously
/// broken pattern is a 400 rather than a config HAProxy refuses.
fn capture_groups(regex: &str) -> Result<usize, String> {
    let b = regex.as_bytes();
    let (mut i, mut depth, mut groups) = (0, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'\\' => match b.get(i + 1) {
                None => return Err("ends with a lone `\\`".into()),
                Some(b'Q') => return Err("`\\Q...\\E` quoting is not supported".into()),
                Some(_) => i += 2,
            },
            b'[' => i = class_end(b, i)?,
            b'(' => {
                depth += 1;
                match (b.get(i + 1), b.get(i + 2), b.get(i + 3)) {
                    (Some(b'*'), ..) => return Err("`(*...)` verbs are not supported".into()),
                    (Some(b'?'), Some(b'<'), Some(b'=' | b'!')) => {}
                    (Some(b'?'), Some(b'<' | b'\''), _) | (Some(b'?'), Some(b'P'), Some(b'<')) => {
                        groups += 1
                    }
                    (
                        Some(b'?'),
                        Some(b'P' | b'|' | b'R' | b'&' | b'+' | b'C' | b'0'..=b'9'),
                        _,
                    ) => {
                        return Err(
                            "branch resets, recursion, subroutine calls and callouts are not supported"
                                .into(),
                        );
                    }
                    (Some(b'?'), ..) => {}
                    _ => groups += 1,
                }
                i += 1;
            }
            b')' => {
                if depth == 0 {
                    return Err("has an unbalanced `)`".into());
                }
                depth -= 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    if depth > 0 {
        return Err("has an unclosed `(`".into());
    }
    Ok(groups)
}

/// The index after the `]` closing the character class opened at `start`.
fn class_end(b: &[u8], start: usize) -> Result<usize, String> {
    let mut i = start + 1;
    if b.get(i) == Some(&b'^') {
        i += 1;
    }
    if b.get(i) == Some(&b']') {
        i += 1;
    }
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'[' if b.get(i + 1) == Some(&b':') => {
                let close = b[i + 2..]
                    .windows(2)
                    .position(|w| w == b":]")
                    .ok_or("has an unclosed `[:`")?;
                i += 2 + close + 2;
            }
            b']' => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err("has an unclosed `[`".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render;

    /// `a=1&b=2` as decoded pairs (no percent-decoding: values are written decoded).
    fn q(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .collect()
    }

    fn ok(query: &str) -> Reconfigure {
        parse_reconfigure(&q(query)).unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    fn err(query: &str) -> DfpError {
        match parse_reconfigure(&q(query)) {
            Ok(r) => panic!("{query} was accepted: {:#?}", r.routes),
            Err(e) => e,
        }
    }

    /// The error is a 400 about `param`, and its message names it.
    fn bad(query: &str, param: &str) -> String {
        let e = err(query);
        assert_eq!(e.status_code(), 400, "{query}: {e}");
        assert!(
            e.params().iter().any(|p| p == param),
            "{query}: {e} is not about `{param}` but {:?}",
            e.params()
        );
        let message = e.to_string();
        assert!(message.contains(param), "{query}: {message}");
        message
    }

    fn config(r: &Reconfigure) -> String {
        let mut file = RoutesFile::empty();
        file.routes = r.routes.clone();
        file.userlists = r.userlists.clone();
        render::render(&file).to_string()
    }

    const HASH: &str = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/";

    #[test]
    fn the_book_example_renders_as_docker_flow_proxy_did() {
        let r = ok("serviceName=go-demo&servicePath=/demo&port=8080");
        assert_eq!(r.service_name, "go-demo");
        let mut expected = Route::new("go-demo", 8080);
        expected.paths = vec![UrlPath("/demo".into())];
        assert_eq!(r.routes, [expected]);
        assert!(r.userlists.is_empty());
        assert_eq!(r.ttl, None);
        let cfg = config(&r);
        assert!(
            cfg.contains("    acl url_go-demo8080 path_beg /demo\n"),
            "{cfg}"
        );
        assert!(cfg.contains("\nbackend go-demo-be8080\n"), "{cfg}");
    }

    #[test]
    fn service_name_is_required_and_checked() {
        assert_eq!(
            err("port=8080&servicePath=/a"),
            DfpError::MissingServiceName
        );
        assert_eq!(err("port=8080").status_code(), 400);
        bad(
            "serviceName=go demo&port=8080&servicePath=/a",
            "serviceName",
        );
        bad("serviceName=-x&port=8080&servicePath=/a", "serviceName");
        bad(
            &format!("serviceName={}&port=1&servicePath=/a", "a".repeat(64)),
            "serviceName",
        );
    }

    #[test]
    fn ports_are_required_and_bounded() {
        assert_eq!(
            err("serviceName=a&servicePath=/a"),
            DfpError::MissingPort {
                param: "port".into()
            }
        );
        for port in ["abc", "70000", "0", "+80", "-1", "8080 "] {
            bad(&format!("serviceName=a&servicePath=/a&port={port}"), "port");
        }
        assert_eq!(
            ok("serviceName=a&servicePath=/a&port=65535").routes[0].port,
            65535
        );
    }

    #[test]
    fn paths_and_path_types() {
        let r = ok("serviceName=a&port=80&servicePath=/x,/y,/x");
        assert_eq!(
            r.routes[0].paths,
            [UrlPath("/x".into()), UrlPath("/y".into())]
        );
        assert_eq!(r.routes[0].path_match, PathMatch::Prefix);
        let r = ok("serviceName=a&port=80&servicePath=/x&pathType=path");
        assert_eq!(r.routes[0].path_match, PathMatch::Exact);
        let r = ok("serviceName=a&port=80&servicePath=^/x/[0-9]+$&pathType=path_reg");
        assert_eq!(r.routes[0].path_match, PathMatch::Regex);
        assert_eq!(r.echo.path_type, "path_reg");
        bad(
            "serviceName=a&port=80&servicePath=/x&pathType=path_end",
            "pathType",
        );
        bad("serviceName=a&port=80&servicePath=x", "servicePath");
        bad("serviceName=a&port=80&servicePath=/a,,/b", "servicePath");
        bad("serviceName=a&port=80&servicePath=/a#b", "servicePath");
        bad("serviceName=a&port=80&servicePath=/a'", "servicePath");
        bad(
            "serviceName=a&port=80&servicePath=-f&pathType=path_reg",
            "servicePath",
        );
        bad(
            "serviceName=a&port=80&servicePath=/(a&pathType=path_reg",
            "servicePath",
        );
        bad(
            "serviceName=a&port=80&servicePath=/[a&pathType=path_reg",
            "servicePath",
        );
    }

    #[test]
    fn domains_and_dfp_wildcards() {
        let r = ok("serviceName=a&port=80&serviceDomain=a.com,*.b.com,*c.com");
        let domains: Vec<&str> = r.routes[0].domains.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(domains, ["a.com", "*.b.com", "c.com", "*.c.com"]);
        assert!(r.routes[0].paths.is_empty());
        let r = ok("serviceName=a&port=80&serviceDomain=a.com&serviceDomainAlgo=hdr_beg(host)");
        assert_eq!(r.routes[0].domains.len(), 1);
        bad(
            "serviceName=a&port=80&serviceDomain=a.com:8080",
            "serviceDomain",
        );
        bad("serviceName=a&port=80&serviceDomain=*", "serviceDomain");
        bad(
            "serviceName=a&port=80&serviceDomain=a..com",
            "serviceDomain",
        );
        bad(
            "serviceName=a&port=80&serviceDomain=a.com&serviceDomainAlgo=hdr_dom(host)",
            "serviceDomainAlgo",
        );
        let cfg = config(&ok(
            "serviceName=a&port=80&serviceDomain=*c.com&servicePath=/x",
        ));
        assert!(
            cfg.contains("acl domain_a80 hdr(host),field(1,:) -i -m str c.com\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("acl domain_a80 hdr(host),field(1,:) -i -m end .c.com\n"),
            "{cfg}"
        );
    }

    #[test]
    fn nothing_to_route_is_409() {
        let e = err("serviceName=a&port=80");
        assert_eq!(e, DfpError::NothingToRoute { index: 0 });
        assert_eq!(e.status_code(), 409);
        assert!(e.to_string().contains("servicePath"), "{e}");
        assert_eq!(
            err("serviceName=a&port.2=80&servicePath.1=/a&port.1=81").status_code(),
            409
        );
    }

    #[test]
    fn tcp_destinations() {
        let r = ok("serviceName=db&port=5432&reqMode=tcp&srcPort=15432&timeoutClient=3600");
        let route = &r.routes[0];
        assert_eq!(route.mode, Mode::Tcp);
        assert_eq!(route.listen_port, Some(15432));
        assert_eq!(route.timeouts.client, Some(model::Duration("3600s".into())));
        assert_eq!(r.echo.service_dest[0].src_port, 15432);
        assert_eq!(r.echo.req_mode, "tcp");
        assert!(config(&r).contains("frontend tcp_15432\n"));
        assert_eq!(
            err("serviceName=db&port=5432&reqMode=tcp"),
            DfpError::MissingSrcPort {
                param: "srcPort".into()
            }
        );
        bad("serviceName=db&port=5432&reqMode=sni&srcPort=1", "reqMode");
        bad("serviceName=db&port=5432&reqMode=udp&srcPort=1", "reqMode");
        // Http destinations have no listen port of their own, nor a client timeout.
        bad(
            "serviceName=a&port=80&servicePath=/a&srcPort=8080",
            "srcPort",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&timeoutClient=5",
            "timeoutClient",
        );
        // http-only settings on a tcp destination.
        bad(
            "serviceName=db&port=5432&reqMode=tcp&srcPort=1&servicePath=/a",
            "servicePath",
        );
        bad(
            "serviceName=db&port=5432&reqMode=tcp&srcPort=1&users=u:x&usersPassEncrypted=true",
            "users",
        );
        // The http frontend's port is taken.
        bad("serviceName=db&port=5432&reqMode=tcp&srcPort=80", "srcPort");
    }

    #[test]
    fn https_redirects() {
        let r = ok("serviceName=a&port=80&servicePath=/a&httpsOnly=true&httpsRedirectCode=301");
        assert!(r.routes[0].https_only);
        assert_eq!(
            r.routes[0].redirect_code,
            Some(RedirectCode::MovedPermanently)
        );
        assert_eq!(r.echo.service_dest[0].https_redirect_code, "301");
        assert!(!ok("serviceName=a&port=80&servicePath=/a&httpsOnly=false").routes[0].https_only);
        bad(
            "serviceName=a&port=80&servicePath=/a&httpsOnly=yes",
            "httpsOnly",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&httpsOnly=true&httpsRedirectCode=305",
            "httpsRedirectCode",
        );
        // Without httpsOnly a redirect code means nothing: capstan's validation says so.
        let message = bad(
            "serviceName=a&port=80&servicePath=/a&httpsRedirectCode=301",
            "httpsRedirectCode",
        );
        assert!(message.contains("https_only"), "{message}");
    }

    #[test]
    fn hashed_users_become_a_userlist() {
        let r = ok(&format!(
            "serviceName=a&port=80&servicePath=/a&users=alice:{HASH},bob:$2y$05$abcdefghijklmnopqrstuv&usersPassEncrypted=true"
        ));
        let users = &r.userlists[&Name("a".into())];
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].password_hash, HASH);
        assert_eq!(r.routes[0].auth.as_ref().unwrap().userlist.0, "a");
        let echo = serde_json::to_string(&r.echo).unwrap();
        assert!(
            echo.contains(r#""Users":[{"Username":"alice"},{"Username":"bob"}]"#),
            "{echo}"
        );
        assert!(!echo.contains('$'), "{echo}");
        assert!(config(&r).contains("userlist a\n"));

        let message = bad(
            "serviceName=a&port=80&servicePath=/a&users=alice:secret",
            "users",
        );
        assert!(message.contains("plaintext"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        let message = bad(
            "serviceName=a&port=80&servicePath=/a&users=alice:secret&usersPassEncrypted=true",
            "users",
        );
        assert!(!message.contains("secret"), "{message}");
        bad(
            "serviceName=a&port=80&servicePath=/a&users=alice&usersPassEncrypted=true",
            "users",
        );
        bad(
            &format!(
                "serviceName=a&port=80&servicePath=/a&users=a:{HASH},a:{HASH}&usersPassEncrypted=true"
            ),
            "users",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&usersPassEncrypted=true",
            "usersPassEncrypted",
        );
        assert_eq!(
            err("serviceName=a&port=80&servicePath=/a&usersSecret=admin"),
            DfpError::Unsupported {
                params: vec!["usersSecret".into()]
            }
        );
    }

    #[test]
    fn headers() {
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&addReqHeader=X-A one two,X-B b&setReqHeader=X-C c&delReqHeader=X-D,X-E&addResHeader=X-F f&setResHeader=X-G g&delResHeader=Server",
        );
        let route = &r.routes[0];
        assert_eq!(
            route.request_headers.add[&HeaderName("X-A".into())].0,
            "one two"
        );
        assert_eq!(route.request_headers.add.len(), 2);
        assert_eq!(route.request_headers.set.len(), 1);
        assert_eq!(route.request_headers.delete.len(), 2);
        assert_eq!(route.response_headers.add.len(), 1);
        assert_eq!(route.response_headers.set.len(), 1);
        assert_eq!(route.response_headers.delete, [HeaderName("Server".into())]);
        assert_eq!(r.echo.add_req_header, ["X-A one two", "X-B b"]);
        assert_eq!(r.echo.del_res_header, ["Server"]);
        let cfg = config(&r);
        assert!(
            cfg.contains("    http-request add-header X-A \"one two\"\n"),
            "{cfg}"
        );

        let message = bad(
            "serviceName=a&port=80&servicePath=/a&addReqHeader=X-Port %[dst_port]",
            "addReqHeader",
        );
        assert!(message.contains("literal"), "{message}");
        let message = bad(
            "serviceName=a&port=80&servicePath=/a&setResHeader=X-Leak ${HOME}",
            "setResHeader",
        );
        assert!(message.contains("environment"), "{message}");
        bad(
            "serviceName=a&port=80&servicePath=/a&addReqHeader=X-A \"q\"",
            "addReqHeader",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&addReqHeader=X-A",
            "addReqHeader",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&addReqHeader=X:A b",
            "addReqHeader",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&addReqHeader=X-A a,X-A b",
            "addReqHeader",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&delReqHeader=X A",
            "delReqHeader",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&delReqHeader=X'A",
            "delReqHeader",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&addResHeader=X$A a",
            "addResHeader",
        );
    }

    #[test]
    fn path_rewrites_keep_dfp_regsub_meaning() {
        let r = ok("serviceName=a&port=80&servicePath=/demo&reqPathSearchReplace=/demo,/x");
        let rewrite = r.routes[0].rewrite_path.clone().unwrap();
        assert_eq!(rewrite.regex, "^(.*?)(/demo)(.*)$");
        assert_eq!(rewrite.replace, "\\1/x\\3");
        assert_eq!(r.echo.service_dest[0].req_path_search_replace, "/demo,/x");
        assert_eq!(
            (
                r.echo.req_path_search.as_str(),
                r.echo.req_path_replace.as_str()
            ),
            ("/demo", "/x")
        );
        // Groups of the search shift by two; `\0` is the whole match.
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=/a/(v[0-9])/(?=x|y)[xy]/(?<n>z),/\\2/\\1\\0",
        );
        let rewrite = r.routes[0].rewrite_path.clone().unwrap();
        assert_eq!(rewrite.replace, "\\1/\\4/\\3\\2\\5");
        assert_eq!(
            r.echo.service_dest[0].req_path_search_replace,
            "/a/(v[0-9])/(?=x|y)[xy]/(?<n>z),/\\2/\\1\\0"
        );
        // An empty replacement removes the match.
        let r = ok("serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=^/a,");
        assert_eq!(r.routes[0].rewrite_path.as_ref().unwrap().replace, "\\1\\3");
        // The old form.
        let r = ok("serviceName=a&port=80&servicePath=/a&reqPathSearch=/a/&reqPathReplace=/");
        assert_eq!(
            r.routes[0].rewrite_path.as_ref().unwrap().regex,
            "^(.*?)(/a/)(.*)$"
        );

        let message = bad(
            "serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=/a,/b:/c,/d",
            "reqPathSearchReplace",
        );
        assert!(message.contains("one rewrite"), "{message}");
        bad(
            "serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=/a",
            "reqPathSearchReplace",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=/a,/\\1",
            "reqPathSearchReplace",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=(a,/",
            "reqPathSearchReplace",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=/a,%[src]",
            "reqPathSearchReplace",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=(a)(b)(c)(d)(e)(f)(g),/",
            "reqPathSearchReplace",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&reqPathSearch=/a",
            "reqPathSearch",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&reqPathReplace=/a",
            "reqPathReplace",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&reqPathSearch=/a&reqPathReplace=/&reqPathSearchReplace=/a,/",
            "reqPathSearchReplace",
        );
    }

    #[test]
    fn timeouts_are_seconds() {
        let r = ok("serviceName=a&port=80&servicePath=/a&timeoutServer=60&timeoutTunnel=3600");
        assert_eq!(
            r.routes[0].timeouts.server,
            Some(model::Duration("60s".into()))
        );
        assert_eq!(
            r.routes[0].timeouts.tunnel,
            Some(model::Duration("3600s".into()))
        );
        assert_eq!(
            (
                r.echo.timeout_server.as_str(),
                r.echo.timeout_tunnel.as_str()
            ),
            ("60", "3600")
        );
        for value in ["0", "1m", "-5", "1234567890", "1.5"] {
            bad(
                &format!("serviceName=a&port=80&servicePath=/a&timeoutServer={value}"),
                "timeoutServer",
            );
        }
    }

    #[test]
    fn balancing_and_ignored_bookkeeping() {
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&sessionType=sticky-server&aclName=00-api&distribute=true&replicas=3&shortName=true&isDefaultBackend=false&redirectWhenHttpProto=false&sslVerifyNone=false",
        );
        assert!(r.routes[0].sticky);
        assert_eq!(r.echo.session_type, "sticky-server");
        assert_eq!(r.echo.acl_name, "00-api");
        assert!(r.echo.distribute);
        bad(
            "serviceName=a&port=80&servicePath=/a&sessionType=sticky",
            "sessionType",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&aclName=a b",
            "aclName",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&distribute=maybe",
            "distribute",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&replicas=many",
            "replicas",
        );
        for flag in ["isDefaultBackend", "redirectWhenHttpProto", "sslVerifyNone"] {
            let message = bad(
                &format!("serviceName=a&port=80&servicePath=/a&{flag}=true"),
                flag,
            );
            assert!(message.contains("not supported"), "{message}");
        }
        // `balance` and `checkPath` are not DFP parameters.
        assert_eq!(
            err("serviceName=a&port=80&servicePath=/a&balance=leastconn&checkPath=/health"),
            DfpError::Unsupported {
                params: vec!["balance".into(), "checkPath".into()]
            }
        );
    }

    #[test]
    fn outbound_hostname_replaces_the_service_address() {
        let r = ok("serviceName=a&port=8443&servicePath=/a&outboundHostname=api.example.com");
        assert_eq!(
            r.routes[0].servers,
            [Address("api.example.com:8443".into())]
        );
        assert_eq!(r.echo.outbound_hostname, "api.example.com");
        assert!(config(&r).contains("server a-1 api.example.com:8443\n"));
        bad(
            "serviceName=a&port=80&servicePath=/a&outboundHostname=http://x",
            "outboundHostname",
        );
    }

    #[test]
    fn indexed_destinations_fall_back_to_unindexed_values() {
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&serviceDomain=x.com&port.1=81&servicePath.1=/b&port.2=82&servicePath.2=/c&serviceDomain.2=y.com",
        );
        let summary: Vec<(String, u16, Vec<String>, Vec<String>)> = r
            .routes
            .iter()
            .map(|r| {
                (
                    r.id().0,
                    r.port,
                    r.paths.iter().map(|p| p.0.clone()).collect(),
                    r.domains.iter().map(|d| d.0.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "a:80".to_string(),
                    80,
                    vec!["/a".to_string()],
                    vec!["x.com".to_string()]
                ),
                (
                    "a:81".to_string(),
                    81,
                    vec!["/b".to_string()],
                    vec!["x.com".to_string()]
                ),
                (
                    "a:82".to_string(),
                    82,
                    vec!["/c".to_string()],
                    vec!["y.com".to_string()]
                ),
            ]
        );
        assert_eq!(r.echo.service_dest.len(), 3);
        assert_eq!(r.echo.service_dest[2].index, 2);

        // Only indexed destinations: no destination 0; the port falls back.
        let r = ok("serviceName=a&port=80&servicePath.1=/a&servicePath.3=/b");
        let ids: Vec<String> = r.routes.iter().map(|r| r.id().0).collect();
        assert_eq!(ids, ["a:80", "a.3:80"]);
        let cfg = config(&r);
        assert!(
            cfg.contains("backend a-be80\n") && cfg.contains("backend a.3-be80\n"),
            "{cfg}"
        );

        let r = ok("serviceName=a&port.1=80&servicePath.1=/a&port.2=81&servicePath.2=/b");
        assert!(r.routes.iter().all(|r| r.name.is_none()));

        // A mix of http and tcp: http-only fallbacks skip tcp destinations.
        let r =
            ok("serviceName=a&port=80&servicePath=/a&port.1=5432&reqMode.1=tcp&srcPort.1=15432");
        assert_eq!(r.routes[1].mode, Mode::Tcp);
        assert!(r.routes[1].paths.is_empty());

        assert_eq!(
            err("serviceName=a&servicePath.1=/a"),
            DfpError::MissingPort {
                param: "port.1".into()
            }
        );
        bad("serviceName=a&port=80&servicePath=/a&port.11=81", "port.11");
        bad("serviceName=a&port=80&servicePath=/a&port.01=81", "port.01");
        bad("serviceName=a&port=80&servicePath=/a&port.1=abc", "port.1");
        bad(
            "serviceName=a&port=80&servicePath=/a&servicePath.1=/a",
            "servicePath.1",
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&reqMode.1=tcp&srcPort.1=99&servicePath.1=/b",
            "servicePath.1",
        );
        assert_eq!(
            err("serviceName=a&port=80&servicePath=/a&pathType.1=path"),
            DfpError::Unsupported {
                params: vec!["pathType.1".into()]
            }
        );
    }

    #[test]
    fn unsupported_parameters_are_all_named() {
        let e = err("serviceName=a&foo=bar&port=80&baz=1&backendExtra=x&foo=2");
        assert_eq!(
            e,
            DfpError::Unsupported {
                params: vec!["foo".into(), "baz".into(), "backendExtra".into()]
            }
        );
        let message = e.to_string();
        assert!(message.contains("raw HAProxy lines"), "{message}");
        let long = "x".repeat(1000);
        let e = err(&format!("serviceName=a&{long}=1&bad\nname=1"));
        let message = e.to_string();
        assert!(message.len() < 300 && !message.contains('\n'), "{message}");
    }

    #[test]
    fn sizes_characters_and_repeats_are_bounded() {
        let many: String = (0..101).map(|i| format!("x{i}=1&")).collect();
        assert_eq!(err(&many), DfpError::TooManyParams { count: 101 });
        let message = bad(
            &format!("serviceName=a&port=80&servicePath=/{}", "a".repeat(1024)),
            "servicePath",
        );
        assert!(message.contains("1025 bytes"), "{message}");
        for value in ["/a\nacl x", "/a\r", "/a\0", "/a\t", "/é"] {
            bad(
                &format!("serviceName=a&port=80&servicePath={value}"),
                "servicePath",
            );
        }
        bad("serviceName=a&port=80&servicePath=/a&port=81", "port");
        // The same value twice is harmless; an empty value is absent.
        ok("serviceName=a&port=80&servicePath=/a&port=80&aclName=");
    }

    #[test]
    fn ttl_is_seconds_or_a_duration() {
        let base = "serviceName=a&port=80&servicePath=/a";
        assert_eq!(
            ok(&format!("{base}&ttl=3600")).ttl,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            ok(&format!("{base}&ttl=10m")).ttl,
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            ok(&format!("{base}&ttl=2h")).ttl,
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            ok(&format!("{base}&ttl=1d")).ttl,
            Some(Duration::from_secs(86400))
        );
        for value in ["0", "10x", "m", "1.5h", "9999999999"] {
            bad(&format!("{base}&ttl={value}"), "ttl");
        }
    }

    #[test]
    fn validation_problems_name_the_parameter() {
        let r = ok("serviceName=a&port=80&servicePath=/demo");
        let mut table = RoutesFile::empty();
        let mut other = Route::new("b", 80);
        other.paths = vec![UrlPath("/demo".into())];
        table.routes.push(other);
        let e = r.validate_in(&table).unwrap_err();
        assert_eq!(e.params(), ["servicePath"], "{e}");
        assert!(e.to_string().contains("already routed"), "{e}");
        assert_eq!(r.validate_in(&RoutesFile::empty()), Ok(()));
        // A name one character too long once indexed.
        let long = "a".repeat(62);
        let e = err(&format!(
            "serviceName={long}&port=80&servicePath=/a&servicePath.1=/b"
        ));
        assert_eq!(e.params(), ["serviceName"], "{e}");
    }

    #[test]
    fn remove_requests() {
        let remove = parse_remove(&q("serviceName=go-demo&aclName=x&distribute=true")).unwrap();
        assert_eq!(
            remove,
            Remove {
                service_name: "go-demo".into(),
                acl_name: Some("x".into())
            }
        );
        // DFSL may send the service's labels along.
        let remove =
            parse_remove(&q("serviceName=a&port=80&servicePath=/a&backendExtra=x")).unwrap();
        assert_eq!(remove.acl_name, None);
        assert_eq!(
            parse_remove(&q("aclName=x")),
            Err(DfpError::MissingServiceName)
        );
        assert_eq!(
            parse_remove(&q("serviceName=a b")).unwrap_err().params(),
            ["serviceName"]
        );
        assert_eq!(
            parse_remove(&q("serviceName=a&foo=1")),
            Err(DfpError::Unsupported {
                params: vec!["foo".into()]
            })
        );
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
    fn echo_of_stored_routes() {
        let r =
            ok("serviceName=a&port=80&servicePath=/a&timeoutServer=120&sessionType=sticky-server");
        assert_eq!(service_echo(&r.routes), r.echo);
        assert_eq!(service_echo(&[]), ServiceEcho::default());
        // Routes written in routes.yaml, in capstan's own units.
        let mut route = Route::new("b", 80);
        route.timeouts.server = Some(model::Duration("2m".into()));
        route.timeouts.tunnel = Some(model::Duration("1500ms".into()));
        route.rewrite_path = Some(PathRewrite {
            regex: "^/b/(.*)".into(),
            replace: "/\\1".into(),
        });
        let echo = service_echo(&[route]);
        assert_eq!(echo.timeout_server, "120");
        assert_eq!(echo.timeout_tunnel, "1500ms");
        assert_eq!(
            echo.service_dest[0].req_path_search_replace,
            "^/b/(.*),/\\1"
        );
    }

    #[test]
    fn capture_groups_are_counted() {
        assert_eq!(capture_groups("/a"), Ok(0));
        assert_eq!(
            capture_groups("(a)(?:b)(?<n>c)(?P<m>d)(?'o'e)(?=f)(?<=g)(?!h)(?i)"),
            Ok(4)
        );
        assert_eq!(capture_groups("[(]\\(([)])"), Ok(1));
        assert_eq!(capture_groups("[]a(]"), Ok(0));
        assert_eq!(capture_groups("[[:alpha:](]"), Ok(0));
        for bad in [
            "(", ")", "[a", "\\", "\\Qa\\E", "(*UTF)", "(?|a)", "(?R)", "[[:alpha",
        ] {
            assert!(capture_groups(bad).is_err(), "{bad}");
        }
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
