//! The payload of an event record (log record kind [`KIND_EVENT`]).
//!
//! ```text
//! offset size field
//!      0    1 payload_version   EVENT_FORMAT_VERSION
//!      1    1 reserved          zero
//!      2    2 stream_bytes      u16
//!      4    2 type_bytes        u16
//!      6    1 content_type_bytes u8
//!      7    1 reserved          zero
//!      8    8 revision          u64 (TOMBSTONE_REVISION for a tombstone)
//!     16    8 recorded_at_us    u64, the writer's batch stamp
//!     24   16 event id          UUID bytes
//!     40    4 data_bytes        u32
//!     44    4 metadata_bytes    u32
//!     48    . stream, type, content type, data, metadata
//! ```
//! Integers are little-endian. The log frame around it carries the checksum.

use bytes::{Bytes, BytesMut};

use crate::types::{FieldLayout, RecordedEvent, Uuid, READ_CHUNK_BYTES};

pub const KIND_EVENT: u8 = 1;
pub const EVENT_FORMAT_VERSION: u8 = 1;
const FIXED_BYTES: usize = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("unknown event format version {0}")]
    UnknownVersion(u8),
    #[error("event payload is cut short")]
    Truncated,
    #[error("event payload has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("stream name, event type or content type is not UTF-8")]
    InvalidUtf8,
}

/// The fields of an event to encode, borrowed.
pub struct EventFields<'a> {
    pub stream: &'a str,
    pub revision: u64,
    pub recorded_at_us: u64,
    pub id: Uuid,
    pub event_type: &'a str,
    pub content_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
}

pub fn encoded_size(fields: &EventFields<'_>) -> usize {
    FIXED_BYTES
        + fields.stream.len()
        + fields.event_type.len()
        + fields.content_type.len()
        + fields.data.len()
        + fields.metadata.len()
}

pub fn encode_event(buffer: &mut Vec<u8>, fields: &EventFields<'_>) {
    // Callers validated these against the limits; a failure here is a bug.
    assert!(fields.stream.len() <= u16::MAX as usize);
    assert!(fields.event_type.len() <= u16::MAX as usize);
    assert!(fields.content_type.len() <= u8::MAX as usize);
    assert!(fields.data.len() <= u32::MAX as usize && fields.metadata.len() <= u32::MAX as usize);
    buffer.reserve(encoded_size(fields));
    buffer.extend_from_slice(&[EVENT_FORMAT_VERSION, 0]);
    buffer.extend_from_slice(&(fields.stream.len() as u16).to_le_bytes());
    buffer.extend_from_slice(&(fields.event_type.len() as u16).to_le_bytes());
    buffer.extend_from_slice(&[fields.content_type.len() as u8, 0]);
    buffer.extend_from_slice(&fields.revision.to_le_bytes());
    buffer.extend_from_slice(&fields.recorded_at_us.to_le_bytes());
    buffer.extend_from_slice(fields.id.as_bytes());
    buffer.extend_from_slice(&(fields.data.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&(fields.metadata.len() as u32).to_le_bytes());
    buffer.extend_from_slice(fields.stream.as_bytes());
    buffer.extend_from_slice(fields.event_type.as_bytes());
    buffer.extend_from_slice(fields.content_type.as_bytes());
    buffer.extend_from_slice(fields.data);
    buffer.extend_from_slice(fields.metadata);
}

/// An event decoded in place from a record payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    pub stream: &'a str,
    pub revision: u64,
    pub recorded_at_us: u64,
    pub id: Uuid,
    pub event_type: &'a str,
    pub content_type: &'a str,
    pub data: &'a [u8],
    pub metadata: &'a [u8],
    /// The variable-length fields back to back, as `RecordedEvent` keeps them.
    pub(crate) fields: &'a [u8],
    pub(crate) layout: FieldLayout,
}

impl<'a> EventView<'a> {
    /// An owned copy in a buffer of its own. Reads that return many events
    /// use an [`EventArena`] instead.
    pub fn to_recorded(&self, position: u64) -> RecordedEvent {
        RecordedEvent::from_view(self, position, Bytes::copy_from_slice(self.fields))
    }

    /// The event's fields, still borrowed, with its `$all` position.
    pub fn parts(&self, position: u64) -> crate::RecordedEventParts<'a> {
        crate::RecordedEventParts {
            id: self.id,
            stream: self.stream,
            revision: self.revision,
            position,
            event_type: self.event_type,
            content_type: self.content_type,
            data: self.data,
            metadata: self.metadata,
            recorded_at_us: self.recorded_at_us,
        }
    }
}

/// Copies events out of a read buffer into shared chunks of
/// [`READ_CHUNK_BYTES`]: one allocation per chunk instead of five per event.
#[derive(Debug, Default)]
pub(crate) struct EventArena {
    chunk: BytesMut,
}

impl EventArena {
    pub fn event(&mut self, view: &EventView<'_>, position: u64) -> RecordedEvent {
        let size = view.fields.len();
        if self.chunk.capacity() - self.chunk.len() < size {
            self.chunk = BytesMut::with_capacity(READ_CHUNK_BYTES.max(size));
        }
        self.chunk.extend_from_slice(view.fields);
        RecordedEvent::from_view(view, position, self.chunk.split().freeze())
    }
}

fn u16_at(bytes: &[u8], at: usize) -> usize {
    u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize
}
fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
}
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

pub fn decode_event(kind: u8, payload: &[u8]) -> Result<EventView<'_>, DecodeError> {
    if kind != KIND_EVENT {
        return Err(DecodeError::UnknownKind(kind));
    }
    if payload.len() < FIXED_BYTES {
        return Err(DecodeError::Truncated);
    }
    if payload[0] != EVENT_FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion(payload[0]));
    }
    let stream_bytes = u16_at(payload, 2);
    let type_bytes = u16_at(payload, 4);
    let content_type_bytes = payload[6] as usize;
    let data_bytes = u32_at(payload, 40);
    let metadata_bytes = u32_at(payload, 44);
    let total = FIXED_BYTES + stream_bytes + type_bytes + content_type_bytes + data_bytes + metadata_bytes;
    if payload.len() < total {
        return Err(DecodeError::Truncated);
    }
    if payload.len() > total {
        return Err(DecodeError::TrailingBytes(payload.len() - total));
    }
    let lengths = [stream_bytes, type_bytes, content_type_bytes, data_bytes];
    let layout = FieldLayout::new(lengths);
    let fields = &payload[FIXED_BYTES..];
    let [stream, event_type, content_type] = texts(&fields[..layout.content_type_end as usize], layout)?;
    Ok(EventView {
        stream,
        revision: u64_at(payload, 8),
        recorded_at_us: u64_at(payload, 16),
        id: Uuid::from_bytes(payload[24..40].try_into().unwrap()),
        event_type,
        content_type,
        data: &fields[layout.content_type_end as usize..layout.data_end as usize],
        metadata: &fields[layout.data_end as usize..],
        fields,
        layout,
    })
}

/// Splits the stream, type and content type out of `bytes`, checking each
/// is UTF-8.
fn texts(bytes: &[u8], layout: FieldLayout) -> Result<[&str; 3], DecodeError> {
    let bounds = [0, layout.stream_end as usize, layout.type_end as usize, layout.content_type_end as usize];
    let slice = |i: usize| &bytes[bounds[i]..bounds[i + 1]];
    // Names are nearly always ASCII, and checking that once for all three
    // costs a fraction of three UTF-8 validations.
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8, and every byte of it is a boundary.
        return Ok([0, 1, 2].map(|i| unsafe { std::str::from_utf8_unchecked(slice(i)) }));
    }
    let utf8 = |i| std::str::from_utf8(slice(i)).map_err(|_| DecodeError::InvalidUtf8);
    Ok([utf8(0)?, utf8(1)?, utf8(2)?])
}

/// The stream-name hash the index is keyed by. Part of the index format:
/// changing it needs a new index format version. FNV-1a with a final mix.
pub fn stream_hash(stream: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn event_round_trip(stream in "[a-z$-]{1,40}", event_type in "[A-Za-z]{1,20}", revision: u64, at: u64, id: u128,
                            data in proptest::collection::vec(any::<u8>(), 0..200), metadata in proptest::collection::vec(any::<u8>(), 0..50)) {
            let fields = EventFields { stream: &stream, revision, recorded_at_us: at, id: Uuid::from_u128(id), event_type: &event_type,
                content_type: "application/json", data: &data, metadata: &metadata };
            let mut buffer = Vec::new();
            encode_event(&mut buffer, &fields);
            prop_assert_eq!(buffer.len(), encoded_size(&fields));
            let view = decode_event(KIND_EVENT, &buffer).unwrap();
            prop_assert_eq!(view.stream, stream.as_str());
            prop_assert_eq!(view.revision, revision);
            prop_assert_eq!(view.recorded_at_us, at);
            prop_assert_eq!(view.id, Uuid::from_u128(id));
            prop_assert_eq!(view.event_type, event_type.as_str());
            prop_assert_eq!(view.data, &data[..]);
            prop_assert_eq!(view.metadata, &metadata[..]);
        }

        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = decode_event(KIND_EVENT, &bytes);
        }
    }
}
