use crate::types::{CurrentRevision, ExpectedRevision, NameError};

/// Opening a store failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Log(#[from] stele_log::OpenError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("replaying the log failed: {0}")]
    Replay(#[from] ReadError),
    #[error("I/O error on {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("the data directory {path} is in use by another process")]
    Locked { path: std::path::PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("I/O error on index file {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("index file {path} is damaged: {reason}")]
    Corrupt { path: std::path::PathBuf, reason: String },
}

/// Reading failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("stream '{stream}' not found")]
    StreamNotFound { stream: String },
    #[error("stream '{stream}' is deleted (tombstoned)")]
    StreamDeleted { stream: String },
    #[error("stream name {reason}")]
    InvalidStreamName { reason: NameError },
    #[error(transparent)]
    Log(#[from] stele_log::ReadError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("log record at position {position} has a valid checksum but cannot be decoded: {reason}")]
    BadEvent { position: u64, reason: crate::codec::DecodeError },
    #[error("the index points at position {position} for '{stream}' revision {revision}, but the log holds another event there")]
    IndexMismatch { stream: String, revision: u64, position: u64 },
    /// Most often a checkpoint kept from a store whose data was since
    /// replaced: reading or subscribing from the end instead would skip,
    /// without a word, every event written before the log grows past it.
    #[error("$all position {position} is past the end of the log ({end}): a checkpoint from another store, or from before this store's data was replaced, cannot be resumed here")]
    PositionPastEnd { position: u64, end: u64 },
    #[error("$all position {position} is not the position of an event: {source}")]
    NotAnEventPosition { position: u64, source: Box<ReadError> },
}

/// An append (or delete, or metadata write) failed. Unless stated
/// otherwise nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("wrong expected revision on stream '{stream}': expected {expected}, actual {actual}")]
    WrongExpectedRevision { stream: String, expected: ExpectedRevision, actual: CurrentRevision },
    #[error("stream '{stream}' is deleted (tombstoned) and can never be written again")]
    StreamDeleted { stream: String },
    #[error("invalid stream name '{stream}': {reason}")]
    InvalidStreamName { stream: String, reason: NameError },
    #[error("invalid event type '{event_type}' in stream '{stream}': {reason}")]
    InvalidEventType { stream: String, event_type: String, reason: NameError },
    #[error("invalid content type '{content_type}' in stream '{stream}': {reason}")]
    InvalidContentType { stream: String, content_type: String, reason: NameError },
    #[error("an append must contain at least one event")]
    EmptyAppend,
    #[error("these event ids were already appended to stream '{stream}' at revision {revision}; a retry must repeat the original expected revision")]
    DuplicateEventIds { stream: String, revision: u64 },
    #[error("stream '{stream}' appears twice in one multi-stream append")]
    DuplicateStream { stream: String },
    #[error("event {index} of stream '{stream}' is {size_bytes} bytes; the limit is {limit_bytes}")]
    EventTooLarge { stream: String, index: usize, size_bytes: usize, limit_bytes: usize },
    #[error("append of {size_bytes} bytes exceeds the limit of {limit_bytes}")]
    AppendTooLarge { size_bytes: usize, limit_bytes: usize },
    #[error("append of {count} events exceeds the limit of {limit}")]
    TooManyEvents { count: usize, limit: usize },
    #[error("append touches {count} streams; the limit is {limit}")]
    TooManyStreams { count: usize, limit: usize },
    #[error("invalid stream metadata: {reason}")]
    InvalidMetadata { reason: String },
    #[error("the writer queue is full ({capacity} requests); retry later")]
    Overloaded { capacity: usize },
    #[error("no space left on device; nothing was written; appends resume once space is freed")]
    NoSpace,
    /// Index tables cannot be written (`Store::index_error` says why) and
    /// the entries waiting in memory reached the most allowed: appends are
    /// refused rather than let memory grow without bound.
    #[error("the stream index cannot be written ({cause}) and {entries} entries already wait in memory; nothing was written; appends resume once the index can be written")]
    IndexBacklog { entries: usize, cause: String },
    #[error("the writer has stopped: {cause}")]
    WriterStopped { cause: String },
    #[error("checking the append needed a read that failed: {0}")]
    Read(#[from] ReadError),
}
