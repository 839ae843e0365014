//! A small gRPC client for the CLI's commands against a running server,
//! speaking the same KurrentDB protocol as the official clients (the
//! generated client of our own `.proto` files). Wire details stay here:
//! the commands see the store's `RecordedEvent`, `NewEvent` and `Direction`,
//! and [`Expected`] and [`RemoteError`].

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use stele_server::proto::event_store::client::streams::{
    append_req, append_resp, read_req, read_resp, streams_client::StreamsClient, tombstone_req, tombstone_resp,
    AppendReq, ReadReq, ReadResp, TombstoneReq,
};
use stele_server::proto::event_store::client::{uuid, Empty, StreamIdentifier, Uuid as WireUuid};
use steledb::{Direction, NewEvent, RecordedEvent};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// The connection string the commands use when given none.
pub const DEFAULT_TARGET: &str = "kurrentdb://127.0.0.1:2113?tls=false";

/// How long connecting may take before the command gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `kurrentdb://host:port?tls=false`, `esdb://...` or `http://host:port` to an endpoint URI.
pub fn endpoint_uri(target: &str) -> Result<String, String> {
    let rest = ["kurrentdb://", "kurrent://", "esdb://", "kdb://", "http://"]
        .iter()
        .find_map(|scheme| target.strip_prefix(scheme))
        .ok_or_else(|| format!("'{target}' is not a connection string like kurrentdb://127.0.0.1:2113?tls=false"))?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    if query.split('&').any(|pair| pair.eq_ignore_ascii_case("tls=true")) {
        return Err("TLS is not supported yet; use ?tls=false".to_owned());
    }
    let authority = authority.trim_end_matches('/');
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if authority.is_empty() {
        return Err(format!("'{target}' names no host"));
    }
    Ok(format!("http://{authority}"))
}

pub async fn connect(target: &str) -> Result<StreamsClient<Channel>, String> {
    let uri = endpoint_uri(target)?;
    let channel = Endpoint::from_shared(uri.clone())
        .map_err(|e| format!("'{target}' does not name a valid address: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {uri}: {}", error_chain(&e)))?;
    Ok(StreamsClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

/// An error and its causes, as one line ("transport error: ... : Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn identifier(stream: &str) -> Option<StreamIdentifier> {
    Some(StreamIdentifier { stream_name: stream.as_bytes().to_vec() })
}

// ------------------------------------------------------------------ errors

/// What a stream's expected revision may be, as the protocol knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

impl std::str::FromStr for Expected {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "any" => Ok(Self::Any),
            "no_stream" | "no-stream" => Ok(Self::NoStream),
            "stream_exists" | "stream-exists" => Ok(Self::StreamExists),
            other => other.parse().map(Self::Exact).map_err(|_| {
                format!("'{other}' is not an expected revision: any, no_stream, stream_exists or a revision number")
            }),
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no_stream"),
            Self::StreamExists => f.write_str("stream_exists"),
            Self::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// Where a stream is: its last revision, or not there at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Current {
    NoStream,
    Revision(u64),
}

impl fmt::Display for Current {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStream => f.write_str("no_stream"),
            Self::Revision(n) => write!(f, "{n}"),
        }
    }
}

/// A failed call, with the cases commands act on kept apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    WrongExpectedRevision { stream: String, expected: Expected, actual: Current },
    StreamNotFound { stream: String },
    StreamDeleted { stream: String },
    Other(String),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongExpectedRevision { stream, expected, actual } => {
                write!(f, "wrong expected revision for stream '{stream}': expected {expected}, actual {actual}")
            }
            Self::StreamNotFound { stream } => write!(f, "stream '{stream}' not found"),
            Self::StreamDeleted { stream } => write!(f, "stream '{stream}' is deleted"),
            Self::Other(message) => f.write_str(message),
        }
    }
}

impl From<RemoteError> for String {
    fn from(error: RemoteError) -> Self {
        error.to_string()
    }
}

/// A gRPC status as one of our errors; the server names well-known
/// failures in the `exception` metadata, as KurrentDB does.
fn from_status(status: &Status, stream: &str) -> RemoteError {
    let metadata = |key: &str| status.metadata().get(key).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let stream = metadata("stream-name").unwrap_or_else(|| stream.to_owned());
    match metadata("exception").as_deref() {
        Some("stream-deleted") => return RemoteError::StreamDeleted { stream },
        Some("stream-not-found") => return RemoteError::StreamNotFound { stream },
        Some("wrong-expected-version") => {
            let expected = metadata("expected-version").and_then(|v| legacy_expected(&v));
            let actual = metadata("actual-version").and_then(|v| legacy_current(&v));
            if let (Some(expected), Some(actual)) = (expected, actual) {
                return RemoteError::WrongExpectedRevision { stream, expected, actual };
            }
        }
        _ => {}
    }
    let message = match status.code() {
        Code::Unavailable => format!("the server is unavailable: {}", status.message()),
        Code::Unimplemented => format!("the server does not support this call: {}", status.message()),
        code => format!("{} (gRPC status {code:?})", status.message()),
    };
    RemoteError::Other(message)
}

/// KurrentDB's signed encoding of an expected revision in error metadata.
fn legacy_expected(text: &str) -> Option<Expected> {
    match text {
        "-1" => Some(Expected::NoStream),
        "-2" => Some(Expected::Any),
        "-4" => Some(Expected::StreamExists),
        other => other.parse().ok().map(Expected::Exact),
    }
}

fn legacy_current(text: &str) -> Option<Current> {
    match text {
        "-1" => Some(Current::NoStream),
        other => other.parse().ok().map(Current::Revision),
    }
}

// ------------------------------------------------------------------ append

fn proposed_message(event: NewEvent) -> AppendReq {
    let metadata =
        HashMap::from([("type".to_owned(), event.event_type), ("content-type".to_owned(), event.content_type)]);
    AppendReq {
        content: Some(append_req::Content::ProposedMessage(append_req::ProposedMessage {
            id: Some(WireUuid { value: Some(uuid::Value::String(event.id.to_string())) }),
            metadata,
            custom_metadata: event.metadata,
            data: event.data,
        })),
    }
}

/// One proposed JSON event as the Append call carries it.
pub fn proposed(id: ::uuid::Uuid, event_type: &str, data: Vec<u8>) -> AppendReq {
    proposed_message(NewEvent {
        id,
        event_type: event_type.to_owned(),
        content_type: "application/json".to_owned(),
        data,
        metadata: Vec::new(),
    })
}

/// What a successful append reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stream's last revision after the append (the revision to expect next time).
    pub next_expected_revision: Option<u64>,
    /// The `$all` position of the last event written.
    pub position: Option<u64>,
}

async fn append_requests(
    client: &mut StreamsClient<Channel>,
    stream: &str,
    expected: Expected,
    events: Vec<AppendReq>,
) -> Result<Appended, RemoteError> {
    use append_req::options::ExpectedStreamRevision as E;
    let expected_wire = match expected {
        Expected::Any => E::Any(Empty {}),
        Expected::NoStream => E::NoStream(Empty {}),
        Expected::StreamExists => E::StreamExists(Empty {}),
        Expected::Exact(n) => E::Revision(n),
    };
    let options = AppendReq {
        content: Some(append_req::Content::Options(append_req::Options {
            stream_identifier: identifier(stream),
            expected_stream_revision: Some(expected_wire),
        })),
    };
    let requests = std::iter::once(options).chain(events);
    let reply =
        client.append(tokio_stream::iter(requests)).await.map_err(|status| from_status(&status, stream))?.into_inner();
    match reply.result {
        Some(append_resp::Result::Success(success)) => {
            use append_resp::success::{CurrentRevisionOption, PositionOption};
            Ok(Appended {
                next_expected_revision: match success.current_revision_option {
                    Some(CurrentRevisionOption::CurrentRevision(revision)) => Some(revision),
                    _ => None,
                },
                position: match success.position_option {
                    Some(PositionOption::Position(position)) => Some(position.commit_position),
                    _ => None,
                },
            })
        }
        Some(append_resp::Result::WrongExpectedVersion(wrong)) => {
            use append_resp::wrong_expected_version::{CurrentRevisionOption, ExpectedRevisionOption};
            let actual = match wrong.current_revision_option {
                Some(CurrentRevisionOption::CurrentRevision(n)) => Current::Revision(n),
                Some(CurrentRevisionOption::CurrentNoStream(_)) | None => Current::NoStream,
            };
            let expected = match wrong.expected_revision_option {
                Some(ExpectedRevisionOption::ExpectedRevision(n)) => Expected::Exact(n),
                Some(ExpectedRevisionOption::ExpectedAny(_)) => Expected::Any,
                Some(ExpectedRevisionOption::ExpectedStreamExists(_)) => Expected::StreamExists,
                Some(ExpectedRevisionOption::ExpectedNoStream(_)) => Expected::NoStream,
                None => expected,
            };
            Err(RemoteError::WrongExpectedRevision { stream: stream.to_owned(), expected, actual })
        }
        None => Err(RemoteError::Other("the server sent an empty append reply".to_owned())),
    }
}

/// Appends `events` to `stream` in one call (all or nothing).
pub async fn append(
    client: &mut StreamsClient<Channel>,
    stream: &str,
    expected: Expected,
    events: Vec<NewEvent>,
) -> Result<Appended, RemoteError> {
    append_requests(client, stream, expected, events.into_iter().map(proposed_message).collect()).await
}

/// Appends with expected revision `any`; returns the stream's new revision.
pub async fn append_any(
    client: &mut StreamsClient<Channel>,
    stream: &str,
    events: Vec<AppendReq>,
) -> Result<u64, String> {
    let appended = append_requests(client, stream, Expected::Any, events).await?;
    appended.next_expected_revision.ok_or_else(|| "append succeeded without a revision".to_owned())
}

/// Deletes `stream` for good; returns the tombstone's `$all` position.
pub async fn tombstone(
    client: &mut StreamsClient<Channel>,
    stream: &str,
    expected: Expected,
) -> Result<Option<u64>, RemoteError> {
    use tombstone_req::options::ExpectedStreamRevision as E;
    let expected_wire = match expected {
        Expected::Any => E::Any(Empty {}),
        Expected::NoStream => E::NoStream(Empty {}),
        Expected::StreamExists => E::StreamExists(Empty {}),
        Expected::Exact(n) => E::Revision(n),
    };
    let request = TombstoneReq {
        options: Some(tombstone_req::Options {
            stream_identifier: identifier(stream),
            expected_stream_revision: Some(expected_wire),
        }),
    };
    let reply = client.tombstone(request).await.map_err(|status| from_status(&status, stream))?.into_inner();
    Ok(match reply.position_option {
        Some(tombstone_resp::PositionOption::Position(position)) => Some(position.commit_position),
        _ => None,
    })
}

// -------------------------------------------------------------------- read

/// What a read or subscription covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stream(String),
    All,
}

impl Source {
    /// `$all` means the whole log; any other name is a stream.
    pub fn parse(name: &str) -> Self {
        if name == "$all" {
            Self::All
        } else {
            Self::Stream(name.to_owned())
        }
    }
}

/// Where a read starts: a stream revision or a `$all` position for `At`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Start,
    End,
    At(u64),
}

impl std::str::FromStr for ReadFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "start" => Ok(Self::Start),
            "end" => Ok(Self::End),
            other => other
                .parse()
                .map(Self::At)
                .map_err(|_| format!("'{other}' is not a starting point: start, end or a number")),
        }
    }
}

/// One message of a read or subscription that the commands care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Event(RecordedEvent),
    /// A subscription has delivered everything there was and is now live.
    CaughtUp,
    /// A live subscription fell behind and is catching up again.
    FellBehind,
}

/// The replies of one Read call, decoded as they arrive.
pub struct Reader {
    replies: tonic::Streaming<ReadResp>,
    source: String,
}

impl Reader {
    /// The next event or subscription notice; None when the server ended the call.
    pub async fn next(&mut self) -> Result<Option<Message>, RemoteError> {
        loop {
            let reply = self.replies.message().await.map_err(|status| from_status(&status, &self.source))?;
            let Some(reply) = reply else { return Ok(None) };
            match reply.content {
                Some(read_resp::Content::Event(event)) => return decode_event(event).map(|e| Some(Message::Event(e))),
                Some(read_resp::Content::StreamNotFound(_)) => {
                    return Err(RemoteError::StreamNotFound { stream: self.source.clone() })
                }
                Some(read_resp::Content::CaughtUp(_)) => return Ok(Some(Message::CaughtUp)),
                Some(read_resp::Content::FellBehind(_)) => return Ok(Some(Message::FellBehind)),
                // Confirmations, checkpoints and stream positions carry nothing we show.
                _ => continue,
            }
        }
    }

    /// The next event of a read; None at its end.
    pub async fn next_event(&mut self) -> Result<Option<RecordedEvent>, RemoteError> {
        loop {
            match self.next().await? {
                Some(Message::Event(event)) => return Ok(Some(event)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }
}

fn decode_event(reply: read_resp::ReadEvent) -> Result<RecordedEvent, RemoteError> {
    let bad = |what: &str| RemoteError::Other(format!("the server sent an event with {what}"));
    let recorded = reply.event.ok_or_else(|| bad("no recorded event"))?;
    let id = match recorded.id.and_then(|id| id.value) {
        Some(uuid::Value::String(text)) => ::uuid::Uuid::parse_str(&text).map_err(|_| bad("an invalid id"))?,
        Some(uuid::Value::Structured(s)) => {
            ::uuid::Uuid::from_u64_pair(s.most_significant_bits as u64, s.least_significant_bits as u64)
        }
        None => return Err(bad("no id")),
    };
    let stream = recorded.stream_identifier.map(|s| s.stream_name).unwrap_or_default();
    let stream = String::from_utf8(stream).map_err(|_| bad("a stream name that is not UTF-8"))?;
    let mut metadata = recorded.metadata;
    let event_type = metadata.remove("type").ok_or_else(|| bad("no 'type'"))?;
    let content_type = metadata.remove("content-type").unwrap_or_default();
    // `created` is in ticks of 100 ns since the Unix epoch.
    let created = metadata.remove("created").ok_or_else(|| bad("no 'created' time"))?;
    let created: u64 = created.parse().map_err(|_| bad("an invalid 'created' time"))?;
    Ok(RecordedEvent::new(steledb::RecordedEventParts {
        id,
        stream: &stream,
        revision: recorded.stream_revision,
        position: recorded.commit_position,
        event_type: &event_type,
        content_type: &content_type,
        data: &recorded.data,
        metadata: &recorded.custom_metadata,
        recorded_at_us: created / 10,
    }))
}

fn read_options(
    stream_option: read_req::options::StreamOption,
    direction: Direction,
    count_option: read_req::options::CountOption,
) -> ReadReq {
    use read_req::options::{uuid_option, FilterOption, UuidOption};
    ReadReq {
        options: Some(read_req::Options {
            read_direction: match direction {
                Direction::Forward => 0,
                Direction::Backward => 1,
            },
            resolve_links: false,
            uuid_option: Some(UuidOption { content: Some(uuid_option::Content::String(Empty {})) }),
            control_option: None,
            stream_option: Some(stream_option),
            count_option: Some(count_option),
            filter_option: Some(FilterOption::NoFilter(Empty {})),
        }),
    }
}

fn stream_option(source: &Source, from: ReadFrom) -> read_req::options::StreamOption {
    use read_req::options::all_options::AllOption;
    use read_req::options::stream_options::RevisionOption;
    use read_req::options::{AllOptions, Position, StreamOption, StreamOptions};
    match source {
        Source::Stream(stream) => StreamOption::Stream(StreamOptions {
            stream_identifier: identifier(stream),
            revision_option: Some(match from {
                ReadFrom::Start => RevisionOption::Start(Empty {}),
                ReadFrom::End => RevisionOption::End(Empty {}),
                ReadFrom::At(revision) => RevisionOption::Revision(revision),
            }),
        }),
        Source::All => StreamOption::All(AllOptions {
            all_option: Some(match from {
                ReadFrom::Start => AllOption::Start(Empty {}),
                ReadFrom::End => AllOption::End(Empty {}),
                ReadFrom::At(position) => {
                    AllOption::Position(Position { commit_position: position, prepare_position: position })
                }
            }),
        }),
    }
}

fn source_name(source: &Source) -> String {
    match source {
        Source::Stream(stream) => stream.clone(),
        Source::All => "$all".to_owned(),
    }
}

/// Reads up to `count` events. `from` is inclusive, except backwards in
/// `$all`, where a position reads the events before it (as in KurrentDB).
pub async fn read(
    client: &mut StreamsClient<Channel>,
    source: &Source,
    from: ReadFrom,
    direction: Direction,
    count: u64,
) -> Result<Reader, RemoteError> {
    use read_req::options::CountOption;
    let request = read_options(stream_option(source, from), direction, CountOption::Count(count));
    let name = source_name(source);
    let replies = client.read(request).await.map_err(|status| from_status(&status, &name))?.into_inner();
    Ok(Reader { replies, source: name })
}

/// A catch-up subscription: the events after `from` (exclusive, as the
/// protocol has it: a revision, or the position of an event in `$all`), then
/// live ones, until the server ends it.
pub async fn subscribe(
    client: &mut StreamsClient<Channel>,
    source: &Source,
    from: ReadFrom,
) -> Result<Reader, RemoteError> {
    use read_req::options::{CountOption, SubscriptionOptions};
    let request = read_options(
        stream_option(source, from),
        Direction::Forward,
        CountOption::Subscription(SubscriptionOptions {}),
    );
    let name = source_name(source);
    let replies = client.read(request).await.map_err(|status| from_status(&status, &name))?.into_inner();
    Ok(Reader { replies, source: name })
}

/// Reads up to `count` events of a stream from the start; returns how many
/// came (for the benchmark: counted, not decoded).
pub async fn read_stream_count(client: &mut StreamsClient<Channel>, stream: &str, count: u64) -> Result<u64, String> {
    use read_req::options::CountOption;
    let source = Source::Stream(stream.to_owned());
    let request = read_options(stream_option(&source, ReadFrom::Start), Direction::Forward, CountOption::Count(count));
    let mut replies = client.read(request).await.map_err(|status| from_status(&status, stream))?.into_inner();
    let mut events = 0;
    while let Some(reply) = replies.message().await.map_err(|status| from_status(&status, stream))? {
        match reply.content {
            Some(read_resp::Content::Event(_)) => events += 1,
            Some(read_resp::Content::StreamNotFound(_)) => return Err(format!("stream '{stream}' not found")),
            _ => {}
        }
    }
    Ok(events)
}

/// Subscribes to `$all` from the start and counts events until caught up
/// (for the benchmark: counted, not decoded).
pub async fn catch_up_all(client: &mut StreamsClient<Channel>) -> Result<u64, String> {
    use read_req::options::{CountOption, SubscriptionOptions};
    let request = read_options(
        stream_option(&Source::All, ReadFrom::Start),
        Direction::Forward,
        CountOption::Subscription(SubscriptionOptions {}),
    );
    let mut replies = client.read(request).await.map_err(|status| from_status(&status, "$all"))?.into_inner();
    let mut events = 0;
    while let Some(reply) = replies.message().await.map_err(|status| from_status(&status, "$all"))? {
        match reply.content {
            Some(read_resp::Content::Event(_)) => events += 1,
            Some(read_resp::Content::CaughtUp(_)) => return Ok(events),
            _ => {}
        }
    }
    Err("the subscription ended before catching up".to_owned())
}
