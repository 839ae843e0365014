//! Conversions between the KurrentDB wire types and the store's types, and
//! the error replies the official clients decode.

use std::collections::HashMap;

use steledb::{AppendError, CurrentRevision, ExpectedRevision, NewEvent, ReadError, RecordedEvent, Uuid};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::proto::event_store::client as shared;
use crate::proto::event_store::client::streams::read_resp;

/// Ticks of 100 ns since the Unix epoch, as the clients expect `created`.
pub fn created_ticks(recorded_at_us: u64) -> u64 {
    recorded_at_us.saturating_mul(10)
}

pub fn stream_name(identifier: Option<&shared::StreamIdentifier>) -> Result<String, Status> {
    let identifier = identifier.ok_or_else(|| Status::invalid_argument("stream_identifier is required"))?;
    steledb::stream_name_from_bytes(&identifier.stream_name)
        .map(str::to_owned)
        .map_err(|reason| bad_request(&format!("invalid stream name: {reason}")))
}

pub fn stream_identifier(stream: &str) -> shared::StreamIdentifier {
    shared::StreamIdentifier { stream_name: stream.as_bytes().to_vec() }
}

pub fn uuid_from_proto(uuid: Option<&shared::Uuid>) -> Result<Uuid, Status> {
    use shared::uuid::Value;
    match uuid.and_then(|u| u.value.as_ref()) {
        Some(Value::Structured(s)) => {
            Ok(Uuid::from_u64_pair(s.most_significant_bits as u64, s.least_significant_bits as u64))
        }
        Some(Value::String(text)) => {
            Uuid::parse_str(text).map_err(|_| bad_request(&format!("invalid event id '{text}': not a UUID")))
        }
        None => Err(bad_request("event id is required")),
    }
}

pub fn uuid_to_proto(uuid: Uuid, as_string: bool) -> shared::Uuid {
    use shared::uuid::{Structured, Value};
    if as_string {
        return shared::Uuid { value: Some(Value::String(uuid.hyphenated().to_string())) };
    }
    let (high, low) = uuid.as_u64_pair();
    shared::Uuid {
        value: Some(Value::Structured(Structured {
            most_significant_bits: high as i64,
            least_significant_bits: low as i64,
        })),
    }
}

/// A proposed event from its wire parts; `type` and `content-type` are
/// required in the metadata map, as KurrentDB requires them.
pub fn new_event(
    id: Option<&shared::Uuid>,
    metadata: &HashMap<String, String>,
    custom_metadata: Vec<u8>,
    data: Vec<u8>,
) -> Result<NewEvent, Status> {
    let id = uuid_from_proto(id)?;
    let required = |key: &str| {
        metadata.get(key).cloned().ok_or_else(|| {
            let mut status = Status::invalid_argument(format!("proposed event {id} has no '{key}' metadata"));
            put(&mut status, "exception", "missing-required-metadata-property");
            put(&mut status, "required-properties", "type,content-type");
            status
        })
    };
    Ok(NewEvent {
        id,
        event_type: required("type")?,
        content_type: required("content-type")?,
        data,
        metadata: custom_metadata,
    })
}

pub fn recorded_event(event: RecordedEvent, uuid_as_string: bool) -> read_resp::ReadEvent {
    let mut metadata = HashMap::with_capacity(3);
    metadata.insert("type".to_owned(), event.event_type().to_owned());
    metadata.insert("content-type".to_owned(), event.content_type().to_owned());
    metadata.insert("created".to_owned(), created_ticks(event.recorded_at_us).to_string());
    read_resp::ReadEvent {
        event: Some(read_resp::read_event::RecordedEvent {
            id: Some(uuid_to_proto(event.id, uuid_as_string)),
            stream_identifier: Some(stream_identifier(event.stream())),
            stream_revision: event.revision,
            prepare_position: event.position,
            commit_position: event.position,
            metadata,
            custom_metadata: event.metadata_bytes(),
            data: event.data_bytes(),
        }),
        link: None,
        position: Some(read_resp::read_event::Position::CommitPosition(event.position)),
    }
}

fn put(status: &mut Status, key: &'static str, value: &str) {
    if let Ok(value) = MetadataValue::try_from(value) {
        status.metadata_mut().insert(key, value);
    }
}

pub fn bad_request(message: &str) -> Status {
    Status::invalid_argument(message.to_owned())
}

/// KurrentDB's legacy signed encoding of an expected revision in metadata.
fn legacy_expected(expected: ExpectedRevision) -> String {
    match expected {
        ExpectedRevision::Any => "-2".to_owned(),
        ExpectedRevision::NoStream => "-1".to_owned(),
        ExpectedRevision::StreamExists => "-4".to_owned(),
        ExpectedRevision::Exact(n) => n.to_string(),
    }
}

pub fn stream_deleted(stream: &str) -> Status {
    let mut status = Status::failed_precondition(format!("stream '{stream}' is deleted"));
    put(&mut status, "exception", "stream-deleted");
    put(&mut status, "stream-name", stream);
    status
}

/// An append failure as a status (Append reports a wrong expected revision
/// in-band instead; Delete and Tombstone use this form for it too).
pub fn append_status(error: &AppendError, append_size_bytes_max: usize) -> Status {
    match error {
        AppendError::WrongExpectedRevision { stream, expected, actual } => {
            let mut status = Status::failed_precondition(error.to_string());
            put(&mut status, "exception", "wrong-expected-version");
            put(&mut status, "stream-name", stream);
            put(&mut status, "expected-version", &legacy_expected(*expected));
            let actual = match actual {
                CurrentRevision::NoStream => "-1".to_owned(),
                CurrentRevision::Current(n) => n.to_string(),
            };
            put(&mut status, "actual-version", &actual);
            status
        }
        AppendError::DuplicateEventIds { stream, .. } => {
            let mut status = Status::failed_precondition(error.to_string());
            put(&mut status, "exception", "wrong-expected-version");
            put(&mut status, "stream-name", stream);
            status
        }
        AppendError::StreamDeleted { stream } => stream_deleted(stream),
        AppendError::EventTooLarge { .. } | AppendError::AppendTooLarge { .. } => {
            let mut status = Status::invalid_argument(error.to_string());
            put(&mut status, "exception", "maximum-append-size-exceeded");
            put(&mut status, "maximum-append-size", &append_size_bytes_max.to_string());
            status
        }
        AppendError::Overloaded { .. }
        | AppendError::NoSpace
        | AppendError::IndexBacklog { .. }
        | AppendError::WriterStopped { .. } => Status::unavailable(error.to_string()),
        AppendError::Read(read) => read_status(read),
        _ => bad_request(&error.to_string()),
    }
}

pub fn read_status(error: &ReadError) -> Status {
    match error {
        ReadError::StreamNotFound { stream } => {
            let mut status = Status::not_found(error.to_string());
            put(&mut status, "exception", "stream-not-found");
            put(&mut status, "stream-name", stream);
            status
        }
        ReadError::StreamDeleted { stream } => stream_deleted(stream),
        ReadError::InvalidStreamName { .. }
        | ReadError::PositionPastEnd { .. }
        | ReadError::NotAnEventPosition { .. } => bad_request(&error.to_string()),
        // Damage is reported, never served.
        ReadError::Log(_) | ReadError::BadEvent { .. } | ReadError::IndexMismatch { .. } | ReadError::Index(_) => {
            Status::new(Code::DataLoss, error.to_string())
        }
    }
}
