//! Process managers: react to events by issuing commands.
//!
//! A process manager is a consumer with its own checkpoint, saved every
//! few events, so after a crash it sees the events since the last save
//! again. It issues each command with an id derived from the triggering
//! event ([`command_id_for`]); the [`Repository`](crate::Repository)
//! recognises a command id it has handled and writes nothing the second
//! time. Together: each event's command takes effect once.

use std::time::Duration;

use steledb::RecordedEvent;

use crate::store::EventStore;
use uuid::Uuid;

use crate::consumer::{consume, CheckpointStore, ConsumeConfig, ConsumerError, Handled, RunMode, RunReport, Source};
use crate::ids::{name_of, uuid_v5};
use crate::limits::{CHECKPOINT_EVERY_EVENTS_DEFAULT, POLL_INTERVAL_MS_DEFAULT};

/// Namespace of command ids derived from events (a random v4 UUID, fixed forever).
pub const PROCESS_ID_NAMESPACE: Uuid = Uuid::from_u128(0xc7e3_18a5_2f94_4d6b_8b07_5ae1_93c2_6d40);

/// The command id a reaction to `event` uses for its command `label`
/// (a process manager issuing two commands for one event labels them).
/// Handling the event again gives the same id.
pub fn command_id_for(event: &RecordedEvent, label: &str) -> Uuid {
    uuid_v5(PROCESS_ID_NAMESPACE, &name_of(event.id, label.as_bytes(), 0))
}

/// Reacts to events by issuing commands. `react` may see an event again
/// after a crash: issue commands with ids from [`command_id_for`].
pub trait ProcessManager {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The checkpoint's key.
    fn name(&self) -> &str;

    fn source(&self) -> Source {
        Source::All
    }

    /// Reacts to one event. An error stops the run; the checkpoint stays
    /// before this event, so the next run starts with it.
    fn react(&mut self, event: &RecordedEvent) -> Result<(), Self::Error>;
}

/// Runs a [`ProcessManager`] over a store, with its checkpoint in `C`.
pub struct ProcessManagerRunner<'s, P, C> {
    store: &'s dyn EventStore,
    process: P,
    checkpoints: C,
    checkpoint_every_events: u64,
    poll_interval: Duration,
}

impl<'s, P: ProcessManager, C: CheckpointStore> ProcessManagerRunner<'s, P, C> {
    pub fn new(store: &'s dyn EventStore, process: P, checkpoints: C) -> Self {
        Self {
            store,
            process,
            checkpoints,
            checkpoint_every_events: CHECKPOINT_EVERY_EVENTS_DEFAULT,
            poll_interval: Duration::from_millis(POLL_INTERVAL_MS_DEFAULT),
        }
    }

    /// # Panics
    /// If `checkpoint_every_events` is 0.
    pub fn with_checkpoint_every_events(mut self, checkpoint_every_events: u64) -> Self {
        assert!(checkpoint_every_events > 0, "a checkpoint covers at least one event");
        self.checkpoint_every_events = checkpoint_every_events;
        self
    }

    pub fn with_poll_interval_ms(mut self, poll_interval_ms: u64) -> Self {
        self.poll_interval = Duration::from_millis(poll_interval_ms);
        self
    }

    pub fn process(&self) -> &P {
        &self.process
    }

    pub fn run_until_caught_up(&mut self) -> Result<RunReport, ConsumerError> {
        self.run_with(RunMode::UntilCaughtUp)
    }

    pub fn run(&mut self, stop: &crate::StopHandle) -> Result<RunReport, ConsumerError> {
        self.run_with(RunMode::Follow(stop))
    }

    pub fn run_with(&mut self, mode: RunMode<'_>) -> Result<RunReport, ConsumerError> {
        let source = self.process.source();
        // Owned: `name()` borrows the process, which `react` needs mutably.
        let name = self.process.name().to_owned();
        let config = ConsumeConfig {
            store: self.store,
            source: &source,
            name: &name,
            checkpoint_every_events: self.checkpoint_every_events,
            poll_interval: self.poll_interval,
        };
        let process = &mut self.process;
        consume(config, &mut self.checkpoints, mode, |event| process.react(event).map(|()| Handled::Done))
    }
}
