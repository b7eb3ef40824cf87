//! Uploaded certificates in `<state>/certs/`, one `<certName>.pem` each,
//! written atomically (write, fsync, rename), in a directory only capstan's
//! user can read: they hold private keys. The `.pem` suffix keeps every
//! file name apart from the `<file>.key`, `.ocsp`, `.issuer` and `.sctl`
//! files HAProxy would load next to a certificate.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CertSource, Certificate, Pem, PemError};
use crate::model::CertName;
use crate::util::write_atomic;

const SUFFIX: &str = ".pem";

/// What [`CertStore::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub certificates: BTreeMap<CertName, Certificate>,
    /// Files that are no certificate any more (a damaged disk): left out.
    pub damaged: Vec<CertStoreError>,
}

#[derive(Debug, Clone)]
pub struct CertStore {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CertStoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Corrupt { path: PathBuf, source: PemError },
}

impl CertStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("certs"),
        }
    }

    /// The file of the certificate `name`.
    pub fn path_of(&self, name: &CertName) -> PathBuf {
        self.dir.join(format!("{name}{SUFFIX}"))
    }

    /// Every stored certificate, by name, and the files that could not be
    /// read as one (each left out alone). Files capstan did not write
    /// (other names, temporary files) are left alone.
    pub fn load(&self) -> Result<Loaded, CertStoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CertStoreError::Io { path, source }
        };
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(e) => return Err(io(&self.dir)(e)),
        };
        let mut loaded = Loaded::default();
        for entry in entries {
            let entry = entry.map_err(io(&self.dir))?;
            let file_name = entry.file_name();
            let Some(name) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .and_then(|n| n.parse::<CertName>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let pem = match std::fs::read(&path) {
                Ok(bytes) => Pem::parse(&bytes).map_err(|source| CertStoreError::Corrupt {
                    path: path.clone(),
                    source,
                }),
                Err(source) => Err(io(&path)(source)),
            };
            match pem {
                Ok(pem) => {
                    loaded
                        .certificates
                        .insert(name.clone(), uploaded(name, path, pem));
                }
                Err(e) => loaded.damaged.push(e),
            }
        }
        Ok(loaded)
    }

    /// Stores `pem` as `name`, replacing any certificate of that name.
    pub fn save(&self, name: &CertName, pem: Pem) -> Result<Certificate, CertStoreError> {
        self.create_dir()?;
        let path = self.path_of(name);
        write_atomic(&path, pem.text().as_bytes()).map_err(|source| CertStoreError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(uploaded(name.clone(), path, pem))
    }

    /// Deletes the certificate `name`; whether there was one.
    pub fn remove(&self, name: &CertName) -> Result<bool, CertStoreError> {
        let path = self.path_of(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(CertStoreError::Io { path, source }),
        }
    }

    fn create_dir(&self) -> Result<(), CertStoreError> {
        let io = |source| CertStoreError::Io {
            path: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
    }
}

fn uploaded(name: CertName, path: PathBuf, pem: Pem) -> Certificate {
    Certificate {
        name,
        source: CertSource::Uploaded,
        path,
        pem: Arc::new(pem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pem::fixtures::pem;

    fn name(n: &str) -> CertName {
        n.parse().unwrap()
    }

    #[test]
    fn stored_certificates_survive_a_reopen_in_a_private_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertStore::new(dir.path());
        assert!(store.load().unwrap().certificates.is_empty());
        let a = store
            .save(&name("a.test"), Pem::parse(pem(1).as_bytes()).unwrap())
            .unwrap();
        store
            .save(&name("b.pem"), Pem::parse(pem(2).as_bytes()).unwrap())
            .unwrap();
        store
            .save(&name("a.test"), Pem::parse(pem(3).as_bytes()).unwrap())
            .unwrap();
        assert_eq!(a.path, dir.path().join("certs/a.test.pem"));
        // Not capstan's: ignored.
        std::fs::write(dir.path().join("certs/notes.txt"), "x").unwrap();
        let loaded = CertStore::new(dir.path()).load().unwrap().certificates;
        assert_eq!(
            loaded.keys().map(CertName::as_str).collect::<Vec<_>>(),
            ["a.test", "b.pem"]
        );
        assert_eq!(
            loaded[&name("a.test")].pem.text(),
            Pem::parse(pem(3).as_bytes()).unwrap().text()
        );
        let mode = std::fs::metadata(dir.path().join("certs"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(store.remove(&name("a.test")).unwrap());
        assert!(!store.remove(&name("a.test")).unwrap());
        assert_eq!(store.load().unwrap().certificates.len(), 1);
    }

    #[test]
    fn a_damaged_file_is_left_out_alone_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertStore::new(dir.path());
        store
            .save(&name("good"), Pem::parse(pem(1).as_bytes()).unwrap())
            .unwrap();
        std::fs::write(dir.path().join("certs/x.pem"), "garbage").unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.certificates.len(), 1);
        let error = loaded.damaged[0].to_string();
        assert!(
            error.contains("certs/x.pem") && error.contains("no PEM block"),
            "{error}"
        );
    }
}
