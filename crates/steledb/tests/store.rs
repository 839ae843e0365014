//! Behaviour of the embedded store through its public API, on real files.

use std::sync::Arc;
use std::time::Duration;

use steledb::*;

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig { segment_size_bytes: 64 * 1024, index_memtable_entries_max: 64, ..StoreConfig::new(dir) }
}

fn event(event_type: &str, data: &str) -> NewEvent {
    NewEvent::json(Uuid::new_v4(), event_type, data.as_bytes().to_vec())
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| event("Counted", &format!("{{\"i\":{i}}}"))).collect()
}

/// What `probe` finds, trying every 10 ms for up to 2 s (work the writer
/// does in the background after it has replied).
fn within_2_s<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    (0..200).find_map(|_| {
        std::thread::sleep(Duration::from_millis(10));
        probe()
    })
}

fn read_all_events(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(AllStart::Start, Direction::Forward, usize::MAX, None).unwrap().events
}

#[test]
fn append_then_read_returns_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
    let store = Store::open_with(StoreConfig { clock: clock.clone(), ..config(dir.path()) }).unwrap();
    let first = event("OrderPlaced", r#"{"total":42}"#).with_metadata(br#"{"by":"ann"}"#.to_vec());
    let binary = NewEvent::binary(Uuid::new_v4(), "Blob", vec![0u8, 255, 7]);
    let result = store.append("order-1", ExpectedRevision::NoStream, vec![first.clone(), binary.clone()]).unwrap();
    assert_eq!((result.first_revision, result.last_revision, result.duplicate), (0, 1, false));
    assert!(result.first_position < result.last_position);

    let read = store.read_stream("order-1", StreamStart::Start, Direction::Forward, 10).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].id, first.id);
    assert_eq!(read[0].stream(), "order-1");
    assert_eq!(read[0].revision, 0);
    assert_eq!(read[0].position, result.first_position);
    assert_eq!(read[0].event_type(), "OrderPlaced");
    assert_eq!(read[0].content_type(), CONTENT_TYPE_JSON);
    assert_eq!(read[0].data(), first.data);
    assert_eq!(read[0].metadata(), first.metadata);
    assert_eq!(read[0].recorded_at_us, 1_700_000_000_000_000);
    assert_eq!(read[1].content_type(), CONTENT_TYPE_BINARY);
    assert_eq!(read[1].data(), binary.data);
    assert_eq!(store.read_event_at(result.last_position).unwrap(), read[1]);
}

#[test]
fn stream_reads_forward_backward_and_from_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    for _ in 0..10 {
        store.append("s", ExpectedRevision::Any, events(10)).unwrap();
        store.append("other", ExpectedRevision::Any, events(3)).unwrap();
    }
    let revisions = |events: Vec<RecordedEvent>| events.iter().map(|e| e.revision).collect::<Vec<_>>();
    let forward = store.read_stream("s", StreamStart::Start, Direction::Forward, 1000).unwrap();
    assert_eq!(revisions(forward), (0..100).collect::<Vec<_>>());
    let page = store.read_stream("s", StreamStart::Revision(95), Direction::Forward, 3).unwrap();
    assert_eq!(revisions(page), vec![95, 96, 97]);
    let backward = store.read_stream("s", StreamStart::End, Direction::Backward, 4).unwrap();
    assert_eq!(revisions(backward), vec![99, 98, 97, 96]);
    let backward = store.read_stream("s", StreamStart::Revision(2), Direction::Backward, 10).unwrap();
    assert_eq!(revisions(backward), vec![2, 1, 0]);
    assert!(store.read_stream("s", StreamStart::End, Direction::Forward, 10).unwrap().is_empty());
    assert!(store.read_stream("s", StreamStart::Revision(500), Direction::Forward, 10).unwrap().is_empty());
    assert!(matches!(
        store.read_stream("missing", StreamStart::Start, Direction::Forward, 10),
        Err(ReadError::StreamNotFound { stream }) if stream == "missing"
    ));
}

#[test]
fn every_expected_revision_option_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    let wrong = |result: Result<AppendResult, AppendError>, expected, actual| match result {
        Err(AppendError::WrongExpectedRevision { stream, expected: e, actual: a }) => {
            assert_eq!((stream.as_str(), e, a), ("acct", expected, actual));
        }
        other => panic!("expected a wrong-expected-revision error, got {other:?}"),
    };
    wrong(
        store.append("acct", ExpectedRevision::StreamExists, events(1)),
        ExpectedRevision::StreamExists,
        CurrentRevision::NoStream,
    );
    wrong(
        store.append("acct", ExpectedRevision::Exact(0), events(1)),
        ExpectedRevision::Exact(0),
        CurrentRevision::NoStream,
    );
    assert_eq!(store.end_position(), 0, "a rejected append writes nothing");
    store.append("acct", ExpectedRevision::NoStream, events(2)).unwrap();
    wrong(
        store.append("acct", ExpectedRevision::NoStream, events(1)),
        ExpectedRevision::NoStream,
        CurrentRevision::Current(1),
    );
    wrong(
        store.append("acct", ExpectedRevision::Exact(0), events(1)),
        ExpectedRevision::Exact(0),
        CurrentRevision::Current(1),
    );
    assert_eq!(store.append("acct", ExpectedRevision::Exact(1), events(1)).unwrap().last_revision, 2);
    assert_eq!(store.append("acct", ExpectedRevision::StreamExists, events(1)).unwrap().last_revision, 3);
    assert_eq!(store.append("acct", ExpectedRevision::Any, events(1)).unwrap().last_revision, 4);
}

#[test]
fn retried_appends_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    let batch = events(3);
    let original = store.append("idem", ExpectedRevision::NoStream, batch.clone()).unwrap();
    let end = store.end_position();
    let retry = store.append("idem", ExpectedRevision::NoStream, batch.clone()).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.first_revision, retry.last_revision), (original.first_revision, original.last_revision));
    assert_eq!((retry.first_position, retry.last_position), (original.first_position, original.last_position));
    assert_eq!(store.end_position(), end, "a duplicate writes nothing");

    let any_retry = store.append("idem", ExpectedRevision::Any, batch.clone()).unwrap();
    assert!(any_retry.duplicate);
    let next = store.append("idem", ExpectedRevision::Exact(2), events(1)).unwrap();
    // The same ids at a different place are not a retry.
    assert_eq!(next.last_revision, 3);
    let end = store.end_position();
    match store.append("idem", ExpectedRevision::Exact(3), batch.clone()) {
        Err(AppendError::DuplicateEventIds { stream, revision }) => {
            assert_eq!((stream.as_str(), revision), ("idem", 0))
        }
        other => panic!("the same ids at another place must be refused, got {other:?}"),
    }
    assert_eq!(store.end_position(), end);

    // After a reopen the exact-slot check still recognises the retry.
    drop(store);
    let store = Store::open_with(config(dir.path())).unwrap();
    let retry = store.append("idem", ExpectedRevision::NoStream, batch).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.first_position, original.first_position);
}

#[test]
fn multi_stream_append_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    let sign_up = |user: &str, email: &str| {
        store.append_multi(vec![
            StreamAppend::new(format!("email-{email}"), ExpectedRevision::NoStream, vec![event("EmailReserved", "{}")]),
            StreamAppend::new(format!("user-{user}"), ExpectedRevision::NoStream, vec![event("UserRegistered", "{}")]),
        ])
    };
    let results = sign_up("1", "a@example.com").unwrap();
    assert_eq!(results.len(), 2);
    assert!(results[0].last_position < results[1].first_position);
    let end = store.end_position();
    match sign_up("2", "a@example.com") {
        Err(AppendError::WrongExpectedRevision { stream, .. }) => assert_eq!(stream, "email-a@example.com"),
        other => panic!("the second sign-up must fail, got {other:?}"),
    }
    assert_eq!(store.end_position(), end);
    assert!(matches!(
        store.read_stream("user-2", StreamStart::Start, Direction::Forward, 1),
        Err(ReadError::StreamNotFound { .. })
    ));
    assert!(matches!(
        store.append_multi(vec![
            StreamAppend::new("dup", ExpectedRevision::Any, events(1)),
            StreamAppend::new("dup", ExpectedRevision::Any, events(1)),
        ]),
        Err(AppendError::DuplicateStream { .. })
    ));
}

#[test]
fn all_reads_in_both_directions_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    for i in 0..30 {
        let stream = if i % 3 == 0 { format!("order-{i}") } else { format!("user-{i}") };
        let kind = if i % 2 == 0 { "Created" } else { "Updated" };
        store.append(&stream, ExpectedRevision::Any, vec![event(kind, "{}")]).unwrap();
    }
    let all = read_all_events(&store);
    assert_eq!(all.len(), 30);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));

    let backward = store.read_all(AllStart::End, Direction::Backward, 100, None).unwrap();
    let mut reversed = backward.events.clone();
    reversed.reverse();
    assert_eq!(reversed, all);
    assert!(backward.is_end);

    let page = store.read_all(AllStart::Start, Direction::Forward, 7, None).unwrap();
    assert_eq!(page.events, all[..7]);
    let rest = store.read_all(AllStart::Position(page.next_position), Direction::Forward, 100, None).unwrap();
    assert_eq!(rest.events, all[7..]);
    let before = store.read_all(AllStart::Position(all[10].position), Direction::Backward, 3, None).unwrap();
    assert_eq!(
        before.events.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![all[9].position, all[8].position, all[7].position]
    );

    let orders = EventFilter::StreamPrefix(vec!["order-".into()]);
    let slice = store.read_all(AllStart::Start, Direction::Forward, 100, Some(&orders)).unwrap();
    assert_eq!(slice.events.len(), 10);
    assert!(slice.events.iter().all(|e| e.stream().starts_with("order-")));
    let created = EventFilter::EventTypePrefix(vec!["Creat".into()]);
    assert_eq!(store.read_all(AllStart::Start, Direction::Forward, 100, Some(&created)).unwrap().events.len(), 15);
    let regex = EventFilter::stream_regex(r"^user-\d*5$").unwrap();
    let matched = store.read_all(AllStart::Start, Direction::Forward, 100, Some(&regex)).unwrap().events;
    assert_eq!(matched.iter().map(|e| e.stream()).collect::<Vec<_>>(), vec!["user-5", "user-25"]);
    assert!(EventFilter::stream_regex("(").is_err());
}

#[test]
fn metadata_limits_what_is_readable() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let store = Store::open_with(StoreConfig { clock: clock.clone(), ..config(dir.path()) }).unwrap();
    store.append("meta", ExpectedRevision::Any, events(10)).unwrap();
    let custom = StreamMetadata::from_json(br#"{"$maxCount":3,"owner":"billing"}"#).unwrap();
    store.set_stream_metadata("meta", ExpectedRevision::NoStream, custom.clone()).unwrap();
    assert_eq!(store.stream_metadata("meta").unwrap(), custom);
    let read = store.read_stream("meta", StreamStart::Start, Direction::Forward, 100).unwrap();
    assert_eq!(read.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![7, 8, 9]);
    // The metadata stream itself is readable, with KurrentDB's naming.
    let raw = store.read_stream("$$meta", StreamStart::Start, Direction::Forward, 10).unwrap();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].event_type(), EVENT_TYPE_METADATA);
    assert!(matches!(
        store.set_stream_metadata("meta", ExpectedRevision::NoStream, custom),
        Err(AppendError::WrongExpectedRevision { .. })
    ));

    let truncate = StreamMetadata { truncate_before: Some(8), ..Default::default() };
    store.set_stream_metadata("meta", ExpectedRevision::Exact(0), truncate).unwrap();
    let read = store.read_stream("meta", StreamStart::Start, Direction::Forward, 100).unwrap();
    assert_eq!(read.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![8, 9]);

    store.append("aging", ExpectedRevision::Any, events(2)).unwrap();
    clock.advance_us(10_000_000);
    store.append("aging", ExpectedRevision::Any, events(1)).unwrap();
    let max_age = StreamMetadata { max_age_secs: Some(5), ..Default::default() };
    store.set_stream_metadata("aging", ExpectedRevision::Any, max_age.clone()).unwrap();
    let read = store.read_stream("aging", StreamStart::Start, Direction::Forward, 100).unwrap();
    assert_eq!(read.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![2]);

    // A page smaller than the expired prefix still reaches the live events
    // (a pager that stops at a short page saw none before), both ways.
    let many_expired = 1200;
    store.append("aged", ExpectedRevision::Any, events(many_expired)).unwrap();
    store.set_stream_metadata("aged", ExpectedRevision::Any, max_age).unwrap();
    clock.advance_us(10_000_000);
    store.append("aged", ExpectedRevision::Any, events(3)).unwrap();
    let live: Vec<u64> = (1200..1203).collect();
    for limit in [1, 2, 3, 512, 5000] {
        let forward = store.read_stream("aged", StreamStart::Start, Direction::Forward, limit).unwrap();
        let expected: Vec<u64> = live.iter().copied().take(limit).collect();
        assert_eq!(forward.iter().map(|e| e.revision).collect::<Vec<_>>(), expected, "forward, limit {limit}");
        let mut scanned = Vec::new();
        let visited = store.scan_stream("aged", StreamStart::Start, limit, |view, _| scanned.push(view.revision));
        assert_eq!((visited.unwrap(), scanned), (expected.len(), expected), "scan, limit {limit}");
        let backward = store.read_stream("aged", StreamStart::End, Direction::Backward, limit).unwrap();
        let expected: Vec<u64> = live.iter().rev().copied().take(limit).collect();
        assert_eq!(backward.iter().map(|e| e.revision).collect::<Vec<_>>(), expected, "backward, limit {limit}");
    }
    let before_live = StreamStart::Revision(1199);
    assert!(store.read_stream("aged", before_live, Direction::Backward, 10).unwrap().is_empty());
}

/// A clock set back, even across a restart, never stamps a batch earlier
/// than one before it: reads find where `$maxAge`-expired events end by
/// that order.
#[test]
fn stamps_never_go_back_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000_000_000_000));
    let open = || Store::open_with(StoreConfig { clock: clock.clone(), ..config(dir.path()) }).unwrap();
    let store = open();
    store.append("t", ExpectedRevision::Any, events(1)).unwrap();
    drop(store);
    clock.set_us(1_000_000_000_000 - 60_000_000);
    let store = open();
    store.append("t", ExpectedRevision::Any, events(1)).unwrap();
    let stamps: Vec<u64> = store
        .read_stream("t", StreamStart::Start, Direction::Forward, 10)
        .unwrap()
        .iter()
        .map(|e| e.recorded_at_us)
        .collect();
    assert_eq!(stamps, vec![1_000_000_000_000, 1_000_000_000_000]);
}

/// `scan_all_page` (borrowed, as the server frames replies from it) visits
/// exactly what `read_all` forwards returns, and ends its pages alike.
#[test]
fn scan_all_page_visits_what_read_all_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    for n in 0..40 {
        let stream = if n % 3 == 0 { format!("wanted-{n}") } else { format!("other-{n}") };
        store.append(&stream, ExpectedRevision::Any, events(1 + n % 2)).unwrap();
    }
    let positions: Vec<u64> = read_all_events(&store).iter().map(|e| e.position).collect();
    let wanted = EventFilter::StreamPrefix(vec!["wanted-".into()]);
    for filter in [None, Some(&wanted)] {
        for start in [AllStart::Start, AllStart::Position(positions[7]), AllStart::End] {
            for limit in [0, 1, 5, 1_000] {
                let slice = store.read_all(start, Direction::Forward, limit, filter).unwrap();
                let mut seen = Vec::new();
                let scan =
                    store.scan_all_page(start, limit, filter, |view, at| seen.push((at, view.revision))).unwrap();
                let expected: Vec<(u64, u64)> = slice.events.iter().map(|e| (e.position, e.revision)).collect();
                let case = format!("{filter:?} {start:?} {limit}");
                assert_eq!(seen, expected, "{case}");
                assert_eq!(
                    (scan.visited, scan.next_position, scan.is_end),
                    (seen.len(), slice.next_position, slice.is_end),
                    "{case}"
                );
            }
        }
    }
    let past = store.end_position() + 1;
    assert!(matches!(
        store.scan_all_page(AllStart::Position(past), 10, None, |_, _| {}),
        Err(ReadError::PositionPastEnd { .. })
    ));
}

#[test]
fn soft_delete_hides_and_recreation_continues_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    store.append("cart", ExpectedRevision::NoStream, events(3)).unwrap();
    store.delete_stream("cart", ExpectedRevision::Exact(2)).unwrap();
    assert!(matches!(
        store.read_stream("cart", StreamStart::Start, Direction::Forward, 10),
        Err(ReadError::StreamNotFound { .. })
    ));
    let again = store.append("cart", ExpectedRevision::NoStream, events(2)).unwrap();
    assert_eq!((again.first_revision, again.last_revision), (3, 4));
    let read = store.read_stream("cart", StreamStart::Start, Direction::Forward, 10).unwrap();
    assert_eq!(read.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![3, 4]);
    drop(store);
    let store = Store::open_with(config(dir.path())).unwrap();
    assert_eq!(store.read_stream("cart", StreamStart::Start, Direction::Forward, 10).unwrap().len(), 2);
}

#[test]
fn tombstone_is_forever() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    store.append("gone", ExpectedRevision::NoStream, events(2)).unwrap();
    assert!(matches!(
        store.tombstone_stream("gone", ExpectedRevision::Exact(5)),
        Err(AppendError::WrongExpectedRevision { .. })
    ));
    store.tombstone_stream("gone", ExpectedRevision::Exact(1)).unwrap();
    for _ in 0..2 {
        assert!(matches!(
            store.read_stream("gone", StreamStart::Start, Direction::Forward, 10),
            Err(ReadError::StreamDeleted { .. })
        ));
        assert!(matches!(
            store.append("gone", ExpectedRevision::Any, events(1)),
            Err(AppendError::StreamDeleted { .. })
        ));
        assert!(matches!(store.delete_stream("gone", ExpectedRevision::Any), Err(AppendError::StreamDeleted { .. })));
    }
    drop(store);
    let store = Store::open_with(config(dir.path())).unwrap();
    assert!(matches!(
        store.append("gone", ExpectedRevision::NoStream, events(1)),
        Err(AppendError::StreamDeleted { .. })
    ));
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        event_size_bytes_max: 1000,
        append_size_bytes_max: 2500,
        append_streams_max: 2,
        append_events_max: 5,
        ..Limits::default()
    };
    let store = Store::open_with(StoreConfig { limits, ..config(dir.path()) }).unwrap();
    store.append("ok", ExpectedRevision::Any, events(1)).unwrap();
    let end = store.end_position();
    let big = |n| NewEvent::binary(Uuid::new_v4(), "Big", vec![1u8; n]);
    let name_error = |stream: &str| match store.append(stream, ExpectedRevision::Any, events(1)) {
        Err(AppendError::InvalidStreamName { reason, .. }) => reason,
        other => panic!("{stream:?} must be refused, got {other:?}"),
    };
    assert_eq!(name_error(""), NameError::Empty);
    assert_eq!(name_error("$system"), NameError::Reserved);
    assert_eq!(name_error("a\u{0}b"), NameError::ControlCharacter);
    assert!(matches!(name_error(&"x".repeat(600)), NameError::TooLong { .. }));
    assert_eq!(stream_name_from_bytes(&[0x66, 0xff]), Err(NameError::InvalidUtf8));
    assert!(matches!(store.append("ok", ExpectedRevision::Any, vec![]), Err(AppendError::EmptyAppend)));
    assert!(matches!(store.append_multi(vec![]), Err(AppendError::EmptyAppend)));
    assert!(matches!(
        store.append("ok", ExpectedRevision::Any, vec![event("", "{}")]),
        Err(AppendError::InvalidEventType { reason: NameError::Empty, .. })
    ));
    match store.append("ok", ExpectedRevision::Any, vec![big(10), big(2000)]) {
        Err(AppendError::EventTooLarge { index, limit_bytes, .. }) => assert_eq!((index, limit_bytes), (1, 1000)),
        other => panic!("expected EventTooLarge, got {other:?}"),
    }
    assert!(matches!(
        store.append("ok", ExpectedRevision::Any, vec![big(900), big(900), big(900)]),
        Err(AppendError::AppendTooLarge { limit_bytes: 2500, .. })
    ));
    assert!(matches!(store.append("ok", ExpectedRevision::Any, events(6)), Err(AppendError::TooManyEvents { .. })));
    let three: Vec<_> = (0..3).map(|i| StreamAppend::new(format!("s{i}"), ExpectedRevision::Any, events(1))).collect();
    assert!(matches!(store.append_multi(three), Err(AppendError::TooManyStreams { count: 3, limit: 2 })));
    assert!(matches!(
        store.read_stream("", StreamStart::Start, Direction::Forward, 1),
        Err(ReadError::InvalidStreamName { .. })
    ));
    assert_eq!(store.end_position(), end);
    assert_eq!(read_all_events(&store).len(), 1);
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open_with(config(dir.path())).unwrap();
    assert!(matches!(Store::open_with(config(dir.path())), Err(OpenError::Locked { .. })));
}

#[test]
fn reopen_uses_the_index_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = |dir| StoreConfig { segment_size_bytes: 16 * 1024, ..config(dir) };
    let store = Store::open_with(config(dir.path())).unwrap();
    for i in 0..50 {
        store.append(&format!("s-{}", i % 7), ExpectedRevision::Any, events(10)).unwrap();
    }
    let digest = store.state_digest().unwrap();
    drop(store);
    let store = Store::open_with(config(dir.path())).unwrap();
    // A clean close flushes the memtable: nothing is left to replay.
    assert_eq!(store.open_report().replayed_events, 0);
    assert_eq!(store.open_report().index_checkpoint, store.end_position());
    assert_eq!(store.state_digest().unwrap(), digest);
    let read = store.read_stream("s-3", StreamStart::Start, Direction::Forward, 1000).unwrap();
    assert_eq!(read.len(), 70);
    assert!(read.iter().enumerate().all(|(i, e)| e.revision == i as u64));
    assert!(store.verify_index(|_| {}).unwrap() >= 500);
    let check = store.verify_log(|_| {});
    assert!(check.problems.is_empty() && check.records >= 500 && check.segments > 1, "{check:?}");
}

#[test]
fn all_subscription_catches_up_then_follows_live_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_with(config(dir.path())).unwrap());
    for _ in 0..20 {
        store.append("before", ExpectedRevision::Any, events(5)).unwrap();
    }
    let mut subscription = store.subscribe_all(AllStart::Start, None, 100).unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for _ in 0..50 {
                store.append("during", ExpectedRevision::Any, events(2)).unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    let mut caught_up = 0;
    while seen.len() < 200 {
        match subscription.next_timeout(Duration::from_secs(10)).unwrap() {
            Some(SubscriptionMessage::Event(event)) => seen.push(event),
            Some(SubscriptionMessage::CaughtUp { .. }) => caught_up += 1,
            Some(SubscriptionMessage::Checkpoint { .. }) => panic!("no checkpoints without a filter"),
            None => panic!("subscription stalled at {} events", seen.len()),
        }
    }
    writer.join().unwrap();
    assert!(caught_up <= 1);
    assert_eq!(seen, read_all_events(&store));
    assert_eq!(
        subscription.next_timeout(Duration::from_millis(50)).unwrap().map(|_| ()),
        if caught_up == 0 { Some(()) } else { None }
    );
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walkdir(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A start position that names a damaged event is the log's damage, not
/// the caller's mistake: it must not come back as "not an event position".
#[test]
fn damage_at_a_start_position_is_reported_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    store.append("s", ExpectedRevision::Any, events(2)).unwrap();
    let marker = b"flip-a-byte-of-this-event";
    store.append("s", ExpectedRevision::Any, vec![NewEvent::json(Uuid::new_v4(), "Marked", marker.to_vec())]).unwrap();
    store.append("s", ExpectedRevision::Any, events(2)).unwrap();
    let positions: Vec<u64> = read_all_events(&store).iter().map(|e| e.position).collect();

    // Flip one byte of the third event's data in its segment file.
    let segment = walkdir(dir.path())
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .find(|path| std::fs::read(path).unwrap().windows(marker.len()).any(|w| w == marker))
        .expect("a segment holds the marked event");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.windows(marker.len()).position(|w| w == marker).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    let damaged = positions[2];
    for result in
        [store.check_all_position(damaged), store.subscribe_all(AllStart::Position(damaged), None, 100).map(drop)]
    {
        match result {
            Err(ReadError::Log(error)) => assert!(error.to_string().contains(&damaged.to_string()), "{error}"),
            other => panic!("expected the damage at {damaged}, got {other:?}"),
        }
    }
    // Inside an intact record before the damage: still the caller's mistake.
    let inside = positions[0] + 3;
    match store.check_all_position(inside) {
        Err(ReadError::NotAnEventPosition { position, .. }) => assert_eq!(position, inside),
        other => panic!("expected NotAnEventPosition, got {other:?}"),
    }
    // Intact events around it are fine starts.
    for intact in [positions[0], positions[1]] {
        store.check_all_position(intact).unwrap();
    }
}

/// Start positions from outside (a client, a checkpoint kept from a store
/// whose data was since replaced) must name an event: anything else is a
/// specific error, never a subscription that silently skips or a read
/// that answers "nothing new" forever.
#[test]
fn all_start_positions_must_name_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    store.append("s", ExpectedRevision::Any, events(3)).unwrap();
    let positions: Vec<u64> = read_all_events(&store).iter().map(|e| e.position).collect();
    let end = store.end_position();

    let past = end + 1_000;
    match store.subscribe_all(AllStart::Position(past), None, 100) {
        Err(ReadError::PositionPastEnd { position, end: e }) => assert_eq!((position, e), (past, end)),
        other => panic!("expected PositionPastEnd, got {:?}", other.map(|_| ())),
    }
    match store.read_all(AllStart::Position(past), Direction::Forward, 10, None) {
        Err(ReadError::PositionPastEnd { position, .. }) => assert_eq!(position, past),
        other => panic!("expected PositionPastEnd, got {other:?}"),
    }
    let inside = positions[1] + 3;
    match store.subscribe_all(AllStart::Position(inside), None, 100) {
        Err(ReadError::NotAnEventPosition { position, .. }) => assert_eq!(position, inside),
        other => panic!("expected NotAnEventPosition, got {:?}", other.map(|_| ())),
    }

    // 0, each event and the end are all fine starts.
    for start in [0, positions[1], end] {
        let mut subscription = store.subscribe_all(AllStart::Position(start), None, 100).unwrap();
        let mut seen = Vec::new();
        while let Some(message) = subscription.try_next().unwrap() {
            if let SubscriptionMessage::Event(event) = message {
                seen.push(event.position);
            }
        }
        let expected: Vec<u64> = positions.iter().copied().filter(|&p| p >= start).collect();
        assert_eq!(seen, expected, "from {start}");
    }
}

#[test]
fn stream_subscription_switches_from_index_to_log_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_with(config(dir.path())).unwrap());
    for _ in 0..10 {
        store.append("watched", ExpectedRevision::Any, events(3)).unwrap();
        store.append("noise", ExpectedRevision::Any, events(3)).unwrap();
    }
    let mut subscription = store.subscribe_stream("watched", StreamStart::Revision(5)).unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for _ in 0..10 {
                store.append("watched", ExpectedRevision::Any, events(1)).unwrap();
                store.append("noise", ExpectedRevision::Any, events(1)).unwrap();
            }
        })
    };
    let mut revisions = Vec::new();
    while revisions.len() < 35 {
        match subscription.next_timeout(Duration::from_secs(10)).unwrap() {
            Some(SubscriptionMessage::Event(event)) => {
                assert_eq!(event.stream(), "watched");
                revisions.push(event.revision);
            }
            Some(_) => {}
            None => panic!("stalled after {revisions:?}"),
        }
    }
    writer.join().unwrap();
    assert_eq!(revisions, (5..40).collect::<Vec<_>>());
}

#[test]
fn filtered_subscription_reports_checkpoints_through_quiet_stretches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    for _ in 0..25 {
        store.append("noise", ExpectedRevision::Any, events(10)).unwrap();
    }
    store.append("wanted-1", ExpectedRevision::Any, events(1)).unwrap();
    let filter = EventFilter::StreamPrefix(vec!["wanted-".into()]);
    let mut subscription = store.subscribe_all(AllStart::Start, Some(filter), 100).unwrap();
    let mut checkpoints = Vec::new();
    let mut matched = Vec::new();
    loop {
        match subscription.next_timeout(Duration::from_secs(5)).unwrap() {
            Some(SubscriptionMessage::Checkpoint { position, last_scanned_position }) => {
                // The two forms name the same place: the record examined
                // last, and where reading goes on (no event in between).
                store.read_event_at(last_scanned_position).unwrap();
                let after = store.position_after(last_scanned_position).unwrap();
                assert!(after <= position);
                let next = store.read_all(AllStart::Position(after), Direction::Forward, 1, None).unwrap();
                assert!(next.events.iter().all(|e| e.position >= position), "{after} {position}");
                checkpoints.push(position);
            }
            Some(SubscriptionMessage::Event(event)) => matched.push(event.stream().to_owned()),
            Some(SubscriptionMessage::CaughtUp { .. }) => break,
            None => panic!("no caught-up"),
        }
    }
    assert_eq!(matched, vec!["wanted-1"]);
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");
    assert!(checkpoints.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_failed_fsync_stops_the_writer_but_not_the_readers() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new();
    let store = Store::open_with(StoreConfig { storage: Arc::new(storage.clone()), ..config(dir.path()) }).unwrap();
    store.append("s", ExpectedRevision::Any, events(2)).unwrap();
    storage.arm(Fault::SyncError);
    assert!(matches!(store.append("s", ExpectedRevision::Any, events(1)), Err(AppendError::WriterStopped { .. })));
    assert!(store.writer_stopped().is_some());
    assert!(matches!(store.append("t", ExpectedRevision::Any, events(1)), Err(AppendError::WriterStopped { .. })));
    assert_eq!(store.read_stream("s", StreamStart::Start, Direction::Forward, 10).unwrap().len(), 2);
}

#[test]
fn a_full_disk_refuses_appends_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new();
    let store = Store::open_with(StoreConfig { storage: Arc::new(storage.clone()), ..config(dir.path()) }).unwrap();
    store.append("s", ExpectedRevision::Any, events(2)).unwrap();
    storage.arm(Fault::NoSpace);
    assert!(matches!(store.append("s", ExpectedRevision::Exact(1), events(1)), Err(AppendError::NoSpace)));
    assert_eq!(store.read_stream("s", StreamStart::Start, Direction::Forward, 10).unwrap().len(), 2);
    storage.clear();
    assert_eq!(store.append("s", ExpectedRevision::Exact(1), events(1)).unwrap().last_revision, 2);
    drop(store);
    let store = Store::open_with(config(dir.path())).unwrap();
    assert_eq!(store.read_stream("s", StreamStart::Start, Direction::Forward, 10).unwrap().len(), 3);
}

#[test]
fn stream_subscription_skips_soft_deleted_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    store.append("cart", ExpectedRevision::NoStream, events(3)).unwrap();
    store.delete_stream("cart", ExpectedRevision::Exact(2)).unwrap();
    store.append("cart", ExpectedRevision::NoStream, events(2)).unwrap();
    let mut subscription = store.subscribe_stream("cart", StreamStart::Start).unwrap();
    let mut revisions = Vec::new();
    loop {
        match subscription.next_timeout(Duration::from_secs(5)).unwrap() {
            Some(SubscriptionMessage::Event(event)) => revisions.push(event.revision),
            Some(SubscriptionMessage::CaughtUp { .. }) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(revisions, vec![3, 4]);
    store.tombstone_stream("cart", ExpectedRevision::Any).unwrap();
    assert!(matches!(store.subscribe_stream("cart", StreamStart::Start), Err(ReadError::StreamDeleted { .. })));
}

#[test]
fn borrowed_scans_see_what_owned_reads_see() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(config(dir.path())).unwrap();
    for _ in 0..5 {
        store.append("scanned", ExpectedRevision::Any, events(20)).unwrap();
        store.append("between", ExpectedRevision::Any, events(3)).unwrap();
    }
    store
        .set_stream_metadata(
            "scanned",
            ExpectedRevision::Any,
            StreamMetadata { truncate_before: Some(10), ..Default::default() },
        )
        .unwrap();
    let owned = store.read_stream("scanned", StreamStart::Revision(5), Direction::Forward, 30).unwrap();
    let mut scanned = Vec::new();
    let visited = store
        .scan_stream("scanned", StreamStart::Revision(5), 30, |event, position| {
            scanned.push((event.id, event.revision, position, event.data.to_vec()))
        })
        .unwrap();
    assert_eq!(visited, owned.len());
    assert_eq!(scanned, owned.iter().map(|e| (e.id, e.revision, e.position, e.data().to_vec())).collect::<Vec<_>>());
    assert_eq!(scanned.first().map(|s| s.1), Some(10), "truncated events are not visited");

    let mut all = Vec::new();
    let next = store
        .scan_all(0, |event, position| {
            all.push((event.stream.to_owned(), position));
            all.len() < 7
        })
        .unwrap();
    let owned_all = store.read_all(AllStart::Start, Direction::Forward, 7, None).unwrap();
    assert_eq!(all, owned_all.events.iter().map(|e| (e.stream().to_owned(), e.position)).collect::<Vec<_>>());
    assert_eq!(next, owned_all.next_position);
    assert!(matches!(
        store.scan_stream("nothing", StreamStart::Start, 10, |_, _| {}),
        Err(ReadError::StreamNotFound { .. })
    ));
}

#[test]
fn a_failing_index_flush_is_reported_and_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { index_memtable_entries_max: 4, ..config(dir.path()) };
    let store = Store::open_with(config.clone()).unwrap();
    let same_size = |i: u64| vec![NewEvent::json(Uuid::from_u128(u128::from(i) + 1), "Sized", b"{}".to_vec())];
    store.append("s", ExpectedRevision::Any, same_size(0)).unwrap();
    let record_bytes = store.end_position();
    // The flush after the 4th event will create exactly this temporary
    // file; a directory in its place makes the flush fail until removed.
    let blocker = dir.path().join("index").join(format!("{:020}-{:020}.idx.tmp", 0, 4 * record_bytes));
    std::fs::create_dir(&blocker).unwrap();
    for i in 1..4 {
        store.append("s", ExpectedRevision::Any, same_size(i)).unwrap();
    }
    assert_eq!(store.end_position(), 4 * record_bytes);
    // The writer flushes after it has replied: wait for it.
    let error = within_2_s(|| store.index_error()).expect("the failed flush is reported");
    assert!(error.contains("idx.tmp"), "{error}");
    std::fs::remove_dir(&blocker).unwrap();
    for i in 4..8 {
        store.append("s", ExpectedRevision::Any, same_size(i)).unwrap();
    }
    let cleared = within_2_s(|| store.index_error().is_none().then_some(()));
    assert!(cleared.is_some(), "the retry after another memtable's worth succeeded");
    assert_eq!(store.read_stream("s", StreamStart::Start, Direction::Forward, 100).unwrap().len(), 8);
    drop(store);
    let store = Store::open_with(config).unwrap();
    assert_eq!(store.read_stream("s", StreamStart::Start, Direction::Forward, 100).unwrap().len(), 8);
}

/// While index tables cannot be written, entries pile up in memory; past
/// the backlog limit appends are refused (and write nothing) instead of
/// memory growing until the process dies, and they resume on their own once
/// the index can be written again.
#[test]
fn appends_are_refused_while_the_index_backlog_is_full_and_resume_after() {
    let dir = tempfile::tempdir().unwrap();
    let memtable_entries_max = 4;
    let config = StoreConfig { index_memtable_entries_max: memtable_entries_max, ..config(dir.path()) };
    let store = Store::open_with(config.clone()).unwrap();
    let one = |i: u64| vec![NewEvent::json(Uuid::from_u128(u128::from(i) + 1), "Sized", b"{}".to_vec())];
    store.append("s", ExpectedRevision::Any, one(0)).unwrap();
    let record_bytes = store.end_position();
    let blocker = dir.path().join("index").join(format!("{:020}-{:020}.idx.tmp", 0, 4 * record_bytes));
    std::fs::create_dir(&blocker).unwrap();
    let backlog_max = steledb::limits::INDEX_BACKLOG_MEMTABLES_MAX * memtable_entries_max;
    // The first memtable is frozen and fails to be written; the next
    // `backlog_max` entries wait in the live memtable.
    let accepted = (memtable_entries_max + backlog_max) as u64;
    for i in 1..accepted {
        store.append("s", ExpectedRevision::Any, one(i)).unwrap();
    }
    let reported = within_2_s(|| store.index_error());
    assert!(reported.expect("the failed flush is reported").contains("idx.tmp"));

    let end = store.end_position();
    match store.append("s", ExpectedRevision::Any, one(accepted)) {
        Err(AppendError::IndexBacklog { entries, cause }) => {
            assert_eq!(entries, backlog_max);
            assert!(cause.contains("idx.tmp"), "{cause}");
        }
        other => panic!("expected IndexBacklog, got {other:?}"),
    }
    assert_eq!(store.end_position(), end, "a refused append writes nothing");
    let read = store.read_stream("s", StreamStart::Start, Direction::Forward, 1_000).unwrap();
    assert_eq!(read.len() as u64, accepted, "reads go on");

    // The index can be written again: a retry (at most every
    // INDEX_BACKLOG_RETRY_INTERVAL_US) clears the backlog and appends resume.
    std::fs::remove_dir(&blocker).unwrap();
    let resumed = within_2_s(|| store.append("s", ExpectedRevision::Any, one(accepted)).ok());
    assert!(resumed.is_some(), "appends resume once the index can be written");
    let cleared = within_2_s(|| store.index_error().is_none().then_some(()));
    assert!(cleared.is_some(), "the error is cleared once a table was written");
    drop(store);
    let store = Store::open_with(config).unwrap();
    let read = store.read_stream("s", StreamStart::Start, Direction::Forward, 1_000).unwrap();
    assert_eq!(read.len() as u64, accepted + 1);
    assert!(read.iter().enumerate().all(|(i, e)| e.revision == i as u64));
}

/// Submits appends without waiting, so that they share group commits.
fn submit(
    store: &Store,
    parts: Vec<StreamAppend>,
) -> std::sync::mpsc::Receiver<Result<Vec<AppendResult>, AppendError>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    store.append_with(parts, move |result, _parts| {
        let _ = sender.send(result);
    });
    receiver
}

#[test]
fn a_retry_in_the_same_batch_as_the_original_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new();
    let store = Store::open_with(StoreConfig { storage: Arc::new(storage.clone()), ..config(dir.path()) }).unwrap();
    let rounds = 200;
    for round in 0..rounds {
        let stream = format!("order-{round}");
        // With `Any` only the ids tell a retry from a new append.
        let expected = if round % 2 == 0 { ExpectedRevision::NoStream } else { ExpectedRevision::Any };
        // A busy stream ahead keeps the writer syncing while the pair queues.
        let busy = submit(&store, vec![StreamAppend::new("busy", ExpectedRevision::Any, events(1))]);
        let batch = events(2);
        let original = submit(&store, vec![StreamAppend::new(&stream, expected, batch.clone())]);
        let retry = submit(&store, vec![StreamAppend::new(&stream, expected, batch)]);
        busy.recv().unwrap().unwrap();
        let original = original.recv().unwrap().unwrap();
        let retry = retry.recv().unwrap().unwrap_or_else(|e| panic!("round {round}: the retry failed: {e}"));
        assert!(!original[0].duplicate);
        assert!(retry[0].duplicate, "round {round}");
        assert_eq!((retry[0].first_revision, retry[0].last_revision), (0, 1));
        assert_eq!(retry[0].first_position, original[0].first_position);
        assert_eq!(store.read_stream(&stream, StreamStart::Start, Direction::Forward, 10).unwrap().len(), 2);
    }
    // The pairs did share commits: fewer syncs than requests.
    assert!(storage.sync_count() < 3 * rounds, "{} syncs for {} requests", storage.sync_count(), 3 * rounds);
}

#[test]
fn a_refusal_never_names_a_revision_that_did_not_commit() {
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::new();
        let store = Store::open_with(StoreConfig { storage: Arc::new(storage.clone()), ..config(dir.path()) }).unwrap();
        store.append("s", ExpectedRevision::Any, events(1)).unwrap();
        let busy = submit(&store, vec![StreamAppend::new("busy", ExpectedRevision::Any, events(1))]);
        storage.arm(Fault::SyncError);
        // Both expect revision 0: the second is refused against the first,
        // which is staged in the same batch, whose sync then fails.
        let first = submit(&store, vec![StreamAppend::new("s", ExpectedRevision::Exact(0), events(1))]);
        let second = submit(&store, vec![StreamAppend::new("s", ExpectedRevision::Exact(0), events(1))]);
        let outcomes = [busy.recv().unwrap(), first.recv().unwrap(), second.recv().unwrap()];
        let last = store.stream_revision("s").unwrap();
        for outcome in &outcomes {
            if let Err(AppendError::WrongExpectedRevision { actual: CurrentRevision::Current(actual), .. }) = outcome {
                assert!(
                    Some(*actual) <= last,
                    "round {round}: refused naming revision {actual}, but s ends at {last:?}"
                );
            }
        }
        assert!(store.writer_stopped().is_some(), "round {round}: one of the syncs failed");
    }
}

#[test]
fn a_flood_past_the_queue_is_refused_as_overloaded_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { queue_requests_max: 8, ..Limits::default() };
    let store = Store::open_with(StoreConfig { limits, ..config(dir.path()) }).unwrap();
    // Far more requests than the queue holds, submitted without waiting.
    let receivers: Vec<_> = (0..2_000)
        .map(|i| submit(&store, vec![StreamAppend::new(format!("flood-{}", i % 16), ExpectedRevision::Any, events(3))]))
        .collect();
    let (mut acknowledged, mut overloaded) = (0u64, 0u64);
    for receiver in receivers {
        match receiver.recv().unwrap() {
            Ok(results) => acknowledged += results[0].last_revision - results[0].first_revision + 1,
            Err(AppendError::Overloaded { capacity }) => {
                assert_eq!(capacity, 8);
                overloaded += 1;
            }
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert!(overloaded > 0, "the queue never filled");
    assert!(acknowledged > 0);
    // Exactly the acknowledged events are there, and appends go on.
    assert_eq!(read_all_events(&store).len() as u64, acknowledged);
    store.append("after", ExpectedRevision::NoStream, events(1)).unwrap();
    drop(store);
    let store = Store::open_with(config(dir.path())).unwrap();
    assert_eq!(read_all_events(&store).len() as u64, acknowledged + 1);
}
