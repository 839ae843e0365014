//! The embedded event store: the public API over the writer and the shared
//! read side.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use stele_log::{DiskStorage, LogConfig, Recovery, Storage};

use crate::clock::{Clock, SystemClock};
use crate::codec::{decode_event, stream_hash, EventArena};
use crate::error::{AppendError, OpenError, ReadError};
use crate::filter::EventFilter;
use crate::index::{Entry, Index};
use crate::limits::{Limits, READ_EVENTS_MAX, RECENT_APPENDS_MAX, RECENT_WINDOW_REPLAY_RECORDS_MAX};
use crate::metadata::StreamMetadata;
use crate::shared::Shared;
use crate::subscription::Subscription;
use crate::types::{
    check_stream_name, metadata_stream_of, AllStart, AppendResult, Direction, ExpectedRevision, NewEvent,
    RecordedEvent, StreamAppend, StreamStart, Uuid,
};
use crate::writer::{Command, Reply, Request, Writer};

/// How to open a store. `StoreConfig::new(dir)` gives the defaults.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    pub limits: Limits,
    pub segment_size_bytes: u64,
    /// The memtable is written out as an index table past this many entries.
    pub index_memtable_entries_max: usize,
    pub clock: Arc<dyn Clock>,
    pub storage: Arc<dyn Storage>,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            limits: Limits::default(),
            segment_size_bytes: LogConfig::default().segment_size_bytes,
            index_memtable_entries_max: 262_144,
            clock: Arc::new(SystemClock),
            storage: Arc::new(DiskStorage),
        }
    }
}

/// What opening the store found.
#[derive(Debug, Clone)]
pub struct OpenReport {
    pub log: Recovery,
    /// The index covered the log up to here; the rest was replayed.
    pub index_checkpoint: u64,
    pub replayed_events: u64,
    pub open_ms: u64,
}

/// A page of `$all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllSlice {
    pub events: Vec<RecordedEvent>,
    /// Where to continue reading in the same direction.
    pub next_position: u64,
    /// True when the read stopped at the end (or start) of the log.
    pub is_end: bool,
}

/// What [`Store::scan_all_page`] visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllScan {
    /// Events visited (those matching the filter).
    pub visited: usize,
    /// Where to continue reading forwards.
    pub next_position: u64,
    /// True when the scan stopped at the end of the log.
    pub is_end: bool,
}

struct ReadableRange {
    low: u64,
    high: u64,
    /// The stream's last revision.
    last: u64,
    metadata: StreamMetadata,
}

/// What [`Store::verify_log`] found.
#[derive(Debug, Clone, Default)]
pub struct LogCheck {
    pub segments: usize,
    pub records: u64,
    /// Damaged segments and what is wrong.
    pub problems: Vec<(PathBuf, String)>,
}

/// The embedded event store. Share it between threads with an `Arc`;
/// dropping it finishes queued appends, flushes the index and closes.
pub struct Store {
    shared: Arc<Shared>,
    sender: Option<SyncSender<Request>>,
    writer: Option<JoinHandle<()>>,
    report: OpenReport,
    _lock: std::fs::File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("report", &self.report).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) a store in `dir` with default settings.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with(StoreConfig::new(dir.as_ref()))
    }

    pub fn open_with(config: StoreConfig) -> Result<Self, OpenError> {
        let started = Instant::now();
        let storage = config.storage.clone();
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        storage.create_dir_all(&config.dir).map_err(io_error(&config.dir))?;
        let lock = stele_log::storage::lock_directory(&config.dir)
            .map_err(io_error(&config.dir))?
            .ok_or_else(|| OpenError::Locked { path: config.dir.clone() })?;
        let index = Index::open(storage.clone(), &config.dir.join("index"))?;
        let checkpoint = index.checkpoint();
        let log_config = LogConfig { segment_size_bytes: config.segment_size_bytes };
        let (log_writer, reader, recovery) = stele_log::open(storage, &config.dir.join("log"), log_config, checkpoint)?;
        let shared = Arc::new(Shared {
            reader,
            index,
            visible_end: AtomicU64::new(0),
            clock: config.clock.clone(),
            limits: config.limits,
            writer_stopped: Mutex::new(None),
            commit_listeners: Mutex::new(Vec::new()),
            index_error: Mutex::new(None),
        });
        let mut writer = Writer::new(shared.clone(), log_writer, config.index_memtable_entries_max);
        let window_from = window_start(&shared, checkpoint);
        let replayed_events = replay(&shared, &mut writer, window_from, checkpoint)?;
        // Stamps never go back, across restarts too (reads rely on it to
        // find where `$maxAge`-expired events end): a clock set back
        // stamps new batches with the last stamp until it catches up.
        let last_record = shared.reader.read_before(recovery.end_position).ok().flatten();
        if let Some(view) = last_record.as_ref().and_then(|r| decode_event(r.kind, &r.payload).ok()) {
            writer.stamps_not_before(view.recorded_at_us);
        }
        shared.visible_end.store(recovery.end_position, std::sync::atomic::Ordering::Release);

        let (sender, queue) = sync_channel(config.limits.queue_requests_max);
        let thread = std::thread::Builder::new()
            .name("stele-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(io_error(&config.dir))?;
        let report = OpenReport {
            log: recovery,
            index_checkpoint: checkpoint,
            replayed_events,
            open_ms: started.elapsed().as_millis() as u64,
        };
        Ok(Self { shared, sender: Some(sender), writer: Some(thread), report, _lock: lock })
    }

    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Appends events to one stream.
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, AppendError> {
        let mut results = self.append_multi(vec![StreamAppend::new(stream, expected, events)])?;
        Ok(results.remove(0))
    }

    /// Appends to several streams atomically: every part is checked against
    /// its own expectation, and either all are written or none.
    pub fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, AppendError> {
        self.call(Command::Append(parts))
    }

    /// Queues an append and returns at once; `reply` runs on one of the
    /// store's threads after the append is durable (or failed), so it must
    /// be quick and must not block. For front ends that must not block.
    /// `reply` also gets the parts back: send them to a thread of yours to
    /// drop, as freeing a large append's events is time the store's threads
    /// would otherwise spend.
    pub fn append_with(
        &self,
        parts: Vec<StreamAppend>,
        reply: impl FnOnce(Result<Vec<AppendResult>, AppendError>, Vec<StreamAppend>) + Send + 'static,
    ) {
        self.submit(
            Command::Append(parts),
            Box::new(move |result, command| match command {
                Command::Append(parts) => reply(result, parts),
                _ => unreachable!("the writer answers with the command it was given"),
            }),
        );
    }

    /// Sets a stream's metadata (an event in `$$stream`); `expected` is
    /// checked against the metadata stream.
    pub fn set_stream_metadata(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        metadata: StreamMetadata,
    ) -> Result<AppendResult, AppendError> {
        let command = Command::SetMetadata { stream: stream.to_owned(), expected, metadata };
        Ok(self.call(command)?.remove(0))
    }

    /// Soft-deletes a stream: its events become unreadable, and appending
    /// again recreates it with revisions that continue where it ended.
    pub fn delete_stream(&self, stream: &str, expected: ExpectedRevision) -> Result<AppendResult, AppendError> {
        Ok(self.call(Command::Delete { stream: stream.to_owned(), expected })?.remove(0))
    }

    /// Deletes a stream for good: it can never be written again.
    pub fn tombstone_stream(&self, stream: &str, expected: ExpectedRevision) -> Result<AppendResult, AppendError> {
        Ok(self.call(Command::Tombstone { stream: stream.to_owned(), expected })?.remove(0))
    }

    fn call(&self, command: Command) -> Result<Vec<AppendResult>, AppendError> {
        let (sender, receiver) = sync_channel(1);
        self.submit(
            command,
            Box::new(move |result, command| {
                let _ = sender.send((result, command));
            }),
        );
        // The command comes back to be dropped here, off the writer thread.
        receiver.recv().map_or_else(|_| Err(self.stopped_error()), |(result, _command)| result)
    }

    fn submit(&self, command: Command, reply: Reply) {
        let sender = self.sender.as_ref().expect("sender lives until drop");
        match sender.try_send(Request { command, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(request)) => {
                let capacity = self.shared.limits.queue_requests_max;
                request.answer(Err(AppendError::Overloaded { capacity }))
            }
            Err(TrySendError::Disconnected(request)) => request.answer(Err(self.stopped_error())),
        }
    }

    fn stopped_error(&self) -> AppendError {
        let cause = self.shared.writer_stopped.lock().unwrap().clone();
        AppendError::WriterStopped { cause: cause.unwrap_or_else(|| "the writer thread exited".to_owned()) }
    }

    /// Registers `listener` to be called (on the writer thread, so it must
    /// be quick) with the new end position after every commit.
    pub fn add_commit_listener(&self, listener: impl Fn(u64) + Send + Sync + 'static) {
        self.shared.commit_listeners.lock().unwrap().push(Arc::new(listener));
    }

    /// Why writing the index out last failed, while it keeps failing. The
    /// log is unaffected, but the in-memory part of the index grows until a
    /// flush succeeds, and the next open replays more.
    pub fn index_error(&self) -> Option<String> {
        self.shared.index_error.lock().unwrap().clone()
    }

    /// Why the writer stopped accepting appends, if it has (fail-stop).
    pub fn writer_stopped(&self) -> Option<String> {
        self.shared.writer_stopped.lock().unwrap().clone()
    }

    /// The end of the durable log: the position the next event will get.
    pub fn end_position(&self) -> u64 {
        self.shared.visible_end()
    }

    /// Reads up to `limit` events of a stream. A missing or soft-deleted
    /// stream is `StreamNotFound`; a tombstoned one is `StreamDeleted`.
    /// Events past the stream's `$maxAge` are skipped, and the read goes on
    /// past them until it has `limit` events or reaches the stream's end.
    pub fn read_stream(
        &self,
        stream: &str,
        start: StreamStart,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let mut events = Vec::new();
        self.read_live_range(stream, start, direction, limit, |range, now_us| {
            events = self.shared.stream_events(stream, range.low, range.high)?;
            events.retain(|e| !range.metadata.is_expired(e.recorded_at_us, now_us));
            if direction == Direction::Backward {
                events.reverse();
            }
            Ok(())
        })?;
        Ok(events)
    }

    /// Visits up to `limit` events of a stream forwards from `start`,
    /// borrowed from the read buffer instead of copied (see `scan_all`).
    /// Returns the number of events visited. Errors as `read_stream`.
    pub fn scan_stream(
        &self,
        stream: &str,
        start: StreamStart,
        limit: usize,
        mut visit: impl FnMut(crate::codec::EventView<'_>, u64),
    ) -> Result<usize, ReadError> {
        let mut visited = 0;
        self.read_live_range(stream, start, Direction::Forward, limit, |range, now_us| {
            self.shared.visit_stream(stream, range.low, range.high, |view, position| {
                if !range.metadata.is_expired(view.recorded_at_us, now_us) {
                    visited += 1;
                    visit(view, position);
                }
            })
        })?;
        Ok(visited)
    }

    /// Calls `read(range, now_us)` once, on the revisions a read of `limit`
    /// events from `start` covers once events `$maxAge` expired are left
    /// out; `read` drops the expired ones it still meets by `now_us`. Batch
    /// stamps never go back, so expired events are always the oldest: a
    /// forward read starts after them (found by binary search), and a
    /// backward read's range ends where they begin, with nothing live
    /// below. One `now_us` serves the whole read, so the search and the
    /// filter agree on what has expired.
    fn read_live_range(
        &self,
        stream: &str,
        start: StreamStart,
        direction: Direction,
        limit: usize,
        read: impl FnOnce(&ReadableRange, u64) -> Result<(), ReadError>,
    ) -> Result<(), ReadError> {
        // A read of 0 events still looks, to report a missing or deleted stream.
        let Some(mut range) = self.readable_range(stream, start, direction, limit)? else { return Ok(()) };
        if range.metadata.max_age_secs.is_none() {
            return read(&range, 0);
        }
        let now_us = self.shared.clock.now_us();
        if direction == Direction::Forward {
            let Some(live) = self.first_live_revision(stream, &range, now_us)? else { return Ok(()) };
            if live > range.low {
                match self.readable_range(stream, StreamStart::Revision(live), direction, limit)? {
                    Some(after_expired) => range = after_expired,
                    None => return Ok(()),
                }
            }
        }
        read(&range, now_us)
    }

    /// The first revision from `range.low` to the stream's last whose event
    /// has not expired by `$maxAge`, by binary search (stamps never go
    /// back, so the expired events are a prefix); `None` when all have.
    fn first_live_revision(&self, stream: &str, range: &ReadableRange, now_us: u64) -> Result<Option<u64>, ReadError> {
        let is_live = |revision: u64| -> Result<bool, ReadError> {
            let events = self.shared.stream_events(stream, revision, revision)?;
            // A revision with no event (none is expected here) ends the skipping.
            Ok(events.first().is_none_or(|e| !range.metadata.is_expired(e.recorded_at_us, now_us)))
        };
        let (mut low, mut high) = (range.low, range.last);
        if !is_live(high)? {
            return Ok(None);
        }
        // Invariant: `high` is live; everything below `low` is expired.
        while low < high {
            let middle = low + (high - low) / 2;
            if is_live(middle)? {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        Ok(Some(high))
    }

    /// The revisions a read of `limit` events from `start` covers, after
    /// metadata (`$tb`, `$maxCount`), or `None` when there is nothing to read.
    fn readable_range(
        &self,
        stream: &str,
        start: StreamStart,
        direction: Direction,
        limit: usize,
    ) -> Result<Option<ReadableRange>, ReadError> {
        check_stream_name(stream).map_err(|reason| ReadError::InvalidStreamName { reason })?;
        let head = self.shared.head(stream)?;
        if head.tombstoned {
            return Err(ReadError::StreamDeleted { stream: stream.to_owned() });
        }
        let not_found = || ReadError::StreamNotFound { stream: stream.to_owned() };
        let last = head.last.ok_or_else(not_found)?;
        let metadata = if stream.starts_with("$$") { None } else { self.shared.metadata(stream)? };
        let metadata = metadata.unwrap_or_default();
        if metadata.truncate_before.is_some_and(|tb| tb > last) {
            return Err(not_found());
        }
        let first = metadata.first_readable_revision(last);
        let limit = limit.min(READ_EVENTS_MAX) as u64;
        if limit == 0 {
            return Ok(None);
        }
        let (low, high) = match direction {
            Direction::Forward => {
                let low = match start {
                    StreamStart::Start => first,
                    StreamStart::Revision(r) => r.max(first),
                    StreamStart::End => last + 1,
                };
                (low, low.saturating_add(limit - 1).min(last))
            }
            Direction::Backward => {
                let high = match start {
                    StreamStart::End => last,
                    StreamStart::Revision(r) => r.min(last),
                    StreamStart::Start => first,
                };
                (high.saturating_sub(limit - 1).max(first), high)
            }
        };
        if low > high || high < first {
            return Ok(None);
        }
        Ok(Some(ReadableRange { low, high, last, metadata }))
    }

    /// Reads up to `limit` events of `$all` (matching `filter`, if given).
    /// Forward reads start at the record at the position; backward reads
    /// return the records before it.
    pub fn read_all(
        &self,
        start: AllStart,
        direction: Direction,
        limit: usize,
        filter: Option<&EventFilter>,
    ) -> Result<AllSlice, ReadError> {
        let limit = limit.min(READ_EVENTS_MAX);
        let (position, end) = self.all_start_position(start)?;
        let mut events = Vec::new();
        let mut arena = EventArena::default();
        let matches = |stream: &str, event_type: &str| filter.is_none_or(|f| f.matches(stream, event_type));
        match direction {
            Direction::Forward => {
                let scan = self.scan_forward(position, end, limit, filter, |view, at| {
                    events.push(arena.event(&view, at));
                })?;
                Ok(AllSlice { events, next_position: scan.next_position, is_end: scan.is_end })
            }
            Direction::Backward => {
                let mut position = position;
                while events.len() < limit {
                    let Some(record) = self.shared.reader.read_before(position)? else {
                        return Ok(AllSlice { events, next_position: 0, is_end: true });
                    };
                    position = record.position;
                    let view = decode_event(record.kind, &record.payload)
                        .map_err(|reason| ReadError::BadEvent { position, reason })?;
                    if matches(view.stream, view.event_type) {
                        events.push(arena.event(&view, position));
                    }
                }
                Ok(AllSlice { events, next_position: position, is_end: position == 0 })
            }
        }
    }

    /// `read_all` forwards with the events borrowed from the read buffer
    /// instead of copied: `visit` sees up to `limit` events matching
    /// `filter`, each with its position.
    pub fn scan_all_page(
        &self,
        start: AllStart,
        limit: usize,
        filter: Option<&EventFilter>,
        visit: impl FnMut(crate::codec::EventView<'_>, u64),
    ) -> Result<AllScan, ReadError> {
        let (position, end) = self.all_start_position(start)?;
        self.scan_forward(position, end, limit.min(READ_EVENTS_MAX), filter, visit)
    }

    /// Where a `$all` read from `start` begins, and the committed end then.
    fn all_start_position(&self, start: AllStart) -> Result<(u64, u64), ReadError> {
        let end = self.shared.reader.committed_end();
        match start {
            AllStart::Start => Ok((0, end)),
            AllStart::End => Ok((end, end)),
            AllStart::Position(p) if p > end => Err(ReadError::PositionPastEnd { position: p, end }),
            AllStart::Position(p) => Ok((p, end)),
        }
    }

    fn scan_forward(
        &self,
        position: u64,
        end: u64,
        limit: usize,
        filter: Option<&EventFilter>,
        mut visit: impl FnMut(crate::codec::EventView<'_>, u64),
    ) -> Result<AllScan, ReadError> {
        let mut cursor = self.shared.reader.cursor(position);
        let mut visited = 0;
        while visited < limit {
            let Some((at, record)) = cursor.next_record()? else {
                return Ok(AllScan { visited, next_position: cursor.position(), is_end: true });
            };
            let view = decode_event(record.kind, record.payload)
                .map_err(|reason| ReadError::BadEvent { position: at, reason })?;
            if filter.is_none_or(|f| f.matches(view.stream, view.event_type)) {
                visited += 1;
                visit(view, at);
            }
        }
        Ok(AllScan { visited, next_position: cursor.position(), is_end: cursor.position() >= end })
    }

    /// Visits events of `$all` in log order from `position` without copying
    /// them: `visit` sees each event borrowed from the read buffer and its
    /// position, and returns false to stop. Returns the position after the
    /// last event visited. For consumers that encode events straight into
    /// their own format (network replies, projections).
    pub fn scan_all(
        &self,
        position: u64,
        mut visit: impl FnMut(crate::codec::EventView<'_>, u64) -> bool,
    ) -> Result<u64, ReadError> {
        let mut cursor = self.shared.reader.cursor(position);
        loop {
            let Some((at, record)) = cursor.next_record()? else { return Ok(cursor.position()) };
            let view = decode_event(record.kind, record.payload)
                .map_err(|reason| ReadError::BadEvent { position: at, reason })?;
            if !visit(view, at) {
                return Ok(cursor.position());
            }
        }
    }

    /// The position of the record after the event at `position`; fails if
    /// no event starts there.
    pub fn position_after(&self, position: u64) -> Result<u64, ReadError> {
        let record = self.shared.reader.read(position)?;
        decode_event(record.kind, &record.payload).map_err(|reason| ReadError::BadEvent { position, reason })?;
        Ok(record.next_position())
    }

    /// Where a `$all` reader that is done with the event at `position` (a
    /// checkpoint) resumes: just after that event, or the end if `position`
    /// is the end. Refused like [`check_all_position`](Self::check_all_position).
    pub fn resume_after(&self, position: u64) -> Result<u64, ReadError> {
        let end = self.shared.reader.committed_end();
        if position == end {
            return Ok(end);
        }
        if position > end {
            return Err(ReadError::PositionPastEnd { position, end });
        }
        self.position_after(position).map_err(|error| self.not_an_event_at(position, error))
    }

    /// The event at an exact `$all` position.
    pub fn read_event_at(&self, position: u64) -> Result<RecordedEvent, ReadError> {
        self.shared.event_at(position)
    }

    /// The stream's metadata; default (empty) when none was set.
    pub fn stream_metadata(&self, stream: &str) -> Result<StreamMetadata, ReadError> {
        check_stream_name(stream).map_err(|reason| ReadError::InvalidStreamName { reason })?;
        Ok(self.shared.metadata(stream)?.unwrap_or_default())
    }

    /// The revision of the metadata stream's last event, if any.
    pub fn stream_metadata_revision(&self, stream: &str) -> Result<Option<u64>, ReadError> {
        Ok(self.shared.head(&metadata_stream_of(stream))?.last)
    }

    /// The last revision of a stream and whether it is tombstoned.
    pub fn stream_revision(&self, stream: &str) -> Result<Option<u64>, ReadError> {
        check_stream_name(stream).map_err(|reason| ReadError::InvalidStreamName { reason })?;
        let head = self.shared.head(stream)?;
        if head.tombstoned {
            return Err(ReadError::StreamDeleted { stream: stream.to_owned() });
        }
        Ok(head.last)
    }

    /// Subscribes to `$all`: catches up from `start`, then follows live
    /// appends. With a filter, checkpoints are reported every
    /// `checkpoint_interval` records scanned even when nothing matches.
    ///
    /// A start position must be 0, the end, or where an event starts
    /// ([`check_all_position`](Self::check_all_position)).
    pub fn subscribe_all(
        &self,
        start: AllStart,
        filter: Option<EventFilter>,
        checkpoint_interval: u64,
    ) -> Result<Subscription, ReadError> {
        if let AllStart::Position(position) = start {
            self.check_all_position(position)?;
        }
        Ok(Subscription::all(self.shared.clone(), start, filter, checkpoint_interval))
    }

    /// Checks that a `$all` position from outside (a client, a checkpoint)
    /// is one a read or a subscription can start at: 0, the end, or the
    /// position of an event. Past the end is `PositionPastEnd`; anywhere
    /// else is `NotAnEventPosition`, carrying what reading there found.
    pub fn check_all_position(&self, position: u64) -> Result<(), ReadError> {
        // `$all` readers (cursors, subscriptions) go up to the committed
        // end, a little ahead of `end_position` while the writer updates
        // the index: an event a subscriber has seen is inside it.
        let end = self.shared.reader.committed_end();
        if position == 0 || position == end {
            return Ok(());
        }
        if position > end {
            return Err(ReadError::PositionPastEnd { position, end });
        }
        self.read_event_at(position).map(drop).map_err(|error| self.not_an_event_at(position, error))
    }

    /// What reading at a `$all` position from outside found, as the caller
    /// should hear it. A record that does not decode there is either no
    /// record start at all (`NotAnEventPosition`: the caller's mistake) or a
    /// damaged record (the log's). A record start whose checksum fails is
    /// framed like one (its trailer repeats its length), which a position
    /// inside a record almost never is; only then does this walk the
    /// segment from its first record to be sure (up to a segment's worth of
    /// reading, on an error path a bogus position rarely reaches): landing
    /// on `position` means damage there, stepping over it means no record
    /// starts there, and damage met on the way is reported as itself. A
    /// record that passes its checksum but is not an event is intact: not
    /// an event position. (Damage to a record's length or trailer is
    /// reported as a bad position: the frame no longer looks like a record.)
    fn not_an_event_at(&self, position: u64, error: ReadError) -> ReadError {
        let reader = &self.shared.reader;
        let might_be_damage = matches!(
            error,
            ReadError::Log(stele_log::ReadError::BadRecord { reason: stele_log::FrameError::BadChecksum, .. })
        ) && reader.is_framed_at(position);
        if might_be_damage {
            let segments = reader.segments();
            let segment = segments.iter().rev().find(|s| s.base_position <= position).expect("segment 0 starts at 0");
            let mut cursor = reader.cursor(segment.base_position);
            loop {
                match cursor.position().cmp(&position) {
                    std::cmp::Ordering::Equal => return error,
                    std::cmp::Ordering::Greater => break,
                    std::cmp::Ordering::Less => {}
                }
                match cursor.next_record() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(damage) => return damage.into(),
                }
            }
        }
        match error {
            ReadError::Log(stele_log::ReadError::BadRecord { .. }) | ReadError::BadEvent { .. } => {
                ReadError::NotAnEventPosition { position, source: Box::new(error) }
            }
            other => other,
        }
    }

    /// Subscribes to one stream, from a revision (inclusive), the start or the end.
    /// Catch-up skips what a read would not show (soft-deleted or truncated
    /// events); a tombstoned stream is `StreamDeleted`.
    pub fn subscribe_stream(&self, stream: &str, start: StreamStart) -> Result<Subscription, ReadError> {
        check_stream_name(stream).map_err(|reason| ReadError::InvalidStreamName { reason })?;
        let head = self.shared.head(stream)?;
        if head.tombstoned {
            return Err(ReadError::StreamDeleted { stream: stream.to_owned() });
        }
        let start = match (start, head.last) {
            (StreamStart::End, _) | (_, None) => start,
            (StreamStart::Start, Some(last)) | (StreamStart::Revision(_), Some(last)) => {
                let requested = if let StreamStart::Revision(r) = start { r } else { 0 };
                let metadata = if stream.starts_with("$$") { None } else { self.shared.metadata(stream)? };
                let first = metadata.map_or(0, |m| m.first_readable_revision(last));
                StreamStart::Revision(requested.max(first))
            }
        };
        Ok(Subscription::stream(self.shared.clone(), stream, start))
    }

    /// A digest of the derived state (every index entry and the log end).
    /// A replay of the same log must give the same digest. Walks the whole
    /// index: for tests and `stele verify`, not for hot paths.
    pub fn state_digest(&self) -> Result<u64, ReadError> {
        let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |word: u64| {
            for byte in word.to_le_bytes() {
                digest ^= u64::from(byte);
                digest = digest.wrapping_mul(0x0100_0000_01b3);
            }
        };
        self.shared.index.for_each(|Entry { hash, revision, position }| {
            mix(hash);
            mix(revision);
            mix(position);
        })?;
        mix(self.shared.visible_end());
        Ok(digest)
    }

    /// The log's counters (syncs, bytes, sync latency histogram).
    pub fn log_stats(&self) -> &stele_log::LogStats {
        self.shared.reader.stats()
    }

    /// The log's segments, for tools.
    pub fn segments(&self) -> Vec<stele_log::SegmentInfo> {
        self.shared.reader.segments()
    }

    /// Reads every record of every segment, checking its checksum and
    /// decoding its event. Damage ends the scan of that segment only, so one
    /// run reports every damaged segment. Calls `progress` with bytes scanned.
    pub fn verify_log(&self, mut progress: impl FnMut(u64)) -> LogCheck {
        let mut check = LogCheck::default();
        let reader = &self.shared.reader;
        let mut scanned_before = 0;
        for segment in reader.segments() {
            let mut decode_failure = None;
            let scan = stele_log::scan_segment(reader, &segment, |position, record| {
                if decode_failure.is_none() {
                    if let Err(reason) = decode_event(record.kind, record.payload) {
                        decode_failure = Some(ReadError::BadEvent { position, reason });
                    }
                }
                check.records += 1;
                if check.records.is_multiple_of(65_536) {
                    progress(scanned_before + position - segment.base_position);
                }
            });
            if let Err(error) = scan {
                check.problems.push((segment.path.clone(), error.to_string()));
            } else if let Some(error) = decode_failure {
                check.problems.push((segment.path.clone(), error.to_string()));
            }
            scanned_before += segment.end_position - segment.base_position;
            check.segments += 1;
        }
        progress(scanned_before);
        check
    }

    /// Checks every index entry against the log: each must point at an
    /// event of its stream hash and revision. Returns the entries checked.
    pub fn verify_index(&self, mut progress: impl FnMut(u64)) -> Result<u64, ReadError> {
        let mut checked = 0u64;
        let mut failure = None;
        self.shared.index.for_each(|entry| {
            if failure.is_some() {
                return;
            }
            match self.shared.event_at(entry.position) {
                Ok(event) if stream_hash(event.stream()) == entry.hash && event.revision == entry.revision => {}
                Ok(event) => {
                    failure = Some(ReadError::IndexMismatch {
                        stream: event.stream().to_owned(),
                        revision: entry.revision,
                        position: entry.position,
                    })
                }
                Err(error) => failure = Some(error),
            }
            checked += 1;
            if checked.is_multiple_of(65_536) {
                progress(checked);
            }
        })?;
        failure.map_or(Ok(checked), Err)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closing the queue lets the writer answer what is queued and exit.
        drop(self.sender.take());
        if let Some(thread) = self.writer.take() {
            let _ = thread.join();
        }
    }
}

/// Where the replay starts so that the idempotency window holds the last
/// `RECENT_APPENDS_MAX` appends again, as it did before the close (the index
/// checkpoint alone would leave it empty after a clean close): the
/// checkpoint, walked back over that many log transactions (each holds at
/// least one append). Best effort: an unreadable record ends the walk at the
/// transaction boundary after it, and the open goes on as it would have.
fn window_start(shared: &Shared, checkpoint: u64) -> u64 {
    let mut start = checkpoint;
    let mut position = checkpoint;
    let mut transactions = 0;
    // Bounded by records too: a walk back costs a read per record, and open
    // time must not grow with history.
    let mut records = 0;
    loop {
        match shared.reader.read_before(position) {
            Ok(Some(record)) => {
                if record.flags & stele_log::format::FLAG_TRANSACTION_END != 0 {
                    // `position` ends a transaction: from here on, all are whole.
                    start = position;
                    if transactions == RECENT_APPENDS_MAX || records >= RECENT_WINDOW_REPLAY_RECORDS_MAX {
                        break;
                    }
                    transactions += 1;
                }
                records += 1;
                position = record.position;
            }
            Ok(None) => return 0,
            Err(_) => break,
        }
    }
    start
}

/// Rebuilds the memtable from the log after the index checkpoint `from`,
/// and the idempotency window from the log after `window_from` (at or
/// before `from`). Damage before `from` only ends the window's rebuild early.
fn replay(shared: &Shared, writer: &mut Writer, window_from: u64, from: u64) -> Result<u64, OpenError> {
    let mut cursor = shared.reader.cursor(window_from);
    let mut entries = Vec::with_capacity(4096);
    let mut replayed = 0u64;
    // The append being rebuilt: first id, stream hash, first revision, count.
    let mut group: Option<(Uuid, u64, u64, u64)> = None;
    loop {
        let at = cursor.position();
        let (position, record) = match cursor.next_record() {
            Ok(Some(next)) => next,
            Ok(None) => break,
            Err(error) => {
                if at >= from {
                    return Err(ReadError::from(error).into());
                }
                cursor.seek(from);
                group = None;
                continue;
            }
        };
        let view = match decode_event(record.kind, record.payload) {
            Ok(view) => view,
            Err(_) if position < from => {
                cursor.seek(from);
                group = None;
                continue;
            }
            Err(reason) => return Err(ReadError::BadEvent { position, reason }.into()),
        };
        let hash = stream_hash(view.stream);
        if position >= from {
            entries.push(Entry { hash, revision: view.revision, position });
            replayed += 1;
        }
        group = match group {
            Some((id, group_hash, first, count)) if group_hash == hash && first + count == view.revision => {
                Some((id, hash, first, count + 1))
            }
            finished => {
                if let Some((id, group_hash, first, count)) = finished {
                    writer.recent_appends().insert(id, (group_hash, first, count));
                }
                Some((view.id, hash, view.revision, 1))
            }
        };
        if record.is_transaction_end() {
            if let Some((id, group_hash, first, count)) = group.take() {
                writer.recent_appends().insert(id, (group_hash, first, count));
            }
        }
        if entries.len() == entries.capacity() {
            shared.index.insert(entries.drain(..));
        }
    }
    shared.index.insert(entries);
    Ok(replayed)
}

/// The upper bound, in seconds, of bucket `i` of the log's sync latency
/// histogram, as Prometheus writes it (`+Inf` for the last).
pub fn log_sync_bucket_bound_seconds(i: usize) -> String {
    match stele_log::SYNC_LATENCY_BUCKETS_US.get(i) {
        Some(bound_us) => format!("{}", *bound_us as f64 / 1e6),
        None => "+Inf".to_owned(),
    }
}
