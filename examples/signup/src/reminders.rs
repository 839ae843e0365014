//! Activation reminders: a process manager schedules a timer when a user
//! signs up and cancels it when the account is activated; a timer service,
//! ticked with the application's clock, fires the timers that come due.
//! The mail component sends the reminder when it sees `TimerFired`.
//!
//! Each pass of [`ReminderLoop::step`] first catches the process manager up
//! with the log, then ticks the timers: an activation already in the log
//! when the tick starts has cancelled its timer by then.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use steledb::{Clock, EventFilter, RecordedEvent};
use steledb_sdk::{
    ConsumerError, EventCodec, EventStore, ProcessManager, ProcessManagerRunner, Source, SqliteCheckpoints, TimerError,
    TimerService, Timers,
};
use uuid::Uuid;

use crate::user::{UserEvent, USER_STREAM_PREFIX};

/// The process manager's name: its checkpoint row's key.
pub const REMINDERS_PROCESS: &str = "activation-reminders";
/// Timer ids of activation reminders: `activation-reminder-<user id>`.
pub const REMINDER_TIMER_PREFIX: &str = "activation-reminder-";

pub fn reminder_timer_id(user_id: Uuid) -> String {
    format!("{REMINDER_TIMER_PREFIX}{user_id}")
}

/// What a reminder timer carries, so the mail component needs no lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderPayload {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReminderError {
    #[error(transparent)]
    Timer(#[from] TimerError),
    #[error("user event cannot be decoded: {0}")]
    Decode(#[from] steledb_sdk::CodecError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
}

/// Schedules and cancels reminder timers from the user events. Replaying
/// an event (after a crash) is harmless: timer events have ids derived
/// from the timer id, so the store writes each once.
pub struct ReminderScheduler {
    timers: Timers<Arc<dyn EventStore>>,
    delay_us: u64,
    codec: EventCodec<UserEvent>,
}

impl ReminderScheduler {
    pub fn new(store: Arc<dyn EventStore>, delay_us: u64) -> Self {
        Self { timers: Timers::new(store), delay_us, codec: EventCodec::new() }
    }
}

impl ProcessManager for ReminderScheduler {
    type Error = ReminderError;

    fn name(&self) -> &str {
        REMINDERS_PROCESS
    }

    fn source(&self) -> Source {
        Source::AllFiltered(EventFilter::StreamPrefix(vec![USER_STREAM_PREFIX.to_owned()]))
    }

    fn react(&mut self, event: &RecordedEvent) -> Result<(), ReminderError> {
        match self.codec.decode_recorded(event)? {
            UserEvent::SignedUp { user_id, name, email, signed_up_at_us } => {
                // Due relative to the sign-up's own time, not to when this
                // runs: a late scheduler does not push the reminder back.
                let due_at_us = signed_up_at_us.saturating_add(self.delay_us);
                let payload = serde_json::to_value(ReminderPayload { user_id, name, email })
                    .expect("a struct of strings serializes");
                self.timers.schedule(&reminder_timer_id(user_id), due_at_us, payload)?;
            }
            UserEvent::Activated { user_id, .. } => {
                self.timers.cancel(&reminder_timer_id(user_id))?;
            }
        }
        Ok(())
    }
}

/// The reminder component's work: scheduling from the log, firing by the clock.
pub struct ReminderLoop<'s> {
    scheduler: ProcessManagerRunner<'s, ReminderScheduler, SqliteCheckpoints>,
    timers: TimerService<Arc<dyn EventStore>>,
    clock: Arc<dyn Clock>,
}

impl<'s> ReminderLoop<'s> {
    pub fn new(
        store: &'s Arc<dyn EventStore>,
        checkpoints: SqliteCheckpoints,
        delay_us: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ReminderError> {
        let scheduler = ReminderScheduler::new(Arc::clone(store), delay_us);
        let scheduler = ProcessManagerRunner::new(&**store, scheduler, checkpoints);
        let timers = TimerService::start(Arc::clone(store))?;
        Ok(Self { scheduler, timers, clock })
    }

    /// Catches the scheduler up with the log, then fires what is due now.
    /// Returns how many timers fired.
    pub fn step(&mut self) -> Result<usize, ReminderError> {
        self.scheduler.run_until_caught_up()?;
        Ok(self.timers.tick(self.clock.now_us())?.len())
    }
}
