//! Docker Flow Proxy's reconfigure parameters through `capstan::dfp`: the
//! book's example answer byte for byte, a table of bad inputs (each a 400 or
//! 409 naming its parameter), property tests (no input panics; whatever is
//! accepted validates and renders only lines capstan's renderer writes), the
//! real HAProxy accepting a config using every parameter family, and DFP's
//! `regsub` path rewrite behaving the same as the `replace-path` capstan
//! renders for it.
//!
//! Needs `haproxy` on PATH (`scripts/install-test-deps`); missing, the tests
//! that run it fail rather than skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan::dfp::{
    self, AnswerStatus, DfpError, MAX_PARAMS, MAX_VALUE_LEN, Reconfigure, parse_reconfigure,
    parse_remove,
};
use capstan::model::RoutesFile;
use capstan::model::validate;
use capstan::render::{HaproxyConfig, render};
use proptest::prelude::*;

#[path = "support/rendered.rs"]
mod rendered;
#[path = "support/words.rs"]
mod words;

const HASH: &str = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/";

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn table(r: &Reconfigure) -> RoutesFile {
    let mut file = RoutesFile::empty();
    file.routes = r.routes.clone();
    file.userlists = r.userlists.clone();
    file
}

#[test]
fn the_book_example_answers_and_renders_as_docker_flow_proxy() {
    let r = parse_reconfigure(&pairs(&[
        ("serviceName", "go-demo"),
        ("servicePath", "/demo"),
        ("port", "8080"),
    ]))
    .unwrap();
    let answer = dfp::reconfigure_answer(AnswerStatus::Ok, "", &r.service_name, &r.echo);
    assert_eq!(
        serde_json::to_string(&answer["ServiceDest"]).unwrap(),
        r#"[{"AllowedMethods":null,"DeniedMethods":null,"DenyHttp":false,"HttpsOnly":false,"HttpsPort":0,"HttpsRedirectCode":"","Index":0,"OutboundHostname":"","Port":"8080","RedirectFromDomain":null,"ReqMode":"http","ReqPathSearchReplace":"","ServiceDomain":null,"ServicePath":["/demo"],"ServicePathExclude":null,"SrcPort":0,"SslVerifyNone":false,"TimeoutClient":"","TimeoutServer":"","TimeoutTunnel":""}]"#
    );
    assert_eq!(
        serde_json::to_string(&answer).unwrap(),
        concat!(
            r#"{"AclName":"","AddReqHeader":null,"AddResHeader":null,"DelReqHeader":null,"DelResHeader":null,"#,
            r#""Distribute":false,"Host":"","HttpsOnly":false,"HttpsPort":0,"IsDefaultBackend":false,"#,
            r#""Message":"","Mode":"swarm","OutboundHostname":"","PathType":"path_beg","#,
            r#""RedirectUnlessHttpsProto":false,"RedirectWhenHttpProto":false,"ReqMode":"http","#,
            r#""ReqPathReplace":"","ReqPathSearch":"","#,
            r#""ServiceCert":"","ServiceColor":"","#,
            r#""ServiceDest":[{"AllowedMethods":null,"DeniedMethods":null,"DenyHttp":false,"HttpsOnly":false,"HttpsPort":0,"HttpsRedirectCode":"","Index":0,"OutboundHostname":"","Port":"8080","RedirectFromDomain":null,"ReqMode":"http","ReqPathSearchReplace":"","ServiceDomain":null,"ServicePath":["/demo"],"ServicePathExclude":null,"SrcPort":0,"SslVerifyNone":false,"TimeoutClient":"","TimeoutServer":"","TimeoutTunnel":""}],"#,
            r#""ServiceDomain":null,"ServiceName":"go-demo","SessionType":"","SetReqHeader":null,"#,
            r#""SetResHeader":null,"SkipCheck":false,"SslVerifyNone":false,"Status":"OK","#,
            r#""TimeoutServer":"","TimeoutTunnel":"","Users":null}"#
        )
    );
    // `acl url_go-demo8080 path_beg /demo`, as an entry of the prefix map.
    let cfg = render(&table(&r)).with_maps_listed();
    assert!(
        cfg.contains("    use_backend %[path,map_beg(/etc/haproxy/maps/prefix.map)] if { path,map_beg(/etc/haproxy/maps/prefix.map) -m found }\n"),
        "{cfg}"
    );
    assert!(
        cfg.ends_with("\n# /etc/haproxy/maps/prefix.map:\n#   /demo go-demo-be8080\n"),
        "{cfg}"
    );
    assert!(cfg.contains("\nbackend go-demo-be8080\n"), "{cfg}");
    assert!(cfg.contains("    server go-demo go-demo:8080\n"), "{cfg}");

    assert_eq!(
        serde_json::to_string(&dfp::error_answer("`serviceName` is required")).unwrap(),
        r#"{"Message":"`serviceName` is required","Status":"NOK"}"#
    );
}

/// One bad request: its parameters, the status it gets, and a parameter the
/// error must name (in `params()` and in the message).
struct Bad {
    params: Vec<(String, String)>,
    status: u16,
    names: &'static str,
}

fn bad(list: &[(&str, &str)], status: u16, names: &'static str) -> Bad {
    Bad {
        params: pairs(list),
        status,
        names,
    }
}

/// `serviceName=svc&port=8080&servicePath=/a` plus `extra`.
fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut params = pairs(&[
        ("serviceName", "svc"),
        ("port", "8080"),
        ("servicePath", "/a"),
    ]);
    params.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    params.extend(pairs(extra));
    params
}

fn bad_with(extra: &[(&str, &str)], names: &'static str) -> Bad {
    Bad {
        params: with(extra),
        status: 400,
        names,
    }
}

#[test]
fn bad_inputs_are_rejected_naming_the_parameter() {
    let big = "/".to_string() + &"a".repeat(10 * 1024);
    let just_too_long = "/".to_string() + &"a".repeat(MAX_VALUE_LEN);
    let too_many: Vec<(String, String)> = (0..=MAX_PARAMS)
        .map(|i| ("servicePath".to_string(), format!("/{i}")))
        .collect();
    let cases = vec![
        // Injection attempts: a real newline after URL-decoding, comments, spaces, quotes.
        bad_with(&[("servicePath", "/a\nacl x path_beg /")], "servicePath"),
        bad_with(&[("servicePath", "/a\r\nbackend x")], "servicePath"),
        bad_with(&[("servicePath", "/a#x")], "servicePath"),
        bad_with(&[("servicePath", "/a b")], "servicePath"),
        bad_with(&[("servicePath", "/a\"b")], "servicePath"),
        bad_with(&[("servicePath", "/a'b")], "servicePath"),
        bad_with(&[("servicePath", "/a\0")], "servicePath"),
        bad_with(&[("serviceName", "svc\nfrontend x")], "serviceName"),
        bad_with(&[("serviceName", "svc x")], "serviceName"),
        bad_with(&[("serviceDomain", "a.com\nacl x")], "serviceDomain"),
        bad_with(&[("serviceDomain", "a.com b.com")], "serviceDomain"),
        bad_with(&[("addReqHeader", "X-A \"a\" if TRUE")], "addReqHeader"),
        bad_with(
            &[("setResHeader", "X-A a\nhttp-request deny")],
            "setResHeader",
        ),
        bad_with(&[("addResHeader", "X-Leak ${GIT_TOKEN}")], "addResHeader"),
        bad_with(&[("addReqHeader", "X-Port %[dst_port]")], "addReqHeader"),
        bad_with(
            &[("reqPathSearchReplace", "/a,/b c")],
            "reqPathSearchReplace",
        ),
        bad_with(
            &[("servicePath", "-f"), ("pathType", "path_reg")],
            "servicePath",
        ),
        bad_with(&[("servicePath", big.as_str())], "servicePath"),
        bad_with(&[("servicePath", just_too_long.as_str())], "servicePath"),
        // Ports.
        bad_with(&[("port", "70000")], "port"),
        bad_with(&[("port", "abc")], "port"),
        bad_with(&[("port", "0")], "port"),
        bad(
            &[("serviceName", "svc"), ("servicePath", "/a")],
            400,
            "port",
        ),
        bad(
            &[("serviceName", "svc"), ("port", "5432"), ("reqMode", "tcp")],
            400,
            "srcPort",
        ),
        bad_with(&[("srcPort", "99999"), ("reqMode", "tcp")], "srcPort"),
        bad(
            &[("port", "8080"), ("servicePath", "/a")],
            400,
            "serviceName",
        ),
        // Plaintext passwords, unsupported values and parameters.
        bad_with(&[("users", "admin:admin")], "users"),
        bad_with(
            &[("users", "admin:admin"), ("usersPassEncrypted", "true")],
            "users",
        ),
        bad_with(&[("reqMode", "udp"), ("srcPort", "443")], "reqMode"),
        bad_with(&[("httpsPort", "0")], "httpsPort"),
        bad_with(&[("sslVerifyNone", "yes")], "sslVerifyNone"),
        bad_with(&[("pathType", "path_end")], "pathType"),
        bad_with(&[("sessionType", "sticky")], "sessionType"),
        bad_with(&[("isDefaultBackend", "maybe")], "isDefaultBackend"),
        bad_with(&[("allowedMethods", "GET\nacl x")], "allowedMethods"),
        bad_with(&[("deniedMethods", "get")], "deniedMethods"),
        bad_with(&[("denyHttp", "yes")], "denyHttp"),
        bad_with(&[("servicePathExclude", "/a x")], "servicePathExclude"),
        bad_with(
            &[
                ("serviceDomain", "a.com"),
                ("redirectFromDomain", "b.com c.com"),
            ],
            "redirectFromDomain",
        ),
        bad_with(&[("foo", "bar"), ("baz", "1")], "foo"),
        bad_with(&[("foo", "bar"), ("baz", "1")], "baz"),
        bad_with(&[("backendExtra", "http-request deny")], "backendExtra"),
        bad_with(&[("port.11", "80")], "port.11"),
        bad_with(&[("httpsRedirectCode", "301")], "httpsRedirectCode"),
        bad_with(&[("timeoutServer", "30s")], "timeoutServer"),
        bad_with(&[("ttl", "forever")], "ttl"),
        bad_with(&[("port", "8080"), ("port", "8081")], "port"),
        // Nothing to route.
        bad(
            &[("serviceName", "svc"), ("port", "8080")],
            409,
            "servicePath",
        ),
    ];
    assert!(cases.len() >= 30);
    for case in &cases {
        let shown: Vec<String> = case
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", v.chars().take(40).collect::<String>()))
            .collect();
        let error = match parse_reconfigure(&case.params) {
            Ok(r) => panic!("{shown:?} was accepted: {:?}", r.routes),
            Err(e) => e,
        };
        let message = error.to_string();
        assert_eq!(error.status_code(), case.status, "{shown:?}: {message}");
        assert!(
            error.params().iter().any(|p| p == case.names),
            "{shown:?}: {message} names {:?}, not `{}`",
            error.params(),
            case.names
        );
        assert!(message.contains(case.names), "{shown:?}: {message}");
        assert!(
            !message.chars().any(char::is_control) && message.len() < 2000,
            "{shown:?}: the message must be one short line: {message:?}"
        );
        assert!(!message.contains("admin:admin"), "{message}");
    }

    // Both unknown parameters in one error.
    let error = parse_reconfigure(&with(&[("foo", "bar"), ("baz", "1")])).unwrap_err();
    assert_eq!(
        error,
        DfpError::Unsupported {
            params: vec!["foo".into(), "baz".into()]
        }
    );
    assert_eq!(
        parse_reconfigure(&too_many).unwrap_err(),
        DfpError::TooManyParams {
            count: MAX_PARAMS + 1
        }
    );
}

#[test]
fn every_parameter_family_renders_a_config_haproxy_accepts() {
    let users = format!("alice:{HASH}");
    let r = parse_reconfigure(&pairs(&[
        ("serviceName", "shop"),
        ("port", "8080"),
        ("servicePath", "/shop,/basket"),
        ("serviceDomain", "shop.example.com,*example.org"),
        ("httpsOnly", "true"),
        ("httpsRedirectCode", "308"),
        ("users", users.as_str()),
        ("usersPassEncrypted", "true"),
        ("addReqHeader", "X-Shop one two,X-Other b"),
        ("setReqHeader", "X-Set c"),
        ("delReqHeader", "X-Forwarded-Host"),
        ("addResHeader", "X-Res d"),
        ("setResHeader", "Cache-Control no-store"),
        ("delResHeader", "Server"),
        ("reqPathSearchReplace", "^/shop/(v[0-9]),/\\1"),
        ("timeoutServer", "60"),
        ("timeoutTunnel", "3600"),
        ("connectionMode", "http-server-close"),
        ("sessionType", "sticky-server"),
        ("aclName", "10-shop"),
        ("distribute", "true"),
        ("replicas", "3"),
        ("ttl", "1h"),
        ("port.1", "9090"),
        ("servicePath.1", "/api"),
        ("reqMode.1", "http"),
        ("port.2", "5432"),
        ("reqMode.2", "tcp"),
        ("srcPort.2", "15432"),
        ("timeoutClient.2", "600"),
        ("port.3", "8080"),
        ("servicePath.3", "/other"),
        ("outboundHostname.3", "legacy.example.net"),
        ("servicePathExclude.1", "/api/internal"),
        ("redirectFromDomain", "old-shop.example.com"),
        ("allowedMethods", "GET,POST"),
        ("deniedMethods.1", "DELETE"),
        ("denyHttp.3", "true"),
        ("httpsPort.3", "8443"),
        ("sslVerifyNone.3", "true"),
        ("port.4", "443"),
        ("reqMode.4", "sni"),
        ("srcPort.4", "16443"),
        ("serviceDomain.4", "shop.example.com,*.shop.example.org"),
        ("serviceDomainAlgo", "hdr_dom(host)"),
        ("serviceHeader.3", "X-Version:3,name:Viktor Farcic"),
        ("userAgent.1", "googlebot,Mozilla/5.0 (iPhone"),
        ("compressionAlgo", "gzip deflate"),
        ("compressionType", "text/html text/css"),
        ("checkResolvers", "true"),
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.routes.len(), 5);
    let ids: Vec<String> = r.routes.iter().map(|r| r.id().0).collect();
    assert_eq!(
        ids,
        [
            "shop:8080",
            "shop:9090",
            "shop:5432",
            "shop.3:8080",
            "shop:443"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = rendered::write_rendered(dir.path(), &table(&r));
    haproxy_check(&file);
}

fn haproxy_check(file: &Path) {
    let output = Command::new("haproxy")
        .args(["-c", "-f"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running haproxy (scripts/install-test-deps): {e}"));
    assert!(
        output.status.success(),
        "haproxy -c refused:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(file).unwrap()
    );
}

/// HAProxy run from a config, killed when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str, case: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(e) if Instant::now() > deadline => panic!("haproxy does not listen: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: test\r\nX-Case: {case}\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect()
}

/// DFP rendered `reqPathSearchReplace=search,replace` as
/// `http-request set-path %[path,regsub(search,replace)]`; capstan renders a
/// `replace-path` of the whole path. Both run in the same HAProxy, on the
/// same requests, must give the same path.
#[test]
fn path_rewrites_behave_as_dfp_regsub_in_haproxy() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "/demo",
            "/x",
            &["/demo/hello", "/a/demo/b", "/nodemo", "/demo/demo", "/"],
        ),
        (
            "^/api/(v[0-9])",
            "/\\1/api",
            &["/api/v1/users", "/x/api/v2", "/api/vx"],
        ),
        ("/(a+)/(b+)", "/\\2/\\1", &["/aa/bbb/c", "/x/a/b", "/ab"]),
        ("[0-9]+", "N", &["/a/12/b/34", "/none"]),
        ("/old/?", "/", &["/old/x", "/old", "/older"]),
    ];
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut frontend = format!(
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 5s\n    timeout server 5s\n\nfrontend f\n    bind 127.0.0.1:{port}\n"
    );
    for (case, (search, replace, _)) in cases.iter().enumerate() {
        let r = parse_reconfigure(&pairs(&[
            ("serviceName", "svc"),
            ("port", "80"),
            ("servicePath", "/"),
            ("reqPathSearchReplace", &format!("{search},{replace}")),
        ]))
        .unwrap_or_else(|e| panic!("{search},{replace}: {e}"));
        let cfg = render(&table(&r)).to_string();
        let rendered = cfg
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("http-request replace-path "))
            .unwrap_or_else(|| panic!("no rewrite in\n{cfg}"));
        let when = format!("if {{ req.hdr(X-Case) -m str {case} }}");
        frontend.push_str(&format!(
            "    http-request set-header X-Regsub \"%[path,regsub('{search}','{replace}')]\" {when}\n    {rendered} {when}\n"
        ));
    }
    frontend.push_str(
        "    http-request return status 200 hdr X-Regsub \"%[req.hdr(X-Regsub)]\" hdr X-Path \"%[path]\"\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rewrite.cfg");
    std::fs::write(&path, &frontend).unwrap();
    haproxy_check(&path);
    let _haproxy = Haproxy(
        Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy runs"),
    );
    for (case, (search, replace, paths)) in cases.iter().enumerate() {
        for path in *paths {
            let headers = get(port, path, case);
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
            };
            assert_eq!(
                header("x-path"),
                header("x-regsub"),
                "{search},{replace} on {path}"
            );
        }
    }
}

/// Escapes HAProxy decodes in config words, variables it expands in double
/// quotes, and what ends a line or starts a comment.
const ESCAPES: &[&str] = &[
    r"\x00", r"\n", r"\x0a", r"\\", r#"\""#, r"\ ", r"\t", "$VAR", "${VAR}", "\n", "\0", "#",
];

/// (parameter, value with `@` where the escape goes, other parameters, where it is rendered)
type EscapeSlot = (&'static str, String, Vec<(&'static str, String)>, Word);

/// Where a value is written in haproxy.cfg.
enum Word {
    Literal,
    Regex,
    /// Inside double quotes (a header value).
    Quoted,
}

/// Every escape in every parameter whose value reaches haproxy.cfg (`@`
/// marks where): refused naming the parameter, or, in a regex, rendered so
/// that HAProxy hands PCRE exactly the text sent.
#[test]
fn escapes_in_every_rendered_parameter_are_refused_or_read_as_written() {
    let hash = format!("alice:{HASH}");
    let encrypted = || vec![("usersPassEncrypted", "true".to_string())];
    let slots: Vec<EscapeSlot> = vec![
        ("servicePath", "/a@".into(), vec![], Word::Literal),
        (
            "servicePath",
            "/a@".into(),
            vec![("pathType", "path".into())],
            Word::Literal,
        ),
        (
            "servicePath",
            "^/a@".into(),
            vec![("pathType", "path_reg".into())],
            Word::Regex,
        ),
        ("serviceDomain", "a.com@".into(), vec![], Word::Literal),
        ("serviceName", "svc@".into(), vec![], Word::Literal),
        ("outboundHostname", "legacy@".into(), vec![], Word::Literal),
        ("addReqHeader", "X-A@ one".into(), vec![], Word::Literal),
        ("setResHeader", "X-A one@".into(), vec![], Word::Quoted),
        ("delReqHeader", "X-A@".into(), vec![], Word::Literal),
        (
            "users",
            format!("ali@ce:{HASH}"),
            encrypted(),
            Word::Literal,
        ),
        ("users", format!("{hash}@"), encrypted(), Word::Literal),
        ("reqPathSearchReplace", "/a@,/b".into(), vec![], Word::Regex),
        ("servicePathExclude", "/a/b@".into(), vec![], Word::Literal),
        (
            "servicePathExclude",
            "^/a@".into(),
            vec![("pathType", "path_reg".into())],
            Word::Regex,
        ),
        (
            "redirectFromDomain",
            "old.com@".into(),
            vec![("serviceDomain", "a.com".into())],
            Word::Literal,
        ),
        ("allowedMethods", "GET@".into(), vec![], Word::Literal),
        ("deniedMethods", "GE@T".into(), vec![], Word::Literal),
        (
            "reqPathSearchReplace",
            "/a,/b@".into(),
            vec![],
            Word::Literal,
        ),
        (
            "reqPathReplace",
            "/b@".into(),
            vec![("reqPathSearch", "/a".into())],
            Word::Literal,
        ),
        (
            "reqPathSearch",
            "/a@".into(),
            vec![("reqPathReplace", "/b".into())],
            Word::Regex,
        ),
        ("serviceHeader", "X-A@:1".into(), vec![], Word::Literal),
        ("serviceHeader", "X-A:one@".into(), vec![], Word::Quoted),
        (
            "userAgent",
            "Mozilla/5.0 (iPhone@".into(),
            vec![],
            Word::Quoted,
        ),
        (
            "compressionType",
            "text/html@".into(),
            vec![("compressionAlgo", "gzip".into())],
            Word::Literal,
        ),
    ];
    let mut tried = 0;
    for (param, template, extra, word) in &slots {
        for escape in ESCAPES {
            let value = template.replace('@', escape);
            let mut list = vec![(*param, value.clone())];
            list.extend(extra.iter().cloned());
            let owned: Vec<(&str, &str)> = list.iter().map(|(k, v)| (*k, v.as_str())).collect();
            tried += 1;
            match parse_reconfigure(&with(&owned)) {
                Ok(r) => {
                    let config = render(&table(&r));
                    assert_map_lines(&config);
                    let cfg = config.to_string();
                    // A regex's backslashes are doubled; `$` is plain text
                    // outside double quotes, `#` inside them
                    // (assert_renderer_lines checks all three).
                    let fine = match word {
                        Word::Regex => escape.starts_with(['\\', '$']),
                        Word::Literal => escape.starts_with('$'),
                        Word::Quoted => *escape == "#",
                    };
                    assert!(fine, "{param}={value:?} was accepted:\n{cfg}");
                    assert_renderer_lines(&cfg);
                }
                // A bad `reqPathReplace` is filed under `reqPathSearch`, the
                // pair's first half, with a message naming it.
                Err(e) => assert!(
                    e.params().iter().any(|p| p == param)
                        || e.to_string().contains(&format!("`{param}`")),
                    "{param}={value:?}: {e} names {:?}",
                    e.params()
                ),
            }
        }
    }
    assert_eq!(tried, slots.len() * ESCAPES.len());
}

/// Words that start a section or a line of a config capstan renders.
const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "userlist",
    "resolvers",
];
const KEYWORDS: &[&str] = &[
    "hard-stop-after",
    "maxconn",
    "mode",
    "option",
    "timeout",
    "default-server",
    "retries",
    "bind",
    "acl",
    "use_backend",
    "default_backend",
    "tcp-request",
    "balance",
    "cookie",
    "stick-table",
    "stick",
    "http-check",
    "http-request",
    "http-response",
    "server",
    "user",
    "compression",
    "nameserver",
    "hold",
    "accepted_payload_size",
];

/// Every line is one capstan's renderer writes: a comment, a blank line, a
/// section header, or a 4-space-indented line starting with a known keyword;
/// no control characters; double quotes only around header values (set, or
/// matched after an ACL's `--`); nothing HAProxy would decode, expand or read
/// as a comment.
/// A map file holds a line per entry, a key and a backend: no comment, no
/// control character, no blank but the one between them.
fn assert_map_lines(config: &HaproxyConfig) {
    for map in &config.maps {
        let text = map.text();
        assert_eq!(text.lines().count(), map.entries.len(), "{text:?}");
        for line in text.lines() {
            assert!(
                line.split(' ').count() == 2
                    && !line.starts_with('#')
                    && !line.chars().any(char::is_control),
                "unexpected line {line:?} in {}",
                map.path
            );
        }
    }
}

fn assert_renderer_lines(cfg: &str) {
    words::assert_read_as_written(cfg);
    for line in cfg.split('\n') {
        assert!(
            !line.chars().any(|c| c.is_control()),
            "control character in {line:?}\n{cfg}"
        );
        if line.is_empty() || line.starts_with("# Rendered by capstan") {
            continue;
        }
        if let Some(body) = line.strip_prefix("    ") {
            let word = body.split(' ').next().unwrap_or("");
            assert!(
                KEYWORDS.contains(&word) && !body.starts_with(' '),
                "unexpected line {line:?}\n{cfg}"
            );
            let quotes = body.matches('"').count();
            let quoted_patterns = word == "acl"
                && body
                    .split_once(" -- ")
                    .is_some_and(|(_, patterns)| patterns.starts_with('"'))
                && quotes % 2 == 0;
            assert!(
                quotes == 0
                    || (quotes == 2
                        && (word == "http-request" || word == "http-response")
                        && body.ends_with('"'))
                    || (quoted_patterns && body.ends_with('"')),
                "unexpected quotes in {line:?}"
            );
        } else {
            let mut words = line.split(' ');
            let word = words.next().unwrap_or("");
            assert!(
                SECTIONS.contains(&word) && words.count() <= 1,
                "unexpected section line {line:?}\n{cfg}"
            );
        }
    }
}

const NAMES: &[&str] = &[
    "serviceName",
    "connectionMode",
    "discoveryType",
    "ignoreAuthorization.1",
    "checkTcp",
    "serviceDomainMatchAll",
    "xForwardedProto",
    "port",
    "servicePath",
    "serviceDomain",
    "pathType",
    "serviceDomainAlgo",
    "reqMode",
    "srcPort",
    "httpsOnly",
    "httpsRedirectCode",
    "outboundHostname",
    "users",
    "usersSecret",
    "usersPassEncrypted",
    "addReqHeader",
    "setReqHeader",
    "delReqHeader",
    "addResHeader",
    "setResHeader",
    "delResHeader",
    "reqPathSearchReplace",
    "reqPathSearch",
    "reqPathReplace",
    "timeoutServer",
    "timeoutTunnel",
    "timeoutClient",
    "sessionType",
    "aclName",
    "distribute",
    "replicas",
    "shortName",
    "isDefaultBackend",
    "redirectWhenHttpProto",
    "redirectUnlessHttpsProto",
    "sslVerifyNone",
    "httpsPort",
    "ttl",
    "servicePathExclude",
    "redirectFromDomain",
    "allowedMethods",
    "deniedMethods",
    "denyHttp",
    "servicePathExclude.1",
    "allowedMethods.2",
    "serviceHeader",
    "userAgent",
    "compressionAlgo",
    "compressionType",
    "checkResolvers",
    "serviceHeader.1",
    "userAgent.2",
    "port.1",
    "port.2",
    "port.10",
    "servicePath.1",
    "servicePath.2",
    "serviceDomain.1",
    "srcPort.1",
    "reqMode.1",
    "reqMode.2",
    "timeoutClient.2",
    "reqPathSearchReplace.1",
    "httpsPort.1",
    "sslVerifyNone.2",
];

/// Plausible values of a known parameter (`port.2` as `port`).
fn good_values(name: &str) -> &'static [&'static str] {
    match name.split('.').next().unwrap_or(name) {
        "serviceName" => &["svc", "go-demo", "a.b"],
        "port" | "srcPort" => &["8080", "80", "9000", "5432", "15432"],
        "servicePath" => &["/demo", "/a,/b", "/", "/x/y", "^/x/[0-9]+$"],
        "serviceDomain" => &["a.com", "*example.com", "*.b.org,c.net"],
        "pathType" => &["path_beg", "path", "path_reg"],
        "serviceDomainAlgo" => &[
            "hdr(host)",
            "hdr_beg(host)",
            "hdr_end(host)",
            "hdr_dom(host)",
        ],
        "serviceHeader" => &["X-Version:3", "X-Version:3,name:Viktor Farcic"],
        "userAgent" => &["googlebot,iphone", "Mozilla/5.0 (iPhone"],
        "compressionAlgo" => &["gzip", "gzip deflate", "raw-deflate"],
        "compressionType" => &["text/html text/css", "application/json"],
        "reqMode" => &["http", "tcp", "sni"],
        "httpsPort" => &["8443", "443"],
        "httpsRedirectCode" => &["301", "307"],
        "outboundHostname" => &["legacy.example.net", "10.0.0.1"],
        "users" => &[
            "alice:$6$saltsalt$abcdefghij",
            "bob:$2y$05$abcdefghij,carol:$y$j9T$abc",
        ],
        "addReqHeader" | "setReqHeader" | "addResHeader" | "setResHeader" => {
            &["X-A one two,X-B b", "Cache-Control no-store"]
        }
        "delReqHeader" | "delResHeader" => &["Server", "X-A,X-B"],
        "reqPathSearchReplace" => &["/demo,/x", "^/a/(b),/\\1", "/old,", "/a,/b:/b,/c"],
        "usersSecret" => &["monitoring", "ops-2"],
        "reqPathSearch" => &["/demo/"],
        "reqPathReplace" => &["/", "/new/"],
        "timeoutServer" | "timeoutTunnel" | "timeoutClient" | "replicas" => &["30", "3600"],
        "sessionType" => &["sticky-server"],
        "aclName" => &["00-api", "x"],
        "ttl" => &["10m", "3600", "1d"],
        "connectionMode" => &["http-server-close", "httpclose", "http-keep-alive"],
        "discoveryType" => &["DNS", "Overlay"],
        "servicePathExclude" => &["/base/x", "/demo/internal,/a/b", "^/x/1"],
        "redirectFromDomain" => &["old.com", "*.old.org,b.net"],
        "allowedMethods" | "deniedMethods" => &["GET", "GET,POST", "DELETE"],
        _ => &["true", "false"],
    }
}

/// Values a caller should never get through: injections, sample
/// expressions, variables, flags, broken regexes, out-of-range numbers.
const HOSTILE: &[&str] = &[
    "0",
    "70000",
    "sni",
    "/a\nacl x path_beg /",
    "/a\r\nbackend x",
    "/a#b",
    "a b",
    "\"q\"",
    "%[src]",
    "${HOME}",
    "-f",
    "\\",
    "(",
    "X-A \"a\" if TRUE",
    "admin:admin",
    r"/app\x00zz",
    r"\x0a",
    r"\\",
    r"\ ",
    "$VAR",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => proptest::sample::select(HOSTILE).prop_map(str::to_string),
        1 => "[ -~]{0,40}",
        1 => any::<String>(),
        1 => (proptest::sample::select(HOSTILE), any::<String>())
            .prop_map(|(v, s)| format!("{v}{s}")),
    ]
}

fn known() -> impl Strategy<Value = (String, String)> {
    proptest::sample::select(NAMES).prop_flat_map(|name| {
        let good = proptest::sample::select(good_values(name)).prop_map(str::to_string);
        (Just(name.to_string()), prop_oneof![6 => good, 1 => value()])
    })
}

/// Names every request carrying them is refused for.
const UNSUPPORTED: &[&str] = &["backendExtra", "srcHttpsPort", "port.11", "pathType.1"];

fn param() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        60 => known(),
        1 => (proptest::sample::select(UNSUPPORTED).prop_map(str::to_string), value()),
        1 => ("[a-zA-Z.0-9]{1,16}", value()),
        1 => (any::<String>(), value()),
    ]
}

fn request() -> impl Strategy<Value = Vec<(String, String)>> {
    let base = prop_oneof![3 => Just(true), 1 => Just(false)];
    (base, proptest::collection::vec(param(), 0..10)).prop_map(|(base, extra)| {
        let mut params = if base {
            pairs(&[
                ("serviceName", "svc"),
                ("port", "8080"),
                ("servicePath", "/base"),
            ])
        } else {
            Vec::new()
        };
        params.extend(extra);
        params
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn any_request_is_safe(params in request()) {
        match parse_reconfigure(&params) {
            Ok(r) => {
                let file = table(&r);
                prop_assert!(validate::check("dfp", &file).is_ok());
                prop_assert!(!r.routes.is_empty());
                prop_assert!(r.routes.iter().all(|route| route.service.as_str() == r.service_name));
                let config = render(&file);
                let text = config.to_string();
                assert_renderer_lines(&text);
                assert_map_lines(&config);
                // The map files are not part of the text.
                prop_assert_eq!(HaproxyConfig::parse(&text), HaproxyConfig { maps: Vec::new(), ..config });
                let answer = dfp::reconfigure_answer(AnswerStatus::Ok, "", &r.service_name, &r.echo);
                let json = serde_json::to_string(&answer).unwrap();
                for users in r.userlists.values() {
                    for user in users.listed() {
                        prop_assert!(!json.contains(&user.password_hash));
                    }
                }
            }
            Err(e) => {
                prop_assert!(matches!(e.status_code(), 400 | 409));
                let message = e.to_string();
                prop_assert!(!message.chars().any(char::is_control), "{:?}", message);
            }
        }
        if let Err(e) = parse_remove(&params) {
            prop_assert_eq!(e.status_code(), 400);
        }
    }
}
