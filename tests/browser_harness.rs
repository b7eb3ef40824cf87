//! The real-browser harness (tests/support/browser.rs) against a real page:
//! a small HTTP server here, Debian's chromium driving it.
#[path = "support/browser.rs"]
mod browser;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use browser::{Browser, Error, WINDOW};
use serde_json::json;

/// Changes itself half a second after loading and fetches `/data`; taller
/// than the window, laid out for phones.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>harness</title>
<style>body { font-family: sans-serif; margin: 0 } #tall { height: 2000px; background: linear-gradient(#fff, #369) }</style>
</head><body>
<h1>capstan harness</h1><p id="status">waiting</p><p id="data"></p><div id="tall"></div>
<script>
setTimeout(() => { document.getElementById("status").textContent = "changed"; }, 500);
fetch("/data", { credentials: "same-origin" })
  .then((r) => r.text())
  .then((t) => { document.getElementById("data").textContent = t; });
</script>
</body></html>"#;

/// Serves PAGE at `/` and a line of text at `/data`, and keeps the head of
/// every request it gets.
struct Site {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Site {
    fn start() -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let seen = seen.clone();
                std::thread::spawn(move || answer(stream, &seen));
            }
        });
        Site { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The heads of the requests for `path`, header names lower-cased.
    fn requests_for(&self, path: &str) -> Vec<String> {
        let requests = self.requests.lock().unwrap();
        let prefix = format!("GET {path} ");
        requests
            .iter()
            .filter(|head| head.starts_with(&prefix))
            .map(|head| head.to_ascii_lowercase())
            .collect()
    }
}

fn answer(mut stream: TcpStream, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    seen.lock().unwrap().push(head);
    let (status, kind, body) = match path.as_str() {
        "/" => ("200 OK", "text/html; charset=utf-8", PAGE),
        "/data" => ("200 OK", "text/plain", "from the server"),
        _ => ("404 Not Found", "text/plain", "not here"),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// (width, height) from a PNG's IHDR chunk, which must come first.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        &png[..png.len().min(16)]
    );
    assert_eq!(&png[12..16], b"IHDR", "a PNG starts with its IHDR chunk");
    let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (number(16), number(20))
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_page_is_read_as_its_scripts_change_it_without_a_reload() {
    let site = Site::start();
    let browser = Browser::start();
    let credentials = "Basic dGVzdDpzZWNyZXQ=";
    let page = browser.open_with_headers(&site.url(), &[("Authorization", credentials)]);
    assert_eq!(page.eval("document.title").unwrap(), json!("harness"));
    // Gone if the document were loaded again.
    page.eval("window.marker = 42").unwrap();

    page.wait_for(
        r#"document.getElementById("status").textContent === "changed""#,
        WAIT,
    )
    .unwrap();
    page.wait_for(r#"document.getElementById("data").textContent"#, WAIT)
        .unwrap();
    assert_eq!(page.eval("window.marker").unwrap(), json!(42));
    assert_eq!(
        page.eval(r#"document.getElementById("data").textContent"#)
            .unwrap(),
        json!("from the server")
    );
    let html = page.html().unwrap();
    assert!(html.contains(r#"<p id="status">changed</p>"#), "{html}");
    assert!(
        html.contains(r#"<p id="data">from the server</p>"#),
        "{html}"
    );

    let pages = site.requests_for("/");
    assert_eq!(pages.len(), 1, "the page was loaded once: {pages:?}");
    let wanted = format!("authorization: {}", credentials.to_ascii_lowercase());
    for head in pages.iter().chain(&site.requests_for("/data")) {
        assert!(head.contains(&wanted), "no credentials in {head}");
    }
    assert_eq!(site.requests_for("/data").len(), 1);

    // What the page's script throws comes back as an error, not a value.
    match page.eval("document.getElementById('nothing').textContent") {
        Err(Error::Js(e)) => assert!(e.contains("TypeError"), "{e}"),
        other => panic!("expected a script error, got {other:?}"),
    }
    // A wait that cannot succeed ends at its deadline and says why.
    match page.wait_for("document.title === 'other'", Duration::from_millis(300)) {
        Err(Error::Timeout(e)) => assert!(e.contains("last gave false"), "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn a_screenshot_shows_the_whole_page_and_a_phone_gets_the_page_at_its_width() {
    let site = Site::start();
    let browser = Browser::start();
    let page = browser.open(&site.url());
    let dir = tempfile::tempdir().unwrap();

    let width = page.eval("window.innerWidth").unwrap();
    assert_eq!(width, json!(WINDOW.0));
    let desktop = dir.path().join("desktop.png");
    page.screenshot(&desktop).unwrap();
    let png = std::fs::read(&desktop).unwrap();
    let (png_width, png_height) = png_size(&png);
    assert_eq!(png_width, WINDOW.0);
    assert!(
        png_height > 2000 && png_height > WINDOW.1,
        "the whole 2000 px page, beyond the window: {png_height} px"
    );
    assert!(png.len() > 2000, "a real picture: {} bytes", png.len());

    page.set_viewport(390, 844, true).unwrap();
    assert_eq!(page.eval("window.innerWidth").unwrap(), json!(390));
    assert_eq!(
        page.eval("matchMedia('(max-width: 400px)').matches")
            .unwrap(),
        json!(true)
    );
    let phone = dir.path().join("phone.png");
    page.screenshot(&phone).unwrap();
    assert_eq!(png_size(&std::fs::read(&phone).unwrap()).0, 390);
}

#[test]
fn when_chromium_dies_calls_fail_and_say_so() {
    let site = Site::start();
    let browser = Browser::start();
    let page = browser.open(&site.url());
    // SAFETY: kill(2) on the chromium this test started.
    unsafe { libc::kill(browser.pid() as i32, libc::SIGKILL) };
    match page.eval("1 + 1") {
        Err(Error::Browser(e)) => {
            assert!(e.contains("chromium exited"), "{e}");
            assert!(e.contains("chromium's stderr, last lines:"), "{e}");
        }
        other => panic!("expected chromium's death, got {other:?}"),
    }
}
