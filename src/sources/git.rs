//! routes.yaml as it stands at a git revision: in a local repository (the
//! working tree included) for `capstan diff`, or in a remote repository
//! mirrored into a cache directory for the reconciler.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

/// The longest commit summary or author name status shows, in characters.
const DETAIL_CHARS: usize = 200;

/// A git failure, with what capstan was doing.
///
/// Messages never contain a token or a passphrase: everything that comes
/// from a remote operation is redacted first.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The path is not inside a git repository.
    #[error("{path}: not a git repository (or any parent): {source}")]
    NotARepository {
        /// The path that was searched from.
        path: PathBuf,
        /// What libgit2 reported.
        source: git2::Error,
    },
    /// The revision does not name a commit.
    #[error("revision `{rev}` not found: {source}")]
    UnknownRevision {
        /// The revision as the user named it.
        rev: String,
        /// What libgit2 reported.
        source: git2::Error,
    },
    /// A file could not be read at a revision.
    #[error("{file} at {rev}: {source}")]
    Unreadable {
        /// The revision (or commit id) the file was read at.
        rev: String,
        /// The path of the file inside the repository.
        file: String,
        /// What went wrong.
        source: ReadError,
    },
    /// The cache directory of a remote cannot be created, opened or used.
    #[error("cache directory {path}: {source}")]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// What went wrong.
        source: CacheError,
    },
    /// The cache directory already mirrors another remote.
    #[error(
        "cache directory {path} mirrors {cached}, not {url}: \
         remove it or use another cache directory"
    )]
    CacheUrlMismatch {
        /// The cache directory.
        path: PathBuf,
        /// The (redacted) URL the cache was created for.
        cached: String,
        /// The (redacted) URL that was asked for.
        url: String,
    },
    /// The authentication does not fit the URL (a token over plain http, an
    /// ssh key for an https URL, a missing key file, ...).
    #[error("{url}: {reason}")]
    UnsupportedAuth {
        /// The (redacted) URL.
        url: String,
        /// Why the combination is refused.
        reason: String,
    },
    /// The branch name is not a valid git branch name.
    #[error("`{branch}` is not a valid branch name")]
    InvalidBranch {
        /// The branch name as given.
        branch: String,
    },
    /// The remote has no such branch.
    #[error("branch `{branch}` not found on {url}")]
    BranchNotFound {
        /// The (redacted) URL of the remote.
        url: String,
        /// The branch that was asked for.
        branch: String,
    },
    /// The ssh server's host key is unknown or does not match known_hosts.
    #[error("ssh host key check failed for {host}: {reason}")]
    HostKey {
        /// The host as it is looked up in known_hosts (`host` or `[host]:port`).
        host: String,
        /// Why the key was rejected.
        reason: String,
    },
    /// The fetch did not finish within its deadline.
    #[error("fetching `{branch}` from {url}: gave up after {seconds}s")]
    Timeout {
        /// The (redacted) URL of the remote.
        url: String,
        /// The branch that was being fetched.
        branch: String,
        /// The deadline, in seconds.
        seconds: u64,
    },
    /// Any other failure of a fetch: unreachable remote, rejected
    /// credentials, protocol error.
    #[error("fetching `{branch}` from {url}: {message}")]
    Fetch {
        /// The (redacted) URL of the remote.
        url: String,
        /// The branch that was being fetched.
        branch: String,
        /// What went wrong (redacted).
        message: String,
    },
}

/// Why a file could not be read at a revision.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// libgit2 could not find or read the commit, tree or blob.
    #[error("{}", .0.message())]
    Git(#[source] git2::Error),
    /// The working tree's file could not be read.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// Refused from its size, before it is loaded.
    #[error("{}", .0.message)]
    TooLarge(Box<crate::model::diagnostics::Diagnostic>),
    #[error("not UTF-8 text")]
    NotUtf8(#[source] std::string::FromUtf8Error),
    #[error("a bare repository has no working tree")]
    NoWorkingTree,
}

/// Why a cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{0}")]
    Create(#[source] std::io::Error),
    /// What libgit2 said, redacted: it may quote the URL and its token, so
    /// only the redacted text is kept.
    #[error("{0}")]
    Git(String),
    #[error("neither empty nor a bare git repository; refusing to use it")]
    NotARepository,
}

/// A resolved revision: what the user named and the commit it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// What the user named: `main`, `HEAD~1`, `abc1234`, or `working tree`.
    pub name: String,
    /// Full commit id; `None` for the working tree.
    pub commit: Option<String>,
}

impl Revision {
    /// The working tree of a local repository: files as they are on disk.
    pub fn working_tree() -> Self {
        Self {
            name: "working tree".into(),
            commit: None,
        }
    }

    /// `main (1a2b3c4)`, or the bare name when it is the commit id itself.
    pub fn label(&self) -> String {
        match &self.commit {
            Some(commit) if !commit.starts_with(&self.name) => {
                format!("{} ({})", self.name, &commit[..7.min(commit.len())])
            }
            Some(commit) => commit[..7.min(commit.len())].to_string(),
            None => self.name.clone(),
        }
    }
}

/// A repository on disk, for the offline diff.
pub struct LocalRepo {
    repo: git2::Repository,
}

impl LocalRepo {
    /// Opens the repository containing `path`.
    pub fn discover(path: &Path) -> Result<Self, GitError> {
        git2::Repository::discover(path)
            .map(|repo| Self { repo })
            .map_err(|source| GitError::NotARepository {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Resolves `rev` (a branch, tag, `HEAD~1`, a commit id) to a commit.
    pub fn resolve(&self, rev: &str) -> Result<Revision, GitError> {
        let commit = self
            .repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|source| GitError::UnknownRevision {
                rev: rev.to_string(),
                source,
            })?;
        Ok(Revision {
            name: rev.to_string(),
            commit: Some(commit.id().to_string()),
        })
    }

    /// The text of `file` (relative to the repository root) at a resolved
    /// revision, or `None` when the file does not exist there.
    pub fn read(&self, revision: &Revision, file: &str) -> Result<Option<String>, GitError> {
        let Some(commit) = &revision.commit else {
            let unreadable = |source| GitError::Unreadable {
                rev: revision.name.clone(),
                file: file.to_string(),
                source,
            };
            let workdir = self
                .repo
                .workdir()
                .ok_or_else(|| unreadable(ReadError::NoWorkingTree))?;
            return match std::fs::read_to_string(workdir.join(file)) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(unreadable(ReadError::Io(e))),
            };
        };
        read_at_commit(&self.repo, &revision.name, commit, file)
    }
}

/// The text of `file` in the tree of `commit`, read from the object database
/// (no checkout); `None` when the file does not exist at that commit.
/// `rev_name` names the revision in errors.
fn read_at_commit(
    repo: &git2::Repository,
    rev_name: &str,
    commit: &str,
    file: &str,
) -> Result<Option<String>, GitError> {
    let unreadable = |source| GitError::Unreadable {
        rev: rev_name.to_string(),
        file: file.to_string(),
        source,
    };
    let git = |e| unreadable(ReadError::Git(e));
    let oid = git2::Oid::from_str(commit).map_err(git)?;
    let tree = repo.find_commit(oid).and_then(|c| c.tree()).map_err(git)?;
    let entry = match tree.get_path(Path::new(file)) {
        Ok(entry) => entry,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(git(e)),
    };
    // The size from the object header, before the blob is loaded: a huge
    // file is refused without holding it in memory.
    if let Ok((size, _)) = repo.odb().and_then(|odb| odb.read_header(entry.id()))
        && let Some(too_large) = crate::model::validate::size_problem(file, size as u64)
    {
        return Err(unreadable(ReadError::TooLarge(Box::new(too_large))));
    }
    let blob = entry
        .to_object(repo)
        .and_then(|o| o.peel_to_blob())
        .map_err(git)?;
    String::from_utf8(blob.content().to_vec())
        .map(Some)
        .map_err(|e| unreadable(ReadError::NotUtf8(e)))
}

/// The user name GitHub expects with an installation or personal token.
pub const GITHUB_TOKEN_USERNAME: &str = "x-access-token";
/// The user name GitLab expects with a personal, project or deploy token.
pub const GITLAB_TOKEN_USERNAME: &str = "oauth2";
/// The ssh user name of GitHub, GitLab and most git hosts.
pub const SSH_USERNAME: &str = "git";

/// How to authenticate to a remote.
///
/// `Debug` never shows the token or the passphrase.
#[derive(Clone, PartialEq, Eq)]
pub enum GitAuth {
    /// No credentials: public https repositories, `file://` and local paths.
    None,
    /// Basic authentication with a token, over https only.
    Token {
        /// [`GITHUB_TOKEN_USERNAME`] for GitHub, [`GITLAB_TOKEN_USERNAME`]
        /// for GitLab.
        username: String,
        /// The token, sent as the password.
        token: String,
    },
    /// An ssh key, for `ssh://` and scp-like (`git@host:path`) URLs. The
    /// server's host key must be listed in `known_hosts`.
    SshKey {
        /// The ssh user, used when the URL names none; [`SSH_USERNAME`]
        /// usually.
        username: String,
        /// The private key file (OpenSSH or PEM format).
        private_key: PathBuf,
        /// The passphrase of the private key, if it has one.
        passphrase: Option<String>,
        /// An OpenSSH known_hosts file, host names plain or hashed.
        known_hosts: PathBuf,
    },
}

impl GitAuth {
    /// An ssh key without passphrase, for user [`SSH_USERNAME`].
    pub fn ssh_key(private_key: impl Into<PathBuf>, known_hosts: impl Into<PathBuf>) -> Self {
        Self::SshKey {
            username: SSH_USERNAME.into(),
            private_key: private_key.into(),
            passphrase: None,
            known_hosts: known_hosts.into(),
        }
    }

    /// The secrets to scrub from every message.
    fn secrets(&self) -> Vec<&str> {
        match self {
            Self::None => vec![],
            Self::Token { token, .. } => vec![token],
            Self::SshKey { passphrase, .. } => passphrase.iter().map(String::as_str).collect(),
        }
    }

    /// `text` with the secrets of this authentication and the passwords of
    /// any URL in it replaced by `***`.
    fn redact(&self, text: &str) -> String {
        let mut text = redact_url_userinfo(text);
        for secret in self.secrets() {
            if !secret.is_empty() {
                text = text.replace(secret, "***");
            }
        }
        text
    }
}

impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Token { username, .. } => f
                .debug_struct("Token")
                .field("username", username)
                .field("token", &"***")
                .finish(),
            Self::SshKey {
                username,
                private_key,
                passphrase,
                known_hosts,
            } => f
                .debug_struct("SshKey")
                .field("username", username)
                .field("private_key", private_key)
                .field("passphrase", &passphrase.as_ref().map(|_| "***"))
                .field("known_hosts", known_hosts)
                .finish(),
        }
    }
}

/// `text` with the credentials of every `scheme://user:password@` in it
/// hidden: the password becomes `***`, and so does a lone http(s) user name
/// (`https://TOKEN@host` is how tokens are often written).
fn redact_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |i| i + 1);
        let scheme = rest[scheme_start..at].to_ascii_lowercase();
        let authority_start = at + 3;
        let authority_len = rest[authority_start..]
            .find(|c: char| c == '/' || c.is_whitespace() || "'\"<>`".contains(c))
            .unwrap_or(rest.len() - authority_start);
        let authority = &rest[authority_start..authority_start + authority_len];
        out.push_str(&rest[..authority_start]);
        match authority.rfind('@') {
            Some(userinfo_len) => {
                let userinfo = &authority[..userinfo_len];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None if scheme.starts_with("http") => out.push_str("***"),
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[userinfo_len..]);
            }
            None => out.push_str(authority),
        }
        rest = &rest[authority_start + authority_len..];
    }
    out.push_str(rest);
    out
}

/// How a URL is fetched, as far as authentication is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    Https,
    /// Plain http: no token may be sent over it.
    Http,
    Ssh(SshEndpoint),
    /// `file://`, local paths, `git://`.
    Other,
}

/// The host and port an ssh URL connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SshEndpoint {
    host: String,
    port: u16,
}

impl SshEndpoint {
    /// The host as OpenSSH writes it in known_hosts: `host` on port 22,
    /// `[host]:port` otherwise.
    fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

impl Transport {
    fn of(url: &str) -> Self {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Self::Https;
        }
        if lower.starts_with("http://") {
            return Self::Http;
        }
        for scheme in ["ssh://", "ssh+git://", "git+ssh://"] {
            if lower.starts_with(scheme) {
                let rest = &url[scheme.len()..];
                let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
                let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                return split_host_port(host_port)
                    .map(Self::Ssh)
                    .unwrap_or(Self::Other);
            }
        }
        if url.contains("://") {
            return Self::Other;
        }
        match scp_host(url) {
            Some(host) => Self::Ssh(SshEndpoint {
                host: host.to_string(),
                port: 22,
            }),
            None => Self::Other,
        }
    }
}

/// The host of an scp-like URL, `[user@]host:path` or `[user@][v6]:path`,
/// where no `/` comes before the `:`; `None` for anything else.
fn scp_host(url: &str) -> Option<&str> {
    let after_user = match url.split_once('@') {
        Some((user, rest)) if !user.contains(['/', ':']) => rest,
        _ => url,
    };
    let host = match after_user.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once("]:")?.0,
        None => after_user.split_once(':')?.0,
    };
    (!host.is_empty() && !host.contains('/')).then_some(host)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(text: &str) -> Option<SshEndpoint> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    let port = match port {
        None | Some("") => 22,
        Some(port) => port.parse().ok()?,
    };
    (!host.is_empty()).then(|| SshEndpoint {
        host: host.to_string(),
        port,
    })
}

/// How long libgit2 waits for a TCP connection to a remote.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long libgit2 waits on a single read or write of a remote connection
/// (http(s) sockets and ssh sessions).
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// The default bound on a whole fetch, checked whenever libgit2 reports
/// progress (see [`RemoteRepo::with_fetch_deadline`]).
pub const FETCH_DEADLINE: Duration = Duration::from_secs(300);

/// Sets libgit2's process-wide socket timeouts, once.
fn set_network_timeouts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: these write two plain ints read by libgit2 when it opens a
        // socket or an ssh session. capstan's only network operation is
        // `RemoteRepo::fetch`, which needs a `RemoteRepo`, which can only be
        // made after this `Once` has completed: every read happens after
        // the write. The calls cannot fail for non-negative values.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis(CONNECT_TIMEOUT));
            let _ = git2::opts::set_server_timeout_in_milliseconds(millis(IO_TIMEOUT));
        }
    });
}

/// The name of the remote inside a cache repository.
const REMOTE: &str = "origin";

/// A remote repository mirrored into a bare repository in a cache directory.
///
/// All methods block (libgit2 is synchronous, and [`fetch`](Self::fetch)
/// does network I/O): async callers run them in
/// `tokio::task::spawn_blocking`. A `RemoteRepo` is `Send` but not `Sync`;
/// move it into the blocking task, or share it behind a `Mutex`.
pub struct RemoteRepo {
    repo: git2::Repository,
    url: String,
    auth: GitAuth,
    ssh: Option<SshEndpoint>,
    deadline: Duration,
}

impl RemoteRepo {
    /// Opens the mirror of `url` in `cache_dir`: creates a bare repository
    /// there when the directory is missing or empty, or reuses the one a
    /// previous run left (nothing is fetched yet). Refuses a cache directory
    /// that mirrors another URL, a non-empty directory that is not a bare
    /// repository, and authentication that does not fit the URL: a token
    /// needs `https://`, an ssh key needs an ssh URL, and its key and
    /// known_hosts files must be readable.
    pub fn open(url: &str, cache_dir: &Path, auth: GitAuth) -> Result<Self, GitError> {
        let transport = Transport::of(url);
        let refuse = |reason: &str| GitError::UnsupportedAuth {
            url: auth.redact(url),
            reason: reason.to_string(),
        };
        let ssh = match (&auth, transport) {
            (GitAuth::Token { .. }, Transport::Https) => None,
            (GitAuth::Token { .. }, Transport::Http) => {
                return Err(refuse(
                    "refusing to send a token over plain http; use https",
                ));
            }
            (GitAuth::Token { .. }, _) => {
                return Err(refuse("a token works with https:// URLs only"));
            }
            (
                GitAuth::SshKey {
                    private_key,
                    known_hosts,
                    ..
                },
                Transport::Ssh(endpoint),
            ) => {
                if !private_key.is_file() {
                    return Err(refuse(&format!(
                        "ssh private key {} not found",
                        private_key.display()
                    )));
                }
                KnownHosts::load(known_hosts).map_err(|e| refuse(&e))?;
                Some(endpoint)
            }
            (GitAuth::SshKey { .. }, _) => {
                return Err(refuse(
                    "an ssh key works with ssh://host/path and user@host:path URLs only",
                ));
            }
            (GitAuth::None, Transport::Ssh(endpoint)) => Some(endpoint),
            (GitAuth::None, _) => None,
        };
        Self::open_cache(url, cache_dir, auth, ssh)
    }

    /// Opens or creates the cache repository, without checking `auth`
    /// against the URL.
    fn open_cache(
        url: &str,
        cache_dir: &Path,
        auth: GitAuth,
        ssh: Option<SshEndpoint>,
    ) -> Result<Self, GitError> {
        set_network_timeouts();
        let cache_error = |source| GitError::Cache {
            path: cache_dir.to_path_buf(),
            source,
        };
        let git = |e: git2::Error| cache_error(CacheError::Git(auth.redact(e.message())));
        let repo = match git2::Repository::open_bare(cache_dir) {
            Ok(repo) => repo,
            Err(e) if e.code() == git2::ErrorCode::NotFound && is_missing_or_empty(cache_dir) => {
                std::fs::create_dir_all(cache_dir)
                    .map_err(|e| cache_error(CacheError::Create(e)))?;
                git2::Repository::init_bare(cache_dir).map_err(git)?
            }
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                return Err(cache_error(CacheError::NotARepository));
            }
            Err(e) => return Err(git(e)),
        };
        match repo.find_remote(REMOTE) {
            Ok(remote) if remote.url().ok() == Some(url) => {}
            Ok(remote) => {
                return Err(GitError::CacheUrlMismatch {
                    path: cache_dir.to_path_buf(),
                    cached: auth.redact(remote.url().unwrap_or("<not UTF-8>")),
                    url: auth.redact(url),
                });
            }
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                repo.remote(REMOTE, url).map_err(git)?;
            }
            Err(e) => return Err(git(e)),
        }
        Ok(Self {
            repo,
            url: url.to_string(),
            auth,
            ssh,
            deadline: FETCH_DEADLINE,
        })
    }

    /// Replaces the bound on a whole [`fetch`](Self::fetch) (default
    /// [`FETCH_DEADLINE`]). It is checked whenever libgit2 reports progress
    /// or asks for credentials; a connection that goes silent is cut by
    /// [`IO_TIMEOUT`] instead.
    pub fn with_fetch_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The remote's URL with any credentials in it replaced by `***`, for
    /// logs.
    pub fn url(&self) -> String {
        self.auth.redact(&self.url)
    }

    /// Fetches `refs/heads/<branch>` from the remote into
    /// `refs/remotes/origin/<branch>` (forced: a rewritten branch is
    /// followed) and returns the commit the remote advertised for it.
    ///
    /// Blocks on the network: bounded by [`CONNECT_TIMEOUT`], [`IO_TIMEOUT`]
    /// and the fetch deadline. Call it from `tokio::task::spawn_blocking`.
    pub fn fetch(&self, branch: &str) -> Result<Revision, GitError> {
        let remote_ref = format!("refs/heads/{branch}");
        if branch.starts_with('-') || !git2::Reference::is_valid_name(&remote_ref) {
            return Err(GitError::InvalidBranch {
                branch: branch.to_string(),
            });
        }
        let fetch_error = |message: &str| GitError::Fetch {
            url: self.url(),
            branch: branch.to_string(),
            message: self.auth.redact(message),
        };
        let context = FetchContext::new(self.deadline);
        let mut options = git2::FetchOptions::new();
        options
            .remote_callbacks(self.callbacks(&context))
            .download_tags(git2::AutotagOption::None)
            .update_fetchhead(false);
        let mut remote = self
            .repo
            .find_remote(REMOTE)
            .map_err(|e| fetch_error(e.message()))?;
        let refspec = format!("+{remote_ref}:refs/remotes/{REMOTE}/{branch}");
        if let Err(e) = remote.fetch(&[refspec], Some(&mut options), None) {
            return Err(self.failure(branch, &context, &e));
        }
        let advertised = remote
            .list()
            .map_err(|e| fetch_error(e.message()))?
            .iter()
            .find(|head| head.name() == remote_ref)
            .map(|head| head.oid());
        let Some(oid) = advertised else {
            return Err(GitError::BranchNotFound {
                url: self.url(),
                branch: branch.to_string(),
            });
        };
        let commit = self
            .repo
            .find_object(oid, None)
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| fetch_error(e.message()))?;
        Ok(Revision {
            name: branch.to_string(),
            commit: Some(commit.id().to_string()),
        })
    }

    /// The text of `file` (relative to the repository root) at `commit` (a
    /// full commit id, as returned by [`fetch`](Self::fetch)), read from
    /// the cache without a checkout; `None` when the file does not exist
    /// at that commit.
    pub fn read_file(&self, commit: &str, file: &str) -> Result<Option<String>, GitError> {
        read_at_commit(&self.repo, commit, commit, file)
    }

    /// The summary, author and time of `commit` (a full commit id), from
    /// the cache; `None` when it is not there. Status shows them.
    pub fn commit_details(&self, commit: &str) -> Option<super::CommitDetails> {
        let oid = git2::Oid::from_str(commit).ok()?;
        let commit = self.repo.find_commit(oid).ok()?;
        let seconds = u64::try_from(commit.time().seconds()).unwrap_or(0);
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        // Whoever can push writes these: status and the dashboard show at most a line of each.
        let line = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            match text.char_indices().nth(DETAIL_CHARS) {
                Some((end, _)) => format!("{}…", &text[..end]),
                None => text.into_owned(),
            }
        };
        Some(super::CommitDetails {
            summary: line(commit.summary_bytes().unwrap_or_default()),
            author: line(commit.author().name_bytes()),
            at: humantime::format_rfc3339_seconds(at).to_string(),
        })
    }

    /// The callbacks of one fetch: credentials, host key check, deadline.
    fn callbacks<'a>(&'a self, context: &'a FetchContext) -> git2::RemoteCallbacks<'a> {
        let mut callbacks = git2::RemoteCallbacks::new();
        callbacks.credentials(move |_url, username_from_url, allowed| {
            if context.expired() {
                return Err(git2::Error::from_str("fetch deadline passed"));
            }
            credentials(
                &self.auth,
                &mut context.offered.borrow_mut(),
                username_from_url,
                allowed,
            )
        });
        callbacks.transfer_progress(move |_| !context.expired());
        callbacks.sideband_progress(move |_| !context.expired());
        if let (GitAuth::SshKey { known_hosts, .. }, Some(endpoint)) = (&self.auth, &self.ssh) {
            callbacks.certificate_check(move |cert, hostname| {
                let Some(hostkey) = cert.as_hostkey() else {
                    return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
                };
                let presented = match (hostkey.hostkey(), hostkey.hash_sha256()) {
                    (Some(raw), _) => PresentedKey::Raw(raw),
                    (None, Some(hash)) => PresentedKey::Sha256(hash),
                    (None, None) => PresentedKey::Unavailable,
                };
                let endpoint = SshEndpoint {
                    host: hostname.to_string(),
                    port: endpoint.port,
                };
                let verdict = KnownHosts::load(known_hosts)
                    .and_then(|hosts| hosts.check(&endpoint, &presented));
                match verdict {
                    Ok(()) => Ok(git2::CertificateCheckStatus::CertificateOk),
                    Err(reason) => {
                        let error = git2::Error::from_str(&reason);
                        *context.host_key.borrow_mut() =
                            Some((endpoint.known_hosts_name(), reason));
                        Err(error)
                    }
                }
            });
        }
        callbacks
    }

    /// The error for a failed `git_remote_fetch`, using what the callbacks
    /// recorded.
    fn failure(&self, branch: &str, context: &FetchContext, error: &git2::Error) -> GitError {
        if let Some((host, reason)) = context.host_key.borrow_mut().take() {
            return GitError::HostKey { host, reason };
        }
        if context.expired() {
            return GitError::Timeout {
                url: self.url(),
                branch: branch.to_string(),
                seconds: self.deadline.as_secs(),
            };
        }
        GitError::Fetch {
            url: self.url(),
            branch: branch.to_string(),
            message: self.auth.redact(error.message()),
        }
    }
}

fn is_missing_or_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// State shared by the callbacks of one fetch.
struct FetchContext {
    started: Instant,
    deadline: Duration,
    offered: RefCell<Offered>,
    /// The host (`known_hosts` form) and reason of a rejected host key.
    host_key: RefCell<Option<(String, String)>>,
}

impl FetchContext {
    fn new(deadline: Duration) -> Self {
        Self {
            started: Instant::now(),
            deadline,
            offered: RefCell::default(),
            host_key: RefCell::default(),
        }
    }

    fn expired(&self) -> bool {
        self.started.elapsed() >= self.deadline
    }
}

/// The credentials offered so far in one fetch: libgit2 asks again when the
/// server rejects them, and must then be told to give up.
#[derive(Debug, Default)]
struct Offered {
    username: bool,
    secret: bool,
}

/// Answers libgit2's request for credentials of a type in `allowed`.
fn credentials(
    auth: &GitAuth,
    offered: &mut Offered,
    username_from_url: Option<&str>,
    allowed: git2::CredentialType,
) -> Result<git2::Cred, git2::Error> {
    let give_up = |message: &str| Err(git2::Error::from_str(message));
    match auth {
        GitAuth::None => give_up("the remote asks for credentials and none are configured"),
        GitAuth::Token { username, token } => {
            if !allowed.is_user_pass_plaintext() {
                return give_up("the remote does not accept a user name and token");
            }
            if std::mem::replace(&mut offered.secret, true) {
                return give_up(&format!(
                    "the remote rejected the token (user `{username}`)"
                ));
            }
            git2::Cred::userpass_plaintext(username, token)
        }
        GitAuth::SshKey {
            username,
            private_key,
            passphrase,
            ..
        } => {
            let username = username_from_url.unwrap_or(username);
            if allowed.is_username() && !std::mem::replace(&mut offered.username, true) {
                return git2::Cred::username(username);
            }
            if !allowed.is_ssh_key() {
                return give_up("the ssh server does not accept public key authentication");
            }
            if std::mem::replace(&mut offered.secret, true) {
                return give_up(&format!(
                    "the ssh server rejected the key {} (user `{username}`)",
                    private_key.display()
                ));
            }
            git2::Cred::ssh_key(username, None, private_key, passphrase.as_deref())
        }
    }
}

/// The host key an ssh server presented, as libssh2 reports it.
enum PresentedKey<'a> {
    /// The key blob (ssh wire format, as base64-encoded in known_hosts).
    Raw(&'a [u8]),
    /// Only its SHA-256 hash.
    Sha256(&'a [u8; 32]),
    Unavailable,
}

/// The entries of an OpenSSH known_hosts file.
#[derive(Debug, Default)]
struct KnownHosts {
    entries: Vec<KnownHost>,
}

#[derive(Debug)]
struct KnownHost {
    hosts: HostField,
    key_type: String,
    key: Vec<u8>,
    /// A `@revoked` line: this key must be refused.
    revoked: bool,
}

/// The host field of a known_hosts line.
#[derive(Debug, PartialEq, Eq)]
enum HostField {
    /// Comma-separated patterns: `host`, `[host]:port`, `*`/`?` wildcards,
    /// `!` negations.
    Patterns(Vec<String>),
    /// `|1|salt|hash`, as `HashKnownHosts yes` (Debian's and Ubuntu's
    /// default) and `ssh-keyscan -H` write it: the HMAC-SHA1 of one host
    /// name (`host` or `[host]:port`) keyed with the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

impl HostField {
    fn parse(field: &str) -> Option<Self> {
        let Some(hashed) = field.strip_prefix("|1|") else {
            return Some(Self::Patterns(
                field.split(',').map(str::to_ascii_lowercase).collect(),
            ));
        };
        let (salt, hash) = hashed.split_once('|')?;
        let (salt, hash) = (base64_decode(salt)?, base64_decode(hash)?);
        // OpenSSH ignores a line whose hash is not a SHA-1 digest.
        (hash.len() == 20).then_some(Self::Hashed { salt, hash })
    }

    /// Whether the field names `name` (lowercase, in known_hosts form).
    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Patterns(patterns) => host_matches(patterns, name),
            Self::Hashed { salt, hash } => {
                use hmac::Mac;
                let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
        }
    }
}

impl KnownHosts {
    fn load(path: &Path) -> Result<Self, String> {
        std::fs::read_to_string(path)
            .map(|text| Self::parse(&text))
            .map_err(|e| format!("cannot read known_hosts file {}: {e}", path.display()))
    }

    /// Parses known_hosts text. Lines OpenSSH would ignore (comments,
    /// malformed lines) are skipped; so are `@cert-authority` lines, since
    /// host certificates are not supported.
    fn parse(text: &str) -> Self {
        let mut hosts = Self::default();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let Some(mut first) = fields.next() else {
                continue;
            };
            if first.starts_with('#') {
                continue;
            }
            let mut revoked = false;
            if first.starts_with('@') {
                if first != "@revoked" {
                    continue;
                }
                revoked = true;
                let Some(next) = fields.next() else { continue };
                first = next;
            }
            let (Some(key_type), Some(key)) = (fields.next(), fields.next()) else {
                continue;
            };
            let (Some(hosts_field), Some(key)) = (HostField::parse(first), base64_decode(key))
            else {
                continue;
            };
            hosts.entries.push(KnownHost {
                hosts: hosts_field,
                key_type: key_type.to_string(),
                key,
                revoked,
            });
        }
        hosts
    }

    /// Accepts the key `presented` by `endpoint` if an entry for the host
    /// lists it (and no `@revoked` entry does); the error says why not.
    fn check(&self, endpoint: &SshEndpoint, presented: &PresentedKey<'_>) -> Result<(), String> {
        let name = endpoint.known_hosts_name();
        let matches = |key: &[u8]| match presented {
            PresentedKey::Raw(raw) => *raw == key,
            PresentedKey::Sha256(hash) => {
                use sha2::Digest;
                sha2::Sha256::digest(key).as_slice() == hash.as_slice()
            }
            PresentedKey::Unavailable => false,
        };
        let for_host: Vec<&KnownHost> = self
            .entries
            .iter()
            .filter(|entry| entry.hosts.matches(&name.to_ascii_lowercase()))
            .collect();
        if for_host.iter().any(|e| e.revoked && matches(&e.key)) {
            return Err(format!(
                "the host key of {name} is marked @revoked in known_hosts"
            ));
        }
        if for_host.iter().any(|e| !e.revoked && matches(&e.key)) {
            return Ok(());
        }
        if let PresentedKey::Unavailable = presented {
            return Err("libssh2 did not report the server's host key".into());
        }
        let known: Vec<&str> = for_host
            .iter()
            .filter(|e| !e.revoked)
            .map(|e| e.key_type.as_str())
            .collect();
        if !known.is_empty() {
            return Err(format!(
                "the server's host key does not match the {} key(s) known_hosts lists for \
                 {name}: the host key changed, or someone is intercepting the connection",
                known.join(", ")
            ));
        }
        Err(format!(
            "unknown host {name}: add its key to known_hosts \
             (e.g. `ssh-keyscan{} {}`, checked against the host's published fingerprints)",
            if endpoint.port == 22 {
                String::new()
            } else {
                format!(" -p {}", endpoint.port)
            },
            endpoint.host
        ))
    }
}

/// Whether `name` (lowercase) matches a known_hosts pattern list: some
/// pattern matches and no negated (`!`) pattern does.
fn host_matches(patterns: &[String], name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= glob(pattern.as_bytes(), name.as_bytes()),
        }
    }
    matched
}

/// OpenSSH pattern matching: `*` any run, `?` any one character.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// Standard base64, padded or not, as OpenSSH reads it: the bits past the
/// last whole byte are ignored.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    BASE64.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github_token(token: &str) -> GitAuth {
        GitAuth::Token {
            username: GITHUB_TOKEN_USERNAME.into(),
            token: token.into(),
        }
    }

    /// GitHub's published ed25519 host key.
    const GITHUB_ED25519: &str =
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    /// A made-up ed25519 key blob of another host.
    const OTHER_ED25519: &str =
        "AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn key(b64: &str) -> Vec<u8> {
        base64_decode(b64).unwrap()
    }

    fn endpoint(host: &str, port: u16) -> SshEndpoint {
        SshEndpoint {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn base64_decodes_known_values_and_rejects_garbage() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("+/8=").unwrap(), [0xfb, 0xff]);
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("ab!d").is_none());
        let blob = key(GITHUB_ED25519);
        assert_eq!(blob.len(), 4 + 11 + 4 + 32);
        assert_eq!(&blob[4..15], b"ssh-ed25519");
    }

    #[test]
    fn known_hosts_parses_plain_bracketed_revoked_and_skips_the_rest() {
        let text = format!(
            "# comment\n\
             \n\
             github.com,140.82.121.4 ssh-ed25519 {GITHUB_ED25519} comment here\n\
             [git.example.com]:2222 ssh-ed25519 {OTHER_ED25519}\n\
             @revoked old.example.com ssh-ed25519 {OTHER_ED25519}\n\
             @cert-authority *.example.com ssh-ed25519 {OTHER_ED25519}\n\
             |1|c2FsdA==|aGFzaA== ssh-ed25519 {OTHER_ED25519}\n\
             broken.example.com ssh-ed25519\n\
             bad64.example.com ssh-ed25519 !!!!\n"
        );
        let hosts = KnownHosts::parse(&text);
        // The hashed line is skipped: its "hash" is no SHA-1 digest.
        assert_eq!(hosts.entries.len(), 3);
        assert_eq!(
            hosts.entries[0].hosts,
            HostField::Patterns(vec!["github.com".into(), "140.82.121.4".into()])
        );
        assert_eq!(hosts.entries[0].key_type, "ssh-ed25519");
        assert_eq!(hosts.entries[0].key, key(GITHUB_ED25519));
        assert_eq!(
            hosts.entries[1].hosts,
            HostField::Patterns(vec!["[git.example.com]:2222".into()])
        );
        assert!(hosts.entries[2].revoked);
        assert!(!hosts.entries[0].revoked);
    }

    #[test]
    fn known_host_key_is_accepted() {
        let hosts = KnownHosts::parse(&format!("github.com ssh-ed25519 {GITHUB_ED25519}\n"));
        let github = key(GITHUB_ED25519);
        assert_eq!(
            hosts.check(&endpoint("github.com", 22), &PresentedKey::Raw(&github)),
            Ok(())
        );
        // Host names are case-insensitive.
        assert_eq!(
            hosts.check(&endpoint("GitHub.com", 22), &PresentedKey::Raw(&github)),
            Ok(())
        );
        // Without the raw key, its SHA-256 hash is compared.
        use sha2::Digest;
        let hash: [u8; 32] = sha2::Sha256::digest(&github).into();
        assert_eq!(
            hosts.check(&endpoint("github.com", 22), &PresentedKey::Sha256(&hash)),
            Ok(())
        );
    }

    #[test]
    fn unknown_host_is_rejected_with_advice() {
        let hosts = KnownHosts::parse(&format!("github.com ssh-ed25519 {GITHUB_ED25519}\n"));
        let other = key(OTHER_ED25519);
        let error = hosts
            .check(&endpoint("gitlab.com", 22), &PresentedKey::Raw(&other))
            .unwrap_err();
        assert!(error.contains("unknown host gitlab.com"), "{error}");
        assert!(error.contains("ssh-keyscan gitlab.com"), "{error}");
        assert!(!error.contains("hashed"), "{error}");
        // The same host on another port is another known_hosts entry.
        let error = hosts
            .check(&endpoint("github.com", 2222), &PresentedKey::Raw(&other))
            .unwrap_err();
        assert!(error.contains("unknown host [github.com]:2222"), "{error}");
        assert!(error.contains("ssh-keyscan -p 2222 github.com"), "{error}");
    }

    /// `ssh-keygen -H` of `github.com ssh-ed25519 {GITHUB_ED25519}` and
    /// `[git.example.com]:2222 ssh-ed25519 {OTHER_ED25519}`.
    const HASHED: &str = "\
        |1|yTQKEF+Soff6DCZpwOKwXu1pK4s=|wF+hoPTEAJTEY+dabyz1WYiYsHs= ssh-ed25519 \
        AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n\
        |1|vgkow3s90jdPsdtqrKYLw4wa8Ic=|KICwY8zVSbLfJJy42Y/vIA2vauw= ssh-ed25519 \
        AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";

    #[test]
    fn hashed_entries_match_their_host_and_port() {
        let hosts = KnownHosts::parse(HASHED);
        assert_eq!(hosts.entries.len(), 2);
        let (github, other) = (key(GITHUB_ED25519), key(OTHER_ED25519));
        let check =
            |host, port, key: &[u8]| hosts.check(&endpoint(host, port), &PresentedKey::Raw(key));
        assert_eq!(check("github.com", 22, &github), Ok(()));
        assert_eq!(check("GitHub.com", 22, &github), Ok(()));
        assert_eq!(check("git.example.com", 2222, &other), Ok(()));
        let error = check("github.com", 22, &other).unwrap_err();
        assert!(
            error.contains("does not match the ssh-ed25519 key"),
            "{error}"
        );
        let error = check("git.example.com", 22, &other).unwrap_err();
        assert!(error.contains("unknown host git.example.com"), "{error}");
        let revoked = KnownHosts::parse(&format!("@revoked {HASHED}"));
        let error = revoked.check(&endpoint("github.com", 22), &PresentedKey::Raw(&github));
        assert!(error.unwrap_err().contains("@revoked"));
    }

    #[test]
    fn changed_host_key_is_rejected() {
        let hosts = KnownHosts::parse(&format!("github.com ssh-ed25519 {GITHUB_ED25519}\n"));
        let other = key(OTHER_ED25519);
        let error = hosts
            .check(&endpoint("github.com", 22), &PresentedKey::Raw(&other))
            .unwrap_err();
        assert!(
            error.contains("does not match the ssh-ed25519 key"),
            "{error}"
        );
        let error = hosts
            .check(&endpoint("github.com", 22), &PresentedKey::Unavailable)
            .unwrap_err();
        assert!(error.contains("did not report"), "{error}");
    }

    #[test]
    fn revoked_key_is_rejected_even_if_also_listed() {
        let hosts = KnownHosts::parse(&format!(
            "@revoked * ssh-ed25519 {OTHER_ED25519}\n\
             host.example.com ssh-ed25519 {OTHER_ED25519}\n"
        ));
        let other = key(OTHER_ED25519);
        let error = hosts
            .check(
                &endpoint("host.example.com", 22),
                &PresentedKey::Raw(&other),
            )
            .unwrap_err();
        assert!(error.contains("@revoked"), "{error}");
    }

    #[test]
    fn bracketed_port_wildcard_and_negated_patterns() {
        let hosts = KnownHosts::parse(&format!(
            "[git.example.com]:2222 ssh-ed25519 {GITHUB_ED25519}\n\
             *.corp.example,!bad.corp.example ssh-ed25519 {OTHER_ED25519}\n"
        ));
        let github = key(GITHUB_ED25519);
        let other = key(OTHER_ED25519);
        let check = |host, port, key: &[u8]| {
            hosts
                .check(&endpoint(host, port), &PresentedKey::Raw(key))
                .is_ok()
        };
        assert!(check("git.example.com", 2222, &github));
        assert!(!check("git.example.com", 22, &github));
        assert!(check("git.corp.example", 22, &other));
        assert!(!check("bad.corp.example", 22, &other));
        assert!(glob(b"gi?.*", b"git.example.com"));
        assert!(!glob(b"gi?", b"gi"));
    }

    #[test]
    fn transports_are_recognised() {
        assert_eq!(
            Transport::of("https://github.com/o/r.git"),
            Transport::Https
        );
        assert_eq!(Transport::of("HTTP://example.com/r"), Transport::Http);
        assert_eq!(Transport::of("file:///srv/r.git"), Transport::Other);
        assert_eq!(Transport::of("/srv/r.git"), Transport::Other);
        assert_eq!(Transport::of("./a:b/r.git"), Transport::Other);
        assert_eq!(Transport::of("git://example.com/r"), Transport::Other);
        let ssh = |host: &str, port| Transport::Ssh(endpoint(host, port));
        assert_eq!(
            Transport::of("git@github.com:o/r.git"),
            ssh("github.com", 22)
        );
        assert_eq!(Transport::of("github.com:o/r.git"), ssh("github.com", 22));
        assert_eq!(Transport::of("git@[::1]:o/r.git"), ssh("::1", 22));
        assert_eq!(Transport::of("ssh://git@host:2222/o/r"), ssh("host", 2222));
        assert_eq!(Transport::of("ssh://host/o/r"), ssh("host", 22));
        assert_eq!(Transport::of("git+ssh://[::1]:22/r"), ssh("::1", 22));
        assert_eq!(Transport::of("ssh://host:bad/r"), Transport::Other);
        assert_eq!(endpoint("host", 22).known_hosts_name(), "host");
        assert_eq!(endpoint("host", 2222).known_hosts_name(), "[host]:2222");
    }

    #[test]
    fn url_credentials_are_redacted() {
        assert_eq!(
            redact_url_userinfo("failed: https://x-access-token:s3cr3t@github.com/o/r.git: 401"),
            "failed: https://x-access-token:***@github.com/o/r.git: 401"
        );
        assert_eq!(
            redact_url_userinfo("'https://s3cr3t@github.com/o/r' and http://u:p@h"),
            "'https://***@github.com/o/r' and http://u:***@h"
        );
        assert_eq!(
            redact_url_userinfo("ssh://git@host:22/r"),
            "ssh://git@host:22/r"
        );
        assert_eq!(redact_url_userinfo("no url here"), "no url here");
        let auth = github_token("s3cr3t");
        assert_eq!(auth.redact("token s3cr3t rejected"), "token *** rejected");
        assert_eq!(GitAuth::None.redact("s3cr3t"), "s3cr3t");
    }

    #[test]
    fn debug_hides_secrets() {
        let token = format!(
            "{:?}",
            GitAuth::Token {
                username: GITLAB_TOKEN_USERNAME.into(),
                token: "s3cr3t".into()
            }
        );
        assert!(
            token.contains("oauth2") && !token.contains("s3cr3t"),
            "{token}"
        );
        let ssh = GitAuth::SshKey {
            username: SSH_USERNAME.into(),
            private_key: "/k".into(),
            passphrase: Some("s3cr3t".into()),
            known_hosts: "/kh".into(),
        };
        let ssh = format!("{ssh:?}");
        assert!(ssh.contains("\"git\"") && !ssh.contains("s3cr3t"), "{ssh}");
        assert_eq!(format!("{:?}", GitAuth::None), "None");
    }

    #[test]
    fn token_is_offered_once_then_given_up() {
        let auth = github_token("s3cr3t");
        let mut offered = Offered::default();
        let cred = credentials(
            &auth,
            &mut offered,
            None,
            git2::CredentialType::USER_PASS_PLAINTEXT,
        )
        .unwrap();
        assert_eq!(
            cred.credtype(),
            git2::CredentialType::USER_PASS_PLAINTEXT.bits()
        );
        let error = credentials(
            &auth,
            &mut offered,
            None,
            git2::CredentialType::USER_PASS_PLAINTEXT,
        )
        .err()
        .unwrap();
        assert!(error.message().contains("rejected the token"));
        assert!(!error.message().contains("s3cr3t"));
        let error = credentials(
            &GitAuth::None,
            &mut Offered::default(),
            None,
            git2::CredentialType::USER_PASS_PLAINTEXT,
        )
        .err()
        .unwrap();
        assert!(error.message().contains("none are configured"));
    }

    #[test]
    fn ssh_key_offers_username_then_key_once() {
        let auth = GitAuth::ssh_key("/nonexistent/id_ed25519", "/nonexistent/known_hosts");
        let mut offered = Offered::default();
        let both = git2::CredentialType::USERNAME | git2::CredentialType::SSH_KEY;
        let cred = credentials(&auth, &mut offered, None, both).unwrap();
        assert_eq!(cred.credtype(), git2::CredentialType::USERNAME.bits());
        let cred = credentials(&auth, &mut offered, None, both).unwrap();
        assert_eq!(cred.credtype(), git2::CredentialType::SSH_KEY.bits());
        assert!(cred.has_username());
        let error = credentials(&auth, &mut offered, Some("deploy"), both)
            .err()
            .unwrap();
        assert!(error.message().contains("rejected the key"), "{error}");
        assert!(error.message().contains("`deploy`"), "{error}");
    }

    /// A fake http git server that asks for Basic authentication and never
    /// accepts it: returns its URL and the requests it received.
    fn serve_401() -> (
        String,
        std::thread::JoinHandle<Vec<String>>,
        std::net::SocketAddr,
    ) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                if request.is_empty() {
                    break;
                }
                requests.push(String::from_utf8_lossy(&request).into_owned());
                let _ = stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\n\
                      WWW-Authenticate: Basic realm=\"git\"\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            requests
        });
        (
            format!("http://127.0.0.1:{}/o/r.git", addr.port()),
            server,
            addr,
        )
    }

    #[test]
    fn token_is_sent_as_basic_auth_and_never_echoed() {
        let (url, server, addr) = serve_401();
        let cache = tempfile::tempdir().unwrap();
        // `open` refuses a token over plain http; the fake server has no TLS.
        let repo =
            RemoteRepo::open_cache(&url, cache.path(), github_token("s3cr3t"), None).unwrap();
        let error = repo.fetch("main").unwrap_err();
        drop(std::net::TcpStream::connect(addr));
        let requests = server.join().unwrap();

        let authorization = requests
            .iter()
            .flat_map(|r| r.lines())
            .find_map(|l| {
                l.strip_prefix("Authorization: Basic ")
                    .or(l.strip_prefix("authorization: Basic "))
            })
            .expect("a request with Basic authentication");
        assert_eq!(
            base64_decode(authorization.trim()).unwrap(),
            b"x-access-token:s3cr3t"
        );
        let message = error.to_string();
        assert!(matches!(error, GitError::Fetch { .. }), "{error:?}");
        assert!(message.contains("rejected the token"), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");
    }

    #[test]
    fn token_in_the_url_is_redacted_from_errors() {
        let (url, server, addr) = serve_401();
        let url = url.replace("http://", "http://x-access-token:s3cr3t@");
        let cache = tempfile::tempdir().unwrap();
        let repo =
            RemoteRepo::open_cache(&url, cache.path(), github_token("s3cr3t"), None).unwrap();
        assert!(!repo.url().contains("s3cr3t"));
        let error = repo.fetch("main").unwrap_err();
        drop(std::net::TcpStream::connect(addr));
        server.join().unwrap();
        let message = format!("{error} {error:?}");
        assert!(
            message.contains("x-access-token:***@127.0.0.1"),
            "{message}"
        );
        assert!(!message.contains("s3cr3t"), "{message}");
    }

    #[test]
    fn open_refuses_auth_that_does_not_fit_the_url() {
        let cache = tempfile::tempdir().unwrap();
        let refused = |url: &str, auth: GitAuth| match RemoteRepo::open(url, cache.path(), auth) {
            Err(GitError::UnsupportedAuth { reason, url }) => {
                assert!(!url.contains("s3cr3t"), "{url}");
                reason
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("{url} accepted"),
        };
        let token = github_token("s3cr3t");
        assert!(refused("http://s3cr3t@example.com/r", token.clone()).contains("plain http"));
        assert!(refused("git@github.com:o/r.git", token).contains("https:// URLs only"));
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        let known_hosts = dir.path().join("known_hosts");
        let ssh = GitAuth::ssh_key(&key, &known_hosts);
        assert!(
            refused("https://github.com/o/r", ssh.clone()).contains("an ssh key works with ssh://")
        );
        assert!(refused("git@github.com:o/r.git", ssh.clone()).contains("private key"));
        std::fs::write(&key, "key").unwrap();
        assert!(refused("git@github.com:o/r.git", ssh.clone()).contains("known_hosts"));
        std::fs::write(&known_hosts, "").unwrap();
        assert!(RemoteRepo::open("git@github.com:o/r.git", cache.path(), ssh).is_ok());
    }
}
