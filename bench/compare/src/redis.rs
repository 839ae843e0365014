//! Redis Streams through a hand-written RESP2 client.
//!
//! Layout: each event stream is a Redis stream `s:<name>`; a second Redis
//! stream `$all` holds a copy of every event in commit order, since Redis
//! has no order across keys and a catch-up reader needs one.
//!
//! Optimistic concurrency: a Lua script checks XLEN of the stream against
//! the expected count and then XADDs every event to both streams. A script
//! runs atomically and is written to the AOF as one unit, so with
//! `appendfsync always` it costs one fsync before the reply. The other
//! option, XADD with explicit IDs `0-<version>`, only refuses IDs at or
//! below the last one (it allows gaps), cannot make a multi-event append
//! atomic (MULTI does not roll back), and cannot update `$all` under the
//! same check.
//!
//! The version token is the stream's event count.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::client::{Appended, Durability, CATCH_UP_PAGE_EVENTS};
use crate::error::{io, BenchError};
use crate::event::BenchEvent;

const SYSTEM: &str = "redis";
const ALL_KEY: &str = "$all";

/// KEYS[1] stream, KEYS[2] global log; ARGV[1] expected count, ARGV[2]
/// stream name, then (id, type, data) per event. Returns {1, new count}
/// or {0, current count}.
const APPEND_SCRIPT: &str = r#"
local len = redis.call('XLEN', KEYS[1])
if len ~= tonumber(ARGV[1]) then return {0, len} end
local version = len
for i = 3, #ARGV, 3 do
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[i], 'type', ARGV[i+1], 'data', ARGV[i+2])
  redis.call('XADD', KEYS[2], '*', 'stream', ARGV[2], 'version', version, 'id', ARGV[i], 'type', ARGV[i+1], 'data', ARGV[i+2])
  version = version + 1
end
return {1, version}
"#;

/// One RESP2 reply.
#[derive(Debug)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

fn protocol(message: impl Into<String>) -> BenchError {
    BenchError::Protocol { system: SYSTEM, message: message.into() }
}

struct Connection {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    buffer: Vec<u8>,
    line: String,
}

impl Connection {
    async fn open(address: SocketAddr) -> Result<Self, BenchError> {
        let socket = TcpStream::connect(address).await.map_err(io(SYSTEM))?;
        socket.set_nodelay(true).map_err(io(SYSTEM))?;
        let (read, writer) = socket.into_split();
        Ok(Self { reader: BufReader::with_capacity(256 * 1024, read), writer, buffer: Vec::new(), line: String::new() })
    }

    /// Sends one command and returns its reply; a Redis error is an `Err`.
    async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, BenchError> {
        self.buffer.clear();
        self.buffer.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            self.buffer.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            self.buffer.extend_from_slice(arg);
            self.buffer.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&self.buffer).await.map_err(io(SYSTEM))?;
        match self.reply().await? {
            Reply::Error(message) => Err(BenchError::Refused { system: SYSTEM, message }),
            reply => Ok(reply),
        }
    }

    async fn reply(&mut self) -> Result<Reply, BenchError> {
        // Arrays nest; an explicit stack would do too, but replies here are shallow.
        Box::pin(self.reply_inner()).await
    }

    async fn reply_inner(&mut self) -> Result<Reply, BenchError> {
        self.line.clear();
        let read = self.reader.read_line(&mut self.line).await.map_err(io(SYSTEM))?;
        if read == 0 {
            return Err(protocol("the server closed the connection"));
        }
        let line = self.line.trim_end_matches("\r\n").to_owned();
        let (kind, rest) = line.split_at(1.min(line.len()));
        let number = || rest.parse::<i64>().map_err(|_| protocol(format!("bad length in '{line}'")));
        match kind {
            "+" => Ok(Reply::Simple(rest.to_owned())),
            "-" => Ok(Reply::Error(rest.to_owned())),
            ":" => Ok(Reply::Integer(number()?)),
            "$" => {
                let length = number()?;
                if length < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut data = vec![0; length as usize + 2];
                self.reader.read_exact(&mut data).await.map_err(io(SYSTEM))?;
                data.truncate(length as usize);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let length = number()?;
                if length < 0 {
                    return Ok(Reply::Array(None));
                }
                let mut items = Vec::with_capacity(length as usize);
                for _ in 0..length {
                    items.push(self.reply().await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(protocol(format!("unexpected reply line '{line}'"))),
        }
    }
}

fn text(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Simple(s) => Some(s.clone()),
        Reply::Bulk(Some(b)) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

pub async fn prepare(address: SocketAddr) -> Result<Durability, BenchError> {
    let mut connection = Connection::open(address).await?;
    connection.call(&[b"FLUSHALL"]).await?;
    let mut settings = Vec::new();
    let mut durable = true;
    for (name, wanted) in [("appendonly", "yes"), ("appendfsync", "always")] {
        let reply = connection.call(&[b"CONFIG", b"GET", name.as_bytes()]).await?;
        let value = match &reply {
            Reply::Array(Some(items)) if items.len() == 2 => text(&items[1]).unwrap_or_default(),
            _ => String::new(),
        };
        durable &= value == wanted;
        settings.push(format!("{name} {value}"));
    }
    Ok(Durability { fsync_before_ack: durable, settings: settings.join(", ") })
}

pub struct RedisClient {
    connection: Connection,
    script_sha: Vec<u8>,
}

/// Counts stream entries (from XRANGE) that carry a `data` field; returns
/// the count and the last entry id.
fn count_entries(reply: &Reply) -> Result<(u64, Option<Vec<u8>>), BenchError> {
    let Reply::Array(Some(entries)) = reply else { return Ok((0, None)) };
    let mut events = 0;
    let mut last = None;
    for entry in entries {
        let Reply::Array(Some(parts)) = entry else { return Err(protocol("an XRANGE entry is not an array")) };
        let (Some(Reply::Bulk(Some(id))), Some(Reply::Array(Some(fields)))) = (parts.first(), parts.get(1)) else {
            return Err(protocol("an XRANGE entry without id and fields"));
        };
        let has_data = fields.chunks(2).any(|kv| matches!(&kv[0], Reply::Bulk(Some(k)) if k == b"data"));
        events += u64::from(has_data);
        last = Some(id.clone());
    }
    Ok((events, last))
}

impl RedisClient {
    pub async fn connect(address: SocketAddr) -> Result<Self, BenchError> {
        let mut connection = Connection::open(address).await?;
        let reply = connection.call(&[b"SCRIPT", b"LOAD", APPEND_SCRIPT.as_bytes()]).await?;
        let script_sha = text(&reply).ok_or_else(|| protocol("SCRIPT LOAD returned no digest"))?.into_bytes();
        Ok(Self { connection, script_sha })
    }

    pub async fn append(
        &mut self,
        stream: &str,
        expected_version: u64,
        events: Vec<BenchEvent>,
    ) -> Result<Appended, BenchError> {
        let key = format!("s:{stream}");
        let expected = expected_version.to_string();
        let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        let mut args: Vec<&[u8]> = vec![b"EVALSHA", &self.script_sha, b"2", key.as_bytes(), ALL_KEY.as_bytes()];
        args.push(expected.as_bytes());
        args.push(stream.as_bytes());
        for (event, id) in events.iter().zip(&ids) {
            args.extend([id.as_bytes(), event.event_type.as_bytes(), &event.data[..]]);
        }
        let reply = self.connection.call(&args).await?;
        match reply {
            Reply::Array(Some(items)) => match items.as_slice() {
                [Reply::Integer(1), Reply::Integer(n)] => Ok(Appended::Written { next_version: *n as u64 }),
                [Reply::Integer(0), Reply::Integer(n)] => Ok(Appended::Conflict { current_version: *n as u64 }),
                _ => Err(protocol(format!("unexpected script reply {items:?}"))),
            },
            other => Err(protocol(format!("unexpected script reply {other:?}"))),
        }
    }

    pub async fn read_stream(&mut self, stream: &str, count: u64) -> Result<u64, BenchError> {
        let key = format!("s:{stream}");
        let count = count.to_string();
        let reply = self.connection.call(&[b"XRANGE", key.as_bytes(), b"-", b"+", b"COUNT", count.as_bytes()]).await?;
        Ok(count_entries(&reply)?.0)
    }

    pub async fn catch_up(&mut self, count: u64) -> Result<u64, BenchError> {
        let mut start = b"-".to_vec();
        let mut events = 0;
        while events < count {
            let page = CATCH_UP_PAGE_EVENTS.min(count - events).to_string();
            let reply =
                self.connection.call(&[b"XRANGE", ALL_KEY.as_bytes(), &start, b"+", b"COUNT", page.as_bytes()]).await?;
            let (read, last) = count_entries(&reply)?;
            let Some(last) = last else { break };
            events += read;
            // "(" makes the range start after the last id read (Redis 6.2+).
            start = [b"(".as_slice(), &last].concat();
        }
        Ok(events)
    }
}
