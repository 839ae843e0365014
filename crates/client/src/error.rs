//! One error type for every call, with the cases callers act on (a
//! concurrency conflict, a deleted or missing stream, a refused request, a
//! transport failure) kept apart from the rest.

use steledb::{CurrentRevision, ExpectedRevision};
use tonic::{Code, Status};

use crate::ConnectionStringError;

/// A failed client call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    #[error("cannot connect to {uri}: {message}")]
    Connect { uri: String, message: String },
    /// The optimistic-concurrency check failed: nothing was written.
    #[error("wrong expected revision for stream '{stream}': expected {expected}, actual {actual}")]
    WrongExpectedRevision { stream: String, expected: ExpectedRevision, actual: CurrentRevision },
    #[error("stream '{stream}' not found")]
    StreamNotFound { stream: String },
    #[error("stream '{stream}' is deleted")]
    StreamDeleted { stream: String },
    /// The server refused the request as invalid (a bad stream name, event
    /// ids already used in another append, ...); `stream` is empty when
    /// the request as a whole was refused.
    #[error("the server refused the append to '{stream}': {message}")]
    Rejected { stream: String, message: String },
    /// The connection failed, or the server is overloaded or stopping
    /// (gRPC `UNAVAILABLE`). An append may or may not have been written;
    /// retrying it with the same event ids is safe.
    #[error("the server is unavailable: {message}")]
    Transport { message: String },
    #[error("the server does not support this call: {message}")]
    Unimplemented { message: String },
    /// No reply within the request timeout; as for `Transport`, an append
    /// may have been written.
    #[error("no reply within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    /// Any other gRPC status.
    #[error("{message} (gRPC status {code:?})")]
    Status { code: Code, message: String },
    /// The server replied with something this client cannot decode.
    #[error("the server sent {message}")]
    Protocol { message: String },
    /// The server ended a subscription (it is shutting down, or dropped a
    /// subscriber); subscribe again from the last message handled.
    #[error("the server ended the subscription")]
    SubscriptionEnded,
    #[error("cannot start the client's runtime: {message}")]
    Runtime { message: String },
}

impl ClientError {
    /// A gRPC status as one of our errors. The server names well-known
    /// failures in the `exception` metadata, as KurrentDB does; `stream` is
    /// the stream the call was about, for when the metadata does not say.
    pub fn from_status(status: &Status, stream: &str) -> Self {
        let metadata = |key: &str| status.metadata().get(key).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let stream = metadata("stream-name").unwrap_or_else(|| stream.to_owned());
        match metadata("exception").as_deref() {
            Some("stream-deleted") => return Self::StreamDeleted { stream },
            Some("stream-not-found") => return Self::StreamNotFound { stream },
            Some("wrong-expected-version") => {
                let expected = metadata("expected-version").and_then(|v| legacy_expected(&v));
                let actual = metadata("actual-version").and_then(|v| legacy_current(&v));
                // Without both revisions (duplicate event ids are reported
                // this way too) it is not a conflict a reload would resolve.
                if let (Some(expected), Some(actual)) = (expected, actual) {
                    return Self::WrongExpectedRevision { stream, expected, actual };
                }
            }
            _ => {}
        }
        let message = status.message().to_owned();
        match status.code() {
            Code::Unavailable => Self::Transport { message },
            Code::Unimplemented => Self::Unimplemented { message },
            code => Self::Status { code, message },
        }
    }
}

/// KurrentDB's signed encoding of an expected revision in error metadata.
fn legacy_expected(text: &str) -> Option<ExpectedRevision> {
    match text {
        "-1" => Some(ExpectedRevision::NoStream),
        "-2" => Some(ExpectedRevision::Any),
        "-4" => Some(ExpectedRevision::StreamExists),
        other => other.parse().ok().map(ExpectedRevision::Exact),
    }
}

fn legacy_current(text: &str) -> Option<CurrentRevision> {
    match text {
        "-1" => Some(CurrentRevision::NoStream),
        other => other.parse().ok().map(CurrentRevision::Current),
    }
}

#[cfg(test)]
mod tests {
    use tonic::metadata::MetadataValue;

    use super::*;

    fn status(code: Code, pairs: &[(&'static str, &'static str)]) -> Status {
        let mut status = Status::new(code, "refused");
        for (key, value) in pairs {
            status.metadata_mut().insert(*key, MetadataValue::from_static(value));
        }
        status
    }

    #[test]
    fn exception_metadata_becomes_a_typed_error() {
        let wrong = status(
            Code::FailedPrecondition,
            &[
                ("exception", "wrong-expected-version"),
                ("stream-name", "s-1"),
                ("expected-version", "-1"),
                ("actual-version", "4"),
            ],
        );
        assert_eq!(
            ClientError::from_status(&wrong, "ignored"),
            ClientError::WrongExpectedRevision {
                stream: "s-1".to_owned(),
                expected: ExpectedRevision::NoStream,
                actual: CurrentRevision::Current(4)
            }
        );
        let deleted = status(Code::FailedPrecondition, &[("exception", "stream-deleted")]);
        assert_eq!(ClientError::from_status(&deleted, "s-2"), ClientError::StreamDeleted { stream: "s-2".to_owned() });
        let missing = status(Code::NotFound, &[("exception", "stream-not-found"), ("stream-name", "s-3")]);
        assert_eq!(ClientError::from_status(&missing, "x"), ClientError::StreamNotFound { stream: "s-3".to_owned() });
    }

    #[test]
    fn other_statuses_keep_their_code_and_message() {
        // A wrong-expected-version without revisions (duplicate ids) is not a conflict.
        let duplicate = status(Code::FailedPrecondition, &[("exception", "wrong-expected-version")]);
        assert_eq!(ClientError::from_status(&duplicate, "s").to_string(), "refused (gRPC status FailedPrecondition)");
        assert_eq!(
            ClientError::from_status(&status(Code::Unavailable, &[]), "s"),
            ClientError::Transport { message: "refused".to_owned() }
        );
        assert_eq!(
            ClientError::from_status(&status(Code::Unimplemented, &[]), "s").to_string(),
            "the server does not support this call: refused"
        );
    }
}
