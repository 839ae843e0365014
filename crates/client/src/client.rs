//! The async client: appends through our multi-stream extension, reads
//! through KurrentDB's `Streams.Read`.

use std::future::Future;
use std::time::Duration;

use steledb::{AppendResult, Direction, EventFilter, ExpectedRevision, NewEvent, RecordedEvent, StreamAppend};
use tonic::transport::Channel;

use crate::connection::{connect_channel, REPLY_BYTES_MAX};
use crate::convert::{
    all_subscription_request, last_event_request, multi_append_request, multi_append_results, stream_read_request,
    stream_subscription_request, SubscriptionStart,
};
use crate::proto::event_store::client::streams::{streams_client::StreamsClient, ReadReq};
use crate::proto::stele::streams::v1::multi_stream_append_client::MultiStreamAppendClient;
use crate::read_codec::{ReadCodec, ReadItem};
use crate::subscription::Subscription;
use crate::ClientError;

/// How long one call may wait for its whole reply by default: a server
/// that stops answering must not hang a command handler for ever, and a
/// durable append takes milliseconds, so 30 s means something is wrong.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to a server. Cheap to clone: clones share the connection
/// (HTTP/2 multiplexes their calls).
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    streams: StreamsClient<Channel>,
    multi: MultiStreamAppendClient<Channel>,
    request_timeout: Duration,
}

impl Client {
    /// Connects to `connection_string` (`kurrentdb://host:port?tls=false`).
    pub async fn connect(connection_string: &str) -> Result<Self, ClientError> {
        Ok(Self::from_channel(connect_channel(connection_string).await?))
    }

    pub fn from_channel(channel: Channel) -> Self {
        Self {
            channel: channel.clone(),
            streams: StreamsClient::new(channel.clone()).max_decoding_message_size(REPLY_BYTES_MAX),
            multi: MultiStreamAppendClient::new(channel).max_decoding_message_size(REPLY_BYTES_MAX),
            request_timeout: REQUEST_TIMEOUT,
        }
    }

    /// Sets how long each call may take (default [`REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(mut self, request_timeout: Duration) -> Self {
        self.request_timeout = request_timeout;
        self
    }

    /// The generated KurrentDB `Streams` client on this connection, for
    /// calls this type does not wrap (tombstones, `$all` reads).
    pub fn streams(&self) -> StreamsClient<Channel> {
        self.streams.clone()
    }

    /// Appends to one stream if it is at `expected`. Goes through the
    /// multi-stream extension rather than KurrentDB's `Append`, because
    /// only the extension says whether a retry was a duplicate.
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, ClientError> {
        let mut results = self.append_multi(vec![StreamAppend::new(stream, expected, events)]).await?;
        // `append_multi` checked there is one result per stream.
        Ok(results.remove(0))
    }

    /// Appends to several streams atomically, each with its own
    /// expectation: all parts are written or none, and the failure names
    /// the first stream whose check failed.
    pub async fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, ClientError> {
        let streams_requested = parts.len();
        let first_stream = parts.first().map(|p| p.stream.clone()).unwrap_or_default();
        let mut multi = self.multi.clone();
        let request = multi_append_request(parts);
        let reply = self
            .bounded(async move { multi.append(request).await })
            .await?
            .map_err(|status| ClientError::from_status(&status, &first_stream))?;
        multi_append_results(reply.into_inner(), streams_requested)
    }

    /// Up to `count` events of `stream` in revision order from
    /// `from_revision`. A stream that does not exist (or was soft-deleted)
    /// is `StreamNotFound`; a tombstoned one `StreamDeleted`.
    pub async fn read_forward(
        &self,
        stream: &str,
        from_revision: u64,
        count: u64,
    ) -> Result<Vec<RecordedEvent>, ClientError> {
        self.read(stream, Some(from_revision), Direction::Forward, count).await
    }

    /// The last event of `stream` (`StreamNotFound` when there is none).
    pub async fn read_last(&self, stream: &str) -> Result<RecordedEvent, ClientError> {
        let mut events = self.read(stream, None, Direction::Backward, 1).await?;
        events.pop().ok_or_else(|| ClientError::StreamNotFound { stream: stream.to_owned() })
    }

    /// Subscribes to `$all` (see [`all_subscription_request`] for the filter).
    pub async fn subscribe_all(
        &self,
        start: SubscriptionStart,
        filter: Option<&EventFilter>,
        checkpoint_every_records: u32,
    ) -> Result<Subscription, ClientError> {
        self.subscribe(all_subscription_request(start, filter, checkpoint_every_records), "").await
    }

    /// Subscribes to one stream; `SubscriptionStart::After` names a revision.
    /// A stream that does not exist yet is waited for.
    pub async fn subscribe_stream(&self, stream: &str, start: SubscriptionStart) -> Result<Subscription, ClientError> {
        self.subscribe(stream_subscription_request(stream, start), stream).await
    }

    /// The `$all` position of the last event, `None` when there is none.
    pub async fn last_position(&self) -> Result<Option<u64>, ClientError> {
        let events = self.read_events(last_event_request(), "$all").await?;
        Ok(events.last().map(|event| event.position))
    }

    /// Starts a `Streams.Read` call whose replies are decoded in place
    /// ([`ReadCodec`]) rather than as generated messages.
    pub async fn read_items(&self, request: ReadReq) -> Result<tonic::Streaming<ReadItem>, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone()).max_decoding_message_size(REPLY_BYTES_MAX);
        grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("the connection is not ready: {e}")))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(crate::proto::STREAMS_READ_PATH);
        Ok(grpc.server_streaming(tonic::Request::new(request), path, ReadCodec).await?.into_inner())
    }

    /// Only starting the call is bounded by the request timeout: a
    /// subscription then stays open for as long as its caller reads it.
    async fn subscribe(&self, request: ReadReq, stream: &str) -> Result<Subscription, ClientError> {
        let replies = self
            .bounded(self.read_items(request))
            .await?
            .map_err(|status| ClientError::from_status(&status, stream))?;
        Ok(Subscription::new(replies, stream))
    }

    async fn read(
        &self,
        stream: &str,
        from_revision: Option<u64>,
        direction: Direction,
        count: u64,
    ) -> Result<Vec<RecordedEvent>, ClientError> {
        self.read_events(stream_read_request(stream, from_revision, direction, count), stream).await
    }

    /// The events of a read of `stream` (`$all` for the log). The whole
    /// read, not each message, is bounded by the timeout.
    async fn read_events(&self, request: ReadReq, stream: &str) -> Result<Vec<RecordedEvent>, ClientError> {
        let status = |status: tonic::Status| ClientError::from_status(&status, stream);
        self.bounded(async move {
            let mut replies = self.read_items(request).await.map_err(status)?;
            let mut events = Vec::new();
            while let Some(reply) = replies.message().await.map_err(status)? {
                match reply {
                    ReadItem::Event(event) => events.push(event),
                    ReadItem::StreamNotFound => return Err(ClientError::StreamNotFound { stream: stream.to_owned() }),
                    ReadItem::Invalid { message } => return Err(ClientError::Protocol { message }),
                    // Confirmations, checkpoints and stream positions carry nothing for a read.
                    _ => {}
                }
            }
            Ok(events)
        })
        .await?
    }

    async fn bounded<T>(&self, call: impl Future<Output = T>) -> Result<T, ClientError> {
        tokio::time::timeout(self.request_timeout, call)
            .await
            .map_err(|_| ClientError::Timeout { timeout_ms: self.request_timeout.as_millis() as u64 })
    }
}
