//! The operations the toolkit needs from an event store, as a trait, so the
//! same repositories and consumers run on the embedded engine and on a
//! remote server through the gRPC client (feature `remote`, `remote.rs`).
//!
//! The trait is object-safe: an application can choose its store at run
//! time as `Arc<dyn EventStore>`, while code that knows its
//! store statically (`Repository<D, Store>`) pays no virtual call. The
//! store's own value types (`NewEvent`, `RecordedEvent`, `AppendResult`,
//! `ExpectedRevision`) are reused rather than copied: they carry no engine
//! internals, and a remote client fills them the same way the server does.

use std::sync::Arc;
use std::time::Duration;

use steledb::{
    AllStart, AppendError, AppendResult, CurrentRevision, Direction, EventFilter, ExpectedRevision, NewEvent,
    ReadError, RecordedEvent, Store, StreamAppend, StreamStart, Subscription, SubscriptionMessage,
};

use crate::limits::FILTER_CHECKPOINT_INTERVAL_RECORDS;

/// A store operation failed. The variants the toolkit acts on are typed
/// the same for every backend; the rest keep the backend's own error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The optimistic-concurrency check failed: nothing was written.
    #[error("wrong expected revision on stream '{stream}': expected {expected}, actual {actual}")]
    WrongExpectedRevision { stream: String, expected: ExpectedRevision, actual: CurrentRevision },
    #[error("stream '{stream}' is deleted (tombstoned)")]
    StreamDeleted { stream: String },
    #[error(transparent)]
    Append(AppendError),
    #[error(transparent)]
    Read(ReadError),
    /// For backends other than the embedded store (a transport error).
    #[error("event store backend: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether trying again later can succeed: the store is busy, full or
    /// out of reach, rather than refusing the request itself.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Append(AppendError::Overloaded { .. } | AppendError::NoSpace | AppendError::IndexBacklog { .. }) => {
                true
            }
            #[cfg(feature = "remote")]
            Self::Backend(inner) => {
                inner.downcast_ref::<steledb_client::ClientError>().is_some_and(crate::remote::is_transient)
            }
            _ => false,
        }
    }
}

impl From<AppendError> for StoreError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::WrongExpectedRevision { stream, expected, actual } => {
                Self::WrongExpectedRevision { stream, expected, actual }
            }
            AppendError::StreamDeleted { stream } => Self::StreamDeleted { stream },
            other => Self::Append(other),
        }
    }
}

impl From<ReadError> for StoreError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::StreamDeleted { stream } => Self::StreamDeleted { stream },
            other => Self::Read(other),
        }
    }
}

/// Where a subscription starts: after the last thing already handled, so
/// a consumer resumes from its checkpoint with nothing missed or repeated.
#[derive(Debug, Clone, Copy)]
pub enum SubscribeTo<'a> {
    /// `$all` (only what `filter` matches, when set), after the record at
    /// `after_position`, or from the start.
    All { after_position: Option<u64>, filter: Option<&'a EventFilter> },
    /// One stream, after `after_revision`, or from its start.
    Stream { stream: &'a str, after_revision: Option<u64> },
}

/// One message of a subscription, the same from every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Event(RecordedEvent),
    /// A filtered `$all` subscription examined every record up to and
    /// including the one at `position` (those that matched were delivered
    /// before this): a consumer's checkpoint may move there.
    Scanned {
        position: u64,
    },
    /// The subscription reached the end of the log; live from here.
    CaughtUp,
}

/// A subscription: catches up, then follows live appends.
pub trait EventSubscription: Send {
    /// The next message, or `None` when none came within `timeout`.
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Delivery>, StoreError>;
}

impl EventSubscription for Subscription {
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Delivery>, StoreError> {
        Ok(Subscription::next_timeout(self, timeout)?.map(|message| match message {
            SubscriptionMessage::Event(event) => Delivery::Event(event),
            SubscriptionMessage::Checkpoint { last_scanned_position, .. } => {
                Delivery::Scanned { position: last_scanned_position }
            }
            SubscriptionMessage::CaughtUp { .. } => Delivery::CaughtUp,
        }))
    }
}

/// What the toolkit needs from an event store. Stores are shared between
/// the threads of an application's components, hence `Send + Sync`.
pub trait EventStore: Send + Sync {
    /// Up to `limit` events of `stream` in revision order, starting at
    /// `from_revision`. A stream that does not exist (or was soft-deleted)
    /// reads as empty.
    fn read_forward(&self, stream: &str, from_revision: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The last event of `stream`, if it has any.
    fn read_last(&self, stream: &str) -> Result<Option<RecordedEvent>, StoreError>;

    /// Appends to several streams atomically, each with its own
    /// expectation: all parts are written or none. Event ids make a retry
    /// idempotent (the store answers with `duplicate: true`).
    fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError>;

    /// Appends to one stream.
    fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let mut results = self.append_multi(vec![StreamAppend::new(stream, expected, events)])?;
        Ok(results.remove(0))
    }

    /// Subscribes: what is already stored after the start point, then live
    /// appends. Filtered `$all` subscriptions report [`Delivery::Scanned`]
    /// through stretches with no match.
    fn subscribe(&self, to: SubscribeTo<'_>) -> Result<Box<dyn EventSubscription>, StoreError>;

    /// The `$all` position of the last event, `None` when there is none
    /// (for progress reports).
    fn last_position(&self) -> Result<Option<u64>, StoreError>;
}

impl EventStore for Store {
    fn read_forward(&self, stream: &str, from_revision: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        match self.read_stream(stream, StreamStart::Revision(from_revision), Direction::Forward, limit) {
            Err(ReadError::StreamNotFound { .. }) => Ok(Vec::new()),
            other => Ok(other?),
        }
    }

    fn read_last(&self, stream: &str) -> Result<Option<RecordedEvent>, StoreError> {
        match self.read_stream(stream, StreamStart::End, Direction::Backward, 1) {
            Err(ReadError::StreamNotFound { .. }) => Ok(None),
            other => Ok(other?.pop()),
        }
    }

    fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        Ok(Store::append_multi(self, parts)?)
    }

    fn subscribe(&self, to: SubscribeTo<'_>) -> Result<Box<dyn EventSubscription>, StoreError> {
        let subscription = match to {
            SubscribeTo::All { after_position, filter } => {
                let start = match after_position {
                    // A checkpoint past the end (from a replaced store) gets
                    // the error that says so.
                    Some(position) => AllStart::Position(self.resume_after(position)?),
                    None => AllStart::Start,
                };
                self.subscribe_all(start, filter.cloned(), FILTER_CHECKPOINT_INTERVAL_RECORDS)?
            }
            SubscribeTo::Stream { stream, after_revision } => {
                let next_revision = after_revision.map_or(0, |r| r.saturating_add(1));
                self.subscribe_stream(stream, StreamStart::Revision(next_revision))?
            }
        };
        Ok(Box::new(subscription))
    }

    fn last_position(&self) -> Result<Option<u64>, StoreError> {
        let slice = self.read_all(AllStart::End, Direction::Backward, 1, None)?;
        Ok(slice.events.first().map(|event| event.position))
    }
}

macro_rules! forward_event_store {
    ($($pointer:ty),*) => {$(
        impl<T: EventStore + ?Sized> EventStore for $pointer {
            fn read_forward(&self, stream: &str, from_revision: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
                (**self).read_forward(stream, from_revision, limit)
            }
            fn read_last(&self, stream: &str) -> Result<Option<RecordedEvent>, StoreError> {
                (**self).read_last(stream)
            }
            fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
                (**self).append_multi(parts)
            }
            fn append(&self, stream: &str, expected: ExpectedRevision, events: Vec<NewEvent>) -> Result<AppendResult, StoreError> {
                (**self).append(stream, expected, events)
            }
            fn subscribe(&self, to: SubscribeTo<'_>) -> Result<Box<dyn EventSubscription>, StoreError> {
                (**self).subscribe(to)
            }
            fn last_position(&self) -> Result<Option<u64>, StoreError> {
                (**self).last_position()
            }
        }
    )*};
}

forward_event_store!(&T, Arc<T>, Box<T>);
