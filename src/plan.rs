//! Plan: what must change for the live HAProxy to match the desired config,
//! and whether HAProxy can take it at run time or needs a reload. A pure
//! function of desired and observed state.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod spares;

use crate::render::{HaproxyConfig, Section, Server, write_config};
use crate::tls::{Certificate, ServedCertificate};

/// Prefix of the generation marker capstan writes as `global.description`.
pub const MARKER_PREFIX: &str = "capstan-";

/// The config capstan wants HAProxy to run, with its generation marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredConfig {
    pub config: HaproxyConfig,
    /// Identifies everything a reload would change: the config without the
    /// server addresses HAProxy can change at run time. HAProxy reports it back
    /// through `show info`, which tells capstan what the running worker loaded.
    pub marker: String,
    /// The crt-list HTTPS reads capstan's certificates from, if it does,
    /// and those certificates in its order: they change at run time, so
    /// they are not part of the marker.
    pub crt_list: Option<PathBuf>,
    pub certificates: Vec<Certificate>,
}

impl DesiredConfig {
    /// Adds what a supervised HAProxy needs beyond the routes: the admin
    /// socket capstan drives and the generation marker.
    pub fn new(mut config: HaproxyConfig, admin_socket: &Path) -> Self {
        config.global_mut().line(stats_socket_line(admin_socket));
        let marker = marker(&config);
        config
            .global_mut()
            .line(format!("description {MARKER_PREFIX}{marker}"));
        Self {
            config,
            marker,
            crt_list: None,
            certificates: Vec::new(),
        }
    }

    /// The certificates HTTPS serves from `crt_list` (rendered into the config already).
    pub fn with_certificates(
        mut self,
        crt_list: Option<PathBuf>,
        certificates: Vec<Certificate>,
    ) -> Self {
        self.crt_list = crt_list;
        self.certificates = certificates;
        self
    }

    pub fn text(&self) -> String {
        self.config.to_string()
    }
}

/// The `global` line that opens the admin socket capstan drives. `expose-fd
/// listeners` lets a reloading worker take the listening sockets over from
/// the old one, so that no connection is refused during a reload.
pub(crate) fn stats_socket_line(admin_socket: &Path) -> String {
    format!(
        "stats socket {} mode 600 level admin expose-fd listeners",
        admin_socket.display()
    )
}

/// A server address HAProxy can take at run time: an IP literal and a port.
fn runtime_address(address: &str) -> Option<(IpAddr, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.parse().ok()?, port.parse().ok()?))
}

/// A section's lines but the marker.
fn skeleton_lines(section: &Section) -> impl Iterator<Item = &String> {
    section.lines.iter().filter(|l| !is_marker_line(l))
}

/// A server's name, address, options and drain, without what may change at
/// run time when HAProxy can take its address at run time: the address
/// itself, whether the slot is in use (`disabled`) and drain.
fn skeleton_server(server: &Server) -> (&str, &str, impl Iterator<Item = &String>, bool) {
    let runtime = runtime_address(&server.address).is_some();
    let address = if runtime { "-" } else { &server.address };
    let options = server
        .options
        .iter()
        .filter(move |o| !(runtime && *o == "disabled"));
    (&server.name, address, options, server.drain && !runtime)
}

/// Whether two sections are the same but for what may change at run time
/// (IP server addresses, whether a slot is in use, drain) and the marker.
fn same_skeleton(a: &Section, b: &Section) -> bool {
    let same_server = |x: &Server, y: &Server| {
        let (x, y) = (skeleton_server(x), skeleton_server(y));
        x.0 == y.0 && x.1 == y.1 && x.3 == y.3 && x.2.eq(y.2)
    };
    a.header == b.header
        && skeleton_lines(a).eq(skeleton_lines(b))
        && a.servers.len() == b.servers.len()
        && a.servers
            .iter()
            .zip(&b.servers)
            .all(|(x, y)| same_server(x, y))
}

pub(crate) fn is_marker_line(line: &str) -> bool {
    line.starts_with("description ")
}

/// The hash of the config's text without what may change at run time (IP
/// server addresses, whether a slot is in use) and without the marker line
/// itself; written from the config, not from a copy of it.
fn marker(config: &HaproxyConfig) -> String {
    let skeleton = config.sections.iter().map(|section| {
        let servers = section.servers.iter().map(|server| {
            let (name, address, options, _drain) = skeleton_server(server);
            (name, address, options)
        });
        (section.header.as_str(), skeleton_lines(section), servers)
    });
    let mut text = String::new();
    write_config(&mut text, skeleton).expect("a String takes every write");
    crate::util::sha256_hex_prefix(text.as_bytes(), 8)
}

/// A server as HAProxy's runtime API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveServer {
    pub backend: String,
    pub server: String,
    /// `ip:port` as HAProxy currently uses it.
    pub address: String,
    pub state: ServerState,
}

/// A server's administrative state, as planned, observed (`show servers
/// state`) and set (`set server ... state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Takes traffic.
    Ready,
    /// No new connections; current ones and persistent clients finish.
    Drain,
    /// Out of service (an unused slot).
    Maint,
}

impl ServerState {
    /// What the rendered server asks for.
    pub fn desired(server: &Server) -> Self {
        if server.drain {
            ServerState::Drain
        } else if server.options.iter().any(|o| o == "disabled") {
            ServerState::Maint
        } else {
            ServerState::Ready
        }
    }
}

/// What the running HAProxy is, as observed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveState {
    /// The marker of the config the running worker loaded; `None` when
    /// HAProxy is not running or did not load a capstan config.
    pub marker: Option<String>,
    /// The config the running worker loaded, when capstan knows it (the
    /// file it carries the running marker); when HAProxy runs nothing, the
    /// config file capstan last wrote, if any.
    pub config: Option<HaproxyConfig>,
    pub servers: Vec<LiveServer>,
    /// The certificates in capstan's crt-list and what HAProxy serves for
    /// each; `None` when HAProxy runs no such crt-list (or was not asked).
    pub certificates: Option<BTreeMap<PathBuf, ServedCertificate>>,
    /// The entries of the map files HAProxy routes through, by file, as it
    /// holds them now (`show map`); a map it does not report is empty.
    pub maps: BTreeMap<String, BTreeMap<String, String>>,
}

impl LiveState {
    /// What HAProxy holds once it runs `desired`: its marker and config,
    /// every server at its address and in its desired state, the maps'
    /// entries and the certificates. `capstan diff` plans the head against
    /// the base taken as running.
    pub fn running(desired: &DesiredConfig) -> Self {
        Self {
            config: Some(desired.config.clone()),
            ..Self::running_but_config(desired)
        }
    }

    /// [`LiveState::running`] without its config, which is most of its
    /// size: enough to plan a desired config with the same marker, as
    /// [`plan`] reads the running config only when the markers differ.
    pub fn running_but_config(desired: &DesiredConfig) -> Self {
        let servers = desired
            .config
            .sections
            .iter()
            .filter_map(|s| Some((s.backend_name()?, s)))
            .flat_map(|(backend, s)| {
                s.servers.iter().map(move |srv| LiveServer {
                    backend: backend.to_string(),
                    server: srv.name.clone(),
                    address: srv.address.clone(),
                    state: ServerState::desired(srv),
                })
            })
            .collect();
        let certificates = desired.crt_list.as_ref().map(|_| {
            desired
                .certificates
                .iter()
                .map(|c| {
                    let served = ServedCertificate {
                        fingerprint: c.pem.fingerprint().to_string(),
                        ..ServedCertificate::default()
                    };
                    (c.path.clone(), served)
                })
                .collect()
        });
        Self {
            marker: Some(desired.marker.clone()),
            config: None,
            servers,
            certificates,
            maps: desired
                .config
                .maps
                .iter()
                .map(|m| (m.path.clone(), m.entries.clone()))
                .collect(),
        }
    }
}

/// One change the plan makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A section (frontend, backend, ...) HAProxy does not run yet.
    AddSection {
        section: String,
    },
    RemoveSection {
        section: String,
    },
    ModifySection {
        section: String,
    },
    /// The running worker did not load the config on disk (HAProxy was
    /// started elsewhere, or a reload was lost).
    ReloadRunningConfig,
    /// Move a server to a new address through the admin socket.
    SetServerAddress {
        backend: String,
        server: String,
        address: String,
    },
    /// Put a server in service, drain it, or take it out, through the admin socket.
    SetServerState {
        backend: String,
        server: String,
        state: ServerState,
    },
    /// Load a certificate and add it to capstan's crt-list, through the admin socket.
    AddCertificate {
        path: String,
    },
    /// Serve another certificate (a new serial, a renewal) under the same file.
    ReplaceCertificate {
        path: String,
    },
    /// Take a certificate out of the crt-list and out of HAProxy.
    RemoveCertificate {
        path: String,
    },
    /// Add `key value` to a map through the admin socket: in a routing map
    /// a path (or domain and path) and its backend; in a timeout map a
    /// backend and its timeout in milliseconds.
    AddMapEntry {
        map: String,
        key: String,
        /// Called `backend` before timeouts had maps: older state files say so.
        #[serde(alias = "backend")]
        value: String,
    },
    /// Give a key of a map another value (another backend, another timeout).
    SetMapEntry {
        map: String,
        key: String,
        #[serde(alias = "backend")]
        value: String,
    },
    /// Stop routing a key of a map (a backend takes the default timeout again, in a timeout map).
    RemoveMapEntry {
        map: String,
        key: String,
    },
    /// Serve a new backend with a spare backend's name until the next
    /// reload: its servers and map entries go to the spare.
    LendSpareBackend {
        backend: String,
        spare: String,
    },
    /// Why a new backend needs the reload: no spare backend can serve it.
    NoSpareBackend {
        backend: String,
        reason: String,
    },
}

impl Change {
    /// Whether this change is a map entry.
    pub fn is_map_entry(&self) -> bool {
        matches!(
            self,
            Change::AddMapEntry { .. } | Change::SetMapEntry { .. } | Change::RemoveMapEntry { .. }
        )
    }
}

/// How a plan is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Live already matches desired.
    Nothing,
    /// Runtime API commands only: no reload.
    Runtime,
    /// Write, check and reload the whole config.
    Reload,
    /// Not planned: in the history, HAProxy started again after it died.
    Restart,
}

/// The changes that take live to desired, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub method: Method,
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.method == Method::Nothing
    }
}

/// Compares desired with live. A reload is planned whenever the running
/// worker's marker differs from the desired one, unless the config it
/// loaded differs only by backends: new ones that spare backends can serve
/// (see [`spares`]) and ones no route uses any more (their servers go out
/// of service; they stay loaded until the next reload). Otherwise server
/// addresses and states, map entries and certificates change at run time.
pub fn plan(desired: &DesiredConfig, live: &LiveState) -> Plan {
    if live.marker.as_deref() == Some(desired.marker.as_str()) {
        return runtime_plan(&desired.config, desired, live, &[], Vec::new());
    }
    let mut changes = section_changes(&desired.config, live.config.as_ref());
    let loaded_known = live
        .config
        .as_ref()
        .is_some_and(|c| live.marker.is_some() && marker_of(c) == live.marker.as_deref());
    if loaded_known && !changes.is_empty() {
        match backends_only_plan(desired, live, &changes) {
            Some(Ok(plan)) => return plan,
            // Says why the new backend needs the reload.
            Some(Err(reason)) => changes.push(reason),
            None => {}
        }
    }
    if changes.is_empty() {
        changes.push(Change::ReloadRunningConfig);
    }
    Plan {
        method: Method::Reload,
        changes,
    }
}

/// For section `changes` that only add and remove backends: the run-time
/// plan, or why a spare cannot serve an added one.
fn backends_only_plan(
    desired: &DesiredConfig,
    live: &LiveState,
    changes: &[Change],
) -> Option<Result<Plan, Change>> {
    let (mut added, mut unused) = (Vec::new(), Vec::new());
    for change in changes {
        match change {
            Change::AddSection { section } => added.push(section.strip_prefix("backend ")?),
            Change::RemoveSection { section } => unused.push(section.strip_prefix("backend ")?),
            _ => return None,
        }
    }
    let (config, lent) = match spares::lend(&desired.config, &added, live) {
        Ok(lent) => lent,
        Err(reason) => return Some(Err(reason)),
    };
    let plan = runtime_plan(&config, desired, live, &unused, lent);
    (plan.method != Method::Reload).then_some(Ok(plan))
}

/// The run-time changes that make live serve `config` (`desired` as the
/// running worker can serve it): servers, map entries, `unused` backends
/// out of service, certificates; `notes` go first.
fn runtime_plan(
    config: &HaproxyConfig,
    desired: &DesiredConfig,
    live: &LiveState,
    unused: &[&str],
    notes: Vec<Change>,
) -> Plan {
    let live_servers: HashMap<(&str, &str), &LiveServer> = live
        .servers
        .iter()
        .map(|s| ((s.backend.as_str(), s.server.as_str()), s))
        .collect();
    let mut changes = notes;
    for section in &config.sections {
        let Some(backend) = section.backend_name() else {
            continue;
        };
        for server in &section.servers {
            if runtime_address(&server.address).is_none() {
                continue;
            }
            match live_servers.get(&(backend, server.name.as_str())) {
                Some(live) => {
                    if !same_address(&live.address, &server.address) {
                        changes.push(Change::SetServerAddress {
                            backend: backend.to_string(),
                            server: server.name.clone(),
                            address: server.address.clone(),
                        });
                    }
                    let state = ServerState::desired(server);
                    if live.state != state {
                        changes.push(Change::SetServerState {
                            backend: backend.to_string(),
                            server: server.name.clone(),
                            state,
                        });
                    }
                }
                // The config is loaded but the server is missing: the runtime
                // state is not what the config says; only a reload repairs it.
                None => {
                    return Plan {
                        method: Method::Reload,
                        changes: vec![Change::ReloadRunningConfig],
                    };
                }
            }
        }
    }
    changes.extend(map_changes(config, live));
    changes.extend(unused_backend_changes(unused, live));
    changes.extend(certificate_changes(desired, live));
    let method = if changes.is_empty() {
        Method::Nothing
    } else {
        Method::Runtime
    };
    Plan { method, changes }
}

/// The servers of backends no route uses any more, taken out of service:
/// no health checks, nothing to see as up in the stats.
fn unused_backend_changes(backends: &[&str], live: &LiveState) -> Vec<Change> {
    live.servers
        .iter()
        .filter(|s| backends.contains(&s.backend.as_str()) && s.state != ServerState::Maint)
        .map(|s| Change::SetServerState {
            backend: s.backend.clone(),
            server: s.server.clone(),
            state: ServerState::Maint,
        })
        .collect()
}

/// The marker a config's text carries in the `description` line of its
/// `global` section, if it is capstan's; without parsing the rest.
pub fn marker_in(text: &str) -> Option<&str> {
    text.lines()
        .skip_while(|l| l.trim() != "global")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(char::is_whitespace) || l.starts_with('#'))
        .find_map(|l| {
            l.trim()
                .strip_prefix("description ")?
                .strip_prefix(MARKER_PREFIX)
        })
}

/// The marker a config carries in its `description` line, if it is capstan's.
pub fn marker_of(config: &HaproxyConfig) -> Option<&str> {
    config
        .section("global")?
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("description ")?.strip_prefix(MARKER_PREFIX))
}

/// The map entries to add, change and remove so that HAProxy routes as the
/// desired maps say.
fn map_changes(desired: &HaproxyConfig, live: &LiveState) -> Vec<Change> {
    let empty = BTreeMap::new();
    let mut changes = Vec::new();
    for map in &desired.maps {
        let running = live.maps.get(&map.path).unwrap_or(&empty);
        for (key, value) in &map.entries {
            match running.get(key) {
                None => changes.push(Change::AddMapEntry {
                    map: map.path.clone(),
                    key: key.clone(),
                    value: value.clone(),
                }),
                Some(live) if live != value => changes.push(Change::SetMapEntry {
                    map: map.path.clone(),
                    key: key.clone(),
                    value: value.clone(),
                }),
                Some(_) => {}
            }
        }
        for key in running.keys() {
            if !map.entries.contains_key(key) {
                changes.push(Change::RemoveMapEntry {
                    map: map.path.clone(),
                    key: key.clone(),
                });
            }
        }
    }
    changes
}

/// The certificates to add, replace (another fingerprint under the same
/// file) and remove so that HAProxy serves the desired ones. A crt-list
/// HAProxy does not report is taken as empty: adding to it fails and is
/// retried, rather than reloading on every reconcile.
fn certificate_changes(desired: &DesiredConfig, live: &LiveState) -> Vec<Change> {
    let empty = BTreeMap::new();
    let served = live.certificates.as_ref().unwrap_or(&empty);
    let mut changes = Vec::new();
    for certificate in &desired.certificates {
        let path = certificate.path.display().to_string();
        match served.get(&certificate.path) {
            None => changes.push(Change::AddCertificate { path }),
            Some(live) if live.fingerprint != certificate.pem.fingerprint() => {
                changes.push(Change::ReplaceCertificate { path })
            }
            Some(_) => {}
        }
    }
    for path in served.keys() {
        if !desired.certificates.iter().any(|c| &c.path == path) {
            changes.push(Change::RemoveCertificate {
                path: path.display().to_string(),
            });
        }
    }
    changes
}

fn same_address(a: &str, b: &str) -> bool {
    runtime_address(a) == runtime_address(b)
}

/// Section-level differences, ignoring the marker line and what changes
/// at run time (server addresses and states).
fn section_changes(desired: &HaproxyConfig, live: Option<&HaproxyConfig>) -> Vec<Change> {
    let (wanted, running) = (by_header(Some(desired)), by_header(live));
    let mut changes = Vec::new();
    for section in &desired.sections {
        match running.get(section.header.as_str()) {
            None => changes.push(Change::AddSection {
                section: section.header.clone(),
            }),
            Some(old) if !same_skeleton(old, section) => changes.push(Change::ModifySection {
                section: section.header.clone(),
            }),
            Some(_) => {}
        }
    }
    for section in live.iter().flat_map(|c| c.sections.iter()) {
        if !wanted.contains_key(section.header.as_str()) {
            changes.push(Change::RemoveSection {
                section: section.header.clone(),
            });
        }
    }
    changes
}

fn by_header(config: Option<&HaproxyConfig>) -> HashMap<&str, &Section> {
    config
        .into_iter()
        .flat_map(|c| c.sections.iter())
        .map(|s| (s.header.as_str(), s))
        .collect()
}

/// Listening ports a config binds (`bind <addr>:<port> ...`).
pub fn bind_ports(config: &HaproxyConfig) -> Vec<u16> {
    let mut ports: Vec<u16> = config
        .sections
        .iter()
        .flat_map(|s| s.lines.iter())
        .filter_map(|l| l.strip_prefix("bind "))
        .filter_map(|b| {
            b.split_whitespace()
                .next()?
                .rsplit_once(':')?
                .1
                .parse()
                .ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate::load;
    use crate::render::render;

    fn desired(yaml: &str) -> DesiredConfig {
        DesiredConfig::new(
            render(&load("r", yaml).unwrap()),
            Path::new("/run/admin.sock"),
        )
    }

    const ONE: &str = "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n    servers: [127.0.0.1:9001]\n";

    #[test]
    fn nothing_to_do_when_live_matches() {
        let d = desired(ONE);
        assert_eq!(plan(&d, &LiveState::running(&d)).method, Method::Nothing);
    }

    #[test]
    fn a_route_removed_leaves_its_backend_unused_without_a_reload() {
        let two = format!(
            "{ONE}  - service: b\n    port: 80\n    paths: [/b]\n    servers: [127.0.0.1:9002]\n"
        );
        let before = desired(&two);
        let after = desired(ONE);
        let live = LiveState::running(&before);
        let p = plan(&after, &live);
        assert_eq!(p.method, Method::Runtime, "{p:?}");
        assert!(p.changes.contains(&Change::RemoveMapEntry {
            map: "/etc/haproxy/maps/prefix.map".into(),
            key: "/b".into()
        }));
        assert!(p.changes.contains(&Change::SetServerState {
            backend: "b-be80".into(),
            server: "b-1".into(),
            state: ServerState::Maint
        }));
        // Once applied, nothing more to do while the backend stays loaded.
        let mut applied = live.clone();
        applied.maps = LiveState::running(&after).maps;
        applied.servers.iter_mut().for_each(|s| {
            if s.backend == "b-be80" {
                s.state = ServerState::Maint;
            }
        });
        assert_eq!(plan(&after, &applied).method, Method::Nothing);
        // Not knowing what the worker loaded, a reload is the only safe way.
        applied.config = None;
        assert_eq!(plan(&after, &applied).method, Method::Reload);
    }

    #[test]
    fn a_route_timeout_set_changed_and_unset_is_a_timeout_map_entry() {
        let with = |timeouts: &str| desired(&format!("{ONE}    timeouts: {{{timeouts}}}\n"));
        let map = "/etc/haproxy/maps/timeout-server.map".to_string();
        let steps = [
            (desired(ONE), with("server: 2m")),
            (with("server: 2m"), with("server: 5s")),
            (with("server: 5s"), desired(ONE)),
        ];
        let expected = [
            Change::AddMapEntry {
                map: map.clone(),
                key: "a-be80".into(),
                value: "120000".into(),
            },
            Change::SetMapEntry {
                map: map.clone(),
                key: "a-be80".into(),
                value: "5000".into(),
            },
            Change::RemoveMapEntry {
                map,
                key: "a-be80".into(),
            },
        ];
        for ((before, after), change) in steps.iter().zip(expected) {
            let p = plan(after, &LiveState::running(before));
            assert_eq!(
                p,
                Plan {
                    method: Method::Runtime,
                    changes: vec![change]
                }
            );
        }
        // A timeout HAProxy cannot set per request is the backend's own line.
        let p = plan(&with("connect: 2s"), &LiveState::running(&desired(ONE)));
        assert_eq!(p.method, Method::Reload, "{p:?}");
    }

    #[test]
    fn a_server_moved_while_a_removed_backend_stays_loaded_is_still_live() {
        let two = format!(
            "{ONE}  - service: b\n    port: 80\n    paths: [/b]\n    servers: [127.0.0.1:9002]\n"
        );
        let live = LiveState::running(&desired(&two));
        let moved = desired(&ONE.replace("9001", "9003"));
        let p = plan(&moved, &live);
        assert_eq!(p.method, Method::Runtime, "{p:?}");
        assert!(p.changes.contains(&Change::SetServerAddress {
            backend: "a-be80".into(),
            server: "a-1".into(),
            address: "127.0.0.1:9003".into()
        }));
    }

    #[test]
    fn a_server_address_change_is_a_runtime_change() {
        let before = desired(ONE);
        let after = desired(&ONE.replace("9001", "9002"));
        assert_eq!(before.marker, after.marker);
        let p = plan(&after, &LiveState::running(&before));
        assert_eq!(p.method, Method::Runtime);
        assert_eq!(
            p.changes,
            [Change::SetServerAddress {
                backend: "a-be80".into(),
                server: "a-1".into(),
                address: "127.0.0.1:9002".into()
            }]
        );
    }

    #[test]
    fn a_new_route_needs_a_reload_and_names_its_sections() {
        let before = desired(ONE);
        let after = desired(&format!(
            "{ONE}  - service: b\n    port: 80\n    paths: [/b]\n"
        ));
        let p = plan(&after, &LiveState::running(&before));
        assert_eq!(p.method, Method::Reload);
        // Its path is an entry of a map the frontend looks up already: the
        // frontend stays as it is, the reload loads the map file. b is served
        // at its service's name, which no spare can take at run time.
        assert_eq!(
            p.changes,
            [
                Change::AddSection {
                    section: "backend b-be80".into()
                },
                Change::NoSpareBackend {
                    backend: "b-be80".into(),
                    reason: "server b:80 is a name".into()
                }
            ]
        );
    }

    const PREFIX_MAP: &str = "/etc/haproxy/maps/prefix.map";

    /// Routes a (paths `a_paths`) and b (paths `b_paths`), on fixed servers.
    fn two_routes(a_paths: &str, b_paths: &str) -> DesiredConfig {
        desired(&format!(
            "version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [{a_paths}]\n    servers: [127.0.0.1:9001]\n  - service: b\n    port: 80\n    paths: [{b_paths}]\n    servers: [127.0.0.1:9002]\n"
        ))
    }

    #[test]
    fn a_path_added_to_a_backend_is_a_map_entry_without_a_reload() {
        let before = desired(ONE);
        let after = desired(&ONE.replace("paths: [/a]", "paths: [/a, /a2]"));
        assert_eq!(before.marker, after.marker);
        let p = plan(&after, &LiveState::running(&before));
        assert_eq!(
            p,
            Plan {
                method: Method::Runtime,
                changes: vec![Change::AddMapEntry {
                    map: PREFIX_MAP.into(),
                    key: "/a2".into(),
                    value: "a-be80".into()
                }]
            }
        );
    }

    #[test]
    fn map_entries_in_older_state_files_still_read() {
        let old = serde_json::json!({
            "kind": "add_map_entry", "map": PREFIX_MAP, "key": "/a", "backend": "a-be80"
        });
        assert_eq!(
            serde_json::from_value::<Change>(old).unwrap(),
            Change::AddMapEntry {
                map: PREFIX_MAP.into(),
                key: "/a".into(),
                value: "a-be80".into()
            }
        );
    }

    #[test]
    fn a_path_removed_from_a_backend_is_a_map_entry_removed() {
        let before = desired(&ONE.replace("paths: [/a]", "paths: [/a, /a2]"));
        let p = plan(&desired(ONE), &LiveState::running(&before));
        assert_eq!(
            p,
            Plan {
                method: Method::Runtime,
                changes: vec![Change::RemoveMapEntry {
                    map: PREFIX_MAP.into(),
                    key: "/a2".into(),
                }]
            }
        );
    }

    #[test]
    fn a_path_moved_to_another_backend_is_a_map_entry_changed() {
        let before = two_routes("/a, /x", "/b");
        let after = two_routes("/a", "/b, /x");
        let p = plan(&after, &LiveState::running(&before));
        assert_eq!(
            p,
            Plan {
                method: Method::Runtime,
                changes: vec![Change::SetMapEntry {
                    map: PREFIX_MAP.into(),
                    key: "/x".into(),
                    value: "b-be80".into()
                }]
            }
        );
    }

    #[test]
    fn nothing_running_means_reload_everything() {
        let d = desired(ONE);
        let p = plan(&d, &LiveState::default());
        assert_eq!(p.method, Method::Reload);
        assert!(p.changes.len() > 3);
    }

    #[test]
    fn a_hostname_server_change_needs_a_reload() {
        let before =
            desired("version: 1\nroutes:\n  - service: a\n    port: 80\n    paths: [/a]\n");
        let after = desired(
            "version: 1\nroutes:\n  - service: a\n    port: 81\n    name: a\n    paths: [/a]\n",
        );
        assert_ne!(before.marker, after.marker);
        assert_eq!(
            plan(&after, &LiveState::running(&before)).method,
            Method::Reload
        );
    }

    #[test]
    fn the_admin_socket_line_lets_a_reload_take_the_listeners_over() {
        assert_eq!(
            stats_socket_line(Path::new("/run/capstan/admin.sock")),
            "stats socket /run/capstan/admin.sock mode 600 level admin expose-fd listeners"
        );
        assert!(desired(ONE).text().contains(
            "\n    stats socket /run/admin.sock mode 600 level admin expose-fd listeners\n"
        ));
    }

    #[test]
    fn certificates_are_added_replaced_and_removed_at_run_time() {
        use crate::tls::pem::fixtures::pem;
        use crate::tls::{CertSource, Pem};
        let certificate = |name: &str, seed: u8| Certificate {
            name: name.parse().unwrap(),
            source: CertSource::Uploaded,
            path: PathBuf::from(format!("/s/certs/{name}.pem")),
            pem: std::sync::Arc::new(Pem::parse(pem(seed).as_bytes()).unwrap()),
        };
        let list = Some(PathBuf::from("/s/crt-list"));
        let d = desired(ONE).with_certificates(
            list.clone(),
            vec![
                certificate("kept", 1),
                certificate("renewed", 2),
                certificate("new", 3),
            ],
        );
        let served = |c: &Certificate, fingerprint: &str| {
            let info = ServedCertificate {
                fingerprint: fingerprint.to_string(),
                ..ServedCertificate::default()
            };
            (c.path.clone(), info)
        };
        // Taken as running, the desired certificates are served already.
        assert_eq!(plan(&d, &LiveState::running(&d)).method, Method::Nothing);
        let mut live = LiveState::running(&d);
        live.certificates = Some(BTreeMap::from([
            served(&d.certificates[0], d.certificates[0].pem.fingerprint()),
            served(&d.certificates[1], "OLD"),
            served(&certificate("gone", 4), "GONE"),
        ]));
        let p = plan(&d, &live);
        assert_eq!(p.method, Method::Runtime);
        assert_eq!(
            p.changes,
            [
                Change::ReplaceCertificate {
                    path: "/s/certs/renewed.pem".into()
                },
                Change::AddCertificate {
                    path: "/s/certs/new.pem".into()
                },
                Change::RemoveCertificate {
                    path: "/s/certs/gone.pem".into()
                },
            ]
        );
        // They are not part of the marker: no reload for a certificate.
        assert_eq!(
            d.marker,
            desired(ONE).with_certificates(list, vec![]).marker
        );
    }

    #[test]
    fn the_marker_is_read_from_the_text_as_from_the_parsed_config() {
        let d = desired(ONE);
        assert_eq!(marker_in(&d.text()), Some(d.marker.as_str()));
        assert_eq!(marker_of(&d.config), Some(d.marker.as_str()));
        // Only the global section's description counts.
        let elsewhere = "global\n    maxconn 10\n\nbackend x\n    description capstan-abc\n";
        assert_eq!(marker_in(elsewhere), None);
    }

    #[test]
    fn bind_ports_are_listed() {
        assert_eq!(bind_ports(&desired(ONE).config), [80]);
    }
}
