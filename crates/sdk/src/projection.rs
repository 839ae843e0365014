//! Projections: read models in SQLite, fed by a subscription, with the
//! checkpoint in the same transaction as the model.
//!
//! Each transaction applies a batch of events and writes the position after
//! the last of them. Either both are committed or neither is, so a crash
//! (or a failing `apply`) at any point leaves the model exactly at its
//! checkpoint: after a restart no event is applied twice and none skipped.

use std::time::Duration;

use rusqlite::Connection;
use steledb::RecordedEvent;

use crate::store::EventStore;

use crate::batching::{run_batches, BatchSettings, BatchTarget, Progress, ProjectionError, ProjectionReport};
use crate::consumer::{Checkpoint, RunMode, Source};
use crate::limits::{POLL_INTERVAL_MS_DEFAULT, PROJECTION_BATCH_EVENTS_MAX_DEFAULT};
use crate::sqlite::{create_checkpoint_table, delete_checkpoint, load_checkpoint, save_checkpoint};

/// A read model: how events change it.
///
/// Every method runs inside a transaction the runner owns (`connection` is
/// that transaction): it must not commit, begin or roll back. Returning an
/// error rolls the whole batch back.
///
/// ```
/// use rusqlite::Connection;
/// use steledb_sdk::Projection;
///
/// /// Events per stream.
/// struct Counts;
/// impl Projection for Counts {
///     type Error = rusqlite::Error;
///     fn name(&self) -> &str { "counts" }
///     fn init(&mut self, db: &Connection) -> rusqlite::Result<()> {
///         db.execute_batch("CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)")
///     }
///     fn apply(&mut self, db: &Connection, event: &steledb::RecordedEvent) -> rusqlite::Result<()> {
///         db.execute(
///             "INSERT INTO counts VALUES (?1, 1) ON CONFLICT(stream) DO UPDATE SET n = n + 1",
///             [event.stream()],
///         )?;
///         Ok(())
///     }
///     fn reset(&mut self, db: &Connection) -> rusqlite::Result<()> {
///         db.execute_batch("DROP TABLE IF EXISTS counts")
///     }
/// }
/// ```
pub trait Projection {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The checkpoint's key: unique among the projections of one database.
    fn name(&self) -> &str;

    /// Which events the projection sees.
    fn source(&self) -> Source {
        Source::All
    }

    /// Creates the model's tables if they are missing. Runs when the runner
    /// opens and after a reset.
    fn init(&mut self, connection: &Connection) -> Result<(), Self::Error>;

    /// Applies one event to the model.
    fn apply(&mut self, connection: &Connection, event: &RecordedEvent) -> Result<(), Self::Error>;

    /// Drops the model (its tables), for a rebuild from the start.
    fn reset(&mut self, connection: &Connection) -> Result<(), Self::Error>;
}

/// Runs a [`Projection`] against a store, keeping its model in SQLite.
///
/// ```
/// # use steledb_sdk::Projection;
/// # struct Counts;
/// # impl Projection for Counts {
/// #     type Error = rusqlite::Error;
/// #     fn name(&self) -> &str { "counts" }
/// #     fn init(&mut self, db: &rusqlite::Connection) -> rusqlite::Result<()> {
/// #         db.execute_batch("CREATE TABLE IF NOT EXISTS counts (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)")
/// #     }
/// #     fn apply(&mut self, db: &rusqlite::Connection, event: &steledb::RecordedEvent) -> rusqlite::Result<()> {
/// #         db.execute("INSERT INTO counts VALUES (?1, 1) ON CONFLICT(stream) DO UPDATE SET n = n + 1", [event.stream()])?;
/// #         Ok(())
/// #     }
/// #     fn reset(&mut self, db: &rusqlite::Connection) -> rusqlite::Result<()> { db.execute_batch("DROP TABLE IF EXISTS counts") }
/// # }
/// use steledb::{ExpectedRevision, NewEvent, Store, Uuid};
/// use steledb_sdk::{open_database, ProjectionRunner, StopHandle};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path().join("store"))?;
/// store.append("order-1", ExpectedRevision::Any, vec![NewEvent::json(Uuid::new_v4(), "Placed", b"{}".to_vec())])?;
///
/// let db = open_database(dir.path().join("model.sqlite"))?;
/// let mut runner = ProjectionRunner::new(&store, db, Counts)?;
/// runner.run_until_caught_up()?;
/// let n: i64 = runner.connection().query_row("SELECT n FROM counts WHERE stream = 'order-1'", [], |r| r.get(0))?;
/// assert_eq!(n, 1);
///
/// // Follow live appends on another thread until stopped.
/// let stop = StopHandle::new();
/// std::thread::scope(|s| {
///     let following = s.spawn(|| runner.run(&stop));
///     stop.stop();
///     following.join().unwrap()
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProjectionRunner<'s, P> {
    store: &'s dyn EventStore,
    connection: Connection,
    projection: P,
    batch_events_max: usize,
    poll_interval: Duration,
}

impl<'s, P: Projection> ProjectionRunner<'s, P> {
    /// Prepares the checkpoint table and the model's tables (`init`).
    pub fn new(
        store: &'s dyn EventStore,
        mut connection: Connection,
        mut projection: P,
    ) -> Result<Self, ProjectionError> {
        let transaction = connection.transaction()?;
        create_checkpoint_table(&transaction)?;
        projection.init(&transaction).map_err(|e| ProjectionError::setup(projection.name(), "create", e))?;
        transaction.commit()?;
        Ok(Self {
            store,
            connection,
            projection,
            batch_events_max: PROJECTION_BATCH_EVENTS_MAX_DEFAULT,
            poll_interval: Duration::from_millis(POLL_INTERVAL_MS_DEFAULT),
        })
    }

    /// Events per transaction at most. Larger batches amortise the commit;
    /// smaller ones bound what a failure rolls back and what is held in
    /// memory.
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

    /// The model's database, for queries (and tests).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Gives the database connection back.
    pub fn into_connection(self) -> Connection {
        self.connection
    }

    /// The committed checkpoint (all zero before the first event).
    pub fn checkpoint(&self) -> Result<Checkpoint, ProjectionError> {
        Ok(load_checkpoint(&self.connection, self.projection.name())?.unwrap_or_default())
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

    /// Drops the model (`reset`), recreates it (`init`) and forgets the
    /// checkpoint in one transaction, then replays the log from the start
    /// until caught up, reporting progress after each batch. Readers see
    /// a partial model until it returns.
    pub fn rebuild(&mut self, progress: impl FnMut(&Progress)) -> Result<ProjectionReport, ProjectionError> {
        let transaction = self.connection.transaction()?;
        self.projection.reset(&transaction).map_err(|e| ProjectionError::setup(self.projection.name(), "reset", e))?;
        self.projection.init(&transaction).map_err(|e| ProjectionError::setup(self.projection.name(), "create", e))?;
        delete_checkpoint(&transaction, self.projection.name())?;
        transaction.commit()?;
        self.run_with(RunMode::UntilCaughtUp, progress)
    }

    /// The run loop: gathers events into a batch, and commits it when it
    /// is full, when nothing more is ready right now, or when caught up.
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

impl<P: Projection> BatchTarget for ProjectionRunner<'_, P> {
    fn committed_checkpoint(&mut self) -> Result<Checkpoint, ProjectionError> {
        self.checkpoint()
    }

    /// One SQLite transaction: the events, then the checkpoint row. A
    /// failing `apply` or a panic drops the transaction, which rolls back.
    /// `_from` is not checked (unlike PostgreSQL's shared database): a
    /// SQLite model file is meant to have one runner.
    fn commit_batch(
        &mut self,
        events: &[RecordedEvent],
        _from: &Checkpoint,
        next: &Checkpoint,
    ) -> Result<(), ProjectionError> {
        let transaction = self.connection.transaction()?;
        for event in events {
            self.projection
                .apply(&transaction, event)
                .map_err(|e| ProjectionError::apply(self.projection.name(), event, e))?;
        }
        save_checkpoint(&transaction, self.projection.name(), next)?;
        transaction.commit()?;
        Ok(())
    }
}
