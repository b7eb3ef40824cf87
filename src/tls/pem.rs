//! A certificate as HAProxy loads it: one PEM text with the certificate, its
//! chain and its private key. Checked without OpenSSL for what a file must
//! hold (blocks that decode, a certificate, one unencrypted key) and
//! rewritten to its blocks only, so that it can travel as a runtime API
//! payload (which ends at the first empty line). Whether the key matches the
//! certificate is HAProxy's to say (`haproxy::certs::check`).

use base64::Engine;
use sha1::{Digest, Sha1};

/// The largest PEM accepted: a certificate with a long chain is under 16 KiB.
pub const MAX_PEM_BYTES: usize = 256 * 1024;

/// Block labels HAProxy reads from a certificate file, besides certificates.
const KEY_LABELS: &[&str] = &["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];
const PARAMETER_LABELS: &[&str] = &["EC PARAMETERS", "DH PARAMETERS"];
const CERTIFICATE: &str = "CERTIFICATE";

/// A checked certificate PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    /// Its blocks, each line ending in `\n`: nothing outside them, no empty line.
    text: String,
    /// The `CERTIFICATE` blocks only: what may be shown.
    chain: String,
    /// SHA-1 of the first certificate's DER, uppercase hex, as HAProxy's
    /// `show ssl cert` prints it.
    fingerprint: String,
}

impl std::fmt::Debug for Pem {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Why a text is not a certificate PEM HAProxy could load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("is {len} bytes long; at most {MAX_PEM_BYTES} are accepted")]
    TooLarge { len: usize },
    #[error("is not text (PEM is ASCII)")]
    NotText,
    #[error("holds no PEM block (`-----BEGIN CERTIFICATE-----` ...)")]
    NotPem,
    #[error("line {line}: `-----BEGIN {label}-----` has no matching `-----END {label}-----`")]
    Unterminated { line: usize, label: String },
    #[error("line {line}: `{text}` outside a block started nothing")]
    Stray { line: usize, text: String },
    #[error("line {line}: the {label} block is not base64")]
    NotBase64 { line: usize, label: String },
    #[error(
        "line {line}: the private key is encrypted; HAProxy needs it unencrypted (`openssl pkey -in key.pem`)"
    )]
    Encrypted { line: usize },
    #[error(
        "line {line}: a {label} block does not belong in a certificate file (certificate, chain and key only)"
    )]
    Unexpected { line: usize, label: String },
    #[error("holds no certificate (a `CERTIFICATE` block)")]
    NoCertificate,
    #[error("holds no private key (a `PRIVATE KEY` block): concatenate certificate, chain and key")]
    NoKey,
    #[error("holds {count} private keys; a certificate file holds one")]
    SeveralKeys { count: usize },
}

impl Pem {
    /// Reads `bytes` as a certificate PEM. Text outside the blocks (such as
    /// OpenSSL's `Bag Attributes`) is dropped.
    pub fn parse(bytes: &[u8]) -> Result<Self, PemError> {
        if bytes.len() > MAX_PEM_BYTES {
            return Err(PemError::TooLarge { len: bytes.len() });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| PemError::NotText)?;
        if !text.is_ascii() || text.contains('\0') {
            return Err(PemError::NotText);
        }
        let mut out = String::with_capacity(text.len());
        let mut chain = String::new();
        let mut fingerprint = None;
        let mut keys = 0;
        for Block { line, label, body } in blocks(text)? {
            let der = base64::engine::general_purpose::STANDARD
                .decode(&body)
                .map_err(|_| PemError::NotBase64 {
                    line,
                    label: label.into(),
                })?;
            let block = block_text(label, &body);
            match label {
                CERTIFICATE => {
                    fingerprint.get_or_insert_with(|| hex::encode_upper(Sha1::digest(&der)));
                    chain.push_str(&block);
                }
                l if KEY_LABELS.contains(&l) => keys += 1,
                l if PARAMETER_LABELS.contains(&l) => {}
                "ENCRYPTED PRIVATE KEY" => return Err(PemError::Encrypted { line }),
                other => {
                    return Err(PemError::Unexpected {
                        line,
                        label: other.to_string(),
                    });
                }
            }
            out.push_str(&block);
        }
        if out.is_empty() {
            return Err(PemError::NotPem);
        }
        let fingerprint = fingerprint.ok_or(PemError::NoCertificate)?;
        match keys {
            0 => Err(PemError::NoKey),
            1 => Ok(Self {
                text: out,
                chain,
                fingerprint,
            }),
            count => Err(PemError::SeveralKeys { count }),
        }
    }

    /// The whole PEM, key included: for the file HAProxy reads and the runtime API only.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The certificates without the key: safe to show.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// SHA-1 of the certificate, as HAProxy's `show ssl cert` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// One `-----BEGIN <label>-----` ... `-----END <label>-----` block.
struct Block<'a> {
    /// Where it begins (from 1).
    line: usize,
    label: &'a str,
    /// Its base64, without line breaks.
    body: String,
}

/// The blocks of `text`, in order; lines outside them are skipped.
fn blocks(text: &str) -> Result<Vec<Block<'_>>, PemError> {
    let mut blocks = Vec::new();
    let mut open: Option<Block<'_>> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let Some(mut block) = open.take() else {
            if let Some(label) = armor(line, "BEGIN") {
                open = Some(Block {
                    line: i + 1,
                    label,
                    body: String::new(),
                });
            } else if armor(line, "END").is_some() {
                return Err(PemError::Stray {
                    line: i + 1,
                    text: line.to_string(),
                });
            }
            continue;
        };
        let (start, label) = (block.line, block.label.to_string());
        if let Some(end) = armor(line, "END") {
            if end != block.label {
                return Err(PemError::Unterminated { line: start, label });
            }
            blocks.push(block);
            continue;
        }
        if line.contains(':') {
            // RFC 1421 headers: `Proc-Type: 4,ENCRYPTED`.
            return Err(PemError::Encrypted { line: start });
        }
        if !line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return Err(PemError::NotBase64 { line: start, label });
        }
        block.body.push_str(line);
        open = Some(block);
    }
    match open {
        Some(block) => Err(PemError::Unterminated {
            line: block.line,
            label: block.label.into(),
        }),
        None => Ok(blocks),
    }
}

/// `LABEL` of `-----BEGIN LABEL-----` (`kind` BEGIN or END).
fn armor<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    let label = line
        .strip_prefix("-----")?
        .strip_prefix(kind)?
        .strip_prefix(' ')?
        .strip_suffix("-----")?;
    let plain = !label.is_empty() && label.bytes().all(|b| b.is_ascii_uppercase() || b == b' ');
    plain.then_some(label)
}

/// A block rewritten in 64-character lines.
fn block_text(label: &str, body: &str) -> String {
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

#[cfg(test)]
pub(crate) mod fixtures {
    /// A PEM shaped like a real one (the DER is not a certificate: only
    /// HAProxy checks that): a certificate, a chain certificate and a key.
    pub fn pem(seed: u8) -> String {
        use base64::Engine;
        let b64 = |n: u8| base64::engine::general_purpose::STANDARD.encode([n; 100]);
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            b64(seed),
            b64(200),
            b64(seed.wrapping_add(1)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::pem;
    use super::*;

    #[test]
    fn keeps_the_blocks_and_shows_only_the_certificates() {
        let noisy = format!(
            "Bag Attributes\n    localKeyID: 01\r\n{}\n\n",
            pem(1).replace('\n', "\r\n")
        );
        let parsed = Pem::parse(noisy.as_bytes()).unwrap();
        assert_eq!(parsed.text(), Pem::parse(pem(1).as_bytes()).unwrap().text());
        assert!(!parsed.text().contains("\n\n") && !parsed.text().contains('\r'));
        assert!(!parsed.text().contains("Bag"));
        assert_eq!(parsed.chain().matches("BEGIN CERTIFICATE").count(), 2);
        assert!(!parsed.chain().contains("PRIVATE"));
        assert!(!format!("{parsed:?}").contains("PRIVATE"));
        // SHA-1 of the first certificate's DER: 100 bytes of 0x01.
        assert_eq!(
            parsed.fingerprint(),
            hex::encode_upper(Sha1::digest([1u8; 100]))
        );
        assert_ne!(
            parsed.fingerprint(),
            Pem::parse(pem(2).as_bytes()).unwrap().fingerprint()
        );
    }

    #[test]
    fn refuses_what_haproxy_could_not_load_and_says_why() {
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let cases: Vec<(String, PemError)> = vec![
            ("hello world".into(), PemError::NotPem),
            (String::new(), PemError::NotPem),
            (key.into(), PemError::NoCertificate),
            (cert.into(), PemError::NoKey),
            (
                format!("{cert}{key}{key}"),
                PemError::SeveralKeys { count: 2 },
            ),
            (
                format!("{cert}-----BEGIN PRIVATE KEY-----\nAAAA\n"),
                PemError::Unterminated {
                    line: 4,
                    label: "PRIVATE KEY".into(),
                },
            ),
            (
                format!("{cert}-----BEGIN PRIVATE KEY-----\nAA!A\n-----END PRIVATE KEY-----\n"),
                PemError::NotBase64 {
                    line: 4,
                    label: "PRIVATE KEY".into(),
                },
            ),
            (
                format!("{cert}-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n"),
                PemError::NotBase64 {
                    line: 4,
                    label: "PRIVATE KEY".into(),
                },
            ),
            (
                format!(
                    "{cert}-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----\n"
                ),
                PemError::Encrypted { line: 4 },
            ),
            (
                format!(
                    "{cert}-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                ),
                PemError::Encrypted { line: 4 },
            ),
            (
                format!(
                    "{cert}-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n{key}"
                ),
                PemError::Unexpected {
                    line: 4,
                    label: "CERTIFICATE REQUEST".into(),
                },
            ),
            (
                format!("{cert}-----END PRIVATE KEY-----\n"),
                PemError::Stray {
                    line: 4,
                    text: "-----END PRIVATE KEY-----".into(),
                },
            ),
            ("\u{e9}".into(), PemError::NotText),
        ];
        for (text, expected) in cases {
            assert_eq!(Pem::parse(text.as_bytes()), Err(expected), "{text:?}");
        }
        assert_eq!(Pem::parse(&[0xff, 0xfe]), Err(PemError::NotText));
        let huge = vec![b'A'; MAX_PEM_BYTES + 1];
        assert_eq!(
            Pem::parse(&huge),
            Err(PemError::TooLarge {
                len: MAX_PEM_BYTES + 1
            })
        );
    }

    #[test]
    fn a_payload_never_holds_an_empty_line_or_a_command_separator() {
        let parsed = Pem::parse(pem(3).as_bytes()).unwrap();
        assert!(!parsed.text().contains("\n\n"));
        assert!(!parsed.text().contains(';'));
        assert!(
            parsed
                .text()
                .bytes()
                .all(|b| b == b'\n' || b.is_ascii_graphic() || b == b' ')
        );
    }
}
