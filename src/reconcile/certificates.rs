//! The certificates capstan serves besides routes.yaml's own: uploaded ones
//! (checked by HAProxy, then stored), those of routes.yaml's
//! `certificate_dirs` (checked once per content), and what HAProxy serves
//! of each, for status and `GET /certs`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::haproxy::certs::{self, CertCheckError};
use crate::model::{CertName, Https, Mode, RoutesFile};
use crate::sources::Warning;
use crate::tls::store::{CertStore, CertStoreError};
use crate::tls::{Certificate, CertificateInfo, MAX_UPLOADED, Pem, PemError, ServedCertificate};

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the certificate {0}")]
    Invalid(#[from] PemError),
    #[error("the certificate is refused: {0}")]
    Refused(String),
    #[error("{MAX_UPLOADED} certificates are uploaded already; delete one first")]
    TooMany,
    #[error("{0}")]
    Unchecked(String),
    #[error("storing the certificate: {0}")]
    Store(#[from] CertStoreError),
}

impl UploadError {
    /// 400 for what the caller sent, 500 for capstan's side.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            UploadError::Invalid(_) | UploadError::Refused(_) | UploadError::TooMany
        )
    }
}

/// The certificates to serve from capstan's crt-list, and the crt-list
/// itself when HTTPS reads one.
#[derive(Debug, Clone, Default)]
pub struct TlsDesired {
    pub crt_list: Option<PathBuf>,
    pub certificates: Vec<Certificate>,
    pub warnings: Vec<Warning>,
}

/// Uploaded certificates, and what was last served.
pub struct CertificateRegistry {
    store: CertStore,
    binary: PathBuf,
    scratch: PathBuf,
    uploaded: Mutex<BTreeMap<CertName, Certificate>>,
    /// Files of the store that could not be read at startup.
    damaged: Vec<Warning>,
    /// Every certificate of the last apply, with what HAProxy served for it.
    served: Mutex<Vec<(Certificate, Option<ServedCertificate>)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CertificateRegistry {
    /// The uploaded certificates stored in `state_dir`; `binary` checks new ones.
    pub fn open(state_dir: &Path, binary: &Path) -> Self {
        let store = CertStore::new(state_dir);
        let (uploaded, damaged) = match store.load() {
            Ok(loaded) => (loaded.certificates, loaded.damaged),
            Err(error) => (BTreeMap::new(), vec![error]),
        };
        let damaged = damaged
            .into_iter()
            .map(|error| {
                tracing::error!(%error, "an uploaded certificate could not be read");
                Warning {
                    route: "certificates".into(),
                    message: format!("uploaded certificate left out: {error}"),
                }
            })
            .collect();
        if !uploaded.is_empty() {
            tracing::info!(count = uploaded.len(), "uploaded certificates in force");
        }
        Self {
            scratch: state_dir.join("tls-check"),
            store,
            binary: binary.to_path_buf(),
            uploaded: Mutex::new(uploaded),
            damaged,
            served: Mutex::new(Vec::new()),
        }
    }

    /// Whether HAProxy can load `pem`.
    pub async fn check(&self, pem: &Pem) -> Result<(), CertCheckError> {
        certs::check(&self.binary, &self.scratch, pem).await
    }

    /// Checks `bytes` (PEM rules, then HAProxy) and stores them as `name`,
    /// replacing any certificate of that name.
    pub async fn upload(&self, name: &CertName, bytes: &[u8]) -> Result<Certificate, UploadError> {
        let pem = Pem::parse(bytes)?;
        let full = {
            let uploaded = lock(&self.uploaded);
            uploaded.len() >= MAX_UPLOADED && !uploaded.contains_key(name)
        };
        if full {
            return Err(UploadError::TooMany);
        }
        match self.check(&pem).await {
            Ok(()) => {}
            Err(CertCheckError::Refused(why)) => return Err(UploadError::Refused(why)),
            Err(e @ CertCheckError::Unchecked(_)) => {
                return Err(UploadError::Unchecked(e.to_string()));
            }
        }
        let mut uploaded = lock(&self.uploaded);
        let certificate = self.store.save(name, pem)?;
        uploaded.insert(name.clone(), certificate.clone());
        Ok(certificate)
    }

    /// Deletes the uploaded certificate `name`; whether there was one.
    pub fn delete(&self, name: &CertName) -> Result<bool, CertStoreError> {
        let mut uploaded = lock(&self.uploaded);
        let removed = self.store.remove(name)?;
        Ok(uploaded.remove(name).is_some() || removed)
    }

    pub fn uploaded(&self) -> Vec<Certificate> {
        lock(&self.uploaded).values().cloned().collect()
    }

    /// Every certificate of the last apply, with what HAProxy served for it.
    pub fn served(&self) -> Vec<(Certificate, Option<ServedCertificate>)> {
        lock(&self.served).clone()
    }

    /// What status shows.
    pub fn infos(&self) -> Vec<CertificateInfo> {
        lock(&self.served)
            .iter()
            .map(|(c, served)| CertificateInfo::new(c, served.clone()))
            .collect()
    }

    pub(super) fn set_served(
        &self,
        certificates: &[Certificate],
        served: Option<&BTreeMap<PathBuf, ServedCertificate>>,
    ) {
        let list = certificates
            .iter()
            .map(|c| (c.clone(), served.and_then(|s| s.get(&c.path)).cloned()))
            .collect();
        *lock(&self.served) = list;
    }

    pub(super) fn damaged(&self) -> &[Warning] {
        &self.damaged
    }
}

/// Verdicts of `haproxy -c` on directory certificates, by content, so that
/// each file is checked once, not on every reconcile.
#[derive(Default)]
pub(super) struct Verdicts(HashMap<String, Option<String>>);

/// How many verdicts are kept before the cache starts over.
const VERDICTS_KEPT: usize = 10_000;

impl Verdicts {
    /// `None` when HAProxy loads it, else why not.
    pub(super) async fn judge(
        &mut self,
        registry: &CertificateRegistry,
        pem: &Pem,
    ) -> Option<String> {
        let key = crate::util::sha256_hex_prefix(pem.text().as_bytes(), 16);
        if let Some(verdict) = self.0.get(&key) {
            return verdict.clone();
        }
        let verdict = match registry.check(pem).await {
            Ok(()) => None,
            Err(CertCheckError::Refused(why)) => Some(why),
            // HAProxy could not be run: nothing would load; judge again later.
            Err(CertCheckError::Unchecked(_)) => return None,
        };
        if self.0.len() >= VERDICTS_KEPT {
            self.0.clear();
        }
        self.0.insert(key, verdict.clone());
        verdict
    }
}

/// Where and whether HTTPS serves `certificates` for `routes`: the crt-list
/// is read when there is a certificate in it or routes.yaml serves HTTPS with
/// its own (then the first upload needs no reload). Without
/// `defaults.https`, on 443 unless something else of routes.yaml binds it.
pub(super) fn tls_desired(
    routes: &RoutesFile,
    certificates: Vec<Certificate>,
    crt_list: PathBuf,
    mut warnings: Vec<Warning>,
) -> TlsDesired {
    let https = routes.defaults.https.as_ref();
    let own = https.is_some_and(|h| h.certificates.is_some());
    if certificates.is_empty() && !own {
        return TlsDesired {
            warnings,
            ..TlsDesired::default()
        };
    }
    if https.is_none() && implicit_port_taken(routes) {
        warnings.push(Warning {
            route: "certificates".into(),
            message: format!(
                "certificates are not served: routes.yaml declares no `defaults.https` and port {} is used by another listener; set `defaults.https.port`",
                Https::DEFAULT_PORT
            ),
        });
        return TlsDesired {
            warnings,
            ..TlsDesired::default()
        };
    }
    TlsDesired {
        crt_list: Some(crt_list),
        certificates,
        warnings,
    }
}

fn implicit_port_taken(routes: &RoutesFile) -> bool {
    let d = &routes.defaults;
    let port = Https::DEFAULT_PORT;
    d.http_port == port
        || d.stats.as_ref().is_some_and(|s| s.port == port)
        || routes
            .routes
            .iter()
            .any(|r| r.mode == Mode::Tcp && r.listen_port == Some(port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate::load;
    use crate::tls::CertSource;
    use crate::tls::pem::fixtures::pem;
    use std::sync::Arc;

    fn certificate(name: &str) -> Certificate {
        Certificate {
            name: name.parse().unwrap(),
            source: CertSource::Uploaded,
            path: PathBuf::from(format!("/s/certs/{name}.pem")),
            pem: Arc::new(Pem::parse(pem(1).as_bytes()).unwrap()),
        }
    }

    #[test]
    fn https_serves_the_crt_list_when_it_has_something_to_serve() {
        let list = PathBuf::from("/s/crt-list");
        let plain = load("r", "version: 1\n").unwrap();
        assert_eq!(
            tls_desired(&plain, vec![], list.clone(), vec![]).crt_list,
            None
        );
        let uploaded = tls_desired(&plain, vec![certificate("a")], list.clone(), vec![]);
        assert_eq!(uploaded.crt_list.as_ref(), Some(&list));
        let own = load(
            "r",
            "version: 1\ndefaults:\n  https:\n    certificates: /etc/site.pem\n",
        )
        .unwrap();
        assert_eq!(
            tls_desired(&own, vec![], list.clone(), vec![])
                .crt_list
                .as_ref(),
            Some(&list)
        );
        let port_only = load("r", "version: 1\ndefaults:\n  https:\n    port: 8443\n").unwrap();
        assert_eq!(
            tls_desired(&port_only, vec![], list.clone(), vec![]).crt_list,
            None
        );
    }

    #[test]
    fn port_443_taken_by_another_listener_is_a_warning_not_a_clash() {
        let taken = load("r", "version: 1\ndefaults:\n  http_port: 443\n").unwrap();
        let tls = tls_desired(&taken, vec![certificate("a")], PathBuf::from("/l"), vec![]);
        assert_eq!(tls.crt_list, None);
        assert!(tls.certificates.is_empty());
        assert!(
            tls.warnings[0]
                .message
                .contains("set `defaults.https.port`"),
            "{:?}",
            tls.warnings
        );
    }
}
