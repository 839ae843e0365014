//! A small client for a running `stele serve` (or any server speaking the
//! same protocol), over gRPC: what the event-sourcing toolkit needs and the
//! pieces the `stele` CLI shares.
//!
//! - [`Client`]: async (tonic). Appends go through our
//!   `stele.streams.v1.MultiStreamAppend` extension, which is atomic across
//!   streams and says when a retry was a duplicate; reads use KurrentDB's
//!   `Streams.Read`.
//! - [`BlockingClient`]: the same calls for synchronous callers, on a
//!   runtime of its own.
//! - [`Subscription`]: catch-up subscriptions to `$all` (filtered or not)
//!   and to one stream, resumable after the last event or checkpoint seen.
//! - [`connection`]: `kurrentdb://host:port?tls=false` connection strings.
//! - [`convert`]: wire messages <-> the store's value types;
//!   [`read_codec`]: read replies decoded in place into `RecordedEvent`.
//!
//! Values are the embedded store's own (`NewEvent`, `RecordedEvent`,
//! `AppendResult`, `ExpectedRevision`), so code written against the
//! embedded store reads the same against a server.
//!
//! ```no_run
//! use steledb::{ExpectedRevision, NewEvent, Uuid};
//! use steledb_client::BlockingClient;
//!
//! let client = BlockingClient::connect("kurrentdb://127.0.0.1:2113?tls=false")?;
//! let event = NewEvent::json(Uuid::new_v4(), "Opened", br#"{"owner":"ann"}"#.to_vec());
//! let appended = client.append("account-1", ExpectedRevision::NoStream, vec![event])?;
//! let events = client.read_forward("account-1", 0, 100)?;
//! assert_eq!(events.len() as u64, appended.last_revision + 1);
//! # Ok::<(), steledb_client::ClientError>(())
//! ```

mod blocking;
mod client;
pub mod connection;
pub mod convert;
mod error;
pub mod read_codec;
mod subscription;

pub use blocking::{BlockingClient, BlockingSubscription};
pub use client::{Client, REQUEST_TIMEOUT};
pub use connection::{ConnectionStringError, CONNECT_TIMEOUT, DEFAULT_CONNECTION_STRING, REPLY_BYTES_MAX};
pub use convert::SubscriptionStart;
pub use error::ClientError;
/// The generated wire types and gRPC clients, for callers that need a call
/// this crate does not wrap (tombstones, `$all` reads).
pub use stele_proto as proto;
pub use subscription::{Subscription, SubscriptionReply};
/// The gRPC status code in [`ClientError::Status`].
pub use tonic::Code;
