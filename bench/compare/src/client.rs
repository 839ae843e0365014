//! One client connection to one system, behind one enum so every workload
//! drives every system through the same three calls.
//!
//! A stream's *version token* is what a client must present to append
//! next: the number of events in the stream for SteleDB, PostgreSQL and
//! Redis, and the subject's last sequence for NATS (0 for none). Workloads
//! only hand back the token the last reply gave them.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::BenchError;
use crate::event::BenchEvent;
use crate::{nats, postgres, redis, stele};

/// What an append with an exact expectation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Durably written; the token to expect next.
    Written { next_version: u64 },
    /// Correctly refused: the stream had moved on; its current token.
    Conflict { current_version: u64 },
}

/// Events to read in one page of a catch-up read, for the systems whose
/// client pages (PostgreSQL, Redis, NATS, embedded); the SteleDB server
/// pages on its own side of a subscription.
pub const CATCH_UP_PAGE_EVENTS: u64 = 10_000;

/// A system under test, as named on the command line.
#[derive(Clone)]
pub enum Target {
    SteleGrpc { uri: String },
    SteleEmbedded { store: Arc<steledb::Store> },
    Postgres { config: String },
    Redis { address: SocketAddr },
    Nats { address: SocketAddr, sync_always: bool },
}

impl Target {
    /// The row name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SteleGrpc { .. } => "SteleDB (gRPC)",
            Self::SteleEmbedded { .. } => "SteleDB (embedded)",
            Self::Postgres { .. } => "PostgreSQL",
            Self::Redis { .. } => "Redis Streams",
            Self::Nats { .. } => "NATS JetStream",
        }
    }

    pub async fn connect(&self) -> Result<Client, BenchError> {
        Ok(match self {
            Self::SteleGrpc { uri } => Client::SteleGrpc(stele::GrpcClient::connect(uri).await?),
            Self::SteleEmbedded { store } => Client::SteleEmbedded(stele::EmbeddedClient::new(store.clone())),
            Self::Postgres { config } => Client::Postgres(postgres::PgClient::connect(config).await?),
            Self::Redis { address } => Client::Redis(redis::RedisClient::connect(*address).await?),
            Self::Nats { address, .. } => Client::Nats(nats::NatsClient::connect(*address).await?),
        })
    }

    /// Creates what the system needs (table, script, stream) and reports
    /// whether it acknowledges appends only after fsync, as far as the
    /// system lets a client check.
    pub async fn prepare(&self) -> Result<Durability, BenchError> {
        match self {
            Self::SteleGrpc { .. } | Self::SteleEmbedded { .. } => {
                Ok(Durability { fsync_before_ack: true, settings: "fdatasync per commit (always)".to_owned() })
            }
            Self::Postgres { config } => postgres::prepare(config).await,
            Self::Redis { address } => redis::prepare(*address).await,
            Self::Nats { address, sync_always } => nats::prepare(*address, *sync_always).await,
        }
    }
}

impl Target {
    /// Finishes the fill's background work where a client can ask for it,
    /// so the first round does not pay for it: PostgreSQL's checkpoint.
    pub async fn settle(&self) -> Result<(), BenchError> {
        match self {
            Self::Postgres { config } => postgres::checkpoint(config).await,
            _ => Ok(()),
        }
    }
}

/// What a system says about its durability settings.
#[derive(Debug, Clone)]
pub struct Durability {
    pub fsync_before_ack: bool,
    pub settings: String,
}

pub enum Client {
    SteleGrpc(stele::GrpcClient),
    SteleEmbedded(stele::EmbeddedClient),
    Postgres(postgres::PgClient),
    Redis(redis::RedisClient),
    Nats(nats::NatsClient),
}

impl Client {
    /// Appends `events` to `stream` atomically if its version token is
    /// still `expected_version`, and waits for the durable acknowledgement.
    pub async fn append(
        &mut self,
        stream: &str,
        expected_version: u64,
        events: Vec<BenchEvent>,
    ) -> Result<Appended, BenchError> {
        match self {
            Self::SteleGrpc(c) => c.append(stream, expected_version, events).await,
            Self::SteleEmbedded(c) => c.append(stream, expected_version, events).await,
            Self::Postgres(c) => c.append(stream, expected_version, events).await,
            Self::Redis(c) => c.append(stream, expected_version, events).await,
            Self::Nats(c) => c.append(stream, expected_version, events).await,
        }
    }

    /// Reads up to `count` events of `stream` from its start, data
    /// included; returns how many there were.
    pub async fn read_stream(&mut self, stream: &str, count: u64) -> Result<u64, BenchError> {
        match self {
            Self::SteleGrpc(c) => c.read_stream(stream, count).await,
            Self::SteleEmbedded(c) => c.read_stream(stream, count).await,
            Self::Postgres(c) => c.read_stream(stream, count).await,
            Self::Redis(c) => c.read_stream(stream, count).await,
            Self::Nats(c) => c.read_stream(stream, count).await,
        }
    }

    /// Reads the first `count` events of the whole log in order, data
    /// included; returns how many it got (fewer only if the log is shorter).
    pub async fn catch_up(&mut self, count: u64) -> Result<u64, BenchError> {
        match self {
            Self::SteleGrpc(c) => c.catch_up(count).await,
            Self::SteleEmbedded(c) => c.catch_up(count).await,
            Self::Postgres(c) => c.catch_up(count).await,
            Self::Redis(c) => c.catch_up(count).await,
            Self::Nats(c) => c.catch_up(count).await,
        }
    }
}
