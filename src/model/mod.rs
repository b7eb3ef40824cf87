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
pub mod matching;
pub mod names;
pub mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use grammar::InvalidValue;
pub use matching::{Compression, CompressionAlgorithm, DomainMatch, MimeType};

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
    /// Named lists of basic-auth users, referenced by `routes[].auth.userlist`: a list of
    /// users with hashed passwords, or `{file: ...}` to read them from a file (a Docker secret).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub userlists: BTreeMap<Name, Userlist>,
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

/// A named list of basic-auth users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Userlist {
    /// The users, each with a crypt(3) password hash.
    Users(Vec<User>),
    /// The users of a file, read on every reconcile.
    File(UsersFile),
}

impl Userlist {
    /// The users written in the table; none for a file (read when capstan reconciles).
    pub fn listed(&self) -> &[User] {
        match self {
            Userlist::Users(users) => users,
            Userlist::File(_) => &[],
        }
    }
}

/// Users read from a file as Docker Flow Proxy reads its `dfp_users_*` secrets:
/// `user:password` entries, one per line or comma-separated. Plaintext passwords
/// are hashed by capstan (SHA-512 crypt) and never reach haproxy.cfg. The file is
/// read again on every reconcile, so a rotated secret applies; a file that cannot
/// be read or parsed fails the reconcile and HAProxy keeps its last config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// Absolute path of the file on capstan's host (`/run/secrets/dfp_users_ops`), at most 64 KiB.
    pub file: FilePath,
    /// The passwords are crypt(3) hashes already (`mkpasswd -m sha-512`), as
    /// Docker Flow Proxy's `usersPassEncrypted=true`; otherwise they are plaintext.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hashed: bool,
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
    /// `http` (routed by path and domain), `tcp` (its own listen port) or
    /// `sni` (TLS passed through, routed by the server name the client asks for).
    #[serde(default, skip_serializing_if = "Mode::is_http")]
    pub mode: Mode,
    /// The port HAProxy listens on for a `tcp` or `sni` route. `sni` routes
    /// on the same port share it, each with its own `domains`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub listen_port: Option<u16>,
    /// URL paths this route serves. Empty with `domains` set: the whole domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<UrlPath>,
    /// How `paths` match.
    #[serde(default, skip_serializing_if = "PathMatch::is_prefix")]
    pub path_match: PathMatch,
    /// Paths under `paths` this route does not take, matched as `path_match` says:
    /// such requests go on to the next route that matches them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_paths: Vec<UrlPath>,
    /// Host names this route serves: exact (`example.com`) or a wildcard suffix (`*.example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<Domain>,
    /// Host names (exact or `*.` wildcard) whose every request is redirected
    /// (301) to the first of `domains`, keeping path and query: a domain that moved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_from: Vec<Domain>,
    /// Also take every request that no route matches (HAProxy's `default_backend`).
    /// At most one route.
    #[serde(default, skip_serializing_if = "is_false")]
    pub default_backend: bool,
    /// Redirect plain-HTTP requests to HTTPS.
    #[serde(default, skip_serializing_if = "is_false")]
    pub https_only: bool,
    /// Status code of the HTTPS redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_code: Option<RedirectCode>,
    /// What makes a request plain HTTP for `https_only`: the connection to
    /// HAProxy is not TLS, or, behind a load balancer that terminates TLS,
    /// what its `X-Forwarded-Proto` says.
    #[serde(default, skip_serializing_if = "HttpsRedirectWhen::is_not_tls")]
    pub https_redirect_when: HttpsRedirectWhen,
    /// Refuse (403) requests whose connection to HAProxy is not TLS.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deny_http: bool,
    /// Require basic auth from a user of `userlists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Only these methods pass; any other is refused (403).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_methods: Vec<Method>,
    /// These methods are refused (403).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_methods: Vec<Method>,
    /// Headers added, set or deleted on the request before it reaches the service.
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub request_headers: HeaderRules,
    /// Headers added, set or deleted on the response before it reaches the client.
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub response_headers: HeaderRules,
    /// Rewrite the request path before it reaches the service: one rewrite, or a
    /// list of them applied in order (each to the path the previous one made).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "PathRewrites::deserialize_list",
        serialize_with = "PathRewrites::serialize_list"
    )]
    #[schemars(with = "PathRewrites")]
    pub rewrite_path: Vec<PathRewrite>,
    /// Timeouts of this route, overriding `defaults.timeouts`.
    #[serde(default, skip_serializing_if = "RouteTimeouts::is_empty")]
    pub timeouts: RouteTimeouts,
    /// Load-balancing algorithm, overriding `defaults.balance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Balance>,
    /// How HAProxy treats the connections of an http route: `keep_alive`
    /// (HAProxy's default), `server_close` (close the connection to the
    /// service after each response) or `close` (both sides).
    #[serde(default, skip_serializing_if = "ConnectionMode::is_keep_alive")]
    pub connection_mode: ConnectionMode,
    /// Keep a client on the server that answered it first (a cookie on HTTP routes).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sticky: bool,
    /// Health-check every server of this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Fixed server addresses instead of the service name: for backends outside Swarm.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Address>,
    /// Precedence over the computed order: rules of a route with a higher
    /// priority are tried first (see README "Precedence"). Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = -1000, max = 1000))]
    pub priority: i16,
    /// With Swarm discovery on: `tasks` balances over every running task
    /// (a server per task, scaled at run time), `vip` sends everything to the
    /// service's name as Docker Flow Proxy did.
    #[serde(default, skip_serializing_if = "Endpoint::is_tasks")]
    pub endpoint: Endpoint,
    /// Speak TLS to the service's servers, verifying their certificates or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_tls: Option<BackendTls>,
    /// The service's port for requests that reached HAProxy over HTTPS (a
    /// second backend, `https-<name>-be<https_port>`); plain-HTTP requests
    /// keep going to `port`. Docker Flow Proxy's `httpsPort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub https_port: Option<u16>,
    /// How `domains` without `*.` match the host: `exact`, `prefix`, `suffix` or `labels`.
    #[serde(default, skip_serializing_if = "DomainMatch::is_exact")]
    pub domain_match: DomainMatch,
    /// Serve only requests that carry each of these headers with this exact
    /// value (one of its comma-separated values; names ignore case, values do not).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_headers: BTreeMap<HeaderName, HeaderValue>,
    /// Serve only requests whose `User-Agent` contains one of these (ignoring case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_agents: Vec<HeaderValue>,
    /// Compress this route's answers for clients that accept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Resolve the servers' names at run time with HAProxy's DNS resolvers
    /// (`defaults.resolvers`, else Docker's `127.0.0.11:53`) and health-check them.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resolve_at_runtime: bool,
}

/// TLS from HAProxy to a route's servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendTls {
    /// `required`: a server's certificate must chain to `ca_file` (and match
    /// `sni` when set), else HAProxy does not use the server; `none`: any
    /// certificate is accepted (encrypted, not authenticated).
    pub verify: TlsVerify,
    /// The CA certificates (PEM) servers' certificates are checked against; required with `verify: required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<FilePath>,
    /// The server name sent in the TLS handshake (SNI); with `verify: required`
    /// the certificate must also be issued for it. Without it no name is sent
    /// and only the certificate's chain is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<Domain>,
}

/// Whether HAProxy checks the certificates of a route's TLS servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TlsVerify {
    // Against `ca_file`.
    Required,
    // Not at all: Docker Flow Proxy's `sslVerifyNone`.
    None,
}

impl BackendTls {
    /// Docker Flow Proxy's `sslVerifyNone=true`.
    pub fn verify_none() -> Self {
        Self {
            verify: TlsVerify::None,
            ca_file: None,
            sni: None,
        }
    }
}

/// HAProxy's HTTP connection mode for a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionMode {
    /// Keep both connections open between requests.
    #[default]
    KeepAlive,
    /// `option http-server-close`: close the connection to the service after each response.
    ServerClose,
    /// `option httpclose`: close both connections after each response.
    Close,
}

impl ConnectionMode {
    fn is_keep_alive(&self) -> bool {
        *self == ConnectionMode::KeepAlive
    }

    /// The backend option, when not HAProxy's default.
    pub fn haproxy_option(self) -> Option<&'static str> {
        match self {
            ConnectionMode::KeepAlive => None,
            ConnectionMode::ServerClose => Some("option http-server-close"),
            ConnectionMode::Close => Some("option httpclose"),
        }
    }
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

fn is_zero(n: &i16) -> bool {
    *n == 0
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
            exclude_paths: Vec::new(),
            domains: Vec::new(),
            redirect_from: Vec::new(),
            default_backend: false,
            https_only: false,
            redirect_code: None,
            https_redirect_when: HttpsRedirectWhen::NotTls,
            deny_http: false,
            auth: None,
            allowed_methods: Vec::new(),
            denied_methods: Vec::new(),
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            rewrite_path: Vec::new(),
            timeouts: RouteTimeouts::default(),
            balance: None,
            connection_mode: ConnectionMode::KeepAlive,
            sticky: false,
            health_check: None,
            servers: Vec::new(),
            priority: 0,
            endpoint: Endpoint::Tasks,
            backend_tls: None,
            https_port: None,
            domain_match: DomainMatch::Exact,
            match_headers: BTreeMap::new(),
            user_agents: Vec::new(),
            compression: None,
            resolve_at_runtime: false,
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
        // With `redirect_from`, the first domain is where redirects go: it stays first.
        let kept_first = (!route.redirect_from.is_empty() && !route.domains.is_empty())
            .then(|| route.domains.remove(0));
        route.domains.sort();
        route.domains.dedup();
        if let Some(first) = kept_first {
            route.domains.retain(|d| *d != first);
            route.domains.insert(0, first);
        }
        route.exclude_paths.sort();
        route.exclude_paths.dedup();
        route.redirect_from.sort();
        route.redirect_from.dedup();
        for methods in [&mut route.allowed_methods, &mut route.denied_methods] {
            methods.sort();
            methods.dedup();
        }
        for rules in [&mut route.request_headers, &mut route.response_headers] {
            rules.delete.sort();
            rules.delete.dedup();
        }
        route.user_agents.sort_by(|a, b| a.0.cmp(&b.0));
        route.user_agents.dedup();
        if let Some(compression) = &mut route.compression {
            compression.types.sort();
            compression.types.dedup();
        }
        route
    }

    /// The route's identity across revisions: `<key>:<port>`.
    pub fn id(&self) -> RouteId {
        RouteId(names::key_port("", self, ":", None))
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
    // TLS passthrough: HAProxy reads the server name of the client's TLS
    // hello (SNI) and forwards the encrypted stream untouched. (No doc
    // comments on variants: the schema would turn the enum into a `oneOf`,
    // whose errors do not list the values.)
    Sni,
}

impl Mode {
    fn is_http(&self) -> bool {
        *self == Mode::Http
    }

    /// The word routes.yaml and Docker Flow Proxy's `reqMode` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
            Mode::Sni => "sni",
        }
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

/// When `https_only` redirects a request to HTTPS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HttpsRedirectWhen {
    /// The connection to HAProxy is not TLS.
    #[default]
    NotTls,
    /// The last `X-Forwarded-Proto` is `http` (a load balancer in front took plain HTTP).
    XForwardedProtoHttp,
    /// The last `X-Forwarded-Proto` is not `https`, or there is none.
    XForwardedProtoNotHttps,
}

impl HttpsRedirectWhen {
    fn is_not_tls(&self) -> bool {
        *self == HttpsRedirectWhen::NotTls
    }
}

/// An HTTP method, case-sensitive: `GET`, `DELETE`, `PROPFIND`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct Method(
    #[schemars(
        pattern(grammar::METHOD.pattern()),
        length(min = grammar::METHOD.min_len(), max = grammar::METHOD.max_len())
    )]
    pub String,
);

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
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
    /// Pass the client's `Authorization` header on to the service. By
    /// default HAProxy removes it once checked: it holds the password.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forward_credentials: bool,
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
    FilePath: grammar::FILE_PATH,
    Address: grammar::ADDRESS,
    UrlPath: grammar::PATH,
    Domain: grammar::DOMAIN,
    HeaderName: grammar::HEADER_NAME,
    HeaderValue: grammar::HEADER_VALUE,
    Method: grammar::METHOD,
    CertName: grammar::CERT_NAME,
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

/// `rewrite_path` as written: one rewrite, or a list applied in order.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum PathRewrites {
    One(PathRewrite),
    Many(Vec<PathRewrite>),
    /// Written empty (`rewrite_path:`): none.
    Nothing(()),
}

impl PathRewrites {
    fn deserialize_list<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<PathRewrite>, D::Error> {
        Ok(match PathRewrites::deserialize(deserializer)? {
            PathRewrites::One(rewrite) => vec![rewrite],
            PathRewrites::Many(rewrites) => rewrites,
            PathRewrites::Nothing(()) => Vec::new(),
        })
    }

    /// One rewrite as the single object it is usually written as.
    fn serialize_list<S: serde::Serializer>(
        rewrites: &[PathRewrite],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match rewrites {
            [one] => one.serialize(serializer),
            many => many.serialize(serializer),
        }
    }
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
