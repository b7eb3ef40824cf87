//! `RemoteRepo` against real repositories made with the git CLI and served
//! over `file://`, and over ssh by a local OpenSSH server.

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan::sources::git::{GitAuth, GitError, RemoteRepo};
use support::git;

/// A bare "remote" and a working clone pushing to its `main`.
struct Fixture {
    _dir: tempfile::TempDir,
    remote: PathBuf,
    work: PathBuf,
    cache: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("remote.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&remote).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        git(&remote, &["init", "--bare", "-b", "main"]);
        git(&work, &["init", "-b", "main"]);
        git(
            &work,
            &["remote", "add", "origin", remote.to_str().unwrap()],
        );
        Self {
            cache: dir.path().join("cache"),
            _dir: dir,
            remote,
            work,
        }
    }

    fn url(&self) -> String {
        format!("file://{}", self.remote.display())
    }

    /// Commits `routes.yaml` with `text`, pushes `main`, returns the commit.
    fn push_routes(&self, text: &str) -> String {
        std::fs::write(self.work.join("routes.yaml"), text).unwrap();
        git(&self.work, &["add", "routes.yaml"]);
        git(&self.work, &["commit", "-q", "-m", "routes"]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn open(&self) -> RemoteRepo {
        RemoteRepo::open(&self.url(), &self.cache, GitAuth::None).unwrap()
    }
}

#[test]
fn fetch_returns_the_pushed_commit_and_reads_without_checkout() {
    let fixture = Fixture::new();
    let first = fixture.push_routes("routes: []\n");
    let repo = fixture.open();
    assert_eq!(repo.url(), fixture.url());

    let revision = repo.fetch("main").unwrap();
    assert_eq!(revision.name, "main");
    assert_eq!(revision.commit.as_deref(), Some(first.as_str()));
    assert_eq!(
        repo.read_file(&first, "routes.yaml").unwrap().as_deref(),
        Some("routes: []\n")
    );
    assert_eq!(repo.read_file(&first, "missing.yaml").unwrap(), None);
    assert_eq!(repo.read_file(&first, "dir/routes.yaml").unwrap(), None);
    // The cache is bare: nothing was checked out.
    assert!(!fixture.cache.join("routes.yaml").exists());
    assert!(fixture.cache.join("HEAD").is_file());
}

#[test]
fn fetch_follows_new_and_rewritten_commits() {
    let fixture = Fixture::new();
    let first = fixture.push_routes("routes: []\n");
    let repo = fixture.open();
    assert_eq!(repo.fetch("main").unwrap().commit.unwrap(), first);

    let second = fixture.push_routes("routes: [] # two\n");
    assert_ne!(first, second);
    assert_eq!(repo.fetch("main").unwrap().commit.unwrap(), second);
    assert_eq!(
        repo.read_file(&second, "routes.yaml").unwrap().as_deref(),
        Some("routes: [] # two\n")
    );
    // The old commit stays readable.
    assert_eq!(
        repo.read_file(&first, "routes.yaml").unwrap().as_deref(),
        Some("routes: []\n")
    );

    // A force-push back to the first commit is followed too.
    git(&fixture.work, &["reset", "-q", "--hard", &first]);
    git(&fixture.work, &["push", "-q", "-f", "origin", "main"]);
    assert_eq!(repo.fetch("main").unwrap().commit.unwrap(), first);
}

#[test]
fn cache_survives_a_restart() {
    let fixture = Fixture::new();
    let first = fixture.push_routes("routes: []\n");
    {
        let repo = fixture.open();
        assert_eq!(repo.fetch("main").unwrap().commit.unwrap(), first);
    }
    let second = fixture.push_routes("routes: [] # two\n");
    let reopened = fixture.open();
    // What the first run fetched is there before any fetch.
    assert_eq!(
        reopened
            .read_file(&first, "routes.yaml")
            .unwrap()
            .as_deref(),
        Some("routes: []\n")
    );
    assert_eq!(reopened.fetch("main").unwrap().commit.unwrap(), second);
}

#[test]
fn cache_of_another_url_is_refused() {
    let fixture = Fixture::new();
    fixture.push_routes("routes: []\n");
    drop(fixture.open());
    let other = format!("{}-other", fixture.url());
    let error = RemoteRepo::open(&other, &fixture.cache, GitAuth::None)
        .err()
        .expect("a cache of another URL is refused");
    assert!(
        matches!(error, GitError::CacheUrlMismatch { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("remove it"), "{error}");
}

#[test]
fn non_empty_non_repository_cache_dir_is_refused() {
    let fixture = Fixture::new();
    std::fs::create_dir_all(&fixture.cache).unwrap();
    std::fs::write(fixture.cache.join("precious.txt"), "keep me").unwrap();
    let error = RemoteRepo::open(&fixture.url(), &fixture.cache, GitAuth::None)
        .err()
        .expect("refused");
    assert!(matches!(error, GitError::Cache { .. }), "{error:?}");
    assert!(error.to_string().contains("refusing"), "{error}");
    assert!(fixture.cache.join("precious.txt").exists());
}

#[test]
fn missing_branch_is_a_clear_error() {
    let fixture = Fixture::new();
    fixture.push_routes("routes: []\n");
    let repo = fixture.open();
    let error = repo.fetch("release").unwrap_err();
    assert!(
        matches!(&error, GitError::BranchNotFound { branch, .. } if branch == "release"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("branch `release` not found on {}", fixture.url())
    );
}

#[test]
fn deleted_branch_is_not_served_from_the_cache() {
    let fixture = Fixture::new();
    fixture.push_routes("routes: []\n");
    git(&fixture.work, &["push", "-q", "origin", "main:staging"]);
    let repo = fixture.open();
    repo.fetch("staging").unwrap();
    git(&fixture.work, &["push", "-q", "origin", ":staging"]);
    assert!(matches!(
        repo.fetch("staging"),
        Err(GitError::BranchNotFound { .. })
    ));
}

#[test]
fn invalid_branch_name_is_refused() {
    let fixture = Fixture::new();
    let repo = fixture.open();
    for branch in ["", "a..b", "-x", "with space", "main:other"] {
        assert!(
            matches!(repo.fetch(branch), Err(GitError::InvalidBranch { .. })),
            "{branch:?}"
        );
    }
}

#[test]
fn unreachable_remote_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/does-not-exist.git", dir.path().display());
    let repo = RemoteRepo::open(&url, &dir.path().join("cache"), GitAuth::None).unwrap();
    let error = repo.fetch("main").unwrap_err();
    assert!(matches!(error, GitError::Fetch { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("fetching `main` from {url}: ")),
        "{message}"
    );
}

#[test]
fn empty_remote_has_no_branch() {
    let fixture = Fixture::new();
    let repo = fixture.open();
    assert!(matches!(
        repo.fetch("main"),
        Err(GitError::BranchNotFound { .. })
    ));
}

#[test]
fn fetch_deadline_is_enforced() {
    let fixture = Fixture::new();
    fixture.push_routes("routes: []\n");
    let repo = fixture.open().with_fetch_deadline(Duration::ZERO);
    let error = repo.fetch("main").unwrap_err();
    assert!(matches!(error, GitError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("gave up after 0s"), "{error}");
}

#[test]
fn read_file_of_an_unknown_commit_is_an_error() {
    let fixture = Fixture::new();
    fixture.push_routes("routes: []\n");
    let repo = fixture.open();
    repo.fetch("main").unwrap();
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    assert!(matches!(
        repo.read_file(unknown, "routes.yaml"),
        Err(GitError::Unreadable { .. })
    ));
    assert!(matches!(
        repo.read_file("not-a-commit", "routes.yaml"),
        Err(GitError::Unreadable { .. })
    ));
}

#[test]
fn auth_helpers_use_the_documented_user_names() {
    use capstan::sources::git::{GITHUB_TOKEN_USERNAME, GITLAB_TOKEN_USERNAME, SSH_USERNAME};
    assert!(matches!(
        GitAuth::ssh_key("/k", "/kh"),
        GitAuth::SshKey { username, passphrase: None, .. } if username == SSH_USERNAME
    ));
    assert_eq!(GITHUB_TOKEN_USERNAME, "x-access-token");
    assert_eq!(GITLAB_TOKEN_USERNAME, "oauth2");
    assert_eq!(SSH_USERNAME, "git");
}

#[test]
fn remote_repo_can_move_into_spawn_blocking() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<RemoteRepo>();
    assert_send::<GitError>();
}

/// Runs a command to completion; its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(output.status.success(), "{program} {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// `ssh-keygen` of an unencrypted ed25519 key at `path`; its public half.
fn keygen(path: &Path) -> String {
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            path.to_str().unwrap(),
        ],
    );
    std::fs::read_to_string(path.with_extension("pub")).unwrap()
}

/// An OpenSSH server on a free local port, running as this user and
/// accepting one client key. Killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sshd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        keygen(dir.path().join("host_key").as_path());
        let client = keygen(dir.path().join("client_key").as_path());
        std::fs::write(path("authorized_keys"), client).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPidFile none\nSetEnv PATH={}\n",
            path("host_key"),
            path("authorized_keys"),
            std::env::var("PATH").unwrap_or_default(),
        );
        std::fs::write(path("sshd_config"), config).unwrap();
        // sshd started as root wants its privilege separation directory,
        // which the service manager would otherwise create.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", &path("sshd_config")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("sshd.log")).unwrap())
            .spawn()
            .expect("/usr/sbin/sshd (openssh-server, see scripts/install-test-deps)");
        let sshd = Self { child, port, dir };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen: {}",
                std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    /// The ssh URL of `repo` on this server, for this user.
    fn url(&self, repo: &Path) -> String {
        let user = run("id", &["-un"]);
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            user.trim(),
            self.port,
            repo.display()
        )
    }

    /// A known_hosts file naming the server as `name` with its key, hashed
    /// by `ssh-keygen -H` as `HashKnownHosts yes` would write it.
    fn hashed_known_hosts(&self, name: &str) -> PathBuf {
        let key = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let file = self.dir.path().join(format!("known_hosts-{name}"));
        std::fs::write(&file, format!("{name} {key}")).unwrap();
        run("ssh-keygen", &["-H", "-f", file.to_str().unwrap()]);
        let hashed = std::fs::read_to_string(&file).unwrap();
        assert!(
            hashed.starts_with("|1|") && !hashed.contains(name),
            "{hashed}"
        );
        file
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ssh_remote_with_a_hashed_known_hosts_file() {
    let fixture = Fixture::new();
    let commit = fixture.push_routes("routes: []\n");
    let sshd = Sshd::start();
    let key = sshd.dir.path().join("client_key");
    let open = |known_hosts: PathBuf, cache: &str| {
        let cache = fixture.cache.with_file_name(cache);
        let auth = GitAuth::ssh_key(&key, known_hosts);
        RemoteRepo::open(&sshd.url(&fixture.remote), &cache, auth).unwrap()
    };

    let known = sshd.hashed_known_hosts(&format!("[127.0.0.1]:{}", sshd.port));
    let revision = open(known, "cache-known").fetch("main").unwrap();
    assert_eq!(revision.commit.as_deref(), Some(commit.as_str()));

    // The same server hashed under another port is another host.
    let other = sshd.hashed_known_hosts(&format!("[127.0.0.1]:{}", sshd.port + 1));
    let error = open(other, "cache-other").fetch("main").unwrap_err();
    assert!(matches!(error, GitError::HostKey { .. }), "{error:?}");
    assert!(error.to_string().contains("unknown host"), "{error}");
}
