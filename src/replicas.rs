//! `capstan status --all-replicas`: the statuses of every replica of a
//! Swarm service side by side, and whether they all serve the same thing.
//! Pure: the command asks the replicas and hands their answers here.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::reconcile::Status;
use crate::report::is_healthy;
use crate::sources::RevisionInfo;

/// What one replica answered, or why it did not.
#[derive(Debug, Clone)]
pub struct ReplicaAnswer {
    /// Where it was asked, `ip:port`.
    pub address: String,
    pub status: Result<Status, String>,
}

/// Every replica of a service, in slot order (then global services'
/// tasks, then statuses without a task, then unreachable replicas).
#[derive(Debug, Clone)]
pub struct Replicas {
    pub service: String,
    pub answers: Vec<ReplicaAnswer>,
    /// How many tasks Swarm wants running, when the Engine could be asked:
    /// DNS lists only the tasks Swarm counts running (healthy), so fewer
    /// answers than this means replicas are missing.
    pub wanted: Option<usize>,
}

/// What a replica serves: its applied revision and config marker.
type Served<'a> = Option<(&'a RevisionInfo, &'a str)>;

fn served(status: &Status) -> Served<'_> {
    let applied = status.applied.as_ref()?;
    Some((&applied.revision, applied.marker.as_str()))
}

/// A revision as one short word: its commit, else its label (a file's hash).
fn revision_word(revision: &RevisionInfo) -> &str {
    match &revision.commit {
        Some(commit) => commit.get(..7).unwrap_or(commit),
        None => &revision.label,
    }
}

fn served_text(served: Served<'_>) -> String {
    match served {
        Some((revision, marker)) => format!("{} (marker {marker})", revision_word(revision)),
        None => "nothing applied".to_string(),
    }
}

/// `<service>.<slot>.<task id>`: the slot, for ordering (none for global services).
fn slot(status: &Status) -> Option<u64> {
    let task = status.replica.as_ref()?;
    task.task_name.rsplit('.').nth(1)?.parse().ok()
}

impl Replicas {
    pub fn new(service: String, mut answers: Vec<ReplicaAnswer>, wanted: Option<usize>) -> Self {
        answers.sort_by_cached_key(|a| {
            let status = a.status.as_ref().ok();
            let slot = status.and_then(slot);
            let task = status
                .and_then(|s| s.replica.as_ref())
                .map(|r| r.task_name.clone());
            (
                status.is_none(),
                slot.is_none(),
                slot,
                task.is_none(),
                task,
                a.address.clone(),
            )
        });
        Self {
            service,
            answers,
            wanted,
        }
    }

    fn statuses(&self) -> impl Iterator<Item = &Status> {
        self.answers.iter().filter_map(|a| a.status.as_ref().ok())
    }

    /// How many replicas serve each (revision, marker), most served first.
    fn served_counts(&self) -> Vec<(Served<'_>, usize)> {
        let mut counts: Vec<(Served<'_>, usize)> = Vec::new();
        for status in self.statuses() {
            let served = served(status);
            match counts.iter_mut().find(|(s, _)| *s == served) {
                Some((_, count)) => *count += 1,
                None => counts.push((served, 1)),
            }
        }
        // Stable: equal counts keep the replicas' order.
        counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        counts
    }

    /// Replicas Swarm wants that DNS did not list (not running, or not
    /// healthy yet).
    fn missing(&self) -> usize {
        self.wanted
            .map_or(0, |wanted| wanted.saturating_sub(self.answers.len()))
    }

    /// Every replica Swarm wants answered, is healthy (see [`is_healthy`])
    /// and serves the same revision with the same config: `capstan status
    /// --all-replicas` exits 0.
    pub fn all_in_sync(&self) -> bool {
        let served = self.served_counts();
        !self.answers.is_empty()
            && self.missing() == 0
            && self
                .answers
                .iter()
                .all(|a| a.status.as_ref().is_ok_and(is_healthy))
            && matches!(served.as_slice(), [(Some(_), _)])
    }

    /// One line: all in sync at what, or what differs.
    pub fn summary(&self) -> String {
        let total = self.answers.len();
        let replicas = if total == 1 { "replica" } else { "replicas" };
        let served = self.served_counts();
        if self.all_in_sync() {
            return format!(
                "{total} {replicas}, all in sync at {}",
                served_text(served[0].0)
            );
        }
        let mut problems = Vec::new();
        if self.missing() > 0 {
            problems.push(format!(
                "{} of the {} Swarm wants not running yet",
                self.missing(),
                self.wanted.unwrap_or_default()
            ));
        }
        let unreachable = total - self.statuses().count();
        if unreachable > 0 {
            problems.push(format!("{unreachable} unreachable"));
        }
        let unhealthy = self.statuses().filter(|s| !is_healthy(s)).count();
        if unhealthy > 0 {
            problems.push(format!("{unhealthy} not in sync"));
        }
        if served.len() > 1 {
            let spread: Vec<String> = served
                .iter()
                .map(|(served, count)| format!("{} on {count}", served_text(*served)))
                .collect();
            problems.push(format!("serving differs: {}", spread.join(", ")));
        } else if let [(None, _)] = served.as_slice() {
            problems.push("nothing applied".to_string());
        }
        format!(
            "{total} {replicas} of service {}, NOT all in sync: {}",
            self.service,
            problems.join("; ")
        )
    }

    /// A table, one row per replica with its errors under it, and the summary.
    pub fn text(&self) -> String {
        let mut rows = vec![
            [
                "TASK",
                "NODE",
                "ADDRESS",
                "APPLIED",
                "MARKER",
                "IN SYNC",
                "OVERRIDES",
            ]
            .map(String::from)
            .to_vec(),
        ];
        let mut details = vec![Vec::new()];
        for answer in &self.answers {
            let (row, detail) = match &answer.status {
                Ok(status) => row(&answer.address, status),
                Err(error) => (
                    vec![
                        "-".into(),
                        "-".into(),
                        answer.address.clone(),
                        "UNREACHABLE".into(),
                    ],
                    vec![format!("unreachable: {error}")],
                ),
            };
            rows.push(row);
            details.push(detail);
        }
        let columns = rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                rows.iter()
                    .filter_map(|r| r.get(c))
                    .map(String::len)
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (row, detail) in rows.iter().zip(&details) {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                let _ = write!(line, "{cell:width$}  ");
            }
            let _ = writeln!(out, "{}", line.trim_end());
            for d in detail {
                let _ = writeln!(out, "    {d}");
            }
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }

    /// The answers as JSON: each replica's status as `GET /v1/status`
    /// gives it, or the error that kept it from answering.
    pub fn json(&self) -> Value {
        let replicas: Vec<Value> = self
            .answers
            .iter()
            .map(|a| match &a.status {
                Ok(status) => json!({"address": a.address, "status": status}),
                Err(error) => json!({"address": a.address, "error": error}),
            })
            .collect();
        json!({
            "service": self.service,
            "wanted": self.wanted,
            "all_in_sync": self.all_in_sync(),
            "summary": self.summary(),
            "replicas": replicas,
        })
    }
}

/// A replica's table row, and the errors to show under it.
fn row(address: &str, status: &Status) -> (Vec<String>, Vec<String>) {
    let task = status.replica.as_ref();
    let applied = status.applied.as_ref();
    let row = vec![
        task.map_or("-", |t| t.task_name.as_str()).to_string(),
        task.map_or("-", |t| t.node()).to_string(),
        address.to_string(),
        applied
            .map_or("-", |a| revision_word(&a.revision))
            .to_string(),
        applied
            .map(|a| a.marker.as_str())
            .filter(|m| !m.is_empty())
            .unwrap_or("-")
            .to_string(),
        if is_healthy(status) { "yes" } else { "NO" }.to_string(),
        status.overrides.len().to_string(),
    ];
    let mut details = Vec::new();
    if let Some(error) = &status.last_error {
        details.push(format!("error: [{}] {}", error.stage, error.message));
    }
    if let Some(error) = &status.fetch.error {
        details.push(format!("fetch failing: {error}"));
    }
    (row, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica's status as `GET /v1/status` gives it.
    fn status(slot: u32, commit: &str, marker: &str, in_sync: bool) -> Status {
        serde_json::from_value(json!({
            "replica": {
                "service_id": "s1", "service_name": "proxy",
                "task_id": format!("task{slot}"), "task_name": format!("proxy.{slot}.task{slot}"),
                "node_id": "n1", "node_hostname": format!("node-{slot}"),
            },
            "source": {"kind": "git", "location": "https://example.com/r.git", "branch": "main", "file": "routes.yaml"},
            "desired": {"label": format!("main ({commit})"), "commit": commit},
            "applied": {
                "revision": {"label": format!("main ({})", &commit[..7]), "commit": commit},
                "marker": marker, "at": "2026-11-25T11:22:33Z",
            },
            "in_sync": in_sync,
        }))
        .unwrap()
    }

    const C1: &str = "1a2b3c4d5e6f1a2b3c4d5e6f1a2b3c4d5e6f1a2b";
    const C2: &str = "9f8e7d6c5b4a9f8e7d6c5b4a9f8e7d6c5b4a9f8e";

    /// The replicas answering, all that Swarm wants.
    fn replicas(answers: Vec<(&str, Result<Status, String>)>) -> Replicas {
        let wanted = answers.len();
        Replicas::new(
            "proxy".into(),
            answers
                .into_iter()
                .map(|(address, status)| ReplicaAnswer {
                    address: address.into(),
                    status,
                })
                .collect(),
            Some(wanted),
        )
    }

    #[test]
    fn fewer_answers_than_swarm_wants_is_not_in_sync() {
        let two = Replicas {
            wanted: Some(3),
            ..replicas(vec![
                ("10.0.1.11:8080", Ok(status(1, C1, "m1", true))),
                ("10.0.1.12:8080", Ok(status(2, C1, "m1", true))),
            ])
        };
        assert!(!two.all_in_sync());
        assert_eq!(
            two.summary(),
            "2 replicas of service proxy, NOT all in sync: 1 of the 3 Swarm wants not running yet"
        );
        let unknown = Replicas {
            wanted: None,
            ..two
        };
        assert!(
            unknown.all_in_sync(),
            "without the Engine, DNS is all there is"
        );
    }

    #[test]
    fn replicas_serving_the_same_commit_and_config_are_all_in_sync() {
        let all = replicas(vec![
            ("10.0.1.12:8080", Ok(status(2, C1, "m1", true))),
            ("10.0.1.11:8080", Ok(status(1, C1, "m1", true))),
            ("10.0.1.13:8080", Ok(status(3, C1, "m1", true))),
        ]);
        assert!(all.all_in_sync());
        assert_eq!(
            all.text(),
            "\
TASK           NODE    ADDRESS         APPLIED  MARKER  IN SYNC  OVERRIDES
proxy.1.task1  node-1  10.0.1.11:8080  1a2b3c4  m1      yes      0
proxy.2.task2  node-2  10.0.1.12:8080  1a2b3c4  m1      yes      0
proxy.3.task3  node-3  10.0.1.13:8080  1a2b3c4  m1      yes      0
3 replicas, all in sync at 1a2b3c4 (marker m1)
"
        );
        let json = all.json();
        assert_eq!(json["all_in_sync"], true);
        assert_eq!(
            json["replicas"][0]["status"]["replica"]["task_name"],
            "proxy.1.task1"
        );
    }

    #[test]
    fn a_replica_at_another_commit_is_named() {
        // Each in sync with what it fetched, yet they serve different commits
        // (one fetched before the push).
        let differ = replicas(vec![
            ("10.0.1.11:8080", Ok(status(1, C1, "m1", true))),
            ("10.0.1.12:8080", Ok(status(2, C2, "m2", true))),
            ("10.0.1.13:8080", Ok(status(3, C1, "m1", true))),
        ]);
        assert!(!differ.all_in_sync());
        assert_eq!(
            differ.summary(),
            "3 replicas of service proxy, NOT all in sync: serving differs: 1a2b3c4 (marker m1) on 2, 9f8e7d6 (marker m2) on 1"
        );
        // The same commit with another config (e.g. an override on one replica).
        let marker = replicas(vec![
            ("a", Ok(status(1, C1, "m1", true))),
            ("b", Ok(status(2, C1, "m9", true))),
        ]);
        assert!(!marker.all_in_sync());
        assert!(
            marker.summary().contains("(marker m9) on 1"),
            "{}",
            marker.summary()
        );
    }

    #[test]
    fn an_unreachable_or_failing_replica_fails_the_whole() {
        let mut failing = status(2, C1, "m1", false);
        failing.last_error = serde_json::from_value(json!({
            "stage": "check", "message": "haproxy -c rejected the config", "at": "t",
        }))
        .unwrap();
        let some = replicas(vec![
            (
                "10.0.1.13:8080",
                Err("GET http://10.0.1.13:8080/v1/status: timed out".into()),
            ),
            ("10.0.1.12:8080", Ok(failing)),
            ("10.0.1.11:8080", Ok(status(1, C1, "m1", true))),
        ]);
        assert!(!some.all_in_sync());
        assert_eq!(
            some.text(),
            "\
TASK           NODE    ADDRESS         APPLIED      MARKER  IN SYNC  OVERRIDES
proxy.1.task1  node-1  10.0.1.11:8080  1a2b3c4      m1      yes      0
proxy.2.task2  node-2  10.0.1.12:8080  1a2b3c4      m1      NO       0
    error: [check] haproxy -c rejected the config
-              -       10.0.1.13:8080  UNREACHABLE
    unreachable: GET http://10.0.1.13:8080/v1/status: timed out
3 replicas of service proxy, NOT all in sync: 1 unreachable; 1 not in sync
"
        );
        assert_eq!(
            some.json()["replicas"][2]["error"],
            "GET http://10.0.1.13:8080/v1/status: timed out"
        );
        // Unreachable alone is enough.
        let one = replicas(vec![
            ("a", Ok(status(1, C1, "m1", true))),
            ("b", Err("refused".into())),
        ]);
        assert!(!one.all_in_sync());
    }

    #[test]
    fn nothing_applied_anywhere_is_not_in_sync() {
        let mut fresh = status(1, C1, "m1", true);
        fresh.applied = None;
        let none = replicas(vec![("a", Ok(fresh))]);
        assert!(!none.all_in_sync());
        assert_eq!(
            none.summary(),
            "1 replica of service proxy, NOT all in sync: nothing applied"
        );
        assert!(!replicas(vec![]).all_in_sync());
    }

    #[test]
    fn global_services_and_statuses_without_a_replica_sort_by_name_and_address() {
        let mut global = status(1, C1, "m1", true);
        global.replica.as_mut().unwrap().task_name = "proxy.n2x.task1".into();
        let mut anonymous = status(1, C1, "m1", true);
        anonymous.replica = None;
        let mixed = replicas(vec![
            ("b", Ok(anonymous)),
            ("a", Ok(global)),
            ("c", Ok(status(1, C1, "m1", true))),
        ]);
        let order: Vec<&str> = mixed.answers.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(order, ["c", "a", "b"]);
        assert!(mixed.text().contains("\n-  "), "{}", mixed.text());
    }
}
