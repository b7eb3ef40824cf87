//! Userlists read from files (`userlists: {ops: {file: ...}}`, Docker Flow
//! Proxy's `usersSecret`): each file read (bounded) on every reconcile, its
//! `user:password` entries parsed as DFP parses its `dfp_users_*` secrets
//! (one per line or comma-separated, blanks around them ignored), and
//! plaintext passwords hashed with SHA-512 crypt. The salt of each hash is
//! derived from the user, the password and a key kept in the state
//! directory, so the same file always renders the same haproxy.cfg (a fresh
//! salt per reconcile would reload HAProxy every time) and two installs never
//! share a hash.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use hmac::{Hmac, Mac};
use sha_crypt::{PasswordHasher, ShaCrypt};
use sha2::Sha256;

use crate::model::grammar;
use crate::model::{Name, RoutesFile, User, Userlist, UsersFile};

/// The users of the userlists read from files, by userlist name, their
/// passwords hashed.
pub type FileUsers = std::collections::BTreeMap<Name, Vec<User>>;

/// The largest users file capstan reads: 64 KiB (a thousand users).
pub const MAX_USERS_FILE_BYTES: u64 = 64 * 1024;

/// The key that salts password hashes, in the state directory.
const SALT_KEY_FILE: &str = "userlist-salt.key";
const SALT_KEY_BYTES: usize = 32;
/// 16 characters of crypt's base64: the longest salt SHA-512 crypt uses.
const SALT_BYTES: usize = 12;

/// Why a users file gives no users.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("{path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} is not a regular file")]
    NotAFile { path: String },
    #[error("{path} is larger than {MAX_USERS_FILE_BYTES} bytes, the most a users file may be")]
    TooLarge { path: String },
    #[error("{path} is not UTF-8 text")]
    NotText { path: String },
    /// Never quotes the entry: it may hold a password.
    #[error("{path}, line {line}: {problem}")]
    Entry {
        path: String,
        line: usize,
        problem: EntryProblem,
    },
    #[error("{path} lists no user: write `user:password`, one per line or comma-separated")]
    NoUsers { path: String },
}

/// What is wrong with one `user:password` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("an entry is not `user:password`")]
    NotAPair,
    #[error("an entry has an empty user name or password")]
    Empty,
    #[error(
        "a user name is not letters, digits, `_`, `.` and `-` (at most 63, from a letter or digit)"
    )]
    BadName,
    #[error("user `{0}` is listed twice")]
    Duplicate(Name),
    #[error(
        "the password of `{0}` is not a crypt(3) hash (`$6$...`, `$5$...`, `$2y$...`, `$y$...`), and the userlist says the passwords are hashed"
    )]
    NotAHash(Name),
    #[error("the password of `{0}` holds a control character")]
    ControlCharacter(Name),
}

/// A userlist whose file gives no users: the whole reconcile stops there.
#[derive(Debug, thiserror::Error)]
pub enum UserlistError {
    #[error("userlist `{list}`: {source}")]
    File {
        list: Name,
        #[source]
        source: UsersFileError,
    },
    #[error("the key that salts password hashes, {path}: {source}")]
    SaltKey { path: PathBuf, source: io::Error },
}

/// One entry of a users file: a plaintext password, or a crypt(3) hash
/// when the userlist says `hashed: true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Name,
    pub password: String,
}

/// Reads and parses a users file.
pub fn read_entries(users: &UsersFile) -> Result<Vec<Entry>, UsersFileError> {
    let path = users.file.0.clone();
    let read = |source| UsersFileError::Read {
        path: path.clone(),
        source,
    };
    // A FIFO or a device would block or never end.
    if !fs::metadata(&path).map_err(read)?.is_file() {
        return Err(UsersFileError::NotAFile { path });
    }
    let mut bytes = Vec::new();
    File::open(&path)
        .map_err(read)?
        .take(MAX_USERS_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_USERS_FILE_BYTES {
        return Err(UsersFileError::TooLarge { path });
    }
    let text =
        String::from_utf8(bytes).map_err(|_| UsersFileError::NotText { path: path.clone() })?;
    let entries =
        parse_entries(&text, users.hashed).map_err(|(line, problem)| UsersFileError::Entry {
            path: path.clone(),
            line,
            problem,
        })?;
    if entries.is_empty() {
        return Err(UsersFileError::NoUsers { path });
    }
    Ok(entries)
}

/// `user:password` entries separated by newlines or commas, as Docker Flow
/// Proxy reads them; blank entries are skipped. A bad entry is an error
/// with its line number (from 1).
fn parse_entries(text: &str, hashed: bool) -> Result<Vec<Entry>, (usize, EntryProblem)> {
    let mut entries: Vec<Entry> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let at = |problem| (index + 1, problem);
        for item in line.split(',') {
            let item = item.trim_matches([' ', '\t', '\r']);
            if item.is_empty() {
                continue;
            }
            let (name, password) = item.split_once(':').ok_or(at(EntryProblem::NotAPair))?;
            let (name, password) = (
                name.trim_matches([' ', '\t']),
                password.trim_matches([' ', '\t']),
            );
            if name.is_empty() || password.is_empty() {
                return Err(at(EntryProblem::Empty));
            }
            let name: Name = name.parse().map_err(|_| at(EntryProblem::BadName))?;
            if entries.iter().any(|e| e.name == name) {
                return Err(at(EntryProblem::Duplicate(name)));
            }
            if password.chars().any(char::is_control) {
                return Err(at(EntryProblem::ControlCharacter(name)));
            }
            if hashed && grammar::PASSWORD_HASH.check(password).is_err() {
                return Err(at(EntryProblem::NotAHash(name)));
            }
            entries.push(Entry {
                name,
                password: password.to_string(),
            });
        }
    }
    Ok(entries)
}

/// Reads the userlists that are files, hashing plaintext passwords the same
/// way every time for the same user, password and state directory.
pub struct UserlistFiles {
    key_file: PathBuf,
    state: Mutex<HashState>,
}

#[derive(Default)]
struct HashState {
    /// Loaded on first use: a table without files needs no key.
    key: Option<[u8; SALT_KEY_BYTES]>,
    /// Hashes by the HMAC of (userlist, user, password), so that an
    /// unchanged file costs no hashing; only the last reconcile's are kept.
    cache: HashMap<[u8; 32], String>,
}

impl UserlistFiles {
    /// Plaintext passwords are salted with the key in `state_dir` (made on first use).
    pub fn new(state_dir: &Path) -> Self {
        Self {
            key_file: state_dir.join(SALT_KEY_FILE),
            state: Mutex::new(HashState::default()),
        }
    }

    /// The users of every userlist of `routes` that is a file.
    pub fn read(&self, routes: &RoutesFile) -> Result<FileUsers, UserlistError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut used = HashMap::new();
        let mut lists = FileUsers::new();
        for (list, userlist) in &routes.userlists {
            let Userlist::File(file) = userlist else {
                continue;
            };
            let entries = read_entries(file).map_err(|source| UserlistError::File {
                list: list.clone(),
                source,
            })?;
            let mut users = Vec::with_capacity(entries.len());
            for entry in entries {
                let hash = if file.hashed {
                    entry.password
                } else {
                    let key = match state.key {
                        Some(key) => key,
                        None => *state.key.insert(self.load_key()?),
                    };
                    let id = salt_source(&key, list, &entry.name, &entry.password);
                    let hash = state
                        .cache
                        .remove(&id)
                        .unwrap_or_else(|| sha512_crypt(&entry.password, &id[..SALT_BYTES]));
                    used.insert(id, hash.clone());
                    hash
                };
                users.push(
                    User::new(entry.name, &hash).expect("checked or made as a crypt(3) hash"),
                );
            }
            lists.insert(list.clone(), users);
        }
        state.cache = used;
        Ok(lists)
    }

    /// The key, made when there is none yet. A key that is not
    /// [`SALT_KEY_BYTES`] long is an error: replacing it silently would
    /// change every hash (one reload, and a surprise).
    fn load_key(&self) -> Result<[u8; SALT_KEY_BYTES], UserlistError> {
        let error = |source| UserlistError::SaltKey {
            path: self.key_file.clone(),
            source,
        };
        match fs::read(&self.key_file) {
            Ok(bytes) => bytes.try_into().map_err(|_| {
                error(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not {SALT_KEY_BYTES} bytes; delete it to make a new one"),
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.make_key().map_err(error),
            Err(e) => Err(error(e)),
        }
    }

    fn make_key(&self) -> io::Result<[u8; SALT_KEY_BYTES]> {
        let mut key = [0u8; SALT_KEY_BYTES];
        File::open("/dev/urandom")?.read_exact(&mut key)?;
        // Readable by capstan alone from the start, then renamed into place whole.
        let tmp = self
            .key_file
            .with_extension(format!("tmp-{}", std::process::id()));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&key)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.key_file)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map(|()| key)
    }
}

/// HMAC-SHA256 over (userlist, user, password) under the install's key:
/// the hash's salt (its first bytes) and its cache key. Neither names nor
/// passwords hold NUL, so the fields cannot run into each other.
fn salt_source(key: &[u8], list: &Name, user: &Name, password: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for field in [list.as_str(), user.as_str(), password] {
        mac.update(field.as_bytes());
        mac.update(b"\0");
    }
    mac.finalize().into_bytes().into()
}

fn sha512_crypt(password: &str, salt: &[u8]) -> String {
    ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), salt)
        .expect("SHA-512 crypt hashes any password with a 12-byte salt")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FilePath;
    use sha_crypt::PasswordVerifier;

    fn name(s: &str) -> Name {
        s.parse().unwrap()
    }

    #[test]
    fn entries_are_lines_or_commas_as_dfp_reads_them() {
        let entries = parse_entries("admin:s3cr:et, bob : pw2\n\n\tcarol:x,\r\n", false).unwrap();
        let pairs: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.password.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("admin", "s3cr:et"), ("bob", "pw2"), ("carol", "x")]
        );
    }

    #[test]
    fn bad_entries_name_their_line_never_the_password() {
        for (text, hashed, expected) in [
            ("admin:pw\nhunter2\n", false, (2, EntryProblem::NotAPair)),
            ("admin:\n", false, (1, EntryProblem::Empty)),
            (":pw\n", false, (1, EntryProblem::Empty)),
            ("ad min:pw\n", false, (1, EntryProblem::BadName)),
            (
                "a:x\nb:y,a:z\n",
                false,
                (2, EntryProblem::Duplicate(name("a"))),
            ),
            (
                "a:pw\u{7}x\n",
                false,
                (1, EntryProblem::ControlCharacter(name("a"))),
            ),
            ("a:plain\n", true, (1, EntryProblem::NotAHash(name("a")))),
        ] {
            let error = parse_entries(text, hashed).unwrap_err();
            assert_eq!(error, expected, "{text:?}");
            assert!(!error.1.to_string().contains("hunter2"));
        }
        assert!(parse_entries("a:$6$salt$hash\n", true).is_ok());
    }

    #[test]
    fn plaintext_is_hashed_the_same_way_every_time_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users");
        fs::write(&users, "admin:s3cret\nbob:pw\n").unwrap();
        let mut routes = RoutesFile::empty();
        routes.userlists.insert(
            name("ops"),
            Userlist::File(UsersFile {
                file: FilePath(users.display().to_string()),
                hashed: false,
            }),
        );
        let read = |state: &Path| UserlistFiles::new(state).read(&routes).unwrap();
        let first = read(dir.path());
        let admin = &first[&name("ops")][0];
        assert!(admin.password_hash.starts_with("$6$"), "{admin:?}");
        assert!(!admin.password_hash.contains("s3cret"));
        ShaCrypt::SHA512
            .verify_password(b"s3cret", admin.password_hash.as_str())
            .expect("the hash verifies");
        // Another reconcile, another process on the same state: the same hashes.
        assert_eq!(read(dir.path()), first);
        let files = UserlistFiles::new(dir.path());
        assert_eq!(files.read(&routes).unwrap(), files.read(&routes).unwrap());
        // Another install salts differently.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(read(other.path())[&name("ops")][0], *admin);
        let key = dir.path().join(SALT_KEY_FILE);
        let mode = fs::metadata(&key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn unreadable_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = |path: &Path| UsersFile {
            file: FilePath(path.display().to_string()),
            hashed: false,
        };
        let missing = read_entries(&file(&dir.path().join("nope"))).unwrap_err();
        assert!(matches!(missing, UsersFileError::Read { .. }), "{missing}");
        // A directory, or a FIFO that would block the reconcile forever.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()));
        for path in [dir.path(), fifo.as_path()] {
            assert!(matches!(
                read_entries(&file(path)).unwrap_err(),
                UsersFileError::NotAFile { .. }
            ));
        }
        let big = dir.path().join("big");
        fs::write(&big, "a:b\n".repeat(20_000)).unwrap();
        assert!(matches!(
            read_entries(&file(&big)).unwrap_err(),
            UsersFileError::TooLarge { .. }
        ));
        let empty = dir.path().join("empty");
        fs::write(&empty, "\n , \n").unwrap();
        assert!(matches!(
            read_entries(&file(&empty)).unwrap_err(),
            UsersFileError::NoUsers { .. }
        ));
        let binary = dir.path().join("binary");
        fs::write(&binary, [0xff, 0xfe, b':', b'x']).unwrap();
        assert!(matches!(
            read_entries(&file(&binary)).unwrap_err(),
            UsersFileError::NotText { .. }
        ));
    }
}
