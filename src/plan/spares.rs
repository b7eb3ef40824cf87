//! New backends without a reload: a config that differs from the one the
//! running worker loaded only by new backends (and backends no longer used)
//! can be served at run time when each new backend looks exactly like one of
//! the spare backends the loaded config declares (default settings but for
//! server and tunnel timeouts, which are map entries; task servers that fit
//! its slots). The new backend borrows that spare's name: its servers go
//! into the spare's slots, its map entries point to the spare and its
//! timeouts are the spare's entries, until the next reload gives it its own
//! name.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::{Change, LiveState, runtime_address};
use crate::model::names::SPARE_PREFIX;
use crate::render::{HaproxyConfig, Section};

/// `desired` as the running worker can serve it, with each of `added`
/// served by a spare backend, and the spares newly lent; or why one of them
/// cannot be.
pub(super) fn lend<'d>(
    desired: &'d HaproxyConfig,
    added: &[&str],
    live: &LiveState,
) -> Result<(Cow<'d, HaproxyConfig>, Vec<Change>), Change> {
    let mut notes = Vec::new();
    // Nothing to lend: the desired config as it is, not a copy of it.
    if added.is_empty() {
        return Ok((Cow::Borrowed(desired), notes));
    }
    let mut config = desired.clone();
    let no_spare = |backend: &str, reason: String| Change::NoSpareBackend {
        backend: backend.to_string(),
        reason,
    };
    let spares: Vec<String> = desired
        .sections
        .iter()
        .filter_map(Section::backend_name)
        .filter(|b| b.starts_with(SPARE_PREFIX))
        .map(str::to_string)
        .collect();
    // Spares some map entry of the running HAProxy still points to.
    let taken: BTreeSet<&str> = live
        .maps
        .values()
        .flat_map(|m| m.values())
        .map(String::as_str)
        .filter(|v| v.starts_with(SPARE_PREFIX))
        .collect();
    let mut lent: Vec<(&str, String)> = Vec::new();
    for &backend in added {
        let Some(section) = desired.section(&format!("backend {backend}")) else {
            return Err(no_spare(backend, "it is not in the config".into()));
        };
        // The spare it already has: where HAProxy routes its keys now.
        let current = desired
            .maps
            .iter()
            .flat_map(|m| {
                m.entries
                    .iter()
                    .filter(|(_, b)| b.as_str() == backend)
                    .filter_map(|(key, _)| live.maps.get(&m.path)?.get(key))
            })
            .find(|v| spares.contains(v) && !lent.iter().any(|(_, s)| s == *v))
            .cloned();
        let spare = match current {
            Some(spare) => spare,
            None => {
                let free = spares
                    .iter()
                    .find(|s| !taken.contains(s.as_str()) && !lent.iter().any(|(_, l)| l == *s));
                let Some(free) = free.cloned() else {
                    let reason = if spares.is_empty() {
                        "the running config declares no spare backends"
                    } else {
                        "every spare is lent until the next reload"
                    };
                    return Err(no_spare(backend, reason.into()));
                };
                notes.push(Change::LendSpareBackend {
                    backend: backend.to_string(),
                    spare: free.clone(),
                });
                free
            }
        };
        let Some(slot) = config
            .sections
            .iter_mut()
            .find(|s| s.backend_name() == Some(spare.as_str()))
        else {
            return Err(no_spare(backend, format!("{spare} is not in the config")));
        };
        if let Some(reason) = misfit(section, slot) {
            return Err(no_spare(backend, reason));
        }
        for (slot, server) in slot.servers.iter_mut().zip(&section.servers) {
            slot.address = server.address.clone();
            slot.options = server.options.clone();
            slot.drain = server.drain;
        }
        lent.push((backend, spare));
    }
    config
        .sections
        .retain(|s| !s.backend_name().is_some_and(|b| added.contains(&b)));
    for map in &mut config.maps {
        for value in map.entries.values_mut() {
            if let Some((_, spare)) = lent.iter().find(|(b, _)| b == value) {
                *value = spare.clone();
            }
        }
        // The timeout maps are keyed by backend name (a routing map's keys
        // are paths, never one): HAProxy looks up the spare's.
        for (backend, spare) in &lent {
            if let Some(value) = map.entries.remove(*backend) {
                map.entries.insert(spare.clone(), value);
            }
        }
    }
    Ok((Cow::Owned(config), notes))
}

/// Why `spare` cannot serve as `backend`, if it cannot: it must have the
/// same settings, room for its servers, and servers HAProxy can be given at
/// run time (IP addresses, the same options).
fn misfit(backend: &Section, spare: &Section) -> Option<String> {
    let options = |s: &crate::render::Server| -> Vec<String> {
        s.options
            .iter()
            .filter(|o| *o != "disabled")
            .cloned()
            .collect()
    };
    let slot = spare.servers.first()?;
    if let Some(line) = backend.lines.iter().find(|l| !spare.lines.contains(l)) {
        return Some(format!("its setting `{line}`"));
    }
    if let Some(line) = spare.lines.iter().find(|l| !backend.lines.contains(l)) {
        return Some(format!("no `{line}` in its settings"));
    }
    if backend.servers.len() > spare.servers.len() {
        return Some(format!(
            "{} servers, more than the {} slots of a spare",
            backend.servers.len(),
            spare.servers.len()
        ));
    }
    backend.servers.iter().find_map(|s| {
        if runtime_address(&s.address).is_none() {
            Some(format!("server {} is a name", s.address))
        } else if options(s) != options(slot) {
            Some(format!("its server options `{}`", options(s).join(" ")))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{LiveState, Method, ServerState, plan};
    use super::*;
    use crate::desired::DesiredState;
    use crate::model::validate::load;
    use crate::plan::DesiredConfig;
    use crate::render::render_desired;
    use crate::sources::swarm_snapshot::SwarmState;
    use crate::sources::swarm_snapshot::fixtures::{service, task};

    /// The config for `yaml`, each service running one task at 10.0.0.<n>.
    fn desired(yaml: &str, services: &[(&str, u8)]) -> DesiredConfig {
        let mut swarm = SwarmState::default();
        for (name, n) in services {
            let ip = format!("10.0.0.{n}");
            let tasks = vec![task(name, 1, "running", "running", &[("net-a", &ip)])];
            swarm
                .services
                .insert(name.to_string(), service(name, &[], tasks));
        }
        let routes = load("routes.yaml", yaml).unwrap();
        let state = DesiredState::with_tasks(routes, &swarm, &[]);
        DesiredConfig::new(render_desired(&state), Path::new("/run/admin.sock"))
    }

    /// What HAProxy runs after loading `d`.
    fn loaded(d: &DesiredConfig) -> LiveState {
        LiveState::running(d)
    }

    const WEB: &str = "version: 1\nroutes:\n  - service: web\n    port: 80\n    paths: [/web]\n";

    fn with_api(extra: &str) -> String {
        format!("{WEB}  - service: api\n    port: 80\n    paths: [/api]\n{extra}")
    }

    #[test]
    fn a_new_service_borrows_a_spare_backend_until_the_next_reload() {
        let before = desired(WEB, &[("web", 2)]);
        let after = desired(&with_api(""), &[("web", 2), ("api", 3)]);
        let live = loaded(&before);
        let p = plan(&after, &live);
        assert_eq!(p.method, Method::Runtime, "{p:?}");
        assert_eq!(
            p.changes[0],
            Change::LendSpareBackend {
                backend: "api-be80".into(),
                spare: "spare-1".into()
            }
        );
        assert!(p.changes.contains(&Change::SetServerAddress {
            backend: "spare-1".into(),
            server: "spare-1-1".into(),
            address: "10.0.0.3:80".into()
        }));
        assert!(p.changes.contains(&Change::SetServerState {
            backend: "spare-1".into(),
            server: "spare-1-1".into(),
            state: ServerState::Ready
        }));
        assert!(p.changes.contains(&Change::AddMapEntry {
            map: "/etc/haproxy/maps/prefix.map".into(),
            key: "/api".into(),
            value: "spare-1".into()
        }));

        // Applied: the same spare, and nothing more to do.
        let mut applied = live.clone();
        for change in &p.changes {
            let server = |live: &mut LiveState, backend: &str, server: &str| {
                let found = live
                    .servers
                    .iter_mut()
                    .position(|s| s.backend == backend && s.server == server);
                found.expect("the plan names servers HAProxy has")
            };
            match change {
                Change::AddMapEntry { map, key, value } => {
                    applied
                        .maps
                        .entry(map.clone())
                        .or_default()
                        .insert(key.clone(), value.clone());
                }
                Change::SetServerAddress {
                    backend,
                    server: name,
                    address,
                } => {
                    let i = server(&mut applied, backend, name);
                    applied.servers[i].address = address.clone();
                }
                Change::SetServerState {
                    backend,
                    server: name,
                    state,
                } => {
                    let i = server(&mut applied, backend, name);
                    applied.servers[i].state = *state;
                }
                _ => {}
            }
        }
        assert_eq!(plan(&after, &applied).method, Method::Nothing);

        // A second new service takes the next spare; the first keeps its own.
        let third = desired(
            &with_api("  - service: shop\n    port: 80\n    paths: [/shop]\n"),
            &[("web", 2), ("api", 3), ("shop", 4)],
        );
        let p = plan(&third, &applied);
        assert_eq!(p.method, Method::Runtime, "{p:?}");
        assert_eq!(
            p.changes[0],
            Change::LendSpareBackend {
                backend: "shop-be80".into(),
                spare: "spare-2".into()
            }
        );
        assert!(!p.changes.iter().any(
            |c| matches!(c, Change::LendSpareBackend { backend, .. } if backend == "api-be80")
        ));
    }

    #[test]
    fn a_new_service_with_its_own_settings_needs_a_reload() {
        let before = desired(WEB, &[("web", 2)]);
        let after = desired(
            &with_api("    timeouts:\n      connect: 2s\n"),
            &[("web", 2), ("api", 3)],
        );
        let p = plan(&after, &loaded(&before));
        assert_eq!(p.method, Method::Reload);
        assert!(p.changes.contains(&Change::AddSection {
            section: "backend api-be80".into()
        }));
        assert!(
            p.changes.contains(&Change::NoSpareBackend {
                backend: "api-be80".into(),
                reason: "its setting `timeout connect 2s`".into()
            }),
            "{p:?}"
        );
    }

    #[test]
    fn a_new_service_with_its_own_server_timeout_takes_a_spare_with_that_timeout() {
        let before = desired(WEB, &[("web", 2)]);
        let after = desired(
            &with_api("    timeouts:\n      server: 2m\n      tunnel: 1h\n"),
            &[("web", 2), ("api", 3)],
        );
        let p = plan(&after, &loaded(&before));
        assert_eq!(p.method, Method::Runtime, "{p:?}");
        for (timeout, ms) in [("server", "120000"), ("tunnel", "3600000")] {
            assert!(
                p.changes.contains(&Change::AddMapEntry {
                    map: format!("/etc/haproxy/maps/timeout-{timeout}.map"),
                    key: "spare-1".into(),
                    value: ms.into()
                }),
                "{p:?}"
            );
        }
    }

    #[test]
    fn without_swarm_spares_take_fixed_servers_not_names() {
        let routes = |y: &str| {
            let state = DesiredState::new(load("routes.yaml", y).unwrap());
            DesiredConfig::new(render_desired(&state), Path::new("/run/admin.sock"))
        };
        let before = routes(WEB);
        // A new service on a fixed address: served by a spare, live.
        let fixed = routes(&with_api("    servers: [10.0.0.9:8080]\n"));
        let p = plan(&fixed, &loaded(&before));
        assert_eq!(p.method, Method::Runtime, "{p:?}");
        assert!(p.changes.contains(&Change::SetServerAddress {
            backend: "spare-1".into(),
            server: "spare-1-1".into(),
            address: "10.0.0.9:8080".into()
        }));
        // One served at its service's name: HAProxy needs a reload to resolve it.
        let p = plan(&routes(&with_api("")), &loaded(&before));
        assert_eq!(p.method, Method::Reload);
        assert!(
            p.changes.contains(&Change::NoSpareBackend {
                backend: "api-be80".into(),
                reason: "server api:80 is a name".into()
            }),
            "{p:?}"
        );
    }
}
