//! `event_store.client.streams.Streams`: reads, subscriptions, appends,
//! batch appends, deletes and tombstones, as the KurrentDB clients speak them.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use steledb::{
    AllStart, AppendError, AppendResult, Direction, EventFilter, ExpectedRevision, NewEvent, ReadError, StreamAppend,
    StreamMetadata, StreamStart, SubscriptionMessage, Uuid,
};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert::{
    append_status, bad_request, new_event, read_status, stream_identifier, stream_name, uuid_from_proto,
};
use super::read_reply::{FramedReplies, ReadReply};
use crate::bridge::{self, blocking, Batched};
use crate::proto::event_store::client as shared;
use crate::proto::event_store::client::streams::*;
use crate::proto::google::rpc;
use crate::state::SharedState;

/// Events fetched from the store per step of a read.
const READ_PAGE_EVENTS: usize = 512;
/// Reply batches buffered per read or subscription before the sender waits
/// for the client: bounds memory per slow reader (a batch is at most a page).
const REPLY_BATCHES: usize = 4;
/// Batches of one BatchAppend call begun but not yet given their final
/// message (clients send each batch whole, in one message).
const UNFINISHED_BATCHES_MAX: usize = 64;
/// Batches of one BatchAppend call being appended at once.
const BATCHES_IN_FLIGHT_MAX: usize = 64;
/// Checkpoint interval for filtered subscriptions that ask for the server's default.
const DEFAULT_CHECKPOINT_INTERVAL: u64 = 1_000;

pub struct StreamsService {
    pub state: SharedState,
}

type Reply<T> = Result<Response<T>, Status>;
/// Replies to a read travel in batches (a page of events at a time).
type Sender = mpsc::Sender<Vec<Result<ReadReply, Status>>>;

fn content(content: read_resp::Content) -> Result<ReadReply, Status> {
    Ok(ReadReply::Message(Box::new(ReadResp { content: Some(content) })))
}

fn event_reply(event: steledb::RecordedEvent, uuid_as_string: bool) -> Result<ReadReply, Status> {
    Ok(ReadReply::Event { event, uuid_as_string })
}

fn timestamp_now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

fn to_expected(option: Option<ExpectedKind>) -> ExpectedRevision {
    match option {
        Some(ExpectedKind::Exact(n)) => ExpectedRevision::Exact(n),
        Some(ExpectedKind::NoStream) => ExpectedRevision::NoStream,
        Some(ExpectedKind::StreamExists) => ExpectedRevision::StreamExists,
        Some(ExpectedKind::Any) | None => ExpectedRevision::Any,
    }
}

/// The four shapes of an expected revision, whatever message carried them.
enum ExpectedKind {
    Exact(u64),
    NoStream,
    Any,
    StreamExists,
}

impl StreamsService {
    /// `Streams.Read`, with replies in the form [`super::read_body`] sends.
    pub async fn start_read(&self, request: Request<ReadReq>) -> Reply<Batched<Result<ReadReply, Status>>> {
        use read_req::options::{CountOption, FilterOption, StreamOption};
        let options = request.into_inner().options.ok_or_else(|| bad_request("read options are required"))?;
        let uuid_as_string = !matches!(
            options.uuid_option.and_then(|u| u.content),
            Some(read_req::options::uuid_option::Content::Structured(_))
        );
        let direction = match options.read_direction {
            0 => Direction::Forward,
            1 => Direction::Backward,
            other => return Err(bad_request(&format!("unknown read direction {other}"))),
        };
        let filter = match options.filter_option {
            Some(FilterOption::Filter(filter)) => Some(to_filter(filter)?),
            Some(FilterOption::NoFilter(_)) | None => None,
        };
        let stream_option = options.stream_option.ok_or_else(|| bad_request("stream_option is required"))?;
        let count_option = options.count_option.ok_or_else(|| bad_request("count_option is required"))?;
        let (sender, receiver) = mpsc::channel(REPLY_BATCHES);
        let state = self.state.clone();
        state.metrics.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match (stream_option, count_option) {
            (StreamOption::Stream(stream), CountOption::Count(count)) => {
                if filter.is_some() {
                    return Err(bad_request("filters apply to $all only"));
                }
                let name = stream_name(stream.stream_identifier.as_ref())?;
                let start = stream_start(stream.revision_option);
                tokio::spawn(read_stream(state, sender, name, start, direction, count, uuid_as_string));
            }
            (StreamOption::All(all), CountOption::Count(count)) => {
                let start = all_start(all.all_option);
                let filter = filter.map(|(filter, _)| filter);
                tokio::spawn(read_all(state, sender, start, direction, count, filter, uuid_as_string));
            }
            (StreamOption::Stream(stream), CountOption::Subscription(_)) => {
                if filter.is_some() || direction == Direction::Backward {
                    return Err(bad_request("stream subscriptions are forwards and unfiltered"));
                }
                let name = stream_name(stream.stream_identifier.as_ref())?;
                // A subscription's start revision is exclusive.
                let start = match stream_start(stream.revision_option) {
                    StreamStart::Revision(r) => StreamStart::Revision(r.saturating_add(1)),
                    other => other,
                };
                // Finding where to start reads the index and the log: off the async threads.
                let store = state.store.clone();
                let subscription =
                    blocking(move || store.subscribe_stream(&name, start)).await.map_err(|e| read_status(&e))?;
                tokio::spawn(subscribe(state, sender, subscription, uuid_as_string));
            }
            (StreamOption::All(all), CountOption::Subscription(_)) => {
                if direction == Direction::Backward {
                    return Err(bad_request("subscriptions are forwards"));
                }
                let start = match all_start(all.all_option) {
                    AllStart::Position(p) => AllStart::Position(position_after(&state, p).await?),
                    other => other,
                };
                let (filter, interval) = match filter {
                    Some((filter, interval)) => (Some(filter), interval),
                    None => (None, DEFAULT_CHECKPOINT_INTERVAL),
                };
                let store = state.store.clone();
                let subscription = blocking(move || store.subscribe_all(start, filter, interval))
                    .await
                    .map_err(|e| read_status(&e))?;
                tokio::spawn(subscribe(state, sender, subscription, uuid_as_string));
            }
        }
        Ok(Response::new(Batched::new(receiver)))
    }
}

#[tonic::async_trait]
impl streams_server::Streams for StreamsService {
    type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;
    type BatchAppendStream = ReceiverStream<Result<BatchAppendResp, Status>>;

    /// Served through [`super::read_route`], which encodes events without
    /// building messages; this is the same read with generated messages.
    async fn read(&self, request: Request<ReadReq>) -> Reply<Self::ReadStream> {
        let replies = self.start_read(request).await?.into_inner();
        let (sender, messages) = mpsc::channel(REPLY_BATCHES);
        tokio::spawn(async move {
            let mut replies = replies;
            while let Some(reply) = replies.next().await {
                let messages = match reply {
                    Ok(reply) => reply.into_messages().into_iter().map(Ok).collect(),
                    Err(status) => vec![Err(status)],
                };
                for message in messages {
                    if sender.send(message).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(messages))))
    }

    async fn append(&self, request: Request<Streaming<AppendReq>>) -> Reply<AppendResp> {
        use append_req::options::ExpectedStreamRevision as E;
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.ok_or_else(|| bad_request("an append starts with its options"))?;
        let Some(append_req::Content::Options(options)) = first.content else {
            return Err(bad_request("the first append message must carry the options"));
        };
        let stream = stream_name(options.stream_identifier.as_ref())?;
        let expected = to_expected(options.expected_stream_revision.map(|e| match e {
            E::Revision(n) => ExpectedKind::Exact(n),
            E::NoStream(_) => ExpectedKind::NoStream,
            E::Any(_) => ExpectedKind::Any,
            E::StreamExists(_) => ExpectedKind::StreamExists,
        }));
        let size_bytes_max = self.state.config.limits.append_size_bytes_max;
        let mut events = Vec::new();
        let mut size_bytes = 0usize;
        while let Some(message) = incoming.message().await? {
            let Some(append_req::Content::ProposedMessage(proposed)) = message.content else {
                return Err(bad_request("options may only be sent first"));
            };
            let event = new_event(proposed.id.as_ref(), &proposed.metadata, proposed.custom_metadata, proposed.data)?;
            size_bytes += event.size_bytes();
            if size_bytes > size_bytes_max {
                // Refuse before buffering more: the client may be sending a lot.
                let error = AppendError::AppendTooLarge { size_bytes, limit_bytes: size_bytes_max };
                return Err(append_status(&error, size_bytes_max));
            }
            events.push(event);
        }
        let outcome = if let Some(target) = stream.strip_prefix("$$") {
            set_metadata(&self.state, target.to_owned(), expected, events).await
        } else if events.is_empty() {
            check_only(&self.state, stream.clone(), expected).await
        } else {
            bridge::append(&self.state, vec![StreamAppend::new(stream.clone(), expected, events)])
                .await
                .map(|mut results| results.remove(0))
        };
        match outcome {
            Ok(result) => {
                Ok(Response::new(AppendResp { result: Some(append_resp::Result::Success(success(&result))) }))
            }
            Err(AppendError::WrongExpectedRevision { expected, actual, .. }) => Ok(Response::new(AppendResp {
                result: Some(append_resp::Result::WrongExpectedVersion(wrong_expected_version(expected, actual))),
            })),
            Err(error) => Err(append_status(&error, size_bytes_max)),
        }
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Reply<DeleteResp> {
        use delete_req::options::ExpectedStreamRevision as E;
        let options = request.into_inner().options.ok_or_else(|| bad_request("delete options are required"))?;
        let expected = options.expected_stream_revision.map(|e| match e {
            E::Revision(n) => ExpectedKind::Exact(n),
            E::NoStream(_) => ExpectedKind::NoStream,
            E::Any(_) => ExpectedKind::Any,
            E::StreamExists(_) => ExpectedKind::StreamExists,
        });
        let position = self.remove(options.stream_identifier.as_ref(), expected, Removal::Soft).await?;
        let position = delete_resp::Position { commit_position: position, prepare_position: position };
        Ok(Response::new(DeleteResp { position_option: Some(delete_resp::PositionOption::Position(position)) }))
    }

    async fn tombstone(&self, request: Request<TombstoneReq>) -> Reply<TombstoneResp> {
        use tombstone_req::options::ExpectedStreamRevision as E;
        let options = request.into_inner().options.ok_or_else(|| bad_request("tombstone options are required"))?;
        let expected = options.expected_stream_revision.map(|e| match e {
            E::Revision(n) => ExpectedKind::Exact(n),
            E::NoStream(_) => ExpectedKind::NoStream,
            E::Any(_) => ExpectedKind::Any,
            E::StreamExists(_) => ExpectedKind::StreamExists,
        });
        let position = self.remove(options.stream_identifier.as_ref(), expected, Removal::Tombstone).await?;
        let position = tombstone_resp::Position { commit_position: position, prepare_position: position };
        Ok(Response::new(TombstoneResp { position_option: Some(tombstone_resp::PositionOption::Position(position)) }))
    }

    async fn batch_append(&self, request: Request<Streaming<BatchAppendReq>>) -> Reply<Self::BatchAppendStream> {
        let incoming = request.into_inner();
        let (sender, receiver) = mpsc::channel(BATCHES_IN_FLIGHT_MAX);
        tokio::spawn(batch_append(self.state.clone(), incoming, sender));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

#[derive(Clone, Copy)]
enum Removal {
    Soft,
    Tombstone,
}

impl StreamsService {
    /// Deletes (softly, or for good) and returns the position of the record that did it.
    async fn remove(
        &self,
        identifier: Option<&shared::StreamIdentifier>,
        expected: Option<ExpectedKind>,
        removal: Removal,
    ) -> Result<u64, Status> {
        let stream = stream_name(identifier)?;
        let expected = to_expected(expected);
        let store = self.state.store.clone();
        let result = blocking(move || match removal {
            Removal::Soft => store.delete_stream(&stream, expected),
            Removal::Tombstone => store.tombstone_stream(&stream, expected),
        })
        .await;
        let result = result.map_err(|e| append_status(&e, self.state.config.limits.append_size_bytes_max))?;
        Ok(result.last_position)
    }
}

fn stream_start(option: Option<read_req::options::stream_options::RevisionOption>) -> StreamStart {
    use read_req::options::stream_options::RevisionOption;
    match option {
        Some(RevisionOption::Revision(r)) => StreamStart::Revision(r),
        Some(RevisionOption::End(_)) => StreamStart::End,
        Some(RevisionOption::Start(_)) | None => StreamStart::Start,
    }
}

fn all_start(option: Option<read_req::options::all_options::AllOption>) -> AllStart {
    use read_req::options::all_options::AllOption;
    match option {
        Some(AllOption::Position(p)) => AllStart::Position(p.commit_position),
        Some(AllOption::End(_)) => AllStart::End,
        Some(AllOption::Start(_)) | None => AllStart::Start,
    }
}

/// The filter and its checkpoint interval (events examined between checkpoints).
fn to_filter(options: read_req::options::FilterOptions) -> Result<(EventFilter, u64), Status> {
    use read_req::options::filter_options::{Filter, Window};
    let by_stream = matches!(options.filter, Some(Filter::StreamIdentifier(_)));
    let expression = match options.filter {
        Some(Filter::StreamIdentifier(e) | Filter::EventType(e)) => e,
        None => return Err(bad_request("a filter needs a stream or event-type expression")),
    };
    let filter = if !expression.regex.is_empty() {
        let built = if by_stream {
            EventFilter::stream_regex(&expression.regex)
        } else {
            EventFilter::event_type_regex(&expression.regex)
        };
        built.map_err(|e| bad_request(&format!("invalid filter regex: {e}")))?
    } else if by_stream {
        EventFilter::StreamPrefix(expression.prefix)
    } else {
        EventFilter::EventTypePrefix(expression.prefix)
    };
    let window = match options.window {
        Some(Window::Max(n)) if n > 0 => u64::from(n),
        _ => DEFAULT_CHECKPOINT_INTERVAL,
    };
    Ok((filter, window.saturating_mul(u64::from(options.checkpoint_interval_multiplier.max(1)))))
}

/// A subscription from `$all` position `p` starts after the event at `p`.
async fn position_after(state: &SharedState, position: u64) -> Result<u64, Status> {
    let store = state.store.clone();
    // After the end is the end; past it is refused (as KurrentDB does).
    blocking(move || store.resume_after(position).map_err(|e| read_status(&e))).await
}

async fn read_stream(
    state: SharedState,
    sender: Sender,
    stream: String,
    mut start: StreamStart,
    direction: Direction,
    count: u64,
    uuid_as_string: bool,
) {
    let mut remaining = count;
    while remaining > 0 {
        let page = remaining.min(READ_PAGE_EVENTS as u64) as usize;
        let (store, name) = (state.store.clone(), stream.clone());
        // Forwards, replies are encoded on the blocking thread straight from
        // the read buffer; backwards reads take owned events.
        let read = blocking(move || match direction {
            Direction::Forward => {
                let mut replies = FramedReplies::with_capacity(page);
                let mut last = None;
                store.scan_stream(&name, start, page, |view, position| {
                    last = Some(view.revision);
                    replies.push(&view.parts(position), uuid_as_string);
                })?;
                Ok((replies.len(), last, replies.into_reply().map(Ok).into_iter().collect::<Vec<_>>()))
            }
            Direction::Backward => {
                let events = store.read_stream(&name, start, direction, page)?;
                let last = events.last().map(|e| e.revision);
                Ok((events.len(), last, events.into_iter().map(|e| event_reply(e, uuid_as_string)).collect()))
            }
        })
        .await;
        let (fetched, last, replies) = match read {
            Ok(read) => read,
            Err(ReadError::StreamNotFound { .. }) => {
                let not_found = read_resp::StreamNotFound { stream_identifier: Some(stream_identifier(&stream)) };
                let _ = sender.send(vec![content(read_resp::Content::StreamNotFound(not_found))]).await;
                return;
            }
            Err(error) => {
                let _ = sender.send(vec![Err(read_status(&error))]).await;
                return;
            }
        };
        if sender.send(replies).await.is_err() {
            return;
        }
        remaining -= fetched as u64;
        match (last, direction) {
            (Some(last), Direction::Forward) if fetched == page => start = StreamStart::Revision(last + 1),
            (Some(last), Direction::Backward) if fetched == page && last > 0 => start = StreamStart::Revision(last - 1),
            _ => break,
        }
    }
}

async fn read_all(
    state: SharedState,
    sender: Sender,
    mut start: AllStart,
    direction: Direction,
    count: u64,
    filter: Option<EventFilter>,
    uuid_as_string: bool,
) {
    if let AllStart::Position(position) = start {
        let store = state.store.clone();
        if let Err(error) = blocking(move || store.check_all_position(position)).await {
            let _ = sender.send(vec![Err(read_status(&error))]).await;
            return;
        }
    }
    let filter = Arc::new(filter);
    let mut remaining = count;
    while remaining > 0 {
        let page = remaining.min(READ_PAGE_EVENTS as u64) as usize;
        let (store, filter_for_read) = (state.store.clone(), filter.clone());
        // Forwards, replies are framed on the blocking thread straight from
        // the read buffer; backwards reads take owned events.
        let read = blocking(move || {
            let filter = filter_for_read.as_ref().as_ref();
            match direction {
                Direction::Forward => {
                    let mut replies = FramedReplies::with_capacity(page);
                    let scan = store.scan_all_page(start, page, filter, |view, position| {
                        replies.push(&view.parts(position), uuid_as_string);
                    })?;
                    let replies = replies.into_reply().map(Ok).into_iter().collect::<Vec<_>>();
                    Ok((scan.visited, scan.next_position, scan.is_end, replies))
                }
                Direction::Backward => {
                    let slice = store.read_all(start, direction, page, filter)?;
                    let fetched = slice.events.len();
                    let replies = slice.events.into_iter().map(|e| event_reply(e, uuid_as_string)).collect();
                    Ok((fetched, slice.next_position, slice.is_end, replies))
                }
            }
        })
        .await;
        let (fetched, next_position, is_end, replies) = match read {
            Ok(read) => read,
            Err(error) => {
                let _ = sender.send(vec![Err(read_status(&error))]).await;
                return;
            }
        };
        remaining -= fetched as u64;
        if !replies.is_empty() && sender.send(replies).await.is_err() {
            return;
        }
        if is_end {
            break;
        }
        start = AllStart::Position(next_position);
    }
}

async fn subscribe(state: SharedState, sender: Sender, subscription: steledb::Subscription, uuid_as_string: bool) {
    let confirmation = read_resp::SubscriptionConfirmation { subscription_id: Uuid::new_v4().to_string() };
    if sender.send(vec![content(read_resp::Content::Confirmation(confirmation))]).await.is_err() {
        return;
    }
    // Replies are built on the blocking thread that reads the events.
    let mut last_event: Option<(u64, u64)> = None;
    let convert = move |item: bridge::Feed| match item {
        Ok(SubscriptionMessage::Event(event)) => {
            last_event = Some((event.revision, event.position));
            event_reply(event, uuid_as_string)
        }
        Ok(SubscriptionMessage::CaughtUp { .. }) => content(read_resp::Content::CaughtUp(read_resp::CaughtUp {
            timestamp: Some(timestamp_now()),
            stream_revision: last_event.map(|(revision, _)| revision as i64),
            position: last_event.map(|(_, p)| read_resp::Position { commit_position: p, prepare_position: p }),
        })),
        // Clients resume from a checkpoint as from an event's position
        // (after it), so it names the last record examined.
        Ok(SubscriptionMessage::Checkpoint { last_scanned_position: position, .. }) => {
            content(read_resp::Content::Checkpoint(read_resp::Checkpoint {
                commit_position: position,
                prepare_position: position,
                timestamp: Some(timestamp_now()),
            }))
        }
        Err(error) => Err(read_status(&error)),
    };
    let mut batches = bridge::drive_batches(state, subscription, REPLY_BATCHES, convert);
    while let Some(batch) = batches.recv().await {
        if sender.send(batch).await.is_err() {
            return;
        }
    }
}

/// Appending to `$$stream` is how the clients write stream metadata.
async fn set_metadata(
    state: &SharedState,
    stream: String,
    expected: ExpectedRevision,
    events: Vec<NewEvent>,
) -> Result<AppendResult, AppendError> {
    let [event] = <[NewEvent; 1]>::try_from(events).map_err(|_| AppendError::InvalidMetadata {
        reason: "a metadata write is exactly one $metadata event".to_owned(),
    })?;
    let metadata = StreamMetadata::from_json(&event.data).map_err(|reason| AppendError::InvalidMetadata { reason })?;
    let store = state.store.clone();
    blocking(move || store.set_stream_metadata(&stream, expected, metadata)).await
}

/// An append of no events checks the expectation and writes nothing, as in KurrentDB.
async fn check_only(
    state: &SharedState,
    stream: String,
    expected: ExpectedRevision,
) -> Result<AppendResult, AppendError> {
    let store = state.store.clone();
    blocking(move || {
        let current = store.stream_revision(&stream).map_err(|e| match e {
            ReadError::StreamDeleted { stream } => AppendError::StreamDeleted { stream },
            other => AppendError::Read(other),
        })?;
        let ok = match expected {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => current.is_none(),
            ExpectedRevision::StreamExists => current.is_some(),
            ExpectedRevision::Exact(n) => current == Some(n),
        };
        if !ok {
            let actual = current.map_or(steledb::CurrentRevision::NoStream, steledb::CurrentRevision::Current);
            return Err(AppendError::WrongExpectedRevision { stream, expected, actual });
        }
        let revision = current.unwrap_or(0);
        let end = store.end_position();
        Ok(AppendResult {
            first_revision: revision,
            last_revision: revision,
            first_position: end,
            last_position: end,
            duplicate: true,
        })
    })
    .await
}

fn success(result: &AppendResult) -> append_resp::Success {
    use append_resp::success::{CurrentRevisionOption, PositionOption};
    append_resp::Success {
        current_revision_option: Some(CurrentRevisionOption::CurrentRevision(result.last_revision)),
        position_option: Some(PositionOption::Position(append_resp::Position {
            commit_position: result.last_position,
            prepare_position: result.last_position,
        })),
    }
}

fn wrong_expected_version(
    expected: ExpectedRevision,
    actual: steledb::CurrentRevision,
) -> append_resp::WrongExpectedVersion {
    use append_resp::wrong_expected_version::*;
    let (current, current_2060) = match actual {
        steledb::CurrentRevision::Current(n) => {
            (CurrentRevisionOption::CurrentRevision(n), CurrentRevisionOption2060::CurrentRevision2060(n))
        }
        steledb::CurrentRevision::NoStream => (
            CurrentRevisionOption::CurrentNoStream(shared::Empty {}),
            CurrentRevisionOption2060::NoStream2060(shared::Empty {}),
        ),
    };
    let (expected_now, expected_2060) = match expected {
        ExpectedRevision::Exact(n) => {
            (ExpectedRevisionOption::ExpectedRevision(n), ExpectedRevisionOption2060::ExpectedRevision2060(n))
        }
        ExpectedRevision::Any => (
            ExpectedRevisionOption::ExpectedAny(shared::Empty {}),
            ExpectedRevisionOption2060::Any2060(shared::Empty {}),
        ),
        ExpectedRevision::StreamExists => (
            ExpectedRevisionOption::ExpectedStreamExists(shared::Empty {}),
            ExpectedRevisionOption2060::StreamExists2060(shared::Empty {}),
        ),
        // The old layout had no "no stream"; old servers sent u64::MAX.
        ExpectedRevision::NoStream => (
            ExpectedRevisionOption::ExpectedNoStream(shared::Empty {}),
            ExpectedRevisionOption2060::ExpectedRevision2060(u64::MAX),
        ),
    };
    append_resp::WrongExpectedVersion {
        current_revision_option_20_6_0: Some(current_2060),
        expected_revision_option_20_6_0: Some(expected_2060),
        current_revision_option: Some(current),
        expected_revision_option: Some(expected_now),
    }
}

/// One BatchAppend call: batches arrive (possibly split over several
/// messages with one correlation id) and are appended concurrently; each
/// gets its reply as soon as it is durable. A batch whose final message
/// never arrives (the client went away) is never written.
async fn batch_append(
    state: SharedState,
    mut incoming: Streaming<BatchAppendReq>,
    sender: mpsc::Sender<Result<BatchAppendResp, Status>>,
) {
    struct Partial {
        correlation: Option<shared::Uuid>,
        options: Option<batch_append_req::Options>,
        events: Vec<NewEvent>,
        size_bytes: usize,
        error: Option<Status>,
    }
    let size_bytes_max = state.config.limits.append_size_bytes_max;
    let permits = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    let mut partial: HashMap<Uuid, Partial> = HashMap::new();
    loop {
        let request = match incoming.message().await {
            Ok(Some(request)) => request,
            // The client ended the call or went away: unfinished batches are dropped.
            Ok(None) | Err(_) => break,
        };
        let correlation = match uuid_from_proto(request.correlation_id.as_ref()) {
            Ok(correlation) => correlation,
            Err(status) => {
                let _ = sender.send(Err(status)).await;
                return;
            }
        };
        if !partial.contains_key(&correlation) && partial.len() >= UNFINISHED_BATCHES_MAX {
            // Each unfinished batch holds its events in memory until its
            // final message: a call may not open them without end.
            let message = format!("more than {UNFINISHED_BATCHES_MAX} unfinished batches on one BatchAppend call");
            let _ = sender.send(Err(Status::resource_exhausted(message))).await;
            return;
        }
        let entry = partial.entry(correlation).or_insert_with(|| Partial {
            correlation: request.correlation_id.clone(),
            options: None,
            events: Vec::new(),
            size_bytes: 0,
            error: None,
        });
        if request.options.is_some() {
            entry.options = request.options;
        }
        for proposed in request.proposed_messages {
            if entry.error.is_some() {
                break;
            }
            match new_event(proposed.id.as_ref(), &proposed.metadata, proposed.custom_metadata, proposed.data) {
                Ok(event) => {
                    entry.size_bytes += event.size_bytes();
                    entry.events.push(event);
                    if entry.size_bytes > size_bytes_max {
                        let error =
                            AppendError::AppendTooLarge { size_bytes: entry.size_bytes, limit_bytes: size_bytes_max };
                        entry.error = Some(append_status(&error, size_bytes_max));
                        entry.events = Vec::new();
                    }
                }
                Err(status) => entry.error = Some(status),
            }
        }
        if !request.is_final {
            continue;
        }
        let batch = partial.remove(&correlation).expect("inserted above");
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (state, sender) = (state.clone(), sender.clone());
        tokio::spawn(async move {
            let reply = finish_batch(&state, batch.correlation, batch.options, batch.events, batch.error).await;
            let _ = sender.send(Ok(reply)).await;
            drop(permit);
        });
    }
}

async fn finish_batch(
    state: &SharedState,
    correlation_id: Option<shared::Uuid>,
    options: Option<batch_append_req::Options>,
    events: Vec<NewEvent>,
    error: Option<Status>,
) -> BatchAppendResp {
    use batch_append_req::options::ExpectedStreamPosition as E;
    let identifier = options.as_ref().and_then(|o| o.stream_identifier.clone());
    let expected_echo = options.as_ref().and_then(|o| o.expected_stream_position);
    let reply = |result| BatchAppendResp {
        correlation_id: correlation_id.clone(),
        stream_identifier: identifier.clone(),
        result: Some(result),
        expected_stream_position: expected_echo.map(|e| match e {
            E::StreamPosition(n) => batch_append_resp::ExpectedStreamPosition::StreamPosition(n),
            E::NoStream(()) => batch_append_resp::ExpectedStreamPosition::NoStream(()),
            E::Any(()) => batch_append_resp::ExpectedStreamPosition::Any(()),
            E::StreamExists(()) => batch_append_resp::ExpectedStreamPosition::StreamExists(()),
        }),
    };
    if let Some(status) = error {
        return reply(batch_append_resp::Result::Error(rpc_status(&status, None)));
    }
    let stream = match stream_name(identifier.as_ref()) {
        Ok(stream) => stream,
        Err(status) => return reply(batch_append_resp::Result::Error(rpc_status(&status, None))),
    };
    let expected = to_expected(expected_echo.map(|e| match e {
        E::StreamPosition(n) => ExpectedKind::Exact(n),
        E::NoStream(()) => ExpectedKind::NoStream,
        E::Any(()) => ExpectedKind::Any,
        E::StreamExists(()) => ExpectedKind::StreamExists,
    }));
    let Some(time_left) = batch_time_left(options.as_ref(), SystemTime::now()) else {
        return reply(batch_append_resp::Result::Error(timeout_status()));
    };
    let work = async {
        if events.is_empty() {
            check_only(state, stream.clone(), expected).await
        } else {
            bridge::append(state, vec![StreamAppend::new(stream.clone(), expected, events)])
                .await
                .map(|mut r| r.remove(0))
        }
    };
    // Past the deadline the client is told `Timeout`, as KurrentDB does: the
    // append may still be written (the writer cannot take it back), which is
    // what that reply means to clients.
    let Ok(outcome) = tokio::time::timeout(time_left, work).await else {
        return reply(batch_append_resp::Result::Error(timeout_status()));
    };
    match outcome {
        Ok(result) => {
            use batch_append_resp::success::{CurrentRevisionOption, PositionOption};
            reply(batch_append_resp::Result::Success(batch_append_resp::Success {
                current_revision_option: Some(CurrentRevisionOption::CurrentRevision(result.last_revision)),
                position_option: Some(PositionOption::Position(shared::AllStreamPosition {
                    commit_position: result.last_position,
                    prepare_position: result.last_position,
                })),
            }))
        }
        Err(error) => reply(batch_append_resp::Result::Error(batch_error(
            &error,
            &stream,
            state.config.limits.append_size_bytes_max,
        ))),
    }
}

/// The longest a batch may take: KurrentDB's write timeout, which also caps
/// the deadline clients send.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a batch has left, from its deadline; `None` when it has passed.
/// Field 7 (`deadline`, a `Duration`) is treated as KurrentDB's server does:
/// as a relative timeout, capped by the write timeout (clients send "now +
/// 10 s" in it, which the cap brings back to 10 s). Field 6 (a `Timestamp`,
/// clients of 21.10) is an absolute time.
fn batch_time_left(options: Option<&batch_append_req::Options>, now: SystemTime) -> Option<Duration> {
    use batch_append_req::options::DeadlineOption;
    let requested = match options.and_then(|o| o.deadline_option.as_ref()) {
        None => return Some(BATCH_TIMEOUT),
        Some(DeadlineOption::Deadline(relative)) => Duration::try_from(*relative).unwrap_or(Duration::ZERO),
        Some(DeadlineOption::Deadline21100(at)) => {
            let at = SystemTime::try_from(*at).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(requested.min(BATCH_TIMEOUT)).filter(|left| !left.is_zero())
}

fn timeout_status() -> rpc::Status {
    use prost::Message;
    rpc::Status {
        code: rpc::Code::DeadlineExceeded as i32,
        message: "Timeout expired".to_owned(),
        details: Some(prost_types::Any {
            type_url: "type.googleapis.com/event_store.client.Timeout".to_owned(),
            value: shared::Timeout {}.encode_to_vec(),
        }),
    }
}

/// A per-batch error as KurrentDB sends it: a google.rpc.Status with one
/// detail naming the failure.
fn batch_error(error: &AppendError, stream: &str, append_size_bytes_max: usize) -> rpc::Status {
    use prost::Message;
    let (code, name, detail) = match error {
        AppendError::WrongExpectedRevision { expected, actual, .. } => {
            use shared::wrong_expected_version::{CurrentStreamRevisionOption as C, ExpectedStreamPositionOption as X};
            let detail = shared::WrongExpectedVersion {
                current_stream_revision_option: Some(match actual {
                    steledb::CurrentRevision::Current(n) => C::CurrentStreamRevision(*n),
                    steledb::CurrentRevision::NoStream => C::CurrentNoStream(()),
                }),
                expected_stream_position_option: Some(match expected {
                    ExpectedRevision::Exact(n) => X::ExpectedStreamPosition(*n),
                    ExpectedRevision::Any => X::ExpectedAny(()),
                    ExpectedRevision::StreamExists => X::ExpectedStreamExists(()),
                    ExpectedRevision::NoStream => X::ExpectedNoStream(()),
                }),
            };
            (rpc::Code::AlreadyExists, "WrongExpectedVersion", detail.encode_to_vec())
        }
        AppendError::StreamDeleted { .. } => {
            let detail = shared::StreamDeleted { stream_identifier: Some(stream_identifier(stream)) };
            (rpc::Code::NotFound, "StreamDeleted", detail.encode_to_vec())
        }
        AppendError::AppendTooLarge { .. } | AppendError::EventTooLarge { .. } => {
            let detail = shared::MaximumAppendSizeExceeded {
                max_append_size: append_size_bytes_max.min(u32::MAX as usize) as u32,
            };
            (rpc::Code::InvalidArgument, "MaximumAppendSizeExceeded", detail.encode_to_vec())
        }
        AppendError::Overloaded { .. }
        | AppendError::NoSpace
        | AppendError::IndexBacklog { .. }
        | AppendError::WriterStopped { .. }
        | AppendError::Read(_) => (rpc::Code::Unavailable, "Unknown", shared::Unknown {}.encode_to_vec()),
        other => {
            let detail = shared::BadRequest { message: other.to_string() };
            (rpc::Code::InvalidArgument, "BadRequest", detail.encode_to_vec())
        }
    };
    rpc::Status {
        code: code as i32,
        message: error.to_string(),
        details: Some(prost_types::Any {
            type_url: format!("type.googleapis.com/event_store.client.{name}"),
            value: detail,
        }),
    }
}

fn rpc_status(status: &Status, details: Option<prost_types::Any>) -> rpc::Status {
    rpc::Status { code: status.code() as i32, message: status.message().to_owned(), details }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batch_append_req::options::DeadlineOption;

    fn with_deadline(deadline: Option<DeadlineOption>) -> batch_append_req::Options {
        batch_append_req::Options { deadline_option: deadline, ..Default::default() }
    }

    #[test]
    fn batch_deadlines() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let left = |deadline| batch_time_left(Some(&with_deadline(deadline)), now);
        assert_eq!(batch_time_left(None, now), Some(BATCH_TIMEOUT));
        assert_eq!(left(None), Some(BATCH_TIMEOUT));
        // What clients send in field 7: "now + 10 s" since the epoch, capped.
        let epoch_plus = prost_types::Duration { seconds: 1_764_000_010, nanos: 0 };
        assert_eq!(left(Some(DeadlineOption::Deadline(epoch_plus))), Some(BATCH_TIMEOUT));
        let short = prost_types::Duration { seconds: 0, nanos: 250_000_000 };
        assert_eq!(left(Some(DeadlineOption::Deadline(short))), Some(Duration::from_millis(250)));
        let negative = prost_types::Duration { seconds: -1, nanos: 0 };
        assert_eq!(left(Some(DeadlineOption::Deadline(negative))), None);
        // Field 6: an absolute time.
        let at = |seconds| Some(DeadlineOption::Deadline21100(prost_types::Timestamp { seconds, nanos: 0 }));
        assert_eq!(left(at(1_764_000_003)), Some(Duration::from_secs(3)));
        assert_eq!(left(at(1_763_999_999)), None, "already past");
        assert_eq!(left(at(1_764_009_999)), Some(BATCH_TIMEOUT));
    }

    // Hostile requests: whatever a client puts in the fields, decoding and
    // the conversions into store types answer with a value or a status,
    // never a panic. (The store then validates names and sizes itself.)
    mod fuzz {
        use super::*;
        use proptest::prelude::*;
        use prost::Message;

        fn any_text() -> impl Strategy<Value = String> {
            prop_oneof!["\\PC{0,40}", "[(?!.*)$^|\\\\\\[\\]{}*+?a-z0-9-]{0,40}"]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            #[test]
            fn arbitrary_bytes_as_requests(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                if let Ok(request) = ReadReq::decode(&bytes[..]) {
                    if let Some(options) = request.options {
                        if let Some(read_req::options::FilterOption::Filter(filter)) = options.filter_option {
                            let _ = to_filter(filter);
                        }
                        if let Some(read_req::options::StreamOption::Stream(stream)) = options.stream_option {
                            let _ = stream_name(stream.stream_identifier.as_ref());
                            let _ = stream_start(stream.revision_option);
                        }
                    }
                }
                if let Ok(request) = BatchAppendReq::decode(&bytes[..]) {
                    let _ = uuid_from_proto(request.correlation_id.as_ref());
                    let _ = batch_time_left(request.options.as_ref(), SystemTime::now());
                    for proposed in request.proposed_messages {
                        let _ = new_event(proposed.id.as_ref(), &proposed.metadata, proposed.custom_metadata, proposed.data);
                    }
                }
                if let Ok(request) = AppendReq::decode(&bytes[..]) {
                    if let Some(append_req::Content::ProposedMessage(proposed)) = request.content {
                        let _ = new_event(proposed.id.as_ref(), &proposed.metadata, proposed.custom_metadata, proposed.data);
                    }
                }
            }

            #[test]
            fn arbitrary_filters(regex in any_text(), prefixes in proptest::collection::vec(any_text(), 0..4), by_stream: bool, max: u32) {
                use read_req::options::filter_options::{Expression, Filter, Window};
                let expression = Expression { regex, prefix: prefixes };
                let filter = if by_stream { Filter::StreamIdentifier(expression) } else { Filter::EventType(expression) };
                let options = read_req::options::FilterOptions {
                    filter: Some(filter),
                    window: Some(Window::Max(max)),
                    checkpoint_interval_multiplier: max,
                };
                if let Ok((filter, interval)) = to_filter(options) {
                    prop_assert!(interval >= 1);
                    let _ = filter.matches("some-stream", "SomeType");
                }
            }

            #[test]
            fn arbitrary_ids_and_deadlines(text in any_text(), high: i64, low: i64, seconds: i64, nanos: i32) {
                let _ = uuid_from_proto(Some(&shared::Uuid { value: Some(shared::uuid::Value::String(text)) }));
                let structured = shared::uuid::Structured { most_significant_bits: high, least_significant_bits: low };
                let id = uuid_from_proto(Some(&shared::Uuid { value: Some(shared::uuid::Value::Structured(structured)) }));
                prop_assert!(id.is_ok());
                use batch_append_req::options::DeadlineOption;
                let relative = DeadlineOption::Deadline(prost_types::Duration { seconds, nanos });
                let absolute = DeadlineOption::Deadline21100(prost_types::Timestamp { seconds, nanos });
                for deadline in [relative, absolute] {
                    let left = batch_time_left(Some(&with_deadline(Some(deadline))), SystemTime::now());
                    prop_assert!(left.is_none_or(|left| left <= BATCH_TIMEOUT));
                }
            }
        }
    }
}
