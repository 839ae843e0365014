//! Replies of `Streams.Read`, encoded straight from the engine's events.
//!
//! Reads and subscriptions send one `ReadResp` per event. Building the
//! generated message for each would cost about ten allocations (a map of
//! three system-metadata strings, the stream name, the id) that are thrown
//! away as soon as it is encoded. [`ReadReply::Event`] keeps the
//! `RecordedEvent` instead and [`ReadCodec`] writes its protobuf bytes
//! directly; forward stream reads go further and encode each reply on the
//! blocking thread straight from the store's read buffer
//! ([`EncodedReplies`]), with no owned copy of the event at all. Every
//! other reply is the generated message. The bytes are the ones prost
//! would write for the same message (a test compares them).

use bytes::{BufMut, Bytes};
use prost::encoding::{encoded_len_varint, key_len, WireType};
use prost::Message;
use steledb::{RecordedEvent, RecordedEventParts};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use super::convert::{created_ticks, recorded_event};
use crate::proto::event_store::client::streams::{ReadReq, ReadResp};
use crate::proto::read_fields::*;

/// One reply of `Streams.Read`.
#[derive(Debug)]
pub enum ReadReply {
    /// Boxed: rare (confirmations, checkpoints), and 4x the size of an event.
    Message(Box<ReadResp>),
    Event {
        event: RecordedEvent,
        uuid_as_string: bool,
    },
    /// A whole `ReadResp` already encoded (see [`EncodedReplies`]).
    Encoded(Bytes),
}

impl ReadReply {
    /// The generated message, for paths that need one.
    pub fn into_message(self) -> ReadResp {
        match self {
            Self::Message(message) => *message,
            Self::Event { event, uuid_as_string } => ReadResp {
                content: Some(crate::proto::event_store::client::streams::read_resp::Content::Event(recorded_event(
                    event,
                    uuid_as_string,
                ))),
            },
            Self::Encoded(bytes) => ReadResp::decode(bytes).expect("replies are encoded here, as ReadResp"),
        }
    }
}

/// Event replies encoded back to back into one buffer where the events are
/// read, then handed out as one [`ReadReply::Encoded`] slice each: one
/// allocation per page of events instead of an owned event per event plus
/// its encoding on the async thread.
#[derive(Debug, Default)]
pub struct EncodedReplies {
    bytes: Vec<u8>,
    /// Where each reply ends in `bytes`.
    ends: Vec<usize>,
}

impl EncodedReplies {
    pub fn with_capacity(events: usize) -> Self {
        Self { bytes: Vec::with_capacity(events * 320), ends: Vec::with_capacity(events) }
    }

    pub fn push(&mut self, event: &RecordedEventParts<'_>, uuid_as_string: bool) {
        encode_event_reply(event, uuid_as_string, &mut self.bytes);
        self.ends.push(self.bytes.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn into_replies(self) -> impl Iterator<Item = ReadReply> {
        let bytes = Bytes::from(self.bytes);
        let starts = std::iter::once(0).chain(self.ends.clone());
        starts.zip(self.ends).map(move |(start, end)| ReadReply::Encoded(bytes.slice(start..end)))
    }
}

/// Decodes `ReadReq` as prost does and encodes [`ReadReply`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadCodec;

impl Codec for ReadCodec {
    type Encode = ReadReply;
    type Decode = ReadReq;
    type Encoder = ReadEncoder;
    type Decoder = ReadCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ReadEncoder::default()
    }
    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

/// How many encoded replies are gathered before they go to the connection.
/// Small enough that the client decodes one chunk while the next is
/// encoded (on two cores, 32 KiB gave a lower read latency than 256 KiB
/// once the client decoded in place), large enough to keep `writev`s few.
const READ_REPLY_YIELD_BYTES: usize = 32 * 1024;
/// A reply scratch buffer grown past this by a large event is given back.
const SCRATCH_BYTES_KEPT_MAX: usize = 256 * 1024;
const READ_REPLY_BUFFER_BYTES: usize = 64 * 1024;

/// Encodes [`ReadReply`]s of one call.
#[derive(Debug, Default)]
pub struct ReadEncoder {
    /// An event's reply is written here first, then copied to the call's
    /// buffer in one piece: `EncodeBuf` has no fast path for small writes,
    /// and a reply is a few dozen of them (keys, varints, lengths).
    scratch: Vec<u8>,
}

impl Encoder for ReadEncoder {
    type Item = ReadReply;
    type Error = Status;

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(READ_REPLY_BUFFER_BYTES, READ_REPLY_YIELD_BYTES)
    }

    fn encode(&mut self, item: ReadReply, buffer: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            ReadReply::Message(message) => message.encode(buffer).map_err(|e| Status::internal(e.to_string())),
            ReadReply::Encoded(bytes) => {
                buffer.put_slice(&bytes);
                Ok(())
            }
            ReadReply::Event { event, uuid_as_string } => {
                self.scratch.clear();
                encode_event_reply(&parts_of(&event), uuid_as_string, &mut self.scratch);
                buffer.put_slice(&self.scratch);
                if self.scratch.capacity() > SCRATCH_BYTES_KEPT_MAX {
                    // A subscription lives long; one 16 MiB event must not
                    // pin 16 MiB for the rest of it.
                    self.scratch = Vec::new();
                }
                Ok(())
            }
        }
    }
}

impl Decoder for ReadCodec {
    type Item = ReadReq;
    type Error = Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<ReadReq>, Status> {
        ReadReq::decode(buffer).map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

fn parts_of(event: &RecordedEvent) -> RecordedEventParts<'_> {
    RecordedEventParts {
        id: event.id,
        stream: event.stream(),
        revision: event.revision,
        position: event.position,
        event_type: event.event_type(),
        content_type: event.content_type(),
        data: event.data(),
        metadata: event.metadata(),
        recorded_at_us: event.recorded_at_us,
    }
}

/// `ReadResp { event: ReadEvent { event: RecordedEvent, commit_position } }`.
fn encode_event_reply(event: &RecordedEventParts<'_>, uuid_as_string: bool, out: &mut Vec<u8>) {
    let mut id_text = uuid::Uuid::encode_buffer();
    let id_text: &str = if uuid_as_string { event.id.hyphenated().encode_lower(&mut id_text) } else { "" };
    let (high, low) = event.id.as_u64_pair();
    let mut created = itoa::Buffer::new();
    let created = created.format(created_ticks(event.recorded_at_us));

    let structured_len =
        varint_field_len(STRUCTURED_MOST_SIGNIFICANT, high) + varint_field_len(STRUCTURED_LEAST_SIGNIFICANT, low);
    let id_len = if uuid_as_string {
        bytes_field_len(UUID_STRING, id_text.len())
    } else {
        bytes_field_len(UUID_STRUCTURED, structured_len)
    };
    let stream_identifier_len = bytes_field_len(STREAM_IDENTIFIER_NAME, event.stream.len());
    let metadata_entries = [("type", event.event_type), ("content-type", event.content_type), ("created", created)];
    let entry_len =
        |(key, value): (&str, &str)| bytes_field_len(MAP_KEY, key.len()) + bytes_field_len(MAP_VALUE, value.len());
    let recorded_len = bytes_field_len(RECORDED_ID, id_len)
        + bytes_field_len(RECORDED_STREAM_IDENTIFIER, stream_identifier_len)
        + varint_field_len(RECORDED_STREAM_REVISION, event.revision)
        + varint_field_len(RECORDED_PREPARE_POSITION, event.position)
        + varint_field_len(RECORDED_COMMIT_POSITION, event.position)
        + metadata_entries.iter().map(|&entry| bytes_field_len(RECORDED_METADATA, entry_len(entry))).sum::<usize>()
        + nonempty_bytes_field_len(RECORDED_CUSTOM_METADATA, event.metadata.len())
        + nonempty_bytes_field_len(RECORDED_DATA, event.data.len());
    // A oneof member is written even when zero.
    let read_event_len = bytes_field_len(READ_EVENT_EVENT, recorded_len)
        + key_len(READ_EVENT_COMMIT_POSITION)
        + encoded_len_varint(event.position);

    put_len_key(READ_RESP_EVENT, read_event_len, out);
    put_len_key(READ_EVENT_EVENT, recorded_len, out);
    put_len_key(RECORDED_ID, id_len, out);
    if uuid_as_string {
        put_bytes(UUID_STRING, id_text.as_bytes(), out);
    } else {
        put_len_key(UUID_STRUCTURED, structured_len, out);
        put_varint(STRUCTURED_MOST_SIGNIFICANT, high, out);
        put_varint(STRUCTURED_LEAST_SIGNIFICANT, low, out);
    }
    put_len_key(RECORDED_STREAM_IDENTIFIER, stream_identifier_len, out);
    put_bytes(STREAM_IDENTIFIER_NAME, event.stream.as_bytes(), out);
    put_varint(RECORDED_STREAM_REVISION, event.revision, out);
    put_varint(RECORDED_PREPARE_POSITION, event.position, out);
    put_varint(RECORDED_COMMIT_POSITION, event.position, out);
    for (key, value) in metadata_entries {
        put_len_key(RECORDED_METADATA, entry_len((key, value)), out);
        put_bytes(MAP_KEY, key.as_bytes(), out);
        put_bytes(MAP_VALUE, value.as_bytes(), out);
    }
    if !event.metadata.is_empty() {
        put_bytes(RECORDED_CUSTOM_METADATA, event.metadata, out);
    }
    if !event.data.is_empty() {
        put_bytes(RECORDED_DATA, event.data, out);
    }
    put_key(READ_EVENT_COMMIT_POSITION, WireType::Varint, out);
    put_raw_varint(event.position, out);
}

/// A proto3 scalar is left out when it is zero, as prost does.
fn varint_field_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(value)
    }
}

fn bytes_field_len(tag: u32, length: usize) -> usize {
    key_len(tag) + encoded_len_varint(length as u64) + length
}

fn nonempty_bytes_field_len(tag: u32, length: usize) -> usize {
    if length == 0 {
        0
    } else {
        bytes_field_len(tag, length)
    }
}

// Writers into a `Vec`: prost's are generic over `BufMut` and write a
// varint byte by byte through it, which showed in profiles of reads.

fn put_raw_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(tag: u32, wire_type: WireType, out: &mut Vec<u8>) {
    put_raw_varint((u64::from(tag) << 3) | wire_type as u64, out);
}

fn put_varint(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        put_key(tag, WireType::Varint, out);
        put_raw_varint(value, out);
    }
}

fn put_len_key(tag: u32, length: usize, out: &mut Vec<u8>) {
    put_key(tag, WireType::LengthDelimited, out);
    put_raw_varint(length as u64, out);
}

fn put_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_len_key(tag, bytes.len(), out);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use steledb::{RecordedEventParts, Uuid};

    fn event(data: &[u8], metadata: &[u8], revision: u64, position: u64) -> RecordedEvent {
        RecordedEvent::new(RecordedEventParts {
            id: Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            stream: "order-ü-1",
            revision,
            position,
            event_type: "OrderPlaced",
            content_type: "application/json",
            data,
            metadata,
            recorded_at_us: 1_764_000_000_123_456,
        })
    }

    #[test]
    fn direct_encoding_decodes_as_the_generated_message() {
        let cases = [
            event(br#"{"total":42}"#, b"", 7, 12_345),
            event(b"", br#"{"m":1}"#, 0, 0),
            event(&[0u8; 300], &[1u8; 200], u64::MAX - 1, u64::MAX >> 1),
        ];
        for event in cases {
            for uuid_as_string in [true, false] {
                let mut direct = Vec::new();
                encode_event_reply(&parts_of(&event), uuid_as_string, &mut direct);
                let expected = ReadReply::Event { event: event.clone(), uuid_as_string }.into_message();
                // Map entries may come in any order, so compare decoded messages,
                // and the length prost computes for the same message.
                let decoded = ReadResp::decode(&direct[..]).expect("direct bytes decode");
                assert_eq!(decoded, expected, "uuid_as_string {uuid_as_string}");
                assert_eq!(direct.len(), expected.encoded_len());
            }
        }
    }
}
