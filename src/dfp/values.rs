//! Docker Flow Proxy's parameter values, read into the model's types. What
//! a valid name, path, domain or header is comes from the model
//! ([`crate::model::grammar`], [`crate::model::duration`]); here are DFP's
//! forms (comma lists, `Name Value` headers, `*a.com` domains, Go's booleans,
//! bare seconds) and messages that say what is wrong in DFP's terms.

use std::collections::BTreeMap;
use std::time::Duration;

use super::regsub::capture_groups;
use crate::model::diagnostics::excerpt;
use crate::model::duration::{self, DFP_SECONDS, TTL};
use crate::model::grammar::{self, InvalidValue};
use crate::model::validate;
use crate::model::{
    self, Address, CompressionAlgorithm, ConnectionMode, Domain, DomainMatch, Endpoint, HeaderName,
    HeaderValue, MimeType, Mode, Name, PathMatch, RedirectCode, UrlPath, User,
};

pub(super) fn name_value(value: &str) -> Result<Name, String> {
    value.parse().map_err(|_| {
        format!(
            "`{}` is not a service name: a letter or digit, then letters, digits, `_`, `.` or `-`; at most 63",
            excerpt(value)
        )
    })
}

/// DFP's `aclName`: only echoed, so any short word will do.
pub(super) fn acl_name_value(value: &str) -> Result<String, String> {
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

pub(super) fn port_value(value: &str) -> Result<u16, String> {
    grammar::port(value).ok_or_else(|| format!("`{}` is not a port: 1 to 65535", excerpt(value)))
}

pub(super) fn count_value(value: &str) -> Result<u32, String> {
    if value.len() <= 9 && value.bytes().all(|b| b.is_ascii_digit()) {
        value.parse().map_err(|_| "is not a number".to_string())
    } else {
        Err(format!("`{}` is not a number", excerpt(value)))
    }
}

/// Go's `strconv.ParseBool`, as DFP reads its flags.
pub(super) fn bool_value(value: &str) -> Result<bool, String> {
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
pub(super) fn seconds_value(value: &str) -> Result<model::Duration, String> {
    DFP_SECONDS
        .parse(value)
        .ok()
        .filter(|d| !d.is_zero())
        .and_then(|d| duration::whole(d, duration::Unit::Seconds))
        .map(model::Duration::seconds)
        .ok_or_else(|| {
            format!(
                "`{}` is not a number of seconds: 1 to 999999999",
                excerpt(value)
            )
        })
}

/// capstan's `ttl`: a number of seconds, or a number with `s`, `m`, `h` or `d`.
pub(super) fn ttl_value(value: &str) -> Result<Duration, String> {
    TTL.parse(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!(
                "`{}` is not a duration: seconds, or a number with `s`, `m`, `h` or `d` (`10m`)",
                excerpt(value)
            )
        })
}

/// The items of a comma list, trimmed of spaces as DFP trims them
/// (`usr1:hash, usr2:hash`); empty items are an error.
fn items(value: &str) -> Result<Vec<&str>, String> {
    let items: Vec<&str> = value.split(',').map(|i| i.trim_matches(' ')).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err("has an empty item in its comma-separated list".into());
    }
    Ok(items)
}

/// `c` as a message names it.
fn shown_char(c: char) -> String {
    if c == ' ' {
        "a space".into()
    } else {
        format!("`{c}`")
    }
}

pub(super) fn paths_value(value: &str, path_match: PathMatch) -> Result<Vec<UrlPath>, String> {
    let mut paths = Vec::new();
    for item in items(value)? {
        let path: UrlPath = item.parse().map_err(|e| match e {
            InvalidValue::Character(c) => format!(
                "`{}`: {} is not allowed in a path",
                excerpt(item),
                shown_char(c)
            ),
            other => format!("`{}` {other}", excerpt(item)),
        })?;
        if path_match == PathMatch::Regex {
            if item.starts_with('-') {
                return Err(format!(
                    "`{}`: a regular expression may not start with `-` (HAProxy would read a flag); write `[-]`",
                    excerpt(item)
                ));
            }
            capture_groups(item).map_err(|e| format!("`{}`: {e}", excerpt(item)))?;
        } else if !item.starts_with('/') {
            return Err(format!("`{}` must start with `/`", excerpt(item)));
        } else if let Some(problem) = validate::literal_word_problem(item) {
            return Err(problem);
        }
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    Ok(paths)
}

/// A host name without wildcard: the model's [`Domain`], with DNS's limit
/// of 63 characters a label, which DFP always applied.
fn exact_domain(name: &str) -> Option<Domain> {
    name.parse::<Domain>()
        .ok()
        .filter(|d| d.wildcard_suffix().is_none() && d.0.split('.').all(|l| l.len() <= 63))
}

/// DFP's domains: `a.com`, `*.a.com` (any subdomain) and `*a.com` (DFP's
/// suffix match: here `a.com` and any subdomain of it).
pub(super) fn domains_value(value: &str) -> Result<Vec<Domain>, String> {
    let mut domains = Vec::new();
    for item in items(value)? {
        let (name, exact, wildcard) = match item.strip_prefix('*') {
            Some(rest) => match rest.strip_prefix('.') {
                Some(name) => (name, false, true),
                None => (rest, true, true),
            },
            None => (item, true, false),
        };
        let Some(domain) = exact_domain(name) else {
            let hint = if name.contains(':') {
                " (without a port: capstan ignores the port of `Host`)"
            } else {
                ""
            };
            return Err(format!(
                "`{}` is not a host name{hint}: labels of letters, digits and inner `-`, separated by `.`, optionally after `*`",
                excerpt(item)
            ));
        };
        let mut add = |d: Domain| {
            if !domains.contains(&d) {
                domains.push(d);
            }
        };
        if exact {
            add(domain);
        }
        if wildcard {
            // Over the schema's length when `name` is near it: validation says so.
            add(Domain(format!("*.{name}")));
        }
    }
    Ok(domains)
}

/// `outboundHostname`: a host name (not an address literal), reached on
/// the destination's `port`.
pub(super) fn server_value(host: &str, port: u16) -> Result<Address, String> {
    let address = if host.starts_with('[') {
        None
    } else {
        format!("{host}:{port}").parse::<Address>().ok()
    };
    address.ok_or_else(|| {
        format!(
            "`{}` is not a host name (without port or scheme)",
            excerpt(host)
        )
    })
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    name.parse().map_err(|_| {
        format!(
            "`{}` is not a header name: letters, digits and ``!&*+.^_`|~-``",
            excerpt(name)
        )
    })
}

/// Why a header value is not literal, in HAProxy's terms.
fn not_literal(problem: InvalidValue) -> String {
    match problem {
        InvalidValue::Character('%') => {
            "`%` starts an HAProxy sample expression (`%[src]`): capstan only sets literal values"
                .into()
        }
        InvalidValue::Character('$') => {
            "`$` would expand an environment variable of HAProxy".into()
        }
        InvalidValue::Character('"' | '\\') => "quotes and backslashes are not allowed".into(),
        other => other.to_string(),
    }
}

/// DFP's headers: `Name Value,Name2 Value2`.
pub(super) fn header_values(value: &str) -> Result<BTreeMap<HeaderName, HeaderValue>, String> {
    header_list(value, ' ')
}

/// A comma list of headers, each its name and value split at `separator`;
/// a name listed twice (in any case) is an error.
fn header_list(value: &str, separator: char) -> Result<BTreeMap<HeaderName, HeaderValue>, String> {
    let mut headers = BTreeMap::new();
    for item in items(value)? {
        let Some((name, value)) = item.split_once(separator) else {
            return Err(format!("`{}` is not `Name{separator}Value`", excerpt(item)));
        };
        let name = header_name(name.trim_matches(' '))?;
        let value = value.trim_matches(' ');
        if value.is_empty() {
            return Err(format!("`{}` has no value", name.0));
        }
        let value: HeaderValue = value
            .parse()
            .map_err(|e| format!("header `{}`: {}", name.0, not_literal(e)))?;
        if headers
            .keys()
            .any(|n: &HeaderName| n.0.eq_ignore_ascii_case(&name.0))
        {
            return Err(format!("header `{}` is listed twice", name.0));
        }
        headers.insert(name, value);
    }
    Ok(headers)
}

pub(super) fn header_names(value: &str) -> Result<Vec<HeaderName>, String> {
    let mut names = Vec::new();
    for item in items(value)? {
        let name = header_name(item)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// `users` with `usersPassEncrypted=true`: `name:hash,...`.
pub(super) fn users_value(value: &str) -> Result<Vec<User>, String> {
    let mut users: Vec<User> = Vec::new();
    for item in items(value)? {
        let Some((name, hash)) = item.split_once(':') else {
            return Err("every user is `name:hash`".into());
        };
        let user_name: Name = name
            .parse()
            .map_err(|_| format!("`{}` is not a user name", excerpt(name)))?;
        // Never echo what may be a password.
        let user = User::new(user_name, hash).map_err(|_| {
            format!(
                "the password of `{name}` is not a crypt(3) hash (`$6$...`, `$5$...`, `$2y$...`, `$y$...`); plaintext is not accepted"
            )
        })?;
        if users.iter().any(|u| u.name == user.name) {
            return Err(format!("user `{name}` is listed twice"));
        }
        users.push(user);
    }
    Ok(users)
}

/// `usersSecret`: the name of a secret, `dfp_users_<name>` on disk.
pub(super) fn users_secret_value(value: &str) -> Result<Name, String> {
    value.parse().map_err(|_| {
        format!(
            "`{}` is not a secret name: a letter or digit, then letters, digits, `_`, `.` or `-`; at most 63",
            excerpt(value)
        )
    })
}

/// `reqMode`.
pub(super) fn mode_value(value: &str) -> Result<Mode, String> {
    match value {
        "http" => Ok(Mode::Http),
        "tcp" => Ok(Mode::Tcp),
        "sni" => Ok(Mode::Sni),
        other => Err(format!(
            "`{}` is not a mode: `http`, `tcp` or `sni`",
            excerpt(other)
        )),
    }
}

/// `sessionType`: whether the service is sticky.
pub(super) fn session_type_value(value: &str) -> Result<bool, String> {
    match value {
        "sticky-server" => Ok(true),
        other => Err(format!(
            "`{}` is not supported: only `sticky-server`",
            excerpt(other)
        )),
    }
}

pub(super) fn path_type_value(value: &str) -> Result<PathMatch, String> {
    match value {
        "path_beg" => Ok(PathMatch::Prefix),
        "path" => Ok(PathMatch::Exact),
        "path_reg" => Ok(PathMatch::Regex),
        other => Err(format!(
            "`{}` is not supported: `path_beg`, `path` or `path_reg`",
            excerpt(other)
        )),
    }
}

/// `serviceDomainAlgo`: the host fetches DFP documents, each as the
/// `domain_match` that matches the same hosts (capstan ignores the port).
pub(super) fn domain_algo_value(value: &str) -> Result<DomainMatch, String> {
    match value {
        "hdr(host)" => Ok(DomainMatch::Exact),
        "hdr_beg(host)" => Ok(DomainMatch::Prefix),
        "hdr_end(host)" => Ok(DomainMatch::Suffix),
        "hdr_dom(host)" => Ok(DomainMatch::Labels),
        other => Err(format!(
            "`{}` is not supported: `hdr(host)`, `hdr_beg(host)`, `hdr_end(host)` or `hdr_dom(host)`",
            excerpt(other)
        )),
    }
}

/// `discoveryType`: how HAProxy reaches the service's replicas.
pub(super) fn discovery_type_value(value: &str) -> Result<Endpoint, String> {
    match value {
        "DNS" | "dns" => Ok(Endpoint::Tasks),
        "Overlay" | "overlay" => Ok(Endpoint::Vip),
        other => Err(format!(
            "`{}` is not a discovery type: `DNS` (a server per task) or `Overlay` (the service's VIP)",
            excerpt(other)
        )),
    }
}

/// `connectionMode`, in HAProxy's words.
pub(super) fn connection_mode_value(value: &str) -> Result<ConnectionMode, String> {
    match value {
        "http-keep-alive" => Ok(ConnectionMode::KeepAlive),
        "http-server-close" => Ok(ConnectionMode::ServerClose),
        "httpclose" | "forceclose" => Ok(ConnectionMode::Close),
        "http-tunnel" => {
            Err("`http-tunnel` no longer exists in HAProxy 2.x; use `http-keep-alive`".into())
        }
        other => Err(format!(
            "`{}` is not a connection mode: `http-keep-alive`, `http-server-close` or `httpclose`",
            excerpt(other)
        )),
    }
}

/// `serviceHeader`: `Name:Value,Name2:Value2`, each header required with
/// that value.
pub(super) fn service_header_value(
    value: &str,
) -> Result<BTreeMap<HeaderName, HeaderValue>, String> {
    header_list(value, ':')
}

/// `userAgent`: a comma list of texts, one of which `User-Agent` must contain.
pub(super) fn user_agents_value(value: &str) -> Result<Vec<HeaderValue>, String> {
    let mut agents: Vec<HeaderValue> = Vec::new();
    for item in items(value)? {
        let item = item.trim_matches(' ');
        let agent: HeaderValue =
            item.parse()
                .ok()
                .filter(|_| !item.is_empty())
                .ok_or_else(|| {
                    format!(
                        "`{}` is not a user agent: printable text without `\"`, `\\`, `%` or `$`",
                        excerpt(item)
                    )
                })?;
        if !agents.iter().any(|a| a.0.eq_ignore_ascii_case(item)) {
            agents.push(agent);
        }
    }
    Ok(agents)
}

/// The words of a list HAProxy writes separated by spaces (DFP passes it
/// on as is); commas separate them too.
fn words(value: &str) -> impl Iterator<Item = &str> {
    value.split([' ', ',']).filter(|w| !w.is_empty())
}

/// `compressionAlgo`: `gzip`, or several in order of preference (`gzip deflate`).
pub(super) fn compression_algos_value(value: &str) -> Result<Vec<CompressionAlgorithm>, String> {
    let mut algorithms = Vec::new();
    for word in words(value) {
        let algorithm: CompressionAlgorithm = word
            .parse()
            .map_err(|e| format!("`{}` is {e}", excerpt(word)))?;
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    if algorithms.is_empty() {
        return Err("names no algorithm".into());
    }
    Ok(algorithms)
}

/// `compressionType`: media types (`text/html text/css`).
pub(super) fn compression_types_value(value: &str) -> Result<Vec<MimeType>, String> {
    let mut types: Vec<MimeType> = Vec::new();
    for word in words(value) {
        let mime: MimeType = word.parse().map_err(|_| {
            format!(
                "`{}` is not a media type such as `text/html` (without parameters)",
                excerpt(word)
            )
        })?;
        if !types.iter().any(|t| t.0.eq_ignore_ascii_case(word)) {
            types.push(mime);
        }
    }
    if types.is_empty() {
        return Err("names no media type".into());
    }
    Ok(types)
}

pub(super) fn redirect_code_value(value: &str) -> Result<RedirectCode, String> {
    let code = value
        .parse::<u16>()
        .map_err(|_| "is not a number".to_string())?;
    RedirectCode::try_from(code)
        .map_err(|_| format!("`{}` is not one of 301, 302, 303, 307, 308", excerpt(value)))
}
