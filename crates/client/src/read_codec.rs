//! `Streams.Read` replies decoded straight into the store's
//! `RecordedEvent`.
//!
//! The generated `ReadResp` costs a map of three metadata strings, the
//! stream name, the id and the payloads per event, all thrown away once
//! the event is converted; on a 1,000-event read that decoding was most of
//! the client's time. [`ReadCodec`] reads the protobuf fields in place and
//! builds each `RecordedEvent` with one copy. It gives the same events as
//! `ReadResp::decode` followed by [`crate::convert::decode_event`] (a test
//! compares them), and a reply it cannot read becomes
//! [`ReadItem::Invalid`], never a panic.

use bytes::{Buf, BufMut};
use prost::Message;
use steledb::{RecordedEvent, RecordedEventParts};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

use crate::proto::event_store::client::streams::ReadReq;
use crate::proto::read_fields::*;

/// One reply of `Streams.Read`, as much of it as a client acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadItem {
    Event(RecordedEvent),
    Checkpoint {
        commit_position: u64,
    },
    CaughtUp,
    FellBehind,
    StreamNotFound,
    /// The subscription confirmation and the stream positions some servers
    /// send after a read: nothing a client here uses.
    Other,
    /// A reply this client cannot decode: the server sent `message`.
    Invalid {
        message: String,
    },
}

/// Encodes `ReadReq` with prost; decodes replies into [`ReadItem`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadCodec;

impl Codec for ReadCodec {
    type Encode = ReadReq;
    type Decode = ReadItem;
    type Encoder = ReadCodec;
    type Decoder = ReadCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }
    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for ReadCodec {
    type Item = ReadReq;
    type Error = Status;

    fn encode(&mut self, item: ReadReq, buffer: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buffer).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for ReadCodec {
    type Item = ReadItem;
    type Error = Status;

    fn decode(&mut self, buffer: &mut DecodeBuf<'_>) -> Result<Option<ReadItem>, Status> {
        let length = buffer.remaining();
        // tonic hands over one whole message, contiguous unless it is larger
        // than the buffer it was read into.
        if buffer.chunk().len() >= length {
            let item = decode_read_item(&buffer.chunk()[..length]);
            buffer.advance(length);
            return Ok(Some(item));
        }
        let mut whole = Vec::with_capacity(length);
        whole.put(&mut *buffer);
        Ok(Some(decode_read_item(&whole)))
    }
}

/// One protobuf field: its number and its value.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed-width values: no field read here has one.
    Fixed,
}

/// The fields of one message, in order. Returns `Err` on malformed input.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    // Inlined: returned through memory, the result cost more than the parse.
    #[inline(always)]
    fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, &'static str> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| "a field number out of range")?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.skip(8).map(|_| Value::Fixed)?,
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| "a length out of range")?;
                Value::Bytes(self.skip(length)?)
            }
            5 => self.skip(4).map(|_| Value::Fixed)?,
            _ => return Err("a field of an unknown wire type"),
        };
        Ok(Some((number, value)))
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, &'static str> {
        // Keys and most lengths are one byte.
        if let Some((&byte, rest)) = self.rest.split_first() {
            if byte < 0x80 {
                self.rest = rest;
                return Ok(u64::from(byte));
            }
        }
        let mut value = 0u64;
        for (i, &byte) in self.rest.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err("a truncated or overlong varint")
    }

    fn skip(&mut self, length: usize) -> Result<&'a [u8], &'static str> {
        if self.rest.len() < length {
            return Err("a field longer than its message");
        }
        let (taken, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(taken)
    }
}

/// Decodes one `ReadResp`.
pub fn decode_read_item(bytes: &[u8]) -> ReadItem {
    match read_item(bytes) {
        Ok(item) => item,
        Err(what) => ReadItem::Invalid { message: what.to_owned() },
    }
}

fn read_item(bytes: &[u8]) -> Result<ReadItem, &'static str> {
    let mut fields = Fields::new(bytes);
    let mut item = ReadItem::Other;
    // A oneof: the last member present wins, as in prost.
    while let Some((number, value)) = fields.next_field()? {
        item = match (number, value) {
            (READ_RESP_EVENT, Value::Bytes(read_event)) => ReadItem::Event(event_of_read_event(read_event)?),
            (READ_RESP_CHECKPOINT, Value::Bytes(checkpoint)) => {
                ReadItem::Checkpoint { commit_position: checkpoint_position(checkpoint)? }
            }
            (READ_RESP_STREAM_NOT_FOUND, Value::Bytes(_)) => ReadItem::StreamNotFound,
            (READ_RESP_CAUGHT_UP, Value::Bytes(_)) => ReadItem::CaughtUp,
            (READ_RESP_FELL_BEHIND, Value::Bytes(_)) => ReadItem::FellBehind,
            _ => continue,
        };
    }
    Ok(item)
}

fn checkpoint_position(bytes: &[u8]) -> Result<u64, &'static str> {
    let mut fields = Fields::new(bytes);
    let mut position = 0;
    while let Some((number, value)) = fields.next_field()? {
        if let (CHECKPOINT_COMMIT_POSITION, Value::Varint(p)) = (number, value) {
            position = p;
        }
    }
    Ok(position)
}

/// The `event` of a `ReadEvent` (its `link`, when resolved, is not used).
fn event_of_read_event(bytes: &[u8]) -> Result<RecordedEvent, &'static str> {
    let mut fields = Fields::new(bytes);
    let mut event = None;
    while let Some((number, value)) = fields.next_field()? {
        if let (READ_EVENT_EVENT, Value::Bytes(recorded)) = (number, value) {
            event = Some(recorded);
        }
    }
    recorded_event(event.ok_or("an event with no recorded event")?)
}

fn recorded_event(bytes: &[u8]) -> Result<RecordedEvent, &'static str> {
    let mut fields = Fields::new(bytes);
    let (mut id, mut stream, mut revision, mut position) = (None, &[][..], 0, 0);
    let (mut event_type, mut content_type, mut created) = (None, None, None);
    let (mut data, mut metadata) = (&[][..], &[][..]);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (RECORDED_ID, Value::Bytes(uuid)) => id = Some(parse_uuid(uuid)?),
            (RECORDED_STREAM_IDENTIFIER, Value::Bytes(identifier)) => stream = stream_name(identifier)?,
            (RECORDED_STREAM_REVISION, Value::Varint(n)) => revision = n,
            (RECORDED_COMMIT_POSITION, Value::Varint(n)) => position = n,
            (RECORDED_METADATA, Value::Bytes(entry)) => {
                let (key, value) = map_entry(entry)?;
                match key {
                    b"type" => event_type = Some(value),
                    b"content-type" => content_type = Some(value),
                    b"created" => created = Some(value),
                    _ => {}
                }
            }
            (RECORDED_CUSTOM_METADATA, Value::Bytes(bytes)) => metadata = bytes,
            (RECORDED_DATA, Value::Bytes(bytes)) => data = bytes,
            _ => {}
        }
    }
    fn text<'b>(bytes: &'b [u8], what: &'static str) -> Result<&'b str, &'static str> {
        std::str::from_utf8(bytes).map_err(|_| what)
    }
    let id = id.ok_or("an event with no id")?;
    let stream = text(stream, "an event with a stream name that is not UTF-8")?;
    let event_type = text(event_type.ok_or("an event with no 'type'")?, "an event with a 'type' that is not UTF-8")?;
    let content_type = text(content_type.unwrap_or_default(), "an event with a 'content-type' that is not UTF-8")?;
    // `created` is in ticks of 100 ns since the Unix epoch.
    let created = created.ok_or("an event with no 'created' time")?;
    let created_ticks = decimal(created).ok_or("an event with an invalid 'created' time")?;
    Ok(RecordedEvent::new(RecordedEventParts {
        id,
        stream,
        revision,
        position,
        event_type,
        content_type,
        data,
        metadata,
        recorded_at_us: created_ticks / 10,
    }))
}

/// An unsigned decimal number, as `str::parse::<u64>` reads it but without
/// a `+` sign: straight from the bytes, with no UTF-8 check first.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        let digit = digit.checked_sub(b'0').filter(|d| *d <= 9)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn parse_uuid(bytes: &[u8]) -> Result<uuid::Uuid, &'static str> {
    let mut fields = Fields::new(bytes);
    let mut id = Err("an event with no id");
    while let Some((number, value)) = fields.next_field()? {
        id = match (number, value) {
            (UUID_STRING, Value::Bytes(text)) => {
                uuid::Uuid::try_parse_ascii(text).map_err(|_| "an event with an invalid id")
            }
            (UUID_STRUCTURED, Value::Bytes(structured)) => {
                let (mut high, mut low) = (0, 0);
                let mut halves = Fields::new(structured);
                while let Some((number, value)) = halves.next_field()? {
                    match (number, value) {
                        (STRUCTURED_MOST_SIGNIFICANT, Value::Varint(n)) => high = n,
                        (STRUCTURED_LEAST_SIGNIFICANT, Value::Varint(n)) => low = n,
                        _ => {}
                    }
                }
                Ok(uuid::Uuid::from_u64_pair(high, low))
            }
            _ => continue,
        };
    }
    id
}

fn stream_name(bytes: &[u8]) -> Result<&[u8], &'static str> {
    let mut fields = Fields::new(bytes);
    let mut name = &[][..];
    while let Some((number, value)) = fields.next_field()? {
        if let (STREAM_IDENTIFIER_NAME, Value::Bytes(bytes)) = (number, value) {
            name = bytes;
        }
    }
    Ok(name)
}

fn map_entry(bytes: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let mut fields = Fields::new(bytes);
    let (mut key, mut value) = (&[][..], &[][..]);
    while let Some((number, field)) = fields.next_field()? {
        match (number, field) {
            (MAP_KEY, Value::Bytes(bytes)) => key = bytes,
            (MAP_VALUE, Value::Bytes(bytes)) => value = bytes,
            _ => {}
        }
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::convert::decode_event;
    use crate::proto::event_store::client::streams::{read_resp, ReadResp};
    use crate::proto::event_store::client::{uuid as wire_uuid, StreamIdentifier, Uuid as WireUuid};

    fn recorded(id: wire_uuid::Value, metadata: &[(&str, &str)], data: &[u8]) -> read_resp::read_event::RecordedEvent {
        read_resp::read_event::RecordedEvent {
            id: Some(WireUuid { value: Some(id) }),
            stream_identifier: Some(StreamIdentifier { stream_name: "order-ü-1".as_bytes().to_vec() }),
            stream_revision: 41,
            prepare_position: 9_000,
            commit_position: 9_000,
            metadata: metadata.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<HashMap<_, _>>(),
            custom_metadata: br#"{"m":1}"#.to_vec().into(),
            data: data.to_vec().into(),
        }
    }

    fn event_reply(recorded: read_resp::read_event::RecordedEvent) -> ReadResp {
        ReadResp {
            content: Some(read_resp::Content::Event(read_resp::ReadEvent {
                event: Some(recorded),
                link: None,
                position: Some(read_resp::read_event::Position::CommitPosition(9_000)),
            })),
        }
    }

    fn both_ways(reply: ReadResp) -> (ReadItem, Option<Result<RecordedEvent, crate::ClientError>>) {
        let lean = decode_read_item(&reply.encode_to_vec());
        let generated = match reply.content {
            Some(read_resp::Content::Event(event)) => Some(decode_event(event)),
            _ => None,
        };
        (lean, generated)
    }

    #[test]
    fn events_decode_as_the_generated_message_and_convert_do() {
        let system = [("type", "OrderPlaced"), ("content-type", "application/json"), ("created", "17640000001234567")];
        let structured = wire_uuid::Value::Structured(wire_uuid::Structured {
            most_significant_bits: -0x0123_4567_89ab_cdef,
            least_significant_bits: 0x7654_3210_fedc_ba98,
        });
        let string = wire_uuid::Value::String("0d5f8a44-3b7e-4c59-9a0e-51b2c7d9e6f1".to_owned());
        let extra = [("type", "A"), ("created", "10"), ("x-other", "ignored")];
        for (id, metadata, data) in [
            (structured, &system[..], &b"{\"total\":42}"[..]),
            (string.clone(), &system[..], &[0u8; 700][..]),
            (string, &extra[..], &b""[..]),
        ] {
            let (lean, generated) = both_ways(event_reply(recorded(id, metadata, data)));
            let expected = generated.expect("an event").expect("the generated path decodes it");
            assert_eq!(lean, ReadItem::Event(expected));
        }
    }

    #[test]
    fn what_the_generated_path_refuses_is_invalid_here_too() {
        let string = || wire_uuid::Value::String("0d5f8a44-3b7e-4c59-9a0e-51b2c7d9e6f1".to_owned());
        for metadata in [&[("content-type", "x"), ("created", "1")][..], &[("type", "A"), ("created", "soon")][..]] {
            let (lean, generated) = both_ways(event_reply(recorded(string(), metadata, b"{}")));
            assert!(generated.expect("an event").is_err());
            assert!(matches!(lean, ReadItem::Invalid { .. }), "{lean:?}");
        }
        let bad_id = wire_uuid::Value::String("not-a-uuid".to_owned());
        let (lean, _) = both_ways(event_reply(recorded(bad_id, &[("type", "A"), ("created", "1")], b"")));
        assert_eq!(lean, ReadItem::Invalid { message: "an event with an invalid id".to_owned() });
    }

    #[test]
    fn decimal_reads_what_parse_reads() {
        for text in ["0", "7", "17640000001234567", "18446744073709551615", "0001"] {
            assert_eq!(decimal(text.as_bytes()), text.parse::<u64>().ok(), "{text}");
        }
        for text in ["", "18446744073709551616", "-1", "+1", "1 ", "12a", "١"] {
            assert_eq!(decimal(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn notices_decode() {
        let checkpoint = ReadResp {
            content: Some(read_resp::Content::Checkpoint(read_resp::Checkpoint {
                commit_position: 77,
                prepare_position: 77,
                timestamp: None,
            })),
        };
        assert_eq!(both_ways(checkpoint).0, ReadItem::Checkpoint { commit_position: 77 });
        let caught_up = ReadResp { content: Some(read_resp::Content::CaughtUp(Default::default())) };
        assert_eq!(both_ways(caught_up).0, ReadItem::CaughtUp);
        let behind = ReadResp { content: Some(read_resp::Content::FellBehind(Default::default())) };
        assert_eq!(both_ways(behind).0, ReadItem::FellBehind);
        let missing = ReadResp {
            content: Some(read_resp::Content::StreamNotFound(read_resp::StreamNotFound { stream_identifier: None })),
        };
        assert_eq!(both_ways(missing).0, ReadItem::StreamNotFound);
        let confirmation = ReadResp {
            content: Some(read_resp::Content::Confirmation(read_resp::SubscriptionConfirmation {
                subscription_id: "s".to_owned(),
            })),
        };
        assert_eq!(both_ways(confirmation).0, ReadItem::Other);
        assert_eq!(decode_read_item(&ReadResp { content: None }.encode_to_vec()), ReadItem::Other);
    }

    #[test]
    fn truncated_and_garbage_bytes_are_invalid_not_a_panic() {
        let system = [("type", "OrderPlaced"), ("created", "1")];
        let id = wire_uuid::Value::String("0d5f8a44-3b7e-4c59-9a0e-51b2c7d9e6f1".to_owned());
        let whole = event_reply(recorded(id, &system, &[7u8; 64])).encode_to_vec();
        for cut in 1..whole.len() {
            let item = decode_read_item(&whole[..cut]);
            assert!(matches!(item, ReadItem::Invalid { .. } | ReadItem::Other), "cut at {cut}: {item:?}");
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2_000 {
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode_read_item(&bytes);
        }
    }
}
