//! The CLI's commands against a running server, speaking the same
//! KurrentDB protocol as the official clients. Connection strings, status
//! decoding, the wire <-> store conversions and the in-place decoding of
//! read replies are `steledb-client`'s; the calls the toolkit has no use
//! for (streamed reads of any length, subscriptions shown as they come,
//! KurrentDB appends, tombstones) are here. The commands see the store's
//! `RecordedEvent`, `NewEvent` and `Direction`, and [`Expected`] and
//! [`RemoteError`].

use std::fmt;

use steledb::{CurrentRevision, Direction, ExpectedRevision, NewEvent, RecordedEvent};
use steledb_client::convert::{
    all_subscription_request, proposed_message, read_request, stream_identifier as identifier,
    stream_subscription_request, SubscriptionStart,
};
use steledb_client::proto::event_store::client::streams::{
    append_req, append_resp, batch_append_req, batch_append_resp, read_req, tombstone_req, tombstone_resp, AppendReq,
    BatchAppendReq, BatchAppendResp, TombstoneReq,
};
use steledb_client::proto::event_store::client::{uuid as wire_uuid, Empty, Uuid as WireUuid};
use steledb_client::read_codec::ReadItem;
use steledb_client::{Client, ClientError};
use tonic::Status;

/// The connection string the commands use when given none.
pub const DEFAULT_TARGET: &str = steledb_client::DEFAULT_CONNECTION_STRING;

/// Connects to the server. Reads go through `steledb-client`, which decodes
/// replies in place; appends and tombstones through the generated
/// `Streams` client on the same connection (`Client::streams`).
pub async fn connect(target: &str) -> Result<Client, String> {
    Client::connect(target).await.map_err(|e| e.to_string())
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

impl From<ExpectedRevision> for Expected {
    fn from(expected: ExpectedRevision) -> Self {
        match expected {
            ExpectedRevision::Any => Self::Any,
            ExpectedRevision::NoStream => Self::NoStream,
            ExpectedRevision::StreamExists => Self::StreamExists,
            ExpectedRevision::Exact(n) => Self::Exact(n),
        }
    }
}

impl From<CurrentRevision> for Current {
    fn from(current: CurrentRevision) -> Self {
        match current {
            CurrentRevision::NoStream => Self::NoStream,
            CurrentRevision::Current(n) => Self::Revision(n),
        }
    }
}

impl From<ClientError> for RemoteError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::WrongExpectedRevision { stream, expected, actual } => {
                Self::WrongExpectedRevision { stream, expected: expected.into(), actual: actual.into() }
            }
            ClientError::StreamNotFound { stream } => Self::StreamNotFound { stream },
            ClientError::StreamDeleted { stream } => Self::StreamDeleted { stream },
            other => Self::Other(other.to_string()),
        }
    }
}

fn from_status(status: &Status, stream: &str) -> RemoteError {
    ClientError::from_status(status, stream).into()
}

// ------------------------------------------------------------------ append

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

/// One whole append (its only message, `is_final`) on a `BatchAppend`
/// call, with expected revision `any`: how the .NET client sends each
/// append over one long-lived call.
pub fn batch_append_request(correlation: ::uuid::Uuid, stream: &str, events: Vec<NewEvent>) -> BatchAppendReq {
    let wire = |id: ::uuid::Uuid| Some(WireUuid { value: Some(wire_uuid::Value::String(id.to_string())) });
    let proposed_messages = events
        .into_iter()
        .map(|event| batch_append_req::ProposedMessage {
            id: wire(event.id),
            metadata: [("type".to_owned(), event.event_type), ("content-type".to_owned(), event.content_type)].into(),
            custom_metadata: event.metadata,
            data: event.data,
        })
        .collect();
    BatchAppendReq {
        correlation_id: wire(correlation),
        options: Some(batch_append_req::Options {
            stream_identifier: identifier(stream),
            expected_stream_position: Some(batch_append_req::options::ExpectedStreamPosition::Any(())),
            deadline_option: None,
        }),
        proposed_messages,
        is_final: true,
    }
}

/// A `BatchAppend` reply as success or the server's message.
pub fn batch_append_outcome(reply: BatchAppendResp) -> Result<(), String> {
    match reply.result {
        Some(batch_append_resp::Result::Success(_)) => Ok(()),
        Some(batch_append_resp::Result::Error(status)) => Err(format!("batch append refused: {}", status.message)),
        None => Err("the server sent an empty batch append reply".to_owned()),
    }
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
    client: &Client,
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
    let reply = client
        .streams()
        .append(tokio_stream::iter(requests))
        .await
        .map_err(|status| from_status(&status, stream))?
        .into_inner();
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
    client: &Client,
    stream: &str,
    expected: Expected,
    events: Vec<NewEvent>,
) -> Result<Appended, RemoteError> {
    append_requests(client, stream, expected, events.into_iter().map(proposed_message).collect()).await
}

/// Appends with expected revision `any`; returns the stream's new revision.
pub async fn append_any(client: &Client, stream: &str, events: Vec<AppendReq>) -> Result<u64, String> {
    let appended = append_requests(client, stream, Expected::Any, events).await?;
    appended.next_expected_revision.ok_or_else(|| "append succeeded without a revision".to_owned())
}

/// Deletes `stream` for good; returns the tombstone's `$all` position.
pub async fn tombstone(client: &Client, stream: &str, expected: Expected) -> Result<Option<u64>, RemoteError> {
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
    let reply = client.streams().tombstone(request).await.map_err(|status| from_status(&status, stream))?.into_inner();
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
    replies: tonic::Streaming<ReadItem>,
    source: String,
}

impl Reader {
    /// The next event or subscription notice; None when the server ended the call.
    pub async fn next(&mut self) -> Result<Option<Message>, RemoteError> {
        loop {
            let reply = self.replies.message().await.map_err(|status| from_status(&status, &self.source))?;
            let Some(reply) = reply else { return Ok(None) };
            match reply {
                ReadItem::Event(event) => return Ok(Some(Message::Event(event))),
                ReadItem::StreamNotFound => return Err(RemoteError::StreamNotFound { stream: self.source.clone() }),
                ReadItem::CaughtUp => return Ok(Some(Message::CaughtUp)),
                ReadItem::FellBehind => return Ok(Some(Message::FellBehind)),
                ReadItem::Invalid { message } => return Err(ClientError::Protocol { message }.into()),
                // Confirmations, checkpoints and stream positions carry nothing we show.
                ReadItem::Checkpoint { .. } | ReadItem::Other => continue,
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
    client: &Client,
    source: &Source,
    from: ReadFrom,
    direction: Direction,
    count: u64,
) -> Result<Reader, RemoteError> {
    use read_req::options::CountOption;
    let request = read_request(stream_option(source, from), direction, CountOption::Count(count));
    let name = source_name(source);
    let replies = client.read_items(request).await.map_err(|status| from_status(&status, &name))?;
    Ok(Reader { replies, source: name })
}

/// A catch-up subscription: the events after `from` (exclusive, as the
/// protocol has it: a revision, or the position of an event in `$all`), then
/// live ones, until the server ends it.
pub async fn subscribe(client: &Client, source: &Source, from: ReadFrom) -> Result<Reader, RemoteError> {
    let start = match from {
        ReadFrom::Start => SubscriptionStart::Start,
        ReadFrom::End => SubscriptionStart::End,
        ReadFrom::At(after) => SubscriptionStart::After(after),
    };
    let request = match source {
        Source::Stream(stream) => stream_subscription_request(stream, start),
        // Unfiltered: no checkpoints, so their interval does not matter.
        Source::All => all_subscription_request(start, None, 1),
    };
    let name = source_name(source);
    let replies = client.read_items(request).await.map_err(|status| from_status(&status, &name))?;
    Ok(Reader { replies, source: name })
}
