//! The read side every thread shares: the log reader, the index and the
//! lookups built on them. The writer uses the same lookups for validation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use stele_log::LogReader;

use crate::clock::Clock;
use crate::codec::{decode_event, stream_hash, EventArena, EventView};
use crate::error::ReadError;
use crate::index::Index;
use crate::limits::Limits;
use crate::metadata::StreamMetadata;
use crate::types::{metadata_stream_of, RecordedEvent, TOMBSTONE_REVISION};

/// What the store knows of a stream's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Head {
    /// The highest revision written, `None` if the stream never had events.
    pub last: Option<u64>,
    pub tombstoned: bool,
}

impl Head {
    pub fn next_revision(&self) -> u64 {
        self.last.map_or(0, |last| last + 1)
    }
}

pub(crate) struct Shared {
    pub reader: LogReader,
    pub index: Index,
    /// Every event below this position is in the index. The writer moves it
    /// after applying a committed batch; stream subscriptions switch from
    /// the index to the log here.
    pub visible_end: AtomicU64,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    /// Why the writer stopped, once it has.
    pub writer_stopped: Mutex<Option<String>>,
    /// Called by the writer with the new `visible_end` after each commit;
    /// how async front ends learn of new events without polling.
    pub commit_listeners: Mutex<Vec<CommitListener>>,
    /// Why the last index flush failed, while it keeps failing.
    pub index_error: Mutex<Option<String>>,
}

pub type CommitListener = Arc<dyn Fn(u64) + Send + Sync>;

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("visible_end", &self.visible_end()).finish_non_exhaustive()
    }
}

fn decode(position: u64, kind: u8, payload: &[u8]) -> Result<EventView<'_>, ReadError> {
    decode_event(kind, payload).map_err(|reason| ReadError::BadEvent { position, reason })
}

impl Shared {
    pub fn visible_end(&self) -> u64 {
        self.visible_end.load(Ordering::Acquire)
    }

    /// Publishes a new visible end to readers and listeners.
    pub fn publish(&self, end: u64) {
        self.visible_end.store(end, Ordering::Release);
        for listener in self.commit_listeners.lock().unwrap().iter() {
            listener(end);
        }
    }

    /// The committed event at `position`.
    pub fn event_at(&self, position: u64) -> Result<RecordedEvent, ReadError> {
        let record = self.reader.read(position)?;
        Ok(decode(position, record.kind, &record.payload)?.to_recorded(position))
    }

    /// Whether the event at `position` belongs to `stream`.
    fn is_event_of(&self, position: u64, stream: &str) -> Result<bool, ReadError> {
        let record = self.reader.read(position)?;
        Ok(decode(position, record.kind, &record.payload)?.stream == stream)
    }

    /// The stream's head, found through the index and confirmed against
    /// the log (two streams may share a hash).
    pub fn head(&self, stream: &str) -> Result<Head, ReadError> {
        let hash = stream_hash(stream);
        let Some((revision, position)) = self.index.last(hash)? else {
            return Ok(Head::default());
        };
        if self.is_event_of(position, stream)? {
            return Ok(head_from(revision, || self.last_live_revision(stream, hash, revision)));
        }
        // A hash collision: walk this hash's entries from the top.
        let entries = self.index.range(hash, 0, u64::MAX)?;
        for &(revision, position) in entries.iter().rev() {
            if self.is_event_of(position, stream)? {
                return Ok(head_from(revision, || self.last_live_revision(stream, hash, revision)));
            }
        }
        Ok(Head::default())
    }

    /// The last revision below a tombstone, for reporting.
    fn last_live_revision(&self, stream: &str, hash: u64, below: u64) -> Option<u64> {
        let entries = self.index.range(hash, 0, below.saturating_sub(1)).ok()?;
        entries.iter().rev().find(|(_, p)| self.is_event_of(*p, stream).unwrap_or(false)).map(|(r, _)| *r)
    }

    /// The events of `stream` with revisions in `[low, high]`, ascending.
    pub fn stream_events(&self, stream: &str, low: u64, high: u64) -> Result<Vec<RecordedEvent>, ReadError> {
        let mut events = Vec::with_capacity(high.saturating_sub(low).saturating_add(1).min(1024) as usize);
        let mut arena = EventArena::default();
        self.visit_stream(stream, low, high, |view, position| events.push(arena.event(&view, position)))?;
        Ok(events)
    }

    /// Visits the events of `stream` with revisions in `[low, high]` in
    /// ascending order, borrowed from the read buffer. Each must agree with
    /// the index entry that led to it.
    pub fn visit_stream(
        &self,
        stream: &str,
        low: u64,
        high: u64,
        mut visit: impl FnMut(EventView<'_>, u64),
    ) -> Result<(), ReadError> {
        let entries = self.index.range(stream_hash(stream), low, high.min(TOMBSTONE_REVISION - 1))?;
        let mut positions: Vec<u64> = entries.iter().map(|&(_, p)| p).collect();
        // Within one stream, log order is revision order.
        positions.sort_unstable();
        positions.dedup();
        // Events arrive in (revision, position) order, as `entries` is sorted:
        // a forward walk checks each against its entry.
        let mut next_entry = 0;
        self.reader.read_many(&positions, |position, record| -> Result<(), ReadError> {
            let view = decode(position, record.kind, record.payload)?;
            if view.stream != stream {
                return Ok(()); // another stream with the same hash
            }
            while entries.get(next_entry).is_some_and(|&entry| entry < (view.revision, position)) {
                next_entry += 1;
            }
            if entries.get(next_entry) != Some(&(view.revision, position)) {
                let (stream, revision) = (stream.to_owned(), view.revision);
                return Err(ReadError::IndexMismatch { stream, revision, position });
            }
            visit(view, position);
            Ok(())
        })
    }

    /// The stream's metadata, from the last event of `$$stream`.
    pub fn metadata(&self, stream: &str) -> Result<Option<StreamMetadata>, ReadError> {
        let metadata_stream = metadata_stream_of(stream);
        let head = self.head(&metadata_stream)?;
        let Some(last) = head.last else { return Ok(None) };
        // Metadata was validated when written; an unreadable one (written by
        // a newer version, say) counts as none rather than failing reads.
        // Parsed from the read window: no copy of the event is needed.
        let mut metadata = None;
        self.visit_stream(&metadata_stream, last, last, |view, _| {
            metadata = StreamMetadata::from_json(view.data).ok();
        })?;
        Ok(metadata)
    }
}

fn head_from(top: u64, live: impl FnOnce() -> Option<u64>) -> Head {
    if top == TOMBSTONE_REVISION {
        Head { last: live(), tombstoned: true }
    } else {
        Head { last: Some(top), tombstoned: false }
    }
}
