use crate::limits::{CONTENT_TYPE_BYTES_MAX, EVENT_TYPE_BYTES_MAX, STREAM_NAME_BYTES_MAX};

pub use bytes::Bytes;
use bytes::BytesMut;

use crate::codec::EventView;
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
///
/// The variable-length fields (stream, type, content type, data, metadata)
/// live in one shared, immutable buffer: a read hands out its events over a
/// few large chunks instead of five allocations per event, and cloning an
/// event is a reference-count increment. The cost is that an event keeps
/// the chunk it was read into alive (at most [`READ_CHUNK_BYTES`], or the
/// event's own size) for as long as it lives.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub id: Uuid,
    pub revision: u64,
    /// The event's position in `$all`: the log offset of its record.
    pub position: u64,
    /// The writer's batch stamp, microseconds since the Unix epoch.
    pub recorded_at_us: u64,
    /// stream, type, content type, data, metadata, back to back.
    fields: Bytes,
    layout: FieldLayout,
}

/// Where each field ends in `RecordedEvent::fields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldLayout {
    pub stream_end: u32,
    pub type_end: u32,
    pub content_type_end: u32,
    pub data_end: u32,
}

/// How large the chunks that reads copy events into are.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Everything an event is made of, borrowed: for building a
/// [`RecordedEvent`] outside a read (a network client, a test).
#[derive(Debug, Clone, Copy)]
pub struct RecordedEventParts<'a> {
    pub id: Uuid,
    pub stream: &'a str,
    pub revision: u64,
    pub position: u64,
    pub event_type: &'a str,
    pub content_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
    pub recorded_at_us: u64,
}

impl RecordedEvent {
    pub fn new(parts: RecordedEventParts<'_>) -> Self {
        let texts = [parts.stream.as_bytes(), parts.event_type.as_bytes(), parts.content_type.as_bytes()];
        let mut fields = BytesMut::with_capacity(
            texts.iter().map(|t| t.len()).sum::<usize>() + parts.data.len() + parts.metadata.len(),
        );
        for field in texts.into_iter().chain([parts.data, parts.metadata]) {
            fields.extend_from_slice(field);
        }
        let layout = FieldLayout::new([texts[0].len(), texts[1].len(), texts[2].len(), parts.data.len()]);
        Self {
            id: parts.id,
            revision: parts.revision,
            position: parts.position,
            recorded_at_us: parts.recorded_at_us,
            fields: fields.freeze(),
            layout,
        }
    }

    /// Builds an event from a decoded view whose variable-length fields
    /// were copied into `fields`. The view checked the text fields are UTF-8.
    pub(crate) fn from_view(view: &EventView<'_>, position: u64, fields: Bytes) -> Self {
        debug_assert_eq!(&fields[..], view.fields);
        let (id, revision, recorded_at_us, layout) = (view.id, view.revision, view.recorded_at_us, view.layout);
        Self { id, revision, position, recorded_at_us, fields, layout }
    }

    pub fn stream(&self) -> &str {
        self.text(0, self.layout.stream_end)
    }
    pub fn event_type(&self) -> &str {
        self.text(self.layout.stream_end, self.layout.type_end)
    }
    pub fn content_type(&self) -> &str {
        self.text(self.layout.type_end, self.layout.content_type_end)
    }
    pub fn data(&self) -> &[u8] {
        &self.fields[self.layout.content_type_end as usize..self.layout.data_end as usize]
    }
    pub fn metadata(&self) -> &[u8] {
        &self.fields[self.layout.data_end as usize..]
    }
    /// The data as a shared buffer, for handing on without a copy.
    pub fn data_bytes(&self) -> Bytes {
        self.fields.slice(self.layout.content_type_end as usize..self.layout.data_end as usize)
    }
    /// The metadata as a shared buffer, for handing on without a copy.
    pub fn metadata_bytes(&self) -> Bytes {
        self.fields.slice(self.layout.data_end as usize..)
    }
    pub fn is_json(&self) -> bool {
        self.content_type() == CONTENT_TYPE_JSON
    }

    fn text(&self, start: u32, end: u32) -> &str {
        let bytes = &self.fields[start as usize..end as usize];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: `new` builds `fields` from `&str`s, and `from_view` copies
        // them from an `EventView`, whose decoder checked each text field is
        // UTF-8; `fields` is immutable after that.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }
}

impl FieldLayout {
    /// From the lengths of stream, type, content type and data.
    pub(crate) fn new(lengths: [usize; 4]) -> Self {
        let mut end = 0usize;
        let mut ends = [0u32; 4];
        for (slot, length) in ends.iter_mut().zip(lengths) {
            end += length;
            *slot = u32::try_from(end).expect("event fields fit the 4 GiB a record can hold");
        }
        Self { stream_end: ends[0], type_end: ends[1], content_type_end: ends[2], data_end: ends[3] }
    }
}

impl std::fmt::Debug for RecordedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedEvent")
            .field("id", &self.id)
            .field("stream", &self.stream())
            .field("revision", &self.revision)
            .field("position", &self.position)
            .field("event_type", &self.event_type())
            .field("content_type", &self.content_type())
            .field("data", &String::from_utf8_lossy(self.data()))
            .field("metadata", &String::from_utf8_lossy(self.metadata()))
            .field("recorded_at_us", &self.recorded_at_us)
            .finish()
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
