//! SteleDB: the server through the generated KurrentDB-protocol gRPC
//! client, and the embedded engine through `steledb::Store`.
//! The version token is the stream's event count (next revision).

use std::collections::HashMap;
use std::sync::Arc;

use stele_server::proto::event_store::client::streams::{
    append_req, append_resp, read_req, read_resp, streams_client::StreamsClient, AppendReq,
};
use stele_server::proto::event_store::client::{uuid, Empty, Uuid as WireUuid};
use steledb::{
    AllStart, AppendError, CurrentRevision, Direction, ExpectedRevision, NewEvent, StreamAppend, StreamStart,
};
use steledb_client::convert::{read_request, stream_identifier};
use tonic::transport::{Channel, Endpoint};

use crate::client::{Appended, CATCH_UP_PAGE_EVENTS};
use crate::error::BenchError;
use crate::event::BenchEvent;

/// Large enough for a page of events; the generated client's 4 MiB default is not.
const DECODING_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

pub struct GrpcClient {
    client: StreamsClient<Channel>,
}

fn proposed(event: BenchEvent) -> AppendReq {
    let metadata = HashMap::from([
        ("type".to_owned(), event.event_type.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]);
    AppendReq {
        content: Some(append_req::Content::ProposedMessage(append_req::ProposedMessage {
            id: Some(WireUuid { value: Some(uuid::Value::String(event.id.to_string())) }),
            metadata,
            custom_metadata: Vec::new(),
            data: event.data,
        })),
    }
}

impl GrpcClient {
    /// One HTTP/2 connection per client, as each official client holds.
    pub async fn connect(uri: &str) -> Result<Self, BenchError> {
        let channel = Endpoint::from_shared(uri.to_owned())?.tcp_nodelay(true).connect().await?;
        Ok(Self { client: StreamsClient::new(channel).max_decoding_message_size(DECODING_MESSAGE_BYTES_MAX) })
    }

    pub async fn append(
        &mut self,
        stream: &str,
        expected_version: u64,
        events: Vec<BenchEvent>,
    ) -> Result<Appended, BenchError> {
        use append_req::options::ExpectedStreamRevision as E;
        let expected = match expected_version {
            0 => E::NoStream(Empty {}),
            n => E::Revision(n - 1),
        };
        let options = AppendReq {
            content: Some(append_req::Content::Options(append_req::Options {
                stream_identifier: stream_identifier(stream),
                expected_stream_revision: Some(expected),
            })),
        };
        let requests: Vec<AppendReq> = std::iter::once(options).chain(events.into_iter().map(proposed)).collect();
        let reply = self.client.append(tokio_stream::iter(requests)).await?.into_inner();
        match reply.result {
            Some(append_resp::Result::Success(success)) => {
                use append_resp::success::CurrentRevisionOption;
                match success.current_revision_option {
                    Some(CurrentRevisionOption::CurrentRevision(r)) => Ok(Appended::Written { next_version: r + 1 }),
                    _ => Err(wrong("an append reply without a revision")),
                }
            }
            Some(append_resp::Result::WrongExpectedVersion(w)) => {
                use append_resp::wrong_expected_version::CurrentRevisionOption;
                let current_version = match w.current_revision_option {
                    Some(CurrentRevisionOption::CurrentRevision(r)) => r + 1,
                    _ => 0,
                };
                Ok(Appended::Conflict { current_version })
            }
            None => Err(wrong("an empty append reply")),
        }
    }

    pub async fn read_stream(&mut self, stream: &str, count: u64) -> Result<u64, BenchError> {
        use read_req::options::stream_options::RevisionOption;
        use read_req::options::{CountOption, StreamOption, StreamOptions};
        let option = StreamOption::Stream(StreamOptions {
            stream_identifier: stream_identifier(stream),
            revision_option: Some(RevisionOption::Start(Empty {})),
        });
        let mut replies =
            self.client.read(read_request(option, Direction::Forward, CountOption::Count(count))).await?.into_inner();
        let mut events = 0;
        while let Some(reply) = replies.message().await? {
            match reply.content {
                Some(read_resp::Content::Event(event)) => events += touch(event),
                Some(read_resp::Content::StreamNotFound(_)) => return Ok(0),
                _ => {}
            }
        }
        Ok(events)
    }

    /// A catch-up subscription to `$all` from the start, the way a
    /// projection reads; stops after `count` events.
    pub async fn catch_up(&mut self, count: u64) -> Result<u64, BenchError> {
        use read_req::options::all_options::AllOption;
        use read_req::options::{AllOptions, CountOption, StreamOption, SubscriptionOptions};
        let option = StreamOption::All(AllOptions { all_option: Some(AllOption::Start(Empty {})) });
        let request = read_request(option, Direction::Forward, CountOption::Subscription(SubscriptionOptions {}));
        let mut replies = self.client.read(request).await?.into_inner();
        let mut events = 0;
        while events < count {
            match replies.message().await? {
                Some(reply) => match reply.content {
                    Some(read_resp::Content::Event(event)) => events += touch(event),
                    Some(read_resp::Content::CaughtUp(_)) => break,
                    _ => {}
                },
                None => break,
            }
        }
        Ok(events)
    }
}

/// Counts an event whose data arrived (so no reader can skip the payload).
fn touch(event: read_resp::ReadEvent) -> u64 {
    u64::from(event.event.is_some_and(|e| !e.data.is_empty()))
}

fn wrong(message: &str) -> BenchError {
    BenchError::Wrong { system: "steledb", message: message.to_owned() }
}

/// The embedded engine: appends through `append_with`, the non-blocking
/// path a server uses, answered on a oneshot channel; reads on tokio's
/// blocking pool, as the server does.
pub struct EmbeddedClient {
    store: Arc<steledb::Store>,
}

impl EmbeddedClient {
    pub fn new(store: Arc<steledb::Store>) -> Self {
        Self { store }
    }

    pub async fn append(
        &mut self,
        stream: &str,
        expected_version: u64,
        events: Vec<BenchEvent>,
    ) -> Result<Appended, BenchError> {
        let expected = match expected_version {
            0 => ExpectedRevision::NoStream,
            n => ExpectedRevision::Exact(n - 1),
        };
        let events = events.into_iter().map(|e| NewEvent::json(e.id, e.event_type, e.data)).collect::<Vec<NewEvent>>();
        let (send, receive) = tokio::sync::oneshot::channel();
        self.store.append_with(vec![StreamAppend::new(stream, expected, events)], move |result, _parts| {
            // The receiver only goes away if the benchmark is stopping.
            let _ = send.send(result);
        });
        let result = receive.await.map_err(|_| BenchError::Store("the writer dropped an append".to_owned()))?;
        match result {
            Ok(results) => {
                let last = results.first().ok_or_else(|| BenchError::Store("no append result".to_owned()))?;
                Ok(Appended::Written { next_version: last.last_revision + 1 })
            }
            Err(AppendError::WrongExpectedRevision { actual, .. }) => Ok(Appended::Conflict {
                current_version: match actual {
                    CurrentRevision::NoStream => 0,
                    CurrentRevision::Current(r) => r + 1,
                },
            }),
            Err(other) => Err(BenchError::Store(other.to_string())),
        }
    }

    pub async fn read_stream(&mut self, stream: &str, count: u64) -> Result<u64, BenchError> {
        let store = self.store.clone();
        let stream = stream.to_owned();
        let read = tokio::task::spawn_blocking(move || {
            store.read_stream(&stream, StreamStart::Start, Direction::Forward, count as usize)
        })
        .await
        .map_err(|e| BenchError::Store(e.to_string()))?;
        match read {
            Ok(events) => Ok(events.iter().filter(|e| !e.data().is_empty()).count() as u64),
            Err(steledb::ReadError::StreamNotFound { .. }) => Ok(0),
            Err(other) => Err(BenchError::Store(other.to_string())),
        }
    }

    pub async fn catch_up(&mut self, count: u64) -> Result<u64, BenchError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut position = AllStart::Start;
            let mut events = 0;
            while events < count {
                let page = CATCH_UP_PAGE_EVENTS.min(count - events) as usize;
                let slice = store
                    .read_all(position, Direction::Forward, page, None)
                    .map_err(|e| BenchError::Store(e.to_string()))?;
                events += slice.events.iter().filter(|e| !e.data().is_empty()).count() as u64;
                if slice.is_end || slice.events.is_empty() {
                    break;
                }
                position = AllStart::Position(slice.next_position);
            }
            Ok(events)
        })
        .await
        .map_err(|e| BenchError::Store(e.to_string()))?
    }
}
