//! The sequencer: the one thread that writes. It drains the request queue
//! into a batch, validates each request against the state as the batch so
//! far leaves it, stages the valid ones in the log, commits the batch with
//! one write and one fdatasync, and only then applies it to the index and
//! acknowledges. A failed request writes nothing and does not affect others
//! in its batch.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use stele_log::{LogWriter, WriteError};

use crate::codec::{encode_event, stream_hash, EventFields, KIND_EVENT};
use crate::error::AppendError;
use crate::fast_hash::FastMap;
use crate::index::Entry;
use crate::limits::{
    INDEX_BACKLOG_MEMTABLES_MAX, INDEX_BACKLOG_RETRY_INTERVAL_MS, RECENT_APPENDS_MAX, STREAM_CACHE_ENTRIES_MAX,
};
use crate::metadata::StreamMetadata;
use crate::shared::{Head, Shared};
use crate::types::RecordedEvent;
use crate::types::{
    check_content_type, check_event_type, check_user_stream_name, metadata_stream_of, AppendResult, CurrentRevision,
    ExpectedRevision, StreamAppend, Uuid, CONTENT_TYPE_JSON, EVENT_TYPE_METADATA, EVENT_TYPE_TOMBSTONE,
    TOMBSTONE_REVISION,
};

pub(crate) enum Command {
    Append(Vec<StreamAppend>),
    SetMetadata { stream: String, expected: ExpectedRevision, metadata: StreamMetadata },
    Delete { stream: String, expected: ExpectedRevision },
    Tombstone { stream: String, expected: ExpectedRevision },
}

impl Command {
    /// Bytes this request adds to a batch, for batch sizing.
    pub fn size_bytes(&self) -> usize {
        match self {
            Command::Append(parts) => parts.iter().flat_map(|p| &p.events).map(|e| e.size_bytes() + 64).sum(),
            _ => 256,
        }
    }
}

/// Called with the outcome and the command itself, so that the command's
/// allocations can be freed by the caller's thread instead of the writer's.
pub(crate) type Reply = Box<dyn FnOnce(Result<Vec<AppendResult>, AppendError>, Command) + Send>;

pub(crate) struct Request {
    pub command: Command,
    pub reply: Reply,
}

impl Request {
    pub fn answer(self, result: Result<Vec<AppendResult>, AppendError>) {
        (self.reply)(result, self.command)
    }
}

/// The streams a command reads or writes (a metadata change: the stream).
fn streams_of(command: &Command) -> impl Iterator<Item = &str> {
    let (parts, single) = match command {
        Command::Append(parts) => (parts.as_slice(), None),
        Command::SetMetadata { stream, .. } | Command::Delete { stream, .. } | Command::Tombstone { stream, .. } => {
            (&[][..], Some(stream.as_str()))
        }
    };
    parts.iter().map(|p| p.stream.as_str()).chain(single)
}

/// Whether the batch so far wrote to one of the command's streams.
fn touches(command: &Command, overlay: &FastMap<String, Head>) -> bool {
    !overlay.is_empty() && streams_of(command).any(|stream| overlay.contains_key(stream))
}

/// Whether an append starts with the same event id as a part staged in
/// this batch: most likely a retry of it, which with `Any` or
/// `StreamExists` would otherwise be written a second time.
fn repeats_staged_append(command: &Command, staged_first_ids: &FastMap<Uuid, ()>) -> bool {
    match command {
        Command::Append(parts) if !staged_first_ids.is_empty() => {
            parts.iter().filter_map(|p| p.events.first()).any(|e| staged_first_ids.contains_key(&e.id))
        }
        _ => false,
    }
}

/// Whether a command reads state that the overlay of staged heads does not
/// carry: stream metadata written earlier in the batch (soft delete and
/// `$tb` decide whether a stream is live), or, for metadata changes,
/// deletes and tombstones, anything of the stream written in the batch.
/// `metadata_staged` lists the streams whose `$$` metadata stream the batch wrote.
fn must_wait_for_commit(command: &Command, overlay: &FastMap<String, Head>, metadata_staged: &[String]) -> bool {
    if overlay.is_empty() {
        return false;
    }
    let metadata_staged = |stream: &str| metadata_staged.iter().any(|staged| staged == stream);
    match command {
        Command::Append(parts) => parts.iter().any(|p| metadata_staged(&p.stream)),
        _ => touches(command, overlay) || streams_of(command).any(metadata_staged),
    }
}

/// One event ready to encode.
struct Planned<'a> {
    stream: &'a str,
    revision: u64,
    id: Uuid,
    event_type: &'a str,
    content_type: &'a str,
    data: &'a [u8],
    metadata: &'a [u8],
}

enum Prepared {
    /// Every part was already written with these ids: nothing to write.
    Duplicate(Vec<AppendResult>),
    Write(Staged),
}

/// A validated request, encoded and waiting for its positions.
struct Staged {
    payloads: Vec<u8>,
    ranges: Vec<Range<usize>>,
    /// Per event: stream hash, revision, id.
    events: Vec<(u64, u64, Uuid)>,
    /// Per part: its event range in `events` and its stream's new head.
    parts: Vec<(Range<usize>, String, Head)>,
}

/// Recent appends by the id of their first event:
/// `first id -> (stream hash, first revision, event count)`. One entry per
/// append, not per event, so large appends cost one map operation.
#[derive(Default)]
pub(crate) struct RecentAppends {
    map: FastMap<Uuid, (u64, u64, u64)>,
    order: VecDeque<Uuid>,
}

impl RecentAppends {
    pub fn insert(&mut self, first_id: Uuid, value: (u64, u64, u64)) {
        if self.map.insert(first_id, value).is_none() {
            self.order.push_back(first_id);
        }
        while self.order.len() > RECENT_APPENDS_MAX {
            let oldest = self.order.pop_front().unwrap();
            self.map.remove(&oldest);
        }
    }
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    log: LogWriter,
    /// Committed heads, a cache over the index.
    heads: FastMap<String, Head>,
    recent: RecentAppends,
    last_stamp_us: u64,
    memtable_entries_max: usize,
    /// The index maintenance running in the background, if any (at most
    /// one): writing a frozen memtable as a table, then merging tables.
    index_job: Option<std::thread::JoinHandle<()>>,
    /// Memtable size at which the next flush is tried.
    flush_at_entries: usize,
    /// When a failed table write was last retried for a refused batch.
    backlog_retried_at: Option<std::time::Instant>,
    /// Where committed requests go to be answered, and the thread that
    /// answers them (see `spawn_answerer`); `None` if that thread could
    /// not start: then the writer answers.
    answerer: Option<(std::sync::mpsc::Sender<Answered>, std::thread::JoinHandle<()>)>,
}

/// Committed requests and their results, answered in commit order.
type Answered = Vec<(Request, Vec<AppendResult>)>;

fn answer_all(batch: Answered) {
    for (request, results) in batch {
        request.answer(Ok(results));
    }
}

/// Answers committed requests on a thread of its own. Waking a blocked
/// caller is a system call; with 64 callers waiting, the wakeups took about
/// half of the writer's time, time in which it can instead be writing the
/// next batch while earlier callers are woken.
fn spawn_answerer() -> Option<(std::sync::mpsc::Sender<Answered>, std::thread::JoinHandle<()>)> {
    let (sender, receiver) = std::sync::mpsc::channel::<Answered>();
    let thread = std::thread::Builder::new()
        .name("stele-answer".into())
        .spawn(move || {
            receiver.into_iter().for_each(answer_all);
        })
        .ok()?;
    Some((sender, thread))
}

impl Writer {
    pub fn new(shared: Arc<Shared>, log: LogWriter, memtable_entries_max: usize) -> Self {
        Self {
            shared,
            log,
            heads: FastMap::default(),
            recent: RecentAppends::default(),
            last_stamp_us: 0,
            memtable_entries_max,
            index_job: None,
            flush_at_entries: memtable_entries_max,
            backlog_retried_at: None,
            answerer: None,
        }
    }

    /// New batches are stamped no earlier than `stamp_us` (the last stamp
    /// in the log, at open).
    pub fn stamps_not_before(&mut self, stamp_us: u64) {
        self.last_stamp_us = self.last_stamp_us.max(stamp_us);
    }

    /// Replay fills the idempotency window as live appends would.
    pub fn recent_appends(&mut self) -> &mut RecentAppends {
        &mut self.recent
    }

    pub fn run(mut self, queue: Receiver<Request>) {
        self.answerer = spawn_answerer();
        let batch_bytes_max = self.shared.limits.batch_size_bytes_max;
        loop {
            let first = match queue.try_recv() {
                Ok(request) => request,
                Err(TryRecvError::Disconnected) => break,
                // Idle: zero the log ahead of the next writes (one chunk,
                // then look at the queue again), so their fdatasync has no
                // file size to commit.
                Err(TryRecvError::Empty) if self.log.preallocate_ahead() => continue,
                Err(TryRecvError::Empty) => match queue.recv() {
                    Ok(request) => request,
                    Err(_) => break,
                },
            };
            let mut size_bytes = first.command.size_bytes();
            let mut batch = vec![first];
            while size_bytes < batch_bytes_max {
                match queue.try_recv() {
                    Ok(request) => {
                        size_bytes += request.command.size_bytes();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            // Requests that must see this batch committed first run as the
            // next batch, ahead of anything newly queued.
            while !batch.is_empty() {
                batch = self.process(batch);
            }
        }
        // The queue closed: every request was answered (or handed to the
        // answerer, which finishes them before it exits). Flushing the
        // index now makes the next open skip the replay.
        if let Some((answers, answerer)) = self.answerer.take() {
            drop(answers);
            let _ = answerer.join();
        }
        if let Some(job) = self.index_job.take() {
            let _ = job.join();
        }
        let index = &self.shared.index;
        if self.log.is_poisoned().is_none() && (index.memtable_len() > 0 || index.has_frozen()) {
            let _ = index.flush(self.log.committed_end());
        }
    }

    /// Validates, writes and commits one batch; answers its requests after
    /// the commit. Returns the requests that must be decided again once this
    /// batch is committed (see `must_wait_for_commit`).
    fn process(&mut self, batch: Vec<Request>) -> Vec<Request> {
        if let Some(refusal) = self.index_backlog() {
            for request in batch {
                request.answer(Err(clone_error(&refusal)));
            }
            return Vec::new();
        }
        // Time is an input: stamped once per batch, never read while applying.
        let stamp_us = self.shared.clock.now_us().max(self.last_stamp_us);
        let mut overlay: FastMap<String, Head> = FastMap::default();
        let mut waiting: Vec<(Request, Vec<AppendResult>)> = Vec::new();
        let mut carried: Vec<Request> = Vec::new();
        let mut metadata_staged: Vec<String> = Vec::new();
        // First event ids of the parts staged in this batch: a retry of one
        // of them is recognised (as a duplicate) only once it is committed.
        let mut staged_first_ids: FastMap<Uuid, ()> = FastMap::default();
        let mut entries: Vec<Entry> = Vec::new();
        let mut appended: Vec<(Uuid, (u64, u64, u64))> = Vec::new();
        for request in batch {
            if must_wait_for_commit(&request.command, &overlay, &metadata_staged)
                || repeats_staged_append(&request.command, &staged_first_ids)
            {
                carried.push(request);
                continue;
            }
            let staged = match self.prepare(&request.command, stamp_us, &overlay) {
                Ok(Prepared::Write(staged)) => staged,
                // A refusal or a duplicate found against streams this batch
                // wrote would be an answer about state not yet durable (the
                // commit may still fail), and a retry of a request in this
                // very batch is only recognised once that request is
                // committed: decide these again after the commit.
                _ if touches(&request.command, &overlay) => {
                    carried.push(request);
                    continue;
                }
                Ok(Prepared::Duplicate(results)) => {
                    request.answer(Ok(results));
                    continue;
                }
                Err(error) => {
                    request.answer(Err(error));
                    continue;
                }
            };
            let records = staged.ranges.iter().map(|r| (KIND_EVENT, &staged.payloads[r.clone()]));
            let positions = match self.log.append_transaction(records) {
                Ok(positions) => positions,
                Err(error) => {
                    request.answer(Err(self.write_error(error)));
                    continue;
                }
            };
            let mut results = Vec::with_capacity(staged.parts.len());
            for (range, stream, head) in staged.parts {
                let first = &staged.events[range.start];
                appended.push((first.2, (first.0, first.1, range.len() as u64)));
                staged_first_ids.insert(first.2, ());
                let last = &staged.events[range.end - 1];
                results.push(AppendResult {
                    first_revision: first.1,
                    last_revision: last.1,
                    first_position: positions[range.start],
                    last_position: positions[range.end - 1],
                    duplicate: false,
                });
                if let Some(base) = stream.strip_prefix("$$") {
                    metadata_staged.push(base.to_owned());
                }
                overlay.insert(stream, head);
            }
            for (&(hash, revision, _), &position) in staged.events.iter().zip(&positions) {
                entries.push(Entry { hash, revision, position });
            }
            waiting.push((request, results));
        }
        if waiting.is_empty() {
            debug_assert!(carried.is_empty(), "nothing staged, so nothing to wait for");
            return carried;
        }
        match self.log.commit() {
            Ok(end) => {
                self.last_stamp_us = stamp_us;
                self.shared.index.insert(entries);
                if self.heads.len() + overlay.len() > STREAM_CACHE_ENTRIES_MAX {
                    self.heads.clear();
                }
                self.heads.extend(overlay);
                for (first_id, value) in appended {
                    self.recent.insert(first_id, value);
                }
                self.shared.publish(end);
                match &self.answerer {
                    Some((answers, _)) => {
                        if let Err(unsent) = answers.send(waiting) {
                            answer_all(unsent.0);
                        }
                    }
                    None => answer_all(waiting),
                }
                if self.shared.index.memtable_len() >= self.flush_at_entries {
                    self.flush_index(end);
                }
                // A writer kept busy is never idle long enough to zero the
                // log ahead (see `run`): top it up while the answers go out.
                self.log.top_up_preallocation();
            }
            Err(error) => {
                let error = self.write_error(error);
                for (request, _) in waiting {
                    request.answer(Err(clone_error(&error)));
                }
            }
        }
        carried
    }

    /// Hands the memtable to a background thread to be written as a table
    /// (then merges tables if there are too many), so appends never wait
    /// for sorting and writing an index table. Tables are derived state: a
    /// failed write loses nothing (the frozen memtable stays in use), but
    /// memory keeps growing, so the failure is reported
    /// (`Store::index_error`) and retried only after another memtable's
    /// worth of entries rather than after every batch.
    fn flush_index(&mut self, end: u64) {
        if self.index_job.as_ref().is_some_and(|job| !job.is_finished()) {
            return; // the memtable grows a little longer
        }
        if let Some(job) = self.index_job.take() {
            let _ = job.join();
        }
        // A table that failed to be written is retried before the memtable
        // is frozen again (there is room for one frozen memtable).
        let retrying = self.shared.index.has_frozen();
        if !retrying && !self.shared.index.freeze(end) {
            return;
        }
        let shared = self.shared.clone();
        let job = std::thread::Builder::new().name("stele-index".into()).spawn(move || {
            if !write_frozen_table(&shared) {
                return;
            }
            // A merge that fails leaves the tables as they were.
            if shared.index.needs_merge() {
                let _ = shared.index.merge();
            }
        });
        // Without a thread, the next try writes it.
        self.index_job = job.ok();
        // Try again once another memtable's worth has come in: after a
        // freeze the memtable is empty, but while a retry is pending it is
        // not frozen and only shrinks once the retry succeeds.
        self.flush_at_entries = self.memtable_entries_max + self.shared.index.memtable_len();
    }

    /// The refusal every request gets while index entries cannot be written
    /// and too many wait in memory. Now and then it retries the failed
    /// table write itself: nothing can be written until that succeeds, and
    /// a retry that succeeds lets this very batch through.
    fn index_backlog(&mut self) -> Option<AppendError> {
        let backlog_entries_max = INDEX_BACKLOG_MEMTABLES_MAX * self.memtable_entries_max;
        let backlogged =
            |index: &crate::index::Index| index.has_frozen() && index.memtable_len() >= backlog_entries_max;
        if !backlogged(&self.shared.index) {
            return None;
        }
        let retry_interval = std::time::Duration::from_millis(INDEX_BACKLOG_RETRY_INTERVAL_MS);
        if self.backlog_retried_at.is_none_or(|at| at.elapsed() >= retry_interval) {
            self.backlog_retried_at = Some(std::time::Instant::now());
            // Never two writes of the frozen memtable at once.
            if let Some(job) = self.index_job.take() {
                let _ = job.join();
            }
            if self.shared.index.has_frozen() {
                write_frozen_table(&self.shared);
            }
            if !backlogged(&self.shared.index) {
                return None;
            }
        }
        let cause = self.shared.index_error.lock().unwrap().clone();
        Some(AppendError::IndexBacklog {
            entries: self.shared.index.memtable_len(),
            cause: cause.unwrap_or_else(|| "a table write is pending".into()),
        })
    }

    fn write_error(&self, error: WriteError) -> AppendError {
        match error {
            WriteError::NoSpace => AppendError::NoSpace,
            WriteError::Poisoned { cause } => {
                *self.shared.writer_stopped.lock().unwrap() = Some(cause.clone());
                AppendError::WriterStopped { cause }
            }
            WriteError::TooLarge { size_bytes } => {
                AppendError::AppendTooLarge { size_bytes, limit_bytes: self.shared.limits.append_size_bytes_max }
            }
        }
    }

    fn head(&mut self, stream: &str, overlay: &FastMap<String, Head>) -> Result<Head, AppendError> {
        if let Some(head) = overlay.get(stream).or_else(|| self.heads.get(stream)) {
            return Ok(*head);
        }
        let head = self.shared.head(stream)?;
        if self.heads.len() >= STREAM_CACHE_ENTRIES_MAX {
            self.heads.clear();
        }
        self.heads.insert(stream.to_owned(), head);
        Ok(head)
    }

    /// A stream is live if it has events that a soft delete did not hide.
    fn is_live(&self, stream: &str, head: Head) -> Result<bool, AppendError> {
        let Some(last) = head.last else { return Ok(false) };
        if head.tombstoned {
            return Ok(false);
        }
        let truncate_before = self.shared.metadata(stream)?.and_then(|m| m.truncate_before);
        Ok(truncate_before.is_none_or(|tb| tb <= last))
    }

    fn check_expected(&self, stream: &str, expected: ExpectedRevision, head: Head) -> Result<(), AppendError> {
        let ok = match expected {
            ExpectedRevision::Any => true,
            ExpectedRevision::Exact(n) => head.last == Some(n),
            ExpectedRevision::NoStream => head.last.is_none() || !self.is_live(stream, head)?,
            ExpectedRevision::StreamExists => self.is_live(stream, head)?,
        };
        if ok {
            return Ok(());
        }
        let actual = head.last.map_or(CurrentRevision::NoStream, CurrentRevision::Current);
        Err(AppendError::WrongExpectedRevision { stream: stream.to_owned(), expected, actual })
    }

    fn prepare(
        &mut self,
        command: &Command,
        stamp_us: u64,
        overlay: &FastMap<String, Head>,
    ) -> Result<Prepared, AppendError> {
        match command {
            Command::Append(parts) => self.prepare_append(parts, stamp_us, overlay),
            Command::SetMetadata { stream, expected, metadata } => {
                check_user_stream_name(stream)
                    .map_err(|reason| AppendError::InvalidStreamName { stream: stream.clone(), reason })?;
                if self.head(stream, overlay)?.tombstoned {
                    return Err(AppendError::StreamDeleted { stream: stream.clone() });
                }
                let metadata_stream = metadata_stream_of(stream);
                let head = self.head(&metadata_stream, overlay)?;
                self.check_expected(&metadata_stream, *expected, head)?;
                let data = metadata.to_json();
                let event = metadata_event(&metadata_stream, head.next_revision(), &data);
                Ok(Prepared::Write(stage(vec![(metadata_stream.as_str(), vec![event])], stamp_us)))
            }
            Command::Delete { stream, expected } => {
                check_user_stream_name(stream)
                    .map_err(|reason| AppendError::InvalidStreamName { stream: stream.clone(), reason })?;
                let head = self.head(stream, overlay)?;
                if head.tombstoned {
                    return Err(AppendError::StreamDeleted { stream: stream.clone() });
                }
                self.check_expected(stream, *expected, head)?;
                let mut metadata = self.shared.metadata(stream)?.unwrap_or_default();
                metadata.truncate_before = Some(head.next_revision());
                let metadata_stream = metadata_stream_of(stream);
                let metadata_head = self.head(&metadata_stream, overlay)?;
                let data = metadata.to_json();
                let event = metadata_event(&metadata_stream, metadata_head.next_revision(), &data);
                Ok(Prepared::Write(stage(vec![(metadata_stream.as_str(), vec![event])], stamp_us)))
            }
            Command::Tombstone { stream, expected } => {
                check_user_stream_name(stream)
                    .map_err(|reason| AppendError::InvalidStreamName { stream: stream.clone(), reason })?;
                let head = self.head(stream, overlay)?;
                if head.tombstoned {
                    return Err(AppendError::StreamDeleted { stream: stream.clone() });
                }
                self.check_expected(stream, *expected, head)?;
                let event = Planned {
                    stream,
                    revision: TOMBSTONE_REVISION,
                    id: tombstone_id(stream, head),
                    event_type: EVENT_TYPE_TOMBSTONE,
                    content_type: CONTENT_TYPE_JSON,
                    data: b"{}",
                    metadata: b"",
                };
                let mut staged = stage(vec![(stream.as_str(), vec![event])], stamp_us);
                staged.parts[0].2 = Head { last: head.last, tombstoned: true };
                Ok(Prepared::Write(staged))
            }
        }
    }

    fn prepare_append(
        &mut self,
        parts: &[StreamAppend],
        stamp_us: u64,
        overlay: &FastMap<String, Head>,
    ) -> Result<Prepared, AppendError> {
        check_shape(parts, &self.shared.limits)?;
        let mut duplicates = Vec::new();
        let mut planned = Vec::with_capacity(parts.len());
        for part in parts {
            let head = self.head(&part.stream, overlay)?;
            if head.tombstoned {
                return Err(AppendError::StreamDeleted { stream: part.stream.clone() });
            }
            if let Some(result) = self.find_duplicate(part, head)? {
                duplicates.push((part, result));
                continue;
            }
            self.check_expected(&part.stream, part.expected, head)?;
            let first = head.next_revision();
            let events = part
                .events
                .iter()
                .enumerate()
                .map(|(i, e)| Planned {
                    stream: &part.stream,
                    revision: first + i as u64,
                    id: e.id,
                    event_type: &e.event_type,
                    content_type: &e.content_type,
                    data: &e.data,
                    metadata: &e.metadata,
                })
                .collect();
            planned.push((part.stream.as_str(), events));
        }
        if planned.is_empty() {
            return Ok(Prepared::Duplicate(duplicates.into_iter().map(|(_, r)| r).collect()));
        }
        if let Some((part, _)) = duplicates.first() {
            // Some parts were written before and some were not: the request
            // is not a retry of one earlier append.
            let head = self.head(&part.stream, overlay)?;
            let actual = head.last.map_or(CurrentRevision::NoStream, CurrentRevision::Current);
            return Err(AppendError::WrongExpectedRevision {
                stream: part.stream.clone(),
                expected: part.expected,
                actual,
            });
        }
        Ok(Prepared::Write(stage(planned, stamp_us)))
    }

    /// Whether `part` repeats an append already in the log: same stream,
    /// same ids in the same order, at a place its expectation allows.
    fn find_duplicate(&self, part: &StreamAppend, head: Head) -> Result<Option<AppendResult>, AppendError> {
        let count = part.events.len() as u64;
        let hash = stream_hash(&part.stream);
        let compatible = |first: u64| match part.expected {
            ExpectedRevision::Any | ExpectedRevision::StreamExists => true,
            ExpectedRevision::NoStream => first == 0,
            ExpectedRevision::Exact(n) => n.checked_add(1) == Some(first),
        };
        if let Some(&(first_hash, first, stored_count)) = self.recent.map.get(&part.events[0].id) {
            if first_hash == hash && stored_count == count {
                let stored = self.shared.stream_events(&part.stream, first, first + count - 1)?;
                if same_ids(&stored, part) {
                    if !compatible(first) {
                        return Err(AppendError::DuplicateEventIds { stream: part.stream.clone(), revision: first });
                    }
                    return Ok(Some(duplicate_result(first, count, &stored)));
                }
            }
        }
        // Checked: an expectation near u64::MAX can name no stored slot, and
        // must fail as a wrong expectation rather than overflow.
        let slot = match part.expected {
            ExpectedRevision::Exact(n) => n.checked_add(1),
            ExpectedRevision::NoStream => Some(0),
            _ => None,
        };
        let Some((slot, slot_last)) = slot.and_then(|s| s.checked_add(count - 1).map(|l| (s, l))) else {
            return Ok(None);
        };
        if head.last.is_none_or(|last| last < slot_last) {
            return Ok(None);
        }
        let stored = self.shared.stream_events(&part.stream, slot, slot_last)?;
        Ok(same_ids(&stored, part).then(|| duplicate_result(slot, count, &stored)))
    }
}

fn same_ids(stored: &[RecordedEvent], part: &StreamAppend) -> bool {
    stored.len() == part.events.len() && stored.iter().zip(&part.events).all(|(s, e)| s.id == e.id)
}

fn duplicate_result(first: u64, count: u64, stored: &[RecordedEvent]) -> AppendResult {
    AppendResult {
        first_revision: first,
        last_revision: first + count - 1,
        first_position: stored[0].position,
        last_position: stored[stored.len() - 1].position,
        duplicate: true,
    }
}

fn metadata_event<'a>(metadata_stream: &'a str, revision: u64, data: &'a [u8]) -> Planned<'a> {
    Planned {
        stream: metadata_stream,
        revision,
        // Deterministic, so a replay of the same commands writes the same log.
        id: Uuid::from_u64_pair(stream_hash(metadata_stream), revision),
        event_type: EVENT_TYPE_METADATA,
        content_type: CONTENT_TYPE_JSON,
        data,
        metadata: b"",
    }
}

fn tombstone_id(stream: &str, head: Head) -> Uuid {
    Uuid::from_u64_pair(stream_hash(stream), head.next_revision() ^ TOMBSTONE_REVISION)
}

fn stage(parts: Vec<(&str, Vec<Planned<'_>>)>, stamp_us: u64) -> Staged {
    let mut staged = Staged { payloads: Vec::new(), ranges: Vec::new(), events: Vec::new(), parts: Vec::new() };
    for (stream, events) in parts {
        let hash = stream_hash(stream);
        let start = staged.events.len();
        let mut last = 0;
        for event in events {
            let from = staged.payloads.len();
            encode_event(
                &mut staged.payloads,
                &EventFields {
                    stream: event.stream,
                    revision: event.revision,
                    recorded_at_us: stamp_us,
                    id: event.id,
                    event_type: event.event_type,
                    content_type: event.content_type,
                    data: event.data,
                    metadata: event.metadata,
                },
            );
            staged.ranges.push(from..staged.payloads.len());
            staged.events.push((hash, event.revision, event.id));
            last = event.revision;
        }
        let head = Head { last: Some(last), tombstoned: false };
        staged.parts.push((start..staged.events.len(), stream.to_owned(), head));
    }
    staged
}

/// Validates everything about an append that needs no state.
fn check_shape(parts: &[StreamAppend], limits: &crate::limits::Limits) -> Result<(), AppendError> {
    if parts.is_empty() || parts.iter().any(|p| p.events.is_empty()) {
        return Err(AppendError::EmptyAppend);
    }
    if parts.len() > limits.append_streams_max {
        return Err(AppendError::TooManyStreams { count: parts.len(), limit: limits.append_streams_max });
    }
    let count: usize = parts.iter().map(|p| p.events.len()).sum();
    if count > limits.append_events_max {
        return Err(AppendError::TooManyEvents { count, limit: limits.append_events_max });
    }
    let mut size_bytes = 0usize;
    for (i, part) in parts.iter().enumerate() {
        let stream = &part.stream;
        check_user_stream_name(stream)
            .map_err(|reason| AppendError::InvalidStreamName { stream: stream.clone(), reason })?;
        if parts[..i].iter().any(|p| &p.stream == stream) {
            return Err(AppendError::DuplicateStream { stream: stream.clone() });
        }
        for (index, event) in part.events.iter().enumerate() {
            check_event_type(&event.event_type).map_err(|reason| AppendError::InvalidEventType {
                stream: stream.clone(),
                event_type: event.event_type.clone(),
                reason,
            })?;
            check_content_type(&event.content_type).map_err(|reason| AppendError::InvalidContentType {
                stream: stream.clone(),
                content_type: event.content_type.clone(),
                reason,
            })?;
            let event_bytes = event.size_bytes();
            if event_bytes > limits.event_size_bytes_max {
                return Err(AppendError::EventTooLarge {
                    stream: stream.clone(),
                    index,
                    size_bytes: event_bytes,
                    limit_bytes: limits.event_size_bytes_max,
                });
            }
            size_bytes += event_bytes;
        }
    }
    if size_bytes > limits.append_size_bytes_max {
        return Err(AppendError::AppendTooLarge { size_bytes, limit_bytes: limits.append_size_bytes_max });
    }
    Ok(())
}

/// Writes the frozen memtable as a table and records the outcome where
/// `Store::index_error` reports it. Returns whether it was written.
fn write_frozen_table(shared: &Shared) -> bool {
    let result = shared.index.write_frozen();
    let written = result.is_ok();
    *shared.index_error.lock().unwrap() = result.err().map(|error| error.to_string());
    written
}

fn clone_error(error: &AppendError) -> AppendError {
    match error {
        AppendError::NoSpace => AppendError::NoSpace,
        AppendError::IndexBacklog { entries, cause } => {
            AppendError::IndexBacklog { entries: *entries, cause: cause.clone() }
        }
        AppendError::WriterStopped { cause } => AppendError::WriterStopped { cause: cause.clone() },
        other => AppendError::WriterStopped { cause: other.to_string() },
    }
}
