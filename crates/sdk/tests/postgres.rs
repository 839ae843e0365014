//! PostgreSQL projections on a real store and a real PostgreSQL server,
//! started by these tests (initdb in a temporary directory, unix socket
//! only, `fsync=on`) and stopped when the last test using it ends. The
//! checkpoint commits with the model, so failures (an error, a panic, a
//! connection killed mid-batch) and restarts neither repeat nor skip an
//! event.
//!
//! Without PostgreSQL's binaries (`/usr/lib/postgresql/*/bin`) the tests
//! print SKIPPED and pass, unless `STELE_REQUIRE_POSTGRES=1`.
#![cfg(feature = "postgres")]

use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Transaction};
use steledb::{Direction, EventFilter, ExpectedRevision, NewEvent, RecordedEvent, Store, StreamStart, Uuid};
use steledb_sdk::{PgProjection, PgProjectionRunner, ProjectionError, Source, StopHandle};

// ---------------------------------------------------------------------------
// A PostgreSQL server for this test run.

/// A running server in a temporary directory; stopped on drop.
struct Server {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// PostgreSQL refuses to run as root: then its commands run as the
    /// `postgres` user, which owns the directory.
    run_as_postgres: bool,
}

const SUPERUSER: &str = "stele";

impl Server {
    fn start(bin: PathBuf) -> Server {
        let dir = tempfile::tempdir().expect("temporary directory");
        let run_as_postgres = std::fs::metadata(dir.path()).expect("metadata").uid() == 0;
        if run_as_postgres {
            let chown = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().expect("chown");
            assert!(chown.success(), "could not give {} to the postgres user", dir.path().display());
        }
        // Unix socket only (listen_addresses=''), in our own directory: the
        // port only names the socket file, and no TCP port can clash.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let server = Server { dir, bin, port, run_as_postgres };
        let data = server.data_dir();
        server.pg("initdb", &["-D", path_str(&data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync"]);
        let options = format!(
            "-p {} -k {} -c listen_addresses='' -c fsync=on -c max_connections=50 -c shared_buffers=16MB",
            server.port,
            path_str(server.dir.path())
        );
        let log = server.dir.path().join("server.log");
        server.pg("pg_ctl", &["start", "-w", "-t", "60", "-D", path_str(&data), "-l", path_str(&log), "-o", &options]);
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of PostgreSQL's programs (as `postgres` when we are root);
    /// panics with its output when it fails.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = if self.run_as_postgres {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        };
        // A directory the postgres user can enter (the test's may not be).
        command.current_dir(self.dir.path());
        command
    }

    fn pg(&self, program: &str, args: &[&str]) {
        let output = self.command(program).args(args).output().expect("run a PostgreSQL program");
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "{program} {args:?} failed: {}\n{}{}\nserver log:\n{log}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    fn connect(&self, database: &str) -> Client {
        postgres::Config::new()
            .host_path(self.dir.path())
            .port(self.port)
            .user(SUPERUSER)
            .dbname(database)
            .connect(NoTls)
            .expect("connect to the test server")
    }

    /// A fresh database, so tests sharing the server do not see each other.
    fn create_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::SeqCst));
        self.connect("postgres").batch_execute(&format!("CREATE DATABASE {name}")).expect("create database");
        name
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.data_dir();
        let stop = self.command("pg_ctl").args(["stop", "-w", "-m", "fast", "-D", path_str(&data)]).output();
        if !matches!(&stop, Ok(output) if output.status.success()) {
            eprintln!("could not stop the test PostgreSQL server in {}: {stop:?}", self.dir.path().display());
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// PostgreSQL's bin directory, the newest installed version.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The server shared by the tests running now: started by the first,
/// stopped (on drop) after the last lets go.
fn server() -> Option<Arc<Server>> {
    static SHARED: Mutex<Weak<Server>> = Mutex::new(Weak::new());
    let Some(bin) = find_bin() else {
        assert!(
            std::env::var("STELE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "STELE_REQUIRE_POSTGRES=1 but no PostgreSQL under /usr/lib/postgresql/*/bin"
        );
        eprintln!("SKIPPED: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)");
        return None;
    };
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(server) = shared.upgrade() {
        return Some(server);
    }
    let server = Arc::new(Server::start(bin));
    *shared = Arc::downgrade(&server);
    Some(server)
}

/// A test's own database on the shared server.
struct Database {
    server: Arc<Server>,
    name: String,
}

impl Database {
    fn new() -> Option<Database> {
        let server = server()?;
        let name = server.create_database();
        Some(Database { server, name })
    }
    fn connect(&self) -> Client {
        self.server.connect(&self.name)
    }
}

// ---------------------------------------------------------------------------
// The projection under test.

/// Per event a row with how many times it was applied, and per stream a
/// count and a sum of the events' `amount`.
struct Ledger {
    failure: Option<Failure>,
}

/// What goes wrong when applying the event with `amount`.
enum Failure {
    Error(u64),
    Panic(u64),
    /// The connection dies mid-batch (as when the process or the network
    /// does): another connection terminates the runner's backend.
    KillConnection(u64, Box<Client>),
}

#[derive(Debug, thiserror::Error)]
enum LedgerError {
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error("injected failure at amount {0}")]
    Injected(u64),
}

fn amount(event: &RecordedEvent) -> u64 {
    let value: serde_json::Value = serde_json::from_slice(event.data()).unwrap();
    value["amount"].as_u64().unwrap()
}

impl PgProjection for Ledger {
    type Error = LedgerError;
    fn name(&self) -> &str {
        "ledger"
    }
    fn source(&self) -> Source {
        Source::AllFiltered(EventFilter::StreamPrefix(vec!["account-".into()]))
    }
    fn init(&mut self, db: &mut Transaction<'_>) -> Result<(), LedgerError> {
        db.batch_execute(
            "CREATE TABLE IF NOT EXISTS applied (position BIGINT PRIMARY KEY, times BIGINT NOT NULL);
             CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY, count BIGINT NOT NULL, sum BIGINT NOT NULL);",
        )?;
        Ok(())
    }
    fn apply(&mut self, db: &mut Transaction<'_>, event: &RecordedEvent) -> Result<(), LedgerError> {
        let amount = amount(event);
        // Write first, then fail: the failure must roll these writes back too.
        db.execute(
            "INSERT INTO applied VALUES ($1, 1) ON CONFLICT (position) DO UPDATE SET times = applied.times + 1",
            &[&(event.position as i64)],
        )?;
        db.execute(
            "INSERT INTO totals VALUES ($1, 1, $2)
             ON CONFLICT (stream) DO UPDATE SET count = totals.count + 1, sum = totals.sum + $2",
            &[&event.stream(), &(amount as i64)],
        )?;
        match &mut self.failure {
            Some(Failure::Error(at)) if *at == amount => Err(LedgerError::Injected(amount)),
            Some(Failure::Panic(at)) if *at == amount => panic!("injected panic at amount {amount}"),
            Some(Failure::KillConnection(at, admin)) if *at == amount => {
                let pid: i32 = db.query_one("SELECT pg_backend_pid()", &[])?.get(0);
                admin.execute("SELECT pg_terminate_backend($1)", &[&pid])?;
                // The next statement finds the connection gone.
                db.execute("SELECT 1", &[])?;
                unreachable!("the backend was terminated");
            }
            _ => Ok(()),
        }
    }
    fn reset(&mut self, db: &mut Transaction<'_>) -> Result<(), LedgerError> {
        db.batch_execute("DROP TABLE IF EXISTS applied; DROP TABLE IF EXISTS totals;")?;
        Ok(())
    }
}

fn healthy() -> Ledger {
    Ledger { failure: None }
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

fn query_i64(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

/// Every event applied exactly once: `count` rows, each applied once, and
/// totals that add up to the amounts `0..count`. Checked over `db`, a
/// connection of its own, so only committed data counts.
fn assert_exactly_once(db: &mut Client, count: u64) {
    assert_eq!(query_i64(db, "SELECT COUNT(*) FROM applied") as u64, count, "events skipped or extra");
    assert_eq!(query_i64(db, "SELECT COALESCE(MAX(times), 0) FROM applied"), i64::from(count > 0), "applied twice");
    assert_eq!(query_i64(db, "SELECT COALESCE(SUM(count), 0)::BIGINT FROM totals") as u64, count);
    let expected_sum = count * count.saturating_sub(1) / 2;
    assert_eq!(query_i64(db, "SELECT COALESCE(SUM(sum), 0)::BIGINT FROM totals") as u64, expected_sum);
}

fn totals(db: &mut Client) -> Vec<(String, i64, i64)> {
    let rows = db.query("SELECT stream, count, sum FROM totals ORDER BY stream", &[]).unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

/// Runs `failing` over 95 deposits in batches of 10 (its failure at amount
/// 47), then a healthy runner on a new connection; checks that nothing was
/// applied twice or skipped at each step.
fn fail_mid_batch_then_restart(failing: Ledger, expect: impl FnOnce(Result<u64, String>)) {
    let Some(database) = Database::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    append_deposits(&store, 0, 95);

    let runner = PgProjectionRunner::new(&store, database.connect(), failing).unwrap().with_batch_events_max(10);
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        let mut runner = runner;
        runner.run_until_caught_up().map(|r| r.events_applied).map_err(|e| e.to_string())
    }));
    expect(outcome.unwrap_or_else(|_| Err("panicked".into())));
    // Batches of 10: events 0..40 committed, the batch holding 47 rolled back.
    let mut reader = database.connect();
    assert_exactly_once(&mut reader, 40);

    let mut runner = PgProjectionRunner::new(&store, database.connect(), healthy()).unwrap().with_batch_events_max(10);
    assert_eq!(runner.checkpoint().unwrap().events_handled, 40);
    let report = runner.run_until_caught_up().unwrap();
    assert_eq!(report.events_applied, 55);
    assert_exactly_once(&mut reader, 95);
    let checkpoint = runner.checkpoint().unwrap();
    assert_eq!(checkpoint.events_handled, 95);
    let last_position = steledb_sdk::EventStore::last_position(&store).unwrap().expect("events");
    assert_eq!(checkpoint.after_position, Some(last_position), "past the filtered-out tail too");
    let row = reader
        .query_one("SELECT events_handled, after_position FROM stele_checkpoints WHERE name = 'ledger'", &[])
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (95, last_position as i64));

    // More events later: only those are applied.
    append_deposits(&store, 95, 5);
    assert_eq!(runner.run_until_caught_up().unwrap().events_applied, 5);
    assert_exactly_once(&mut reader, 100);
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn an_error_mid_batch_rolls_back_the_batch_and_a_restart_resumes_exactly() {
    fail_mid_batch_then_restart(Ledger { failure: Some(Failure::Error(47)) }, |outcome| {
        let error = outcome.unwrap_err();
        assert!(
            error.contains("projection 'ledger' failed") && error.contains("injected failure at amount 47"),
            "{error}"
        );
    });
}

#[test]
fn a_panic_mid_batch_rolls_back_the_batch_and_a_restart_resumes_exactly() {
    fail_mid_batch_then_restart(Ledger { failure: Some(Failure::Panic(47)) }, |outcome| {
        assert_eq!(outcome, Err("panicked".into()));
    });
}

#[test]
fn a_connection_lost_mid_batch_rolls_back_the_batch_and_a_restart_resumes_exactly() {
    let Some(database) = Database::new() else { return };
    let admin = database.connect();
    fail_mid_batch_then_restart(Ledger { failure: Some(Failure::KillConnection(47, Box::new(admin))) }, |outcome| {
        let error = outcome.unwrap_err();
        assert!(error.contains("projection 'ledger' failed on the event at position"), "{error}");
    });
}

#[test]
fn the_error_is_typed() {
    let Some(database) = Database::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    append_deposits(&store, 0, 3);
    let failing = Ledger { failure: Some(Failure::Error(2)) };
    let mut runner = PgProjectionRunner::new(&store, database.connect(), failing).unwrap();
    let error = runner.run_until_caught_up().unwrap_err();
    let ProjectionError::Apply { projection, position, source } = error else { panic!("{error}") };
    assert_eq!(projection, "ledger");
    let event = &store.read_stream("account-2", StreamStart::Start, Direction::Forward, 1).unwrap()[0];
    assert_eq!(position, event.position);
    assert!(matches!(source.downcast_ref::<LedgerError>(), Some(LedgerError::Injected(2))));
    // The connection is still usable after the rolled-back batch.
    assert_eq!(runner.checkpoint().unwrap().events_handled, 0);
}

#[test]
fn rebuild_gives_the_same_model_and_reports_progress() {
    let Some(database) = Database::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    append_deposits(&store, 0, 1_200);
    let mut runner = PgProjectionRunner::new(&store, database.connect(), healthy()).unwrap();
    let first = runner.run_until_caught_up().unwrap();
    assert_eq!(first.events_applied, 1_200);
    assert!(first.batches >= 3, "at most 500 events per transaction, got {} batches", first.batches);
    let mut reader = database.connect();
    let before = totals(&mut reader);
    assert_eq!(before.len(), 3);

    let mut progress = Vec::new();
    let rebuilt = runner.rebuild(|p| progress.push(*p)).unwrap();
    assert_eq!(rebuilt.events_applied, 1_200);
    assert_eq!(totals(&mut reader), before);
    assert_exactly_once(&mut reader, 1_200);
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
    assert_eq!(runner.checkpoint().unwrap().events_handled, 1_200, "the checkpoint counts from the start again");
}

#[test]
fn a_live_run_follows_appends_until_stopped() {
    let Some(database) = Database::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    append_deposits(&store, 0, 10);
    let mut runner = PgProjectionRunner::new(&store, database.connect(), healthy()).unwrap().with_poll_interval_ms(5);
    let stop = StopHandle::new();
    let mut reader = database.connect();
    let report = std::thread::scope(|s| {
        let following = s.spawn(|| runner.run(&stop));
        append_deposits(&store, 10, 20);
        // Another connection reads the model while the runner writes it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while query_i64(&mut reader, "SELECT COUNT(*) FROM applied") < 30 {
            assert!(Instant::now() < deadline, "the live run did not apply the new events");
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.stop();
        following.join().unwrap().unwrap()
    });
    assert!(report.stopped);
    assert_eq!(report.events_applied, 30);
    assert_exactly_once(&mut reader, 30);
}

#[test]
fn a_second_runner_of_the_same_projection_cannot_apply_events_twice() {
    let Some(database) = Database::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    append_deposits(&store, 0, 50);
    let mut first = PgProjectionRunner::new(&store, database.connect(), healthy()).unwrap().with_batch_events_max(10);
    let mut second = PgProjectionRunner::new(&store, database.connect(), healthy()).unwrap();
    // After the first runner's first batch, the second catches up from the
    // committed checkpoint; the first runner's next batch then finds the
    // checkpoint moved and must not apply its events.
    let mut second_report = None;
    let error = first
        .run_with(steledb_sdk::RunMode::UntilCaughtUp, |_| {
            if second_report.is_none() {
                second_report = Some(second.run_until_caught_up().unwrap());
            }
        })
        .unwrap_err();
    let ProjectionError::CheckpointMoved { projection, expected, found } = error else { panic!("{error}") };
    assert_eq!(projection, "ledger");
    assert_eq!(found.after_position, steledb_sdk::EventStore::last_position(&store).unwrap());
    assert!(expected.after_position < found.after_position);
    assert_eq!(second_report.unwrap().events_applied, 40);
    assert_exactly_once(&mut database.connect(), 50);
    // A new run of the first continues from the committed checkpoint.
    assert_eq!(first.run_until_caught_up().unwrap().events_applied, 0);
}
