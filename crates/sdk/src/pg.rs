//! Projections with their read model in PostgreSQL (feature `postgres`),
//! for a model shared by several processes or hosts.
//!
//! The same guarantee as the SQLite runner: each transaction applies a
//! batch of events and writes the checkpoint after it, so a crash or a
//! failing `apply` leaves the model exactly at its checkpoint. Because the
//! database is shared, each batch also locks the checkpoint row and checks
//! it is still the one the runner continued from: a second runner of the
//! same projection, or a rebuild elsewhere, makes the batch fail with
//! [`ProjectionError::CheckpointMoved`] instead of applying events twice.

use std::time::Duration;

use postgres::{Client, GenericClient, Transaction};
use steledb::RecordedEvent;

use crate::store::EventStore;

use crate::batching::{run_batches, BatchSettings, BatchTarget, Progress, ProjectionError, ProjectionReport};
use crate::consumer::CHECKPOINT_TABLE;
use crate::consumer::{Checkpoint, RunMode, Source};
use crate::limits::{POLL_INTERVAL_MS_DEFAULT, PROJECTION_BATCH_EVENTS_MAX_DEFAULT};

/// Key of the transaction-scoped advisory lock taken while a runner sets
/// up its tables: `CREATE TABLE IF NOT EXISTS` is not safe against a
/// concurrent twin in PostgreSQL (one fails on the catalog's unique index).
/// "STELECKP" in ASCII, so it is recognisable in `pg_locks`.
const SETUP_LOCK_KEY: i64 = 0x5354_454C_4543_4B50;

/// A read model in PostgreSQL: how events change it.
///
/// Every method runs inside a transaction the runner owns: it must not
/// commit or roll it back (savepoints through `transaction.transaction()`
/// are fine). Returning an error rolls the whole batch back; so does a
/// panic, since dropping an uncommitted [`Transaction`] rolls it back.
///
/// ```
/// use postgres::Transaction;
/// use steledb_sdk::PgProjection;
///
/// /// Events per stream.
/// struct Counts;
/// impl PgProjection for Counts {
///     type Error = postgres::Error;
///     fn name(&self) -> &str { "counts" }
///     fn init(&mut self, db: &mut Transaction<'_>) -> Result<(), postgres::Error> {
///         db.batch_execute("CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n BIGINT NOT NULL)")
///     }
///     fn apply(&mut self, db: &mut Transaction<'_>, event: &steledb::RecordedEvent) -> Result<(), postgres::Error> {
///         db.execute(
///             "INSERT INTO counts VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = counts.n + 1",
///             &[&event.stream()],
///         )?;
///         Ok(())
///     }
///     fn reset(&mut self, db: &mut Transaction<'_>) -> Result<(), postgres::Error> {
///         db.batch_execute("DROP TABLE IF EXISTS counts")
///     }
/// }
/// ```
pub trait PgProjection {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The checkpoint's key: unique among the projections of one database.
    fn name(&self) -> &str;

    /// Which events the projection sees.
    fn source(&self) -> Source {
        Source::All
    }

    /// Creates the model's tables if they are missing. Runs when the runner
    /// opens and after a reset.
    fn init(&mut self, transaction: &mut Transaction<'_>) -> Result<(), Self::Error>;

    /// Applies one event to the model.
    fn apply(&mut self, transaction: &mut Transaction<'_>, event: &RecordedEvent) -> Result<(), Self::Error>;

    /// Drops the model (its tables), for a rebuild from the start.
    fn reset(&mut self, transaction: &mut Transaction<'_>) -> Result<(), Self::Error>;
}

/// Runs a [`PgProjection`] against a store, keeping its model and its
/// checkpoint (table `stele_checkpoints`) in PostgreSQL. The same API as
/// [`ProjectionRunner`](crate::ProjectionRunner).
///
/// ```no_run
/// # use steledb_sdk::PgProjection;
/// # struct Counts;
/// # impl PgProjection for Counts {
/// #     type Error = postgres::Error;
/// #     fn name(&self) -> &str { "counts" }
/// #     fn init(&mut self, _: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> { Ok(()) }
/// #     fn apply(&mut self, _: &mut postgres::Transaction<'_>, _: &steledb::RecordedEvent) -> Result<(), postgres::Error> { Ok(()) }
/// #     fn reset(&mut self, _: &mut postgres::Transaction<'_>) -> Result<(), postgres::Error> { Ok(()) }
/// # }
/// use steledb_sdk::{PgProjectionRunner, StopHandle};
///
/// let store = steledb::Store::open("./stele-data")?;
/// let client = postgres::Client::connect("host=/run/postgresql user=app dbname=app", postgres::NoTls)?;
/// let mut runner = PgProjectionRunner::new(&store, client, Counts)?;
/// runner.run_until_caught_up()?;
/// runner.rebuild(|p| eprintln!("{}/{} ({} events)", p.position, p.last_position, p.events_applied))?;
/// runner.run(&StopHandle::new())?; // follows live appends until stopped
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PgProjectionRunner<'s, P> {
    store: &'s dyn EventStore,
    client: Client,
    projection: P,
    batch_events_max: usize,
    poll_interval: Duration,
}

impl<'s, P: PgProjection> PgProjectionRunner<'s, P> {
    /// Prepares the checkpoint table and row and the model's tables
    /// (`init`), in one transaction.
    pub fn new(store: &'s dyn EventStore, mut client: Client, mut projection: P) -> Result<Self, ProjectionError> {
        let mut transaction = client.transaction()?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&SETUP_LOCK_KEY])?;
        create_checkpoint_table(&mut transaction)?;
        // The row exists from the start, so every batch can lock it.
        transaction.execute(
            &format!(
                "INSERT INTO {CHECKPOINT_TABLE} (name, after_position, next_revision, last_event_position, events_handled)
                 VALUES ($1, NULL, 0, NULL, 0) ON CONFLICT (name) DO NOTHING"
            ),
            &[&projection.name()],
        )?;
        projection.init(&mut transaction).map_err(|e| ProjectionError::setup(projection.name(), "create", e))?;
        transaction.commit()?;
        Ok(Self {
            store,
            client,
            projection,
            batch_events_max: PROJECTION_BATCH_EVENTS_MAX_DEFAULT,
            poll_interval: Duration::from_millis(POLL_INTERVAL_MS_DEFAULT),
        })
    }

    /// Events per transaction at most. Larger batches amortise the commit
    /// (a round trip and a WAL flush); smaller ones bound what a failure
    /// rolls back, what is held in memory and how long the checkpoint row
    /// stays locked.
    ///
    /// # Panics
    /// If `batch_events_max` is 0.
    pub fn with_batch_events_max(mut self, batch_events_max: usize) -> Self {
        assert!(batch_events_max > 0, "a batch holds at least one event");
        self.batch_events_max = batch_events_max;
        self
    }

    /// How long a live run waits for events before checking its stop handle.
    pub fn with_poll_interval_ms(mut self, poll_interval_ms: u64) -> Self {
        self.poll_interval = Duration::from_millis(poll_interval_ms);
        self
    }

    /// The model's database, for queries (and tests). `&mut` because the
    /// synchronous client needs it for every query.
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Gives the database connection back.
    pub fn into_client(self) -> Client {
        self.client
    }

    /// The committed checkpoint (all zero before the first event).
    pub fn checkpoint(&mut self) -> Result<Checkpoint, ProjectionError> {
        Ok(load_checkpoint(&mut self.client, self.projection.name(), false)?.unwrap_or_default())
    }

    /// Applies events from the checkpoint to the end of the log as it was
    /// when the subscription reached it, then returns.
    pub fn run_until_caught_up(&mut self) -> Result<ProjectionReport, ProjectionError> {
        self.run_with(RunMode::UntilCaughtUp, |_| {})
    }

    /// Catches up, then follows live appends until `stop` is stopped.
    pub fn run(&mut self, stop: &crate::StopHandle) -> Result<ProjectionReport, ProjectionError> {
        self.run_with(RunMode::Follow(stop), |_| {})
    }

    /// Drops the model (`reset`), recreates it (`init`) and sets the
    /// checkpoint back to the start in one transaction, then replays the
    /// log from the start until caught up, reporting progress after each
    /// batch. Readers see a partial model until it returns; another runner
    /// of the same projection fails its next batch with
    /// [`ProjectionError::CheckpointMoved`].
    pub fn rebuild(&mut self, progress: impl FnMut(&Progress)) -> Result<ProjectionReport, ProjectionError> {
        let mut transaction = self.client.transaction()?;
        // Locked first, as a batch does: a runner mid-batch finishes before
        // the tables are dropped under it.
        load_checkpoint(&mut transaction, self.projection.name(), true)?;
        self.projection
            .reset(&mut transaction)
            .map_err(|e| ProjectionError::setup(self.projection.name(), "reset", e))?;
        self.projection
            .init(&mut transaction)
            .map_err(|e| ProjectionError::setup(self.projection.name(), "create", e))?;
        save_checkpoint(&mut transaction, self.projection.name(), &Checkpoint::default())?;
        transaction.commit()?;
        self.run_with(RunMode::UntilCaughtUp, progress)
    }

    /// The run loop (shared with the SQLite runner): gathers events into a
    /// batch, and commits it when it is full, when nothing more is ready
    /// right now, or when caught up.
    pub fn run_with(
        &mut self,
        mode: RunMode<'_>,
        progress: impl FnMut(&Progress),
    ) -> Result<ProjectionReport, ProjectionError> {
        let settings = BatchSettings {
            store: self.store,
            source: self.projection.source(),
            batch_events_max: self.batch_events_max,
            poll_interval: self.poll_interval,
        };
        run_batches(settings, self, mode, progress)
    }
}

impl<P: PgProjection> BatchTarget for PgProjectionRunner<'_, P> {
    fn committed_checkpoint(&mut self) -> Result<Checkpoint, ProjectionError> {
        self.checkpoint()
    }

    /// One PostgreSQL transaction: lock and check the checkpoint row, apply
    /// the events, write the checkpoint. A failing `apply` returns before
    /// the commit and a panic unwinds through the transaction's drop; both
    /// roll back.
    fn commit_batch(
        &mut self,
        events: &[RecordedEvent],
        from: &Checkpoint,
        next: &Checkpoint,
    ) -> Result<(), ProjectionError> {
        let mut transaction = self.client.transaction()?;
        // Only atomicity matters, not durability: a commit lost to a server
        // crash loses its checkpoint with it, and is replayed from the log.
        // So the commit need not wait for the WAL flush (the SQLite runner's
        // `synchronous=NORMAL`, for the same reason).
        transaction.batch_execute("SET LOCAL synchronous_commit = off")?;
        let committed = load_checkpoint(&mut transaction, self.projection.name(), true)?.unwrap_or_default();
        if committed != *from {
            return Err(ProjectionError::CheckpointMoved {
                projection: self.projection.name().to_owned(),
                expected: *from,
                found: committed,
            });
        }
        for event in events {
            self.projection
                .apply(&mut transaction, event)
                .map_err(|e| ProjectionError::apply(self.projection.name(), event, e))?;
        }
        save_checkpoint(&mut transaction, self.projection.name(), next)?;
        transaction.commit()?;
        Ok(())
    }
}

fn create_checkpoint_table(client: &mut impl GenericClient) -> Result<(), postgres::Error> {
    client.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (
            name TEXT PRIMARY KEY,
            after_position BIGINT,
            next_revision BIGINT NOT NULL,
            last_event_position BIGINT,
            events_handled BIGINT NOT NULL
        )"
    ))
}

// PostgreSQL has no unsigned integers; positions and counts stay far below 2^63.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).expect("checkpoint values are below 2^63")
}

/// Reads a checkpoint row; with `lock`, also locks it until the end of the
/// transaction (`FOR UPDATE`), so concurrent batches of one projection
/// take turns.
fn load_checkpoint(
    client: &mut impl GenericClient,
    name: &str,
    lock: bool,
) -> Result<Option<Checkpoint>, postgres::Error> {
    let row = client.query_opt(
        &format!(
            "SELECT after_position, next_revision, last_event_position, events_handled
             FROM {CHECKPOINT_TABLE} WHERE name = $1{}",
            if lock { " FOR UPDATE" } else { "" }
        ),
        &[&name],
    )?;
    // `try_get`: a table of that name made by someone else is an error, not a panic.
    row.map(|row| {
        Ok(Checkpoint {
            after_position: row.try_get::<_, Option<i64>>(0)?.map(|p| p as u64),
            next_revision: row.try_get::<_, i64>(1)? as u64,
            last_event_position: row.try_get::<_, Option<i64>>(2)?.map(|p| p as u64),
            events_handled: row.try_get::<_, i64>(3)? as u64,
        })
    })
    .transpose()
}

fn save_checkpoint(
    client: &mut impl GenericClient,
    name: &str,
    checkpoint: &Checkpoint,
) -> Result<(), postgres::Error> {
    client.execute(
        &format!(
            "INSERT INTO {CHECKPOINT_TABLE} (name, after_position, next_revision, last_event_position, events_handled)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO UPDATE SET after_position = $2, next_revision = $3,
                 last_event_position = $4, events_handled = $5"
        ),
        &[
            &name,
            &checkpoint.after_position.map(to_sql),
            &to_sql(checkpoint.next_revision),
            &checkpoint.last_event_position.map(to_sql),
            &to_sql(checkpoint.events_handled),
        ],
    )?;
    Ok(())
}
