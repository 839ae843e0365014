//! Shared by the tests that talk to a real `stele serve` process: starting
//! and stopping it on a free port with a temporary data directory, and a
//! minimal HTTP/1.1 client over `std::net::TcpStream` (so tests can send
//! any bytes at all, malformed ones included, and read Server-Sent Events).

#![allow(dead_code)]

pub mod history;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to open its store and start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM (its grace period is 10 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Reads that wait longer than this fail the test instead of hanging it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Lines of the server's stderr kept to show when a test fails.
const STDERR_LINES_KEPT: usize = 200;

/// A running `stele serve`; killed (SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    address: SocketAddr,
    /// Holds `data/` and, when given, `stele.toml`.
    root: Option<tempfile::TempDir>,
    config: Option<String>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Keeps stdout drained after the "listening" line.
    _stdout: Option<std::thread::JoinHandle<()>>,
}

/// Starts a server with default settings on a fresh data directory.
pub fn start() -> Server {
    launch(tempfile::tempdir().expect("a temporary directory"), None)
}

/// Starts a server with a TOML config file (e.g. smaller limits).
pub fn start_with_config(toml: &str) -> Server {
    launch(tempfile::tempdir().expect("a temporary directory"), Some(toml.to_owned()))
}

/// Starts a server whose data directory is `root/data` (which may be
/// prepared first, e.g. as a mount point).
pub fn start_in(root: tempfile::TempDir) -> Server {
    launch(root, None)
}

/// Starts a stopped server again on the same data directory and config (on a new port).
pub fn restart(mut server: Server) -> Server {
    if server.is_running() {
        let status = server.stop_with_sigterm();
        assert!(status.success(), "the server did not stop cleanly: {status:?}");
    }
    let root = server.root.take().expect("the data directory is kept until drop");
    launch(root, server.config.take())
}

/// Stops the server (SIGTERM) and starts it again on the same data
/// directory, config and address, as an operator's restart would: clients
/// that reconnect find it where it was.
pub fn restart_in_place(mut server: Server) -> Server {
    if server.is_running() {
        let status = server.stop_with_sigterm();
        assert!(status.success(), "the server did not stop cleanly: {status:?}");
    }
    let root = server.root.take().expect("the data directory is kept until drop");
    match try_launch(root, server.config.take(), Some(server.address)) {
        Ok(server) => server,
        Err((_, why)) => panic!("stele serve did not start again on {}: {why}", server.address),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn launch(mut root: tempfile::TempDir, config: Option<String>) -> Server {
    if let Some(text) = &config {
        std::fs::write(root.path().join("stele.toml"), text).expect("write the config file");
    }
    let mut failure = String::new();
    // The free port can be taken by someone else before the server binds it: try again then.
    for _ in 0..5 {
        match try_launch(root, config.clone(), None) {
            Ok(server) => return server,
            Err((back, why)) if why.contains("cannot listen") => {
                root = back;
                failure = why;
            }
            Err((_, why)) => panic!("stele serve exited before listening, {why}"),
        }
    }
    panic!("stele serve could not bind a free port: {failure}")
}

fn try_launch(
    root: tempfile::TempDir,
    config: Option<String>,
    address: Option<SocketAddr>,
) -> Result<Server, (tempfile::TempDir, String)> {
    let address = address.unwrap_or_else(|| format!("127.0.0.1:{}", free_port()).parse().expect("an address"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_stele"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(root.path().join("data"))
        .arg("--listen")
        .arg(address.to_string())
        .arg("--log-level")
        .arg("info");
    if config.is_some() {
        command.arg("--config").arg(root.path().join("stele.toml"));
    }
    for variable in ["STELE_DATA_DIR", "STELE_LISTEN", "STELE_ADVERTISE", "STELE_CONFIG", "STELE_LOG"] {
        command.env_remove(variable);
    }
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn stele serve");
    let stderr = Arc::new(Mutex::new(VecDeque::new()));
    {
        let pipe = child.stderr.take().expect("piped stderr");
        let stderr = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut kept = stderr.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() == STDERR_LINES_KEPT {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
    }
    let (lines, stdout) = read_stdout(child.stdout.take().expect("piped stdout"));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with("stele listening on ") => {
                assert_eq!(line, format!("stele listening on {address}"), "the server listens where it was told");
                return Ok(Server {
                    child: Some(child),
                    address,
                    root: Some(root),
                    config,
                    stderr,
                    _stdout: Some(stdout),
                });
            }
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("stele serve did not start listening within {START_TIMEOUT:?}:\n{}", tail(&stderr));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait();
                // Let the stderr thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Err((root, format!("exit status {status:?}:\n{}", tail(&stderr))));
            }
        }
    }
}

/// Forwards stdout lines until the "listening" line arrives, then keeps
/// draining so the server never blocks on a full pipe.
fn read_stdout(pipe: ChildStdout) -> (Receiver<String>, std::thread::JoinHandle<()>) {
    let (sender, receiver) = channel();
    let handle = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let _ = sender.send(line);
        }
    });
    (receiver, handle)
}

fn tail(stderr: &Mutex<VecDeque<String>>) -> String {
    let kept = stderr.lock().unwrap_or_else(|e| e.into_inner());
    kept.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
}

impl Server {
    /// Where it listens (gRPC and HTTP).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.as_ref().expect("the data directory is kept until drop").path().join("data")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// What the server wrote to stderr lately.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr)
    }

    /// Sends SIGKILL and reaps the process; `restart` starts it again.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop_with_sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for stele serve") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("stele serve did not exit within {STOP_TIMEOUT:?} of SIGTERM:\n{}", self.stderr_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One request on a fresh connection (`Connection: close`).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(self.address, method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Response {
        let body = serde_json::to_vec(body).expect("serializable");
        self.request("POST", path, &[("content-type", "application/json")], &body)
    }

    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, &[], b"")
    }

    /// Sends `bytes` as they are and reads the reply.
    pub fn send_raw(&self, bytes: &[u8]) -> Response {
        send_raw(self.address, bytes)
    }

    /// Opens a Server-Sent Events stream; the reply itself when it is not 200.
    pub fn subscribe(&self, path: &str) -> Result<EventStream, Response> {
        EventStream::open(self.address, path, &[])
    }

    /// `subscribe` with extra request headers (`Last-Event-ID`, say).
    pub fn subscribe_with(&self, path: &str, headers: &[(&str, &str)]) -> Result<EventStream, Response> {
        EventStream::open(self.address, path, headers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- stele serve stderr (last lines) ---\n{}\n---", self.stderr_tail());
        }
    }
}

/// An HTTP reply.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; fails the test (showing the body) if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("reply {} is not JSON ({e}): {}", self.status, self.text()))
    }

    /// The `error.code` of a JSON error reply.
    pub fn error_code(&self) -> String {
        let json = self.json();
        json["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error reply: {json}")).to_owned()
    }
}

pub fn request(address: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut bytes = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n").into_bytes();
    for (name, value) in headers {
        bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    send_raw(address, &bytes)
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("set a read timeout");
    stream.set_write_timeout(Some(READ_TIMEOUT)).expect("set a write timeout");
    stream
}

/// Writes `bytes` and reads one reply until the server closes the connection.
/// A failed write is ignored (the server may reply early and close, as it
/// does for a body that is too large); the reply is what counts.
pub fn send_raw(address: SocketAddr, bytes: &[u8]) -> Response {
    let mut stream = connect(address);
    let _ = stream.write_all(bytes);
    read_reply(&mut stream)
}

/// Sends a request head, then streams `body_bytes` of `fill` in chunked
/// encoding from another thread, while reading the reply: for a body the
/// server is expected to refuse part-way.
pub fn send_streaming(address: SocketAddr, head: &str, body_bytes: usize, fill: u8) -> Response {
    let mut stream = connect(address);
    let mut writer = stream.try_clone().expect("clone the socket");
    let head = head.to_owned();
    let writing = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(head.as_bytes())?;
        let chunk = vec![fill; 64 * 1024];
        let mut sent = 0;
        while sent < body_bytes {
            let n = chunk.len().min(body_bytes - sent);
            writer.write_all(format!("{n:x}\r\n").as_bytes())?;
            writer.write_all(&chunk[..n])?;
            writer.write_all(b"\r\n")?;
            sent += n;
        }
        writer.write_all(b"0\r\n\r\n")
    });
    let reply = read_reply(&mut stream);
    let _ = writing.join();
    reply
}

fn read_reply(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A reset after a whole reply (the server closed with our body unread) is fine.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && parse_reply(&raw).is_some() => break,
            Err(e) => panic!("reading the reply failed after {} bytes: {e}", raw.len()),
        }
    }
    parse_reply(&raw).unwrap_or_else(|| panic!("incomplete reply: {}", String::from_utf8_lossy(&raw)))
}

/// Splits a reply into status, headers and (de-chunked) body; None if incomplete.
fn parse_reply(raw: &[u8]) -> Option<Response> {
    let (mut response, rest) = parse_head(raw)?;
    if response.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        response.body = dechunk(rest)?;
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().ok()?;
        response.body = rest.get(..length)?.to_vec();
    } else {
        response.body = rest.to_vec();
    }
    Some(response)
}

/// The status and headers (body left empty), and the bytes after them.
fn parse_head(raw: &[u8]) -> Option<(Response, &[u8])> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Some((Response { status, headers, body: Vec::new() }, &raw[head_end + 4..]))
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {}", self.data))
    }
}

/// A Server-Sent Events reply being read as it arrives.
pub struct EventStream {
    lines: BufReader<Chunked>,
    pub headers: Vec<(String, String)>,
    /// Comment lines (keep-alives) seen so far.
    pub comments: usize,
}

impl EventStream {
    fn open(address: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Self, Response> {
        let mut stream = connect(address);
        let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
        let head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n{extra}\r\n");
        stream.write_all(head.as_bytes()).expect("send the subscription request");
        let mut reader = BufReader::new(stream);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut line = Vec::new();
            let n = reader.read_until(b'\n', &mut line).expect("read the reply head");
            assert!(n > 0, "the connection closed before the reply head ended");
            head.extend_from_slice(&line);
        }
        let (parsed, _) = parse_head(&head).expect("a reply head");
        if parsed.status != 200 {
            // Read the (small) error body; it is sent with a length.
            let length: usize = parsed.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("read the error body");
            return Err(Response { body, ..parsed });
        }
        assert_eq!(parsed.header("content-type"), Some("text/event-stream"), "an SSE reply");
        assert!(
            parsed.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
            "a streamed reply is chunked"
        );
        let chunked = Chunked { inner: reader, remaining: 0, after_chunk: false, done: false };
        Ok(Self { lines: BufReader::new(chunked), headers: parsed.headers, comments: 0 })
    }

    /// The next event (comments skipped); fails the test if none comes in time.
    pub fn next(&mut self) -> SseEvent {
        self.next_or_end().expect("the event stream ended unexpectedly")
    }

    /// The next event, or None when the server ended the stream.
    pub fn next_or_end(&mut self) -> Option<SseEvent> {
        let mut event = SseEvent { event: "message".to_owned(), data: String::new(), id: None };
        let mut has_data = false;
        loop {
            let mut line = String::new();
            let n = self.lines.read_line(&mut line).unwrap_or_else(|e| panic!("reading the event stream: {e}"));
            if n == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if has_data {
                    return Some(event);
                }
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.to_owned(),
                "id" => event.id = Some(value.to_owned()),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
    }

    /// Events up to the next one named `name` (which is returned last).
    pub fn until(&mut self, name: &str) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next();
            let done = event.event == name;
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

/// Decodes `Transfer-Encoding: chunked` as it arrives.
struct Chunked {
    inner: BufReader<TcpStream>,
    remaining: usize,
    after_chunk: bool,
    done: bool,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut line = String::new();
            if self.after_chunk {
                self.inner.read_line(&mut line)?;
                line.clear();
            }
            if self.inner.read_line(&mut line)? == 0 {
                self.done = true;
                return Ok(0);
            }
            let size = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.remaining = size;
            self.after_chunk = true;
        }
        let wanted = buf.len().min(self.remaining);
        let n = self.inner.read(&mut buf[..wanted])?;
        if n == 0 {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "the connection closed inside a chunk"));
        }
        self.remaining -= n;
        Ok(n)
    }
}

/// Reads a Prometheus counter or gauge (without labels) from `/metrics` text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// For paths: percent-encodes everything but unreserved characters.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
