//! Overrides in Swarm's own replicated (Raft) store, shared by every
//! replica of capstan's service: a reconfigure taken by one replica reaches
//! the others, and survives any task being rescheduled to another node.
//!
//! Each entry is a Swarm config object (immutable, up to 500 KB) labelled
//! with its group (the capstan service) and its key (`override:<service>`,
//! or `fetch` for a push webhook one replica received). A change creates a
//! new object, then removes the older objects of its key; removing an
//! override removes every object of its key. Readers take, per key, the
//! object with the highest `Version.Index`: the index of the Raft log
//! entry that created it, one order every manager agrees on. So two
//! replicas taking calls for one service at once resolve the same way on
//! every replica: the later write wins.
//!
//! Config objects live on the managers: the Engine refuses to list them on
//! a worker, so capstan's replicas run on manager nodes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use bollard::models::{Config, ConfigSpec};
use bollard::query_parameters::ListConfigsOptionsBuilder;
use tokio::sync::mpsc;

use super::{Override, OverrideSet, StoreError};
use crate::sources::swarm::{Swarm, SwarmError};

/// The label naming the group of capstans that share the entry.
pub const GROUP_LABEL: &str = "org.capstan.group";
/// The label naming what the entry is.
pub const KEY_LABEL: &str = "org.capstan.key";
/// The largest config object Swarm keeps.
pub const CONFIG_LIMIT: usize = 500 * 1024;

const OVERRIDE_KEY: &str = "override:";
const FETCH_KEY: &str = "fetch";

/// The group's overrides, in Swarm.
#[derive(Debug, Clone)]
pub struct SwarmStore {
    swarm: Swarm,
    group: String,
}

/// What the group shares, as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shared {
    pub overrides: OverrideSet,
    /// The index of the newest push webhook a replica passed on, if any.
    pub fetch: Option<u64>,
    /// Entries that could not be read, with why (they are left alone).
    pub unreadable: Vec<String>,
}

/// One config object of the group.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    id: String,
    index: u64,
    key: String,
    data: Vec<u8>,
}

impl SwarmStore {
    pub fn new(swarm: Swarm, group: String) -> Self {
        Self { swarm, group }
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn describe(&self) -> String {
        format!("Swarm config objects labelled {GROUP_LABEL}={}", self.group)
    }

    pub async fn load(&self) -> Result<Shared, StoreError> {
        Ok(decode(newest(self.entries(None).await?)))
    }

    /// Writes the services whose override differs between `from` and `to`.
    pub async fn save(&self, from: &OverrideSet, to: &OverrideSet) -> Result<(), StoreError> {
        let services: BTreeSet<&String> =
            from.overrides.keys().chain(to.overrides.keys()).collect();
        for service in services {
            let key = format!("{OVERRIDE_KEY}{service}");
            match (from.overrides.get(service), to.overrides.get(service)) {
                (before, Some(after)) if before != Some(after) => {
                    let data = serde_json::to_vec(after).expect("overrides serialize");
                    if data.len() > CONFIG_LIMIT {
                        return Err(StoreError::TooLarge {
                            service: service.clone(),
                            size: data.len(),
                            limit: CONFIG_LIMIT,
                        });
                    }
                    self.put(&key, data).await?;
                }
                (Some(_), None) => self.remove_key(&key, u64::MAX).await?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Tells the other replicas to fetch git now (this one got a push webhook).
    pub async fn signal_fetch(&self) -> Result<(), StoreError> {
        let at = crate::state::now();
        Ok(self
            .put(FETCH_KEY, format!("{{\"at\":\"{at}\"}}").into_bytes())
            .await?)
    }

    /// Wakes `tx` on every config event (and when the event stream was
    /// reopened), until `tx` is closed.
    pub async fn watch(&self, tx: mpsc::Sender<()>) {
        self.swarm.watch_events(&["config"], |_| true, tx).await;
    }

    /// Creates the newest entry of `key`, then removes the older ones.
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), SwarmError> {
        let spec = ConfigSpec {
            name: Some(self.config_name(key)),
            labels: Some(HashMap::from([
                (GROUP_LABEL.to_string(), self.group.clone()),
                (KEY_LABEL.to_string(), key.to_string()),
            ])),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..ConfigSpec::default()
        };
        let created = self
            .swarm
            .docker()
            .create_config(spec)
            .await
            .map_err(SwarmError::api("create config"))?
            .id;
        let index = self
            .entries(Some(key))
            .await?
            .into_iter()
            .find(|e| e.id == created)
            .map_or(0, |e| e.index);
        self.remove_key(key, index).await
    }

    /// Removes the entries of `key` older than `index`.
    async fn remove_key(&self, key: &str, index: u64) -> Result<(), SwarmError> {
        for entry in self.entries(Some(key)).await? {
            if entry.index >= index {
                continue;
            }
            match self.swarm.docker().delete_config(&entry.id).await {
                Ok(()) => {}
                // Another replica removed it first.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => return Err(SwarmError::api("remove config")(e)),
            }
        }
        Ok(())
    }

    /// The group's entries (of `key` only, when given).
    async fn entries(&self, key: Option<&str>) -> Result<Vec<Entry>, SwarmError> {
        let mut labels = vec![format!("{GROUP_LABEL}={}", self.group)];
        labels.extend(key.map(|key| format!("{KEY_LABEL}={key}")));
        let filters = HashMap::from([("label", labels)]);
        let configs = self
            .swarm
            .docker()
            .list_configs(Some(
                ListConfigsOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .map_err(SwarmError::api("list configs"))?;
        Ok(configs.into_iter().filter_map(entry).collect())
    }

    /// A name no other entry has: config names are unique in a Swarm.
    fn config_name(&self, key: &str) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let what = crate::util::sha256_hex_prefix(format!("{}\0{key}", self.group).as_bytes(), 6);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let unique = format!(
            "{nanos}\0{}\0{}\0{:?}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::env::var_os("HOSTNAME")
        );
        let unique = crate::util::sha256_hex_prefix(unique.as_bytes(), 8);
        format!("capstan-{what}-{unique}")
    }
}

/// A config object as an entry; `None` for one without the parts an entry has.
fn entry(config: Config) -> Option<Entry> {
    let spec = config.spec?;
    let key = spec.labels?.remove(KEY_LABEL)?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(spec.data.unwrap_or_default())
        .ok()?;
    Some(Entry {
        id: config.id?,
        index: config.version?.index?,
        key,
        data,
    })
}

/// The newest entry of each key.
fn newest(entries: Vec<Entry>) -> BTreeMap<String, Entry> {
    let mut newest: BTreeMap<String, Entry> = BTreeMap::new();
    for entry in entries {
        if newest
            .get(&entry.key)
            .is_none_or(|kept| entry.index > kept.index)
        {
            newest.insert(entry.key.clone(), entry);
        }
    }
    newest
}

fn decode(newest: BTreeMap<String, Entry>) -> Shared {
    let mut shared = Shared::default();
    for (key, entry) in newest {
        if key == FETCH_KEY {
            shared.fetch = Some(entry.index);
            continue;
        }
        let Some(service) = key.strip_prefix(OVERRIDE_KEY) else {
            continue;
        };
        match serde_json::from_slice::<Override>(&entry.data) {
            Ok(o) if o.service == service => {
                shared.overrides.overrides.insert(o.service.clone(), o);
            }
            Ok(o) => shared.unreadable.push(format!(
                "config {}: labelled for {service} but holds {}",
                entry.id, o.service
            )),
            Err(e) => shared
                .unreadable
                .push(format!("config {}: not an override: {e}", entry.id)),
        }
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{reconfigure, route};
    use super::*;

    fn put(index: u64, o: &Override) -> Entry {
        Entry {
            id: format!("c{index}"),
            index,
            key: format!("{OVERRIDE_KEY}{}", o.service),
            data: serde_json::to_vec(o).unwrap(),
        }
    }

    #[test]
    fn the_newest_entry_of_each_service_wins_whatever_the_listing_order() {
        let a1 = reconfigure("a", vec![route("a", 80, "/one")], None);
        let a2 = reconfigure("a", vec![route("a", 80, "/two")], None);
        let b = reconfigure("b", vec![route("b", 80, "/b")], None);
        let fetch = |index| Entry {
            id: format!("f{index}"),
            index,
            key: FETCH_KEY.into(),
            data: b"{}".to_vec(),
        };
        let entries = vec![put(12, &a2), fetch(9), put(10, &a1), put(3, &b), fetch(14)];
        let mut reversed = entries.clone();
        reversed.reverse();
        for listing in [entries, reversed] {
            let shared = decode(newest(listing));
            assert_eq!(shared.overrides.overrides["a"], a2);
            assert_eq!(shared.overrides.overrides["b"], b);
            assert_eq!(shared.fetch, Some(14));
            assert!(shared.unreadable.is_empty());
        }
    }

    #[test]
    fn unreadable_entries_are_reported_not_served() {
        let a = reconfigure("a", vec![route("a", 80, "/a")], None);
        let mut mislabelled = put(5, &a);
        mislabelled.key = format!("{OVERRIDE_KEY}other");
        let garbage = Entry {
            data: b"not json".to_vec(),
            ..put(6, &reconfigure("c", vec![], None))
        };
        let shared = decode(newest(vec![mislabelled, garbage]));
        assert!(shared.overrides.overrides.is_empty());
        assert_eq!(shared.unreadable.len(), 2, "{:?}", shared.unreadable);
    }
}
