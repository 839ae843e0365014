//! The operations the toolkit needs from an event store, as a trait, so the
//! same repositories run on the embedded engine and on a remote server
//! through the gRPC client (feature `remote`, `remote.rs`).
//!
//! The trait is object-safe: an application can choose its store at run
//! time as `Arc<dyn EventStore + Send + Sync>`, while code that knows its
//! store statically (`Repository<D, Store>`) pays no virtual call. The
//! store's own value types (`NewEvent`, `RecordedEvent`, `AppendResult`,
//! `ExpectedRevision`) are reused rather than copied: they carry no engine
//! internals, and a remote client fills them the same way the server does.

use std::sync::Arc;

use steledb::{
    AppendError, AppendResult, CurrentRevision, Direction, ExpectedRevision, NewEvent, ReadError, RecordedEvent, Store,
    StreamAppend, StreamStart,
};

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

/// What the toolkit needs from an event store.
pub trait EventStore {
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
        }
    )*};
}

forward_event_store!(&T, Arc<T>, Box<T>);
