//! Wire messages <-> the store's value types, for both protocols this
//! client speaks: KurrentDB's `Streams` (reads, and the CLI's appends) and
//! our `stele.streams.v1.MultiStreamAppend` (the toolkit's appends).

use std::collections::HashMap;

use steledb::{
    AppendResult, CurrentRevision, Direction, EventFilter, ExpectedRevision, NewEvent, RecordedEvent, StreamAppend,
};

use crate::proto::event_store::client::streams::{append_req, read_req, read_resp, AppendReq, ReadReq};
use crate::proto::event_store::client::{uuid, Empty, StreamIdentifier, Uuid as WireUuid};
use crate::proto::stele::streams::v1 as multi;
use crate::ClientError;

pub fn stream_identifier(stream: &str) -> Option<StreamIdentifier> {
    Some(StreamIdentifier { stream_name: stream.as_bytes().to_vec() })
}

// ----------------------------------------------------------- KurrentDB Streams

/// One event as a KurrentDB `Append` call proposes it: type and content
/// type go in the metadata map, which the server requires.
pub fn proposed_message(event: NewEvent) -> AppendReq {
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

/// A `Read` request; events are asked for with ids as strings.
pub fn read_request(
    stream_option: read_req::options::StreamOption,
    direction: Direction,
    count_option: read_req::options::CountOption,
) -> ReadReq {
    use read_req::options::{uuid_option, FilterOption, UuidOption};
    ReadReq {
        options: Some(read_req::Options {
            read_direction: match direction {
                Direction::Forward => read_req::options::ReadDirection::Forwards as i32,
                Direction::Backward => read_req::options::ReadDirection::Backwards as i32,
            },
            resolve_links: false,
            // Two varints instead of 36 characters: cheaper to encode on
            // the server and to parse here.
            uuid_option: Some(UuidOption { content: Some(uuid_option::Content::Structured(Empty {})) }),
            control_option: None,
            stream_option: Some(stream_option),
            count_option: Some(count_option),
            filter_option: Some(FilterOption::NoFilter(Empty {})),
        }),
    }
}

/// Reads `count` events of `stream` from `from_revision` (inclusive), or
/// backwards from its end when `from_revision` is None.
pub fn stream_read_request(stream: &str, from_revision: Option<u64>, direction: Direction, count: u64) -> ReadReq {
    use read_req::options::stream_options::RevisionOption;
    use read_req::options::{CountOption, StreamOption, StreamOptions};
    let revision_option = match from_revision {
        Some(revision) => RevisionOption::Revision(revision),
        None => RevisionOption::End(Empty {}),
    };
    let options = StreamOption::Stream(StreamOptions {
        stream_identifier: stream_identifier(stream),
        revision_option: Some(revision_option),
    });
    read_request(options, direction, CountOption::Count(count))
}

/// Where a subscription starts. Starts name the last thing already seen,
/// as in KurrentDB's protocol: the subscription delivers what comes after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStart {
    /// From the first event.
    Start,
    /// After the event at this `$all` position (or, for a stream, revision).
    After(u64),
    /// Only what is appended from now on.
    End,
}

/// A catch-up subscription to `$all`, filtered when `filter` is set; a
/// filtered one reports a checkpoint every `checkpoint_every_records`
/// records it passes over.
pub fn all_subscription_request(
    start: SubscriptionStart,
    filter: Option<&EventFilter>,
    checkpoint_every_records: u32,
) -> ReadReq {
    use read_req::options::all_options::AllOption;
    use read_req::options::Position;
    use read_req::options::{AllOptions, CountOption, FilterOption, StreamOption, SubscriptionOptions};
    let all_option = match start {
        SubscriptionStart::Start => AllOption::Start(Empty {}),
        SubscriptionStart::After(p) => AllOption::Position(Position { commit_position: p, prepare_position: p }),
        SubscriptionStart::End => AllOption::End(Empty {}),
    };
    let options = StreamOption::All(AllOptions { all_option: Some(all_option) });
    let mut request = read_request(options, Direction::Forward, CountOption::Subscription(SubscriptionOptions {}));
    if let (Some(filter), Some(options)) = (filter, request.options.as_mut()) {
        options.filter_option = Some(FilterOption::Filter(filter_options(filter, checkpoint_every_records)));
    }
    request
}

/// A catch-up subscription to one stream.
pub fn stream_subscription_request(stream: &str, start: SubscriptionStart) -> ReadReq {
    use read_req::options::stream_options::RevisionOption;
    use read_req::options::{CountOption, StreamOption, StreamOptions, SubscriptionOptions};
    let revision_option = match start {
        SubscriptionStart::Start => RevisionOption::Start(Empty {}),
        SubscriptionStart::After(revision) => RevisionOption::Revision(revision),
        SubscriptionStart::End => RevisionOption::End(Empty {}),
    };
    let options = StreamOption::Stream(StreamOptions {
        stream_identifier: stream_identifier(stream),
        revision_option: Some(revision_option),
    });
    read_request(options, Direction::Forward, CountOption::Subscription(SubscriptionOptions {}))
}

/// The last event of `$all`: one event, backwards from the end.
pub fn last_event_request() -> ReadReq {
    use read_req::options::all_options::AllOption;
    use read_req::options::{AllOptions, CountOption, StreamOption};
    let options = StreamOption::All(AllOptions { all_option: Some(AllOption::End(Empty {})) });
    read_request(options, Direction::Backward, CountOption::Count(1))
}

/// The engine's filter as the protocol's: prefixes or a regular
/// expression, on stream names or on event types.
pub fn filter_options(filter: &EventFilter, checkpoint_every_records: u32) -> read_req::options::FilterOptions {
    use read_req::options::filter_options::{Expression, Filter, Window};
    let prefixes = |prefix: &[String]| Expression { regex: String::new(), prefix: prefix.to_vec() };
    // An empty pattern matches everything here, but an empty `regex` on the
    // wire means "no regex" (a prefix filter with no prefixes matches
    // nothing): send one that matches everything instead.
    let regex = |pattern: &steledb::Pattern| {
        let source = if pattern.as_str().is_empty() { "^" } else { pattern.as_str() };
        Expression { regex: source.to_owned(), prefix: Vec::new() }
    };
    let filter = match filter {
        EventFilter::StreamPrefix(prefix) => Filter::StreamIdentifier(prefixes(prefix)),
        EventFilter::EventTypePrefix(prefix) => Filter::EventType(prefixes(prefix)),
        EventFilter::StreamRegex(pattern) => Filter::StreamIdentifier(regex(pattern)),
        EventFilter::EventTypeRegex(pattern) => Filter::EventType(regex(pattern)),
    };
    read_req::options::FilterOptions {
        filter: Some(filter),
        window: Some(Window::Max(checkpoint_every_records.max(1))),
        checkpoint_interval_multiplier: 1,
    }
}

/// A read reply's event as the store's `RecordedEvent`.
pub fn decode_event(reply: read_resp::ReadEvent) -> Result<RecordedEvent, ClientError> {
    let bad = |what: &str| ClientError::Protocol { message: format!("an event with {what}") };
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
    let created_ticks = metadata.remove("created").ok_or_else(|| bad("no 'created' time"))?;
    let created_ticks: u64 = created_ticks.parse().map_err(|_| bad("an invalid 'created' time"))?;
    Ok(RecordedEvent::new(steledb::RecordedEventParts {
        id,
        stream: &stream,
        revision: recorded.stream_revision,
        position: recorded.commit_position,
        event_type: &event_type,
        content_type: &content_type,
        data: &recorded.data,
        metadata: &recorded.custom_metadata,
        recorded_at_us: created_ticks / 10,
    }))
}

// ------------------------------------------------------ stele MultiStreamAppend

pub fn multi_expected(expected: ExpectedRevision) -> multi::ExpectedRevision {
    use multi::expected_revision::Kind;
    let kind = match expected {
        ExpectedRevision::Exact(n) => Kind::Exact(n),
        ExpectedRevision::NoStream => Kind::NoStream(()),
        ExpectedRevision::StreamExists => Kind::StreamExists(()),
        ExpectedRevision::Any => Kind::Any(()),
    };
    multi::ExpectedRevision { kind: Some(kind) }
}

/// An absent expectation means `any`, as the extension defines it.
pub fn expected_from_multi(wire: Option<multi::ExpectedRevision>) -> ExpectedRevision {
    use multi::expected_revision::Kind;
    match wire.and_then(|e| e.kind) {
        Some(Kind::Exact(n)) => ExpectedRevision::Exact(n),
        Some(Kind::NoStream(())) => ExpectedRevision::NoStream,
        Some(Kind::StreamExists(())) => ExpectedRevision::StreamExists,
        Some(Kind::Any(())) | None => ExpectedRevision::Any,
    }
}

pub fn multi_append_request(parts: Vec<StreamAppend>) -> multi::AppendRequest {
    let streams = parts
        .into_iter()
        .map(|part| multi::StreamAppend {
            stream: part.stream,
            expected_revision: Some(multi_expected(part.expected)),
            events: part
                .events
                .into_iter()
                .map(|event| multi::ProposedEvent {
                    id: event.id.to_string(),
                    r#type: event.event_type,
                    content_type: event.content_type,
                    data: event.data,
                    metadata: event.metadata,
                })
                .collect(),
        })
        .collect();
    multi::AppendRequest { streams }
}

/// A multi-stream append reply: one result per requested stream, in
/// request order, or the typed failure of the first stream that failed.
pub fn multi_append_results(
    reply: multi::AppendResponse,
    streams_requested: usize,
) -> Result<Vec<AppendResult>, ClientError> {
    use multi::append_failure::Reason;
    match reply.result {
        Some(multi::append_response::Result::Success(success)) => {
            if success.streams.len() != streams_requested {
                return Err(ClientError::Protocol {
                    message: format!("{} results for an append to {streams_requested} streams", success.streams.len()),
                });
            }
            Ok(success
                .streams
                .into_iter()
                .map(|r| AppendResult {
                    first_revision: r.first_revision,
                    last_revision: r.last_revision,
                    first_position: r.first_position,
                    last_position: r.last_position,
                    duplicate: r.duplicate,
                })
                .collect())
        }
        Some(multi::append_response::Result::Failure(failure)) => {
            let stream = failure.stream;
            Err(match failure.reason {
                Some(Reason::WrongExpectedRevision(wrong)) => ClientError::WrongExpectedRevision {
                    stream,
                    expected: expected_from_multi(wrong.expected),
                    actual: wrong.actual.map_or(CurrentRevision::NoStream, CurrentRevision::Current),
                },
                Some(Reason::StreamDeleted(_)) => ClientError::StreamDeleted { stream },
                Some(Reason::InvalidArgument(invalid)) => ClientError::Rejected { stream, message: invalid.message },
                None => ClientError::Protocol { message: "an append failure without a reason".to_owned() },
            })
        }
        None => Err(ClientError::Protocol { message: "an empty append reply".to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_go_on_the_wire_as_the_server_reads_them() {
        use read_req::options::filter_options::{Expression, Filter, Window};
        let prefixes = filter_options(&EventFilter::StreamPrefix(vec!["order-".to_owned()]), 0);
        let expected = Expression { regex: String::new(), prefix: vec!["order-".to_owned()] };
        assert_eq!(prefixes.filter, Some(Filter::StreamIdentifier(expected)));
        assert_eq!((prefixes.window, prefixes.checkpoint_interval_multiplier), (Some(Window::Max(1)), 1));
        let regex = filter_options(&EventFilter::event_type_regex("^Order").unwrap(), 500);
        let expected = Expression { regex: "^Order".to_owned(), prefix: Vec::new() };
        assert_eq!(regex.filter, Some(Filter::EventType(expected)));
        // An empty pattern matches everything; an empty wire regex would mean "no regex".
        let everything = filter_options(&EventFilter::stream_regex("").unwrap(), 500);
        assert!(matches!(everything.filter, Some(Filter::StreamIdentifier(e)) if e.regex == "^"));
    }

    #[test]
    fn expected_revisions_survive_the_extension_wire() {
        for expected in [
            ExpectedRevision::Any,
            ExpectedRevision::NoStream,
            ExpectedRevision::StreamExists,
            ExpectedRevision::Exact(0),
            ExpectedRevision::Exact(u64::MAX),
        ] {
            assert_eq!(expected_from_multi(Some(multi_expected(expected))), expected);
        }
        assert_eq!(expected_from_multi(None), ExpectedRevision::Any);
    }

    #[test]
    fn a_multi_append_failure_names_the_stream_and_the_revisions() {
        use multi::append_failure::Reason;
        let reply = multi::AppendResponse {
            result: Some(multi::append_response::Result::Failure(multi::AppendFailure {
                stream: "email-ann".to_owned(),
                reason: Some(Reason::WrongExpectedRevision(multi::WrongExpectedRevision {
                    expected: Some(multi_expected(ExpectedRevision::NoStream)),
                    actual: Some(0),
                })),
            })),
        };
        assert_eq!(
            multi_append_results(reply, 2),
            Err(ClientError::WrongExpectedRevision {
                stream: "email-ann".to_owned(),
                expected: ExpectedRevision::NoStream,
                actual: CurrentRevision::Current(0),
            })
        );
    }

    #[test]
    fn a_success_with_the_wrong_number_of_results_is_refused() {
        let reply = multi::AppendResponse {
            result: Some(multi::append_response::Result::Success(multi::AppendSuccess { streams: vec![] })),
        };
        assert!(matches!(multi_append_results(reply, 1), Err(ClientError::Protocol { .. })));
    }

    #[test]
    fn a_read_event_decodes_with_its_time_in_microseconds() {
        use crate::proto::event_store::client::streams::read_resp::read_event::RecordedEvent as WireEvent;
        let id = ::uuid::Uuid::from_u128(7);
        let metadata = HashMap::from([
            ("type".to_owned(), "Opened".to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
            ("created".to_owned(), "12345670".to_owned()),
        ]);
        let reply = read_resp::ReadEvent {
            event: Some(WireEvent {
                id: Some(WireUuid { value: Some(uuid::Value::String(id.to_string())) }),
                stream_identifier: stream_identifier("a-1"),
                stream_revision: 3,
                prepare_position: 99,
                commit_position: 99,
                metadata,
                custom_metadata: b"{}".to_vec().into(),
                data: b"{\"x\":1}".to_vec().into(),
            }),
            ..Default::default()
        };
        let event = decode_event(reply).unwrap();
        assert_eq!((event.id, event.revision, event.position, event.recorded_at_us), (id, 3, 99, 1_234_567));
        assert_eq!((event.stream(), event.event_type(), event.data()), ("a-1", "Opened", &b"{\"x\":1}"[..]));
    }
}
