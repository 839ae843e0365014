//! NATS JetStream through a hand-written client of the NATS text protocol
//! (CONNECT, SUB, HPUB with a reply inbox, MSG/HMSG, PING/PONG).
//!
//! Layout: one JetStream stream `EVENTS` with file storage over subjects
//! `ev.<stream>`. An append publishes with `Nats-Expected-Last-Subject-Sequence`
//! (optimistic concurrency) and `Nats-Msg-Id` (deduplication, as SteleDB's
//! event ids) and waits for the PubAck, which JetStream sends after the
//! store (and, with `sync_interval: always`, its fsync). Appends of several
//! events use an atomic batch (`Nats-Batch-*` headers, server 2.12+), so
//! they are all-or-nothing as in the other systems. Reads use batched
//! direct gets (`$JS.API.DIRECT.GET`, server 2.11+).
//!
//! The version token is the subject's last stream sequence (0 for none).

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::client::{Appended, Durability, CATCH_UP_PAGE_EVENTS};
use crate::error::{io, BenchError};
use crate::event::BenchEvent;

const SYSTEM: &str = "nats";
const STREAM: &str = "EVENTS";
/// JetStream's error code for a failed expected-last-sequence check.
const WRONG_LAST_SEQUENCE: i64 = 10071;

fn protocol(message: impl Into<String>) -> BenchError {
    BenchError::Protocol { system: SYSTEM, message: message.into() }
}

/// One message delivered to us.
struct Message {
    subject: String,
    /// The header block's status line and headers, if it had any.
    headers: Option<String>,
    payload: Vec<u8>,
}

impl Message {
    /// The status code in "NATS/1.0 204 EOB"; None for a plain message.
    fn status(&self) -> Option<u16> {
        let first = self.headers.as_deref()?.lines().next()?;
        first.split_whitespace().nth(1)?.parse().ok()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_deref()?.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: String,
    out: Vec<u8>,
    inbox: String,
    request_number: u64,
}

impl Connection {
    async fn open(address: SocketAddr) -> Result<Self, BenchError> {
        let socket = TcpStream::connect(address).await.map_err(io(SYSTEM))?;
        socket.set_nodelay(true).map_err(io(SYSTEM))?;
        let (read, writer) = socket.into_split();
        let inbox = format!("_INBOX.{}", uuid::Uuid::new_v4().simple());
        let mut connection = Self {
            reader: BufReader::with_capacity(1024 * 1024, read),
            writer,
            line: String::new(),
            out: Vec::new(),
            inbox,
            request_number: 0,
        };
        connection.read_line().await?;
        if !connection.line.starts_with("INFO") {
            return Err(protocol(format!("expected INFO, got '{}'", connection.line.trim_end())));
        }
        let connect = r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1,"name":"stele-compare"}"#;
        let hello = format!("CONNECT {connect}\r\nSUB {}.* 1\r\nPING\r\n", connection.inbox);
        connection.writer.write_all(hello.as_bytes()).await.map_err(io(SYSTEM))?;
        loop {
            connection.read_line().await?;
            match connection.line.trim_end() {
                "PONG" => return Ok(connection),
                "+OK" => {}
                line if line.starts_with("INFO") => {}
                line => return Err(BenchError::Refused { system: SYSTEM, message: line.to_owned() }),
            }
        }
    }

    async fn read_line(&mut self) -> Result<(), BenchError> {
        self.line.clear();
        let read = self.reader.read_line(&mut self.line).await.map_err(io(SYSTEM))?;
        if read == 0 {
            return Err(protocol("the server closed the connection"));
        }
        Ok(())
    }

    /// A fresh reply subject under this connection's inbox.
    fn reply_subject(&mut self) -> String {
        self.request_number += 1;
        format!("{}.{}", self.inbox, self.request_number)
    }

    /// Queues one HPUB (or PUB when there are no headers) in `out`.
    fn queue_publish(&mut self, subject: &str, reply: Option<&str>, headers: &[(&str, &str)], payload: &[u8]) {
        let reply = reply.unwrap_or("");
        if headers.is_empty() {
            self.out.extend_from_slice(format!("PUB {subject} {reply} {}\r\n", payload.len()).as_bytes());
        } else {
            let mut block = String::from("NATS/1.0\r\n");
            for (key, value) in headers {
                block.push_str(key);
                block.push_str(": ");
                block.push_str(value);
                block.push_str("\r\n");
            }
            block.push_str("\r\n");
            let total = block.len() + payload.len();
            self.out.extend_from_slice(format!("HPUB {subject} {reply} {} {total}\r\n", block.len()).as_bytes());
            self.out.extend_from_slice(block.as_bytes());
        }
        self.out.extend_from_slice(payload);
        self.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self) -> Result<(), BenchError> {
        self.writer.write_all(&self.out).await.map_err(io(SYSTEM))?;
        self.out.clear();
        Ok(())
    }

    /// The next message for `reply`, answering pings and skipping late
    /// replies to earlier requests.
    async fn next_message(&mut self, reply: &str) -> Result<Message, BenchError> {
        loop {
            self.read_line().await?;
            let line = self.line.trim_end().to_owned();
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some("PING") => self.writer.write_all(b"PONG\r\n").await.map_err(io(SYSTEM))?,
                Some("PONG") | Some("+OK") | Some("INFO") => {}
                Some("-ERR") => return Err(BenchError::Refused { system: SYSTEM, message: line }),
                Some(kind @ ("MSG" | "HMSG")) => {
                    let fields: Vec<&str> = parts.collect();
                    let subject = fields.first().copied().unwrap_or_default().to_owned();
                    let number = |s: Option<&&str>| s.and_then(|s| s.parse::<usize>().ok());
                    let (header_bytes, total_bytes) = if kind == "MSG" {
                        (0, number(fields.last()))
                    } else {
                        (number(fields.get(fields.len().wrapping_sub(2))).unwrap_or(0), number(fields.last()))
                    };
                    let total_bytes = total_bytes.ok_or_else(|| protocol(format!("bad message line '{line}'")))?;
                    let mut body = vec![0; total_bytes + 2];
                    self.reader.read_exact(&mut body).await.map_err(io(SYSTEM))?;
                    body.truncate(total_bytes);
                    let payload = body.split_off(header_bytes);
                    let headers = (header_bytes > 0).then(|| String::from_utf8_lossy(&body).into_owned());
                    if subject == reply {
                        return Ok(Message { subject, headers, payload });
                    }
                }
                _ => return Err(protocol(format!("unexpected line '{line}'"))),
            }
        }
    }

    /// Publishes `payload` to a JetStream API subject and returns the JSON reply.
    async fn api(&mut self, subject: &str, payload: &str) -> Result<serde_json::Value, BenchError> {
        let reply = self.reply_subject();
        self.queue_publish(subject, Some(&reply), &[], payload.as_bytes());
        self.flush().await?;
        let message = self.next_message(&reply).await?;
        if message.status() == Some(503) {
            return Err(BenchError::Refused { system: SYSTEM, message: "no responders: is JetStream enabled?".into() });
        }
        serde_json::from_slice(&message.payload).map_err(|e| protocol(format!("bad JSON reply: {e}")))
    }
}

fn api_error(reply: &serde_json::Value) -> Option<(i64, String)> {
    let error = reply.get("error")?;
    let code = error.get("err_code").and_then(|c| c.as_i64()).unwrap_or(0);
    let description = error.get("description").and_then(|d| d.as_str()).unwrap_or("").to_owned();
    Some((code, description))
}

/// Recreates the `EVENTS` stream. `sync_interval` is a server setting no
/// client can read back, so run.py, which writes the server's config,
/// says whether it is `always` (`--nats-sync-always`).
pub async fn prepare(address: SocketAddr, sync_always: bool) -> Result<Durability, BenchError> {
    let mut connection = Connection::open(address).await?;
    // Absent on a fresh server; the error is expected then.
    connection.api(&format!("$JS.API.STREAM.DELETE.{STREAM}"), "").await?;
    let config = serde_json::json!({
        "name": STREAM,
        "subjects": ["ev.>"],
        "storage": "file",
        "num_replicas": 1,
        "allow_direct": true,
        "allow_atomic": true,
        "duplicate_window": 120_000_000_000u64,
    });
    let reply = connection.api(&format!("$JS.API.STREAM.CREATE.{STREAM}"), &config.to_string()).await?;
    if let Some((_, description)) = api_error(&reply) {
        return Err(BenchError::Refused {
            system: SYSTEM,
            message: format!("cannot create the stream: {description}"),
        });
    }
    let settings = if sync_always {
        "file storage, sync_interval: always"
    } else {
        "file storage, sync_interval not known to be always (default: every 2 min)"
    };
    Ok(Durability { fsync_before_ack: sync_always, settings: settings.to_owned() })
}

pub struct NatsClient {
    connection: Connection,
}

impl NatsClient {
    pub async fn connect(address: SocketAddr) -> Result<Self, BenchError> {
        Ok(Self { connection: Connection::open(address).await? })
    }

    pub async fn append(
        &mut self,
        stream: &str,
        expected_version: u64,
        events: Vec<BenchEvent>,
    ) -> Result<Appended, BenchError> {
        let subject = format!("ev.{stream}");
        let reply = self.connection.reply_subject();
        let expected = expected_version.to_string();
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        let count = events.len();
        for (n, event) in events.iter().enumerate() {
            let id = event.id.to_string();
            let sequence = (n + 1).to_string();
            let mut headers = vec![("Nats-Msg-Id", id.as_str()), ("Nats-Type", event.event_type)];
            if n == 0 {
                headers.push(("Nats-Expected-Last-Subject-Sequence", &expected));
            }
            if count > 1 {
                headers.push(("Nats-Batch-Id", &batch_id));
                headers.push(("Nats-Batch-Sequence", &sequence));
                if n + 1 == count {
                    headers.push(("Nats-Batch-Commit", "1"));
                }
            }
            // Only the last message (the commit) asks for an acknowledgement.
            let reply_to = (n + 1 == count).then_some(reply.as_str());
            self.connection.queue_publish(&subject, reply_to, &headers, &event.data);
        }
        self.connection.flush().await?;
        let message = self.connection.next_message(&reply).await?;
        if message.status() == Some(503) {
            return Err(BenchError::Refused { system: SYSTEM, message: "no responders for the stream".into() });
        }
        let ack: serde_json::Value =
            serde_json::from_slice(&message.payload).map_err(|e| protocol(format!("bad PubAck: {e}")))?;
        match api_error(&ack) {
            None => {
                let seq = ack.get("seq").and_then(|s| s.as_u64()).ok_or_else(|| protocol("PubAck without seq"))?;
                Ok(Appended::Written { next_version: seq })
            }
            Some((code, description)) => {
                if code == WRONG_LAST_SEQUENCE {
                    if let Some(current) = description.rsplit(' ').next().and_then(|n| n.parse().ok()) {
                        return Ok(Appended::Conflict { current_version: current });
                    }
                }
                if description.contains("wrong last sequence") || description.contains("last sequence mismatch") {
                    return Ok(Appended::Conflict { current_version: self.last_sequence(&subject).await? });
                }
                Err(BenchError::Refused { system: SYSTEM, message: format!("{description} (code {code})") })
            }
        }
    }

    /// The subject's last stream sequence, 0 if it has none.
    async fn last_sequence(&mut self, subject: &str) -> Result<u64, BenchError> {
        let reply = self.connection.reply_subject();
        let request = serde_json::json!({ "last_by_subj": subject }).to_string();
        self.connection.queue_publish(&format!("$JS.API.DIRECT.GET.{STREAM}"), Some(&reply), &[], request.as_bytes());
        self.connection.flush().await?;
        let message = self.connection.next_message(&reply).await?;
        if message.status() == Some(404) {
            return Ok(0);
        }
        message.header("Nats-Sequence").and_then(|s| s.parse().ok()).ok_or_else(|| protocol("no Nats-Sequence"))
    }

    /// Reads up to `count` messages on subjects matching `filter` from
    /// stream sequence 1, in batched direct gets of at most `page` each.
    async fn read(&mut self, filter: &str, count: u64, page: u64) -> Result<u64, BenchError> {
        let mut next_sequence = 1u64;
        let mut events = 0;
        while events < count {
            let reply = self.connection.reply_subject();
            let batch = page.min(count - events);
            let request =
                serde_json::json!({ "seq": next_sequence, "next_by_subj": filter, "batch": batch }).to_string();
            self.connection.queue_publish(
                &format!("$JS.API.DIRECT.GET.{STREAM}"),
                Some(&reply),
                &[],
                request.as_bytes(),
            );
            self.connection.flush().await?;
            let mut got = 0;
            loop {
                let message = self.connection.next_message(&reply).await?;
                match message.status() {
                    None => {
                        let sequence: u64 = message
                            .header("Nats-Sequence")
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| protocol(format!("message on {} without Nats-Sequence", message.subject)))?;
                        next_sequence = sequence + 1;
                        events += u64::from(!message.payload.is_empty());
                        got += 1;
                    }
                    // 204 ends a batch; 404 means nothing (more) matched.
                    Some(204) | Some(404) => break,
                    Some(status) => {
                        let line = message.headers.unwrap_or_default();
                        return Err(protocol(format!("direct get failed with {status}: {}", line.trim())));
                    }
                }
            }
            if got == 0 {
                break;
            }
        }
        Ok(events)
    }

    pub async fn read_stream(&mut self, stream: &str, count: u64) -> Result<u64, BenchError> {
        self.read(&format!("ev.{stream}"), count, count).await
    }

    pub async fn catch_up(&mut self, count: u64) -> Result<u64, BenchError> {
        self.read("ev.>", count, CATCH_UP_PAGE_EVENTS).await
    }
}
