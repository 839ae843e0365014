//! Subscriptions: catch up, then follow live appends, from one cursor.
//!
//! A `$all` subscription is a log cursor: catching up and following live
//! are the same loop, so there is no switch-over where an event could be
//! missed or repeated, and the writer never waits for a subscriber (a slow
//! one simply reads from further back in the log).
//!
//! A stream subscription catches up through the index below the
//! `visible_end` it saw when it started (everything below it is indexed),
//! then follows the log from exactly that position.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stele_log::Cursor;

use crate::codec::{decode_event, EventArena};
use crate::error::ReadError;
use crate::filter::EventFilter;
use crate::shared::Shared;
use crate::types::{AllStart, RecordedEvent, StreamStart, TOMBSTONE_REVISION};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionMessage {
    Event(RecordedEvent),
    /// The subscription reached the end of the log for the first time.
    CaughtUp {
        position: u64,
    },
    /// A filtered subscription has examined every record before
    /// `position` (where a resumed subscription starts, inclusive).
    /// `last_scanned_position` is the position of the last record it
    /// examined (passed over, or delivered before this message): the form
    /// KurrentDB's protocol uses (resume after it).
    Checkpoint {
        position: u64,
        last_scanned_position: u64,
    },
}

/// Records examined per step before control returns to the caller.
const STEP_RECORDS_MAX: usize = 512;

#[derive(Debug)]
enum Target {
    All { filter: Option<EventFilter>, checkpoint_interval: u64 },
    Stream { name: String, next_revision: u64, catch_up_until: Option<u64> },
}

#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    cursor: Cursor,
    target: Target,
    pending: VecDeque<SubscriptionMessage>,
    caught_up: bool,
    scanned_since_checkpoint: u64,
    /// The position of the last record a `$all` subscription examined
    /// (delivered or passed over).
    last_scanned_position: u64,
    /// Where delivered events are copied to.
    arena: EventArena,
}

impl Subscription {
    pub(crate) fn all(
        shared: Arc<Shared>,
        start: AllStart,
        filter: Option<EventFilter>,
        checkpoint_interval: u64,
    ) -> Self {
        let position = match start {
            AllStart::Start => 0,
            AllStart::End => shared.reader.committed_end(),
            AllStart::Position(p) => p,
        };
        let cursor = shared.reader.cursor(position);
        let target = Target::All { filter, checkpoint_interval: checkpoint_interval.max(1) };
        Self::starting(shared, cursor, target)
    }

    pub(crate) fn stream(shared: Arc<Shared>, stream: &str, start: StreamStart) -> Self {
        let boundary = shared.visible_end();
        let (next_revision, catch_up_until) = match start {
            StreamStart::Start => (0, Some(boundary)),
            StreamStart::Revision(r) => (r, Some(boundary)),
            // From the end: nothing to catch up; revisions come from the log.
            StreamStart::End => (0, None),
        };
        let cursor = shared.reader.cursor(boundary);
        let target = Target::Stream { name: stream.to_owned(), next_revision, catch_up_until };
        Self::starting(shared, cursor, target)
    }

    fn starting(shared: Arc<Shared>, cursor: Cursor, target: Target) -> Self {
        Self {
            shared,
            cursor,
            target,
            pending: VecDeque::new(),
            caught_up: false,
            scanned_since_checkpoint: 0,
            last_scanned_position: 0,
            arena: EventArena::default(),
        }
    }

    /// The log position the subscription has read up to.
    pub fn position(&self) -> u64 {
        self.cursor.position()
    }

    /// The next message, waiting up to `timeout` for one; `None` if none came.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<SubscriptionMessage>, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Ok(Some(message));
            }
            if self.step()? {
                continue;
            }
            if !self.caught_up {
                self.caught_up = true;
                return Ok(Some(SubscriptionMessage::CaughtUp { position: self.cursor.position() }));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.shared.reader.wait_past(self.cursor.position(), deadline - now);
        }
    }

    /// The next message if one is ready now.
    pub fn try_next(&mut self) -> Result<Option<SubscriptionMessage>, ReadError> {
        self.next_timeout(Duration::ZERO)
    }

    /// Reads some records into `pending`. Returns false at the end of the log.
    fn step(&mut self) -> Result<bool, ReadError> {
        if let Target::Stream { name, next_revision, catch_up_until: Some(boundary) } = &mut self.target {
            let events = self.shared.stream_events(
                name,
                *next_revision,
                next_revision.saturating_add(STEP_RECORDS_MAX as u64 - 1),
            )?;
            let below: Vec<_> = events.into_iter().filter(|e| e.position < *boundary).collect();
            if below.is_empty() {
                self.target_catch_up_done();
                return Ok(true);
            }
            for event in below {
                *next_revision = event.revision + 1;
                self.pending.push_back(SubscriptionMessage::Event(event));
            }
            return Ok(true);
        }
        let mut progressed = false;
        for _ in 0..STEP_RECORDS_MAX {
            let Some((position, record)) = self.cursor.next_record()? else { break };
            progressed = true;
            let view =
                decode_event(record.kind, record.payload).map_err(|reason| ReadError::BadEvent { position, reason })?;
            match &mut self.target {
                Target::All { filter, checkpoint_interval } => {
                    self.last_scanned_position = position;
                    if filter.as_ref().is_none_or(|f| f.matches(view.stream, view.event_type)) {
                        self.pending.push_back(SubscriptionMessage::Event(self.arena.event(&view, position)));
                    } else {
                        self.scanned_since_checkpoint += 1;
                        if self.scanned_since_checkpoint >= *checkpoint_interval {
                            self.scanned_since_checkpoint = 0;
                            self.pending.push_back(SubscriptionMessage::Checkpoint {
                                position: self.cursor.position(),
                                last_scanned_position: position,
                            });
                        }
                    }
                }
                Target::Stream { name, next_revision, .. } => {
                    if view.stream != name.as_str() {
                        continue;
                    }
                    if view.revision == TOMBSTONE_REVISION {
                        return Err(ReadError::StreamDeleted { stream: name.clone() });
                    }
                    if view.revision >= *next_revision {
                        *next_revision = view.revision + 1;
                        self.pending.push_back(SubscriptionMessage::Event(self.arena.event(&view, position)));
                    }
                }
            }
            if self.pending.len() >= STEP_RECORDS_MAX {
                break;
            }
        }
        // At the end of the log a filtered subscription reports how far it
        // scanned, so a consumer can checkpoint through long quiet stretches.
        if !progressed || self.pending.is_empty() {
            if let Target::All { filter: Some(_), .. } = self.target {
                if self.scanned_since_checkpoint > 0 && self.cursor.position() >= self.shared.reader.committed_end() {
                    self.scanned_since_checkpoint = 0;
                    self.pending.push_back(SubscriptionMessage::Checkpoint {
                        position: self.cursor.position(),
                        last_scanned_position: self.last_scanned_position,
                    });
                    return Ok(true);
                }
            }
        }
        Ok(progressed)
    }

    fn target_catch_up_done(&mut self) {
        if let Target::Stream { catch_up_until, .. } = &mut self.target {
            *catch_up_until = None;
        }
    }
}
