//! Certificates HAProxy serves besides routes.yaml's `defaults.https.certificates`:
//! uploaded through the Docker-Flow-Proxy API (`PUT /cert`, `serviceCert`),
//! kept in `<state>/certs/` ([`store`]), and read from the directories
//! routes.yaml names, such as Docker secrets ([`dirs`]). HAProxy reads them
//! all through one crt-list, which capstan writes, so that adding,
//! replacing and removing one is a runtime API change, not a reload.

pub mod dirs;
pub mod pem;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::CertName;
pub use pem::{MAX_PEM_BYTES, Pem, PemError};

/// At most this many uploaded certificates.
pub const MAX_UPLOADED: usize = 1000;

/// Where a certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CertSource {
    /// Uploaded through the API: not in git (drift).
    Uploaded,
    /// A file in one of routes.yaml's `certificate_dirs`.
    Directory { dir: String },
}

/// A certificate HAProxy should serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub name: CertName,
    pub source: CertSource,
    /// The file HAProxy loads it from at a reload: also its name in the
    /// runtime API and its line in the crt-list.
    pub path: PathBuf,
    pub pem: Arc<Pem>,
}

/// The crt-list lines for `certificates`, in order: one path per line.
pub fn crt_list(certificates: &[Certificate]) -> String {
    certificates
        .iter()
        .map(|c| format!("{}\n", c.path.display()))
        .collect()
}

/// What status and `GET /certs` show of a certificate: never its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub name: String,
    pub source: CertSource,
    pub path: String,
    /// SHA-1 of the certificate, as HAProxy prints it.
    pub fingerprint: String,
    /// What HAProxy says of the certificate it serves under this path
    /// (`show ssl cert`): subject, names, expiry. Empty until it serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<ServedCertificate>,
}

/// A certificate as HAProxy's `show ssl cert <file>` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedCertificate {
    pub fingerprint: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alt_names: String,
    pub serial: String,
    pub not_after: String,
    pub issuer: String,
}

impl CertificateInfo {
    pub fn new(certificate: &Certificate, served: Option<ServedCertificate>) -> Self {
        Self {
            name: certificate.name.to_string(),
            source: certificate.source.clone(),
            path: certificate.path.display().to_string(),
            fingerprint: certificate.pem.fingerprint().to_string(),
            served,
        }
    }
}
