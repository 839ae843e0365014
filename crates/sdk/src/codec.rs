//! Domain events <-> stored events, with schema versions and upcasters.
//!
//! An event is stored as JSON: its type is the name of its enum variant
//! (serde's default, externally tagged representation, so
//! `#[serde(rename = "...")]` chooses the stored name), its data the
//! variant's content, and its metadata a JSON object carrying the schema
//! version of that event type:
//!
//! ```text
//! type      "Deposited"
//! data      {"amount_cents":500,"currency":"EUR"}
//! metadata  {"schema":3,"command_id":"6f1c..."}
//! ```
//!
//! Each event type's version starts at 1 and goes up by one per upcaster
//! registered for it. Reading an old event runs its upcasters in order
//! (v1 -> v2 -> v3) on the JSON before deserializing, so stored events are
//! never rewritten. An event newer than the code knows is refused
//! ([`CodecError::FutureSchema`]) rather than guessed at.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steledb::{NewEvent, RecordedEvent, CONTENT_TYPE_JSON};
use uuid::Uuid;

/// Turns the JSON data of one schema version into the next version's.
/// The error is a reason for humans; it becomes [`CodecError::Upcast`].
/// Shared (`Arc`) so a codec clones cheaply into each repository.
pub type Upcaster = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// Encoding or decoding an event failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("an event must serialize as an enum variant (a string or a one-key object), not {found}")]
    NotAnEnum { found: String },
    #[error("serializing a '{event_type}' event failed: {source}")]
    Serialize { event_type: String, source: serde_json::Error },
    #[error("event '{event_type}' is not JSON (content type '{content_type}')")]
    NotJson { event_type: String, content_type: String },
    #[error("event '{event_type}' has unreadable metadata: {reason}")]
    BadMetadata { event_type: String, reason: String },
    #[error("event '{event_type}' has schema version {version}, newer than the {current} this code knows")]
    FutureSchema { event_type: String, version: u32, current: u32 },
    #[error("upcasting '{event_type}' from version {from_version} failed: {reason}")]
    Upcast { event_type: String, from_version: u32, reason: String },
    #[error("decoding a '{event_type}' event (schema {version}) failed: {source}")]
    Deserialize { event_type: String, version: u32, source: serde_json::Error },
}

/// What the toolkit keeps in an event's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMetadata {
    /// Schema version of the event's data, 1 when absent.
    pub schema: u32,
    /// The command that produced the event, when a repository wrote it.
    pub command_id: Option<Uuid>,
}

#[derive(Serialize, Deserialize)]
struct MetadataJson {
    #[serde(default = "schema_first")]
    schema: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command_id: Option<String>,
}

fn schema_first() -> u32 {
    1
}

impl EventMetadata {
    pub fn to_json(&self) -> Vec<u8> {
        let json = MetadataJson { schema: self.schema, command_id: self.command_id.map(|id| id.to_string()) };
        serde_json::to_vec(&json).expect("a struct of a number and a string serializes")
    }

    /// Parses stored metadata. Empty metadata (an event written by another
    /// tool) is schema 1; other keys are ignored.
    pub fn parse(event_type: &str, bytes: &[u8]) -> Result<Self, CodecError> {
        let bad = |reason: String| CodecError::BadMetadata { event_type: event_type.to_owned(), reason };
        if bytes.is_empty() {
            return Ok(Self { schema: 1, command_id: None });
        }
        let json: MetadataJson = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if json.schema == 0 {
            return Err(bad("schema version 0 (versions start at 1)".to_owned()));
        }
        let command_id = match json.command_id {
            Some(text) => Some(Uuid::parse_str(&text).map_err(|e| bad(format!("command_id: {e}")))?),
            None => None,
        };
        Ok(Self { schema: json.schema, command_id })
    }
}

/// Maps the events of one enum `E` to stored events and back, upcasting
/// old versions on the way in.
///
/// ```
/// # use steledb_sdk::EventCodec;
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// enum Event { Deposited { amount_cents: u64, currency: String } }
///
/// // v1 had no currency; v2 added it.
/// let codec = EventCodec::<Event>::new().upcaster("Deposited", 1, |mut data| {
///     data["currency"] = "EUR".into();
///     Ok(data)
/// });
/// assert_eq!(codec.current_version("Deposited"), 2);
/// let event = codec.decode("Deposited", br#"{"amount_cents":5}"#, br#"{"schema":1}"#).unwrap();
/// assert_eq!(event, Event::Deposited { amount_cents: 5, currency: "EUR".into() });
/// ```
pub struct EventCodec<E> {
    /// Per event type, `upcasters[i]` turns version `i + 1` into `i + 2`.
    upcasters: HashMap<String, Vec<Upcaster>>,
    _event: PhantomData<fn() -> E>,
}

impl<E> Default for EventCodec<E> {
    fn default() -> Self {
        Self { upcasters: HashMap::new(), _event: PhantomData }
    }
}

impl<E> Clone for EventCodec<E> {
    fn clone(&self) -> Self {
        Self { upcasters: self.upcasters.clone(), _event: PhantomData }
    }
}

impl<E> std::fmt::Debug for EventCodec<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let versions: HashMap<&str, u32> =
            self.upcasters.keys().map(|t| (t.as_str(), self.current_version(t))).collect();
        f.debug_struct("EventCodec").field("versions", &versions).finish()
    }
}

impl<E> EventCodec<E> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the upcaster from `from_version` of `event_type` to the
    /// next version, which becomes the current one. Upcasters of a type are
    /// registered in order from version 1.
    ///
    /// # Panics
    /// If `from_version` is not the type's current version: a gap or a
    /// repeat in the chain is a programming error, caught at start-up.
    pub fn upcaster(
        mut self,
        event_type: &str,
        from_version: u32,
        upcast: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        let current = self.current_version(event_type);
        assert_eq!(
            from_version, current,
            "upcasters of '{event_type}' must be registered in order: the next one starts at version {current}"
        );
        self.upcasters.entry(event_type.to_owned()).or_default().push(Arc::new(upcast));
        self
    }

    /// The version events of `event_type` are written with.
    pub fn current_version(&self, event_type: &str) -> u32 {
        self.upcasters.get(event_type).map_or(1, |chain| chain.len() as u32 + 1)
    }

    /// Runs the upcasters from `version` to the current version.
    pub fn upcast(&self, event_type: &str, version: u32, mut data: Value) -> Result<Value, CodecError> {
        let current = self.current_version(event_type);
        if version > current {
            return Err(CodecError::FutureSchema { event_type: event_type.to_owned(), version, current });
        }
        let chain = self.upcasters.get(event_type).map_or(&[][..], |chain| &chain[..]);
        for (from_version, upcast) in (version..current).zip(&chain[version as usize - 1..]) {
            data = upcast(data).map_err(|reason| CodecError::Upcast {
                event_type: event_type.to_owned(),
                from_version,
                reason,
            })?;
        }
        Ok(data)
    }
}

impl<E: Serialize + DeserializeOwned> EventCodec<E> {
    /// The stored form of `event`, with id `id` and the current schema
    /// version (and `command_id`, when given) in its metadata.
    pub fn encode(&self, event: &E, id: Uuid, command_id: Option<Uuid>) -> Result<NewEvent, CodecError> {
        let (event_type, data) = split_variant(event)?;
        let serialize = |source| CodecError::Serialize { event_type: event_type.clone(), source };
        let data = serde_json::to_vec(&data).map_err(serialize)?;
        let metadata = EventMetadata { schema: self.current_version(&event_type), command_id };
        Ok(NewEvent::json(id, event_type, data).with_metadata(metadata.to_json()))
    }

    /// The events one command appends to `stream`, with ids derived from
    /// the command id ([`crate::ids::event_id`]), so a retry of the command
    /// proposes the same ids and the store recognises it.
    pub fn encode_command(&self, events: &[E], stream: &str, command_id: Uuid) -> Result<Vec<NewEvent>, CodecError> {
        let id = |index: usize| crate::ids::event_id(command_id, stream, index as u32);
        events.iter().enumerate().map(|(i, event)| self.encode(event, id(i), Some(command_id))).collect()
    }

    /// Decodes a stored event: parses its metadata, upcasts, deserializes.
    pub fn decode(&self, event_type: &str, data: &[u8], metadata: &[u8]) -> Result<E, CodecError> {
        Ok(self.decode_with_metadata(event_type, data, metadata)?.0)
    }

    /// Decodes an event as read from the store.
    pub fn decode_recorded(&self, event: &RecordedEvent) -> Result<E, CodecError> {
        Ok(self.decode_recorded_with_metadata(event)?.0)
    }

    /// As [`decode_recorded`](Self::decode_recorded), also returning the
    /// parsed metadata (the repository needs the command id).
    pub fn decode_recorded_with_metadata(&self, event: &RecordedEvent) -> Result<(E, EventMetadata), CodecError> {
        let (event_type, content_type) = (event.event_type(), event.content_type());
        if content_type != CONTENT_TYPE_JSON {
            return Err(CodecError::NotJson {
                event_type: event_type.to_owned(),
                content_type: content_type.to_owned(),
            });
        }
        self.decode_with_metadata(event_type, event.data(), event.metadata())
    }

    fn decode_with_metadata(
        &self,
        event_type: &str,
        data: &[u8],
        metadata: &[u8],
    ) -> Result<(E, EventMetadata), CodecError> {
        let metadata = EventMetadata::parse(event_type, metadata)?;
        let schema = metadata.schema;
        let deserialize =
            |source| CodecError::Deserialize { event_type: event_type.to_owned(), version: schema, source };
        // A unit variant is stored with data `null`; accept empty data as that too.
        let data = if data.is_empty() { Value::Null } else { serde_json::from_slice(data).map_err(deserialize)? };
        let data = self.upcast(event_type, schema, data)?;
        let tagged = Value::Object([(event_type.to_owned(), data)].into_iter().collect());
        Ok((serde_json::from_value(tagged).map_err(deserialize)?, metadata))
    }
}

/// `E` as (variant name, variant content) in serde's externally tagged form.
fn split_variant<E: Serialize>(event: &E) -> Result<(String, Value), CodecError> {
    let value = serde_json::to_value(event)
        .map_err(|source| CodecError::Serialize { event_type: std::any::type_name::<E>().to_owned(), source })?;
    match value {
        Value::String(name) => Ok((name, Value::Null)),
        Value::Object(map) if map.len() == 1 => Ok(map.into_iter().next().expect("one entry")),
        other => Err(CodecError::NotAnEnum { found: kind_of(&other).to_owned() }),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object with other than one key",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Event {
        Opened { owner: String },
        Renamed(String),
        Closed,
    }

    #[test]
    fn every_variant_shape_round_trips() {
        let codec = EventCodec::<Event>::new();
        let command_id = Uuid::from_u128(9);
        for event in [Event::Opened { owner: "ann".into() }, Event::Renamed("bob".into()), Event::Closed] {
            let stored = codec.encode(&event, Uuid::from_u128(1), Some(command_id)).unwrap();
            let metadata = EventMetadata::parse(&stored.event_type, &stored.metadata).unwrap();
            assert_eq!(metadata, EventMetadata { schema: 1, command_id: Some(command_id) });
            assert_eq!(codec.decode(&stored.event_type, &stored.data, &stored.metadata).unwrap(), event);
        }
        let closed = codec.encode(&Event::Closed, Uuid::from_u128(1), None).unwrap();
        assert_eq!((&*closed.event_type, &closed.data[..]), ("Closed", &b"null"[..]));
        assert_eq!(&closed.metadata[..], br#"{"schema":1}"#);
    }

    #[test]
    fn a_non_enum_is_refused() {
        let codec = EventCodec::<u32>::new();
        let error = codec.encode(&7, Uuid::nil(), None).unwrap_err();
        assert!(matches!(error, CodecError::NotAnEnum { ref found } if found == "a number"), "{error}");
    }

    #[test]
    fn metadata_without_schema_is_version_1_and_bad_metadata_is_an_error() {
        assert_eq!(EventMetadata::parse("X", b"").unwrap().schema, 1);
        assert_eq!(EventMetadata::parse("X", br#"{"correlation":"z"}"#).unwrap().schema, 1);
        for bad in [&br#"{"schema":0}"#[..], br#"{"schema":"2"}"#, b"not json", br#"{"command_id":"nope"}"#] {
            let error = EventMetadata::parse("X", bad).unwrap_err();
            assert!(matches!(error, CodecError::BadMetadata { .. }), "{error}");
        }
    }

    #[test]
    fn a_future_version_is_a_typed_error() {
        let codec = EventCodec::<Event>::new().upcaster("Renamed", 1, Ok);
        let error = codec.decode("Renamed", br#""x""#, br#"{"schema":3}"#).unwrap_err();
        assert!(
            matches!(error, CodecError::FutureSchema { ref event_type, version: 3, current: 2 } if event_type == "Renamed"),
            "{error}"
        );
    }

    #[test]
    fn a_failing_upcaster_names_its_version() {
        let codec = EventCodec::<Event>::new()
            .upcaster("Opened", 1, Ok)
            .upcaster("Opened", 2, |_| Err("owner missing".to_owned()));
        let error = codec.decode("Opened", b"{}", br#"{"schema":1}"#).unwrap_err();
        assert!(matches!(error, CodecError::Upcast { from_version: 2, ref reason, .. } if reason == "owner missing"));
    }

    #[test]
    #[should_panic(expected = "must be registered in order")]
    fn an_upcaster_chain_with_a_gap_panics() {
        let _ = EventCodec::<Event>::new().upcaster("Opened", 2, Ok);
    }
}
