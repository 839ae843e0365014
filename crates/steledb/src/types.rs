use crate::limits::{CONTENT_TYPE_BYTES_MAX, EVENT_TYPE_BYTES_MAX, STREAM_NAME_BYTES_MAX};

pub use uuid::Uuid;

/// The optimistic-concurrency check of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream has no events (or was soft-deleted).
    NoStream,
    /// The stream has at least one live event.
    StreamExists,
    /// The stream's last revision is exactly this.
    Exact(u64),
}

impl std::fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => write!(f, "any"),
            Self::NoStream => write!(f, "no stream"),
            Self::StreamExists => write!(f, "stream exists"),
            Self::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// The revision the stream actually had when an expectation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CurrentRevision {
    NoStream,
    Current(u64),
}

impl std::fmt::Display for CurrentRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoStream => write!(f, "no stream"),
            Self::Current(n) => write!(f, "{n}"),
        }
    }
}

pub const CONTENT_TYPE_JSON: &str = "application/json";
pub const CONTENT_TYPE_BINARY: &str = "application/octet-stream";

/// An event to append. The id is chosen by the client and makes retries
/// idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: Uuid,
    pub event_type: String,
    pub content_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

impl NewEvent {
    pub fn json(id: Uuid, event_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self {
            id,
            event_type: event_type.into(),
            content_type: CONTENT_TYPE_JSON.to_owned(),
            data: data.into(),
            metadata: Vec::new(),
        }
    }
    pub fn binary(id: Uuid, event_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self { content_type: CONTENT_TYPE_BINARY.to_owned(), ..Self::json(id, event_type, data) }
    }
    pub fn with_metadata(mut self, metadata: impl Into<Vec<u8>>) -> Self {
        self.metadata = metadata.into();
        self
    }
    /// The bytes this event counts against the size limits.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + self.metadata.len() + self.event_type.len() + self.content_type.len()
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub id: Uuid,
    pub stream: String,
    pub revision: u64,
    /// The event's position in `$all`: the log offset of its record.
    pub position: u64,
    pub event_type: String,
    pub content_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
    /// The writer's batch stamp, microseconds since the Unix epoch.
    pub recorded_at_us: u64,
}

impl RecordedEvent {
    pub fn is_json(&self) -> bool {
        self.content_type == CONTENT_TYPE_JSON
    }
}

/// The events of one stream within an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    pub stream: String,
    pub expected: ExpectedRevision,
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    pub fn new(stream: impl Into<String>, expected: ExpectedRevision, events: Vec<NewEvent>) -> Self {
        Self { stream: stream.into(), expected, events }
    }
}

/// What one stream's part of an append produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub first_revision: u64,
    /// The stream's revision after the append (the next expected revision).
    pub last_revision: u64,
    pub first_position: u64,
    pub last_position: u64,
    /// True when the same events were already there and nothing was written.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// Where a stream read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    Start,
    End,
    Revision(u64),
}

/// Where a read of `$all` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllStart {
    Start,
    End,
    Position(u64),
}

/// Why a stream name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("is not valid UTF-8")]
    InvalidUtf8,
    #[error("contains a control character")]
    ControlCharacter,
    #[error("starts with '$', which is reserved for system streams")]
    Reserved,
}

/// Checks a stream name for reading; system (`$`) names are allowed.
pub fn check_stream_name(name: &str) -> Result<(), NameError> {
    check_name(name, STREAM_NAME_BYTES_MAX)
}

/// Checks a stream name for a user append: system names are refused.
pub fn check_user_stream_name(name: &str) -> Result<(), NameError> {
    check_stream_name(name)?;
    if name.starts_with('$') {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// For names that arrive as bytes (network front ends).
pub fn stream_name_from_bytes(bytes: &[u8]) -> Result<&str, NameError> {
    let name = std::str::from_utf8(bytes).map_err(|_| NameError::InvalidUtf8)?;
    check_stream_name(name)?;
    Ok(name)
}

pub(crate) fn check_event_type(name: &str) -> Result<(), NameError> {
    check_name(name, EVENT_TYPE_BYTES_MAX)
}

pub(crate) fn check_content_type(name: &str) -> Result<(), NameError> {
    if name.len() > CONTENT_TYPE_BYTES_MAX {
        return Err(NameError::TooLong { max: CONTENT_TYPE_BYTES_MAX });
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(())
}

fn check_name(name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max {
        return Err(NameError::TooLong { max });
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(())
}

/// The metadata stream of `stream`, as KurrentDB names it.
pub fn metadata_stream_of(stream: &str) -> String {
    format!("$${stream}")
}

pub const EVENT_TYPE_METADATA: &str = "$metadata";
pub const EVENT_TYPE_TOMBSTONE: &str = "$streamDeleted";
/// The revision a tombstone is stored at: no live event can reach it.
pub const TOMBSTONE_REVISION: u64 = u64::MAX;
