//! What narrows which requests a route serves beyond its paths and domains
//! (how its domains match the host, request headers, user agents), and what
//! HAProxy does to its answers (compression): Docker Flow Proxy's
//! `serviceDomainAlgo`, `serviceHeader`, `userAgent`, `compressionAlgo` and
//! `compressionType`.

use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::grammar::{self, InvalidValue};

/// How a route's domains without `*.` match the request's host (its port
/// and case ignored); a wildcard `*.example.com` always matches any subdomain.
/// `exact`: the host is the domain (`-m str`; DFP's `hdr(host)`).
/// `prefix`: the host starts with it (`-m beg`; DFP's `hdr_beg(host)`):
/// `example.com` also matches `example.com.evil.net`.
/// `suffix`: the host ends with it (`-m end`; DFP's `hdr_end(host)`):
/// `example.com` also matches `www.example.com` and `myexample.com`.
/// `labels`: it appears in the host as whole dot-separated labels (`-m dom`;
/// DFP's `hdr_dom(host)`): `example.com` matches `www.example.com`, not `myexample.com`.
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
pub enum DomainMatch {
    #[default]
    Exact,
    Prefix,
    Suffix,
    Labels,
}

impl DomainMatch {
    pub fn is_exact(&self) -> bool {
        *self == DomainMatch::Exact
    }

    /// HAProxy's match method (`-m <method>`).
    pub fn haproxy_method(self) -> &'static str {
        match self {
            DomainMatch::Exact => "str",
            DomainMatch::Prefix => "beg",
            DomainMatch::Suffix => "end",
            DomainMatch::Labels => "dom",
        }
    }
}

/// HTTP compression of a route's answers, when the client accepts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    /// Algorithms HAProxy may compress with, in order of preference.
    #[schemars(length(min = 1))]
    pub algorithms: Vec<CompressionAlgorithm>,
    /// Content types compressed (`text/html`, matched without parameters
    /// such as `; charset=utf-8`). Empty: every type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<MimeType>,
}

/// A compression algorithm HAProxy offers (its `compression algo`):
/// `raw-deflate` is deflate without the zlib wrapper, answered to clients
/// that ask for `deflate`; `identity` compresses nothing (for debugging).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum CompressionAlgorithm {
    Gzip,
    Deflate,
    RawDeflate,
    Identity,
}

impl CompressionAlgorithm {
    const ALL: [CompressionAlgorithm; 4] = [
        CompressionAlgorithm::Gzip,
        CompressionAlgorithm::Deflate,
        CompressionAlgorithm::RawDeflate,
        CompressionAlgorithm::Identity,
    ];

    pub fn haproxy_name(self) -> &'static str {
        match self {
            CompressionAlgorithm::Gzip => "gzip",
            CompressionAlgorithm::Deflate => "deflate",
            CompressionAlgorithm::RawDeflate => "raw-deflate",
            CompressionAlgorithm::Identity => "identity",
        }
    }
}

/// Not one of HAProxy's compression algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a compression algorithm: `gzip`, `deflate`, `raw-deflate` or `identity`")]
pub struct UnknownAlgorithm;

impl FromStr for CompressionAlgorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, UnknownAlgorithm> {
        Self::ALL
            .into_iter()
            .find(|a| a.haproxy_name() == s)
            .ok_or(UnknownAlgorithm)
    }
}

/// A media type without parameters: `text/html`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct MimeType(
    #[schemars(
        pattern(grammar::MIME_TYPE.pattern()),
        length(max = grammar::MIME_TYPE.max_len())
    )]
    pub String,
);

impl FromStr for MimeType {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        grammar::MIME_TYPE.check(s)?;
        Ok(Self(s.to_string()))
    }
}

impl std::fmt::Display for MimeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
