//! A real headless Chromium (Debian's `chromium`, installed by
//! scripts/install-test-deps) driven over the Chrome DevTools Protocol, for
//! tests of what a user sees in a browser. Include it with
//! `#[path = "support/browser.rs"] mod browser;`.
//!
//! Setup (`Browser::start`, `Browser::open*`) panics with the reason; what a
//! test inspects returns `Result`. Every wait has a deadline, and when
//! chromium dies every call fails with the tail of its stderr.
#![allow(dead_code)] // each test binary uses part of it

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader, ErrorKind};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// The window (and so the viewport) every page starts with, in CSS pixels.
pub const WINDOW: (u32, u32) = (1280, 800);
/// Bounds chromium's start and each protocol call (a full-page screenshot
/// of a long page on a busy machine is the slowest).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a blocked read sleeps before it looks at the deadline and at
/// whether chromium still runs.
const READ_SLICE: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(50);
const STDERR_LINES: usize = 30;

/// Why a browser call failed.
pub enum Error {
    /// The page's script threw, or the promise it returned was rejected.
    Js(String),
    /// A deadline passed.
    Timeout(String),
    /// Chromium died, or the protocol failed.
    Browser(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Js(m) => write!(f, "the page's script failed: {m}"),
            Error::Timeout(m) | Error::Browser(m) => f.write_str(m),
        }
    }
}

// `unwrap()` prints Debug: keep the stderr tail readable, not escaped.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

/// The chromium process, its profile and its stderr tail; killed (its whole
/// process group: renderers, GPU and zygote processes too) when the browser
/// and all its pages are gone.
struct Process {
    child: Mutex<Child>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    // Removed after the kill in Drop, once chromium no longer writes to it.
    profile: tempfile::TempDir,
}

impl Process {
    /// Fails when chromium has exited.
    fn check(&self) -> Result<(), Error> {
        let status = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_wait();
        match status {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.failure(&format!("chromium exited ({status})"))),
            Err(e) => Err(self.failure(&format!("cannot watch chromium: {e}"))),
        }
    }

    /// The DevTools connection broke: say whether chromium died with it.
    fn lost(&self, what: &str, e: impl fmt::Display) -> Error {
        // A dead chromium closes the socket a moment before it can be reaped.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Err(died) = self.check() {
                return died;
            }
            std::thread::sleep(POLL);
        }
        self.failure(&format!("{what}: {e}"))
    }

    fn failure(&self, what: &str) -> Error {
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
        Error::Browser(format!(
            "{what}\nchromium's stderr, last lines:\n{}",
            tail.join("\n")
        ))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: kill(2) on the process group chromium leads (it was
        // started as the leader of a new one).
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }
}

/// One DevTools connection: to the browser itself, or to one page.
struct Cdp {
    ws: RefCell<WebSocket<TcpStream>>,
    next_id: Cell<u64>,
    process: Arc<Process>,
}

impl Cdp {
    fn connect(process: Arc<Process>, port: u16, path: &str) -> Result<Self, Error> {
        let url = format!("ws://127.0.0.1:{port}{path}");
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| process.lost(&url, e))?;
        let _ = stream.set_read_timeout(Some(CALL_TIMEOUT));
        // A full-page screenshot comes as one message of several MiB.
        let config = WebSocketConfig::default()
            .max_message_size(Some(512 << 20))
            .max_frame_size(Some(512 << 20));
        let (ws, _) = tungstenite::client::client_with_config(url.as_str(), stream, Some(config))
            .map_err(|e| process.lost(&url, e))?;
        let _ = ws.get_ref().set_read_timeout(Some(READ_SLICE));
        Ok(Self {
            ws: RefCell::new(ws),
            next_id: Cell::new(1),
            process,
        })
    }

    /// Sends one command and waits until `deadline` for its answer. Events
    /// and late answers to abandoned commands are skipped.
    fn call(&self, method: &str, params: Value, deadline: Instant) -> Result<Value, Error> {
        self.process.check()?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let mut ws = self.ws.borrow_mut();
        let command = json!({"id": id, "method": method, "params": params});
        ws.send(Message::text(command.to_string()))
            .map_err(|e| self.process.lost(&format!("sending {method}"), e))?;
        loop {
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "chromium did not answer {method} in time"
                )));
            }
            let text = match ws.read() {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(frame)) => {
                    return Err(self
                        .process
                        .lost("DevTools closed the connection", format!("{frame:?}")));
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    self.process.check()?;
                    continue;
                }
                Err(e) => {
                    return Err(self
                        .process
                        .lost(&format!("reading the answer to {method}"), e));
                }
            };
            let mut message: Value = serde_json::from_str(&text)
                .map_err(|e| Error::Browser(format!("DevTools sent no JSON ({e}): {text}")))?;
            if message["id"] != id {
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(Error::Browser(format!("{method} failed: {error}")));
            }
            return Ok(message["result"].take());
        }
    }
}

/// A headless chromium of its own (own profile in a temporary directory),
/// killed with everything it started when it and its pages are dropped.
pub struct Browser {
    cdp: Cdp,
    port: u16,
}

impl Browser {
    pub fn start() -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("capstan-chromium-")
            .tempdir()
            .expect("a temporary directory for chromium's profile");
        let mut child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox", // tests run as root, where the sandbox refuses to start
                "--disable-gpu",
                "--no-first-run",
                // The page under test must work offline: nothing else may reach out.
                "--disable-background-networking",
                "--remote-debugging-port=0",
                // A scrollbar would take its width from the page's layout.
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting chromium: {e} (is it installed? run scripts/install-test-deps)")
            });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let (pipe, tail) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let lines = BufReader::new(pipe).lines().map_while(Result::ok);
            // Without a system D-Bus (containers, CI) chromium complains at
            // length; harmless, and it would bury the lines that say why it died.
            for line in lines.filter(|line| !line.contains(":ERROR:dbus/")) {
                let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let process = Arc::new(Process {
            child: Mutex::new(child),
            stderr,
            profile,
        });
        // Chromium writes its port and the browser's DevTools path there
        // once it listens.
        let active = process.profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + CALL_TIMEOUT;
        let (port, path) = loop {
            if let Err(e) = process.check() {
                panic!("chromium did not start: {e}");
            }
            let text = std::fs::read_to_string(&active).unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(Ok(port)), Some(path)) =
                (lines.next().map(str::parse::<u16>), lines.next())
            {
                break (port, path.to_string());
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    process.failure("chromium did not open its DevTools port in time")
                );
            }
            std::thread::sleep(POLL);
        };
        let cdp = Cdp::connect(process, port, &path)
            .unwrap_or_else(|e| panic!("connecting to chromium's DevTools: {e}"));
        Browser { cdp, port }
    }

    /// Chromium's process id (the leader of its process group).
    pub fn pid(&self) -> u32 {
        let child = self.cdp.process.child.lock();
        child.unwrap_or_else(PoisonError::into_inner).id()
    }

    /// A new tab showing `url`, loaded (its `load` event has fired).
    pub fn open(&self, url: &str) -> Page {
        self.open_with_headers(url, &[])
    }

    /// Like `open`, with `headers` added to every request the tab makes,
    /// the page's own and its scripts' `fetch`es alike.
    pub fn open_with_headers(&self, url: &str, headers: &[(&str, &str)]) -> Page {
        self.try_open(url, headers)
            .unwrap_or_else(|e| panic!("opening {url} in chromium: {e}"))
    }

    fn try_open(&self, url: &str, headers: &[(&str, &str)]) -> Result<Page, Error> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        // A blank tab first, so the headers are in place before the first request.
        let target = self.cdp.call(
            "Target.createTarget",
            json!({"url": "about:blank"}),
            deadline,
        )?;
        let id = target["targetId"].as_str().unwrap_or_default();
        let cdp = Cdp::connect(
            self.cdp.process.clone(),
            self.port,
            &format!("/devtools/page/{id}"),
        )?;
        let page = Page { cdp };
        if !headers.is_empty() {
            let headers: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(name, value)| (name.to_string(), json!(value)))
                .collect();
            page.cdp.call("Network.enable", json!({}), deadline)?;
            page.cdp.call(
                "Network.setExtraHTTPHeaders",
                json!({"headers": headers}),
                deadline,
            )?;
        }
        let navigated = page
            .cdp
            .call("Page.navigate", json!({"url": url}), deadline)?;
        if let Some(error) = navigated["errorText"].as_str() {
            return Err(Error::Browser(format!("loading failed: {error}")));
        }
        // The blank tab is complete too: wait for the new document.
        page.wait_until(
            "location.href !== 'about:blank' && document.readyState === 'complete'",
            deadline,
        )?;
        Ok(page)
    }
}

/// One tab. Its methods take JavaScript expressions, evaluated in the page.
pub struct Page {
    cdp: Cdp,
}

impl Page {
    /// The value of `js`, a JavaScript expression (a promise is awaited),
    /// as JSON; `undefined` is `null`.
    pub fn eval(&self, js: &str) -> Result<Value, Error> {
        self.eval_until(js, Instant::now() + CALL_TIMEOUT)
    }

    fn eval_until(&self, js: &str, deadline: Instant) -> Result<Value, Error> {
        let params = json!({"expression": js, "returnByValue": true, "awaitPromise": true});
        let mut answer = self.cdp.call("Runtime.evaluate", params, deadline)?;
        if let Some(details) = answer.get("exceptionDetails") {
            let description = details["exception"]["description"].as_str();
            let text = details["text"].as_str().unwrap_or("exception");
            return Err(Error::Js(description.unwrap_or(text).to_string()));
        }
        let result = &mut answer["result"];
        // NaN, Infinity, -0 and BigInts have no JSON form.
        if let Some(special) = result.get("unserializableValue") {
            return Ok(special.clone());
        }
        Ok(result["value"].take())
    }

    /// Polls `predicate` (a JavaScript expression) until it is truthy.
    /// Exceptions it throws meanwhile (an element not there yet) count as
    /// false; after `timeout` the error says what it returned last.
    pub fn wait_for(&self, predicate: &str, timeout: Duration) -> Result<(), Error> {
        self.wait_until(predicate, Instant::now() + timeout)
    }

    fn wait_until(&self, predicate: &str, deadline: Instant) -> Result<(), Error> {
        let mut last = String::from("nothing (no answer in time)");
        while Instant::now() < deadline {
            match self.eval_until(predicate, deadline) {
                Ok(value) if truthy(&value) => return Ok(()),
                Ok(value) => last = value.to_string(),
                Err(Error::Js(e)) => last = format!("an exception: {e}"),
                Err(Error::Timeout(_)) => break,
                // Between two documents there is briefly none to evaluate in.
                Err(Error::Browser(e)) if e.to_lowercase().contains("execution context") => {
                    last = e
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
        }
        Err(Error::Timeout(format!(
            "`{predicate}` did not become true in time; it last gave {last}"
        )))
    }

    /// The document as HTML, as it is now (after the page's scripts ran).
    pub fn html(&self) -> Result<String, Error> {
        match self.eval("document.documentElement.outerHTML")? {
            Value::String(html) => Ok(html),
            other => Err(Error::Browser(format!("outerHTML was {other}"))),
        }
    }

    /// Writes a PNG of the whole page, beyond the viewport too, one pixel
    /// per CSS pixel.
    pub fn screenshot(&self, path: &Path) -> Result<(), Error> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let metrics = self
            .cdp
            .call("Page.getLayoutMetrics", json!({}), deadline)?;
        let size = &metrics["cssContentSize"];
        let (width, height) = (size["width"].as_f64(), size["height"].as_f64());
        let (Some(width), Some(height)) = (width, height) else {
            return Err(Error::Browser(format!("no content size in {metrics}")));
        };
        let clip =
            json!({"x": 0, "y": 0, "width": width.ceil(), "height": height.ceil(), "scale": 1});
        let shot = self.cdp.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true, "clip": clip}),
            deadline,
        )?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(|e| Error::Browser(format!("the screenshot is not base64: {e}")))?;
        std::fs::write(path, png)
            .map_err(|e| Error::Browser(format!("writing {}: {e}", path.display())))
    }

    /// Emulates a screen of `width` x `height` CSS pixels at one device
    /// pixel each. With `mobile`, the page is laid out as on a phone: it
    /// gets `width` only if it asks for `width=device-width` in a viewport
    /// `<meta>`, else a 980 px wide layout scaled down.
    pub fn set_viewport(&self, width: u32, height: u32, mobile: bool) -> Result<(), Error> {
        let params =
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile});
        let deadline = Instant::now() + CALL_TIMEOUT;
        self.cdp
            .call("Emulation.setDeviceMetricsOverride", params, deadline)
            .map(drop)
    }

    /// Any other DevTools command for this tab (e.g.
    /// `Network.emulateNetworkConditions`): its result.
    pub fn cdp(&self, method: &str, params: Value) -> Result<Value, Error> {
        self.cdp.call(method, params, Instant::now() + CALL_TIMEOUT)
    }
}

/// JavaScript's truthiness, for values that came back as JSON.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
