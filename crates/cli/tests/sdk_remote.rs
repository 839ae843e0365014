//! The toolkit's repository, timers and consumers (projections, process
//! managers), run unchanged over both backends
//! chosen by configuration (`steledb_sdk::connect`): the embedded store on
//! a temporary directory, and a real `stele serve` process through the gRPC
//! client. Each scenario is one function over `Arc<dyn EventStore>`, run
//! once per backend, so both must give the same answers.

#[path = "../../sdk/tests/common/mod.rs"]
mod bank;
mod support;

use std::sync::{Arc, Barrier, Mutex};

use bank::{bank_codec, ctx, Account, AccountCommand, AccountEvent, Bank, RendezvousStore};
use steledb::{CurrentRevision, EventFilter, ExpectedRevision, NewEvent, RecordedEvent, StreamAppend};
use steledb_sdk::{
    connect, ids, limits, Backend, ConsumerError, EventStore, MemoryCheckpoints, ProcessManager, ProcessManagerRunner,
    Projection, ProjectionRunner, Repository, RepositoryError, SnapshotConfig, SnapshotUse, Source, StoreError,
    TimerService, Timers,
};

type SharedStore = Arc<dyn EventStore>;

/// A backend and what keeps it alive (its directory or server process).
enum Fixture {
    Embedded(#[allow(dead_code)] tempfile::TempDir),
    Remote(#[allow(dead_code)] support::Server),
}

fn embedded() -> (Fixture, SharedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let setting = dir.path().join("data").to_str().expect("a UTF-8 temp path").to_owned();
    let store = connect(&Backend::parse(&setting)).expect("open the embedded store");
    (Fixture::Embedded(dir), store)
}

fn remote() -> (Fixture, SharedStore) {
    let server = support::start();
    let setting = format!("kurrentdb://{}?tls=false", server.address());
    assert_eq!(Backend::parse(&setting), Backend::Remote(setting.clone()));
    let store = connect(&Backend::parse(&setting)).expect("connect to the server");
    (Fixture::Remote(server), store)
}

/// One test per backend for each scenario.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn embedded() {
                let (_fixture, store) = super::embedded();
                super::$scenario(store);
            }
            #[test]
            fn remote() {
                let (_fixture, store) = super::remote();
                super::$scenario(store);
            }
        }
    )*};
}

on_both_backends!(
    create_then_load,
    concurrent_commands_retry_and_lose_no_update,
    a_repeated_command_is_answered_without_writing,
    a_racing_copy_of_a_command_is_written_once,
    load_starts_from_the_snapshot,
    a_failed_expectation_is_a_typed_error,
    a_multi_stream_append_is_all_or_nothing,
    a_timer_fired_twice_is_written_once,
    a_projection_applies_each_event_once_across_runs,
    a_process_manager_resumes_with_the_event_after_a_quiet_stretch,
);

fn open(owner: &str) -> AccountCommand {
    AccountCommand::Open { owner: owner.to_owned() }
}

fn deposit(amount_cents: u64) -> AccountCommand {
    AccountCommand::Deposit { amount_cents }
}

fn event(id: u128, event_type: &str) -> NewEvent {
    NewEvent::json(uuid::Uuid::from_u128(id), event_type, b"{}".to_vec())
}

fn create_then_load(store: SharedStore) {
    let bank = Repository::new(Bank, store.clone(), bank_codec());
    let empty = bank.load("account-1").unwrap();
    assert_eq!((empty.state, empty.revision), (Account::default(), None));

    let opened = bank.handle("account-1", &open("ann"), &ctx(1_000, 1)).unwrap();
    let append = opened.append.unwrap();
    assert_eq!((append.first_revision, append.last_revision, append.duplicate), (0, 0, false));
    bank.handle("account-1", &deposit(700), &ctx(2_000, 2)).unwrap();
    let closed = bank.handle("account-1", &AccountCommand::Close, &ctx(3_000, 3)).unwrap();
    assert_eq!(closed.decided_at, Some(1));
    let append = closed.append.unwrap();
    assert_eq!((append.first_revision, append.last_revision), (2, 3));
    assert!(append.first_position < append.last_position, "{append:?}");

    let loaded = bank.load("account-1").unwrap();
    assert_eq!((loaded.revision, loaded.events_replayed), (Some(3), 4));
    assert_eq!(loaded.state, Account { owner: Some("ann".to_owned()), balance_cents: 0, deposits: 1, closed: true });

    // What went over the wire came back whole: ids derived from the
    // command, types, the command id in the metadata, the decided time.
    let stored = store.read_forward("account-1", 0, 10).unwrap();
    let revisions: Vec<u64> = stored.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, [0, 1, 2, 3]);
    let types: Vec<&str> = stored.iter().map(RecordedEvent::event_type).collect();
    assert_eq!(types, ["Opened", "Deposited", "Withdrawn", "Closed"]);
    assert_eq!(stored[3].id, ids::event_id(uuid::Uuid::from_u128(3), "account-1", 1));
    assert_eq!(stored[3].content_type(), "application/json");
    assert_eq!(
        bank::metadata_json(&stored[3]),
        serde_json::json!({"schema": 1, "command_id": uuid::Uuid::from_u128(3).to_string()})
    );
    assert!(stored[0].recorded_at_us > 0);
    assert_eq!(store.read_forward("account-1", 2, 1).unwrap()[0].id, stored[2].id);
    assert_eq!(store.read_last("account-1").unwrap().map(|e| e.id), Some(stored[3].id));
    assert!(store.read_forward("account-none", 0, 10).unwrap().is_empty());
    assert!(store.read_last("account-none").unwrap().is_none());
}

/// Runs `commands` on one stream from as many threads, all loading the
/// same revision first; returns each thread's `(attempts, duplicate)`.
fn race(store: &SharedStore, stream: &str, commands: &[(AccountCommand, u128)]) -> Vec<(u32, bool)> {
    let barrier = Arc::new(Barrier::new(commands.len()));
    std::thread::scope(|scope| {
        let handles: Vec<_> = commands
            .iter()
            .map(|(command, command_id)| {
                let wrapper = RendezvousStore::new(store.clone(), barrier.clone());
                scope.spawn(move || {
                    let bank =
                        Repository::new(Bank, wrapper, bank_codec()).with_attempts_max(commands.len() as u32 + 1);
                    let handled = bank.handle(stream, command, &ctx(5_000, *command_id)).unwrap();
                    (handled.attempts, handled.append.expect("events were decided").duplicate)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("the command thread panicked")).collect()
    })
}

fn concurrent_commands_retry_and_lose_no_update(store: SharedStore) {
    let bank = Repository::new(Bank, store.clone(), bank_codec());
    bank.handle("account-2", &open("bob"), &ctx(0, 1)).unwrap();
    let commands: Vec<(AccountCommand, u128)> = (1..=4).map(|i| (deposit(100 * i), 10 + i as u128)).collect();

    let outcomes = race(&store, "account-2", &commands);

    // All four loaded revision 0; exactly one could append there, the
    // others conflicted, reloaded and decided again.
    assert_eq!(outcomes.iter().filter(|(attempts, _)| *attempts == 1).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|(_, duplicate)| !duplicate), "{outcomes:?}");
    let loaded = bank.load("account-2").unwrap();
    assert_eq!(loaded.revision, Some(4));
    assert_eq!((loaded.state.balance_cents, loaded.state.deposits), (100 + 200 + 300 + 400, 4));

    // With one attempt only, the loser of a certain conflict gets a typed error.
    let barrier = Arc::new(Barrier::new(2));
    let errors: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2u128)
            .map(|i| {
                let wrapper = RendezvousStore::new(store.clone(), barrier.clone());
                scope.spawn(move || {
                    let bank = Repository::new(Bank, wrapper, bank_codec()).with_attempts_max(1);
                    bank.handle("account-2", &deposit(1), &ctx(6_000, 20 + i)).err()
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().expect("no panic")).collect()
    });
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], RepositoryError::Conflict { stream, attempts: 1 } if stream == "account-2"),
        "{errors:?}"
    );
    assert_eq!(bank.load("account-2").unwrap().state.balance_cents, 1_001);
}

fn a_repeated_command_is_answered_without_writing(store: SharedStore) {
    let bank = Repository::new(Bank, store.clone(), bank_codec());
    bank.handle("account-3", &open("cy"), &ctx(0, 1)).unwrap();
    let first = bank.handle("account-3", &deposit(250), &ctx(1, 2)).unwrap();
    let last_before = store.read_last("account-3").unwrap().expect("events").position;

    // The same command id again (a retry after a lost reply).
    let again = bank.handle("account-3", &deposit(250), &ctx(1, 2)).unwrap();
    let (first_append, again_append) = (first.append.unwrap(), again.append.unwrap());
    assert!(!first_append.duplicate && again_append.duplicate);
    assert_eq!(
        (again_append.first_revision, again_append.last_revision),
        (first_append.first_revision, first_append.last_revision)
    );
    assert_eq!(again.events, vec![AccountEvent::Deposited { amount_cents: 250, currency: "EUR".to_owned() }]);
    assert_eq!(store.read_last("account-3").unwrap().expect("events").position, last_before, "nothing written");
    assert_eq!(bank.load("account-3").unwrap().state.balance_cents, 250);
}

fn a_racing_copy_of_a_command_is_written_once(store: SharedStore) {
    let bank = Repository::new(Bank, store.clone(), bank_codec());
    bank.handle("account-4", &open("dee"), &ctx(0, 1)).unwrap();
    // Two copies of one command (same id), both decided at revision 0.
    let outcomes = race(&store, "account-4", &[(deposit(75), 2), (deposit(75), 2)]);
    assert_eq!(outcomes.iter().filter(|(_, duplicate)| *duplicate).count(), 1, "{outcomes:?}");
    let loaded = bank.load("account-4").unwrap();
    assert_eq!((loaded.revision, loaded.state.balance_cents), (Some(1), 75));
}

fn load_starts_from_the_snapshot(store: SharedStore) {
    let bank = Repository::new(Bank, store.clone(), bank_codec()).with_snapshots(SnapshotConfig::every_events(2, 1));
    bank.handle("account-5", &open("eve"), &ctx(0, 1)).unwrap();
    bank.handle("account-5", &deposit(10), &ctx(0, 2)).unwrap(); // revision 1: snapshot due
    bank.handle("account-5", &deposit(20), &ctx(0, 3)).unwrap();

    let loaded = bank.load("account-5").unwrap();
    assert_eq!(loaded.snapshot, SnapshotUse::Used { revision: 1 });
    assert_eq!((loaded.revision, loaded.events_replayed), (Some(2), 1));
    assert_eq!((loaded.state.balance_cents, loaded.state.deposits), (30, 2));
    let snapshot = store.read_last("snapshot-account-5").unwrap().expect("a snapshot was written");
    assert_eq!(bank::metadata_json(&snapshot), serde_json::json!({"format": 1, "schema": 1}));
    // A repository without snapshots replays everything to the same state.
    let plain = Repository::new(Bank, store.clone(), bank_codec()).load("account-5").unwrap();
    assert_eq!((plain.state, plain.events_replayed), (loaded.state, 3));
}

fn a_failed_expectation_is_a_typed_error(store: SharedStore) {
    store.append("s-6", ExpectedRevision::NoStream, vec![event(1, "A"), event(2, "B")]).unwrap();
    let cases = [
        (ExpectedRevision::Exact(5), CurrentRevision::Current(1)),
        (ExpectedRevision::NoStream, CurrentRevision::Current(1)),
    ];
    for (expected, actual) in cases {
        let error = store.append("s-6", expected, vec![event(3, "C")]).unwrap_err();
        assert!(
            matches!(&error, StoreError::WrongExpectedRevision { stream, expected: e, actual: a }
                if stream == "s-6" && *e == expected && *a == actual),
            "{error:?}"
        );
    }
    let error = store.append("s-missing", ExpectedRevision::Exact(0), vec![event(4, "D")]).unwrap_err();
    assert!(matches!(&error, StoreError::WrongExpectedRevision { actual: CurrentRevision::NoStream, .. }), "{error:?}");
    let error = store.append("s-missing", ExpectedRevision::StreamExists, vec![event(5, "E")]).unwrap_err();
    assert!(matches!(&error, StoreError::WrongExpectedRevision { expected: ExpectedRevision::StreamExists, .. }));
    // Nothing of the refused appends was written.
    assert_eq!(store.read_forward("s-6", 0, 10).unwrap().len(), 2);
    assert!(store.read_last("s-missing").unwrap().is_none());
}

fn a_multi_stream_append_is_all_or_nothing(store: SharedStore) {
    let reserve = |email_event: u128, user: &str, user_event: u128| {
        vec![
            StreamAppend::new("email-ann", ExpectedRevision::NoStream, vec![event(email_event, "EmailReserved")]),
            StreamAppend::new(user, ExpectedRevision::NoStream, vec![event(user_event, "SignedUp")]),
        ]
    };
    let results = store.append_multi(reserve(1, "user-1", 2)).unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!((results[0].last_revision, results[1].last_revision), (0, 0));
    assert!(results[0].last_position < results[1].first_position, "{results:?}");

    // A second sign-up with the same email: the email check fails, so the
    // user stream is not written either.
    let error = store.append_multi(reserve(3, "user-2", 4)).unwrap_err();
    assert!(
        matches!(&error, StoreError::WrongExpectedRevision { stream, expected: ExpectedRevision::NoStream, actual: CurrentRevision::Current(0) }
            if stream == "email-ann"),
        "{error:?}"
    );
    assert!(store.read_last("user-2").unwrap().is_none());
    assert_eq!(store.read_forward("email-ann", 0, 10).unwrap().len(), 1);

    // The first request again (a retry after a lost reply): recognised by
    // its event ids, nothing written.
    let again = store.append_multi(reserve(1, "user-1", 2)).unwrap();
    assert!(again.iter().all(|r| r.duplicate), "{again:?}");
    assert_eq!(store.read_forward("user-1", 0, 10).unwrap().len(), 1);
}

fn a_timer_fired_twice_is_written_once(store: SharedStore) {
    Timers::new(store.clone()).schedule("remind-1", 1_000, serde_json::json!({ "user": 1 })).unwrap();
    // Two services (say, one on each of two machines) both see it due, the
    // second before it has read the first one's `TimerFired`.
    let mut first = TimerService::start(store.clone()).unwrap();
    let mut second = TimerService::start(store.clone()).unwrap();
    assert!(first.tick(999).unwrap().is_empty());
    let fired_first = first.tick(1_000).unwrap();
    let fired_second = second.fire_due(1_500).unwrap();
    assert_eq!((fired_first.len(), fired_second.len()), (1, 1));
    assert_eq!((fired_first[0].duplicate, fired_second[0].duplicate), (false, true));
    let types: Vec<String> =
        store.read_forward("timers", 0, 10).unwrap().iter().map(|e| e.event_type().to_owned()).collect();
    assert_eq!(types, ["TimerScheduled", "TimerFired"]);
}

/// One row per event, keyed by its position: applying an event twice
/// fails the batch instead of going unnoticed.
struct Ledger;

impl Projection for Ledger {
    type Error = rusqlite::Error;
    fn name(&self) -> &str {
        "ledger"
    }
    fn source(&self) -> Source {
        Source::AllFiltered(EventFilter::StreamPrefix(vec!["acct-".to_owned()]))
    }
    fn init(&mut self, db: &rusqlite::Connection) -> rusqlite::Result<()> {
        db.execute_batch("CREATE TABLE IF NOT EXISTS ledger (position INTEGER PRIMARY KEY, stream TEXT NOT NULL)")
    }
    fn apply(&mut self, db: &rusqlite::Connection, event: &RecordedEvent) -> rusqlite::Result<()> {
        db.execute("INSERT INTO ledger VALUES (?1, ?2)", rusqlite::params![event.position as i64, event.stream()])?;
        Ok(())
    }
    fn reset(&mut self, db: &rusqlite::Connection) -> rusqlite::Result<()> {
        db.execute_batch("DROP TABLE IF EXISTS ledger")
    }
}

/// `count` events in one append to `stream`, ids from `first_id` on.
fn append_many(store: &SharedStore, stream: &str, first_id: u128, count: u128) {
    let events = (first_id..first_id + count).map(|id| event(id, "Happened")).collect();
    store.append(stream, ExpectedRevision::Any, events).unwrap();
}

fn a_projection_applies_each_event_once_across_runs(store: SharedStore) {
    // Matching events between long stretches the filter passes over, and
    // such a stretch at the end: the checkpoint must move through them.
    let noise = limits::FILTER_CHECKPOINT_INTERVAL_RECORDS as u128 + 100;
    for block in 0..3u128 {
        append_many(&store, &format!("acct-{block}"), 1_000_000 * (block + 1), 10);
        append_many(&store, "noise", 10_000_000 * (block + 1), noise);
    }
    let dir = tempfile::tempdir().unwrap();
    let database = || steledb_sdk::open_database(dir.path().join("model.sqlite")).unwrap();
    let count = |db: &rusqlite::Connection| steledb_sdk::testkit::query_i64(db, "SELECT COUNT(*) FROM ledger").unwrap();

    let mut runner = ProjectionRunner::new(&*store, database(), Ledger).unwrap().with_batch_events_max(7);
    let mut progress = Vec::new();
    let report = runner.run_with(steledb_sdk::RunMode::UntilCaughtUp, |p| progress.push(*p)).unwrap();
    assert_eq!(report.events_applied, 30);
    assert_eq!(count(runner.connection()), 30);
    let last_position = store.last_position().unwrap().expect("events");
    assert_eq!(runner.checkpoint().unwrap().after_position, Some(last_position), "past the quiet tail too");
    assert_eq!(progress.last().map(|p| (p.position, p.last_position)), Some((last_position, last_position)));
    drop(runner);

    // A new run on the same model applies only what came since.
    append_many(&store, "acct-9", 90_000_000, 5);
    let mut runner = ProjectionRunner::new(&*store, database(), Ledger).unwrap();
    assert_eq!(runner.run_until_caught_up().unwrap().events_applied, 5);
    assert_eq!(count(runner.connection()), 35);
    assert_eq!(runner.checkpoint().unwrap().events_handled, 35);
}

/// Records the streams it reacts to; fails on the first event while `fail_next` is set.
struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
    fail_next: bool,
}

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the outside refused")
    }
}

impl std::error::Error for Refused {}

impl ProcessManager for Recorder {
    type Error = Refused;
    fn name(&self) -> &str {
        "recorder"
    }
    fn source(&self) -> Source {
        Source::AllFiltered(EventFilter::StreamPrefix(vec!["order-".to_owned()]))
    }
    fn react(&mut self, event: &RecordedEvent) -> Result<(), Refused> {
        if std::mem::take(&mut self.fail_next) {
            return Err(Refused);
        }
        self.seen.lock().unwrap().push(event.stream().to_owned());
        Ok(())
    }
}

/// The checkpoint a filtered subscription reports after a quiet stretch
/// names the last record passed over; the matching event right behind it
/// must still be delivered when the consumer resumes there.
fn a_process_manager_resumes_with_the_event_after_a_quiet_stretch(store: SharedStore) {
    append_many(&store, "noise", 1, limits::FILTER_CHECKPOINT_INTERVAL_RECORDS as u128);
    store.append("order-1", ExpectedRevision::NoStream, vec![event(5_000, "Placed")]).unwrap();
    store.append("order-2", ExpectedRevision::NoStream, vec![event(5_001, "Placed")]).unwrap();
    let order_1_position = store.read_last("order-1").unwrap().unwrap().position;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let checkpoints = MemoryCheckpoints::new();

    let failing = Recorder { seen: seen.clone(), fail_next: true };
    let error = ProcessManagerRunner::new(&*store, failing, checkpoints.clone()).run_until_caught_up().unwrap_err();
    assert!(matches!(error, ConsumerError::Handler { position, .. } if position == order_1_position), "{error}");
    let saved = checkpoints.get("recorder").expect("saved on the way out");
    let after = saved.after_position.expect("the quiet stretch was checkpointed");
    assert!(after < order_1_position, "{saved:?}");
    assert_eq!(saved.events_handled, 0);

    let healthy = Recorder { seen: seen.clone(), fail_next: false };
    let report = ProcessManagerRunner::new(&*store, healthy, checkpoints.clone()).run_until_caught_up().unwrap();
    assert_eq!(report.events_handled, 2);
    assert_eq!(*seen.lock().unwrap(), ["order-1", "order-2"]);
}

// ------------------------------------------------------ remote backend only

fn connect_to(server: &support::Server) -> SharedStore {
    connect(&Backend::Remote(format!("kurrentdb://{}?tls=false", server.address()))).expect("connect")
}

#[test]
fn remote_deleted_streams_are_typed_as_on_the_embedded_store() {
    let server = support::start();
    let store = connect_to(&server);
    for stream in ["gone", "soft"] {
        store.append(stream, ExpectedRevision::NoStream, vec![event(1, "A")]).unwrap();
    }
    assert_eq!(server.delete("/streams/gone?tombstone=true").status, 200);
    assert_eq!(server.delete("/streams/soft").status, 200);

    let error = store.append("gone", ExpectedRevision::Any, vec![event(2, "B")]).unwrap_err();
    assert!(matches!(&error, StoreError::StreamDeleted { stream } if stream == "gone"), "{error:?}");
    let error = store.read_forward("gone", 0, 10).unwrap_err();
    assert!(matches!(&error, StoreError::StreamDeleted { stream } if stream == "gone"), "{error:?}");
    // A soft-deleted stream reads as empty and can start again.
    assert!(store.read_forward("soft", 0, 10).unwrap().is_empty());
    assert!(store.read_last("soft").unwrap().is_none());
}

#[test]
fn remote_a_stopped_server_is_a_transport_error_not_a_conflict() {
    let mut server = support::start();
    let store = connect_to(&server);
    store.append("s-1", ExpectedRevision::NoStream, vec![event(1, "A")]).unwrap();
    assert!(server.stop_with_sigterm().success());

    let error = store.append("s-1", ExpectedRevision::Exact(0), vec![event(2, "B")]).unwrap_err();
    let StoreError::Backend(inner) = &error else { panic!("not a backend error: {error:?}") };
    let client_error = inner.downcast_ref::<steledb_client::ClientError>().expect("the client's own error");
    assert!(matches!(client_error, steledb_client::ClientError::Transport { .. }), "{client_error:?}");
    // The repository passes it on instead of retrying it as a conflict.
    let bank = Repository::new(Bank, store, bank_codec()).with_attempts_max(3);
    let error = bank.handle("account-x", &open("zed"), &ctx(0, 1)).unwrap_err();
    assert!(!matches!(error, RepositoryError::Conflict { .. }), "{error:?}");
}

#[test]
fn remote_a_following_consumer_rides_out_a_server_restart() {
    let server = support::start();
    let store = connect_to(&server);
    store.append("order-1", ExpectedRevision::NoStream, vec![event(1, "Placed")]).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let checkpoints = MemoryCheckpoints::new();
    let stop = steledb_sdk::StopHandle::new();
    let follower = {
        let (store, seen, checkpoints, stop) = (store.clone(), seen.clone(), checkpoints.clone(), stop.clone());
        std::thread::spawn(move || {
            let recorder = Recorder { seen, fail_next: false };
            ProcessManagerRunner::new(&*store, recorder, checkpoints).with_poll_interval_ms(10).run(&stop)
        })
    };
    let wait_for_seen = |count: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while seen.lock().unwrap().len() < count {
            assert!(std::time::Instant::now() < deadline, "saw only {:?}", seen.lock().unwrap());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    wait_for_seen(1);

    // The server stops (its subscriptions end) and comes back on its
    // address; the follower subscribes again after what it saw.
    let server = support::restart_in_place(server);
    store.append("order-2", ExpectedRevision::NoStream, vec![event(2, "Placed")]).unwrap();
    store.append("order-3", ExpectedRevision::NoStream, vec![event(3, "Placed")]).unwrap();
    wait_for_seen(3);
    stop.stop();
    let report = follower.join().unwrap().expect("the run ends cleanly when stopped");
    assert!(report.stopped);
    assert_eq!(*seen.lock().unwrap(), ["order-1", "order-2", "order-3"], "each once, in order");
    drop(server);
}
