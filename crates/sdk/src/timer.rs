//! Timers through the log: a timer is an event with a due time, and one
//! [`TimerService`] appends a "fired" event when its clock passes it.
//!
//! Nothing waits in memory alone: the pending set is rebuilt from the timer
//! stream on start, so a restart loses no timer. The service never reads a
//! clock; the caller passes the time to [`TimerService::tick`], which makes
//! timers testable with simulated time.
//!
//! Every timer event's id is derived from the timer id, so scheduling,
//! cancelling and firing are idempotent: a second fire of the same timer
//! (two services, or a crash between the append and its bookkeeping) is
//! recognised by the store and written once.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use steledb::{AppendResult, ExpectedRevision, NewEvent, RecordedEvent};
use uuid::Uuid;

use crate::codec::{CodecError, EventCodec};
use crate::ids::{name_of, uuid_v5};
use crate::limits::{READ_PAGE_EVENTS, TIMERS_FIRED_PER_TICK_MAX, TIMER_STREAM_DEFAULT};
use crate::store::{EventStore, StoreError};

/// Namespace of timer event ids (a random v4 UUID, fixed forever).
pub const TIMER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x4d2a_9c71_e08b_4f35_a6d2_17be_c930_5f84);

/// The events of the timer stream. Type = variant name, data = its fields
/// as JSON (the toolkit's usual [`EventCodec`] form), so any consumer of
/// the log (a process manager) can react to `TimerFired`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TimerEvent {
    TimerScheduled {
        timer_id: String,
        due_at_us: u64,
        payload: Value,
    },
    TimerCancelled {
        timer_id: String,
    },
    /// `fired_at_us` is the time the service was ticked with.
    TimerFired {
        timer_id: String,
        due_at_us: u64,
        fired_at_us: u64,
        payload: Value,
    },
}

impl TimerEvent {
    pub fn timer_id(&self) -> &str {
        match self {
            Self::TimerScheduled { timer_id, .. }
            | Self::TimerCancelled { timer_id }
            | Self::TimerFired { timer_id, .. } => timer_id,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::TimerScheduled { .. } => "scheduled",
            Self::TimerCancelled { .. } => "cancelled",
            Self::TimerFired { .. } => "fired",
        }
    }

    /// The event's id: one per (timer id, kind), so each is written once.
    pub fn event_id(&self) -> Uuid {
        let label = format!("{}\0{}", self.kind(), self.timer_id());
        uuid_v5(TIMER_ID_NAMESPACE, &name_of(Uuid::nil(), label.as_bytes(), 0))
    }

    /// The event as stored.
    pub fn to_new_event(&self) -> Result<NewEvent, CodecError> {
        EventCodec::new().encode(self, self.event_id(), None)
    }

    /// Decodes a timer event read from the log (in a process manager).
    pub fn decode(event: &RecordedEvent) -> Result<Self, CodecError> {
        EventCodec::new().decode_recorded(event)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("timer event at revision {revision} of '{stream}' cannot be decoded: {source}")]
    Decode { stream: String, revision: u64, source: CodecError },
    #[error("timer event cannot be encoded: {0}")]
    Encode(CodecError),
}

/// Schedules and cancels timers (appends to the timer stream). Any number
/// of these may exist; one [`TimerService`] fires the timers.
///
/// A timer id names one timer: scheduling an id again is recognised as a
/// retry of the first scheduling and writes nothing, while that append is
/// within the store's idempotency window (the last 262,144 appends, see
/// the README's limits). Scheduling a fired or cancelled id again after
/// that makes a new timer that fires again. A repeating reminder uses a
/// new id per occurrence.
pub struct Timers<S> {
    store: S,
    stream: String,
}

impl<S: EventStore> Timers<S> {
    pub fn new(store: S) -> Self {
        Self { store, stream: TIMER_STREAM_DEFAULT.to_owned() }
    }

    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Schedules `timer_id` to fire at `due_at_us` with `payload`.
    pub fn schedule(&self, timer_id: &str, due_at_us: u64, payload: Value) -> Result<AppendResult, TimerError> {
        let event = TimerEvent::TimerScheduled { timer_id: timer_id.to_owned(), due_at_us, payload };
        self.append(&event)
    }

    /// Cancels `timer_id`. A cancel that reaches the log after the timer
    /// fired is too late: the `TimerFired` before it stands.
    pub fn cancel(&self, timer_id: &str) -> Result<AppendResult, TimerError> {
        self.append(&TimerEvent::TimerCancelled { timer_id: timer_id.to_owned() })
    }

    fn append(&self, event: &TimerEvent) -> Result<AppendResult, TimerError> {
        let new_event = event.to_new_event().map_err(TimerError::Encode)?;
        Ok(self.store.append(&self.stream, ExpectedRevision::Any, vec![new_event])?)
    }
}

/// A timer waiting for its due time.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTimer {
    pub timer_id: String,
    pub due_at_us: u64,
    pub payload: Value,
}

/// A timer a tick fired.
#[derive(Debug, Clone, PartialEq)]
pub struct FiredTimer {
    pub timer_id: String,
    pub due_at_us: u64,
    pub payload: Value,
    /// True when the store already held this timer's `TimerFired` (another
    /// service or an earlier attempt fired it): nothing was written.
    pub duplicate: bool,
}

/// Fires due timers: reads the timer stream into a pending set, and
/// appends `TimerFired` for each timer whose due time the caller's clock
/// has passed. Run one per timer stream (a second one is harmless, its
/// fires are deduplicated, but it does the work twice).
pub struct TimerService<S> {
    store: S,
    stream: String,
    /// The next revision of the timer stream to read.
    next_revision: u64,
    pending: HashMap<String, PendingTimer>,
    /// (due time, timer id): the pending timers in firing order.
    due: BTreeSet<(u64, String)>,
}

impl<S: EventStore> TimerService<S> {
    /// Starts a service on the default timer stream, rebuilding the
    /// pending timers from it.
    pub fn start(store: S) -> Result<Self, TimerError> {
        Self::start_on(store, TIMER_STREAM_DEFAULT)
    }

    pub fn start_on(store: S, stream: impl Into<String>) -> Result<Self, TimerError> {
        let mut service =
            Self { store, stream: stream.into(), next_revision: 0, pending: HashMap::new(), due: BTreeSet::new() };
        service.poll()?;
        Ok(service)
    }

    /// Reads the timer events appended since the last poll. Returns how many.
    pub fn poll(&mut self) -> Result<u64, TimerError> {
        let mut read = 0;
        loop {
            let page = self.store.read_forward(&self.stream, self.next_revision, READ_PAGE_EVENTS)?;
            for recorded in &page {
                let event = TimerEvent::decode(recorded).map_err(|source| TimerError::Decode {
                    stream: self.stream.clone(),
                    revision: recorded.revision,
                    source,
                })?;
                self.apply(event);
                self.next_revision = recorded.revision + 1;
            }
            read += page.len() as u64;
            if page.len() < READ_PAGE_EVENTS {
                return Ok(read);
            }
        }
    }

    /// Polls, then fires the timers due at `now_us` (at most
    /// [`TIMERS_FIRED_PER_TICK_MAX`]; the rest on the next tick).
    pub fn tick(&mut self, now_us: u64) -> Result<Vec<FiredTimer>, TimerError> {
        self.poll()?;
        self.fire_due(now_us)
    }

    /// Fires the timers due at `now_us` as the service last polled them,
    /// in due-time order. A timer whose fire fails stays pending and the
    /// error is returned; those fired before it in the same call are
    /// written and no longer pending.
    pub fn fire_due(&mut self, now_us: u64) -> Result<Vec<FiredTimer>, TimerError> {
        let due: Vec<(u64, String)> = self
            .due
            .iter()
            .take_while(|(due_at_us, _)| *due_at_us <= now_us)
            .take(TIMERS_FIRED_PER_TICK_MAX)
            .cloned()
            .collect();
        let mut fired = Vec::with_capacity(due.len());
        for (_, timer_id) in due {
            let timer = self.pending[&timer_id].clone();
            let event = TimerEvent::TimerFired {
                timer_id: timer.timer_id.clone(),
                due_at_us: timer.due_at_us,
                fired_at_us: now_us,
                payload: timer.payload.clone(),
            };
            let new_event = event.to_new_event().map_err(TimerError::Encode)?;
            // `Any`: the store recognises the derived id as a repeat whatever
            // the stream's revision now is.
            let result = self.store.append(&self.stream, ExpectedRevision::Any, vec![new_event])?;
            self.remove(&timer_id);
            fired.push(FiredTimer {
                timer_id: timer.timer_id,
                due_at_us: timer.due_at_us,
                payload: timer.payload,
                duplicate: result.duplicate,
            });
        }
        Ok(fired)
    }

    /// The earliest due time among pending timers: when to tick next.
    pub fn next_due_at_us(&self) -> Option<u64> {
        self.due.first().map(|(due_at_us, _)| *due_at_us)
    }

    pub fn pending(&self) -> impl Iterator<Item = &PendingTimer> {
        self.due.iter().map(|(_, id)| &self.pending[id])
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    fn apply(&mut self, event: TimerEvent) {
        match event {
            TimerEvent::TimerScheduled { timer_id, due_at_us, payload } => {
                // A scheduling repeated past the store's idempotency window
                // must not move a pending timer.
                if !self.pending.contains_key(&timer_id) {
                    self.due.insert((due_at_us, timer_id.clone()));
                    self.pending.insert(timer_id.clone(), PendingTimer { timer_id, due_at_us, payload });
                }
            }
            TimerEvent::TimerCancelled { timer_id } | TimerEvent::TimerFired { timer_id, .. } => {
                self.remove(&timer_id);
            }
        }
    }

    fn remove(&mut self, timer_id: &str) {
        if let Some(timer) = self.pending.remove(timer_id) {
            self.due.remove(&(timer.due_at_us, timer.timer_id));
        }
    }
}
