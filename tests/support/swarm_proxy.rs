//! A proxy stand on a real Swarm, shared by `tests/swarm_routes.rs` and
//! `benches/swarm.rs`: an overlay network, an anchor container whose network
//! namespace HAProxy runs in (the host cannot reach overlay addresses here),
//! a git remote for the routes, and `capstan serve --swarm` driving it all.
//! Include it beside `support` and `swarm_rig`.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::support::{Capstan, GitRemote, free_port};
use crate::swarm_rig::{Anchor, OverlayNetwork, PORT, TestService, host_http_get, setup};

/// Fields drop in order: the anchor leaves the network before it is removed.
pub struct SwarmProxy {
    pub anchor: Anchor,
    pub network: OverlayNetwork,
    pub remote: GitRemote,
    /// HAProxy's http port, in the anchor's namespace.
    pub http: u16,
    /// Where the host reaches that port.
    pub proxy: SocketAddr,
    bin: tempfile::TempDir,
}

impl SwarmProxy {
    pub fn new() -> Self {
        setup();
        crate::support::require_tools();
        let network = OverlayNetwork::create();
        let anchor = Anchor::start(&network.name);
        let http = free_port();
        let proxy = SocketAddr::from((anchor.gateway_ip(), http));
        Self {
            anchor,
            network,
            remote: GitRemote::new(),
            http,
            proxy,
            bin: tempfile::tempdir().unwrap(),
        }
    }

    /// A service of the test image on the overlay, `dnsrr`, with `replicas`
    /// tasks; `extra` goes to `docker service create`.
    pub fn service(&self, what: &str, replicas: u32, extra: &[&str]) -> TestService {
        let replicas = replicas.to_string();
        let mut args = vec![
            "--network",
            &self.network.name,
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            &replicas,
        ];
        args.extend_from_slice(extra);
        TestService::create(what, &args)
    }

    /// Pushes a routes.yaml routing each `(service, path)` to its tasks.
    pub fn push_routes(&self, services: &[(&str, &str)]) -> String {
        let mut text = format!(
            "version: 1\ndefaults:\n  http_port: {}\nroutes:\n",
            self.http
        );
        for (service, path) in services {
            text.push_str(&format!(
                "  - service: {service}\n    port: {PORT}\n    paths: [{path}]\n"
            ));
        }
        self.remote.push(&text)
    }

    /// `capstan serve --swarm` on this stand, HAProxy in the anchor.
    pub fn capstan(&self, extra: &[&str]) -> Capstan {
        let url = self.remote.url();
        let haproxy = self.anchor.haproxy_wrapper(self.bin.path());
        let mut args = vec![
            "--repo",
            &url,
            "--poll-interval",
            "1h",
            "--swarm",
            "--swarm-network",
            &self.network.name,
            "--haproxy",
            haproxy.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Capstan::start(&args)
    }

    /// The tasks that answered `count` requests for `path` through HAProxy.
    pub fn answering(&self, path: &str, count: usize) -> BTreeSet<String> {
        (0..count)
            .filter_map(|_| host_http_get(self.proxy, path).ok())
            .filter_map(|body| task_of(&body))
            .collect()
    }
}

/// The task id in a test server's answer (`task=<id> path=...`).
pub fn task_of(body: &str) -> Option<String> {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("task="))
        .map(str::to_string)
}
