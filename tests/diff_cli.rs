//! End-to-end tests of the `capstan` binary: `diff` between git revisions of
//! real repositories created in temporary directories, and the `validate`,
//! `render`, `schema` and `plan` commands, asserting what a user sees
//! (exit status, standard output and standard error).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// What one run of capstan printed, and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().expect("capstan exited, not killed"),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Both streams, for messages whose stream is not the point of the test.
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn capstan_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_capstan"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0");
    command
}

/// Runs capstan in `dir`.
fn capstan(dir: &Path, args: &[&str]) -> Run {
    let output = capstan_command(dir, args)
        .stdin(Stdio::null())
        .output()
        .expect("capstan runs");
    Run::from(output)
}

/// Runs capstan in `dir` with `input` on standard input.
fn capstan_stdin(dir: &Path, args: &[&str], input: &str) -> Run {
    let mut child = capstan_command(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("capstan runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("capstan reads stdin");
    Run::from(child.wait_with_output().expect("capstan exits"))
}

/// A git repository in a temporary directory, on branch `main`.
struct Repo {
    dir: TempDir,
}

impl Repo {
    fn new() -> Self {
        let repo = Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> String {
        support::git(self.path(), args)
    }

    fn write(&self, file: &str, text: &str) {
        let path = self.path().join(file);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// Commits everything in the working tree; returns the full commit id.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.rev_parse("HEAD")
    }

    fn rev_parse(&self, rev: &str) -> String {
        self.git(&["rev-parse", rev]).trim().to_string()
    }

    /// `capstan diff --repo <this repo> <args>`, run from outside the repository.
    fn diff(&self, args: &[&str]) -> Run {
        let repo = self.path().to_str().expect("a UTF-8 path");
        let mut all = vec!["diff", "--repo", repo];
        all.extend_from_slice(args);
        capstan(&std::env::temp_dir(), &all)
    }
}

fn short(commit: &str) -> &str {
    &commit[..7]
}

/// Two routes: the base of most tests.
const BASE: &str = "\
version: 1
routes:
  # The public API.
  - service: api
    port: 3000
    paths: [/api]
    timeouts:
      server: 2m
  - service: web
    port: 80
    paths: [/]
  - service: old
    port: 9000
    paths: [/old]
";

/// BASE with `old` removed, `go-demo` added, `api` and `web` changed.
const HEAD: &str = "\
version: 1
routes:
  - service: api
    port: 3000
    paths: [/api]
    timeouts:
      server: 5m
  - service: web
    port: 80
    paths: [/]
    balance: leastconn
  - service: go-demo
    port: 8080
    paths: [/demo]
";

/// BASE with its routes in another order, keys reordered and comments changed.
const BASE_REORDERED: &str = "\
# Same routes, another order.
version: 1
routes:
  - port: 9000
    service: old
    paths: [/old]
  - service: web
    paths: [/]
    port: 80
  - service: api
    timeouts:
      server: 2m
    port: 3000
    paths: [/api]
";

/// BASE with two errors: a port out of range (line 5) and an unknown field (line 11).
const INVALID: &str = "\
version: 1
routes:
  - service: api
    port: 3000
    paths: [/api]
  - service: web
    port: 70000
    paths: [/]
  - service: old
    port: 9000
    pth: [/old]
";
const INVALID_ERRORS: [&str; 2] = [
    "routes.yaml:7:11: routes[1].port: 70000 is greater than the maximum of 65535",
    "routes.yaml:11:5: routes[2].pth: unknown field `pth`",
];

/// A repository whose `main` holds BASE.
fn repo_with_base() -> (Repo, String) {
    let repo = Repo::new();
    repo.write("routes.yaml", BASE);
    let base = repo.commit("base routes");
    (repo, base)
}

fn position(haystack: &str, needle: &str) -> usize {
    haystack
        .find(needle)
        .unwrap_or_else(|| panic!("missing {needle:?} in:\n{haystack}"))
}

#[test]
fn diff_of_the_working_tree_prints_route_summary_counts_then_config_diff() {
    let (repo, base) = repo_with_base();
    repo.write("routes.yaml", HEAD);

    let run = repo.diff(&["--base", "main"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
    let out = &run.stdout;
    assert!(
        out.starts_with(&format!(
            "capstan diff: main ({}) → working tree\n",
            short(&base)
        )),
        "{run:?}"
    );
    // Route lines, sorted by route id, with aligned kinds.
    let expected = "\
  ~ api:3000      Changed
      timeouts.server: \"2m\" → \"5m\"
  + go-demo:8080  Added
  - old:9000      Removed
  ~ web:80        Changed
      balance: (unset) → \"leastconn\"
1 added, 2 changed, 1 removed, 0 unchanged
";
    assert!(out.contains(expected), "{run:?}");
    // Then the unified diff of haproxy.cfg.
    let counts = position(out, "1 added, 2 changed, 1 removed, 0 unchanged\n");
    let header = position(out, "\n--- base/haproxy.cfg\n+++ head/haproxy.cfg\n@@ ");
    assert!(counts < header, "{run:?}");
    for line in [
        "\n+#   /demo go-demo-be8080\n",
        "\n-#   /old old-be9000\n",
        "\n-    balance roundrobin\n",
        "\n+    balance leastconn\n",
        // api's server timeout, in the timeout map's listing.
        "\n-#   api-be3000 120000\n",
        "\n+#   api-be3000 300000\n",
    ] {
        assert!(out[header..].contains(line), "missing {line:?}: {run:?}");
    }
}

#[test]
fn diff_with_head_compares_two_commits_and_ignores_the_working_tree() {
    let (repo, base) = repo_with_base();
    repo.write("routes.yaml", HEAD);
    let head = repo.commit("change routes");
    // An uncommitted edit that only the working tree has.
    repo.write("routes.yaml", BASE);

    let run = repo.diff(&["--base", "HEAD~1", "--head", "HEAD"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.starts_with(&format!(
            "capstan diff: HEAD~1 ({}) → HEAD ({})\n",
            short(&base),
            short(&head)
        )),
        "{run:?}"
    );
    assert!(run.stdout.contains("  + go-demo:8080  Added\n"), "{run:?}");
    assert!(
        run.stdout.contains("\n+#   /demo go-demo-be8080\n"),
        "{run:?}"
    );

    // A full commit id as head: labelled by its short id, reported in full.
    let json = repo
        .diff(&["--base", &base, "--head", &head, "--format", "json"])
        .json();
    assert_eq!(json["base"]["commit"], base.as_str());
    assert_eq!(json["base"]["label"], short(&base));
    assert_eq!(json["head"]["commit"], head.as_str());
    assert_eq!(json["head"]["label"], short(&head));

    // The working tree (back to BASE) against the head commit: the reverse change.
    let run = repo.diff(&["--base", "main"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains("  - go-demo:8080  Removed\n"),
        "{run:?}"
    );
    assert!(run.stdout.contains("  + old:9000      Added\n"), "{run:?}");

    // Same commit on both sides.
    let run = repo.diff(&["--base", "main", "--head", "HEAD"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.ends_with("\nno changes\n"), "{run:?}");
}

#[test]
fn diff_reads_a_routes_file_in_a_subdirectory() {
    let repo = Repo::new();
    repo.write("README.md", "infra\n");
    repo.write("deploy/proxy/routes.yaml", BASE);
    let base = repo.commit("base routes");
    repo.write("deploy/proxy/routes.yaml", HEAD);

    // --repo may name any directory inside the repository; --file is
    // relative to the repository root.
    let inside = repo.path().join("deploy");
    let run = capstan(
        &std::env::temp_dir(),
        &[
            "diff",
            "--base",
            "main",
            "--repo",
            inside.to_str().unwrap(),
            "--file",
            "deploy/proxy/routes.yaml",
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout
            .contains("1 added, 2 changed, 1 removed, 0 unchanged\n"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("\n+#   /demo go-demo-be8080\n"),
        "{run:?}"
    );

    // Run from inside the repository with the default --repo.
    let run = capstan(
        &inside,
        &[
            "diff",
            "--base",
            &base,
            "--file",
            "deploy/proxy/routes.yaml",
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.contains("  + go-demo:8080  Added\n"), "{run:?}");

    // Errors name the file by its path in the repository.
    repo.write("deploy/proxy/routes.yaml", INVALID);
    let json = repo
        .diff(&[
            "--base",
            "main",
            "--file",
            "deploy/proxy/routes.yaml",
            "--format",
            "json",
        ])
        .json();
    assert_eq!(json["status"], "error");
    assert_eq!(json["errors"][0]["file"], "deploy/proxy/routes.yaml");
    assert_eq!(json["errors"][0]["line"], 7);
}

#[test]
fn diff_without_changes_exits_0_in_every_format() {
    let (repo, base) = repo_with_base();

    let run = repo.diff(&["--base", "main"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "capstan diff: main ({}) → working tree\nno changes\n",
            short(&base)
        ),
        "{run:?}"
    );

    // Reordered routes, keys and comments: the same table.
    repo.write("routes.yaml", BASE_REORDERED);
    let run = repo.diff(&["--base", "main"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.ends_with("\nno changes\n"), "{run:?}");
    assert!(!run.stdout.contains("haproxy.cfg"), "{run:?}");

    let run = repo.diff(&["--base", "main", "--format", "markdown"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with("### capstan diff: no changes\n"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("<details>"), "{run:?}");
    assert!(!run.stdout.contains("| Route |"), "{run:?}");

    let run = repo.diff(&["--base", "main", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    assert_eq!(json["capstan_diff"], 1);
    assert_eq!(json["status"], "no_changes");
    assert_eq!(json["config_diff"], "");
    assert_eq!(json["routes"], serde_json::json!([]));
    assert_eq!(json["settings"], serde_json::json!([]));
    assert_eq!(
        json["summary"],
        serde_json::json!({
            "added": 0, "changed": 0, "removed": 0, "unchanged": 3, "settings_changed": 0
        })
    );

    // Committed, the reordered table is still no change.
    let head = repo.commit("reorder");
    let run = repo.diff(&["--base", &base, "--head", &head]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn diff_errors_exit_1_in_every_format() {
    let (repo, _) = repo_with_base();

    // An unknown base or head revision.
    for args in [
        ["--base", "no-such-branch", "--head", "main"],
        ["--base", "main", "--head", "no-such-branch"],
    ] {
        let run = repo.diff(&args);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.all()
                .contains("error: revision `no-such-branch` not found"),
            "{run:?}"
        );

        let run = repo.diff(&[&args[..], &["--format", "markdown"][..]].concat());
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stdout.starts_with("### capstan diff: error\n"),
            "{run:?}"
        );
        assert!(
            run.stdout.contains("revision `no-such-branch` not found"),
            "{run:?}"
        );

        let run = repo.diff(&[&args[..], &["--format", "json"][..]].concat());
        assert_eq!(run.code, 1, "{run:?}");
        let json = run.json();
        assert_eq!(json["capstan_diff"], 1);
        assert_eq!(json["status"], "error");
        assert!(
            json["message"]
                .as_str()
                .unwrap()
                .contains("revision `no-such-branch` not found"),
            "{run:?}"
        );
        assert_eq!(json["errors"], serde_json::json!([]));
    }

    // Not a repository.
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    let run = capstan(empty.path(), &["diff", "--base", "main", "--repo", dir]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.all().contains("not a git repository"), "{run:?}");
    let run = capstan(
        empty.path(),
        &["diff", "--base", "main", "--repo", dir, "--format", "json"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    let json = run.json();
    assert_eq!(json["status"], "error");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("not a git repository"),
        "{run:?}"
    );

    // A path the repository cannot hold.
    let run = repo.diff(&["--base", "main", "--file", "./routes.yaml"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.all().contains("./routes.yaml at main"), "{run:?}");
}

#[test]
fn diff_of_an_invalid_head_reports_file_line_column_field_in_every_format() {
    let (repo, _) = repo_with_base();
    repo.write("routes.yaml", INVALID);

    let run = repo.diff(&["--base", "main"]);
    assert_eq!(run.code, 1, "{run:?}");
    let text = run.all();
    assert!(
        text.contains("error: routes.yaml at working tree is invalid\n"),
        "{run:?}"
    );
    for error in INVALID_ERRORS {
        assert!(text.contains(&format!("  {error}\n")), "{run:?}");
    }
    assert!(!text.contains("haproxy.cfg"), "{run:?}");

    let run = repo.diff(&["--base", "main", "--format", "markdown"]);
    assert_eq!(run.code, 1, "{run:?}");
    let expected = format!(
        "### capstan diff: error\n\nroutes.yaml at working tree is invalid\n\n```\n{}\n{}\n```\n",
        INVALID_ERRORS[0], INVALID_ERRORS[1]
    );
    assert_eq!(run.stdout, expected, "{run:?}");

    let run = repo.diff(&["--base", "main", "--format", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let json = run.json();
    assert_eq!(json["capstan_diff"], 1);
    assert_eq!(json["status"], "error");
    assert_eq!(json["message"], "routes.yaml at working tree is invalid");
    assert_eq!(
        json["errors"],
        serde_json::json!([
            {
                "file": "routes.yaml",
                "line": 7,
                "column": 11,
                "field": "routes[1].port",
                "message": "70000 is greater than the maximum of 65535",
            },
            {
                "file": "routes.yaml",
                "line": 11,
                "column": 5,
                "field": "routes[2].pth",
                "message": "unknown field `pth`",
            },
        ])
    );
    assert!(json.get("config_diff").is_none(), "{run:?}");

    // Committed: the error names the revision.
    let head = repo.commit("break routes");
    let run = repo.diff(&["--base", "HEAD~1", "--head", "HEAD", "--format", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let json = run.json();
    assert_eq!(
        json["message"],
        format!("routes.yaml at HEAD ({}) is invalid", short(&head))
    );
    assert_eq!(json["errors"][1]["line"], 11);

    // A YAML syntax error has a place too.
    repo.write("routes.yaml", "version: 1\nroutes:\n  - service: [api\n");
    let run = repo.diff(&["--base", "HEAD~1", "--format", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let json = run.json();
    assert_eq!(json["errors"][0]["file"], "routes.yaml");
    assert_eq!(json["message"], "routes.yaml at working tree is invalid");
    assert_eq!(json["errors"][0]["line"], 3);
    assert!(
        json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid YAML"),
        "{run:?}"
    );
}

#[test]
fn diff_from_a_base_without_routes_file_reports_every_route_added() {
    let repo = Repo::new();
    repo.write("README.md", "infra\n");
    let base = repo.commit("before capstan");
    repo.write("routes.yaml", HEAD);
    let head = repo.commit("add routes.yaml");

    let run = repo.diff(&["--base", "HEAD~1", "--head", "HEAD"]);
    assert_eq!(run.code, 2, "{run:?}");
    let expected = "\
  + api:3000      Added
  + go-demo:8080  Added
  + web:80        Added
3 added, 0 changed, 0 removed, 0 unchanged
";
    assert!(run.stdout.contains(expected), "{run:?}");
    assert!(
        run.stdout.contains("\n+#   /demo go-demo-be8080\n"),
        "{run:?}"
    );
    assert!(run.stdout.contains("\n+backend api-be3000\n"), "{run:?}");

    let run = repo.diff(&["--base", &base, "--head", &head, "--format", "markdown"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout
            .starts_with("### capstan diff: 3 added, 0 changed, 0 removed, 0 unchanged\n"),
        "{run:?}"
    );
    for route in ["api:3000", "go-demo:8080", "web:80"] {
        assert!(
            run.stdout
                .contains(&format!("| + | <code>{route}</code> | Added |  |\n")),
            "{run:?}"
        );
    }

    let json = repo
        .diff(&["--base", &base, "--head", &head, "--format", "json"])
        .json();
    assert_eq!(json["status"], "changes");
    assert_eq!(json["base"]["routes"], 0);
    assert_eq!(json["head"]["routes"], 3);
    assert_eq!(json["summary"]["added"], 3);
    assert_eq!(json["summary"]["unchanged"], 0);
    let changes: Vec<(&str, &str)> = json["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["route"].as_str().unwrap(), r["change"].as_str().unwrap()))
        .collect();
    assert_eq!(
        changes,
        [
            ("api:3000", "added"),
            ("go-demo:8080", "added"),
            ("web:80", "added")
        ]
    );
}

#[test]
fn diff_markdown_has_heading_table_and_collapsed_config_diff() {
    let (repo, base) = repo_with_base();
    repo.write("routes.yaml", HEAD);

    let run = repo.diff(&["--base", "main", "--format", "markdown"]);
    assert_eq!(run.code, 2, "{run:?}");
    let md = &run.stdout;
    assert!(
        md.starts_with(&format!(
            "### capstan diff: 1 added, 2 changed, 1 removed, 0 unchanged\n\n\
             <code>main ({})</code> → <code>working tree</code>\n\n",
            short(&base)
        )),
        "{run:?}"
    );
    let table = "\
| | Route | Change | Fields |
|---|---|---|---|
| ~ | <code>api:3000</code> | Changed | <code>timeouts.server</code>: <code>\"2m\"</code> → <code>\"5m\"</code> |
| + | <code>go-demo:8080</code> | Added |  |
| - | <code>old:9000</code> | Removed |  |
| ~ | <code>web:80</code> | Changed | <code>balance</code>: <code>(unset)</code> → <code>\"leastconn\"</code> |
";
    assert!(md.contains(table), "{run:?}");
    let details = position(
        md,
        "<details><summary>haproxy.cfg diff</summary>\n\n```diff\n--- base/haproxy.cfg\n+++ head/haproxy.cfg\n",
    );
    assert!(position(md, table) < details, "{run:?}");
    assert!(
        md[details..].contains("\n+#   /demo go-demo-be8080\n"),
        "{run:?}"
    );
    assert!(md.ends_with("\n```\n\n</details>\n"), "{run:?}");
}

#[test]
fn diff_json_has_routes_fields_sides_and_config_diff() {
    let (repo, base) = repo_with_base();
    repo.write("routes.yaml", HEAD);

    let run = repo.diff(&["--base", "main", "--format", "json"]);
    assert_eq!(run.code, 2, "{run:?}");
    let json = run.json();
    assert_eq!(json["capstan_diff"], 1);
    assert_eq!(json["status"], "changes");
    assert_eq!(
        json["summary"],
        serde_json::json!({
            "added": 1, "changed": 2, "removed": 1, "unchanged": 0, "settings_changed": 0
        })
    );
    assert_eq!(json["base"]["commit"], base.as_str());
    assert_eq!(json["base"]["commit"].as_str().unwrap().len(), 40);
    assert_eq!(json["base"]["label"], format!("main ({})", short(&base)));
    assert_eq!(json["base"]["routes"], 3);
    assert_eq!(json["head"]["label"], "working tree");
    assert!(json["head"].get("commit").is_none(), "{run:?}");
    assert_eq!(json["head"]["routes"], 3);
    assert_eq!(
        json["routes"],
        serde_json::json!([
            {
                "route": "api:3000",
                "change": "changed",
                "fields": [{ "field": "timeouts.server", "old": "2m", "new": "5m" }],
            },
            { "route": "go-demo:8080", "change": "added" },
            { "route": "old:9000", "change": "removed" },
            {
                "route": "web:80",
                "change": "changed",
                "fields": [{ "field": "balance", "old": null, "new": "leastconn" }],
            },
        ])
    );
    assert_eq!(json["settings"], serde_json::json!([]));
    let config_diff = json["config_diff"].as_str().unwrap();
    assert!(
        config_diff.starts_with("--- base/haproxy.cfg\n+++ head/haproxy.cfg\n@@ "),
        "{config_diff}"
    );
    assert!(
        config_diff.contains("\n+#   /demo go-demo-be8080\n"),
        "{config_diff}"
    );
}

#[test]
fn diff_of_a_settings_only_change_lists_it_under_settings() {
    let repo = Repo::new();
    let routes = "version: 1\nroutes:\n  - service: web\n    port: 80\n    paths: [/]\n";
    repo.write("routes.yaml", routes);
    repo.commit("base");
    repo.write(
        "routes.yaml",
        &format!("{routes}defaults:\n  timeouts:\n    server: 1m\n"),
    );

    let run = repo.diff(&["--base", "main"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains(
            "\n  settings:\n      defaults.timeouts.server: \"30s\" → \"1m\"\n\
             0 added, 0 changed, 0 removed, 1 unchanged; 1 settings changed\n"
        ),
        "{run:?}"
    );
    assert!(!run.stdout.contains("  ~ "), "{run:?}");
    assert!(
        run.stdout
            .contains("\n-    timeout server 30s\n+    timeout server 1m\n"),
        "{run:?}"
    );

    let run = repo.diff(&["--base", "main", "--format", "markdown"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.starts_with(
            "### capstan diff: 0 added, 0 changed, 0 removed, 1 unchanged; 1 settings changed\n"
        ),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(
            "Settings:\n\n- <code>defaults.timeouts.server</code>: <code>\"30s\"</code> → <code>\"1m\"</code>\n"
        ),
        "{run:?}"
    );
    assert!(!run.stdout.contains("| Route |"), "{run:?}");

    let json = repo.diff(&["--base", "main", "--format", "json"]).json();
    assert_eq!(json["status"], "changes");
    assert_eq!(json["routes"], serde_json::json!([]));
    assert_eq!(
        json["settings"],
        serde_json::json!([{ "field": "defaults.timeouts.server", "old": "30s", "new": "1m" }])
    );
    assert_eq!(json["summary"]["settings_changed"], 1);
    assert_eq!(json["summary"]["unchanged"], 1);
}

const OLD_HASH: &str = "$6$saltsaltsalt$OLDoldOLDoldOLDoldOLDoldOLDoldOLDold";
const NEW_HASH: &str = "$6$peppepperpepp$NEWnewNEWnewNEWnewNEWnewNEWnewNEWnew";

fn routes_with_hash(hash: &str) -> String {
    format!(
        "version: 1
userlists:
  ops:
    - name: admin
      password_hash: {hash}
routes:
  - service: grafana
    port: 3000
    paths: [/grafana]
    auth:
      userlist: ops
"
    )
}

/// `hash <first 4 bytes of the SHA-256 of the hash, in hex>`.
fn fingerprint(hash: &str) -> String {
    let digest = Sha256::digest(hash.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("hash {hex}")
}

/// A repository whose `main` has OLD_HASH and whose working tree has NEW_HASH.
fn repo_with_password_change() -> Repo {
    let repo = Repo::new();
    repo.write("routes.yaml", &routes_with_hash(OLD_HASH));
    repo.commit("base");
    repo.write("routes.yaml", &routes_with_hash(NEW_HASH));
    repo
}

#[test]
fn diff_of_a_password_change_summarises_it_by_fingerprint() {
    let repo = repo_with_password_change();
    let (old, new) = (fingerprint(OLD_HASH), fingerprint(NEW_HASH));

    let run = repo.diff(&["--base", "main"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "  settings:\n      userlists.ops.admin: \"{old}\" → \"{new}\"\n\
             0 added, 0 changed, 0 removed, 1 unchanged; 1 settings changed\n"
        )),
        "{run:?}"
    );

    let run = repo.diff(&["--base", "main", "--format", "markdown"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "- <code>userlists.ops.admin</code>: <code>\"{old}\"</code> → <code>\"{new}\"</code>\n"
        )),
        "{run:?}"
    );

    let json = repo.diff(&["--base", "main", "--format", "json"]).json();
    assert_eq!(
        json["settings"],
        serde_json::json!([{ "field": "userlists.ops.admin", "old": old, "new": new }])
    );
    assert_eq!(json["routes"], serde_json::json!([]));
}

/// The hashes must not appear anywhere, the haproxy.cfg diff included: a PR
/// comment never carries them.
#[test]
fn diff_of_a_password_change_never_prints_the_hashes() {
    let repo = repo_with_password_change();
    for format in ["text", "markdown", "json"] {
        let run = repo.diff(&["--base", "main", "--format", format]);
        assert_eq!(run.code, 2, "{format}: {run:?}");
        for secret in [OLD_HASH, NEW_HASH, "OLDoldOLDold", "NEWnewNEWnew"] {
            assert!(
                !run.all().contains(secret),
                "{format} output prints the password hash {secret:?}:\n{run:?}"
            );
        }
    }
}

/// A scratch directory holding one routes file.
fn dir_with(file: &str, text: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), text).unwrap();
    dir
}

fn example() -> String {
    std::fs::read_to_string(manifest_path("routes.yaml")).unwrap()
}

fn manifest_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(file)
}

#[test]
fn validate_reports_valid_files_and_every_problem_with_file_line() {
    let dir = dir_with("routes.yaml", &example());

    let run = capstan(dir.path(), &["validate"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "routes.yaml: valid, 5 route(s)\n");
    assert_eq!(run.stderr, "");

    let run = capstan_stdin(dir.path(), &["validate", "-"], &example());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.ends_with(": valid, 5 route(s)\n"), "{run:?}");

    std::fs::write(dir.path().join("broken.yaml"), INVALID).unwrap();
    let run = capstan(dir.path(), &["validate", "broken.yaml"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    for error in INVALID_ERRORS {
        let error = error.replace("routes.yaml:", "broken.yaml:");
        assert!(run.stderr.contains(&format!("{error}\n")), "{run:?}");
    }
    assert!(
        run.stderr.contains("error: broken.yaml: 2 problem(s)\n"),
        "{run:?}"
    );

    let run = capstan_stdin(dir.path(), &["validate", "-"], INVALID);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("<stdin>:7:11: routes[1].port: 70000 is greater than the maximum of 65535"),
        "{run:?}"
    );

    let empty = tempfile::tempdir().unwrap();
    let run = capstan(empty.path(), &["validate"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("error: reading routes.yaml"), "{run:?}");
}

#[test]
fn render_prints_a_deterministic_config_or_file_line_errors() {
    let dir = dir_with("routes.yaml", &example());

    let run = capstan(dir.path(), &["render"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
    let config = run.stdout;
    assert!(
        config.starts_with("# Rendered by capstan. Do not edit"),
        "{config}"
    );
    // The routing table follows the config: the map files' entries.
    assert!(
        config.contains("\n# /etc/haproxy/maps/prefix.map:\n#   /demo go-demo-be8080\n"),
        "{config}"
    );
    assert!(config.contains("\nbackend go-demo-be8080\n"), "{config}");

    // Same input, same bytes; from a file or from stdin.
    assert_eq!(capstan(dir.path(), &["render"]).stdout, config);
    let run = capstan_stdin(dir.path(), &["render", "-"], &example());
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, config);

    // Reordered routes render to the same config.
    let reordered = dir_with("a.yaml", BASE);
    std::fs::write(reordered.path().join("b.yaml"), BASE_REORDERED).unwrap();
    let a = capstan(reordered.path(), &["render", "a.yaml"]);
    let b = capstan(reordered.path(), &["render", "b.yaml"]);
    assert_eq!((a.code, b.code), (0, 0), "{a:?}{b:?}");
    assert_eq!(a.stdout, b.stdout);

    let broken = dir_with("routes.yaml", INVALID);
    let run = capstan(broken.path(), &["render"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    for error in INVALID_ERRORS {
        assert!(run.stderr.contains(&format!("{error}\n")), "{run:?}");
    }
    assert!(
        run.stderr.contains("error: routes.yaml: 2 problem(s)"),
        "{run:?}"
    );
}

/// `capstan render | head -1` must not panic when the reader goes away.
#[test]
fn render_into_a_closed_pipe_does_not_panic() {
    let dir = dir_with("routes.yaml", &example());
    let mut child = capstan_command(dir.path(), &["render"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("capstan runs");
    // Close the read end before capstan writes anything.
    drop(child.stdout.take());
    let run = Run::from(child.wait_with_output().expect("capstan exits"));
    assert!(!run.stderr.contains("panicked"), "{run:?}");
}

#[test]
fn schema_prints_the_committed_schema() {
    let empty = tempfile::tempdir().unwrap();
    let run = capstan(empty.path(), &["schema"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let committed = std::fs::read_to_string(manifest_path("schema/routes.schema.json")).unwrap();
    assert_eq!(run.stdout, committed);
    let schema: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(schema["title"], "capstan routes.yaml");
}

#[test]
fn plan_without_a_file_in_an_empty_directory_plans_the_embedded_example() {
    let empty = tempfile::tempdir().unwrap();

    let run = capstan(empty.path(), &["plan"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("no ./routes.yaml: planning the example table built into capstan"),
        "{run:?}"
    );
    let expected = "\
  + api:3000      Added
  + db:5432       Added
  + go-demo:8080  Added
  + grafana:3000  Added
  + web:80        Added
";
    assert!(run.stdout.contains(expected), "{run:?}");
    assert!(
        run.stdout
            .contains("\n5 added, 0 changed, 0 removed, 0 unchanged; "),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("\n+#   /demo go-demo-be8080\n"),
        "{run:?}"
    );

    let run = capstan(empty.path(), &["plan", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    assert_eq!(json["status"], "changes");
    assert_eq!(json["summary"]["added"], 5);
    assert_eq!(json["head"]["routes"], 5);

    // With ./routes.yaml present, plan uses it instead.
    std::fs::write(empty.path().join("routes.yaml"), HEAD).unwrap();
    let run = capstan(empty.path(), &["plan"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("example"), "{run:?}");
    assert!(
        run.stdout
            .contains("3 added, 0 changed, 0 removed, 0 unchanged\n"),
        "{run:?}"
    );

    // A broken file: file:line errors and exit 1.
    std::fs::write(empty.path().join("routes.yaml"), INVALID).unwrap();
    let run = capstan(empty.path(), &["plan"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(INVALID_ERRORS[0]), "{run:?}");
}

/// `haproxy` of a JSON diff report: what applying it costs HAProxy.
fn impact(run: &Run) -> Value {
    assert_eq!(run.code, 2, "{run:?}");
    run.json()["haproxy"].clone()
}

#[test]
fn diff_says_a_path_added_to_an_existing_service_applies_live() {
    let (repo, _) = repo_with_base();
    repo.write("routes.yaml", &BASE.replace("[/api]", "[/api, /v2]"));

    let run = repo.diff(&["--base", "main"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains(
            "0 added, 1 changed, 0 removed, 2 unchanged\nHAProxy: applies live: 1 map entry\n"
        ),
        "{run:?}"
    );
    assert_eq!(
        impact(&repo.diff(&["--base", "main", "--format", "json"])),
        serde_json::json!({
            "method": "runtime", "map_entries": 1, "servers": 0, "certificates": 0, "reasons": [],
        })
    );
    // In the pull-request comment, right under the sides, before the table.
    let md = repo
        .diff(&["--base", "main", "--format", "markdown"])
        .stdout;
    assert!(
        md.contains("</code>\n\n**HAProxy:** applies live: 1 map entry\n\n| | Route |"),
        "{md}"
    );

    // Fixed servers move at run time too.
    let fixed = |address: &str| {
        BASE.replace(
            "    paths: [/old]\n",
            &format!("    paths: [/old]\n    servers: [{address}]\n"),
        )
    };
    repo.write("routes.yaml", &fixed("10.0.0.1:9000"));
    let base = repo.commit("fixed server");
    repo.write(
        "routes.yaml",
        &fixed("10.0.0.2:9000").replace("[/api]", "[/api, /v2, /v3]"),
    );
    let run = repo.diff(&["--base", &base]);
    assert!(
        run.stdout
            .contains("\nHAProxy: applies live: 2 map entries, 1 server\n"),
        "{run:?}"
    );
    let json = impact(&repo.diff(&["--base", &base, "--format", "json"]));
    assert_eq!(json["method"], "runtime");
    assert_eq!(
        (json["map_entries"].as_u64(), json["servers"].as_u64()),
        (Some(2), Some(1))
    );
}

#[test]
fn diff_says_a_new_service_needs_a_reload_and_names_its_backend() {
    let (repo, _) = repo_with_base();
    repo.write(
        "routes.yaml",
        &format!("{BASE}  - service: shop\n    port: 3000\n    paths: [/shop]\n"),
    );

    let run = repo.diff(&["--base", "main"]);
    assert!(
        run.stdout
            .contains(&format!("\nHAProxy: 1 reload, because: {NO_SPARE}\n")),
        "{run:?}"
    );
    assert_eq!(
        impact(&repo.diff(&["--base", "main", "--format", "json"])),
        serde_json::json!({
            "method": "reload", "map_entries": 0, "servers": 0, "certificates": 0,
            "reasons": [NO_SPARE],
        })
    );
    let md = repo
        .diff(&["--base", "main", "--format", "markdown"])
        .stdout;
    assert!(
        md.contains(&format!(
            "\n**HAProxy:** 1 reload, because: <code>{NO_SPARE}</code>\n"
        )),
        "{md}"
    );

    // A removed service is not: its path leaves the map, its backend
    // stays loaded, unused, until the next reload.
    repo.write(
        "routes.yaml",
        &BASE.replace("  - service: old\n    port: 9000\n    paths: [/old]\n", ""),
    );
    let json = impact(&repo.diff(&["--base", "main", "--format", "json"]));
    assert_eq!(json["method"], "runtime", "{json:#}");
    assert_eq!(json["map_entries"], 1, "{json:#}");
    assert_eq!(json["reasons"], serde_json::json!([]));
}

/// Why a new service served at its name reloads: no spare backend can take a name.
const NO_SPARE: &str = "backend shop-be3000 added (no spare backend: server shop:3000 is a name)";

#[test]
fn diff_says_why_a_change_reloads_and_quotes_the_line_but_not_a_timeout_change() {
    let (repo, _) = repo_with_base();
    // HEAD changes api's timeout, web's balance, and swaps old for go-demo.
    repo.write("routes.yaml", HEAD);

    let run = repo.diff(&["--base", "main"]);
    let haproxy = run
        .stdout
        .lines()
        .find(|l| l.starts_with("HAProxy: "))
        .unwrap_or_else(|| panic!("{run:?}"));
    assert!(
        haproxy.starts_with("HAProxy: 1 reload, because: "),
        "{run:?}"
    );
    assert!(
        haproxy.contains("backend web-be80: -balance roundrobin, +balance leastconn"),
        "{run:?}"
    );
    let json = impact(&repo.diff(&["--base", "main", "--format", "json"]));
    assert_eq!(json["method"], "reload");
    let reasons: Vec<&str> = json["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for reason in [
        "backend web-be80: -balance roundrobin, +balance leastconn",
        "backend go-demo-be8080 added",
        "backend old-be9000 removed",
    ] {
        assert!(reasons.contains(&reason), "{reason:?} in {reasons:?}");
    }
    // api's server timeout is a map entry HAProxy takes at run time.
    assert!(
        !reasons.iter().any(|r| r.contains("api-be3000")),
        "{reasons:?}"
    );
}

#[test]
fn diff_says_a_server_timeout_change_alone_applies_live() {
    let (repo, _) = repo_with_base();
    repo.write("routes.yaml", &BASE.replace("server: 2m", "server: 5m"));
    let run = repo.diff(&["--base", "main"]);
    assert!(
        run.stdout.contains("\nHAProxy: applies live: 1 map entry"),
        "{run:?}"
    );
    let json = impact(&repo.diff(&["--base", "main", "--format", "json"]));
    assert_eq!(json["method"], "runtime", "{json:#}");
    assert_eq!(json["map_entries"], 1, "{json:#}");
    assert_eq!(json["reasons"], serde_json::json!([]), "{json:#}");
}

#[test]
fn diff_without_changes_says_nothing_changes_in_haproxy() {
    let (repo, _) = repo_with_base();
    repo.write("routes.yaml", BASE_REORDERED);
    let run = repo.diff(&["--base", "main", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["haproxy"]["method"], "nothing");
    assert_eq!(run.json()["haproxy"]["reasons"], serde_json::json!([]));
}

#[test]
fn diff_live_foretells_what_applying_costs_and_the_apply_agrees() {
    support::require_tools();
    let stand = support::OneRoute::start();
    let capstan = &stand.capstan;
    let work = stand.remote.dir.path().join("work");
    let a = stand.a.address();
    let reloads = capstan.haproxy_reloads();
    // Pushed, and announced the way a git host does.
    let apply = |routes: &str| {
        let commit = stand.remote.push(routes);
        assert_eq!(
            support::http_post(capstan.api_port, "/v1/webhook/git", "{}"),
            Some(202)
        );
        support::wait_applied(capstan, &commit);
    };

    // Another path to the same backend: a map entry, no reload.
    let more_paths = support::routes_yaml(stand.http, &support::route("a", "/a, /a2", &a));
    std::fs::write(work.join("routes.yaml"), &more_paths).unwrap();
    let (code, report) = capstan.diff_live(&work);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(report["haproxy"]["method"], "runtime", "{report:#}");
    assert_eq!(report["haproxy"]["map_entries"], 1, "{report:#}");
    apply(&more_paths);
    support::wait_for_backend(stand.http, "/a2", "A");
    assert_eq!(capstan.status()["history"][0]["method"], "runtime");
    assert_eq!(capstan.haproxy_reloads(), reloads);

    // A new service on a fixed address: a spare backend serves it, no reload.
    let b = support::route("b", "/b", &a);
    let new_service = support::routes_yaml(
        stand.http,
        &format!("{}{b}", support::route("a", "/a, /a2", &a)),
    );
    std::fs::write(work.join("routes.yaml"), &new_service).unwrap();
    let (code, report) = capstan.diff_live(&work);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(report["haproxy"]["method"], "runtime", "{report:#}");
    assert_eq!(report["haproxy"]["servers"], 1, "{report:#}");
    apply(&new_service);
    support::wait_for_backend(stand.http, "/b", "A");
    assert_eq!(capstan.status()["history"][0]["method"], "runtime");
    assert_eq!(capstan.haproxy_reloads(), reloads);

    // A server timeout of its own: a timeout map entry, no reload.
    let timeouts = |lines: &str| {
        support::routes_yaml(
            stand.http,
            &format!(
                "{}{b}    timeouts:\n{lines}",
                support::route("a", "/a, /a2", &a)
            ),
        )
    };
    let timeout = timeouts("      server: 2m\n");
    std::fs::write(work.join("routes.yaml"), &timeout).unwrap();
    let (code, report) = capstan.diff_live(&work);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(report["haproxy"]["method"], "runtime", "{report:#}");
    assert_eq!(report["haproxy"]["map_entries"], 1, "{report:#}");
    apply(&timeout);
    assert_eq!(capstan.status()["history"][0]["method"], "runtime");
    assert_eq!(capstan.haproxy_reloads(), reloads);

    // A setting HAProxy cannot change at run time: a reload, which quotes the line.
    let connect = timeouts("      server: 2m\n      connect: 2s\n");
    std::fs::write(work.join("routes.yaml"), &connect).unwrap();
    let (code, report) = capstan.diff_live(&work);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(report["haproxy"]["method"], "reload", "{report:#}");
    assert_eq!(
        report["haproxy"]["reasons"],
        serde_json::json!(["backend b-be80: +timeout connect 2s"]),
        "{report:#}"
    );
    apply(&connect);
    assert_eq!(capstan.status()["history"][0]["method"], "reload");
    assert_eq!(capstan.haproxy_reloads(), reloads + 1);
}
