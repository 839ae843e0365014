//! Projections: read models in SQLite, fed by a subscription, with the
//! checkpoint in the same transaction as the model.
//!
//! Each transaction applies a batch of events and writes the position after
//! the last of them. Either both are committed or neither is, so a crash
//! (or a failing `apply`) at any point leaves the model exactly at its
//! checkpoint: after a restart no event is applied twice and none skipped.

use std::time::Duration;

use rusqlite::Connection;
use steledb::{ReadError, RecordedEvent, Store, SubscriptionMessage};

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

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// `apply` failed; the batch it was in was rolled back.
    #[error("projection '{projection}' failed on the event at position {position}: {source}")]
    Apply { projection: String, position: u64, source: Box<dyn std::error::Error + Send + Sync> },
    /// `init` or `reset` failed; nothing of it was committed.
    #[error("projection '{projection}' could not {step} its model: {source}")]
    Setup { projection: String, step: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("read-model database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// How far a run (or a rebuild) has got, reported after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events applied by this run so far.
    pub events_applied: u64,
    /// The checkpoint: everything before it is in the model.
    pub position: u64,
    /// The end of the log when the run started.
    pub end_position: u64,
}

/// What one run of a projection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectionReport {
    pub events_applied: u64,
    /// Transactions committed.
    pub batches: u64,
    pub checkpoint: Checkpoint,
    /// True when a [`StopHandle`](crate::StopHandle) ended the run.
    pub stopped: bool,
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
    store: &'s Store,
    connection: Connection,
    projection: P,
    batch_events_max: usize,
    poll_interval: Duration,
}

impl<'s, P: Projection> ProjectionRunner<'s, P> {
    /// Prepares the checkpoint table and the model's tables (`init`).
    pub fn new(store: &'s Store, mut connection: Connection, mut projection: P) -> Result<Self, ProjectionError> {
        let transaction = connection.transaction()?;
        create_checkpoint_table(&transaction)?;
        projection.init(&transaction).map_err(|e| setup_error(&projection, "create", e))?;
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
        self.projection.reset(&transaction).map_err(|e| setup_error(&self.projection, "reset", e))?;
        self.projection.init(&transaction).map_err(|e| setup_error(&self.projection, "create", e))?;
        delete_checkpoint(&transaction, self.projection.name())?;
        transaction.commit()?;
        self.run_with(RunMode::UntilCaughtUp, progress)
    }

    /// The run loop: gathers events into a batch, and commits it when it
    /// is full, when nothing more is ready right now, or when caught up.
    pub fn run_with(
        &mut self,
        mode: RunMode<'_>,
        mut progress: impl FnMut(&Progress),
    ) -> Result<ProjectionReport, ProjectionError> {
        let mut checkpoint = self.checkpoint()?;
        let source = self.projection.source();
        let mut subscription = source.subscribe(self.store, &checkpoint)?;
        let end_position = self.store.end_position();
        let mut report = ProjectionReport { events_applied: 0, batches: 0, checkpoint, stopped: false };
        let mut batch: Vec<RecordedEvent> = Vec::with_capacity(self.batch_events_max);
        let mut scanned = None;
        loop {
            if mode.stop_requested() {
                self.commit(&mut batch, &mut scanned, &mut checkpoint, &mut report)?;
                report.stopped = true;
                return Ok(report);
            }
            // With a batch open, take only what is ready now: an idle log
            // commits at once instead of holding events back.
            let wait = if batch.is_empty() && scanned.is_none() { self.poll_interval } else { Duration::ZERO };
            let caught_up = match subscription.next_timeout(wait)? {
                Some(SubscriptionMessage::Event(event)) => {
                    batch.push(event);
                    if batch.len() < self.batch_events_max {
                        continue;
                    }
                    false
                }
                Some(SubscriptionMessage::Checkpoint { position }) => {
                    scanned = Some(position);
                    continue;
                }
                Some(SubscriptionMessage::CaughtUp { .. }) => true,
                None => false,
            };
            if self.commit(&mut batch, &mut scanned, &mut checkpoint, &mut report)? {
                progress(&Progress {
                    events_applied: report.events_applied,
                    position: checkpoint.next_position,
                    end_position,
                });
            }
            if caught_up && matches!(mode, RunMode::UntilCaughtUp) {
                return Ok(report);
            }
        }
    }

    /// Applies `batch` and writes the checkpoint in one transaction.
    /// Returns whether anything was committed.
    fn commit(
        &mut self,
        batch: &mut Vec<RecordedEvent>,
        scanned: &mut Option<u64>,
        checkpoint: &mut Checkpoint,
        report: &mut ProjectionReport,
    ) -> Result<bool, ProjectionError> {
        if batch.is_empty() && scanned.is_none() {
            return Ok(false);
        }
        let mut next = *checkpoint;
        let transaction = self.connection.transaction()?;
        for event in batch.iter() {
            self.projection.apply(&transaction, event).map_err(|source| ProjectionError::Apply {
                projection: self.projection.name().to_owned(),
                position: event.position,
                source: Box::new(source),
            })?;
            next.note_event(event);
        }
        if let Some(position) = scanned.take() {
            next.note_scanned(position);
        }
        next.settle(self.store)?;
        save_checkpoint(&transaction, self.projection.name(), &next)?;
        transaction.commit()?;
        report.events_applied += batch.len() as u64;
        report.batches += 1;
        report.checkpoint = next;
        *checkpoint = next;
        batch.clear();
        Ok(true)
    }
}

fn setup_error<P: Projection>(projection: &P, step: &'static str, source: P::Error) -> ProjectionError {
    ProjectionError::Setup { projection: projection.name().to_owned(), step, source: Box::new(source) }
}
