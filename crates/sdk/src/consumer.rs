//! What every consumer of the log shares (projections, process managers,
//! gateways): where it reads from, its checkpoint, how it is stopped, and
//! the loop that feeds it events and saves its checkpoint.
//!
//! A checkpoint names the last `$all` record a consumer is done with; it
//! resumes after it. Consumers other
//! than projections save it after handling events, so after a crash the
//! events since the last save are handled again: at-least-once. Their
//! handlers are made idempotent (commands with ids derived from the event
//! id, deliveries the outside can recognise). Projections store it in the
//! model's own transaction instead: exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steledb::{EventFilter, RecordedEvent};

use crate::store::{Delivery, EventStore, EventSubscription, StoreError, SubscribeTo};

/// The table every checkpoint kept in a database (SQLite, PostgreSQL)
/// lives in, one row per consumer.
pub const CHECKPOINT_TABLE: &str = "stele_checkpoints";

/// Which events a consumer sees.
#[derive(Debug, Clone)]
pub enum Source {
    /// Every event of `$all`, system events included.
    All,
    /// The events of `$all` the filter matches. The subscription reports
    /// how far it scanned through stretches with no match, so the
    /// checkpoint advances there too.
    AllFiltered(EventFilter),
    /// One stream, resumed by revision.
    Stream(String),
}

impl Source {
    /// Whether this source delivers `event` (for replays of a recorded log).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        match self {
            Self::All => true,
            Self::AllFiltered(filter) => filter.matches(event.stream(), event.event_type()),
            Self::Stream(name) => event.stream() == name,
        }
    }

    pub(crate) fn subscribe(
        &self,
        store: &dyn EventStore,
        checkpoint: &Checkpoint,
    ) -> Result<Box<dyn EventSubscription>, StoreError> {
        let after_position = checkpoint.after_position;
        store.subscribe(match self {
            Self::All => SubscribeTo::All { after_position, filter: None },
            Self::AllFiltered(filter) => SubscribeTo::All { after_position, filter: Some(filter) },
            Self::Stream(stream) => {
                SubscribeTo::Stream { stream, after_revision: checkpoint.next_revision.checked_sub(1) }
            }
        })
    }
}

/// How far a consumer has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The `$all` position of the last record done with: handled, or (for
    /// a filtered source) passed over without a match. A consumer resumes
    /// after it; `None` means from the start.
    pub after_position: Option<u64>,
    /// For a [`Source::Stream`]: the next revision to read.
    pub next_revision: u64,
    /// The `$all` position of the last event handled.
    pub last_event_position: Option<u64>,
    /// Events handled since the consumer started from scratch.
    pub events_handled: u64,
}

impl Checkpoint {
    /// Notes that `event` (and the ones before it) were handled.
    pub(crate) fn note_event(&mut self, event: &RecordedEvent) {
        self.last_event_position = Some(event.position);
        self.after_position = self.after_position.max(Some(event.position));
        self.next_revision = event.revision.saturating_add(1);
        self.events_handled += 1;
    }

    /// Notes that a filtered subscription passed over everything up to and
    /// including the record at `position`.
    pub(crate) fn note_scanned(&mut self, position: u64) {
        self.after_position = self.after_position.max(Some(position));
    }
}

/// Asks a running consumer to stop; cheap to clone and share across threads.
/// The consumer notices within its poll interval, saves its checkpoint
/// and returns.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where a process manager or gateway keeps its checkpoint.
pub trait CheckpointStore {
    fn load(&mut self, name: &str) -> Result<Option<Checkpoint>, CheckpointError>;
    fn save(&mut self, name: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
}

impl<T: CheckpointStore + ?Sized> CheckpointStore for &mut T {
    fn load(&mut self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        (**self).load(name)
    }
    fn save(&mut self, name: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        (**self).save(name, checkpoint)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[cfg(feature = "sqlite")]
    #[error("checkpoint database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("checkpoint store: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// Checkpoints in memory, shared by clones: for tests, and for consumers
/// that may start from scratch after a restart.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpoints(Arc<Mutex<HashMap<String, Checkpoint>>>);

impl MemoryCheckpoints {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, name: &str) -> Option<Checkpoint> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(name).copied()
    }
}

impl CheckpointStore for MemoryCheckpoints {
    fn load(&mut self, name: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        Ok(self.get(name))
    }
    fn save(&mut self, name: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), *checkpoint);
        Ok(())
    }
}

/// A process manager or gateway run failed. The checkpoint was saved up
/// to the last event handled before the failure (when the save itself
/// did not fail), so a new run resumes at the failing event.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("consumer '{consumer}' failed on the event at position {position}: {source}")]
    Handler { consumer: String, position: u64, source: Box<dyn std::error::Error + Send + Sync> },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// What one run of a consumer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Events handled by this run.
    pub events_handled: u64,
    /// The checkpoint saved last.
    pub checkpoint: Checkpoint,
    /// True when the run ended because a [`StopHandle`] asked it to.
    pub stopped: bool,
}

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub enum RunMode<'a> {
    /// When the subscription first reaches the end of the log.
    UntilCaughtUp,
    /// When the handle is stopped; until then it follows live appends.
    Follow(&'a StopHandle),
}

impl RunMode<'_> {
    pub(crate) fn stop_requested(&self) -> bool {
        matches!(self, Self::Follow(stop) if stop.is_stopped())
    }
}

/// What a handler did with an event.
pub(crate) enum Handled {
    Done,
    /// Stopped before the event was handled (a stop during retries).
    Stopped,
}

/// The settings of [`consume`].
pub(crate) struct ConsumeConfig<'a> {
    pub store: &'a dyn EventStore,
    pub source: &'a Source,
    pub name: &'a str,
    pub checkpoint_every_events: u64,
    pub poll_interval: Duration,
}

/// Feeds events to `handle` from the saved checkpoint on, saving the
/// checkpoint every `checkpoint_every_events` events, when caught up, when
/// idle, and on the way out.
pub(crate) fn consume<E>(
    config: ConsumeConfig<'_>,
    checkpoints: &mut dyn CheckpointStore,
    mode: RunMode<'_>,
    mut handle: impl FnMut(&RecordedEvent) -> Result<Handled, E>,
) -> Result<RunReport, ConsumerError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let ConsumeConfig { store, source, name, checkpoint_every_events, poll_interval } = config;
    let mut checkpoint = checkpoints.load(name)?.unwrap_or_default();
    let mut subscription = source.subscribe(store, &checkpoint)?;
    let mut events_handled = 0;
    let mut unsaved = false;
    let mut unsaved_events = 0;
    let mut save = |checkpoint: &Checkpoint, unsaved: &mut bool| -> Result<(), ConsumerError> {
        if *unsaved {
            checkpoints.save(name, checkpoint)?;
            *unsaved = false;
        }
        Ok(())
    };
    loop {
        if mode.stop_requested() {
            save(&checkpoint, &mut unsaved)?;
            return Ok(RunReport { events_handled, checkpoint, stopped: true });
        }
        match subscription.next_timeout(poll_interval)? {
            Some(Delivery::Event(event)) => match handle(&event) {
                Ok(Handled::Done) => {
                    checkpoint.note_event(&event);
                    events_handled += 1;
                    unsaved = true;
                    unsaved_events += 1;
                    if unsaved_events >= checkpoint_every_events {
                        unsaved_events = 0;
                        save(&checkpoint, &mut unsaved)?;
                    }
                }
                Ok(Handled::Stopped) => {
                    save(&checkpoint, &mut unsaved)?;
                    return Ok(RunReport { events_handled, checkpoint, stopped: true });
                }
                Err(source) => {
                    save(&checkpoint, &mut unsaved)?;
                    let position = event.position;
                    return Err(ConsumerError::Handler {
                        consumer: name.to_owned(),
                        position,
                        source: Box::new(source),
                    });
                }
            },
            Some(Delivery::Scanned { position }) => {
                checkpoint.note_scanned(position);
                unsaved = true;
            }
            Some(Delivery::CaughtUp) => {
                save(&checkpoint, &mut unsaved)?;
                if let RunMode::UntilCaughtUp = mode {
                    return Ok(RunReport { events_handled, checkpoint, stopped: false });
                }
            }
            None => save(&checkpoint, &mut unsaved)?,
        }
    }
}
