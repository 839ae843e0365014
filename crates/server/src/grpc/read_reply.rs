//! Replies of `Streams.Read`, encoded straight from the engine's events,
//! with their gRPC message framing (see [`super::read_body`]).
//!
//! Reads and subscriptions send one `ReadResp` per event. Building the
//! generated message for each would cost about ten allocations (a map of
//! three system-metadata strings, the stream name, the id) that are thrown
//! away as soon as it is encoded. [`ReadReply::Event`] keeps the
//! `RecordedEvent` instead and its protobuf bytes are written directly;
//! forward stream reads go further and encode whole pages of replies on the
//! blocking thread straight from the store's read buffer
//! ([`FramedReplies`]), with no owned copy of the event at all. Every other
//! reply is the generated message. The bytes are the ones prost would write
//! for the same message (a test compares them).

use bytes::Bytes;
use prost::encoding::{encoded_len_varint, key_len, WireType};
use prost::Message;
use steledb::{RecordedEvent, RecordedEventParts};

use super::convert::{created_ticks, recorded_event};
use crate::proto::event_store::client::streams::ReadResp;
use crate::proto::read_fields::*;

/// One reply of `Streams.Read`, or several already framed.
#[derive(Debug)]
pub enum ReadReply {
    /// Boxed: rare (confirmations, checkpoints), and 4x the size of an event.
    Message(Box<ReadResp>),
    Event {
        event: RecordedEvent,
        uuid_as_string: bool,
    },
    /// Whole gRPC messages, each with its 5-byte prefix (see
    /// [`FramedReplies`]).
    Framed(Bytes),
}

impl ReadReply {
    /// The generated messages, for paths that need them.
    pub fn into_messages(self) -> Vec<ReadResp> {
        match self {
            Self::Message(message) => vec![*message],
            Self::Event { event, uuid_as_string } => vec![ReadResp {
                content: Some(crate::proto::event_store::client::streams::read_resp::Content::Event(recorded_event(
                    event,
                    uuid_as_string,
                ))),
            }],
            Self::Framed(mut bytes) => {
                let mut messages = Vec::new();
                while !bytes.is_empty() {
                    let length = u32::from_be_bytes(bytes[1..GRPC_PREFIX_BYTES].try_into().expect("4 bytes"));
                    let message = bytes.split_to(GRPC_PREFIX_BYTES + length as usize).split_off(GRPC_PREFIX_BYTES);
                    messages.push(ReadResp::decode(message).expect("framed here from ReadResp encodings"));
                }
                messages
            }
        }
    }

    /// Appends this reply to `out` as gRPC messages.
    pub fn frame_into(self, out: &mut Vec<u8>) {
        match self {
            Self::Message(message) => frame(out, |out| message.encode(out).expect("a Vec grows as needed")),
            Self::Event { event, uuid_as_string } => {
                frame(out, |out| encode_event_reply(&parts_of(&event), uuid_as_string, out))
            }
            Self::Framed(bytes) => out.extend_from_slice(&bytes),
        }
    }
}

/// A gRPC message's prefix: a compression flag and a big-endian length.
pub const GRPC_PREFIX_BYTES: usize = 5;

/// Writes one gRPC message (uncompressed) to `out`, its body by `encode`.
fn frame(out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; GRPC_PREFIX_BYTES]);
    encode(out);
    let length = u32::try_from(out.len() - start - GRPC_PREFIX_BYTES).expect("replies are far below 4 GiB");
    out[start + 1..start + GRPC_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
}

/// Event replies framed back to back into one buffer where the events are
/// read, sent as one [`ReadReply::Framed`]: one allocation per page of
/// events instead of an owned copy per event and its encoding on the async
/// thread.
#[derive(Debug, Default)]
pub struct FramedReplies {
    bytes: Vec<u8>,
    count: usize,
}

impl FramedReplies {
    pub fn with_capacity(events: usize) -> Self {
        Self { bytes: Vec::with_capacity(events * 336), count: 0 }
    }

    pub fn push(&mut self, event: &RecordedEventParts<'_>, uuid_as_string: bool) {
        frame(&mut self.bytes, |out| encode_event_reply(event, uuid_as_string, out));
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// The replies, or none when the page was empty.
    pub fn into_reply(self) -> Option<ReadReply> {
        (self.count > 0).then(|| ReadReply::Framed(Bytes::from(self.bytes)))
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

    /// Framed pages and single replies carry the same messages, each with
    /// a prefix giving its exact length.
    #[test]
    fn framing_round_trips() {
        let events = [event(b"{}", b"", 1, 100), event(&[7u8; 300], b"m", 2, 200), event(b"", b"", 3, 300)];
        let mut page = FramedReplies::with_capacity(3);
        let mut one_by_one = Vec::new();
        let mut expected = Vec::new();
        for event in &events {
            page.push(&parts_of(event), false);
            ReadReply::Event { event: event.clone(), uuid_as_string: false }.frame_into(&mut one_by_one);
            expected.extend(ReadReply::Event { event: event.clone(), uuid_as_string: false }.into_messages());
        }
        assert_eq!(page.len(), 3);
        let ReadReply::Framed(framed) = page.into_reply().expect("three replies") else { panic!("a framed page") };
        assert_eq!(&framed[..], &one_by_one[..]);
        assert_eq!(ReadReply::Framed(framed).into_messages(), expected);
        assert!(FramedReplies::with_capacity(1).into_reply().is_none());

        let notice = ReadResp { content: None };
        let mut framed = Vec::new();
        ReadReply::Message(Box::new(notice.clone())).frame_into(&mut framed);
        assert_eq!(framed[..GRPC_PREFIX_BYTES], [0, 0, 0, 0, 0]);
        ReadReply::Message(Box::new(ReadResp { content: expected[0].content.clone() })).frame_into(&mut framed);
        let length = u32::from_be_bytes(framed[GRPC_PREFIX_BYTES + 1..2 * GRPC_PREFIX_BYTES].try_into().unwrap());
        assert_eq!(framed.len(), 2 * GRPC_PREFIX_BYTES + length as usize);
        assert_eq!(ReadReply::Framed(framed.into()).into_messages(), vec![notice, expected[0].clone()]);
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
                let expected = ReadReply::Event { event: event.clone(), uuid_as_string }.into_messages().remove(0);
                // Map entries may come in any order, so compare decoded messages,
                // and the length prost computes for the same message.
                let decoded = ReadResp::decode(&direct[..]).expect("direct bytes decode");
                assert_eq!(decoded, expected, "uuid_as_string {uuid_as_string}");
                assert_eq!(direct.len(), expected.encoded_len());
            }
        }
    }
}
