//! `RemoteRepo` against real repositories made with the git CLI and served
//! over `file://`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

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
        GitAuth::github_token("t"),
        GitAuth::Token { username, token } if username == GITHUB_TOKEN_USERNAME && token == "t"
    ));
    assert!(matches!(
        GitAuth::gitlab_token("t"),
        GitAuth::Token { username, .. } if username == GITLAB_TOKEN_USERNAME
    ));
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
