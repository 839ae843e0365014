//! What the example's tests share: a tiny HTTP/1.1 client, a small SMTP
//! server that can be told to be down, the application started on a
//! temporary directory with a simulated clock, and polling with a deadline.

#![allow(dead_code)] // each test file uses its own subset

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use stele_example_signup::{App, Config};
use steledb::ManualClock;
use steledb_sdk::{Backoff, BreakerConfig, EventStore};

/// 2023-11-14T22:13:20Z: any fixed start works; time moves only when a test says so.
pub const START_US: u64 = 1_700_000_000_000_000;
/// The reminder delay the tests run with (a day, as in production).
pub const REMINDER_DELAY_US: u64 = 24 * 60 * 60 * 1_000_000;
/// How long a test waits for something asynchronous before failing.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `probe` every few milliseconds until it returns `Some`, or panics
/// after [`WAIT_TIMEOUT`] saying what was awaited.
#[track_caller]
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {WAIT_TIMEOUT:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------- HTTP

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One request per connection (`Connection: close`), so the reply ends at EOF.
pub fn http(address: SocketAddr, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
    let mut stream = TcpStream::connect(address).expect("connect to the API");
    stream.set_read_timeout(Some(WAIT_TIMEOUT)).unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the reply");
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = std::str::from_utf8(&raw[..split]).expect("UTF-8 headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body);
    }
    HttpResponse { status, headers, body: String::from_utf8(body).expect("UTF-8 body") }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size_text = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 2 + size + 2..];
    }
}

// ---------------------------------------------------------------- SMTP

/// What the test SMTP server does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SmtpMode {
    /// Speaks SMTP and stores messages.
    Up = 0,
    /// Accepts the connection and closes it at once, like a crashed relay.
    Down = 1,
    /// Greets with `421` (service not available), as a relay in maintenance.
    Refuse = 2,
}

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: String,
    pub data: String,
}

impl Received {
    pub fn message_id(&self) -> &str {
        self.header("message-id").unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.data
            .split("\r\n")
            .take_while(|line| !line.is_empty())
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// `activation` or `reminder`, from the Message-ID `<kind-<user>@domain>`.
    pub fn kind(&self) -> &str {
        let id = self.message_id().trim_start_matches('<');
        id.split('-').next().unwrap_or("")
    }
}

/// A small SMTP server on a free local port, one thread per connection.
pub struct SmtpServer {
    address: SocketAddr,
    mode: Arc<AtomicU8>,
    messages: Arc<Mutex<Vec<Received>>>,
    connections_turned_away: Arc<AtomicU64>,
    closing: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl SmtpServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP server");
        let address = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(SmtpMode::Up as u8));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let turned_away = Arc::new(AtomicU64::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (mode, messages, turned_away, closing) =
                (mode.clone(), messages.clone(), turned_away.clone(), closing.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if closing.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    match mode.load(Ordering::SeqCst) {
                        m if m == SmtpMode::Down as u8 => {
                            turned_away.fetch_add(1, Ordering::SeqCst);
                            drop(stream);
                        }
                        m if m == SmtpMode::Refuse as u8 => {
                            turned_away.fetch_add(1, Ordering::SeqCst);
                            let mut stream = stream;
                            let _ = stream.write_all(b"421 test.local Service not available\r\n");
                        }
                        _ => {
                            let messages = messages.clone();
                            std::thread::spawn(move || {
                                let _ = serve(stream, &messages);
                            });
                        }
                    }
                }
            })
        };
        Self { address, mode, messages, connections_turned_away: turned_away, closing, acceptor: Some(acceptor) }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn set_mode(&self, mode: SmtpMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Messages of `kind` per recipient.
    pub fn count_by_recipient(&self, kind: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for message in self.messages().iter().filter(|m| m.kind() == kind) {
            *counts.entry(message.to.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Connections closed or refused while down.
    pub fn connections_turned_away(&self) -> u64 {
        self.connections_turned_away.load(Ordering::SeqCst)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// One SMTP conversation: greeting, EHLO/HELO, MAIL, RCPT, DATA, QUIT.
fn serve(stream: TcpStream, messages: &Mutex<Vec<Received>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(WAIT_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut reply = |text: &str| writer.write_all(format!("{text}\r\n").as_bytes());
    reply("220 test.local ESMTP ready")?;
    let (mut from, mut to) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO ") {
            reply("250-test.local greets you")?;
            reply("250 8BITMIME")?;
        } else if upper.starts_with("HELO ") {
            reply("250 test.local")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = Some(angle_path(&line["MAIL FROM:".len()..]));
            reply("250 OK")?;
        } else if upper.starts_with("RCPT TO:") {
            if from.is_none() {
                reply("503 need MAIL first")?;
                continue;
            }
            let recipient = angle_path(&line["RCPT TO:".len()..]);
            // A mailbox that does not exist: refused for good.
            if recipient.starts_with("nobody") {
                reply("550 mailbox unavailable")?;
                continue;
            }
            to = Some(recipient);
            reply("250 OK")?;
        } else if upper == "DATA" {
            let (Some(sender), Some(recipient)) = (from.take(), to.take()) else {
                reply("503 need RCPT first")?;
                continue;
            };
            reply("354 end with <CRLF>.<CRLF>")?;
            let data = read_data(&mut reader)?;
            messages.lock().unwrap().push(Received { from: sender, to: recipient, data });
            reply("250 OK queued")?;
        } else if upper == "QUIT" {
            reply("221 bye")?;
            return Ok(());
        } else {
            reply("500 unknown command")?;
        }
    }
}

fn angle_path(text: &str) -> String {
    text.trim().trim_start_matches('<').trim_end_matches('>').to_owned()
}

/// The message after DATA up to the `.` line, with dot-stuffing undone.
fn read_data(reader: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut data = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "." {
            return Ok(data);
        }
        data.push_str(content.strip_prefix('.').unwrap_or(content));
        data.push_str("\r\n");
    }
}

// ---------------------------------------------------------------- the app

/// The application on a temporary data directory, with a simulated clock
/// and quick retries, talking to a test SMTP server.
pub struct TestApp {
    pub app: Option<App>,
    pub clock: Arc<ManualClock>,
    pub data_dir: PathBuf,
    smtp_address: SocketAddr,
    /// The server the events are kept in; `None`: embedded.
    server: Option<String>,
}

impl TestApp {
    pub fn start(data_dir: &Path, smtp: &SmtpServer) -> Self {
        Self::start_with_clock(data_dir, smtp.address(), Arc::new(ManualClock::new(START_US)))
    }

    /// The application with its events in a running `stele serve`.
    pub fn start_on_server(data_dir: &Path, smtp: &SmtpServer, connection_string: &str) -> Self {
        let clock = Arc::new(ManualClock::new(START_US));
        Self::launch(data_dir, smtp.address(), clock, Some(connection_string.to_owned()))
    }

    pub fn start_with_clock(data_dir: &Path, smtp_address: SocketAddr, clock: Arc<ManualClock>) -> Self {
        Self::launch(data_dir, smtp_address, clock, None)
    }

    fn launch(data_dir: &Path, smtp_address: SocketAddr, clock: Arc<ManualClock>, server: Option<String>) -> Self {
        let mut config = Config::new(data_dir, "127.0.0.1:0".parse().unwrap(), smtp_address.to_string());
        config.server = server.clone();
        config.clock = clock.clone();
        config.reminder_delay_us = REMINDER_DELAY_US;
        config.timer_tick_ms = 5;
        config.poll_interval_ms = 10;
        config.smtp_timeout_ms = 2_000;
        // Real time, so small: an outage of a fraction of a second already
        // goes through back-off, the breaker opening and its half-open trial.
        config.mail_backoff = Backoff { backoff_ms_initial: 5, backoff_ms_max: 40 };
        config.mail_breaker = BreakerConfig { failures_threshold: 3, cool_down_ms: 60 };
        let app = App::start(config).expect("start the app");
        Self { app: Some(app), clock, data_dir: data_dir.to_owned(), smtp_address, server }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("the app is running")
    }

    pub fn address(&self) -> SocketAddr {
        self.app().http_address()
    }

    /// Stops the app and starts a new one on the same directory, clock and store.
    pub fn restart(&mut self) {
        self.stop();
        *self = Self::launch(&self.data_dir.clone(), self.smtp_address, self.clock.clone(), self.server.clone());
    }

    pub fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            let errors = app.shutdown();
            assert!(errors.is_empty(), "components failed: {errors:?}");
        }
    }

    pub fn sign_up(&self, name: &str, email: &str) -> HttpResponse {
        let body = serde_json::json!({ "name": name, "email": email }).to_string();
        http(self.address(), "POST", "/signups", Some(&body))
    }

    /// Signs up and returns the new user's id, asserting a 201.
    #[track_caller]
    pub fn sign_up_ok(&self, name: &str, email: &str) -> String {
        let response = self.sign_up(name, email);
        assert_eq!(response.status, 201, "sign-up of {email}: {}", response.body);
        response.json()["id"].as_str().expect("an id").to_owned()
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http(self.address(), "GET", path, None)
    }

    pub fn post(&self, path: &str) -> HttpResponse {
        http(self.address(), "POST", path, None)
    }

    /// Waits until the read model has the user, and returns it.
    #[track_caller]
    pub fn wait_for_user(&self, user_id: &str) -> Value {
        wait_for(&format!("user {user_id} in the read model"), || {
            let response = self.get(&format!("/users/{user_id}"));
            (response.status == 200).then(|| response.json())
        })
    }

    /// The events of `stream` (none when it does not exist).
    pub fn read(&self, stream: &str) -> Vec<steledb::RecordedEvent> {
        self.app().store().read_forward(stream, 0, 1_000).unwrap_or_else(|e| panic!("reading {stream}: {e}"))
    }

    /// The timer events in the log, as (type, timer id).
    pub fn timer_events(&self) -> Vec<(String, String)> {
        self.read(steledb_sdk::limits::TIMER_STREAM_DEFAULT)
            .iter()
            .map(|e| {
                let timer = steledb_sdk::TimerEvent::decode(e).expect("a timer event");
                (e.event_type().to_owned(), timer.timer_id().to_owned())
            })
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
    }
}
