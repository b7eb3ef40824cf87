//! `capstan status --all-replicas` and `Swarm::this_task` where capstan is
//! no Swarm task: a process on the Docker host itself. (In Swarm, the
//! replicas of a capstan service answer it; see the README.)

mod support;

use std::time::Duration;

use capstan::sources::swarm::Swarm;
use support::*;

/// `capstan status <args>`: (exit code, stdout, stderr).
fn status_cli(args: &[&str]) -> (Option<i32>, String, String) {
    run_capstan(&[&["status"], args].concat())
}

#[test]
fn all_replicas_of_a_capstan_that_is_no_swarm_task_is_a_clear_error() {
    require_tools();
    let stand = OneRoute::start();
    let capstan = &stand.capstan;
    // This host has a Docker socket: capstan looks itself up, and finds no task.
    wait_until(
        "capstan looked for its Swarm task",
        Duration::from_secs(30),
        || capstan.log().contains("not running as a Swarm task"),
    );
    let status = capstan.status();
    assert!(status.get("replica").is_none(), "{status}");
    let marker = status["applied"]["marker"].as_str().unwrap_or_default();
    assert_eq!(marker.len(), 16, "the applied config's marker: {status}");

    let (code, out, _) = status_cli(&["--url", &capstan.url()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("(marker {marker})")), "{out}");
    assert!(!out.contains("replica:"), "{out}");

    for json in [false, true] {
        let mut args = vec!["--url".to_string(), capstan.url(), "--all-replicas".into()];
        if json {
            args.push("--json".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = status_cli(&args);
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(out.is_empty(), "{out}");
        assert!(
            err.contains("this capstan is not a Swarm task: --all-replicas needs"),
            "{err}"
        );
        assert!(err.contains("--service"), "says how else: {err}");
    }
}

#[tokio::test]
async fn this_task_on_the_docker_host_is_none() {
    let docker = Swarm::connect()
        .await
        .expect("the tests need this machine's Docker Engine");
    assert_eq!(docker.this_task().await.unwrap(), None);
}
