//! A Docker Flow Proxy request translated into capstan's routes, and
//! capstan's diagnostics about those routes translated back into the
//! parameters they came from.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::echo::{ServiceEcho, service_echo_with_users};
use super::error::{DfpError, ParamProblem};
use super::params::{Given, Params, indexed};
use super::regsub::{regsub_rewrite, search_replace_value};
use super::rules::{DestRules, ServiceRules};
use super::secrets::SecretsDir;
use super::values::{
    acl_name_value, bool_value, compression_algos_value, compression_types_value,
    connection_mode_value, count_value, discovery_type_value, domain_algo_value, domains_value,
    header_names, header_values, mode_value, name_value, path_type_value, paths_value, port_value,
    redirect_code_value, seconds_value, server_value, service_header_value, session_type_value,
    ttl_value, user_agents_value, users_secret_value, users_value,
};
use crate::model::diagnostics::Diagnostics;
use crate::model::validate;
use crate::model::{
    Auth, BackendTls, CertName, Compression, ConnectionMode, Domain, DomainMatch, Endpoint,
    HeaderRules, HealthCheck, Mode, Name, PathMatch, PathRewrite, Route, RoutesFile, Userlist,
    UsersFile,
};
use crate::tls::Pem;

/// DFP parameter → the name it was sent as (`port.2`), for one route's settings.
pub(super) type Sources = BTreeMap<&'static str, String>;

/// `serviceCert`: DFP stored it as the service's certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceCert {
    /// The first destination's first domain (`*.` as `wildcard.`), else the service name.
    pub name: CertName,
    /// Checked against PEM's rules; HAProxy's check is the caller's.
    pub pem: Pem,
}

/// A reconfigure request, translated and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconfigure {
    /// The Swarm service.
    pub service_name: String,
    /// One route per destination, in index order.
    pub routes: Vec<Route>,
    /// The service's userlist (named after the service) when it sent `users`
    /// or `usersSecret`.
    pub userlists: BTreeMap<Name, Userlist>,
    /// How long the routes should live (`ttl`, capstan's extension); `None`: until removed.
    pub ttl: Option<Duration>,
    /// What the answer echoes, in DFP's field names.
    pub echo: ServiceEcho,
    /// `serviceCert`: a certificate to store, named as DFP named it.
    pub service_cert: Option<ServiceCert>,
    /// For each route, where its settings came from.
    sources: Vec<Sources>,
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
        check: fn(&str, &RoutesFile) -> Result<(), Diagnostics>,
    ) -> Result<(), DfpError> {
        let mut file = table.clone();
        let offset = file.routes.len();
        file.routes.extend(self.routes.iter().cloned());
        for (name, users) in &self.userlists {
            if file.userlists.contains_key(name) {
                return Err(DfpError::invalid(
                    self.users_param(),
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
                    param: self.users_param().into(),
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

impl Reconfigure {
    /// The parameter the service's userlist came from.
    fn users_param(&self) -> &'static str {
        match self.userlists.values().next() {
            Some(Userlist::File(_)) => "usersSecret",
            _ => "users",
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
        ("connection_mode", _) => "connectionMode",
        ("endpoint", _) => "discoveryType",
        ("health_check", _) => "checkTcp",
        ("servers", _) => "outboundHostname",
        ("exclude_paths", _) => "servicePathExclude",
        ("redirect_from", _) => "redirectFromDomain",
        ("allowed_methods", _) => "allowedMethods",
        ("denied_methods", _) => "deniedMethods",
        ("deny_http", _) => "denyHttp",
        ("default_backend", _) => "isDefaultBackend",
        ("https_redirect_when", _) => "redirectWhenHttpProto",
        ("https_port", _) => "httpsPort",
        ("backend_tls", _) => "sslVerifyNone",
        ("domain_match", _) => "serviceDomainAlgo",
        ("match_headers", _) => "serviceHeader",
        ("user_agents", _) => "userAgent",
        ("compression", "types") => "compressionType",
        ("compression", _) => "compressionAlgo",
        ("resolve_at_runtime", _) => "checkResolvers",
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

/// Parses a reconfigure request's query parameters (URL-decoded, in order,
/// possibly repeated) into validated routes. See the module docs for the
/// vocabulary. Errors, in the order checked: too many parameters, unsupported
/// names, unsafe values (length, characters, conflicting repeats), missing
/// `serviceName`, missing `port`, a tcp destination without `srcPort`,
/// malformed or unsupported values, nothing to route (409), and problems
/// capstan's validation finds. `usersSecret` names a file in DFP's
/// `/run/secrets`; see [`parse_reconfigure_in`].
pub fn parse_reconfigure(params: &[(String, String)]) -> Result<Reconfigure, DfpError> {
    parse_reconfigure_in(params, &SecretsDir::default())
}

/// [`parse_reconfigure`], `usersSecret=<name>` naming the file
/// `dfp_users_<name>` in `secrets`.
pub fn parse_reconfigure_in(
    params: &[(String, String)],
    secrets: &SecretsDir,
) -> Result<Reconfigure, DfpError> {
    let params = Params::read(params, false)?;
    let service = params
        .take("serviceName")
        .ok_or(DfpError::MissingServiceName)?;
    let indices = params.indices();
    for &index in &indices {
        if params.lookup("port", index).is_none() {
            return Err(DfpError::MissingPort {
                param: indexed("port", index),
            });
        }
    }
    let mut problems = Vec::new();
    let modes = dest_modes(&params, &indices, &mut problems)?;
    let name = service.parse(&mut problems, name_value);
    let settings =
        ServiceSettings::read(&params, modes.contains(&Mode::Http), secrets, &mut problems);
    let extras = Extras::read(&params, &mut problems);
    let service_rules = ServiceRules::read(&params, modes.contains(&Mode::Http), &mut problems);
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
        let (mut route, source) = dest.route(&route_service, &settings, &mut problems);
        if !ports.insert(route.port) {
            route.name = Some(Name(format!("{route_service}.{index}")));
        }
        routes.push(route);
        sources.push(source);
    }
    service_rules.apply(&mut routes, &mut sources, &mut problems);
    sni_path_type(&params, &modes, &mut problems);
    let service_cert = params
        .take("serviceCert")
        .and_then(|given| given.parse(&mut problems, |v| service_cert(v, &service.value, &routes)));
    problems.extend(params.unused());
    problems.extend(settings.without_effect(&routes));
    if !problems.is_empty() {
        return Err(DfpError::Invalid { problems });
    }
    for (route, &index) in routes.iter().zip(&indices) {
        if route.mode == Mode::Http && route.paths.is_empty() && route.domains.is_empty() {
            return Err(DfpError::NothingToRoute { index });
        }
    }
    let userlists = match (&name, settings.userlist) {
        (Some(name), Some(userlist)) => BTreeMap::from([(name.clone(), userlist)]),
        _ => BTreeMap::new(),
    };
    let mut echo = service_echo_with_users(&routes, &userlists);
    echo.acl_name = extras.acl_name.unwrap_or_default();
    echo.distribute = extras.distribute;
    let reconfigure = Reconfigure {
        service_name: service.value.clone(),
        routes,
        userlists,
        ttl: extras.ttl,
        echo,
        service_cert,
        sources,
    };
    reconfigure.validate_with(&RoutesFile::empty(), validate::check)?;
    Ok(reconfigure)
}

/// Each destination's `reqMode`. A tcp destination without `srcPort` is an
/// error of its own; other bad modes are problems, read as http meanwhile.
fn dest_modes(
    params: &Params,
    indices: &[usize],
    problems: &mut Vec<ParamProblem>,
) -> Result<Vec<Mode>, DfpError> {
    let mut modes = Vec::new();
    for &index in indices {
        let mode = match params.lookup("reqMode", index) {
            None => Mode::Http,
            Some(given) => {
                params.mark(given);
                given.parse(problems, mode_value).unwrap_or(Mode::Http)
            }
        };
        if mode != Mode::Http && params.lookup("srcPort", index).is_none() {
            return Err(DfpError::MissingSrcPort {
                param: indexed("srcPort", index),
            });
        }
        modes.push(mode);
    }
    Ok(modes)
}

/// DFP's SNI guide matched `servicePath` with `pathType=req_ssl_sni -i -m beg`
/// (a raw ACL capstan never accepts): say how capstan takes the names.
fn sni_path_type(params: &Params, modes: &[Mode], problems: &mut Vec<ParamProblem>) {
    if !modes.contains(&Mode::Sni) || modes.contains(&Mode::Http) {
        return;
    }
    if let Some(given) = params.take("pathType") {
        problems.push(given.problem(
            "reqMode=sni destinations are routed by the TLS server name: send the names as `serviceDomain` (exact, or `*.example.com`), not as `servicePath` with a `pathType`",
        ));
    }
}

/// The parameters that make no route: the echoed `aclName` and
/// `distribute`, capstan's `ttl`, and DFSL's bookkeeping, checked and ignored.
struct Extras {
    acl_name: Option<String>,
    distribute: bool,
    ttl: Option<Duration>,
}

impl Extras {
    fn read(params: &Params, problems: &mut Vec<ParamProblem>) -> Self {
        let acl_name = params
            .take("aclName")
            .and_then(|g| g.parse(problems, acl_name_value));
        let distribute = params
            .take("distribute")
            .and_then(|g| g.parse(problems, bool_value))
            .unwrap_or(false);
        if let Some(replicas) = params.take("replicas") {
            replicas.parse(problems, |v| count_value(v).map(|_| ()));
        }
        if let Some(short) = params.take("shortName") {
            short.parse(problems, bool_value);
        }
        let ttl = params
            .take("ttl")
            .and_then(|g| g.parse(problems, ttl_value));
        Extras {
            acl_name,
            distribute,
            ttl,
        }
    }
}

/// `serviceCert`: a PEM (newlines sent as `\n` in labels), named after the
/// first destination's first domain, else the service, as DFP named it.
fn service_cert(value: &str, service: &str, routes: &[Route]) -> Result<ServiceCert, String> {
    let text = value.replace("\\r", "").replace("\\n", "\n");
    let pem = Pem::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    let name = match routes.first().and_then(|r| r.domains.first()) {
        Some(domain) => match domain.0.strip_prefix("*.") {
            Some(rest) => format!("wildcard.{rest}"),
            None => domain.0.clone(),
        },
        None => service.to_string(),
    };
    let name = name
        .parse()
        .map_err(|e| format!("cannot be stored as `{name}`: the name {e}"))?;
    Ok(ServiceCert { name, pem })
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

/// Settings of the whole service, applied to its http destinations (and
/// `sticky` and `resolve_at_runtime` to all).
struct ServiceSettings {
    path_match: PathMatch,
    /// `discoveryType`: `DNS` → a server per task, `Overlay` → the VIP.
    endpoint: Option<Endpoint>,
    connection_mode: ConnectionMode,
    /// `serviceDomainMatchAll`: every domain also matches its subdomains.
    subdomains_too: bool,
    /// From `users` or `usersSecret`.
    userlist: Option<Userlist>,
    request_headers: HeaderRules,
    response_headers: HeaderRules,
    rewrite: Option<PathRewrite>,
    sticky: bool,
    domain_match: DomainMatch,
    compression: Option<Compression>,
    resolve_at_runtime: bool,
    /// Where the settings given came from.
    sources: Sources,
}

/// Settings that apply to destinations of every mode.
const EVERY_MODE: &[&str] = &["sessionType", "checkResolvers", "discoveryType"];

impl ServiceSettings {
    fn read(
        params: &Params,
        any_http: bool,
        secrets: &SecretsDir,
        problems: &mut Vec<ParamProblem>,
    ) -> Self {
        let mut settings = ServiceSettings {
            path_match: PathMatch::Prefix,
            endpoint: None,
            connection_mode: ConnectionMode::KeepAlive,
            subdomains_too: false,
            userlist: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            rewrite: None,
            sticky: false,
            domain_match: DomainMatch::Exact,
            compression: None,
            resolve_at_runtime: false,
            sources: BTreeMap::new(),
        };
        if let Some(given) = params.take("discoveryType") {
            settings.endpoint = given.parse(problems, discovery_type_value);
            settings.sources.insert("discoveryType", given.name.clone());
        }
        if let Some(given) = params.take("sessionType") {
            settings.sticky = given.parse(problems, session_type_value).unwrap_or(false);
            settings.sources.insert("sessionType", given.name.clone());
        }
        if let Some(given) = params.take("checkResolvers") {
            settings.resolve_at_runtime = given.parse(problems, bool_value).unwrap_or(false);
            settings
                .sources
                .insert("checkResolvers", given.name.clone());
        }
        if !any_http {
            // Left unused: reported as having no effect.
            return settings;
        }
        if let Some(given) = params.take("pathType") {
            settings.path_match = given.parse(problems, path_type_value).unwrap_or_default();
            settings.sources.insert("pathType", given.name.clone());
        }
        if let Some(given) = params.take("serviceDomainAlgo") {
            settings.domain_match = given.parse(problems, domain_algo_value).unwrap_or_default();
            settings
                .sources
                .insert("serviceDomainAlgo", given.name.clone());
        }
        if let Some(given) = params.take("connectionMode") {
            settings.connection_mode = given
                .parse(problems, connection_mode_value)
                .unwrap_or_default();
            settings
                .sources
                .insert("connectionMode", given.name.clone());
        }
        if let Some(given) = params.take("serviceDomainMatchAll") {
            settings.subdomains_too = given.parse(problems, bool_value).unwrap_or(false);
        }
        // capstan always sets `X-Forwarded-Proto: https` on requests that came over TLS.
        if let Some(given) = params.take("xForwardedProto") {
            given.parse(problems, bool_value);
        }
        settings.read_compression(params, problems);
        match (params.take("users"), params.take("usersSecret")) {
            (Some(users), None) => settings.read_users(params, users, problems),
            (None, Some(secret)) => settings.read_users_secret(params, secret, secrets, problems),
            (Some(_), Some(secret)) => problems.push(secret.problem(
                "cannot be combined with `users`: list every user, with its password, in the secret",
            )),
            (None, None) => {}
        }
        settings.read_headers(params, problems);
        settings.read_rewrite(params, problems);
        settings
    }

    /// `users`, with `usersPassEncrypted=true` only.
    fn read_users(&mut self, params: &Params, users: &Given, problems: &mut Vec<ParamProblem>) {
        let encrypted = params
            .take("usersPassEncrypted")
            .and_then(|g| g.parse(problems, bool_value))
            .unwrap_or(false);
        if encrypted {
            self.userlist = users
                .parse(problems, users_value)
                .filter(|users| !users.is_empty())
                .map(Userlist::Users);
        } else {
            problems.push(users.problem(
                "plaintext passwords are not accepted: send crypt(3) hashes (`mkpasswd -m sha-512`) as `user:hash` with `usersPassEncrypted=true`",
            ));
        }
        self.sources.insert("users", users.name.clone());
    }

    /// `usersSecret=<name>`: the users of the secret file `dfp_users_<name>`,
    /// their passwords plaintext unless `usersPassEncrypted=true`.
    fn read_users_secret(
        &mut self,
        params: &Params,
        secret: &Given,
        secrets: &SecretsDir,
        problems: &mut Vec<ParamProblem>,
    ) {
        let hashed = params
            .take("usersPassEncrypted")
            .and_then(|g| g.parse(problems, bool_value))
            .unwrap_or(false);
        self.userlist = secret.parse(problems, users_secret_value).map(|name| {
            Userlist::File(UsersFile {
                file: secrets.users_file(&name),
                hashed,
            })
        });
        self.sources.insert("users", secret.name.clone());
    }

    fn read_headers(&mut self, params: &Params, problems: &mut Vec<ParamProblem>) {
        for (base, request, add) in [
            ("addReqHeader", true, true),
            ("setReqHeader", true, false),
            ("addResHeader", false, true),
            ("setResHeader", false, false),
        ] {
            let Some(headers) = params
                .take(base)
                .and_then(|given| given.parse(problems, header_values))
            else {
                continue;
            };
            let rules = self.rules(request);
            if add {
                rules.add = headers;
            } else {
                rules.set = headers;
            }
        }
        for (base, request) in [("delReqHeader", true), ("delResHeader", false)] {
            if let Some(names) = params
                .take(base)
                .and_then(|given| given.parse(problems, header_names))
            {
                self.rules(request).delete = names;
            }
        }
    }

    fn rules(&mut self, request: bool) -> &mut HeaderRules {
        if request {
            &mut self.request_headers
        } else {
            &mut self.response_headers
        }
    }

    /// `compressionAlgo`, and `compressionType` with it.
    fn read_compression(&mut self, params: &Params, problems: &mut Vec<ParamProblem>) {
        let algorithms = params.take("compressionAlgo");
        let types = params.take("compressionType");
        if let (None, Some(given)) = (algorithms, types) {
            problems.push(given.problem("needs `compressionAlgo` too"));
        }
        let Some(given) = algorithms else {
            return;
        };
        self.sources.insert("compressionAlgo", given.name.clone());
        let algorithms = given.parse(problems, compression_algos_value);
        let types = match types {
            Some(given) => {
                self.sources.insert("compressionType", given.name.clone());
                given.parse(problems, compression_types_value)
            }
            None => Some(Vec::new()),
        };
        if let (Some(algorithms), Some(types)) = (algorithms, types) {
            self.compression = Some(Compression { algorithms, types });
        }
    }

    /// `serviceDomainAlgo` when no destination has a domain to apply it to.
    fn without_effect(&self, routes: &[Route]) -> Option<ParamProblem> {
        let param = self.sources.get("serviceDomainAlgo")?;
        let applied = routes.iter().any(|r| !r.domains.is_empty());
        (!applied).then(|| ParamProblem {
            param: param.clone(),
            message: "has no effect: no destination has a `serviceDomain`".into(),
        })
    }

    /// DFP's older rewrite form: `reqPathSearch` with `reqPathReplace`.
    fn read_rewrite(&mut self, params: &Params, problems: &mut Vec<ParamProblem>) {
        let search = params.take("reqPathSearch");
        let replace = params.take("reqPathReplace");
        match (search, replace) {
            (Some(search), Some(replace)) => {
                self.rewrite = search.parse(problems, |s| {
                    regsub_rewrite(s, &replace.value)
                        .map_err(|e| format!("with `reqPathReplace`: {e}"))
                });
                self.sources
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
    }

    /// Sets the service-wide settings on a destination's route.
    fn apply(&self, route: &mut Route, sources: &mut Sources, service: &Name) {
        route.sticky = self.sticky;
        if let Some(endpoint) = self.endpoint {
            route.endpoint = endpoint;
        }
        route.resolve_at_runtime = self.resolve_at_runtime;
        sources.extend(
            self.sources
                .iter()
                .filter(|(base, _)| EVERY_MODE.contains(base) || route.mode == Mode::Http)
                .map(|(f, n)| (*f, n.clone())),
        );
        if route.mode != Mode::Http {
            return;
        }
        route.path_match = self.path_match;
        route.connection_mode = self.connection_mode;
        if !route.domains.is_empty() {
            route.domain_match = self.domain_match;
        }
        route.compression = self.compression.clone();
        route.request_headers = self.request_headers.clone();
        route.response_headers = self.response_headers.clone();
        if route.rewrite_path.is_empty() {
            route.rewrite_path = self.rewrite.clone().into_iter().collect();
        }
        if self.userlist.is_some() {
            route.auth = Some(Auth {
                userlist: service.clone(),
                realm: None,
                forward_credentials: false,
            });
        }
    }
}

/// DFP's `serviceDomainMatchAll`: each exact domain also as `*.<domain>`.
fn with_subdomains(domains: &mut Vec<Domain>) {
    let wildcards: Vec<Domain> = domains
        .iter()
        .filter(|d| d.wildcard_suffix().is_none())
        .map(|d| Domain(format!("*.{}", d.0)))
        .collect();
    domains.extend(wildcards);
    domains.sort();
    domains.dedup();
}

/// One destination being translated.
struct Dest<'a> {
    params: &'a Params,
    index: usize,
    mode: Mode,
}

impl Dest<'_> {
    /// The destination's route for `service`, and where its settings came from.
    fn route(
        &self,
        service: &Name,
        settings: &ServiceSettings,
        problems: &mut Vec<ParamProblem>,
    ) -> (Route, Sources) {
        let mut route = Route::new(service.as_str(), 1);
        let mut sources = BTreeMap::new();
        route.mode = self.mode;
        if let Some(given) = self.params.lookup("reqMode", self.index) {
            sources.insert("reqMode", given.name.clone());
        }
        self.read_own(&mut route, &mut sources, settings, problems);
        settings.apply(&mut route, &mut sources, service);
        let open = self
            .params
            .for_dest("ignoreAuthorization", self.index, self.mode, problems)
            .and_then(|g| g.parse(problems, bool_value));
        if open == Some(true) {
            route.auth = None;
        }
        let check = self
            .params
            .for_dest("checkTcp", self.index, self.mode, problems)
            .and_then(|g| g.parse(problems, bool_value));
        if check == Some(true) && route.health_check.is_none() {
            route.health_check = Some(HealthCheck {
                path: None,
                interval: None,
            });
        }
        (route, sources)
    }

    /// The destination's own parameters (or their unindexed fallbacks).
    fn read_own(
        &self,
        route: &mut Route,
        sources: &mut Sources,
        settings: &ServiceSettings,
        problems: &mut Vec<ParamProblem>,
    ) {
        let mut take = |base: &'static str| {
            let given = self
                .params
                .for_dest(base, self.index, self.mode, problems)?;
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
        let rules = DestRules {
            exclude: take("servicePathExclude"),
            redirect_from: take("redirectFromDomain"),
            allowed: take("allowedMethods"),
            denied: take("deniedMethods"),
            deny_http: take("denyHttp"),
        };
        let https_port = take("httpsPort");
        let ssl_verify_none = take("sslVerifyNone");
        let headers = take("serviceHeader");
        let agents = take("userAgent");

        if let Some(port) = port.and_then(|g| g.parse(problems, port_value)) {
            route.port = port;
        }
        route.listen_port = listen_port.and_then(|g| g.parse(problems, port_value));
        if let Some(given) = paths {
            let path_match = settings.path_match;
            route.paths = given
                .parse(problems, |v| paths_value(v, path_match))
                .unwrap_or_default();
        }
        if let Some(given) = domains {
            route.domains = given.parse(problems, domains_value).unwrap_or_default();
            if settings.subdomains_too {
                with_subdomains(&mut route.domains);
            }
        }
        route.https_only = https_only
            .and_then(|g| g.parse(problems, bool_value))
            .unwrap_or(false);
        route.redirect_code = redirect_code.and_then(|g| g.parse(problems, redirect_code_value));
        let port = route.port;
        if let Some(server) = outbound.and_then(|g| g.parse(problems, |v| server_value(v, port))) {
            route.servers = vec![server];
        }
        if let Some(given) = rewrite {
            if settings.rewrite.is_some() {
                problems.push(
                    given.problem("conflicts with `reqPathSearch`/`reqPathReplace`: send one form"),
                );
            }
            route.rewrite_path = given
                .parse(problems, search_replace_value)
                .unwrap_or_default();
        }
        route.timeouts.server = server.and_then(|g| g.parse(problems, seconds_value));
        route.timeouts.tunnel = tunnel.and_then(|g| g.parse(problems, seconds_value));
        route.timeouts.client = client.and_then(|g| g.parse(problems, seconds_value));
        rules.apply(route, settings.path_match, problems);
        route.https_port = https_port.and_then(|g| g.parse(problems, port_value));
        let verify_none = ssl_verify_none.and_then(|g| g.parse(problems, bool_value));
        route.backend_tls = verify_none.unwrap_or(false).then(BackendTls::verify_none);
        if let Some(given) = headers {
            route.match_headers = given
                .parse(problems, service_header_value)
                .unwrap_or_default();
        }
        if let Some(given) = agents {
            route.user_agents = given.parse(problems, user_agents_value).unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dfp::query as q;
    use crate::model::{self, Address, CompressionAlgorithm, HeaderName, RedirectCode, UrlPath};
    use crate::render;

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
    fn service_cert_is_named_after_the_first_domain_as_dfp_did() {
        let pem = crate::tls::pem::fixtures::pem(1);
        let with = |rest: &str, value: &str| {
            parse_reconfigure(
                &[
                    ("serviceName".to_string(), "web".to_string()),
                    ("port".to_string(), "80".to_string()),
                    ("serviceCert".to_string(), value.to_string()),
                ]
                .into_iter()
                .chain(q(rest))
                .collect::<Vec<_>>(),
            )
        };
        let r = with("serviceDomain=shop.test,other.test", &pem).unwrap();
        let cert = r.service_cert.unwrap();
        assert_eq!(cert.name.as_str(), "shop.test");
        assert_eq!(
            cert.pem.text(),
            crate::tls::Pem::parse(pem.as_bytes()).unwrap().text()
        );
        // Labels carry `\n` for newlines.
        let r = with("serviceDomain=*.shop.test", &pem.replace('\n', "\\n")).unwrap();
        assert_eq!(r.service_cert.unwrap().name.as_str(), "wildcard.shop.test");
        let r = with("servicePath=/web", &pem).unwrap();
        assert_eq!(r.service_cert.unwrap().name.as_str(), "web");
        let e = with(
            "servicePath=/web",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap_err();
        assert_eq!(e.params(), ["serviceCert"]);
        assert!(e.to_string().contains("holds no private key"), "{e}");
        let e = with("servicePath=/web", &format!("{pem}\u{1}")).unwrap_err();
        assert_eq!(e.params(), ["serviceCert"], "{e}");
        assert!(
            ok("serviceName=web&servicePath=/web&port=80")
                .service_cert
                .is_none()
        );
    }

    #[test]
    fn the_book_example_renders_as_docker_flow_proxy_did() {
        let r = ok("serviceName=go-demo&servicePath=/demo&port=8080");
        assert_eq!(r.service_name, "go-demo");
        let mut expected = Route::new("go-demo", 8080);
        expected.paths = vec![UrlPath("/demo".into())];
        assert_eq!(r.routes, [expected]);
        assert!(r.userlists.is_empty());
        assert_eq!(r.ttl, None);
        let mut file = RoutesFile::empty();
        file.routes = r.routes.clone();
        let rendered = render::render(&file);
        // `acl url_go-demo8080 path_beg /demo`, as a prefix map's entry.
        assert_eq!(
            rendered.routing(),
            ["path,map_beg(prefix.map): /demo go-demo-be8080"]
        );
        assert!(rendered.section("backend go-demo-be8080").is_some());
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
            "serviceName=a&port=80&serviceDomain=a.com&serviceDomainAlgo=req.ssl_sni",
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
    fn domain_algorithms_are_domain_matches() {
        for (algo, expected) in [
            ("hdr(host)", DomainMatch::Exact),
            ("hdr_beg(host)", DomainMatch::Prefix),
            ("hdr_end(host)", DomainMatch::Suffix),
            ("hdr_dom(host)", DomainMatch::Labels),
        ] {
            let r = ok(&format!(
                "serviceName=a&serviceDomainAlgo={algo}&port.1=80&serviceDomain.1=a.com&port.2=81&servicePath.2=/x"
            ));
            assert_eq!(r.routes[0].domain_match, expected, "{algo}");
            // A destination without domains has nothing to match.
            assert_eq!(r.routes[1].domain_match, DomainMatch::Exact, "{algo}");
        }
        let r = ok("serviceName=a&port=80&serviceDomain=a.com&serviceDomainAlgo=hdr_dom(host)");
        assert_eq!(r.echo.service_domain_algo, "hdr_dom(host)");
        assert!(
            config(&r).contains("acl domain_a80 hdr(host),field(1,:) -i -m dom a.com\n"),
            "{}",
            config(&r)
        );
        // Without it: capstan's whole-host match, not DFP's `hdr_beg`.
        assert_eq!(
            ok("serviceName=a&port=80&serviceDomain=a.com").routes[0].domain_match,
            DomainMatch::Exact
        );
        let message = bad(
            "serviceName=a&port=80&servicePath=/a&serviceDomainAlgo=hdr_end(host)",
            "serviceDomainAlgo",
        );
        assert!(message.contains("no effect"), "{message}");
        bad(
            "serviceName=a&port=80&serviceDomain=a.com&serviceDomainAlgo=hdr_dom(Host)",
            "serviceDomainAlgo",
        );
    }

    #[test]
    fn service_headers_and_user_agents_narrow_each_destination() {
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&serviceHeader=X-Version:3, name : Viktor Farcic&port.1=81&servicePath.1=/a&userAgent.1=googlebot,Mozilla/5.0 (iPhone",
        );
        let headers: Vec<(&str, &str)> = r.routes[0]
            .match_headers
            .iter()
            .map(|(n, v)| (n.0.as_str(), v.0.as_str()))
            .collect();
        assert_eq!(headers, [("X-Version", "3"), ("name", "Viktor Farcic")]);
        // The unindexed value is the fallback of destination 1 too.
        assert_eq!(r.routes[1].match_headers, r.routes[0].match_headers);
        assert!(r.routes[0].user_agents.is_empty());
        let agents: Vec<&str> = r.routes[1]
            .user_agents
            .iter()
            .map(|a| a.0.as_str())
            .collect();
        assert_eq!(agents, ["googlebot", "Mozilla/5.0 (iPhone"]);
        assert_eq!(r.echo.service_dest[0].service_header["X-Version"], "3");
        let agent = r.echo.service_dest[1].user_agent.clone().unwrap();
        assert_eq!(agent.acl_name, "googlebot_Mozilla_5_0_iPhone");
        let cfg = config(&r);
        assert!(
            cfg.contains("use_backend a-be80 if url_a80 hdr_a80_1 hdr_a80_2\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("use_backend a-be81 if url_a81 hdr_a81_1 hdr_a81_2 user_agent_a81\n"),
            "{cfg}"
        );

        // Two services on one path, told apart by a header: no conflict.
        let v3 = ok("serviceName=v3&port=80&servicePath=/a&serviceHeader=X-Version:3");
        let mut table = RoutesFile::empty();
        table.routes = ok("serviceName=v2&port=80&servicePath=/a&serviceHeader=X-Version:2").routes;
        assert_eq!(v3.validate_in(&table), Ok(()));
        table.routes = ok("serviceName=v2&port=80&servicePath=/a&serviceHeader=x-version:3").routes;
        assert_eq!(
            v3.validate_in(&table).unwrap_err().params(),
            ["servicePath"]
        );

        for value in [
            "X-Version",
            "X-Version:",
            "X Version:3",
            "X-A:%[src]",
            "X-A:${HOME}",
            "X-A:\"q\"",
            "X-A:1,x-a:2",
            "X-A:1,,X-B:2",
        ] {
            bad(
                &format!("serviceName=a&port=80&servicePath=/a&serviceHeader={value}"),
                "serviceHeader",
            );
        }
        for value in ["a,,b", "%[src]", "a\\b", "a\"b", " "] {
            bad(
                &format!("serviceName=a&port=80&servicePath=/a&userAgent={value}"),
                "userAgent",
            );
        }
        bad(
            "serviceName=a&port=5432&reqMode=tcp&srcPort=15432&serviceHeader.1=X-A:1&port.1=81&servicePath.1=/a&reqMode.1=tcp&srcPort.1=15433",
            "serviceHeader.1",
        );
    }

    #[test]
    fn compression_applies_to_the_http_destinations() {
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&compressionAlgo=gzip deflate&compressionType=text/html text/css&port.1=5432&reqMode.1=tcp&srcPort.1=15432",
        );
        let compression = r.routes[0].compression.clone().unwrap();
        assert_eq!(
            compression.algorithms,
            [CompressionAlgorithm::Gzip, CompressionAlgorithm::Deflate]
        );
        assert_eq!(compression.types.len(), 2);
        assert_eq!(r.routes[1].compression, None);
        assert_eq!(
            (
                r.echo.compression_algo.as_str(),
                r.echo.compression_type.as_str()
            ),
            ("gzip deflate", "text/html text/css")
        );
        let cfg = config(&r);
        assert!(
            cfg.contains(
                "    compression algo gzip deflate\n    compression type text/css text/html\n"
            ),
            "{cfg}"
        );
        assert!(
            ok("serviceName=a&port=80&servicePath=/a&compressionAlgo=raw-deflate").routes[0]
                .compression
                .as_ref()
                .is_some_and(|c| c.types.is_empty())
        );
        for value in ["br", "gzip;", "gzip\ndeflate", ","] {
            bad(
                &format!("serviceName=a&port=80&servicePath=/a&compressionAlgo={value}"),
                "compressionAlgo",
            );
        }
        for value in ["text", "text/html;charset=utf-8", "text/#", "$x/y"] {
            bad(
                &format!(
                    "serviceName=a&port=80&servicePath=/a&compressionAlgo=gzip&compressionType={value}"
                ),
                "compressionType",
            );
        }
        let message = bad(
            "serviceName=a&port=80&servicePath=/a&compressionType=text/html",
            "compressionType",
        );
        assert!(message.contains("compressionAlgo"), "{message}");
        bad(
            "serviceName=a&port=5432&reqMode=tcp&srcPort=15432&compressionAlgo=gzip",
            "compressionAlgo",
        );
    }

    #[test]
    fn check_resolvers_resolves_every_destination_at_run_time() {
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&checkResolvers=true&port.1=5432&reqMode.1=tcp&srcPort.1=15432",
        );
        assert!(r.routes.iter().all(|r| r.resolve_at_runtime));
        assert!(r.echo.check_resolvers);
        let cfg = config(&r);
        assert!(cfg.contains("nameserver dns0 127.0.0.11:53\n"), "{cfg}");
        assert!(
            cfg.contains("server a a:80 check resolvers docker resolve-prefer ipv4\n"),
            "{cfg}"
        );
        assert!(
            !ok("serviceName=a&port=80&servicePath=/a&checkResolvers=false").routes[0]
                .resolve_at_runtime
        );
        bad(
            "serviceName=a&port=80&servicePath=/a&checkResolvers=yes",
            "checkResolvers",
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
        let users = r.userlists[&Name("a".into())].listed();
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
    }

    #[test]
    fn users_secret_names_a_file_in_the_secrets_directory() {
        let secrets: SecretsDir = "/srv/secrets".parse().unwrap();
        let r = parse_reconfigure_in(
            &q("serviceName=a&port=80&servicePath=/a&usersSecret=monitoring"),
            &secrets,
        )
        .unwrap();
        let expected = Userlist::File(UsersFile {
            file: crate::model::FilePath("/srv/secrets/dfp_users_monitoring".into()),
            hashed: false,
        });
        assert_eq!(r.userlists[&Name("a".into())], expected);
        assert_eq!(r.routes[0].auth.as_ref().unwrap().userlist.as_str(), "a");
        let cfg = config(&r);
        assert!(cfg.contains("userlist a\n"), "{cfg}");
        assert!(cfg.contains("http_auth(a)"), "{cfg}");
        // DFP's default directory, and passwords hashed already.
        let r = ok("serviceName=a&port=80&servicePath=/a&usersSecret=m&usersPassEncrypted=true");
        let Userlist::File(file) = &r.userlists[&Name("a".into())] else {
            panic!("{:?}", r.userlists);
        };
        assert_eq!(file.file.0, "/run/secrets/dfp_users_m");
        assert!(file.hashed);

        for bad_name in ["../x", "a/b", "a b", ".x"] {
            bad(
                &format!("serviceName=a&port=80&servicePath=/a&usersSecret={bad_name}"),
                "usersSecret",
            );
        }
        let message = bad(
            &format!(
                "serviceName=a&port=80&servicePath=/a&usersSecret=m&users=a:{HASH}&usersPassEncrypted=true"
            ),
            "usersSecret",
        );
        assert!(message.contains("combined"), "{message}");
        bad(
            "serviceName=a&port.1=80&reqMode.1=tcp&srcPort.1=90&usersSecret=m",
            "usersSecret",
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
        let rewrite = r.routes[0].rewrite_path[0].clone();
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
        let rewrite = r.routes[0].rewrite_path[0].clone();
        assert_eq!(rewrite.replace, "\\1/\\4/\\3\\2\\5");
        assert_eq!(
            r.echo.service_dest[0].req_path_search_replace,
            "/a/(v[0-9])/(?=x|y)[xy]/(?<n>z),/\\2/\\1\\0"
        );
        // An empty replacement removes the match.
        let r = ok("serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=^/a,");
        assert_eq!(r.routes[0].rewrite_path[0].replace, "\\1\\3");
        // The old form.
        let r = ok("serviceName=a&port=80&servicePath=/a&reqPathSearch=/a/&reqPathReplace=/");
        assert_eq!(r.routes[0].rewrite_path[0].regex, "^(.*?)(/a/)(.*)$");

        let message = bad(
            "serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=/a,/b:/c",
            "reqPathSearchReplace",
        );
        assert!(message.contains("pair 2"), "{message}");
        bad(
            "serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=/a,/b:",
            "reqPathSearchReplace",
        );
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
    fn several_rewrite_pairs_apply_in_order() {
        let r = ok(
            "serviceName=a&port=80&servicePath=/a&reqPathSearchReplace=/a/,/b/:^/b/(v[0-9]),/\\1",
        );
        let rewrites: Vec<(&str, &str)> = r.routes[0]
            .rewrite_path
            .iter()
            .map(|w| (w.regex.as_str(), w.replace.as_str()))
            .collect();
        assert_eq!(
            rewrites,
            [
                ("^(.*?)(/a/)(.*)$", "\\1/b/\\3"),
                ("^(.*?)(^/b/(v[0-9]))(.*)$", "\\1/\\3\\4")
            ]
        );
        assert_eq!(
            r.echo.service_dest[0].req_path_search_replace,
            "/a/,/b/:^/b/(v[0-9]),/\\1"
        );
        let cfg = config(&r);
        let first = cfg.find("replace-path ^(.*?)(/a/)").unwrap();
        let second = cfg.find("replace-path ^(.*?)(^/b/").unwrap();
        assert!(first < second, "{cfg}");
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
    fn listener_and_other_tools_parameters_are_ignored_misspellings_refused() {
        let plain = ok("serviceName=a&port=80&servicePath=/a");
        let with_labels = ok(
            "serviceName=a&port=80&servicePath=/a&notify=true&alertName=mem&alertIf.1=@x&scrapePort=9100&scaleMax=3",
        );
        assert_eq!(with_labels.routes, plain.routes);
        assert_eq!(
            err("serviceName=a&port=80&servicePth=/a").params(),
            ["servicePth"]
        );
        let r = ok(&format!(
            "serviceName=a&port=80&servicePath=/a, /b&users=alice:{HASH}, bob:{HASH}&usersPassEncrypted=true"
        ));
        assert_eq!(r.routes[0].paths.len(), 2);
        assert_eq!(r.userlists[&Name("a".into())].listed().len(), 2);
    }

    #[test]
    fn small_dfp_settings_map_to_route_fields() {
        let r = ok(&format!(
            "serviceName=a&port.1=80&servicePath.1=/a&port.2=81&servicePath.2=/health&ignoreAuthorization.2=true&users=alice:{HASH}&usersPassEncrypted=true&connectionMode=http-server-close&xForwardedProto=true"
        ));
        assert!(r.routes[0].auth.is_some());
        assert!(r.routes[1].auth.is_none());
        assert_eq!(r.routes[0].connection_mode, ConnectionMode::ServerClose);
        assert!(config(&r).contains("    option http-server-close\n"));
        bad(
            "serviceName=a&port=80&servicePath=/a&connectionMode=http-tunnel",
            "connectionMode",
        );

        let r = ok("serviceName=a&port=80&serviceDomain=a.com&serviceDomainMatchAll=true");
        let domains: Vec<&str> = r.routes[0].domains.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(domains, ["*.a.com", "a.com"]);

        let r = ok("serviceName=db&port=5432&reqMode=tcp&srcPort=15432&checkTcp=true");
        assert!(r.routes[0].health_check.is_some());
        assert_eq!(r.routes[0].endpoint, Endpoint::Tasks);
        let r = ok("serviceName=a&port=80&servicePath=/a&discoveryType=Overlay");
        assert_eq!(r.routes[0].endpoint, Endpoint::Vip);

        for refused in [
            "backendExtra",
            "templateFePath",
            "userDef",
            "verifyClientSsl",
        ] {
            let message = bad(
                &format!("serviceName=a&port=80&servicePath=/a&{refused}=x"),
                refused,
            );
            assert!(message.contains(refused), "{message}");
        }
    }

    #[test]
    fn sni_destinations_route_by_service_domain() {
        let r = ok(
            "serviceName=api&port=443&reqMode=sni&srcPort=8443&serviceDomain=api.example.com,*.api.example.com&timeoutClient=60",
        );
        let route = &r.routes[0];
        assert_eq!(route.mode, Mode::Sni);
        assert_eq!(route.listen_port, Some(8443));
        assert_eq!(route.domains.len(), 2);
        assert_eq!(r.echo.req_mode, "sni");
        assert_eq!(r.echo.service_dest[0].src_port, 8443);
        let cfg = config(&r);
        assert!(
            cfg.contains("use_backend api-be443 if { req.ssl_sni -i api.example.com }\n"),
            "{cfg}"
        );
        assert!(cfg.contains("backend api-be443\n    mode tcp\n"), "{cfg}");

        assert_eq!(
            err("serviceName=api&port=443&reqMode=sni&serviceDomain=a.com"),
            DfpError::MissingSrcPort {
                param: "srcPort".into()
            }
        );
        let message = bad(
            "serviceName=api&port=443&reqMode=sni&srcPort=8443",
            "serviceDomain",
        );
        assert!(message.contains("needs `domains`"), "{message}");
        // DFP's SNI guide: a raw ACL in pathType, the names in servicePath.
        let message = bad(
            "serviceName=api&port=443&reqMode=sni&srcPort=8443&servicePath=api.&pathType=req_ssl_sni -i -m beg",
            "pathType",
        );
        assert!(message.contains("`serviceDomain`"), "{message}");
        // http-only settings do not apply.
        bad(
            "serviceName=api&port=443&reqMode.1=sni&srcPort.1=8443&serviceDomain.1=a.com&sslVerifyNone.1=true",
            "sslVerifyNone.1",
        );
        bad(
            "serviceName=api&port=443&reqMode=sni&srcPort=8443&serviceDomain=a.com&httpsPort=8443",
            "httpsPort",
        );
        // An http destination next to an sni one: each takes its own.
        let r = ok(
            "serviceName=api&port=80&servicePath=/api&port.1=443&reqMode.1=sni&srcPort.1=8443&serviceDomain.1=a.com",
        );
        assert_eq!(
            r.routes.iter().map(|r| r.mode).collect::<Vec<_>>(),
            [Mode::Http, Mode::Sni]
        );
    }

    #[test]
    fn ssl_verify_none_speaks_tls_to_the_servers() {
        let r = ok("serviceName=a&port=443&servicePath=/a&sslVerifyNone=true");
        assert_eq!(r.routes[0].backend_tls, Some(BackendTls::verify_none()));
        assert!(r.echo.ssl_verify_none && r.echo.service_dest[0].ssl_verify_none);
        assert!(config(&r).contains("    server a a:443 ssl verify none\n"));
        let r = ok("serviceName=a&port=80&servicePath=/a&sslVerifyNone=false");
        assert_eq!(r.routes[0].backend_tls, None);
        // Indexed: per destination.
        let r = ok(
            "serviceName=a&port.1=443&servicePath.1=/a&sslVerifyNone.1=true&port.2=80&servicePath.2=/b",
        );
        assert!(r.routes[0].backend_tls.is_some() && r.routes[1].backend_tls.is_none());
        bad(
            "serviceName=a&port=443&servicePath=/a&sslVerifyNone=yes",
            "sslVerifyNone",
        );
        // DFP proxies tcp destinations in plain TCP, sslVerifyNone or not.
        bad(
            "serviceName=db&port=5432&reqMode=tcp&srcPort=15432&sslVerifyNone=true",
            "sslVerifyNone",
        );
    }

    #[test]
    fn https_port_is_a_second_backend() {
        let r = ok("serviceName=app&port=8080&httpsPort=8443&servicePath=/app&sslVerifyNone=true");
        let route = &r.routes[0];
        assert_eq!(route.https_port, Some(8443));
        assert_eq!(r.echo.https_port, 8443);
        assert_eq!(r.echo.service_dest[0].https_port, 8443);
        let cfg = config(&r);
        assert!(
            cfg.contains("    use_backend https-app-be8443 if { ssl_fc } url_app8080\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("\nbackend https-app-be8443\n")
                && cfg.contains("    server app app:8443 ssl verify none\n"),
            "{cfg}"
        );
        for value in ["0", "70000", "https"] {
            bad(
                &format!("serviceName=app&port=8080&servicePath=/app&httpsPort={value}"),
                "httpsPort",
            );
        }
        // A backend name another route renders to.
        let clash = ok("serviceName=https-app&port=8443&servicePath=/b");
        let mut table = RoutesFile::empty();
        table.routes = clash.routes;
        let e = r.validate_in(&table).unwrap_err();
        assert_eq!(e.params(), ["httpsPort"], "{e}");
        assert_eq!(
            err("serviceName=a&port=80&servicePath=/a&srcHttpsPort=443"),
            DfpError::Unsupported {
                params: vec!["srcHttpsPort".into()]
            }
        );
    }
}
