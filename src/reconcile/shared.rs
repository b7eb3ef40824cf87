//! Replicas that share one truth: each follows the overrides the group
//! keeps in Swarm (see `sources::overrides::swarm_store`), and fetches git
//! when another replica received a push webhook.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::ReconcilerHandle;
use crate::sources::overrides::swarm_store::SwarmStore;

/// How often the shared overrides are read even without an event: events
/// are a hint (a stream reopened after a failure may have missed some).
const RESYNC: Duration = Duration::from_secs(30);
/// The first wait before reading again after a failed read.
const RETRY: Duration = Duration::from_secs(1);

/// Follows the group's overrides and push webhooks, forever.
pub async fn follow_shared(store: SwarmStore, handle: Arc<ReconcilerHandle>) {
    let (tx, mut wakeups) = mpsc::channel(1);
    let watcher = store.clone();
    tokio::spawn(async move { watcher.watch(tx).await });
    // The newest webhook passed on when this replica started is not news:
    // it fetches git at startup anyway.
    let mut fetch_seen: Option<Option<u64>> = None;
    let mut reported = BTreeSet::new();
    let mut failures = 0;
    loop {
        let wait = match handle.refresh_shared(&store).await {
            Ok(shared) => {
                if fetch_seen.is_some_and(|seen| shared.fetch > seen) {
                    tracing::info!("another replica received a push webhook: fetching git");
                    handle.request_fetch();
                }
                fetch_seen = Some(shared.fetch);
                for problem in shared.unreadable {
                    if reported.insert(problem.clone()) {
                        tracing::warn!(problem, "a shared override cannot be read; ignored");
                    }
                }
                handle.set_store_error(None);
                failures = 0;
                RESYNC
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the shared overrides");
                handle.set_store_error(Some(error.to_string()));
                failures += 1;
                crate::util::backoff(failures, RETRY, RESYNC)
            }
        };
        tokio::select! {
            woken = wakeups.recv() => if woken.is_none() {
                return;
            },
            () = tokio::time::sleep(wait) => {}
        }
    }
}
