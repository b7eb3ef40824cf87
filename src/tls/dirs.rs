//! Certificates from routes.yaml's `defaults.https.certificate_dirs`: each
//! regular file (symbolic links followed; subdirectories and dot files such
//! as Kubernetes' `..data` not) whose name starts with one of the
//! directory's prefixes. What is not a certificate PEM is left out: quietly
//! when nothing says it should be one (a directory of mixed files, without
//! prefixes), with a warning when its name says it should (it matched a
//! prefix) or it is a PEM that HAProxy could not load.

use std::path::Path;
use std::sync::Arc;

use super::{CertSource, Certificate, MAX_PEM_BYTES, Pem, PemError};
use crate::model::{CertName, CertificateDir};
use crate::sources::Warning;

/// What the directories hold: certificates in directory order then file
/// name order, and why files were left out.
#[derive(Debug, Default)]
pub struct Scanned {
    pub certificates: Vec<Certificate>,
    pub warnings: Vec<Warning>,
}

/// Reads every directory of `dirs`.
pub fn scan(dirs: &[CertificateDir]) -> Scanned {
    let mut scanned = Scanned::default();
    for (index, dir) in dirs.iter().enumerate() {
        scan_one(index, dir, &mut scanned);
    }
    scanned
}

fn scan_one(index: usize, dir: &CertificateDir, scanned: &mut Scanned) {
    let field = format!("defaults.https.certificate_dirs[{index}]");
    let mut warn = |message: String| {
        scanned.warnings.push(Warning {
            route: field.clone(),
            message,
        })
    };
    let path = Path::new(&dir.path.0);
    let mut names: Vec<String> = match std::fs::read_dir(path) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(e) => {
            warn(format!(
                "{}: {e}; no certificate read from it",
                path.display()
            ));
            return;
        }
    };
    names.sort();
    let prefixed = !dir.prefixes.is_empty();
    for file_name in names {
        let lower = file_name.to_ascii_lowercase();
        let wanted = !prefixed
            || dir
                .prefixes
                .iter()
                .any(|p| lower.starts_with(&p.as_str().to_ascii_lowercase()));
        if file_name.starts_with('.') || !wanted {
            continue;
        }
        let file = path.join(&file_name);
        // Follows symbolic links: Docker secrets and Kubernetes mounts use them.
        let Ok(metadata) = std::fs::metadata(&file) else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        let pem = if metadata.len() > MAX_PEM_BYTES as u64 {
            let len = usize::try_from(metadata.len()).unwrap_or(usize::MAX);
            Err(PemError::TooLarge { len }.to_string())
        } else {
            std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|bytes| Pem::parse(&bytes).map_err(|e| e.to_string()))
        };
        let pem = match pem {
            Ok(pem) => pem,
            Err(message) => {
                if prefixed || is_pem(&file) {
                    warn(format!("{}: skipped: {message}", file.display()));
                }
                continue;
            }
        };
        // The path goes into the crt-list and runtime API commands as one word.
        match file_name.parse::<CertName>() {
            Ok(name) => scanned.certificates.push(Certificate {
                name,
                source: CertSource::Directory {
                    dir: dir.path.0.clone(),
                },
                path: file,
                pem: Arc::new(pem),
            }),
            Err(e) => warn(format!("{}: skipped: the file name {e}", file.display())),
        }
    }
}

/// Whether a file that is not a usable certificate looks like a PEM: then
/// it is probably meant to be one, and worth a warning.
fn is_pem(file: &Path) -> bool {
    let mut head = [0u8; 4096];
    let read = std::fs::File::open(file).and_then(|mut f| std::io::Read::read(&mut f, &mut head));
    read.is_ok_and(|n| head[..n].windows(11).any(|w| w == b"-----BEGIN "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FilePath;
    use crate::tls::pem::fixtures::pem;

    fn dir(path: &Path, prefixes: &[&str]) -> CertificateDir {
        CertificateDir {
            path: FilePath(path.display().to_string()),
            prefixes: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn docker_secrets_named_cert_are_read_and_other_secrets_left_alone() {
        let secrets = tempfile::tempdir().unwrap();
        let write =
            |name: &str, text: &str| std::fs::write(secrets.path().join(name), text).unwrap();
        write("cert-b.test", &pem(1));
        write("CERT_a.test", &pem(2));
        write("git-token", "ghp_secret");
        write("site.pem", &pem(3));
        write("cert-broken", "not a certificate");
        write(
            "cert-nokey",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        std::fs::create_dir(secrets.path().join("cert-dir")).unwrap();
        std::os::unix::fs::symlink(
            secrets.path().join("cert-b.test"),
            secrets.path().join("cert-link"),
        )
        .unwrap();
        let scanned = scan(&[dir(secrets.path(), &["cert-", "cert_"])]);
        let names: Vec<&str> = scanned
            .certificates
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["CERT_a.test", "cert-b.test", "cert-link"]);
        let messages: Vec<&str> = scanned
            .warnings
            .iter()
            .map(|w| w.message.as_str())
            .collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].contains("cert-broken: skipped: holds no PEM block"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("cert-nokey: skipped: holds no private key"),
            "{messages:?}"
        );
        assert_eq!(
            scanned.warnings[0].route,
            "defaults.https.certificate_dirs[0]"
        );
        assert!(!messages.iter().any(|m| m.contains("git-token")));
    }

    #[test]
    fn without_prefixes_only_broken_pems_are_worth_a_warning() {
        let certs = tempfile::tempdir().unwrap();
        std::fs::write(certs.path().join("a.pem"), pem(1)).unwrap();
        std::fs::write(certs.path().join("README"), "certificates live here").unwrap();
        std::fs::write(certs.path().join(".hidden"), pem(2)).unwrap();
        std::fs::write(
            certs.path().join("b.key"),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::write(certs.path().join("bad name.pem"), pem(3)).unwrap();
        let scanned = scan(&[
            dir(certs.path(), &[]),
            dir(&certs.path().join("missing"), &[]),
        ]);
        let names: Vec<&str> = scanned
            .certificates
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["a.pem"]);
        let messages: Vec<String> = scanned
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.route, w.message))
            .collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(
            messages[0].contains("b.key: skipped: holds no certificate"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("bad name.pem: skipped: the file name"),
            "{messages:?}"
        );
        assert!(
            messages[2].starts_with("defaults.https.certificate_dirs[1]: ")
                && messages[2].contains("missing"),
            "{messages:?}"
        );
    }
}
