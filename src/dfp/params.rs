//! A request's query, kept track of: which names are known, which carry a
//! destination index (`port.2`), which values repeat or are empty, the
//! limits, and which parameters nothing used.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::error::{DfpError, ParamProblem};
use crate::model::Mode;

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
    "ignoreAuthorization",
    "checkTcp",
    "servicePathExclude",
    "redirectFromDomain",
    "allowedMethods",
    "deniedMethods",
    "denyHttp",
    "httpsPort",
    "sslVerifyNone",
    "serviceHeader",
    "userAgent",
];

/// Service-level parameters.
const SERVICE_PARAMS: &[&str] = &[
    "serviceName",
    "pathType",
    "serviceDomainAlgo",
    "users",
    "usersSecret",
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
    "redirectUnlessHttpsProto",
    "ttl",
    "connectionMode",
    "discoveryType",
    "xForwardedProto",
    "serviceDomainMatchAll",
    "compressionAlgo",
    "compressionType",
    "checkResolvers",
    "serviceCert",
];

/// Docker Flow Proxy parameters capstan knows and refuses, with the reason.
pub(super) const REJECTED: &[(&str, &str)] = &[
    ("balanceGroup", "capstan has no balance groups"),
    (
        "backendExtra",
        "raw HAProxy lines would put unchecked text in haproxy.cfg; every setting has a routes.yaml field",
    ),
    (
        "templateFePath",
        "templates would put unchecked text in haproxy.cfg; capstan renders from routes.yaml fields",
    ),
    (
        "templateBePath",
        "templates would put unchecked text in haproxy.cfg; capstan renders from routes.yaml fields",
    ),
    (
        "consulTemplateFePath",
        "templates would put unchecked text in haproxy.cfg; capstan renders from routes.yaml fields",
    ),
    (
        "consulTemplateBePath",
        "templates would put unchecked text in haproxy.cfg; capstan renders from routes.yaml fields",
    ),
    (
        "userDef",
        "it is only read by custom templates, which capstan does not run",
    ),
    (
        "serviceGroup",
        "capstan has no tcp groups: give each tcp route its own `listen_port`",
    ),
    (
        "srcHttpsPort",
        "capstan has one HTTPS listener, `defaults.https.port` in routes.yaml",
    ),
    (
        "verifyClientSsl",
        "capstan does not verify client certificates",
    ),
    (
        "clitcpka",
        "capstan does not set TCP keep-alive on client connections",
    ),
    (
        "skipCheck",
        "it belongs to DFP's Consul mode; capstan checks what `health_check` in routes.yaml says",
    ),
    (
        "proxyInstanceName",
        "capstan does not filter by proxy instance: notify each capstan only of its own services",
    ),
];

/// Parameters of Docker Flow Swarm Listener and of the other tools that read
/// `com.df.*` labels (Docker Flow Monitor, the Swarm autoscalers). DFSL
/// forwards every `com.df.*` label to every endpoint it notifies, so they
/// arrive here; they are accepted and ignored, indexed (`alertIf.1`) or not.
pub const FOREIGN: &[&str] = &[
    // Docker Flow Swarm Listener
    "notify",
    "nodeInfo",
    "nodeIP",
    "reschedule",
    // Docker Flow Monitor
    "alertName",
    "alertIf",
    "alertFor",
    "alertLabels",
    "alertAnnotations",
    "alertPersistent",
    "scrapePort",
    "scrapeNetwork",
    "scrapeType",
    "scrapeInterval",
    "scrapeTimeout",
    "metricType",
    // Docker Flow Swarm autoscalers
    "scaleMin",
    "scaleMax",
    "scaleDownBy",
    "scaleUpBy",
];

/// Parameters that only make sense on http destinations.
const HTTP_ONLY: &[&str] = &[
    "servicePath",
    "serviceDomain",
    "httpsOnly",
    "httpsRedirectCode",
    "reqPathSearchReplace",
    "ignoreAuthorization",
    "servicePathExclude",
    "redirectFromDomain",
    "allowedMethods",
    "deniedMethods",
    "denyHttp",
    "httpsPort",
    "sslVerifyNone",
    "serviceHeader",
    "userAgent",
];

/// Parameters that only make sense on tcp and sni destinations.
const TCP_ONLY: &[&str] = &["srcPort", "timeoutClient", "checkTcp"];

/// Whether `base` applies to destinations of `mode`: sni destinations take
/// what tcp ones do, and are routed by `serviceDomain`.
fn applies_to(base: &str, mode: Mode) -> bool {
    match mode {
        Mode::Http => !TCP_ONLY.contains(&base),
        Mode::Tcp => !HTTP_ONLY.contains(&base),
        Mode::Sni => !HTTP_ONLY.contains(&base) || base == "serviceDomain",
    }
}

/// `port` for index 0, else `port.<index>`.
pub(super) fn indexed(base: &str, index: usize) -> String {
    if index == 0 {
        base.to_string()
    } else {
        format!("{base}.{index}")
    }
}

/// One parameter as sent, with a non-empty value.
#[derive(Debug)]
pub(super) struct Given {
    /// Where it is filed: (name without index, index).
    key: (&'static str, usize),
    /// The name as sent: `port.2`.
    pub(super) name: String,
    pub(super) value: String,
}

impl Given {
    pub(super) fn problem(&self, message: impl Into<String>) -> ParamProblem {
        ParamProblem {
            param: self.name.clone(),
            message: message.into(),
        }
    }

    /// Parses the value, recording a problem when it fails.
    pub(super) fn parse<T>(
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
pub(super) struct Params {
    given: BTreeMap<(&'static str, usize), Given>,
    used: RefCell<BTreeSet<(&'static str, usize)>>,
}

enum Class {
    Known(&'static str, usize),
    BadIndex,
    Rejected,
    Foreign,
    Unknown,
}

fn classify(name: &str) -> Class {
    let unindexed = name.split_once('.').map_or(name, |(base, _)| base);
    if FOREIGN.contains(&unindexed) {
        return Class::Foreign;
    }
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
    pub(super) fn read(params: &[(String, String)], lenient: bool) -> Result<Self, DfpError> {
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
                Class::Foreign => {
                    log_foreign_once(&shown(name));
                    continue;
                }
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
            let checked = if key.0 == "serviceCert" {
                pem_text(value)
            } else {
                printable(value)
            };
            if let Err(message) = checked {
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
    pub(super) fn service(&self, base: &'static str) -> Option<&Given> {
        self.given.get(&(base, 0))
    }

    /// A service-level parameter, marked used.
    pub(super) fn take(&self, base: &'static str) -> Option<&Given> {
        let given = self.service(base)?;
        self.mark(given);
        Some(given)
    }

    /// A destination's own value, else the unindexed one; not marked used.
    pub(super) fn lookup(&self, base: &'static str, index: usize) -> Option<&Given> {
        self.given
            .get(&(base, index))
            .or_else(|| self.given.get(&(base, 0)))
    }

    /// Destination `index`'s value of `base`: its own, else the unindexed one
    /// when `base` applies to its mode. An own (indexed) value that does not
    /// apply is a problem; an unindexed one is left for other destinations.
    pub(super) fn for_dest(
        &self,
        base: &'static str,
        index: usize,
        mode: Mode,
        problems: &mut Vec<ParamProblem>,
    ) -> Option<&Given> {
        let applies = applies_to(base, mode);
        if index > 0
            && let Some(own) = self.given.get(&(base, index))
        {
            self.mark(own);
            if !applies {
                let kind = match mode {
                    Mode::Http => "reqMode=tcp or sni destinations; this one is http",
                    Mode::Tcp => "http destinations; this one is reqMode=tcp",
                    Mode::Sni => "http destinations; this one is reqMode=sni",
                };
                problems.push(own.problem(format!("applies to {kind}")));
                return None;
            }
            return Some(own);
        }
        let fallback = self.given.get(&(base, 0))?;
        if !applies {
            return None;
        }
        self.mark(fallback);
        Some(fallback)
    }

    pub(super) fn mark(&self, given: &Given) {
        self.used.borrow_mut().insert(given.key);
    }

    /// The destinations: every index given, and 0 when no index is, or when
    /// the unindexed values make a destination of their own (`port` and one
    /// of `servicePath`, `serviceDomain`, `srcPort`). Otherwise unindexed
    /// values are only fallbacks.
    pub(super) fn indices(&self) -> Vec<usize> {
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
    pub(super) fn unused(&self) -> Vec<ParamProblem> {
        let used = self.used.borrow();
        self.given
            .iter()
            .filter(|(key, _)| !used.contains(key))
            .map(|(&(base, _), given)| {
                let why = if HTTP_ONLY.contains(&base) || base_is_http_service(base) {
                    "it applies to http destinations, and there is none it could apply to"
                } else if TCP_ONLY.contains(&base) {
                    "it applies to reqMode=tcp or sni destinations, and there is none it could apply to"
                } else if base == "usersPassEncrypted" {
                    "it is only used with `users` or `usersSecret`"
                } else {
                    "nothing uses it"
                };
                given.problem(format!("has no effect: {why}"))
            })
            .collect()
    }
}

/// Says at debug level, once per name and process, that a foreign parameter
/// was ignored: DFSL sends them with every notification.
fn log_foreign_once(name: &str) {
    static LOGGED: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());
    let mut logged = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    if logged.len() < MAX_PARAMS && logged.insert(name.to_string()) {
        tracing::debug!(
            param = name,
            "ignored: it belongs to another tool that reads com.df.* labels"
        );
    }
}

/// Service-level parameters that only http destinations use.
fn base_is_http_service(base: &str) -> bool {
    matches!(
        base,
        "pathType"
            | "serviceDomainAlgo"
            | "users"
            | "usersSecret"
            | "addReqHeader"
            | "setReqHeader"
            | "delReqHeader"
            | "addResHeader"
            | "setResHeader"
            | "delResHeader"
            | "reqPathSearch"
            | "reqPathReplace"
            | "compressionAlgo"
            | "compressionType"
    )
}

/// At most this many bytes of `serviceCert`: a certificate, its chain and
/// its key, as long as the whole query may be.
pub const MAX_CERT_VALUE_LEN: usize = 16 * 1024;

/// `serviceCert`: PEM text, lines apart (newlines, or `\n` as labels carry them).
fn pem_text(value: &str) -> Result<(), String> {
    if value.len() > MAX_CERT_VALUE_LEN {
        return Err(format!(
            "is {} bytes long; at most {MAX_CERT_VALUE_LEN} are accepted",
            value.len()
        ));
    }
    match value
        .chars()
        .find(|&c| !(' '..='~').contains(&c) && c != '\n' && c != '\r')
    {
        None => Ok(()),
        Some(c) => Err(format!(
            "contains the character U+{:04X}: a PEM is printable ASCII and newlines",
            c as u32
        )),
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
