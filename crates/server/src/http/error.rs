//! Error replies: `{"error": {"code": "...", "message": "...", ...}}` with a
//! status that says what kind of failure it is. Codes are stable; messages
//! are for people.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use steledb::{AppendError, CurrentRevision, ExpectedRevision, ReadError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Further fields of the error object (stream, expected, limits...).
    pub fields: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), fields: Map::new() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// The whole reply body, `{"error": {"code", "message", ...fields}}`,
    /// with the code and message first for people reading it.
    pub fn body(&self) -> String {
        let string = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned());
        let mut out = format!("{{\"error\":{{\"code\":{},\"message\":{}", string(self.code), string(&self.message));
        for (key, value) in &self.fields {
            out.push(',');
            out.push_str(&string(key));
            out.push(':');
            out.push_str(&value.to_string());
        }
        out.push_str("}}");
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, status = %self.status, "{}", self.message);
        }
        let retry = self.status == StatusCode::SERVICE_UNAVAILABLE && self.code == "overloaded";
        let mut response = super::json_bytes(self.status, self.body().into_bytes());
        if retry {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// An expected revision as the API spells it.
pub fn expected_value(expected: ExpectedRevision) -> Value {
    match expected {
        ExpectedRevision::Any => Value::from("any"),
        ExpectedRevision::NoStream => Value::from("no_stream"),
        ExpectedRevision::StreamExists => Value::from("stream_exists"),
        ExpectedRevision::Exact(n) => Value::from(n),
    }
}

fn current_value(actual: CurrentRevision) -> Value {
    match actual {
        CurrentRevision::NoStream => Value::from("no_stream"),
        CurrentRevision::Current(n) => Value::from(n),
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        let message = error.to_string();
        match error {
            ReadError::StreamNotFound { stream } => {
                Self::new(StatusCode::NOT_FOUND, "stream_not_found", message).with("stream", stream)
            }
            ReadError::StreamDeleted { stream } => {
                Self::new(StatusCode::GONE, "stream_deleted", message).with("stream", stream)
            }
            ReadError::InvalidStreamName { .. } => Self::bad_request("invalid_stream_name", message),
            ReadError::PositionPastEnd { position, .. } | ReadError::NotAnEventPosition { position, .. } => {
                Self::bad_request("invalid_position", message).with("position", position)
            }
            ReadError::Log(ref log) if is_io(log) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "io_error", message),
            ReadError::Index(steledb::IndexError::Io { .. }) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "io_error", message)
            }
            // Damage is reported, never served.
            ReadError::Log(_)
            | ReadError::Index(steledb::IndexError::Corrupt { .. })
            | ReadError::BadEvent { .. }
            | ReadError::IndexMismatch { .. } => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "data_damaged", message),
        }
    }
}

/// A log read that failed on I/O rather than on what it read.
fn is_io(error: &(dyn std::error::Error + 'static)) -> bool {
    error.source().is_some_and(|source| source.is::<std::io::Error>())
}

impl From<AppendError> for ApiError {
    fn from(error: AppendError) -> Self {
        let message = error.to_string();
        let too_large = |code| Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message.clone());
        let unavailable = |code| Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message.clone());
        match error {
            AppendError::WrongExpectedRevision { stream, expected, actual } => {
                Self::new(StatusCode::CONFLICT, "wrong_expected_revision", message)
                    .with("stream", stream)
                    .with("expected", expected_value(expected))
                    .with("actual", current_value(actual))
            }
            AppendError::DuplicateEventIds { stream, revision } => {
                Self::new(StatusCode::CONFLICT, "duplicate_event_ids", message)
                    .with("stream", stream)
                    .with("revision", revision)
            }
            AppendError::StreamDeleted { stream } => {
                Self::new(StatusCode::GONE, "stream_deleted", message).with("stream", stream)
            }
            AppendError::InvalidStreamName { stream, .. } => {
                Self::bad_request("invalid_stream_name", message).with("stream", stream)
            }
            AppendError::InvalidEventType { .. } => Self::bad_request("invalid_event_type", message),
            AppendError::InvalidContentType { .. } => Self::bad_request("invalid_content_type", message),
            AppendError::EmptyAppend => Self::bad_request("empty_append", message),
            AppendError::DuplicateStream { .. } => Self::bad_request("duplicate_stream", message),
            AppendError::TooManyStreams { count, limit } => {
                Self::bad_request("too_many_streams", message).with("count", count).with("limit", limit)
            }
            AppendError::InvalidMetadata { .. } => Self::bad_request("invalid_metadata", message),
            AppendError::EventTooLarge { index, size_bytes, limit_bytes, .. } => too_large("event_too_large")
                .with("index", index)
                .with("size_bytes", size_bytes)
                .with("limit_bytes", limit_bytes),
            AppendError::AppendTooLarge { size_bytes, limit_bytes } => {
                too_large("append_too_large").with("size_bytes", size_bytes).with("limit_bytes", limit_bytes)
            }
            AppendError::TooManyEvents { count, limit } => {
                too_large("too_many_events").with("count", count).with("limit", limit)
            }
            AppendError::Overloaded { .. } => unavailable("overloaded"),
            AppendError::NoSpace => unavailable("no_space"),
            AppendError::IndexBacklog { .. } => unavailable("index_backlog"),
            AppendError::WriterStopped { .. } => unavailable("writer_stopped"),
            AppendError::Read(read) => Self::from(read),
        }
    }
}
