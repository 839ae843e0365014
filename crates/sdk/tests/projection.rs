//! Projections on a real store and a real SQLite file: the checkpoint is
//! committed with the model, so failures and restarts neither repeat nor
//! skip an event.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rusqlite::Connection;
use steledb::{EventFilter, ExpectedRevision, NewEvent, RecordedEvent, Store, Uuid};
use steledb_sdk::testkit::{query_i64, replay, replay_store};
use steledb_sdk::{open_database, Projection, ProjectionError, ProjectionRunner, Source, StopHandle};

/// Per event a row with how many times it was applied, and per stream a
/// count and a sum of the events' `amount`.
struct Ledger {
    /// Fail (or panic) when applying the event with this global index.
    fail_at_amount: Option<u64>,
    panic: bool,
}

#[derive(Debug, thiserror::Error)]
enum LedgerError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("injected failure at amount {0}")]
    Injected(u64),
}

fn amount(event: &RecordedEvent) -> u64 {
    let value: serde_json::Value = serde_json::from_slice(event.data()).unwrap();
    value["amount"].as_u64().unwrap()
}

impl Projection for Ledger {
    type Error = LedgerError;
    fn name(&self) -> &str {
        "ledger"
    }
    fn source(&self) -> Source {
        Source::AllFiltered(EventFilter::StreamPrefix(vec!["account-".into()]))
    }
    fn init(&mut self, db: &Connection) -> Result<(), LedgerError> {
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS applied (position INTEGER PRIMARY KEY, times INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY, count INTEGER NOT NULL, sum INTEGER NOT NULL);",
        )?;
        Ok(())
    }
    fn apply(&mut self, db: &Connection, event: &RecordedEvent) -> Result<(), LedgerError> {
        let amount = amount(event);
        // Write first, then fail: the failure must roll these writes back too.
        db.execute(
            "INSERT INTO applied VALUES (?1, 1) ON CONFLICT(position) DO UPDATE SET times = times + 1",
            [event.position as i64],
        )?;
        db.execute(
            "INSERT INTO totals VALUES (?1, 1, ?2) ON CONFLICT(stream) DO UPDATE SET count = count + 1, sum = sum + ?2",
            rusqlite::params![event.stream(), amount as i64],
        )?;
        if self.fail_at_amount == Some(amount) {
            if self.panic {
                panic!("injected panic at amount {amount}");
            }
            return Err(LedgerError::Injected(amount));
        }
        Ok(())
    }
    fn reset(&mut self, db: &Connection) -> Result<(), LedgerError> {
        db.execute_batch("DROP TABLE IF EXISTS applied; DROP TABLE IF EXISTS totals;")?;
        Ok(())
    }
}

fn healthy() -> Ledger {
    Ledger { fail_at_amount: None, panic: false }
}

/// Appends `count` deposits with amounts `first..first+count` over three
/// accounts, with an unrelated stream in between (filtered out).
fn append_deposits(store: &Store, first: u64, count: u64) {
    for amount in first..first + count {
        let stream = format!("account-{}", amount % 3);
        let data = serde_json::to_vec(&serde_json::json!({ "amount": amount })).unwrap();
        store.append(&stream, ExpectedRevision::Any, vec![NewEvent::json(Uuid::new_v4(), "Deposited", data)]).unwrap();
        if amount % 7 == 0 {
            store
                .append("audit", ExpectedRevision::Any, vec![NewEvent::json(Uuid::new_v4(), "Noise", b"{}".to_vec())])
                .unwrap();
        }
    }
}

/// Every event applied exactly once: `count` rows, each applied once, and
/// totals that add up to the amounts `0..count`.
fn assert_exactly_once(db: &Connection, count: u64) {
    assert_eq!(query_i64(db, "SELECT COUNT(*) FROM applied").unwrap() as u64, count, "events skipped or extra");
    assert_eq!(
        query_i64(db, "SELECT COALESCE(MAX(times), 0) FROM applied").unwrap(),
        i64::from(count > 0),
        "an event applied twice"
    );
    assert_eq!(query_i64(db, "SELECT COALESCE(SUM(count), 0) FROM totals").unwrap() as u64, count);
    let expected_sum = count * count.saturating_sub(1) / 2;
    assert_eq!(query_i64(db, "SELECT COALESCE(SUM(sum), 0) FROM totals").unwrap() as u64, expected_sum);
}

fn open(dir: &Path) -> Connection {
    open_database(dir.join("model.sqlite")).unwrap()
}

#[test]
fn a_failure_mid_batch_rolls_back_the_batch_and_a_restart_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    append_deposits(&store, 0, 95);

    let failing = Ledger { fail_at_amount: Some(47), panic: false };
    let mut runner = ProjectionRunner::new(&store, open(dir.path()), failing).unwrap().with_batch_events_max(10);
    let error = runner.run_until_caught_up().unwrap_err();
    assert!(matches!(error, ProjectionError::Apply { ref projection, .. } if projection == "ledger"), "{error}");
    // Batches of 10: events 0..40 committed, the batch holding 47 rolled back.
    let checkpoint = runner.checkpoint().unwrap();
    assert_eq!(checkpoint.events_handled, 40);
    assert_exactly_once(runner.connection(), 40);
    drop(runner);

    // Restart on the same file with a healthy projection.
    let mut runner = ProjectionRunner::new(&store, open(dir.path()), healthy()).unwrap().with_batch_events_max(10);
    let report = runner.run_until_caught_up().unwrap();
    assert_eq!(report.events_applied, 55);
    assert_exactly_once(runner.connection(), 95);
    assert_eq!(runner.checkpoint().unwrap().events_handled, 95);
    assert_eq!(
        runner.checkpoint().unwrap().after_position,
        steledb_sdk::EventStore::last_position(&store).unwrap(),
        "past the filtered-out tail too"
    );

    // More events later: only those are applied.
    append_deposits(&store, 95, 5);
    assert_eq!(runner.run_until_caught_up().unwrap().events_applied, 5);
    assert_exactly_once(runner.connection(), 100);
}

#[test]
fn a_panic_mid_batch_leaves_the_model_at_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    append_deposits(&store, 0, 30);

    let panicking = Ledger { fail_at_amount: Some(12), panic: true };
    let runner = ProjectionRunner::new(&store, open(dir.path()), panicking).unwrap().with_batch_events_max(5);
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        let mut runner = runner;
        runner.run_until_caught_up()
    }));
    assert!(outcome.is_err(), "the projection panicked");

    let mut runner = ProjectionRunner::new(&store, open(dir.path()), healthy()).unwrap().with_batch_events_max(5);
    assert_exactly_once(runner.connection(), 10);
    runner.run_until_caught_up().unwrap();
    assert_exactly_once(runner.connection(), 30);
}

#[test]
fn rebuild_gives_the_same_model_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    append_deposits(&store, 0, 1_200);
    let mut runner = ProjectionRunner::new(&store, open(dir.path()), healthy()).unwrap();
    let first = runner.run_until_caught_up().unwrap();
    assert_eq!(first.events_applied, 1_200);
    assert!(first.batches >= 3, "at most 500 events per transaction, got {} batches", first.batches);
    let totals = |db: &Connection| -> Vec<(String, i64, i64)> {
        let mut statement = db.prepare("SELECT stream, count, sum FROM totals ORDER BY stream").unwrap();
        statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    };
    let before = totals(runner.connection());

    let mut progress = Vec::new();
    let rebuilt = runner.rebuild(|p| progress.push(*p)).unwrap();
    assert_eq!(rebuilt.events_applied, 1_200);
    assert_eq!(totals(runner.connection()), before);
    assert_exactly_once(runner.connection(), 1_200);
    let last = progress.last().unwrap();
    assert_eq!(
        (last.events_applied, Some(last.position), Some(last.last_position)),
        (
            1_200,
            steledb_sdk::EventStore::last_position(&store).unwrap(),
            steledb_sdk::EventStore::last_position(&store).unwrap()
        )
    );
    assert!(progress.len() >= 3);
    assert!(progress.windows(2).all(|w| w[0].events_applied < w[1].events_applied && w[0].position < w[1].position));

    // The testkit's replays agree with the runner.
    assert_eq!(totals(&replay_store(healthy(), &store).unwrap()), before);
    let events = store.read_all(steledb::AllStart::Start, steledb::Direction::Forward, 10_000, None).unwrap().events;
    let replayed = replay(healthy(), events).unwrap();
    assert_eq!(totals(&replayed), before);
    assert_exactly_once(&replayed, 1_200);
}

#[test]
fn a_stream_source_resumes_by_revision() {
    struct OneStream;
    impl Projection for OneStream {
        type Error = rusqlite::Error;
        fn name(&self) -> &str {
            "one-stream"
        }
        fn source(&self) -> Source {
            Source::Stream("account-1".into())
        }
        fn init(&mut self, db: &Connection) -> rusqlite::Result<()> {
            db.execute_batch("CREATE TABLE IF NOT EXISTS seen (revision INTEGER PRIMARY KEY)")
        }
        fn apply(&mut self, db: &Connection, event: &RecordedEvent) -> rusqlite::Result<()> {
            assert_eq!(event.stream(), "account-1");
            db.execute("INSERT INTO seen VALUES (?1)", [event.revision as i64]).map(|_| ())
        }
        fn reset(&mut self, db: &Connection) -> rusqlite::Result<()> {
            db.execute_batch("DROP TABLE seen")
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    append_deposits(&store, 0, 30); // 10 events in account-1
    let mut runner = ProjectionRunner::new(&store, open(dir.path()), OneStream).unwrap();
    assert_eq!(runner.run_until_caught_up().unwrap().events_applied, 10);
    drop(runner);
    append_deposits(&store, 30, 9); // 3 more
                                    // A duplicate insert would fail on the primary key.
    let mut runner = ProjectionRunner::new(&store, open(dir.path()), OneStream).unwrap();
    assert_eq!(runner.run_until_caught_up().unwrap().events_applied, 3);
    assert_eq!(query_i64(runner.connection(), "SELECT MAX(revision) FROM seen").unwrap(), 12);
}

#[test]
fn a_live_run_follows_appends_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    append_deposits(&store, 0, 10);
    let mut runner = ProjectionRunner::new(&store, open(dir.path()), healthy()).unwrap().with_poll_interval_ms(5);
    let stop = StopHandle::new();
    let report = std::thread::scope(|s| {
        let following = s.spawn(|| runner.run(&stop));
        append_deposits(&store, 10, 20);
        // A second connection reads the model while the runner writes it.
        let reader = open(dir.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while query_i64(&reader, "SELECT COUNT(*) FROM applied").unwrap_or(0) < 30 {
            assert!(std::time::Instant::now() < deadline, "the live run did not apply the new events");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        stop.stop();
        following.join().unwrap().unwrap()
    });
    assert!(report.stopped);
    assert_eq!(report.events_applied, 30);
    assert_exactly_once(runner.connection(), 30);
}
