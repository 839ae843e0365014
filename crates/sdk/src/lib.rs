//! The SteleDB event-sourcing toolkit.
//!
//! The model:
//! - A [`Decider`] is an aggregate as two pure functions: `decide(state,
//!   command, ctx)` returns new events or a refusal, `evolve(state, event)`
//!   folds an event into the state. Time and ids come in through the
//!   [`Context`]; nothing inside reads a clock or a random source.
//! - An [`EventCodec`] maps the decider's event enum to stored JSON events,
//!   with a schema version per event type in the metadata and upcasters
//!   that turn old versions into the current shape on read.
//! - A [`Repository`] loads an aggregate (newest snapshot plus the events
//!   after it), decides, and appends expecting the revision it loaded at;
//!   it reloads and retries on a conflict (bounded), and recognises a
//!   repeated command id so a retry after a lost reply is answered with the
//!   original result and writes nothing.
//! - Snapshots ([`SnapshotConfig`]) are a cache with an explicit schema
//!   version: an unusable one is ignored and the stream replayed.
//! - [`EventStore`] is what the repository needs from a store; the embedded
//!   [`steledb::Store`] implements it, and so does the gRPC client
//!   (`steledb_client::BlockingClient`, feature `remote`). [`connect`] picks
//!   one from configuration ([`Backend`]).
//! - Consumers of the log, each with a [`Checkpoint`]: a [`Projection`]
//!   keeps a read model in SQLite with its checkpoint in the same
//!   transaction ([`ProjectionRunner`]), or in PostgreSQL for a shared
//!   database (`PgProjectionRunner`, feature `postgres`); a
//!   [`ProcessManager`] issues commands with ids derived from the event
//!   ([`command_id_for`]); a [`Gateway`] delivers events outside with
//!   retries, back-off and a circuit breaker ([`GatewayRunner`]). Timers go through the log
//!   ([`Timers`], [`TimerService`]).
//! - The [`testkit`] module: `given(events).when(command).then(events)`,
//!   and replays of a recorded log into a projection.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use steledb_sdk::{Context, Decider, EventCodec, Repository};
//!
//! struct Account;
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! enum Event { Deposited { amount_cents: u64 }, Withdrawn { amount_cents: u64 } }
//! #[derive(Debug)]
//! enum Command { Deposit(u64), Withdraw(u64) }
//! #[derive(Debug, PartialEq)]
//! enum Refusal { InsufficientFunds { balance_cents: u64 } }
//!
//! impl Decider for Account {
//!     type State = u64; // the balance in cents
//!     type Command = Command;
//!     type Event = Event;
//!     type Error = Refusal;
//!     fn initial_state(&self) -> u64 { 0 }
//!     fn decide(&self, balance: &u64, command: &Command, _: &Context) -> Result<Vec<Event>, Refusal> {
//!         match *command {
//!             Command::Deposit(amount_cents) => Ok(vec![Event::Deposited { amount_cents }]),
//!             Command::Withdraw(amount_cents) if amount_cents > *balance => {
//!                 Err(Refusal::InsufficientFunds { balance_cents: *balance })
//!             }
//!             Command::Withdraw(amount_cents) => Ok(vec![Event::Withdrawn { amount_cents }]),
//!         }
//!     }
//!     fn evolve(&self, balance: u64, event: &Event) -> u64 {
//!         match event {
//!             Event::Deposited { amount_cents } => balance + amount_cents,
//!             Event::Withdrawn { amount_cents } => balance - amount_cents,
//!         }
//!     }
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let store = steledb::Store::open(dir.path())?;
//! let accounts = Repository::new(Account, &store, EventCodec::new());
//! let ctx = Context::new(1_700_000_000_000_000, uuid::Uuid::new_v4());
//! accounts.handle("account-1", &Command::Deposit(500), &ctx)?;
//! // The same command id again (a retry after a lost reply): same result, nothing written.
//! let again = accounts.handle("account-1", &Command::Deposit(500), &ctx)?;
//! assert!(again.append.unwrap().duplicate);
//! assert_eq!(accounts.load("account-1")?.state, 500);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backend;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod batching;
mod codec;
mod consumer;
mod decider;
mod gateway;
pub mod ids;
pub mod limits;
#[cfg(feature = "postgres")]
mod pg;
mod process;
#[cfg(feature = "sqlite")]
mod projection;
#[cfg(feature = "remote")]
mod remote;
mod repository;
mod snapshot;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
pub mod testkit;
mod timer;

pub use backend::{connect, Backend, ConnectError};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use batching::{Progress, ProjectionError, ProjectionReport};
pub use codec::{CodecError, EventCodec, EventMetadata, Upcaster};
pub use consumer::{
    Checkpoint, CheckpointError, CheckpointStore, ConsumerError, MemoryCheckpoints, RunMode, RunReport, Source,
    StopHandle, CHECKPOINT_TABLE,
};
pub use decider::{Context, Decider};
pub use gateway::{
    dead_letter_stream, Backoff, BreakerConfig, BreakerState, CircuitBreaker, Gateway, GatewayClock, GatewayError,
    GatewayRunner, GatewayStats, SystemGatewayClock, DEAD_LETTER_EVENT_TYPE,
};
#[cfg(feature = "postgres")]
pub use pg::{PgProjection, PgProjectionRunner};
pub use process::{command_id_for, ProcessManager, ProcessManagerRunner, PROCESS_ID_NAMESPACE};
#[cfg(feature = "sqlite")]
pub use projection::{Projection, ProjectionRunner};
pub use repository::{CommandRecord, Handled, Loaded, Repository, RepositoryError};
pub use snapshot::{
    SnapshotConfig, SnapshotError, SnapshotIgnored, SnapshotOutcome, SnapshotPolicy, SnapshotUse, SNAPSHOT_EVENT_TYPE,
    SNAPSHOT_FORMAT,
};
#[cfg(feature = "sqlite")]
pub use sqlite::{open_database, SqliteCheckpoints};
pub use store::{Delivery, EventStore, EventSubscription, StoreError, SubscribeTo};
pub use timer::{FiredTimer, PendingTimer, TimerError, TimerEvent, TimerService, Timers, TIMER_ID_NAMESPACE};
