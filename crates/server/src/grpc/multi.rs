//! `stele.streams.v1.MultiStreamAppend`: our extension for atomic appends
//! across streams, which the KurrentDB protocol lacks.

use steledb::{AppendError, CurrentRevision, ExpectedRevision, NewEvent, StreamAppend, Uuid};
use tonic::{Request, Response, Status};

use super::convert::{append_status, bad_request};
use crate::bridge;
use crate::proto::stele::streams::v1 as wire;
use crate::state::SharedState;

pub struct MultiAppendService {
    pub state: SharedState,
}

fn expected_from(wire: Option<wire::ExpectedRevision>) -> ExpectedRevision {
    use wire::expected_revision::Kind;
    match wire.and_then(|e| e.kind) {
        Some(Kind::Exact(n)) => ExpectedRevision::Exact(n),
        Some(Kind::NoStream(())) => ExpectedRevision::NoStream,
        Some(Kind::StreamExists(())) => ExpectedRevision::StreamExists,
        Some(Kind::Any(())) | None => ExpectedRevision::Any,
    }
}

fn expected_to(expected: ExpectedRevision) -> wire::ExpectedRevision {
    use wire::expected_revision::Kind;
    let kind = match expected {
        ExpectedRevision::Exact(n) => Kind::Exact(n),
        ExpectedRevision::NoStream => Kind::NoStream(()),
        ExpectedRevision::StreamExists => Kind::StreamExists(()),
        ExpectedRevision::Any => Kind::Any(()),
    };
    wire::ExpectedRevision { kind: Some(kind) }
}

fn failure(stream: String, reason: wire::append_failure::Reason) -> wire::AppendResponse {
    wire::AppendResponse {
        result: Some(wire::append_response::Result::Failure(wire::AppendFailure { stream, reason: Some(reason) })),
    }
}

#[tonic::async_trait]
impl wire::multi_stream_append_server::MultiStreamAppend for MultiAppendService {
    async fn append(&self, request: Request<wire::AppendRequest>) -> Result<Response<wire::AppendResponse>, Status> {
        let mut parts = Vec::new();
        for part in request.into_inner().streams {
            let mut events = Vec::with_capacity(part.events.len());
            for event in part.events {
                let id = Uuid::parse_str(&event.id)
                    .map_err(|_| bad_request(&format!("invalid event id '{}': not a UUID", event.id)))?;
                events.push(NewEvent {
                    id,
                    event_type: event.r#type,
                    content_type: event.content_type,
                    data: event.data,
                    metadata: event.metadata,
                });
            }
            parts.push(StreamAppend::new(part.stream, expected_from(part.expected_revision), events));
        }
        let names: Vec<String> = parts.iter().map(|p| p.stream.clone()).collect();
        use wire::append_failure::Reason;
        let response = match bridge::append(&self.state, parts).await {
            Ok(results) => {
                let streams = names
                    .into_iter()
                    .zip(results)
                    .map(|(stream, r)| wire::StreamResult {
                        stream,
                        first_revision: r.first_revision,
                        last_revision: r.last_revision,
                        first_position: r.first_position,
                        last_position: r.last_position,
                        duplicate: r.duplicate,
                    })
                    .collect();
                wire::AppendResponse {
                    result: Some(wire::append_response::Result::Success(wire::AppendSuccess { streams })),
                }
            }
            Err(AppendError::WrongExpectedRevision { stream, expected, actual }) => {
                let actual = match actual {
                    CurrentRevision::Current(n) => Some(n),
                    CurrentRevision::NoStream => None,
                };
                let wrong = wire::WrongExpectedRevision { expected: Some(expected_to(expected)), actual };
                failure(stream, Reason::WrongExpectedRevision(wrong))
            }
            Err(AppendError::StreamDeleted { stream }) => {
                failure(stream, Reason::StreamDeleted(wire::StreamDeleted {}))
            }
            Err(
                error @ (AppendError::Overloaded { .. }
                | AppendError::NoSpace
                | AppendError::IndexBacklog { .. }
                | AppendError::WriterStopped { .. }
                | AppendError::Read(_)),
            ) => return Err(append_status(&error, self.state.config.limits.append_size_bytes_max)),
            Err(error) => {
                let stream = match &error {
                    AppendError::InvalidStreamName { stream, .. }
                    | AppendError::InvalidEventType { stream, .. }
                    | AppendError::InvalidContentType { stream, .. }
                    | AppendError::DuplicateStream { stream }
                    | AppendError::EventTooLarge { stream, .. }
                    | AppendError::DuplicateEventIds { stream, .. } => stream.clone(),
                    _ => String::new(),
                };
                failure(stream, Reason::InvalidArgument(wire::InvalidArgument { message: error.to_string() }))
            }
        };
        Ok(Response::new(response))
    }
}
