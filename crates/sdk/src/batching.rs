//! The batch loop every projection runner shares, whatever database holds
//! the read model (SQLite, PostgreSQL).
//!
//! The loop gathers events from a subscription into batches and hands each
//! batch, with the checkpoint after it, to a [`BatchTarget`], which applies
//! both in one transaction of its database. The loop owns when to commit
//! (batch full, nothing more ready, caught up, stop requested) and how the
//! checkpoint advances; a target only knows its database.

use std::time::Duration;

use steledb::RecordedEvent;

use crate::consumer::{Checkpoint, RunMode, Source};
use crate::store::{Delivery, EventStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// `apply` failed; the batch it was in was rolled back.
    #[error("projection '{projection}' failed on the event at position {position}: {source}")]
    Apply { projection: String, position: u64, source: Box<dyn std::error::Error + Send + Sync> },
    /// `init` or `reset` failed; nothing of it was committed.
    #[error("projection '{projection}' could not {step} its model: {source}")]
    Setup { projection: String, step: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
    /// The committed checkpoint is not the one this runner continued from:
    /// another runner of the same projection (or a rebuild) committed in
    /// between. The batch was rolled back; start a new run to continue from
    /// the committed checkpoint.
    #[error("projection '{projection}': checkpoint moved by another runner (expected {expected:?}, found {found:?})")]
    CheckpointMoved { projection: String, expected: Checkpoint, found: Checkpoint },
    #[cfg(feature = "sqlite")]
    #[error("read-model database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[cfg(feature = "postgres")]
    #[error("read-model database (PostgreSQL): {0}")]
    Postgres(#[from] postgres::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProjectionError {
    pub(crate) fn setup(
        projection: &str,
        step: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Setup { projection: projection.to_owned(), step, source: Box::new(source) }
    }

    pub(crate) fn apply(
        projection: &str,
        event: &RecordedEvent,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Apply { projection: projection.to_owned(), position: event.position, source: Box::new(source) }
    }
}

/// How far a run (or a rebuild) has got, reported after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events applied by this run so far.
    pub events_applied: u64,
    /// The checkpoint: the model is done with every record up to and
    /// including the one at this `$all` position (0 before the first).
    pub position: u64,
    /// The position of the last event in the log when the run started
    /// (0 when the log was empty): where a catch-up ends.
    pub last_position: u64,
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

/// A read model's database, as the loop sees it.
pub(crate) trait BatchTarget {
    /// The committed checkpoint (all zero before the first event).
    fn committed_checkpoint(&mut self) -> Result<Checkpoint, ProjectionError>;

    /// Applies `events` in order and moves the checkpoint from `from` to
    /// `next`, in one transaction: all of it is committed or none.
    fn commit_batch(
        &mut self,
        events: &[RecordedEvent],
        from: &Checkpoint,
        next: &Checkpoint,
    ) -> Result<(), ProjectionError>;
}

/// The settings of [`run_batches`].
pub(crate) struct BatchSettings<'a> {
    pub store: &'a dyn EventStore,
    pub source: Source,
    pub batch_events_max: usize,
    pub poll_interval: Duration,
}

/// The run loop: gathers events into a batch, and commits it when it is
/// full, when nothing more is ready right now, or when caught up.
pub(crate) fn run_batches(
    settings: BatchSettings<'_>,
    target: &mut impl BatchTarget,
    mode: RunMode<'_>,
    mut progress: impl FnMut(&Progress),
) -> Result<ProjectionReport, ProjectionError> {
    let BatchSettings { store, source, batch_events_max, poll_interval } = settings;
    assert!(batch_events_max > 0, "a batch holds at least one event");
    let mut checkpoint = target.committed_checkpoint()?;
    let mut subscription = source.subscribe(store, &checkpoint)?;
    let last_position = store.last_position()?.unwrap_or(0);
    let mut report = ProjectionReport { events_applied: 0, batches: 0, checkpoint, stopped: false };
    let mut batch: Vec<RecordedEvent> = Vec::with_capacity(batch_events_max);
    let mut scanned = None;
    loop {
        if mode.stop_requested() {
            commit(target, &mut batch, &mut scanned, &mut checkpoint, &mut report)?;
            report.stopped = true;
            return Ok(report);
        }
        // With a batch open, take only what is ready now: an idle log
        // commits at once instead of holding events back.
        let wait = if batch.is_empty() && scanned.is_none() { poll_interval } else { Duration::ZERO };
        let caught_up = match subscription.next_timeout(wait)? {
            Some(Delivery::Event(event)) => {
                batch.push(event);
                if batch.len() < batch_events_max {
                    continue;
                }
                false
            }
            Some(Delivery::Scanned { position }) => {
                scanned = Some(position);
                continue;
            }
            Some(Delivery::CaughtUp) => true,
            None => false,
        };
        if commit(target, &mut batch, &mut scanned, &mut checkpoint, &mut report)? {
            progress(&Progress {
                events_applied: report.events_applied,
                position: checkpoint.after_position.unwrap_or(0),
                last_position,
            });
        }
        if caught_up && matches!(mode, RunMode::UntilCaughtUp) {
            return Ok(report);
        }
    }
}

/// Commits `batch` (and how far a filtered subscription `scanned` past
/// it) with the checkpoint after it. Returns whether anything was
/// committed. On an error the run ends: nothing of the batch reached the
/// model, and the committed checkpoint is still before it.
fn commit(
    target: &mut impl BatchTarget,
    batch: &mut Vec<RecordedEvent>,
    scanned: &mut Option<u64>,
    checkpoint: &mut Checkpoint,
    report: &mut ProjectionReport,
) -> Result<bool, ProjectionError> {
    if batch.is_empty() && scanned.is_none() {
        return Ok(false);
    }
    // The checkpoint after the batch is known before applying it, so the
    // target writes both in one transaction.
    let mut next = *checkpoint;
    for event in batch.iter() {
        next.note_event(event);
    }
    if let Some(position) = scanned.take() {
        next.note_scanned(position);
    }
    target.commit_batch(batch, checkpoint, &next)?;
    report.events_applied += batch.len() as u64;
    report.batches += 1;
    report.checkpoint = next;
    *checkpoint = next;
    batch.clear();
    Ok(true)
}
