//! The official KurrentDB Rust client (`kurrentdb` crate) against a real
//! `stele serve` process over a real socket.

mod support;

use std::time::Duration;

use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, DeleteStreamOptions, Error, EventData, Position, ReadAllOptions,
    ReadStreamOptions, StreamMetadata, StreamPosition, StreamState, SubscribeToAllOptions, SubscribeToStreamOptions,
    SubscriptionEvent, SubscriptionFilter, TombstoneStreamOptions,
};
use serde_json::json;

fn client(server: &support::Server) -> Client {
    let settings: ClientSettings =
        format!("kurrentdb://{}?tls=false", server.address()).parse().expect("a valid connection string");
    Client::new(settings).expect("client")
}

fn event(kind: &str, n: u64) -> EventData {
    EventData::json(kind, &json!({ "n": n })).expect("serializable")
}

fn events(kind: &str, count: u64) -> Vec<EventData> {
    (0..count).map(|n| event(kind, n)).collect()
}

async fn read_revisions(client: &Client, stream: &str, options: &ReadStreamOptions) -> Result<Vec<u64>, Error> {
    let mut read = client.read_stream(stream, options).await?;
    let mut revisions = Vec::new();
    while let Some(event) = read.next().await? {
        revisions.push(event.get_original_event().revision);
    }
    Ok(revisions)
}

fn expect(state: StreamState) -> AppendToStreamOptions {
    AppendToStreamOptions::default().stream_state(state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_with_every_expected_revision_option() {
    let server = support::start();
    let client = client(&server);
    let result =
        client.append_to_stream("orders-1", &expect(StreamState::NoStream), events("Placed", 2)).await.unwrap();
    assert_eq!(result.next_expected_version, 1);
    let result = client.append_to_stream("orders-1", &expect(StreamState::StreamRevision(1)), event("Paid", 0)).await;
    assert_eq!(result.unwrap().next_expected_version, 2);
    let result = client.append_to_stream("orders-1", &expect(StreamState::StreamExists), event("Shipped", 0)).await;
    assert_eq!(result.unwrap().next_expected_version, 3);
    let result = client.append_to_stream("orders-1", &expect(StreamState::Any), event("Noted", 0)).await.unwrap();
    assert_eq!(result.next_expected_version, 4);
    assert!(result.position.commit > 0 && result.position.commit == result.position.prepare);

    match client.append_to_stream("orders-1", &expect(StreamState::StreamRevision(1)), event("Late", 0)).await {
        Err(Error::WrongExpectedVersion { expected, current }) => {
            assert_eq!(expected, StreamState::StreamRevision(1));
            assert_eq!(current, kurrentdb::CurrentRevision::Current(4));
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
    match client.append_to_stream("orders-1", &expect(StreamState::NoStream), event("Again", 0)).await {
        Err(Error::WrongExpectedVersion { expected: StreamState::NoStream, .. }) => {}
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
    match client.append_to_stream("fresh", &expect(StreamState::StreamExists), event("X", 0)).await {
        Err(Error::WrongExpectedVersion { current: kurrentdb::CurrentRevision::NoStream, .. }) => {}
        other => panic!("expected WrongExpectedVersion on a missing stream, got {other:?}"),
    }
    // A rejected append wrote nothing.
    let revisions = read_revisions(&client, "orders-1", &ReadStreamOptions::default()).await.unwrap();
    assert_eq!(revisions, vec![0, 1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_append_with_the_same_ids_is_written_once() {
    let server = support::start();
    let client = client(&server);
    let id = uuid::Uuid::new_v4();
    let first = client.append_to_stream("idem", &expect(StreamState::NoStream), event("Once", 0).id(id)).await.unwrap();
    let retry = client.append_to_stream("idem", &expect(StreamState::NoStream), event("Once", 0).id(id)).await.unwrap();
    assert_eq!(first.next_expected_version, retry.next_expected_version);
    assert_eq!(first.position, retry.position);
    assert_eq!(read_revisions(&client, "idem", &ReadStreamOptions::default()).await.unwrap(), vec![0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_forwards_backwards_and_missing_streams() {
    let server = support::start();
    let client = client(&server);
    client.append_to_stream("letters", &expect(StreamState::NoStream), events("Letter", 30)).await.unwrap();
    let all = read_revisions(&client, "letters", &ReadStreamOptions::default()).await.unwrap();
    assert_eq!(all, (0..30).collect::<Vec<_>>());
    let options = ReadStreamOptions::default().backwards().position(StreamPosition::End).max_count(3);
    assert_eq!(read_revisions(&client, "letters", &options).await.unwrap(), vec![29, 28, 27]);
    let options = ReadStreamOptions::default().forwards().position(StreamPosition::Position(10)).max_count(2);
    assert_eq!(read_revisions(&client, "letters", &options).await.unwrap(), vec![10, 11]);

    let mut read = client.read_stream("letters", &ReadStreamOptions::default().max_count(1)).await.unwrap();
    let first = read.next().await.unwrap().unwrap();
    let recorded = first.get_original_event();
    assert_eq!(recorded.event_type, "Letter");
    assert!(recorded.is_json);
    assert_eq!(recorded.as_json::<serde_json::Value>().unwrap(), json!({ "n": 0 }));
    assert_eq!(recorded.stream_id(), "letters");
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(
        (now_secs - recorded.created.timestamp()).abs() < 60,
        "created is the append time, got {}",
        recorded.created
    );

    match read_revisions(&client, "never-written", &ReadStreamOptions::default()).await {
        Err(Error::ResourceNotFound) => {}
        other => panic!("expected ResourceNotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_reads_with_server_side_filters() {
    let server = support::start();
    let client = client(&server);
    for i in 0..10 {
        let stream = if i % 2 == 0 { format!("cart-{i}") } else { format!("user-{i}") };
        let kind = if i < 5 { "Created" } else { "Changed" };
        client.append_to_stream(stream, &expect(StreamState::Any), event(kind, i)).await.unwrap();
    }
    let collect = |options: ReadAllOptions| {
        let client = client.clone();
        async move {
            let mut read = client.read_all(&options).await.unwrap();
            let mut found = Vec::new();
            while let Some(event) = read.next().await.unwrap() {
                let event = event.get_original_event();
                found.push((event.stream_id().to_owned(), event.event_type.clone(), event.position));
            }
            found
        }
    };
    let everything = collect(ReadAllOptions::default()).await;
    assert_eq!(everything.len(), 10);
    assert!(everything.windows(2).all(|w| w[0].2.commit < w[1].2.commit));
    let backwards = collect(ReadAllOptions::default().backwards().position(StreamPosition::End)).await;
    assert_eq!(backwards.iter().rev().cloned().collect::<Vec<_>>(), everything);

    let carts =
        collect(ReadAllOptions::default().filter(SubscriptionFilter::on_stream_name().add_prefix("cart-"))).await;
    assert_eq!(carts.len(), 5);
    assert!(carts.iter().all(|(s, _, _)| s.starts_with("cart-")));
    let changed =
        collect(ReadAllOptions::default().filter(SubscriptionFilter::on_event_type().add_prefix("Chan"))).await;
    assert_eq!(changed.len(), 5);
    let regex =
        collect(ReadAllOptions::default().filter(SubscriptionFilter::on_stream_name().regex("^user-[13]$"))).await;
    assert_eq!(regex.iter().map(|(s, _, _)| s.as_str()).collect::<Vec<_>>(), vec!["user-1", "user-3"]);

    let from = everything[4].2;
    let rest = collect(ReadAllOptions::default().position(StreamPosition::Position(from))).await;
    assert_eq!(rest, everything[4..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_subscription_crosses_from_catch_up_to_live_without_gaps() {
    let server = support::start();
    let client = client(&server);
    client.append_to_stream("feed", &expect(StreamState::NoStream), events("Before", 40)).await.unwrap();
    let options = SubscribeToStreamOptions::default().start_from(StreamPosition::Start);
    let mut subscription = client.subscribe_to_stream("feed", &options).await;
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                client.append_to_stream("feed", &expect(StreamState::Any), event("During", i)).await.unwrap();
                client.append_to_stream("other", &expect(StreamState::Any), event("Noise", i)).await.unwrap();
            }
        })
    };
    let mut revisions = Vec::new();
    let mut confirmed = false;
    let mut caught_up = false;
    while revisions.len() < 80 {
        let message = tokio::time::timeout(Duration::from_secs(20), subscription.next_subscription_event())
            .await
            .unwrap_or_else(|_| panic!("subscription stalled after {revisions:?} (caught up: {caught_up})"))
            .expect("subscription failed");
        match message {
            SubscriptionEvent::Confirmed(_) => {
                assert!(revisions.is_empty(), "confirmation comes first");
                confirmed = true;
            }
            SubscriptionEvent::EventAppeared(event) => {
                assert_eq!(event.get_original_event().stream_id(), "feed");
                revisions.push(event.get_original_event().revision);
            }
            SubscriptionEvent::CaughtUp(_) => caught_up = true,
            _ => {}
        }
    }
    writer.await.unwrap();
    assert!(confirmed);
    assert!(caught_up, "the subscription reports when it is live");
    assert_eq!(revisions, (0..80).collect::<Vec<_>>());

    // Starting from a revision is exclusive, as in KurrentDB.
    let options = SubscribeToStreamOptions::default().start_from(StreamPosition::Position(77));
    let mut from_77 = client.subscribe_to_stream("feed", &options).await;
    let next = tokio::time::timeout(Duration::from_secs(10), from_77.next()).await.unwrap().unwrap();
    assert_eq!(next.get_original_event().revision, 78);
}

/// A client stores a checkpoint and later resumes "from" it, which in
/// KurrentDB's protocol means after it: the matching event right behind the
/// records a checkpoint covered must still be delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_a_filtered_checkpoint_misses_nothing() {
    let server = support::start();
    let client = client(&server);
    for block in 0..3 {
        for i in 0..10 {
            client
                .append_to_stream(format!("noise-{block}-{i}"), &expect(StreamState::Any), event("Noise", i))
                .await
                .unwrap();
        }
        client
            .append_to_stream(format!("wanted-{block}"), &expect(StreamState::Any), event("Wanted", block))
            .await
            .unwrap();
    }
    let filter = || SubscriptionFilter::on_stream_name().add_prefix("wanted-").max(10);
    let mut subscription = client.subscribe_to_all(&SubscribeToAllOptions::default().filter(filter())).await;
    let mut delivered = Vec::new();
    let checkpoint = loop {
        let message = tokio::time::timeout(Duration::from_secs(20), subscription.next_subscription_event())
            .await
            .expect("subscription stalled")
            .expect("subscription failed");
        match message {
            SubscriptionEvent::Checkpoint(position) => break position,
            SubscriptionEvent::EventAppeared(event) => {
                delivered.push(event.get_original_event().stream_id().to_owned())
            }
            SubscriptionEvent::CaughtUp(_) => panic!("caught up without a checkpoint"),
            _ => {}
        }
    };
    drop(subscription);
    // What should come next: the first wanted event not delivered before
    // the checkpoint (with checkpoints every 10 records passed over, the
    // first comes right before `wanted-0`).
    let mut all = client.read_all(&ReadAllOptions::default().max_count(1_000)).await.unwrap();
    let mut expected = None;
    while let Some(event) = all.next().await.unwrap() {
        let stream = event.get_original_event().stream_id();
        if stream.starts_with("wanted-") && !delivered.iter().any(|seen| seen == stream) {
            expected = Some(stream.to_owned());
            break;
        }
    }
    let expected = expected.expect("a wanted event after the first checkpoint");
    let options = SubscribeToAllOptions::default().filter(filter()).position(StreamPosition::Position(checkpoint));
    let mut resumed = client.subscribe_to_all(&options).await;
    let first = loop {
        let message = tokio::time::timeout(Duration::from_secs(20), resumed.next_subscription_event())
            .await
            .expect("resumed subscription stalled")
            .expect("resumed subscription failed");
        if let SubscriptionEvent::EventAppeared(event) = message {
            break event.get_original_event().stream_id().to_owned();
        }
    };
    assert_eq!(first, expected, "resumed from {checkpoint:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_all_subscription_reports_checkpoints() {
    let server = support::start();
    let client = client(&server);
    for i in 0..60 {
        client.append_to_stream(format!("noise-{i}"), &expect(StreamState::Any), event("Noise", i)).await.unwrap();
    }
    client.append_to_stream("wanted-1", &expect(StreamState::Any), event("Wanted", 0)).await.unwrap();
    let filter = SubscriptionFilter::on_stream_name().add_prefix("wanted-").max(10);
    let mut subscription = client.subscribe_to_all(&SubscribeToAllOptions::default().filter(filter)).await;
    let mut checkpoints = 0;
    let mut wanted = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), subscription.next_subscription_event())
            .await
            .expect("subscription stalled")
            .expect("subscription failed");
        match message {
            SubscriptionEvent::Checkpoint(_) => checkpoints += 1,
            SubscriptionEvent::EventAppeared(event) => wanted.push(event.get_original_event().stream_id().to_owned()),
            SubscriptionEvent::CaughtUp(_) => break,
            _ => {}
        }
    }
    assert_eq!(wanted, vec!["wanted-1"]);
    assert!(checkpoints >= 5, "one checkpoint per 10 unmatched events, got {checkpoints}");
    client.append_to_stream("wanted-2", &expect(StreamState::Any), event("Wanted", 1)).await.unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), subscription.next_subscription_event())
            .await
            .expect("live event did not arrive")
            .unwrap();
        if let SubscriptionEvent::EventAppeared(event) = message {
            assert_eq!(event.get_original_event().stream_id(), "wanted-2");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_tombstone_and_metadata() {
    let server = support::start();
    let client = client(&server);
    client.append_to_stream("soft", &expect(StreamState::NoStream), events("E", 3)).await.unwrap();
    let deleted = client
        .delete_stream("soft", &DeleteStreamOptions::default().stream_state(StreamState::StreamRevision(2)))
        .await;
    assert!(deleted.unwrap().is_some());
    assert!(matches!(
        read_revisions(&client, "soft", &ReadStreamOptions::default()).await,
        Err(Error::ResourceNotFound)
    ));
    let again = client.append_to_stream("soft", &expect(StreamState::NoStream), event("E", 9)).await.unwrap();
    assert_eq!(again.next_expected_version, 3, "revisions continue after a soft delete");

    let wrong = client
        .delete_stream("soft", &DeleteStreamOptions::default().stream_state(StreamState::StreamRevision(0)))
        .await;
    assert!(wrong.is_err(), "a wrong expectation on delete fails");

    client.append_to_stream("hard", &expect(StreamState::NoStream), events("E", 2)).await.unwrap();
    client.tombstone_stream("hard", &TombstoneStreamOptions::default()).await.unwrap();
    assert!(matches!(
        read_revisions(&client, "hard", &ReadStreamOptions::default()).await,
        Err(Error::ResourceDeleted)
    ));
    let append = client.append_to_stream("hard", &expect(StreamState::Any), event("E", 3)).await;
    assert!(matches!(append, Err(Error::ResourceDeleted)), "got {append:?}");

    client.append_to_stream("capped", &expect(StreamState::NoStream), events("E", 10)).await.unwrap();
    let mut metadata = StreamMetadata::builder().max_count(3).build();
    metadata.custom_properties.insert("owner".into(), json!("billing"));
    client.set_stream_metadata("capped", &AppendToStreamOptions::default(), &metadata).await.unwrap();
    match client.get_stream_metadata("capped", &ReadStreamOptions::default()).await.unwrap() {
        kurrentdb::StreamMetadataResult::Success(found) => {
            assert_eq!(found.metadata().max_count, Some(3));
            assert_eq!(found.metadata().custom_properties.get("owner"), Some(&json!("billing")));
        }
        other => panic!("expected metadata, got {other:?}"),
    }
    assert_eq!(read_revisions(&client, "capped", &ReadStreamOptions::default()).await.unwrap(), vec![7, 8, 9]);
}

/// The server reads a stream in pages of 512 events: a first page of
/// expired events must not end the read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_skip_expired_events_to_the_live_ones() {
    let server = support::start();
    let client = client(&server);
    client.append_to_stream("aging", &expect(StreamState::NoStream), events("Old", 1300)).await.unwrap();
    // Written as raw metadata: `$maxAge` is in seconds, and this client's
    // `StreamMetadata::max_age` writes milliseconds (1 s would be 1000 s).
    // The new events stay live for 3 s: room for the reads below on a busy machine.
    let max_age = EventData::json("$metadata", &json!({ "$maxAge": 3 })).expect("serializable");
    client.append_to_stream("$$aging", &AppendToStreamOptions::default(), max_age).await.unwrap();
    tokio::time::sleep(Duration::from_millis(4100)).await;
    client.append_to_stream("aging", &expect(StreamState::StreamRevision(1299)), events("New", 2)).await.unwrap();
    let forwards = read_revisions(&client, "aging", &ReadStreamOptions::default()).await.unwrap();
    assert_eq!(forwards, vec![1300, 1301]);
    let backwards = ReadStreamOptions::default().backwards().position(StreamPosition::End);
    assert_eq!(read_revisions(&client, "aging", &backwards).await.unwrap(), vec![1301, 1300]);
    let one = ReadStreamOptions::default().max_count(1);
    assert_eq!(read_revisions(&client, "aging", &one).await.unwrap(), vec![1300]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_append_and_persistent_subscription_listing() {
    let server = support::start();
    let client = client(&server);
    let batch = client.batch_append(&Default::default()).await.expect("BatchAppend is advertised");
    let first = batch.append_to_stream("batched", StreamState::NoStream, events("B", 5)).await.unwrap();
    assert_eq!(first.current_revision(), Some(4));
    let second = batch.append_to_stream("batched", StreamState::StreamRevision(4), events("B", 2)).await.unwrap();
    assert_eq!(second.current_revision(), Some(6));
    let conflict = batch.append_to_stream("batched", StreamState::NoStream, events("B", 1)).await;
    assert!(conflict.is_err(), "a wrong expectation fails the batch");
    assert_eq!(
        read_revisions(&client, "batched", &ReadStreamOptions::default()).await.unwrap(),
        (0..7).collect::<Vec<_>>()
    );

    let listed = client.list_all_persistent_subscriptions(&Default::default()).await.unwrap();
    assert!(listed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_discovery_through_gossip_finds_the_single_node() {
    let server = support::start();
    let settings: ClientSettings =
        format!("esdb+discover://{}?tls=false", server.address()).parse().expect("a valid connection string");
    let client = Client::new(settings).unwrap();
    let result = client.append_to_stream("discovered", &expect(StreamState::NoStream), event("Found", 0)).await;
    assert_eq!(result.unwrap().next_expected_version, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_and_the_server_keeps_serving() {
    let server = support::start();
    let client = client(&server);
    let huge = EventData::binary("Huge", vec![0u8; 17 * 1024 * 1024].into());
    let result = client.append_to_stream("big", &expect(StreamState::Any), huge).await;
    assert!(result.is_err(), "an event over the size limit is refused");
    let result = client.append_to_stream("", &expect(StreamState::Any), event("E", 0)).await;
    assert!(result.is_err(), "an empty stream name is refused");
    let result = client.append_to_stream("$system", &expect(StreamState::Any), event("E", 0)).await;
    assert!(result.is_err(), "system stream names are reserved");
    // Nothing of the refused appends is visible, and the server still works.
    let ok = client.append_to_stream("after", &expect(StreamState::NoStream), event("E", 0)).await;
    assert_eq!(ok.unwrap().next_expected_version, 0);
    let mut all = client.read_all(&ReadAllOptions::default()).await.unwrap();
    let mut count = 0;
    while all.next().await.unwrap().is_some() {
        count += 1;
    }
    assert_eq!(count, 1);
}

/// A checkpoint from a store whose data was replaced points past the end
/// of the new log: refused with a clear error, never a subscription that
/// silently skips what is written until the log grows past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_past_the_end_of_the_log_are_refused() {
    let server = support::start();
    let client = client(&server);
    client.append_to_stream("short", &expect(StreamState::NoStream), events("E", 3)).await.unwrap();
    let far = Position { commit: 1 << 40, prepare: 1 << 40 };

    let options = SubscribeToAllOptions::default().position(StreamPosition::Position(far));
    let mut subscription = client.subscribe_to_all(&options).await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.expect("no answer");
    let error = outcome.expect_err("a subscription past the end is refused");
    assert!(error.to_string().contains("past the end of the log"), "{error}");

    let filtered = SubscribeToAllOptions::default()
        .position(StreamPosition::Position(far))
        .filter(SubscriptionFilter::on_stream_name().add_prefix("short"));
    let mut subscription = client.subscribe_to_all(&filtered).await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.expect("no answer");
    assert!(outcome.is_err(), "a filtered subscription past the end is refused too");

    let read = ReadAllOptions::default().position(StreamPosition::Position(far));
    let error = match client.read_all(&read).await {
        Err(error) => error,
        Ok(mut events) => events.next().await.expect_err("a read past the end is refused"),
    };
    assert!(error.to_string().contains("past the end of the log"), "{error}");

    // The events written meanwhile reach a subscription from the start.
    let mut subscription =
        client.subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::Start)).await;
    for revision in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.unwrap().unwrap();
        assert_eq!(event.get_original_event().revision, revision);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_subscriptions_and_exits_cleanly() {
    let mut server = support::start();
    let client = client(&server);
    client.append_to_stream("kept", &expect(StreamState::NoStream), events("E", 5)).await.unwrap();
    let mut subscription =
        client.subscribe_to_all(&SubscribeToAllOptions::default().position(StreamPosition::Start)).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.unwrap().unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.stop_with_sigterm();
        (status, server)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "stele serve exits 0 on SIGTERM, got {:?}", status.0);
    let server = support::restart(status.1);
    let client = self::client(&server);
    let position = Position { commit: 0, prepare: 0 };
    let options = ReadAllOptions::default().position(StreamPosition::Position(position));
    let mut read = client.read_all(&options).await.unwrap();
    let mut count = 0;
    while read.next().await.unwrap().is_some() {
        count += 1;
    }
    assert_eq!(count, 5, "acknowledged events survive the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stele_multi_stream_append_is_atomic_over_grpc() {
    use stele_server::proto::stele::streams::v1 as wire;
    use wire::multi_stream_append_client::MultiStreamAppendClient;

    let server = support::start();
    let mut multi = MultiStreamAppendClient::connect(format!("http://{}", server.address())).await.unwrap();
    let no_stream = || Some(wire::ExpectedRevision { kind: Some(wire::expected_revision::Kind::NoStream(())) });
    let sign_up = |user: &str| wire::AppendRequest {
        streams: vec![
            wire::StreamAppend {
                stream: "email-ann@example.com".into(),
                expected_revision: no_stream(),
                events: vec![wire::ProposedEvent {
                    id: uuid::Uuid::new_v4().to_string(),
                    r#type: "EmailReserved".into(),
                    content_type: "application/json".into(),
                    data: br#"{"user":"x"}"#.to_vec(),
                    metadata: Vec::new(),
                }],
            },
            wire::StreamAppend {
                stream: format!("user-{user}"),
                expected_revision: no_stream(),
                events: vec![wire::ProposedEvent {
                    id: uuid::Uuid::new_v4().to_string(),
                    r#type: "UserRegistered".into(),
                    content_type: "application/json".into(),
                    data: b"{}".to_vec(),
                    metadata: Vec::new(),
                }],
            },
        ],
    };
    match multi.append(sign_up("1")).await.unwrap().into_inner().result {
        Some(wire::append_response::Result::Success(success)) => {
            assert_eq!(success.streams.len(), 2);
            assert_eq!(success.streams[1].stream, "user-1");
            assert!(success.streams[0].last_position < success.streams[1].first_position);
        }
        other => panic!("the first sign-up must succeed, got {other:?}"),
    }
    match multi.append(sign_up("2")).await.unwrap().into_inner().result {
        Some(wire::append_response::Result::Failure(failure)) => {
            assert_eq!(failure.stream, "email-ann@example.com");
            match failure.reason {
                Some(wire::append_failure::Reason::WrongExpectedRevision(wrong)) => assert_eq!(wrong.actual, Some(0)),
                other => panic!("expected a wrong expected revision, got {other:?}"),
            }
        }
        other => panic!("the second sign-up must fail, got {other:?}"),
    }
    let client = client(&server);
    assert!(matches!(
        read_revisions(&client, "user-2", &ReadStreamOptions::default()).await,
        Err(Error::ResourceNotFound)
    ));
    let bad = wire::AppendRequest {
        streams: vec![wire::StreamAppend {
            stream: "x".into(),
            expected_revision: None,
            events: vec![wire::ProposedEvent { id: "not-a-uuid".into(), r#type: "T".into(), ..Default::default() }],
        }],
    };
    let status = multi.append(bad).await.expect_err("an invalid id is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}
