//! A corpus of bad `routes.yaml` inputs: every one must be rejected with the
//! exact line, field path and a recognisable message, so that an operator
//! reading `capstan validate` output (or a PR comment) can go straight to the
//! mistake.
//!
//! Each case is one struct literal. YAML texts are written indented in the
//! source and de-indented by [`yaml`]; line 1 is the first line after the
//! opening quote.

use capstan::model::diagnostics::Diagnostic;
use capstan::model::validate::load;

#[path = "support/words.rs"]
mod words;

/// One bad input and the diagnostic it must produce.
struct Case {
    name: &'static str,
    yaml: &'static str,
    /// 1-based line of the diagnostic; 0 for problems with no place in the file.
    line: usize,
    /// The field path, `routes[1].port`; empty for the whole document.
    field: &'static str,
    /// A fragment of the message.
    message: &'static str,
}

/// Removes the common indentation and the first (empty) line of a raw string.
fn yaml(text: &str) -> String {
    if text.trim().is_empty() {
        return text.to_string();
    }
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .min()
        .unwrap_or(0);
    let mut out: String = text
        .lines()
        .map(|l| l.get(indent..).unwrap_or("").to_string() + "\n")
        .collect();
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn diagnostics(text: &str) -> Vec<Diagnostic> {
    match load("routes.yaml", text) {
        Ok(routes) => panic!(
            "accepted with {} route(s), but it must be rejected:\n{text}",
            routes.routes.len()
        ),
        Err(diagnostics) => diagnostics.0,
    }
}

fn listing(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("  {d}\n"))
        .collect::<String>()
}

/// Runs every case, collecting all failures so one run shows them all.
fn check(cases: &[Case]) {
    let mut names = std::collections::HashSet::new();
    let mut texts = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in cases {
        assert!(names.insert(case.name), "duplicate case name {}", case.name);
        let text = yaml(case.yaml);
        assert!(
            texts.insert(text.clone()),
            "case {} repeats another case's input",
            case.name
        );
        let found = match load("routes.yaml", &text) {
            Ok(_) => {
                failures.push(format!("{}: accepted, must be rejected", case.name));
                continue;
            }
            Err(diagnostics) => diagnostics.0,
        };
        let matching = found.iter().any(|d| {
            d.file == "routes.yaml"
                && d.line == case.line
                && d.field == case.field
                && d.message.contains(case.message)
        });
        if !matching {
            failures.push(format!(
                "{}: expected line {} field `{}` message containing {:?}; got\n{}",
                case.name,
                case.line,
                case.field,
                case.message,
                listing(&found)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} case(s) failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn schema_errors_types_ranges_and_required_fields() {
    check(&[
        Case {
            name: "port above 65535",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 70000
                    paths: [/api]
            ",
            line: 4,
            field: "routes[0].port",
            message: "70000 is greater than the maximum of 65535",
        },
        Case {
            name: "port zero",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    paths: [/api]
                    port: 0
            ",
            line: 5,
            field: "routes[0].port",
            message: "0 is less than the minimum of 1",
        },
        Case {
            name: "negative port",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: -1
                    paths: [/api]
            ",
            line: 4,
            field: "routes[0].port",
            message: "-1 is less than the minimum of 1",
        },
        Case {
            name: "port is a word",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: eighty
                    paths: [/api]
            ",
            line: 4,
            field: "routes[0].port",
            message: r#""eighty" is not of type "integer""#,
        },
        Case {
            name: "port is a quoted number",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: "8080"
                    paths: [/api]
            "#,
            line: 4,
            field: "routes[0].port",
            message: r#""8080" is not of type "integer""#,
        },
        Case {
            name: "second route's port out of range",
            yaml: r"
                version: 1
                routes:
                  - service: a
                    port: 80
                    paths: [/a]
                  - service: b
                    port: 65536
                    paths: [/b]
            ",
            line: 7,
            field: "routes[1].port",
            message: "65536 is greater than the maximum of 65535",
        },
        Case {
            name: "http_port zero",
            yaml: r"
                version: 1
                defaults:
                  http_port: 0
            ",
            line: 3,
            field: "defaults.http_port",
            message: "0 is less than the minimum of 1",
        },
        Case {
            name: "maxconn zero",
            yaml: r"
                version: 1
                defaults:
                  maxconn: 0
            ",
            line: 3,
            field: "defaults.maxconn",
            message: "0 is less than the minimum of 1",
        },
        Case {
            name: "version 2",
            yaml: r"
                version: 2
                routes: []
            ",
            line: 1,
            field: "version",
            message: "2 is greater than the maximum of 1",
        },
        Case {
            name: "version 0",
            yaml: r"
                version: 0
            ",
            line: 1,
            field: "version",
            message: "0 is less than the minimum of 1",
        },
        Case {
            name: "version as a string",
            yaml: r#"
                version: "1"
            "#,
            line: 1,
            field: "version",
            message: r#""1" is not of type "integer""#,
        },
        Case {
            name: "missing version",
            yaml: r"
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
            ",
            line: 1,
            field: "version",
            message: "missing required field `version`",
        },
        Case {
            name: "missing service",
            yaml: r"
                version: 1
                routes:
                  - port: 80
                    paths: [/api]
            ",
            line: 3,
            field: "routes[0].service",
            message: "missing required field `service`",
        },
        Case {
            name: "missing port",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    paths: [/api]
            ",
            line: 3,
            field: "routes[0].port",
            message: "missing required field `port`",
        },
        Case {
            name: "sticky is not a boolean",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    sticky: maybe
            ",
            line: 6,
            field: "routes[0].sticky",
            message: r#""maybe" is not of type "boolean""#,
        },
        Case {
            name: "routes is a mapping",
            yaml: r"
                version: 1
                routes:
                  service: api
            ",
            line: 3,
            field: "routes",
            message: r#"is not of type "array""#,
        },
        Case {
            name: "routes key without a value",
            yaml: r"
                version: 1
                routes:
            ",
            line: 2,
            field: "routes",
            message: r#"null is not of type "array""#,
        },
        Case {
            name: "paths is a string",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: /api
            ",
            line: 5,
            field: "routes[0].paths",
            message: r#""/api" is not of type "array""#,
        },
        Case {
            name: "document is a list",
            yaml: r"
                - service: api
                  port: 80
            ",
            line: 1,
            field: "",
            message: r#"is not of type "object""#,
        },
        Case {
            name: "unquoted true is a YAML boolean, not a domain",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    domains: [true]
            ",
            line: 5,
            field: "routes[0].domains[0]",
            message: r#"true is not of type "string""#,
        },
    ]);
}

#[test]
fn schema_errors_unknown_fields_are_typos() {
    check(&[
        Case {
            name: "typo in a route field",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    pahts: [/api]
            ",
            line: 5,
            field: "routes[0].pahts",
            message: "unknown field `pahts`",
        },
        Case {
            name: "typo in a top-level field",
            yaml: r"
                version: 1
                route:
                  - service: api
            ",
            line: 2,
            field: "route",
            message: "unknown field `route`",
        },
        Case {
            name: "dash instead of underscore in defaults",
            yaml: r"
                version: 1
                defaults:
                  http-port: 8080
            ",
            line: 3,
            field: "defaults.http-port",
            message: "unknown field `http-port`",
        },
        Case {
            name: "typo in timeouts",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    timeouts:
                      sever: 30s
            ",
            line: 7,
            field: "routes[0].timeouts.sever",
            message: "unknown field `sever`",
        },
    ]);
}

#[test]
fn schema_errors_bad_enum_values() {
    check(&[
        Case {
            name: "mode udp",
            yaml: r"
                version: 1
                routes:
                  - service: dns
                    port: 53
                    mode: udp
                    listen_port: 53
            ",
            line: 5,
            field: "routes[0].mode",
            message: r#""udp" is not one of "http", "tcp" or "sni""#,
        },
        Case {
            name: "balance spelled with a dash",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    balance: round-robin
            ",
            line: 6,
            field: "routes[0].balance",
            message: r#""round-robin""#,
        },
        Case {
            name: "path_match glob",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    path_match: glob
            ",
            line: 6,
            field: "routes[0].path_match",
            message: r#""glob""#,
        },
        Case {
            name: "redirect_code 305",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    https_only: true
                    redirect_code: 305
            ",
            line: 7,
            field: "routes[0].redirect_code",
            message: "305",
        },
    ]);
}

/// Names, paths and domains end up unquoted in haproxy.cfg: whitespace,
/// quotes, `#` (a comment) or a newline (a new directive) must never pass.
#[test]
fn schema_errors_unsafe_names_paths_and_domains() {
    check(&[
        Case {
            name: "service with a space",
            yaml: r"
                version: 1
                routes:
                  - service: go demo
                    port: 80
                    paths: [/demo]
            ",
            line: 3,
            field: "routes[0].service",
            message: r#""go demo" does not match"#,
        },
        Case {
            name: "route name with a double quote",
            yaml: r#"
                version: 1
                routes:
                  - name: 'a"b'
                    service: api
                    port: 80
                    paths: [/api]
            "#,
            line: 3,
            field: "routes[0].name",
            message: r#""a\"b""#,
        },
        Case {
            name: "service with a newline starting a new section",
            yaml: r#"
                version: 1
                routes:
                  - service: "api\nbackend evil"
                    port: 80
                    paths: [/api]
            "#,
            line: 3,
            field: "routes[0].service",
            message: r#""api\nbackend evil" does not match"#,
        },
        Case {
            name: "service with a hash starting a comment",
            yaml: r"
                version: 1
                routes:
                  - service: api#comment
                    port: 80
                    paths: [/api]
            ",
            line: 3,
            field: "routes[0].service",
            message: r#""api#comment" does not match"#,
        },
        Case {
            name: "service name of 64 characters",
            yaml: r"
                version: 1
                routes:
                  - service: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
                    port: 80
                    paths: [/api]
            ",
            line: 3,
            field: "routes[0].service",
            message: "is longer than 63 characters",
        },
        Case {
            name: "path with a space",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: ["/a b"]
            "#,
            line: 5,
            field: "routes[0].paths[0]",
            message: r#""/a b" does not match"#,
        },
        Case {
            name: "path with a hash",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/ok, "/a#b"]
            "#,
            line: 5,
            field: "routes[0].paths[1]",
            message: r#""/a#b" does not match"#,
        },
        Case {
            name: "path with a newline",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: ["/a\nuse_backend evil"]
            "#,
            line: 5,
            field: "routes[0].paths[0]",
            message: r#""/a\nuse_backend evil" does not match"#,
        },
        Case {
            name: "path with a single quote",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: ["/it's"]
            "#,
            line: 5,
            field: "routes[0].paths[0]",
            message: r#""/it's" does not match"#,
        },
        Case {
            name: "domain with a space",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    domains: ["exa mple.com"]
            "#,
            line: 5,
            field: "routes[0].domains[0]",
            message: r#""exa mple.com" does not match"#,
        },
        Case {
            name: "domain label starting with a dash",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    domains: [-bad.example.com]
            ",
            line: 5,
            field: "routes[0].domains[0]",
            message: r#""-bad.example.com" does not match"#,
        },
        Case {
            name: "domain with an empty label",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    domains: [example..com]
            ",
            line: 5,
            field: "routes[0].domains[0]",
            message: r#""example..com" does not match"#,
        },
        Case {
            name: "wildcard in the middle of a domain",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    domains: ["api.*.example.com"]
            "#,
            line: 5,
            field: "routes[0].domains[0]",
            message: r#""api.*.example.com" does not match"#,
        },
        Case {
            name: "domain with a port",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    domains: ["example.com:8080"]
            "#,
            line: 5,
            field: "routes[0].domains[0]",
            message: r#""example.com:8080" does not match"#,
        },
        Case {
            name: "user name with a space",
            yaml: r"
                version: 1
                userlists:
                  ops:
                    - name: bob smith
                      password_hash: $6$salt$hash
            ",
            line: 4,
            field: "userlists.ops[0].name",
            message: r#""bob smith" does not match"#,
        },
        Case {
            name: "userlist name with a space",
            yaml: r#"
                version: 1
                userlists:
                  "my ops": []
            "#,
            line: 3,
            field: "userlists.my ops",
            message: "`my ops`",
        },
    ]);
}

#[test]
fn schema_errors_durations_secrets_headers_and_addresses() {
    check(&[
        Case {
            name: "route timeout in words",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    timeouts:
                      server: 30 seconds
            ",
            line: 7,
            field: "routes[0].timeouts.server",
            message: r#""30 seconds""#,
        },
        Case {
            name: "default timeout with a fraction",
            yaml: r"
                version: 1
                defaults:
                  timeouts:
                    connect: 1.5s
            ",
            line: 4,
            field: "defaults.timeouts.connect",
            message: r#""1.5s" does not match"#,
        },
        Case {
            name: "default timeout as a bare YAML number",
            yaml: r"
                version: 1
                defaults:
                  timeouts:
                    client: 5000
            ",
            line: 4,
            field: "defaults.timeouts.client",
            message: r#"5000 is not of type "string""#,
        },
        Case {
            name: "health-check interval with a space",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    health_check:
                      interval: 5 s
            ",
            line: 7,
            field: "routes[0].health_check.interval",
            message: r#""5 s""#,
        },
        Case {
            name: "plaintext password",
            yaml: r"
                version: 1
                userlists:
                  ops:
                    - name: admin
                      password_hash: hunter2
            ",
            line: 5,
            field: "userlists.ops[0].password_hash",
            message: r#""hunter2" does not match"#,
        },
        Case {
            name: "header value with a double quote",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    request_headers:
                      set:
                        X-Note: 'say "hi"'
            "#,
            line: 8,
            field: "routes[0].request_headers.set.X-Note",
            message: r#""say \"hi\"" does not match"#,
        },
        Case {
            name: "header value with a sample expression",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    request_headers:
                      add:
                        X-Client: "%[src]"
            "#,
            line: 8,
            field: "routes[0].request_headers.add.X-Client",
            message: r#""%[src]" does not match"#,
        },
        Case {
            name: "header value with a newline",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    response_headers:
                      set:
                        X-Frame-Options: "DENY\nhttp-response del-header X"
            "#,
            line: 8,
            field: "routes[0].response_headers.set.X-Frame-Options",
            message: r#""DENY\nhttp-response del-header X" does not match"#,
        },
        Case {
            name: "header value with a backslash",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    response_headers:
                      add:
                        X-Path: 'C:\temp'
            "#,
            line: 8,
            field: "routes[0].response_headers.add.X-Path",
            message: r#""C:\\temp" does not match"#,
        },
        Case {
            name: "header name with a space",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    request_headers:
                      delete: ["X Powered By"]
            "#,
            line: 7,
            field: "routes[0].request_headers.delete[0]",
            message: r#""X Powered By" does not match"#,
        },
        Case {
            name: "header name with a hash",
            yaml: r#"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    response_headers:
                      delete: ["Server#x"]
            "#,
            line: 7,
            field: "routes[0].response_headers.delete[0]",
            message: r#""Server#x" does not match"#,
        },
        Case {
            name: "path rewrite with a sample expression",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    rewrite_path:
                      regex: ^/api(.*)
                      replace: /%[src]
            ",
            line: 8,
            field: "routes[0].rewrite_path.replace",
            message: "/%[src]",
        },
        Case {
            name: "bind address is a host name",
            yaml: r"
                version: 1
                defaults:
                  bind_address: localhost
            ",
            line: 3,
            field: "defaults.bind_address",
            message: r#""localhost" does not match"#,
        },
        Case {
            name: "relative certificate path",
            yaml: r"
                version: 1
                defaults:
                  https:
                    certificates: certs/site.pem
            ",
            line: 4,
            field: "defaults.https.certificates",
            message: "certs/site.pem",
        },
        Case {
            name: "certificate directory without a path",
            yaml: r"
                version: 1
                defaults:
                  https:
                    certificate_dirs:
                      - prefixes: [cert-]
            ",
            line: 5,
            field: "defaults.https.certificate_dirs[0].path",
            message: "missing required field `path`",
        },
        Case {
            name: "resolver without a port",
            yaml: r"
                version: 1
                defaults:
                  resolvers: [127.0.0.11]
            ",
            line: 3,
            field: "defaults.resolvers[0]",
            message: r#""127.0.0.11" does not match"#,
        },
        Case {
            name: "static server without a port",
            yaml: r"
                version: 1
                routes:
                  - service: legacy
                    port: 80
                    paths: [/legacy]
                    servers: [10.0.0.1]
            ",
            line: 6,
            field: "routes[0].servers[0]",
            message: r#""10.0.0.1" does not match"#,
        },
    ]);
}

#[test]
fn yaml_syntax_errors_and_empty_files() {
    check(&[
        Case {
            name: "unclosed flow sequence",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: [80
            ",
            line: 4,
            field: "",
            message: "invalid YAML: unclosed bracket",
        },
        Case {
            name: "tab indentation",
            yaml: "version: 1\nroutes:\n\t- service: api\n",
            line: 3,
            field: "",
            message: "invalid YAML: tabs disallowed",
        },
        Case {
            name: "duplicate key",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    port: 81
                    paths: [/api]
            ",
            line: 5,
            field: "",
            message: "invalid YAML: duplicate mapping key: port",
        },
        Case {
            name: "empty file",
            yaml: "",
            line: 0,
            field: "",
            message: "the file is empty; it needs at least `version: 1`",
        },
        Case {
            name: "only comments",
            yaml: r"
                # routes go here one day
            ",
            line: 0,
            field: "",
            message: "the file is empty",
        },
    ]);
}

#[test]
fn semantic_errors() {
    check(&[
        Case {
            name: "same domain and path in two routes (domains compare case-insensitively)",
            yaml: r"
                version: 1
                routes:
                  - service: shop
                    port: 80
                    domains: [example.com]
                    paths: [/cart]
                  - service: shop-v2
                    port: 80
                    domains: [Example.COM]
                    paths: [/cart]
            ",
            line: 10,
            field: "routes[1].paths[0]",
            message: "`/cart` on example.com is already routed by routes[0] (shop:80)",
        },
        Case {
            name: "same path on any domain in two routes",
            yaml: r"
                version: 1
                routes:
                  - service: a
                    port: 80
                    paths: [/x, /y]
                  - service: b
                    port: 80
                    paths: [/z, /y]
            ",
            line: 8,
            field: "routes[1].paths[1]",
            message: "`/y` is already routed by routes[0] (a:80)",
        },
        Case {
            name: "whole domain claimed twice: domain-only route and path /",
            yaml: r"
                version: 1
                routes:
                  - service: site
                    port: 80
                    domains: [example.com]
                  - service: other
                    port: 80
                    domains: [example.com]
                    paths: [/]
            ",
            line: 9,
            field: "routes[1].paths[0]",
            message: "`/` on example.com is already routed by routes[0] (site:80)",
        },
        Case {
            name: "same wildcard domain twice",
            yaml: r"
                version: 1
                routes:
                  - service: a
                    port: 80
                    domains: ['*.example.com']
                  - service: b
                    port: 80
                    domains: ['*.EXAMPLE.com', example.org]
            ",
            line: 8,
            field: "routes[1].domains",
            message: "`/` on *.example.com is already routed by routes[0] (a:80)",
        },
        Case {
            name: "duplicate route id",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/v1]
                  - service: api
                    port: 80
                    paths: [/v2]
            ",
            line: 6,
            field: "routes[1]",
            message: "route `api:80` is already defined at routes[0]; give one of them a distinct `name`",
        },
        Case {
            name: "duplicate route id through a name",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/v1]
                  - name: api
                    service: api-v2
                    port: 80
                    paths: [/v2]
            ",
            line: 6,
            field: "routes[1]",
            message: "route `api:80` is already defined at routes[0]",
        },
        Case {
            name: "path without a leading slash",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [api]
            ",
            line: 5,
            field: "routes[0].paths[0]",
            message: "`api` must start with `/`",
        },
        Case {
            name: "tcp route without listen_port",
            yaml: r"
                version: 1
                routes:
                  - service: db
                    port: 5432
                    mode: tcp
            ",
            line: 3,
            field: "routes[0].listen_port",
            message: "a tcp route needs `listen_port`",
        },
        Case {
            name: "http route with neither paths nor domains",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
            ",
            line: 3,
            field: "routes[0].paths",
            message: "an http route needs `paths` or `domains`",
        },
        Case {
            name: "listen_port collides with http_port",
            yaml: r"
                version: 1
                defaults:
                  http_port: 8080
                routes:
                  - service: db
                    port: 5432
                    mode: tcp
                    listen_port: 8080
            ",
            line: 8,
            field: "routes[0].listen_port",
            message: "port 8080 is already used by defaults.http_port",
        },
        Case {
            name: "two tcp routes on one listen_port",
            yaml: r"
                version: 1
                routes:
                  - service: db
                    port: 5432
                    mode: tcp
                    listen_port: 5432
                  - service: db-replica
                    port: 5432
                    mode: tcp
                    listen_port: 5432
            ",
            line: 10,
            field: "routes[1].listen_port",
            message: "port 5432 is already used by routes[0].listen_port",
        },
        Case {
            name: "https port collides with http port",
            yaml: r"
                version: 1
                defaults:
                  http_port: 8443
                  https:
                    port: 8443
                    certificates: /etc/capstan/certs
            ",
            line: 5,
            field: "defaults.https.port",
            message: "port 8443 is already used by defaults.http_port",
        },
        Case {
            name: "stats port collides with http port",
            yaml: r"
                version: 1
                defaults:
                  stats:
                    port: 80
            ",
            line: 4,
            field: "defaults.stats.port",
            message: "port 80 is already used by defaults.http_port",
        },
        Case {
            name: "stats uri without a leading slash",
            yaml: r"
                version: 1
                defaults:
                  stats:
                    port: 8404
                    uri: stats
            ",
            line: 5,
            field: "defaults.stats.uri",
            message: "must start with `/`",
        },
        Case {
            name: "unknown userlist",
            yaml: r"
                version: 1
                routes:
                  - service: grafana
                    port: 3000
                    paths: [/grafana]
                    auth:
                      userlist: ops
            ",
            line: 7,
            field: "routes[0].auth.userlist",
            message: "no userlist `ops` in `userlists`",
        },
        Case {
            name: "redirect_code without https_only",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    redirect_code: 301
            ",
            line: 6,
            field: "routes[0].redirect_code",
            message: "only used with `https_only: true`",
        },
        Case {
            name: "tcp route with paths",
            yaml: r"
                version: 1
                routes:
                  - service: db
                    port: 5432
                    mode: tcp
                    listen_port: 5432
                    paths: [/db]
            ",
            line: 7,
            field: "routes[0].paths",
            message: "`paths` applies to http routes only",
        },
        Case {
            name: "tcp route with https_only",
            yaml: r"
                version: 1
                routes:
                  - service: db
                    port: 5432
                    mode: tcp
                    listen_port: 5432
                    https_only: true
            ",
            line: 7,
            field: "routes[0].https_only",
            message: "`https_only` applies to http routes only",
        },
        Case {
            name: "tcp route with request headers",
            yaml: r"
                version: 1
                routes:
                  - service: db
                    port: 5432
                    mode: tcp
                    listen_port: 5432
                    request_headers:
                      delete: [X-Debug]
            ",
            line: 8,
            field: "routes[0].request_headers",
            message: "`request_headers` applies to http routes only",
        },
        Case {
            name: "http route with listen_port",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    listen_port: 8080
            ",
            line: 6,
            field: "routes[0].listen_port",
            message: "`listen_port` applies to tcp routes",
        },
        Case {
            name: "http route with a client timeout",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    timeouts:
                      client: 5s
            ",
            line: 7,
            field: "routes[0].timeouts.client",
            message: "applies to tcp routes",
        },
        Case {
            name: "user listed twice",
            yaml: r"
                version: 1
                userlists:
                  ops:
                    - name: admin
                      password_hash: $6$salt$one
                    - name: admin
                      password_hash: $6$salt$two
            ",
            line: 6,
            field: "userlists.ops[1].name",
            message: "user `admin` is already listed at index 0",
        },
        Case {
            name: "health-check path without a leading slash",
            yaml: r"
                version: 1
                routes:
                  - service: api
                    port: 80
                    paths: [/api]
                    health_check:
                      path: health
            ",
            line: 7,
            field: "routes[0].health_check.path",
            message: "must start with `/`",
        },
        Case {
            name: "tcp route with a health-check path",
            yaml: r"
                version: 1
                routes:
                  - service: db
                    port: 5432
                    mode: tcp
                    listen_port: 5432
                    health_check:
                      path: /health
            ",
            line: 8,
            field: "routes[0].health_check.path",
            message: "a tcp route is checked by connecting",
        },
    ]);
}

#[test]
fn the_corpus_is_large_and_distinct() {
    // Counted from the source so that deleting cases shows up here.
    let source = include_str!("bad_inputs.rs");
    let cases = source.matches("        Case {\n").count();
    assert!(cases >= 30, "only {cases} cases");
}

#[test]
fn diagnostics_print_as_file_line_column_field_message() {
    let found = diagnostics(&yaml(
        r"
        version: 1
        routes:
          - service: a
            port: 80
            paths: [/a]
          - service: b
            port: 70000
            paths: [/b]
        ",
    ));
    assert_eq!(
        found.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["routes.yaml:7:11: routes[1].port: 70000 is greater than the maximum of 65535"]
    );
}

/// One run reports every schema problem, in file order: fixing a file never
/// takes one round trip per mistake.
#[test]
fn several_schema_errors_are_reported_at_once_in_file_order() {
    let found = diagnostics(&yaml(
        r#"
        version: 2
        routes:
          - service: a
            port: 70000
            paths: [/a]
          - port: 80
            domains: ["bad domain"]
            timeouts:
              server: soon
          - service: c
            port: 80
            paht: [/c]
        "#,
    ));
    let got: Vec<(usize, &str)> = found.iter().map(|d| (d.line, d.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (1, "version"),
            (4, "routes[0].port"),
            (6, "routes[1].service"),
            (7, "routes[1].domains[0]"),
            (9, "routes[1].timeouts.server"),
            (12, "routes[2].paht"),
        ],
        "{}",
        listing(&found)
    );
    assert!(found[5].message.contains("unknown field `paht`"));
}

#[test]
fn several_semantic_errors_are_reported_at_once_in_file_order() {
    let found = diagnostics(&yaml(
        r"
        version: 1
        routes:
          - service: a
            port: 80
            paths: [a]
          - service: db
            port: 5432
            mode: tcp
          - service: c
            port: 80
            paths: [/c]
            redirect_code: 301
            auth:
              userlist: nobody
          - service: d
            port: 80
            paths: [/c]
        ",
    ));
    let got: Vec<(usize, &str)> = found.iter().map(|d| (d.line, d.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (5, "routes[0].paths[0]"),
            (6, "routes[1].listen_port"),
            (12, "routes[2].redirect_code"),
            (14, "routes[2].auth.userlist"),
            (17, "routes[3].paths[0]"),
        ],
        "{}",
        listing(&found)
    );
}

/// Where a string reaches haproxy.cfg, as a YAML template: `@` is replaced by
/// the JSON-quoted (so also valid YAML) value under test.
struct Slot {
    what: &'static str,
    template: String,
    /// A value the slot accepts; the payload is spliced into it.
    benign: &'static str,
    /// The field a diagnostic must point at (or one of its parents, where an
    /// optional object is reported as a whole; or one of its children, where
    /// the value is a mapping key).
    field: String,
    /// Where the value is written in haproxy.cfg.
    word: Word,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Word {
    Literal,
    /// A PCRE pattern: rendered with its backslashes doubled.
    Regex,
    /// Inside double quotes (a header value).
    Quoted,
}

impl Slot {
    fn new(what: &'static str, template: &str, benign: &'static str, field: &str) -> Self {
        Self {
            what,
            template: template.to_string(),
            benign,
            field: field.to_string(),
            word: Word::Literal,
        }
    }

    fn regex(self) -> Self {
        Self {
            word: Word::Regex,
            ..self
        }
    }
}

const ROUTE: &str = "version: 1\nroutes:\n  - service: api\n    port: 80\n    paths: [/api]\n";

/// Every place where a name, path, domain or other unquoted word of
/// routes.yaml is copied into haproxy.cfg.
fn unquoted_slots() -> Vec<Slot> {
    let route = |extra: &str| format!("{ROUTE}{extra}");
    vec![
        Slot::new(
            "route name",
            "version: 1\nroutes:\n  - name: @\n    service: api\n    port: 80\n    paths: [/api]\n",
            "api-v1",
            "routes[0].name",
        ),
        Slot::new(
            "service",
            "version: 1\nroutes:\n  - service: @\n    port: 80\n    paths: [/api]\n",
            "api",
            "routes[0].service",
        ),
        Slot::new(
            "prefix path",
            "version: 1\nroutes:\n  - service: api\n    port: 80\n    paths: [@]\n",
            "/api",
            "routes[0].paths[0]",
        ),
        Slot::new(
            "regex path",
            "version: 1\nroutes:\n  - service: api\n    port: 80\n    path_match: regex\n    paths: [@]\n",
            "^/api/v[0-9]+",
            "routes[0].paths[0]",
        )
        .regex(),
        Slot::new(
            "domain",
            "version: 1\nroutes:\n  - service: api\n    port: 80\n    domains: [@]\n",
            "api.example.com",
            "routes[0].domains[0]",
        ),
        Slot::new(
            "userlist name",
            "version: 1\nuserlists:\n  @: []\n",
            "ops",
            "userlists",
        ),
        Slot::new(
            "user name",
            "version: 1\nuserlists:\n  ops:\n    - name: @\n      password_hash: $6$salt$hash\n",
            "admin",
            "userlists.ops[0].name",
        ),
        Slot::new(
            "password hash",
            "version: 1\nuserlists:\n  ops:\n    - name: admin\n      password_hash: @\n",
            "$6$salt$hash",
            "userlists.ops[0].password_hash",
        ),
        Slot::new(
            "auth realm",
            &route("    auth:\n      userlist: ops\n      realm: @\nuserlists:\n  ops: []\n"),
            "Operators",
            "routes[0].auth.realm",
        ),
        Slot::new(
            "request header name (delete)",
            &route("    request_headers:\n      delete: [@]\n"),
            "X-Debug",
            "routes[0].request_headers.delete[0]",
        ),
        Slot::new(
            "response header name (set)",
            &route("    response_headers:\n      set:\n        @: value\n"),
            "X-Frame-Options",
            "routes[0].response_headers.set",
        ),
        Slot::new(
            "rewrite regex",
            &route("    rewrite_path:\n      regex: @\n      replace: /\\1\n"),
            "^/api/(.*)",
            "routes[0].rewrite_path.regex",
        )
        .regex(),
        Slot::new(
            "rewrite replacement",
            &route("    rewrite_path:\n      regex: ^/api/(.*)\n      replace: @\n"),
            "/v1/\\1",
            "routes[0].rewrite_path.replace",
        ),
        Slot::new(
            "rewrite regex, second of a list",
            &route(
                "    rewrite_path:\n      - {regex: ^/api/(.*), replace: /v1/\\1}\n      - regex: @\n        replace: /\\1\n",
            ),
            "^/v1/(.*)",
            "routes[0].rewrite_path[1].regex",
        )
        .regex(),
        Slot::new(
            "rewrite replacement, second of a list",
            &route(
                "    rewrite_path:\n      - {regex: ^/api/(.*), replace: /v1/\\1}\n      - regex: ^/v1/(.*)\n        replace: @\n",
            ),
            "/v2/\\1",
            "routes[0].rewrite_path[1].replace",
        ),
        Slot::new(
            "users file",
            "version: 1\nuserlists:\n  ops: {file: @}\n",
            "/run/secrets/dfp_users_ops",
            "userlists.ops.file",
        ),
        Slot::new(
            "health-check path",
            &route("    health_check:\n      path: @\n"),
            "/healthz",
            "routes[0].health_check.path",
        ),
        Slot::new(
            "excluded path",
            &route("    exclude_paths: [@]\n"),
            "/api/internal",
            "routes[0].exclude_paths[0]",
        ),
        Slot::new(
            "excluded regex",
            "version: 1\nroutes:\n  - service: api\n    port: 80\n    path_match: regex\n    paths: ['^/api']\n    exclude_paths: [@]\n",
            "^/api/internal",
            "routes[0].exclude_paths[0]",
        )
        .regex(),
        Slot::new(
            "redirected domain",
            "version: 1\nroutes:\n  - service: api\n    port: 80\n    domains: [a.com]\n    redirect_from: [@]\n",
            "old.example.com",
            "routes[0].redirect_from[0]",
        ),
        Slot::new(
            "allowed method",
            &route("    allowed_methods: [@]\n"),
            "GET",
            "routes[0].allowed_methods[0]",
        ),
        Slot::new(
            "denied method",
            &route("    denied_methods: [@]\n"),
            "DELETE",
            "routes[0].denied_methods[0]",
        ),
        Slot::new(
            "static server",
            &route("    servers: [@]\n"),
            "10.0.0.1:8080",
            "routes[0].servers[0]",
        ),
        Slot::new(
            "matched header name",
            &route("    match_headers:\n      @: '3'\n"),
            "X-Version",
            "routes[0].match_headers",
        ),
        Slot::new(
            "compression type",
            &route("    compression:\n      algorithms: [gzip]\n      types: [@]\n"),
            "text/html",
            "routes[0].compression.types[0]",
        ),
        Slot::new(
            "timeout",
            &route("    timeouts:\n      server: @\n"),
            "30s",
            "routes[0].timeouts.server",
        ),
        Slot::new(
            "stats uri",
            "version: 1\ndefaults:\n  stats:\n    port: 8404\n    uri: @\n",
            "/stats",
            "defaults.stats.uri",
        ),
        Slot::new(
            "certificates",
            "version: 1\ndefaults:\n  https:\n    certificates: @\n",
            "/etc/capstan/certs/site.pem",
            "defaults.https.certificates",
        ),
        Slot::new(
            "certificate directory",
            "version: 1\ndefaults:\n  https:\n    certificate_dirs:\n      - path: @\n",
            "/run/secrets",
            "defaults.https.certificate_dirs[0].path",
        ),
        Slot::new(
            "certificate name prefix",
            "version: 1\ndefaults:\n  https:\n    certificate_dirs:\n      - path: /run/secrets\n        prefixes: [@]\n",
            "cert-",
            "defaults.https.certificate_dirs[0].prefixes[0]",
        ),
        Slot::new(
            "resolver",
            "version: 1\ndefaults:\n  resolvers: [@]\n",
            "127.0.0.11:53",
            "defaults.resolvers[0]",
        ),
        Slot::new(
            "bind address",
            "version: 1\ndefaults:\n  bind_address: @\n",
            "10.0.0.1",
            "defaults.bind_address",
        ),
        Slot::new(
            "sni server name",
            "version: 1\nroutes:\n  - service: api\n    port: 443\n    mode: sni\n    listen_port: 8443\n    domains: [@]\n",
            "api.example.com",
            "routes[0].domains[0]",
        ),
        Slot::new(
            "backend TLS CA file",
            &route("    backend_tls:\n      verify: required\n      ca_file: @\n"),
            "/etc/capstan/ca.pem",
            "routes[0].backend_tls.ca_file",
        ),
        Slot::new(
            "backend TLS server name",
            &route("    backend_tls:\n      verify: none\n      sni: @\n"),
            "api.internal",
            "routes[0].backend_tls.sni",
        ),
    ]
}

/// Header values are written inside double quotes, where spaces, `#` and `'`
/// are plain text; what could end the quotes, the line, or be expanded must
/// not pass.
fn header_value_slots() -> Vec<Slot> {
    [
        ("request_headers", "set"),
        ("request_headers", "add"),
        ("response_headers", "set"),
        ("response_headers", "add"),
    ]
    .into_iter()
    .map(|(section, op)| {
        (
            format!("{ROUTE}    {section}:\n      {op}:\n        X-Test: @\n"),
            format!("routes[0].{section}.{op}.X-Test"),
        )
    })
    .chain([
        (
            format!("{ROUTE}    match_headers:\n      X-Test: @\n"),
            "routes[0].match_headers.X-Test".to_string(),
        ),
        (
            format!("{ROUTE}    user_agents: [@]\n"),
            "routes[0].user_agents[0]".to_string(),
        ),
    ])
    .map(|(template, field)| Slot {
        what: "header value",
        template,
        benign: "max-age=31536000; includeSubDomains # it's fine",
        field,
        word: Word::Quoted,
    })
    .collect()
}

/// Text that would start a new directive, a comment, another argument or a
/// quoted string if it reached an unquoted place in haproxy.cfg.
const UNQUOTED_PAYLOADS: &[&str] = &[
    "\nbackend evil\n",
    "\n",
    "\r",
    " if TRUE",
    "\t",
    "#",
    " #",
    "\"",
    "'",
];

/// What could end a double-quoted header value, start a sample expression
/// (`%[...]`) or an environment variable (`${...}`, expanded by HAProxy
/// inside double quotes).
const HEADER_VALUE_PAYLOADS: &[&str] = &[
    "\n",
    "\r\nX-Evil: 1",
    "\"",
    "\" if TRUE #",
    "%[src]",
    "\\",
    "\u{7f}",
    "\0",
    "${HOME}",
];

fn fill(slot: &Slot, value: &str) -> String {
    // JSON strings are YAML double-quoted strings, except that YAML wants
    // DEL escaped too.
    let quoted = serde_json::to_string(value)
        .expect("strings serialize")
        .replace('\u{7f}', "\\u007f");
    slot.template.replace('@', &quoted)
}

/// The benign value with the payload spliced in: appended where the value's
/// shape is checked at its start (paths) or end (`host:port`), else in the middle.
fn attempt(slot: &Slot, payload: &str) -> String {
    let benign = slot.benign;
    let at = if benign.contains(':') || benign.starts_with('/') {
        benign.len()
    } else {
        benign.len() / 2
    };
    format!("{}{payload}{}", &benign[..at], &benign[at..])
}

/// What HAProxy reads of a rendered table: the config, then the lines of the
/// map files it routes paths through (which it reads as they are: no escapes,
/// no variables, a line per key).
fn read_by_haproxy(config: &capstan::render::HaproxyConfig) -> String {
    let mut text = config.to_string();
    for map in &config.maps {
        text.push_str(&map.text());
    }
    text
}

/// Tries every payload in every slot; returns a description of each that got
/// through without `harmless` saying so (value, rendered config), or was
/// rejected without pointing at the slot, and the count tried.
fn injections_through(
    slots: &[Slot],
    payloads: &[&str],
    harmless: impl Fn(&Slot, &str, &str) -> bool,
) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut tried = 0;
    for slot in slots {
        let benign = fill(slot, slot.benign);
        if let Err(d) = load("routes.yaml", &benign) {
            failures.push(format!(
                "{}: the benign value {:?} is rejected, so the slot tests nothing:\n{d}",
                slot.what, slot.benign
            ));
            continue;
        }
        for payload in payloads {
            let value = attempt(slot, payload);
            tried += 1;
            match load("routes.yaml", &fill(slot, &value)) {
                Ok(routes) => {
                    let config = read_by_haproxy(&capstan::render::render(&routes));
                    if harmless(slot, &value, &config) {
                        continue;
                    }
                    let lines: Vec<&str> = config
                        .lines()
                        .filter(|l| value.lines().any(|v| !v.is_empty() && l.contains(v)))
                        .collect();
                    failures.push(format!(
                        "{}: {value:?} was accepted and renders:\n{}",
                        slot.what,
                        lines.join("\n")
                    ));
                }
                Err(d) => {
                    let pointed = d.iter().any(|d| {
                        !d.field.is_empty()
                            && (slot.field.starts_with(d.field.as_str())
                                || d.field.starts_with(slot.field.as_str()))
                    });
                    if !pointed {
                        failures.push(format!(
                            "{}: {value:?} rejected, but no diagnostic points at {}:\n{d}",
                            slot.what, slot.field
                        ));
                    }
                }
            }
        }
    }
    (failures, tried)
}

fn assert_all_rejected(slots: &[Slot], payloads: &[&str]) {
    assert_harmless(slots, payloads, |_, _, _| false);
}

fn assert_harmless(
    slots: &[Slot],
    payloads: &[&str],
    harmless: impl Fn(&Slot, &str, &str) -> bool,
) {
    let (failures, tried) = injections_through(slots, payloads, harmless);
    assert_eq!(tried, slots.len() * payloads.len());
    assert!(
        failures.is_empty(),
        "{} of {tried} injection attempts got through:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn no_injection_into_unquoted_words_reaches_render() {
    assert_all_rejected(&unquoted_slots(), UNQUOTED_PAYLOADS);
}

#[test]
fn no_injection_through_header_values_reaches_render() {
    assert_all_rejected(&header_value_slots(), HEADER_VALUE_PAYLOADS);
}

/// Escapes HAProxy decodes inside config words (`\x00` ends the word:
/// `/app\x00zz` matched as `/app`), variables it expands inside double
/// quotes, and what ends a line or starts a comment.
const ESCAPE_PAYLOADS: &[&str] = &[
    r"\x00", r"\n", r"\x0a", r"\\", r#"\""#, r"\ ", r"\t", "$VAR", "${VAR}", "\n", "\0", "#",
];

/// Every escape in every slot is refused at the slot, or rendered so that
/// HAProxy reads exactly the text written: a regex with its backslashes
/// doubled, `$` outside double quotes, `#` inside them; nothing else.
#[test]
fn no_escape_reaches_render_undecoded() {
    let slots: Vec<Slot> = unquoted_slots()
        .into_iter()
        .chain(header_value_slots())
        .collect();
    assert_harmless(&slots, ESCAPE_PAYLOADS, |slot, value, config| {
        // What may pass; `first_decoded` then checks HAProxy reads it as written.
        let allowed = match slot.word {
            Word::Regex => value.contains('\\') || value.contains('$'),
            Word::Literal => value.contains('$'),
            Word::Quoted => value.contains('#'),
        };
        let written = match slot.word {
            // HAProxy halves each backslash before PCRE sees the pattern.
            Word::Regex => value.replace('\\', "\\\\"),
            Word::Literal | Word::Quoted => value.to_string(),
        };
        allowed && config.contains(&written) && words::first_decoded(config).is_none()
    });
}

/// The text a header value may hold stays inside its double quotes.
#[test]
fn header_values_are_rendered_inside_double_quotes() {
    let text = format!(
        "{ROUTE}    response_headers:\n      set:\n        Strict-Transport-Security: \"max-age=31536000; includeSubDomains # it's fine\"\n"
    );
    let config = capstan::render::render(&load("routes.yaml", &text).unwrap()).to_string();
    assert!(
        config.contains(
            "\n    http-response set-header Strict-Transport-Security \"max-age=31536000; includeSubDomains # it's fine\"\n"
        ),
        "{config}"
    );
}

/// Tables the schema accepts but that `haproxy -c` would reject, or that
/// would route requests to the wrong backend: the semantic checks catch them.
#[test]
fn tables_that_would_break_haproxy_are_rejected() {
    check(&[
        Case {
            // `url_a180` names the ACL of both a:180 and a1:80; HAProxy ORs
            // ACLs of one name, so /y is served by a-be180 (same for
            // `domain_<key><port>`). haproxy -c accepts it silently.
            name: "two routes whose ACL names collide",
            yaml: r"
                version: 1
                routes:
                  - service: a
                    port: 180
                    paths: [/x]
                  - service: a1
                    port: 80
                    paths: [/y]
            ",
            line: 6,
            field: "routes[1]",
            message: "url_a180",
        },
        Case {
            // haproxy -c: 'bind' : invalid address: '999.1.1.1'
            name: "bind address octet above 255",
            yaml: r"
                version: 1
                defaults:
                  bind_address: 999.1.1.1
            ",
            line: 3,
            field: "defaults.bind_address",
            message: "999.1.1.1",
        },
        Case {
            // haproxy -c: 'server a-be80/a-1' : invalid port '99999'
            name: "static server port above 65535",
            yaml: r#"
                version: 1
                routes:
                  - service: a
                    port: 80
                    paths: [/a]
                    servers: ["10.0.0.1:99999"]
            "#,
            line: 6,
            field: "routes[0].servers[0]",
            message: "99999",
        },
        Case {
            // haproxy -c: 'nameserver dns0' : invalid port '99999'
            name: "resolver port above 65535",
            yaml: r#"
                version: 1
                defaults:
                  resolvers: ["127.0.0.11:99999"]
            "#,
            line: 3,
            field: "defaults.resolvers[0]",
            message: "99999",
        },
        Case {
            // haproxy -c: timer overflow ... (maximum value is 2147483647 ms or ~24.8 days)
            name: "timeout above HAProxy's maximum",
            yaml: r"
                version: 1
                defaults:
                  timeouts:
                    server: 999999999d
            ",
            line: 4,
            field: "defaults.timeouts.server",
            message: "999999999d",
        },
        Case {
            // haproxy -c: regex '^/(a' is invalid (missing closing parenthesis)
            name: "regex path that does not compile",
            yaml: r#"
                version: 1
                routes:
                  - service: a
                    port: 80
                    path_match: regex
                    paths: ["^/(a"]
            "#,
            line: 6,
            field: "routes[0].paths[0]",
            message: "^/(a",
        },
        Case {
            // `acl url_a80 path_reg -m`: read as a flag; haproxy -c: unknown matching method
            name: "regex path that starts with a dash",
            yaml: r#"
                version: 1
                routes:
                  - service: a
                    port: 80
                    path_match: regex
                    paths: ["-m"]
            "#,
            line: 6,
            field: "routes[0].paths[0]",
            message: "-m",
        },
        Case {
            // HAProxy decodes `\x00` into a NUL that ends the word: the
            // second route would have matched as `/app`, routes[0]'s path,
            // without the claim check seeing two equal paths.
            name: "path that HAProxy would read as another route's path",
            yaml: r"
                version: 1
                routes:
                  - service: a
                    port: 80
                    paths: [/app]
                  - service: b
                    port: 80
                    paths: ['/app\x00zz']
            ",
            line: 8,
            field: "routes[1].paths[0]",
            message: "HAProxy would read it as an escape",
        },
        Case {
            // haproxy -c: failed to parse the regex
            name: "rewrite regex that does not compile",
            yaml: r#"
                version: 1
                routes:
                  - service: a
                    port: 80
                    paths: [/a]
                    rewrite_path:
                      regex: "^/(a"
                      replace: /
            "#,
            line: 7,
            field: "routes[0].rewrite_path.regex",
            message: "^/(a",
        },
    ]);
}
