//! PostgreSQL as an event store, the way Marten and Message DB use it: one
//! table with a global position, the stream id and version, the event id,
//! type and JSON data, and UNIQUE (stream_id, version) for optimistic
//! concurrency. Every append is one INSERT in autocommit, so one commit and
//! (with synchronous_commit=on) one WAL flush before the reply.
//!
//! The version token is the stream's event count; the next event's version.

use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::client::{Appended, Durability, CATCH_UP_PAGE_EVENTS};
use crate::error::{io, BenchError};
use crate::event::BenchEvent;

const SCHEMA: &str = "
DROP TABLE IF EXISTS events;
CREATE TABLE events (
    position  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id text        NOT NULL,
    version   bigint      NOT NULL,
    id        uuid        NOT NULL,
    type      text        NOT NULL,
    data      jsonb       NOT NULL,
    created   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
);";

/// All events of one append in one statement: rows numbered from the
/// expected version; a version already taken violates the unique key.
const INSERT: &str = "
INSERT INTO events (stream_id, version, id, type, data)
SELECT $1::text, $2::bigint + t.n - 1, t.id::uuid, $3::text, t.data::jsonb
FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS t(id, data, n)";
const CURRENT_VERSION: &str = "SELECT coalesce(max(version) + 1, 0) FROM events WHERE stream_id = $1";
const READ_STREAM: &str =
    "SELECT position, version, type, data::text FROM events WHERE stream_id = $1 ORDER BY version LIMIT $2";
/// Keyset pages of the global order, as a catch-up reader (Marten's async daemon) does.
const READ_ALL: &str =
    "SELECT position, stream_id, version, type, data::text FROM events WHERE position > $1 ORDER BY position LIMIT $2";

pub struct PgClient {
    client: Client,
    insert: Statement,
    current_version: Statement,
    read_stream: Statement,
    read_all: Statement,
}

async fn open(config_text: &str) -> Result<Client, BenchError> {
    let config: Config = config_text.parse()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let socket = TcpStream::connect((host.as_str(), port)).await.map_err(io("postgresql"))?;
    socket.set_nodelay(true).map_err(io("postgresql"))?;
    let (client, connection) = config.connect_raw(socket, NoTls).await?;
    // The connection task ends when the client is dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

pub async fn prepare(config: &str) -> Result<Durability, BenchError> {
    let client = open(config).await?;
    client.batch_execute(SCHEMA).await?;
    let mut settings = Vec::new();
    let mut durable = true;
    for name in ["fsync", "synchronous_commit", "wal_sync_method", "full_page_writes"] {
        let row = client.query_one(&format!("SHOW {name}"), &[]).await?;
        let value: String = row.get(0);
        if (name == "fsync" || name == "synchronous_commit") && value != "on" {
            durable = false;
        }
        settings.push(format!("{name}={value}"));
    }
    Ok(Durability { fsync_before_ack: durable, settings: settings.join(", ") })
}

pub async fn checkpoint(config: &str) -> Result<(), BenchError> {
    open(config).await?.batch_execute("CHECKPOINT").await?;
    Ok(())
}

impl PgClient {
    pub async fn connect(config: &str) -> Result<Self, BenchError> {
        let client = open(config).await?;
        Ok(Self {
            insert: client.prepare(INSERT).await?,
            current_version: client.prepare(CURRENT_VERSION).await?,
            read_stream: client.prepare(READ_STREAM).await?,
            read_all: client.prepare(READ_ALL).await?,
            client,
        })
    }

    pub async fn append(
        &mut self,
        stream: &str,
        expected_version: u64,
        events: Vec<BenchEvent>,
    ) -> Result<Appended, BenchError> {
        let count = events.len() as u64;
        let event_type = events.first().map_or("", |e| e.event_type);
        let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        let data: Vec<String> =
            events.into_iter().map(|e| String::from_utf8(e.data).unwrap_or_default()).collect::<Vec<_>>();
        let version = expected_version as i64;
        match self.client.execute(&self.insert, &[&stream, &version, &event_type, &ids, &data]).await {
            Ok(_) => Ok(Appended::Written { next_version: expected_version + count }),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                // The refusal does not say where the stream is: ask, as an application would.
                let row = self.client.query_one(&self.current_version, &[&stream]).await?;
                let current: i64 = row.get(0);
                Ok(Appended::Conflict { current_version: current as u64 })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn read_stream(&mut self, stream: &str, count: u64) -> Result<u64, BenchError> {
        let rows = self.client.query(&self.read_stream, &[&stream, &(count as i64)]).await?;
        Ok(rows.iter().filter(|row| !row.get::<_, &str>(3).is_empty()).count() as u64)
    }

    pub async fn catch_up(&mut self, count: u64) -> Result<u64, BenchError> {
        let mut after: i64 = 0;
        let mut events = 0;
        while events < count {
            let page = CATCH_UP_PAGE_EVENTS.min(count - events) as i64;
            let rows = self.client.query(&self.read_all, &[&after, &page]).await?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            events += rows.iter().filter(|row| !row.get::<_, &str>(4).is_empty()).count() as u64;
        }
        Ok(events)
    }
}
