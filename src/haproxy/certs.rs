//! Certificates through HAProxy: whether it can load one (`haproxy -c` on
//! a probe config, no running HAProxy needed), and adding, replacing and
//! removing them in a running HAProxy through the runtime API, without a
//! reload: `new ssl cert`, `set ssl cert`, `commit ssl cert`, `add ssl
//! crt-list`, `del ssl crt-list`, `del ssl cert`.
//!
//! HAProxy keeps one certificate transaction at a time: only the reconcile
//! loop, which runs alone, sends these commands.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::admin::{AdminError, AdminSocket};
use super::process::{self, CheckError};
use crate::model::grammar;
use crate::tls::{Pem, ServedCertificate};
use crate::util::write_atomic;

/// Why HAProxy cannot load a certificate, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum CertCheckError {
    /// HAProxy's words, about this certificate.
    #[error("HAProxy cannot load it: {0}")]
    Refused(String),
    #[error("checking it with haproxy -c: {0}")]
    Unchecked(String),
}

/// Whether HAProxy can load `pem` as a certificate: `haproxy -c` on a
/// config whose only bind serves it. The files go to `scratch` (private:
/// the PEM holds a key) and are removed.
pub async fn check(binary: &Path, scratch: &Path, pem: &Pem) -> Result<(), CertCheckError> {
    let unchecked = |e: std::io::Error| CertCheckError::Unchecked(e.to_string());
    std::fs::create_dir_all(scratch).map_err(unchecked)?;
    std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o700)).map_err(unchecked)?;
    let id = crate::util::sha256_hex_prefix(pem.text().as_bytes(), 8);
    let (file, config) = (
        scratch.join(format!("check-{id}.pem")),
        scratch.join(format!("check-{id}.cfg")),
    );
    let text = format!(
        "frontend certificate-check\n    mode http\n    timeout client 1s\n    bind 127.0.0.1:1 ssl crt {}\n",
        file.display()
    );
    let written = write_atomic(&file, pem.text().as_bytes())
        .and_then(|()| write_atomic(&config, text.as_bytes()));
    let checked = match written {
        Ok(()) => process::check_config(binary, &config).await,
        Err(e) => Err(CheckError::Spawn {
            bin: binary.to_path_buf(),
            source: e,
        }),
    };
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&config);
    match checked {
        Ok(()) => Ok(()),
        Err(CheckError::Invalid { output, .. }) => {
            Err(CertCheckError::Refused(alerts(&output, &file)))
        }
        Err(e @ CheckError::Spawn { .. }) => Err(CertCheckError::Unchecked(e.to_string())),
    }
}

/// HAProxy's alerts about the certificate, without the probe's file names.
fn alerts(output: &str, file: &Path) -> String {
    let file = file.display().to_string();
    let lines: Vec<String> = output
        .lines()
        .filter(|l| {
            l.starts_with("[ALERT]") && !l.contains("Error(s) found") && !l.contains("Fatal errors")
        })
        .map(|l| {
            // `[ALERT] (pid) : config : parsing [f:3] : 'bind ...' in section 'frontend' : <what>`
            let what = l.rsplit_once(" : ").map_or(l, |(_, what)| what);
            what.replace(&format!("'{file}.key'"), "the certificate's key file")
                .replace(&format!("'{file}'"), "the certificate")
                .replace(&file, "the certificate")
        })
        .collect();
    if lines.is_empty() {
        output.to_string()
    } else {
        lines.join("; ")
    }
}

/// A path as one word of a runtime API command: the grammar of file paths
/// (no spaces, quotes or separators).
fn word(path: &Path) -> Result<String, AdminError> {
    let text = path.display().to_string();
    grammar::FILE_PATH
        .check(&text)
        .map(|()| text.clone())
        .map_err(|e| AdminError::InvalidArgument(format!("{text:?} {e}")))
}

/// Fails unless HAProxy's `answer` to `command` contains `success`.
fn expect(command: &str, answer: String, success: &str) -> Result<String, AdminError> {
    if answer.contains(success) {
        Ok(answer)
    } else {
        Err(AdminError::Refused {
            command: command.to_string(),
            message: answer.trim().replace('\n', " "),
        })
    }
}

impl AdminSocket {
    /// The certificates `crt_list` holds, in its order; `None` when HAProxy
    /// has no such crt-list (no bind uses it).
    pub async fn crt_list_paths(
        &self,
        crt_list: &Path,
    ) -> Result<Option<Vec<PathBuf>>, AdminError> {
        let answer = self
            .command(&format!("show ssl crt-list {}", word(crt_list)?))
            .await?;
        if !answer.trim_start().starts_with('#') {
            return Ok(None);
        }
        let paths = answer
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .map(PathBuf::from)
            .collect();
        Ok(Some(paths))
    }

    /// `show ssl cert <path>`: what HAProxy serves under `path`.
    pub async fn served_certificate(&self, path: &Path) -> Result<ServedCertificate, AdminError> {
        let command = format!("show ssl cert {}", word(path)?);
        let answer = self.command(&command).await?;
        let answer = expect(&command, answer, "SHA1 FingerPrint:")?;
        let field = |name: &str| {
            answer
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        Ok(ServedCertificate {
            fingerprint: field("SHA1 FingerPrint"),
            subject: field("Subject"),
            alt_names: field("Subject Alternative Name"),
            serial: field("Serial"),
            not_after: field("notAfter"),
            issuer: field("Issuer"),
        })
    }

    /// Loads `pem` as the certificate `path` and adds it to `crt_list`.
    pub async fn add_certificate(
        &self,
        crt_list: &Path,
        path: &Path,
        pem: &Pem,
    ) -> Result<(), AdminError> {
        let (list, file) = (word(crt_list)?, word(path)?);
        let command = format!("new ssl cert {file}");
        let answer = self.command(&command).await?;
        // Left over from an add that failed half-way: fill it again.
        if !answer.contains("already exists") {
            expect(&command, answer, "New empty certificate store")?;
        }
        self.load_certificate(&file, pem).await?;
        let command = format!("add ssl crt-list {list} {file}");
        let answer = self.command(&command).await?;
        expect(&command, answer, "Success!").map(drop)
    }

    /// Serves `pem` in place of the certificate `path`, wherever it is used.
    pub async fn replace_certificate(&self, path: &Path, pem: &Pem) -> Result<(), AdminError> {
        self.load_certificate(&word(path)?, pem).await
    }

    /// Takes the certificate `path` out of `crt_list` and out of HAProxy.
    pub async fn remove_certificate(&self, crt_list: &Path, path: &Path) -> Result<(), AdminError> {
        let (list, file) = (word(crt_list)?, word(path)?);
        let command = format!("del ssl crt-list {list} {file}");
        let answer = self.command(&command).await?;
        expect(&command, answer, "deleted")?;
        let command = format!("del ssl cert {file}");
        let answer = self.command(&command).await?;
        expect(&command, answer, "deleted").map(drop)
    }

    /// `set ssl cert` and `commit ssl cert`; aborts the transaction when
    /// HAProxy refuses either, so that the next one can start.
    async fn load_certificate(&self, file: &str, pem: &Pem) -> Result<(), AdminError> {
        self.abort_other_transactions().await?;
        let command = format!("set ssl cert {file}");
        let result = match self.command_with_payload(&command, pem.text()).await {
            Ok(answer) => expect(&command, answer, "Transaction "),
            Err(e) => Err(e),
        };
        let result = match result {
            Ok(_) => {
                let command = format!("commit ssl cert {file}");
                match self.command(&command).await {
                    Ok(answer) => expect(&command, answer, "Success!"),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = self.command(&format!("abort ssl cert {file}")).await;
        }
        result.map(drop)
    }

    /// Aborts a transaction a failed earlier run left open: HAProxy allows one.
    async fn abort_other_transactions(&self) -> Result<(), AdminError> {
        let listing = self.command("show ssl cert").await?;
        let mut in_transactions = false;
        for line in listing.lines() {
            match line.trim() {
                "# transaction" => in_transactions = true,
                l if l.starts_with('#') => in_transactions = false,
                l if in_transactions => {
                    if let Some(file) = l.strip_prefix('*') {
                        let file = word(Path::new(file))?;
                        self.command(&format!("abort ssl cert {file}")).await?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_say_what_is_wrong_without_the_probe_files() {
        let file = Path::new("/state/tls-check/check-ab.pem");
        let output = "[NOTICE]   (1) : haproxy version is 2.6.12\n[ALERT]    (1) : config : parsing [/state/tls-check/check-ab.cfg:4] : 'bind 127.0.0.1:1' in section 'frontend' : inconsistencies between private key and certificate loaded '/state/tls-check/check-ab.pem'.\n[ALERT]    (1) : config : Error(s) found in configuration file : /state/tls-check/check-ab.cfg\n[ALERT]    (1) : config : Fatal errors found in configuration.";
        assert_eq!(
            alerts(output, file),
            "inconsistencies between private key and certificate loaded the certificate."
        );
    }

    #[test]
    fn paths_that_are_not_one_word_are_refused() {
        for bad in ["/a b.pem", "relative.pem", "/a;b", "/a\nshow info"] {
            assert!(word(Path::new(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            word(Path::new("/s/certs/a.test.pem")).unwrap(),
            "/s/certs/a.test.pem"
        );
    }
}
