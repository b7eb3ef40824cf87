//! A generated route table for tests and benchmarks, shared by
//! `tests/haproxy_check.rs` and `benches/core.rs`.

/// A table of `n` routes as YAML, mixing every kind of route: prefix,
/// exact and regex paths, exact and wildcard domains, tcp, headers,
/// timeouts, health checks, auth, static servers, HTTPS redirects.
///
/// Routes name their servers by IP address (`servers:`), but one in
/// `by_name_every` (0: none) uses its Swarm service name. Every name costs a DNS lookup when HAProxy
/// loads the config, and thousands of lookups of names that do not exist
/// would measure the DNS server rather than the config.
pub fn generated_table(n: usize, https_certificates: Option<&str>, by_name_every: usize) -> String {
    let mut y = String::with_capacity(n * 220);
    y.push_str(
        "version: 1
defaults:
  http_port: 80
@HTTPS@  stats:
    port: 8404
  maxconn: 100000
  timeouts:
    connect: 5s
    client: 30s
    server: 30s
userlists:
  ops:
    - name: admin
      password_hash: $6$q7Lm2VxR9aTz4KpE$Xad/VAi5L.qd2GiBS4zYevhpavql16p1bvOL3ibnZy7QTXtskOamITz/FJ3OJHQIgNx8lRE/0PaGNVPN8g8Fo/
routes:
",
    );
    for i in 0..n {
        let route = match i % 10 {
            0..=2 => format!(
                "  - service: svc-{i}\n    port: 8080\n    paths: [/svc-{i}, /svc-{i}/v2]\n"
            ),
            3 => format!(
                "  - service: status-{i}\n    port: 8080\n    path_match: exact\n    paths: [/status-{i}, /status-{i}/ready]\n"
            ),
            4 => format!(
                "  - service: site-{i}\n    port: 80\n    domains: [site-{i}.example.com, www.site-{i}.example.com]\n    https_only: true\n    redirect_code: 301\n"
            ),
            5 => format!(
                "  - service: tenant-{i}\n    port: 9000\n    domains: [\"*.t{i}.example.com\"]\n    paths: [/api]\n    request_headers:\n      set:\n        X-Tenant: t{i}\n      add:\n        X-Route: route {i}\n      delete: [X-Debug]\n    response_headers:\n      set:\n        Strict-Transport-Security: max-age=31536000; includeSubDomains\n      delete: [Server]\n"
            ),
            6 => format!(
                "  - service: db-{i}\n    port: 5432\n    mode: tcp\n    listen_port: {}\n    balance: leastconn\n    sticky: true\n    timeouts:\n      client: 1h\n      server: 1h\n    health_check:\n      interval: 10s\n",
                20000 + i / 10
            ),
            7 => format!(
                "  - service: files-{i}\n    port: 8080\n    path_match: regex\n    paths: [\"^/files-{i}/v[0-9]+/\"]\n    rewrite_path:\n      regex: ^/files-{i}/(.*)\n      replace: /\\1\n    timeouts:\n      connect: 3s\n      server: 2m\n      tunnel: 1h\n"
            ),
            8 => format!(
                "  - service: legacy-{i}\n    port: 8080\n    paths: [/legacy-{i}]\n    servers: [\"10.{}.{}.1:8080\", \"10.{}.{}.2:8080\"]\n    sticky: true\n    health_check:\n      path: /healthz\n      interval: 5s\n",
                i / 256 % 256,
                i % 256,
                i / 256 % 256,
                i % 256
            ),
            _ => format!(
                "  - service: admin-{i}\n    port: 3000\n    domains: [admin-{i}.example.com]\n    paths: [/]\n    auth:\n      userlist: ops\n      realm: Admin\n    balance: source\n"
            ),
        };
        y.push_str(&route);
        if i % 10 != 8 && (by_name_every == 0 || i % by_name_every != 0) {
            let (a, b) = (i / 256 % 256, i % 256);
            y.push_str(&format!(
                "    servers: [\"10.{a}.{b}.1:8080\", \"10.{a}.{b}.2:8080\"]\n"
            ));
        }
    }
    let https = https_certificates
        .map(|c| format!("  https:\n    port: 443\n    certificates: {c}\n"))
        .unwrap_or_default();
    y.replacen("@HTTPS@", &https, 1)
}
