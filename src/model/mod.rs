//! The route table as operators write it: `routes.yaml`, version 1.
//!
//! These types are the single source of the JSON schema (`capstan schema`,
//! committed as `schema/routes.schema.json`). Every string that reaches
//! haproxy.cfg carries a schema pattern that admits no whitespace, quotes,
//! `#` or control characters, so nothing written here can inject text into
//! the rendered config; `validate` adds the checks a schema cannot express.
//!
//! HAProxy decodes backslash escapes (`\\`, `\xHH`, `\n`, `\t`, `\r`, `\ `,
//! `\#`, `\'`, `\"`) inside every word of its config, so a backslash would
//! make a word mean something other than what it says (`/app\x00zz` matches
//! as `/app`). Literal words admit none; regular expressions, where PCRE needs
//! backslashes, are rendered with every backslash doubled, so that PCRE gets
//! exactly the pattern written here.

pub mod diagnostics;
pub mod duration;
pub mod grammar;
pub mod names;
pub mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use grammar::InvalidValue;

/// The only format version this build understands.
pub const FORMAT_VERSION: u32 = 1;

/// A whole `routes.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "capstan routes.yaml",
    description = "Route table that capstan renders into haproxy.cfg. Docs: README.md#routesyaml"
)]
pub struct RoutesFile {
    /// Format version of this file. Always 1.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// Listener, timeout and stats settings shared by every route.
    #[serde(default, skip_serializing_if = "Defaults::is_default")]
    pub defaults: Defaults,
    /// Named lists of basic-auth users with hashed passwords, referenced by `routes[].auth.userlist`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub userlists: BTreeMap<Name, Vec<User>>,
    /// The routes. Their order does not matter: precedence is computed (see README).
    #[serde(default)]
    pub routes: Vec<Route>,
}

impl RoutesFile {
    /// An empty table with default settings: what a proxy with no routes serves.
    pub fn empty() -> Self {
        Self {
            version: FORMAT_VERSION,
            defaults: Defaults::default(),
            userlists: BTreeMap::new(),
            routes: Vec::new(),
        }
    }
}

/// A name that is safe as part of an HAProxy identifier: a Swarm service,
/// route or userlist name.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct Name(
    #[schemars(
        pattern(grammar::NAME.pattern()),
        length(min = grammar::NAME.min_len(), max = grammar::NAME.max_len())
    )]
    pub String,
);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A duration in HAProxy's syntax: a number with an optional unit (us, ms, s, m, h, d; ms when omitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Duration(#[schemars(pattern(duration::HAPROXY.pattern()))] pub String);

impl Duration {
    fn of(s: &str) -> Self {
        Self(s.to_string())
    }

    /// A whole number of seconds: `60s`.
    pub fn seconds(count: u64) -> Self {
        Self(format!("{count}{}", duration::Unit::Seconds.suffix()))
    }

    /// How long it is; `None` when it is not in HAProxy's syntax.
    pub fn to_std(&self) -> Option<std::time::Duration> {
        duration::HAPROXY.parse(&self.0).ok()
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Settings shared by every route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Address the frontends bind to: `*` for all, or one IPv4 address.
    #[serde(default = "Defaults::default_bind_address")]
    #[schemars(pattern(r"^(\*|[0-9]{1,3}(\.[0-9]{1,3}){3})$"))]
    pub bind_address: String,
    /// Port of the plain-HTTP frontend.
    #[serde(default = "Defaults::default_http_port")]
    #[schemars(range(min = 1))]
    pub http_port: u16,
    /// TLS termination. Without it, capstan binds plain HTTP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<Https>,
    /// Timeouts of every route unless a route sets its own.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Load-balancing algorithm of every route unless a route sets its own.
    #[serde(default)]
    pub balance: Balance,
    /// HAProxy's stats page and Prometheus exporter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// DNS servers that resolve service names at run time, e.g. `127.0.0.11:53`
    /// (Docker's embedded DNS) when HAProxy runs in a container on the services' network.
    /// Without them names are resolved once, when HAProxy loads its config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<Address>,
    /// Maximum concurrent connections per HAProxy process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub maxconn: Option<u32>,
}

impl Defaults {
    fn default_bind_address() -> String {
        "*".to_string()
    }
    fn default_http_port() -> u16 {
        80
    }
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            bind_address: Self::default_bind_address(),
            http_port: Self::default_http_port(),
            https: None,
            timeouts: Timeouts::default(),
            balance: Balance::default(),
            stats: None,
            resolvers: Vec::new(),
            maxconn: None,
        }
    }
}

/// TLS termination on its own port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Https {
    /// Port of the HTTPS listener.
    #[serde(default = "Https::default_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// A PEM file, or a directory of PEM files (certificate, chain and key each), as HAProxy's
    /// `crt`: the default certificate, for clients that send no known name. Without it, the
    /// listener opens once a certificate comes from `certificate_dirs` or the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<FilePath>,
    /// Directories capstan reads certificates from (PEM files with certificate, chain and key),
    /// e.g. Docker secrets: `{path: /run/secrets, prefixes: [cert-, cert_]}`. Files that are not
    /// such a PEM, or that HAProxy refuses, are skipped with a warning; changes apply without a reload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_dirs: Vec<CertificateDir>,
}

impl Https {
    /// The port HTTPS is served on when routes.yaml declares none but
    /// certificates were uploaded: Docker Flow Proxy's.
    pub const DEFAULT_PORT: u16 = 443;

    fn default_port() -> u16 {
        Self::DEFAULT_PORT
    }
}

/// A directory of certificates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateDir {
    /// The directory; its subdirectories are not read.
    pub path: FilePath,
    /// Only files whose name starts with one of these, ignoring case (Docker Flow Proxy's
    /// Docker secrets: `[cert-, cert_]`). Empty: every file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<CertName>,
}

/// The name of a certificate (an uploaded one's `certName`, a file in a
/// certificate directory), or the start of one: letters, digits, `.`, `_`, `-`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct CertName(
    #[schemars(
        pattern(grammar::CERT_NAME.pattern()),
        length(min = grammar::CERT_NAME.min_len(), max = grammar::CERT_NAME.max_len())
    )]
    pub String,
);

impl CertName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CertName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute file system path without whitespace or quotes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct FilePath(
    #[schemars(
        pattern(grammar::FILE_PATH.pattern()),
        length(max = grammar::FILE_PATH.max_len())
    )]
    pub String,
);

/// `host:port` or `ip:port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Address(
    #[schemars(
        pattern(grammar::ADDRESS.pattern()),
        length(max = grammar::ADDRESS.max_len())
    )]
    pub String,
);

/// Timeouts for every route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Time to establish a connection to a backend server.
    pub connect: Duration,
    /// Inactivity on the client side.
    pub client: Duration,
    /// Inactivity on the server side.
    pub server: Duration,
    /// Time for a client to send a whole HTTP request.
    pub http_request: Duration,
    /// Inactivity of tunnels (WebSocket, CONNECT) once established.
    pub tunnel: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::of("5s"),
            client: Duration::of("30s"),
            server: Duration::of("30s"),
            http_request: Duration::of("10s"),
            tunnel: Duration::of("1h"),
        }
    }
}

/// HAProxy's stats page (and Prometheus exporter at `/metrics`) on its own port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    #[schemars(range(min = 1))]
    pub port: u16,
    /// URI of the stats page.
    #[serde(default = "Stats::default_uri")]
    pub uri: UrlPath,
}

impl Stats {
    fn default_uri() -> UrlPath {
        UrlPath("/stats".to_string())
    }
}

/// Load-balancing algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    #[default]
    Roundrobin,
    Leastconn,
    Source,
    First,
    Uri,
    Random,
}

impl Balance {
    pub fn haproxy_name(self) -> &'static str {
        match self {
            Balance::Roundrobin => "roundrobin",
            Balance::Leastconn => "leastconn",
            Balance::Source => "source",
            Balance::First => "first",
            Balance::Uri => "uri",
            Balance::Random => "random",
        }
    }
}

/// A basic-auth user. Only hashed passwords: plaintext never belongs in git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: Name,
    /// A crypt(3) hash, e.g. from `mkpasswd -m sha-512`: `$6$...`, `$5$...`, `$2y$...`.
    #[schemars(
        pattern(grammar::PASSWORD_HASH.pattern()),
        length(max = grammar::PASSWORD_HASH.max_len())
    )]
    pub password_hash: String,
}

impl User {
    /// A user with a crypt(3) hash; anything else is refused (it may be a plaintext password).
    pub fn new(name: Name, password_hash: &str) -> Result<Self, InvalidValue> {
        grammar::PASSWORD_HASH.check(password_hash)?;
        Ok(Self {
            name,
            password_hash: password_hash.to_string(),
        })
    }
}

/// One route: traffic matching its paths and domains goes to one port of one Swarm service.
/// A service with several destinations (ports) is several routes naming the same service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name of the route, used in HAProxy's ACL and backend names. Defaults to `service`;
    /// set it when one service has two routes on the same port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// The Swarm service (or any resolvable host) that serves this route.
    pub service: Name,
    /// The port the service listens on.
    #[schemars(range(min = 1))]
    pub port: u16,
    /// `http` (routed by path and domain) or `tcp` (its own listen port).
    #[serde(default, skip_serializing_if = "Mode::is_http")]
    pub mode: Mode,
    /// The port HAProxy listens on for a `tcp` route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub listen_port: Option<u16>,
    /// URL paths this route serves. Empty with `domains` set: the whole domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<UrlPath>,
    /// How `paths` match.
    #[serde(default, skip_serializing_if = "PathMatch::is_prefix")]
    pub path_match: PathMatch,
    /// Host names this route serves: exact (`example.com`) or a wildcard suffix (`*.example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<Domain>,
    /// Redirect plain-HTTP requests to HTTPS.
    #[serde(default, skip_serializing_if = "is_false")]
    pub https_only: bool,
    /// Status code of the HTTPS redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_code: Option<RedirectCode>,
    /// Require basic auth from a user of `userlists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Headers added, set or deleted on the request before it reaches the service.
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub request_headers: HeaderRules,
    /// Headers added, set or deleted on the response before it reaches the client.
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub response_headers: HeaderRules,
    /// Rewrite the request path before it reaches the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_path: Option<PathRewrite>,
    /// Timeouts of this route, overriding `defaults.timeouts`.
    #[serde(default, skip_serializing_if = "RouteTimeouts::is_empty")]
    pub timeouts: RouteTimeouts,
    /// Load-balancing algorithm, overriding `defaults.balance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Balance>,
    /// Keep a client on the server that answered it first (a cookie on HTTP routes).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sticky: bool,
    /// Health-check every server of this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Fixed server addresses instead of the service name: for backends outside Swarm.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Address>,
    /// With Swarm discovery on: `tasks` balances over every running task
    /// (a server per task, scaled at run time), `vip` sends everything to the
    /// service's name as Docker Flow Proxy did.
    #[serde(default, skip_serializing_if = "Endpoint::is_tasks")]
    pub endpoint: Endpoint,
}

/// How a route reaches its service's replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// One server per running task, from Swarm (when discovery is on).
    #[default]
    Tasks,
    /// One server at `<service>:<port>`.
    Vip,
}

impl Endpoint {
    fn is_tasks(&self) -> bool {
        *self == Endpoint::Tasks
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Route {
    /// A route named after its service with default settings: the smallest valid route.
    pub fn new(service: &str, port: u16) -> Self {
        Self {
            name: None,
            service: Name(service.to_string()),
            port,
            mode: Mode::Http,
            listen_port: None,
            paths: Vec::new(),
            path_match: PathMatch::Prefix,
            domains: Vec::new(),
            https_only: false,
            redirect_code: None,
            auth: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            rewrite_path: None,
            timeouts: RouteTimeouts::default(),
            balance: None,
            sticky: false,
            health_check: None,
            servers: Vec::new(),
            endpoint: Endpoint::Tasks,
        }
    }

    /// The name HAProxy identifiers are built from: `name`, else `service`.
    pub fn key(&self) -> &Name {
        self.name.as_ref().unwrap_or(&self.service)
    }

    /// The route with its unordered lists sorted and deduplicated: what it
    /// means, regardless of how it was written.
    pub fn normalized(&self) -> Route {
        let mut route = self.clone();
        route.paths.sort();
        route.paths.dedup();
        route.domains.sort();
        route.domains.dedup();
        for rules in [&mut route.request_headers, &mut route.response_headers] {
            rules.delete.sort();
            rules.delete.dedup();
        }
        route
    }

    /// The route's identity across revisions: `<key>:<port>`.
    pub fn id(&self) -> RouteId {
        RouteId(format!("{}:{}", self.key(), self.port))
    }
}

/// A route's identity across revisions, `<name or service>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RouteId(pub String);

impl std::fmt::Display for RouteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Http,
    Tcp,
}

impl Mode {
    fn is_http(&self) -> bool {
        *self == Mode::Http
    }
}

/// How a route's paths match the request path.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PathMatch {
    /// The request path starts with the path (`/demo` matches `/demo/hello`).
    #[default]
    Prefix,
    /// The request path equals the path.
    Exact,
    /// The request path matches the path as a PCRE regular expression.
    Regex,
}

impl PathMatch {
    fn is_prefix(&self) -> bool {
        *self == PathMatch::Prefix
    }
}

/// A URL path (or, with `path_match: regex`, a PCRE pattern): printable
/// ASCII without spaces, quotes, `#` or backticks. A path has no `\`
/// (HAProxy would decode it as an escape); a pattern reaches PCRE exactly as
/// written, backslashes included.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct UrlPath(
    #[schemars(
        pattern(grammar::PATH.pattern()),
        length(min = grammar::PATH.min_len(), max = grammar::PATH.max_len())
    )]
    pub String,
);

impl std::fmt::Display for UrlPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name, exact or `*.`-prefixed wildcard.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct Domain(
    #[schemars(
        pattern(grammar::DOMAIN.pattern()),
        length(max = grammar::DOMAIN.max_len())
    )]
    pub String,
);

impl Domain {
    /// The suffix a wildcard matches (`.example.com`), or `None` for an exact name.
    pub fn wildcard_suffix(&self) -> Option<&str> {
        self.0.strip_prefix('*')
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "u16", into = "u16")]
#[schemars(with = "RedirectCodeSchema")]
pub enum RedirectCode {
    MovedPermanently = 301,
    Found = 302,
    SeeOther = 303,
    TemporaryRedirect = 307,
    PermanentRedirect = 308,
}

/// Schema stand-in for `RedirectCode`: the integer codes HAProxy redirects with.
#[derive(JsonSchema)]
#[schemars(extend("enum" = [301, 302, 303, 307, 308]))]
#[allow(dead_code)] // only its schema is used
struct RedirectCodeSchema(u16);

/// A status code HAProxy does not redirect with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a redirect code")]
pub struct NotARedirectCode(pub u16);

impl TryFrom<u16> for RedirectCode {
    type Error = NotARedirectCode;
    fn try_from(code: u16) -> Result<Self, NotARedirectCode> {
        Ok(match code {
            301 => Self::MovedPermanently,
            302 => Self::Found,
            303 => Self::SeeOther,
            307 => Self::TemporaryRedirect,
            308 => Self::PermanentRedirect,
            other => return Err(NotARedirectCode(other)),
        })
    }
}

impl From<RedirectCode> for u16 {
    fn from(code: RedirectCode) -> u16 {
        code as u16
    }
}

/// Basic auth for a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// A key of `userlists`.
    pub userlist: Name,
    /// The realm browsers show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<Name>,
}

/// Header changes, applied in the order delete, set, add.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderRules {
    /// Headers appended (an existing header of that name is kept).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<HeaderName, HeaderValue>,
    /// Headers replaced (any existing header of that name is removed first).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<HeaderName, HeaderValue>,
    /// Headers removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<HeaderName>,
}

impl HeaderRules {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.delete.is_empty()
    }
}

/// An HTTP header name: an RFC 9110 token without `'` and `$` (HAProxy
/// would read a quote; `$` has no use in names).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct HeaderName(
    #[schemars(
        pattern(grammar::HEADER_NAME.pattern()),
        length(
            min = grammar::HEADER_NAME.min_len(),
            max = grammar::HEADER_NAME.max_len()
        )
    )]
    pub String,
);

/// A literal header value: printable text; no double quotes, backslashes,
/// `%` (HAProxy would read a sample expression) or `$` (HAProxy expands
/// `"${VAR}"` from its environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct HeaderValue(
    #[schemars(
        pattern(grammar::HEADER_VALUE.pattern()),
        length(max = grammar::HEADER_VALUE.max_len())
    )]
    pub String,
);

/// The newtypes that hold exactly one [`grammar`]'s values.
macro_rules! parsed_by_grammar {
    ($($newtype:ident: $grammar:expr),* $(,)?) => {$(
        impl FromStr for $newtype {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, InvalidValue> {
                $grammar.check(s)?;
                Ok(Self(s.to_string()))
            }
        }
    )*};
}

parsed_by_grammar!(
    Name: grammar::NAME,
    Address: grammar::ADDRESS,
    UrlPath: grammar::PATH,
    Domain: grammar::DOMAIN,
    HeaderName: grammar::HEADER_NAME,
    HeaderValue: grammar::HEADER_VALUE,
    CertName: grammar::CERT_NAME,
    FilePath: grammar::FILE_PATH,
);

/// `http-request replace-path`: paths matching `regex` become `replace` (`\1` is the first group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathRewrite {
    /// A PCRE pattern: printable ASCII without spaces, quotes, `#` or
    /// backticks; it reaches PCRE exactly as written, backslashes included.
    #[schemars(
        pattern(grammar::PATH.pattern()),
        length(min = grammar::PATH.min_len(), max = grammar::PATH.max_len())
    )]
    pub regex: String,
    /// The new path: printable ASCII without spaces, quotes, `#`, backticks
    /// or `%`; a `\` only before a group number (`\1`).
    #[schemars(
        pattern(grammar::PATH_REPLACE.pattern()),
        length(max = grammar::PATH_REPLACE.max_len())
    )]
    pub replace: String,
}

/// Per-route timeouts; unset ones come from `defaults.timeouts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Duration>,
    /// Client inactivity; only for `tcp` routes, which have a frontend of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Duration>,
}

impl RouteTimeouts {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Active health checks of a route's servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// HTTP path to GET; a 2xx or 3xx answer is healthy. Without it (and on tcp routes), a TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<UrlPath>,
    /// Time between two checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}
