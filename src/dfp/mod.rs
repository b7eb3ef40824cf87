//! Docker Flow Proxy compatibility: the pure translation between Docker Flow
//! Proxy's HTTP API (`/v1/docker-flow-proxy/reconfigure?serviceName=go-demo&servicePath=/demo&port=8080`)
//! and capstan's routes. No I/O: HTTP handlers, persistence and the reconciler
//! build on [`parse_reconfigure`], [`parse_remove`], [`Reconfigure::validate_in`]
//! and the answers of `echo`.
//!
//! - `params`: the query's bookkeeping: names, indexes, repeats, limits.
//! - `translate`: parameters → [`Route`](crate::model::Route)s, and capstan's
//!   diagnostics back to the parameters they came from.
//! - `values`: each parameter's value, read into the model's types (the
//!   grammar is the model's, [`crate::model::grammar`]).
//! - `regsub`: DFP's `regsub` path rewrite as capstan's `replace-path`.
//! - `echo`: every JSON answer in DFP's shape.
//!
//! Every route [`parse_reconfigure`] returns has passed
//! [`validate::check`](crate::model::validate::check).
//!
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
//! | `serviceCert` | | a PEM (certificate, chain, key; newlines or `\n`, at most 16 KiB) → [`Reconfigure::service_cert`], stored as an uploaded certificate named after the first domain (`*.` as `wildcard.`), else the service; not echoed (it holds a key); ignored with a warning in labels |
//!
//! Rejected (400 [`DfpError::Unsupported`]): `httpsPort`,
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

mod echo;
mod error;
mod params;
mod regsub;
mod translate;
mod values;

pub use echo::{
    AnswerStatus, DestEcho, ServiceEcho, UserEcho, config_answer, error_answer, ok_answer,
    reconfigure_answer, remove_answer,
};
pub use error::{DfpError, ParamProblem};
pub use params::{MAX_DESTINATIONS, MAX_PARAMS, MAX_VALUE_LEN};
pub use translate::{Reconfigure, Remove, parse_reconfigure, parse_remove};

/// `a=1&b=2` as decoded pairs (no percent-decoding: values are written decoded).
#[cfg(test)]
fn query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}
