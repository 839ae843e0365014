use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::checksum::FRAMES_PER_PASS;
use crate::error::{OpenError, ReadError, WriteError};
use crate::format::{
    self, decode_record, decode_segment_header, encode_record, encode_segment_header, peek_record_length, FrameError,
    RecordRef, VerifiedFrames, FLAG_COMMIT_END, FLAG_TRANSACTION_END, RECORD_OVERHEAD, RECORD_SIZE_BYTES_MAX,
    SEGMENT_HEADER_SIZE,
};
use crate::storage::{parse_segment_name, segment_path, Storage, StorageFile};

/// Single reads of frames above this size check the trailer first (one
/// more small read, against reading a bogus length in full).
const TRAILER_FIRST_BYTES_MIN: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// A segment is closed once the next transaction would take it past this
    /// size. A single transaction larger than this gets a segment of its own.
    pub segment_size_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { segment_size_bytes: 256 * 1024 * 1024 }
    }
}

/// A record read from the log, owning its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub position: u64,
    pub kind: u8,
    pub flags: u8,
    pub length_bytes: u32,
    pub payload: Vec<u8>,
}

impl Record {
    fn from_ref(position: u64, record: RecordRef<'_>) -> Self {
        Self {
            position,
            kind: record.kind,
            flags: record.flags,
            length_bytes: record.length_bytes,
            payload: record.payload.to_vec(),
        }
    }
    pub fn next_position(&self) -> u64 {
        self.position + u64::from(self.length_bytes)
    }
}

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The end of the log after recovery: the next record goes here.
    pub end_position: u64,
    /// Bytes cut off after the last complete transaction: a torn write
    /// (unacknowledged by construction), or zeros preallocated ahead of the
    /// data by a writer that did not close cleanly.
    pub truncated_bytes: u64,
    /// Where the tail scan began.
    pub scanned_from: u64,
    pub segment_count: usize,
}

#[derive(Debug)]
struct Segment {
    base: u64,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
}

impl Segment {
    fn file_offset(&self, position: u64) -> u64 {
        debug_assert!(position >= self.base);
        SEGMENT_HEADER_SIZE + (position - self.base)
    }
}

#[derive(Debug)]
struct Shared {
    segments: RwLock<Vec<Arc<Segment>>>,
    /// End of the durable, visible log. Only the writer stores it, and only
    /// after the data below it was synced.
    committed_end: AtomicU64,
    commit_lock: Mutex<()>,
    commit_signal: Condvar,
    stats: LogStats,
}

/// Upper bounds (inclusive, microseconds) of the sync latency histogram's
/// buckets; a last, unbounded bucket follows.
pub const SYNC_LATENCY_BUCKETS_US: [u64; 10] = [50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 250_000];

/// Counters the writer keeps, for metrics.
#[derive(Debug, Default)]
pub struct LogStats {
    pub syncs: AtomicU64,
    pub bytes_written: AtomicU64,
    pub sync_latency_us_sum: AtomicU64,
    /// Counts per bucket of `SYNC_LATENCY_BUCKETS_US`, plus one for larger.
    pub sync_latency_us_buckets: [AtomicU64; SYNC_LATENCY_BUCKETS_US.len() + 1],
}

impl LogStats {
    fn record_sync(&self, bytes: u64, latency_us: u64) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        self.sync_latency_us_sum.fetch_add(latency_us, Ordering::Relaxed);
        let bucket = SYNC_LATENCY_BUCKETS_US.partition_point(|&bound| bound < latency_us);
        self.sync_latency_us_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// The segment holding `position` and the end of that segment's data.
    fn segment_for(&self, position: u64) -> Option<(Arc<Segment>, u64)> {
        let segments = self.segments.read().unwrap();
        let index = segments.partition_point(|s| s.base <= position).checked_sub(1)?;
        let data_end = match segments.get(index + 1) {
            Some(next) => next.base,
            None => self.committed_end.load(Ordering::Acquire),
        };
        Some((segments[index].clone(), data_end))
    }
}

/// Read access to the committed log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogReader {
    pub fn committed_end(&self) -> u64 {
        self.shared.committed_end.load(Ordering::Acquire)
    }

    /// Blocks until the committed end is past `position` or `timeout` runs
    /// out, and returns the committed end.
    pub fn wait_past(&self, position: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut guard = self.shared.commit_lock.lock().unwrap();
        loop {
            let end = self.committed_end();
            if end > position {
                return end;
            }
            let now = Instant::now();
            if now >= deadline {
                return end;
            }
            guard = self.shared.commit_signal.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Reads the record that starts at `position`. Frames longer than
    /// `TRAILER_FIRST_BYTES_MIN` have their trailer checked before the
    /// whole frame is read.
    pub fn read(&self, position: u64) -> Result<Record, ReadError> {
        let end = self.committed_end();
        if position >= end {
            return Err(ReadError::PastEnd { position, end });
        }
        let (segment, data_end) = self.shared.segment_for(position).expect("segment 0 always exists");
        let offset = segment.file_offset(position);
        let mut header = [0u8; format::RECORD_HEADER_SIZE];
        let available = (data_end - position) as usize;
        if available < header.len() {
            return Err(bad_record(&segment, position, FrameError::Truncated));
        }
        read_exact(&segment, &mut header, offset)?;
        let length = peek_record_length(&header).map_err(|reason| bad_record(&segment, position, reason))?;
        if length > available {
            return Err(bad_record(&segment, position, FrameError::Truncated));
        }
        if length > TRAILER_FIRST_BYTES_MIN {
            // A position from outside may land inside a record, where any 4
            // bytes can read as a plausible length of up to 256 MiB: look at
            // the trailer before reading (and allocating) that much.
            let mut trailer = [0u8; 4];
            read_exact(&segment, &mut trailer, offset + length as u64 - 4)?;
            if u32::from_le_bytes(trailer) as usize != length {
                return Err(bad_record(&segment, position, FrameError::TrailerMismatch));
            }
        }
        let mut frame = vec![0u8; length];
        read_exact(&segment, &mut frame, offset)?;
        let record = decode_record(&frame).map_err(|reason| bad_record(&segment, position, reason))?;
        Ok(Record::from_ref(position, record))
    }

    /// Whether the bytes at `position` are framed like a record start: a
    /// plausible length whose trailer repeats it. A position inside a
    /// record almost never is; a record whose contents were damaged still
    /// is. Nothing else is verified, so this only tells which of the two a
    /// record that failed to decode more likely was.
    pub fn is_framed_at(&self, position: u64) -> bool {
        if position >= self.committed_end() {
            return false;
        }
        let (segment, data_end) = self.shared.segment_for(position).expect("segment 0 always exists");
        let mut length = [0u8; 4];
        if data_end - position < RECORD_OVERHEAD as u64
            || segment.file.read_exact_at(&mut length, segment.file_offset(position)).is_err()
        {
            return false;
        }
        let Some(length) = peek_record_length(&length).ok().filter(|&n| n as u64 <= data_end - position) else {
            return false;
        };
        let mut trailer = [0u8; 4];
        segment.file.read_exact_at(&mut trailer, segment.file_offset(position + length as u64 - 4)).is_ok()
            && u32::from_le_bytes(trailer) as usize == length
    }

    /// Reads the record that ends at `position` (the one before it), or
    /// `None` at the start of the log.
    pub fn read_before(&self, position: u64) -> Result<Option<Record>, ReadError> {
        let end = self.committed_end();
        if position > end {
            return Err(ReadError::PastEnd { position, end });
        }
        if position == 0 {
            return Ok(None);
        }
        let (segment, _) = self.shared.segment_for(position - 1).expect("segment 0 always exists");
        let available = position - segment.base;
        let mut trailer = [0u8; 4];
        if available < RECORD_OVERHEAD as u64 {
            return Err(bad_record(&segment, position, FrameError::Truncated));
        }
        read_exact(&segment, &mut trailer, segment.file_offset(position - 4))?;
        let length = peek_record_length(&trailer).map_err(|reason| bad_record(&segment, position, reason))?;
        if length as u64 > available {
            return Err(bad_record(&segment, position, FrameError::Truncated));
        }
        let record = self.read(position - length as u64)?;
        if record.next_position() != position {
            // The trailer is damaged yet points at some other valid record.
            return Err(bad_record(&segment, position, FrameError::TrailerMismatch));
        }
        Ok(Some(record))
    }

    pub fn stats(&self) -> &LogStats {
        &self.shared.stats
    }

    /// A forward, buffered scan of the committed log from `position`.
    pub fn cursor(&self, position: u64) -> Cursor {
        Cursor {
            reader: self.clone(),
            position,
            buffer: Vec::new(),
            buffer_start: 0,
            verified: VerifiedFrames::default(),
        }
    }

    /// The segments as they are now: base position, data length, path.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let segments = self.shared.segments.read().unwrap();
        let end = self.committed_end();
        segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentInfo {
                base_position: s.base,
                end_position: segments.get(i + 1).map_or(end, |n| n.base),
                path: s.path.clone(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_position: u64,
    pub end_position: u64,
    pub path: PathBuf,
}

fn bad_record(segment: &Segment, position: u64, reason: FrameError) -> ReadError {
    ReadError::BadRecord { path: segment.path.clone(), offset: segment.file_offset(position), position, reason }
}

fn read_exact(segment: &Segment, buffer: &mut [u8], offset: u64) -> Result<(), ReadError> {
    segment.file.read_exact_at(buffer, offset).map_err(|source| ReadError::Io { path: segment.path.clone(), source })
}

/// Reads ahead in chunks so a scan costs one system call per chunk, not per record.
const CURSOR_CHUNK_BYTES: usize = 1024 * 1024;

/// A forward scan over committed records. It sees records committed after
/// it was made, so the same cursor serves catch-up and live reading.
#[derive(Debug)]
pub struct Cursor {
    reader: LogReader,
    position: u64,
    buffer: Vec<u8>,
    buffer_start: u64,
    verified: VerifiedFrames,
}

impl Cursor {
    /// The position of the next record this cursor returns.
    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// Moves the cursor; the next record read starts at `position`.
    pub fn seek(&mut self, position: u64) {
        self.position = position;
        // Only frame starts reached by walking from a verified frame count as
        // verified; a seek may land anywhere.
        self.verified.clear();
    }

    /// The next committed record and its position, or `None` at the committed end.
    pub fn next_record(&mut self) -> Result<Option<(u64, RecordRef<'_>)>, ReadError> {
        let end = self.reader.committed_end();
        if self.position >= end {
            return Ok(None);
        }
        let position = self.position;
        let buffer_end = self.buffer_start + self.buffer.len() as u64;
        let in_buffer = position >= self.buffer_start && position + 4 <= buffer_end;
        let mut length = None;
        if in_buffer {
            let at = (position - self.buffer_start) as usize;
            if let Ok(n) = peek_record_length(&self.buffer[at..]) {
                if position + n as u64 <= buffer_end {
                    length = Some(n);
                }
            }
        }
        if length.is_none() {
            length = Some(self.fill(position, end)?);
        }
        let length = length.unwrap();
        let at = (position - self.buffer_start) as usize;
        if !self.verified.contains(at) {
            // Verify this frame and the next whole ones in the buffer together.
            let mut starts = [at; FRAMES_PER_PASS];
            let mut count = 1;
            let mut next = at + length;
            while count < FRAMES_PER_PASS {
                match peek_record_length(&self.buffer[next..]) {
                    Ok(n) if next + n <= self.buffer.len() => {
                        starts[count] = next;
                        count += 1;
                        next += n;
                    }
                    _ => break,
                }
            }
            self.verified.verify(&self.buffer, &starts[..count]);
        }
        match self.verified.decode(&self.buffer, at) {
            Ok(record) => {
                debug_assert_eq!(record.length_bytes as usize, length);
                self.position = position + length as u64;
                Ok(Some((position, record)))
            }
            Err(reason) => {
                let (segment, _) = self.reader.shared.segment_for(position).unwrap();
                Err(bad_record(&segment, position, reason))
            }
        }
    }

    /// Loads the bytes from `position` on into the buffer (within one
    /// segment, up to the committed end) and returns the length of the record
    /// at `position`.
    fn fill(&mut self, position: u64, end: u64) -> Result<usize, ReadError> {
        let (segment, data_end) = self.reader.shared.segment_for(position).unwrap();
        let data_end = data_end.min(end);
        let available = (data_end - position) as usize;
        if available < RECORD_OVERHEAD {
            return Err(bad_record(&segment, position, FrameError::Truncated));
        }
        let mut header = [0u8; 4];
        read_exact(&segment, &mut header, segment.file_offset(position))?;
        let length = peek_record_length(&header).map_err(|reason| bad_record(&segment, position, reason))?;
        if length > available {
            return Err(bad_record(&segment, position, FrameError::Truncated));
        }
        let want = length.max(CURSOR_CHUNK_BYTES).min(available);
        self.buffer.resize(want, 0);
        self.verified.clear();
        if let Err(error) = read_exact(&segment, &mut self.buffer, segment.file_offset(position)) {
            // Part of the buffer may be overwritten: it no longer holds the
            // log from `buffer_start`.
            self.buffer.clear();
            return Err(error);
        }
        self.buffer_start = position;
        Ok(length)
    }
}

/// Where the next transaction's bytes go before the commit writes them.
#[derive(Debug)]
struct PendingChunk {
    /// Base of the segment the bytes belong to.
    segment_base: u64,
    /// Whether that segment has yet to be created.
    new_segment: bool,
    /// Log position of `bytes[0]`.
    position: u64,
    bytes: Vec<u8>,
    last_record_offset: usize,
}

/// The single writer of the log. Not `Clone`: there is exactly one.
#[derive(Debug)]
pub struct LogWriter {
    shared: Arc<Shared>,
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    config: LogConfig,
    active: Arc<Segment>,
    /// Log end including pending, uncommitted transactions.
    end: u64,
    pending: Vec<PendingChunk>,
    poisoned: Option<String>,
    /// The active segment's file holds written blocks (data, or zeros from
    /// [`LogWriter::preallocate_ahead`]) up to this position.
    zeroed_end: u64,
    /// A preallocation failed (a full disk, say); none is tried again in
    /// this segment.
    preallocate_failed: bool,
}

/// [`LogWriter::preallocate_ahead`] keeps this much of the active segment
/// zeroed past the end, writing at most one chunk per call so a request that
/// arrives meanwhile waits little.
pub const PREALLOCATE_AHEAD_BYTES: u64 = 1024 * 1024;
pub const PREALLOCATE_CHUNK_BYTES: u64 = 64 * 1024;

impl LogWriter {
    /// The position the next appended record will get.
    pub fn end_position(&self) -> u64 {
        self.end
    }

    pub fn committed_end(&self) -> u64 {
        self.shared.committed_end.load(Ordering::Acquire)
    }

    pub fn is_poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// How far past the end the active segment is zeroed.
    pub fn preallocated_bytes(&self) -> u64 {
        self.zeroed_end.saturating_sub(self.end)
    }

    /// Zeroes up to [`PREALLOCATE_CHUNK_BYTES`] of the active segment past
    /// the end, keeping up to [`PREALLOCATE_AHEAD_BYTES`] ready; returns
    /// whether it wrote anything. Call it when there is nothing to commit.
    ///
    /// An fdatasync after a write that grows the file must also commit the
    /// new size through the filesystem's journal; after a write over blocks
    /// already written it only flushes the data. On this project's test
    /// machine (ext4 on virtio) a 4 KiB write + fdatasync takes ~96 us p50
    /// over zeroed blocks against ~140-170 us at the end of the file.
    ///
    /// The zeros never become data: readers stop at the committed end,
    /// recovery cuts everything after the last complete transaction, and a
    /// segment is cut to its data when it is sealed or the writer is dropped.
    pub fn preallocate_ahead(&mut self) -> bool {
        if self.poisoned.is_some() || !self.pending.is_empty() || self.preallocate_failed {
            return false;
        }
        let segment_limit = self.active.base + self.config.segment_size_bytes;
        let target = (self.end + PREALLOCATE_AHEAD_BYTES).min(segment_limit);
        let from = self.zeroed_end.max(self.end);
        let len_bytes = target.saturating_sub(from).min(PREALLOCATE_CHUNK_BYTES);
        // Whole chunks only (each grows the file, which the next fdatasync
        // pays for once), or what is left of the segment.
        if len_bytes == 0 || (len_bytes < PREALLOCATE_CHUNK_BYTES && target < segment_limit) {
            return false;
        }
        match self.active.file.preallocate(self.active.file_offset(from), len_bytes) {
            Ok(()) => {
                self.zeroed_end = from + len_bytes;
                true
            }
            Err(_) => {
                // Harmless: the writes go on growing the file as they would
                // without preallocation. Any zeros already written are cut
                // off with the rest when the segment is sealed.
                self.preallocate_failed = true;
                false
            }
        }
    }

    /// [`preallocate_ahead`](Self::preallocate_ahead) once less than half
    /// of [`PREALLOCATE_AHEAD_BYTES`] is left: for a writer kept so busy it
    /// is never idle. Returns whether it wrote anything.
    pub fn top_up_preallocation(&mut self) -> bool {
        self.preallocated_bytes() < PREALLOCATE_AHEAD_BYTES / 2 && self.preallocate_ahead()
    }

    /// Stages one atomic transaction (a non-empty list of `(kind, payload)`)
    /// and returns the position of each record. Nothing is written or visible
    /// until [`LogWriter::commit`].
    pub fn append_transaction<'a>(
        &mut self,
        records: impl IntoIterator<Item = (u8, &'a [u8])> + Clone,
    ) -> Result<Vec<u64>, WriteError> {
        if let Some(cause) = &self.poisoned {
            return Err(WriteError::Poisoned { cause: cause.clone() });
        }
        let size_bytes: usize = records.clone().into_iter().map(|(_, p)| p.len() + RECORD_OVERHEAD).sum();
        let count = records.clone().into_iter().count();
        assert!(count > 0, "empty transaction");
        if records.clone().into_iter().any(|(_, p)| p.len() + RECORD_OVERHEAD > RECORD_SIZE_BYTES_MAX) {
            return Err(WriteError::TooLarge { size_bytes });
        }
        let (tail_base, tail_used) = match self.pending.last() {
            Some(chunk) if chunk.new_segment => (chunk.segment_base, self.end - chunk.segment_base),
            _ => (self.active.base, self.end - self.active.base),
        };
        let roll = tail_used > 0 && tail_used + size_bytes as u64 > self.config.segment_size_bytes;
        let need_chunk = match self.pending.last() {
            None => true,
            Some(_) => roll,
        };
        if need_chunk {
            let (segment_base, new_segment) = if roll { (self.end, true) } else { (tail_base, false) };
            self.pending.push(PendingChunk {
                segment_base,
                new_segment,
                position: self.end,
                bytes: Vec::with_capacity(size_bytes),
                last_record_offset: 0,
            });
        }
        let chunk = self.pending.last_mut().unwrap();
        let mut positions = Vec::with_capacity(count);
        for (i, (kind, payload)) in records.into_iter().enumerate() {
            let flags = if i + 1 == count { FLAG_TRANSACTION_END } else { 0 };
            let offset = chunk.bytes.len();
            positions.push(chunk.position + offset as u64);
            encode_record(&mut chunk.bytes, kind, flags, payload);
            chunk.last_record_offset = offset;
        }
        self.end = chunk.position + chunk.bytes.len() as u64;
        Ok(positions)
    }

    /// Writes and syncs everything staged, then publishes it to readers.
    /// Returns the new committed end.
    pub fn commit(&mut self) -> Result<u64, WriteError> {
        if let Some(cause) = &self.poisoned {
            return Err(WriteError::Poisoned { cause: cause.clone() });
        }
        let pending = std::mem::take(&mut self.pending);
        let mut synced_any = false;
        for mut chunk in pending {
            let last = chunk.last_record_offset;
            format::set_record_flag(&mut chunk.bytes[last..], FLAG_COMMIT_END);
            if let Err((error, path)) = self.write_chunk(&chunk) {
                return Err(self.fail(error, path, synced_any));
            }
            synced_any = true;
            let chunk_end = chunk.position + chunk.bytes.len() as u64;
            self.shared.committed_end.store(chunk_end, Ordering::Release);
        }
        debug_assert_eq!(self.committed_end(), self.end);
        let _guard = self.shared.commit_lock.lock().unwrap();
        self.shared.commit_signal.notify_all();
        Ok(self.end)
    }

    fn write_chunk(&mut self, chunk: &PendingChunk) -> Result<(), (io::Error, PathBuf)> {
        if chunk.new_segment {
            // Open reads a sealed segment's length from its file size.
            cut_to(&self.active, chunk.segment_base).map_err(|e| (e, self.active.path.clone()))?;
            let segment = create_segment(&*self.storage, &self.dir, chunk.segment_base)?;
            self.shared.segments.write().unwrap().push(segment.clone());
            self.active = segment;
            self.zeroed_end = chunk.segment_base;
            self.preallocate_failed = false;
        }
        assert_eq!(self.active.base, chunk.segment_base);
        let segment = &self.active;
        let offset = segment.file_offset(chunk.position);
        segment.file.write_all_at(&chunk.bytes, offset).map_err(|e| (e, segment.path.clone()))?;
        let chunk_end = chunk.position + chunk.bytes.len() as u64;
        self.zeroed_end = self.zeroed_end.max(chunk_end);
        let started = Instant::now();
        segment.file.sync_data().map_err(|e| (e, segment.path.clone()))?;
        self.shared.stats.record_sync(chunk.bytes.len() as u64, started.elapsed().as_micros() as u64);
        Ok(())
    }

    /// Handles a failed commit. Running out of space before anything of
    /// the batch was synced is recoverable: the unsynced bytes are cut off
    /// and the writer goes on. Everything else poisons the writer.
    fn fail(&mut self, error: io::Error, path: PathBuf, synced_any: bool) -> WriteError {
        let committed = self.committed_end();
        self.end = committed;
        if error.raw_os_error() == Some(28) && !synced_any && self.rollback_to(committed).is_ok() {
            return WriteError::NoSpace;
        }
        let cause = format!("{} on {}", error, path.display());
        self.poisoned = Some(cause.clone());
        WriteError::Poisoned { cause }
    }

    /// Removes everything past `position` (which must be the committed end).
    fn rollback_to(&mut self, position: u64) -> io::Result<()> {
        let mut segments = self.shared.segments.write().unwrap();
        while segments.len() > 1 && segments.last().unwrap().base >= position && position > 0 {
            let segment = segments.pop().unwrap();
            self.storage.remove_file(&segment.path)?;
            self.storage.sync_dir(&self.dir)?;
        }
        let last = segments.last().unwrap().clone();
        drop(segments);
        last.file.set_len(last.file_offset(position))?;
        last.file.sync_data()?;
        self.active = last;
        self.zeroed_end = position;
        Ok(())
    }
}

impl Drop for LogWriter {
    /// A clean close leaves the active segment as long as its data, as
    /// recovery would; a poisoned writer leaves the files to recovery.
    fn drop(&mut self) {
        if self.poisoned.is_none() {
            let _ = cut_to(&self.active, self.committed_end());
        }
    }
}

/// Cuts off anything in `segment`'s file past `end` (zeros preallocated
/// ahead of the data) and makes the new length durable.
fn cut_to(segment: &Segment, end: u64) -> io::Result<()> {
    let len_bytes = segment.file_offset(end);
    if segment.file.len()? > len_bytes {
        segment.file.set_len(len_bytes)?;
        segment.file.sync_data()?;
    }
    Ok(())
}

fn create_segment(storage: &dyn Storage, dir: &Path, base: u64) -> Result<Arc<Segment>, (io::Error, PathBuf)> {
    let path = segment_path(dir, base);
    let attempt = || -> io::Result<Arc<dyn StorageFile>> {
        let file = storage.create_new(&path)?;
        file.write_all_at(&encode_segment_header(base), 0)?;
        file.sync_data()?;
        storage.sync_dir(dir)?;
        Ok(file)
    };
    match attempt() {
        Ok(file) => Ok(Arc::new(Segment { base, path, file })),
        Err(error) => {
            // A half-made segment would confuse recovery; the name is ours alone.
            let _ = storage.remove_file(&path);
            let _ = storage.sync_dir(dir);
            Err((error, path))
        }
    }
}

/// Opens (creating if needed) the log in `dir` and recovers its tail.
///
/// `scan_from` is a record boundary up to which the log is already known to
/// be good (the index checkpoint); the tail scan starts there when it lies in
/// the last segment. A log ending before it has lost acknowledged data.
pub fn open(
    storage: Arc<dyn Storage>,
    dir: &Path,
    config: LogConfig,
    scan_from: u64,
) -> Result<(LogWriter, LogReader, Recovery), OpenError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OpenError::Io { path, source }
    };
    storage.create_dir_all(dir).map_err(io_error(dir))?;
    let mut bases: Vec<u64> =
        storage.list_dir(dir).map_err(io_error(dir))?.iter().filter_map(|n| parse_segment_name(n)).collect();
    bases.sort_unstable();

    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    let mut data_lengths = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base);
        let is_last = i + 1 == bases.len();
        let file = storage.open(&path, is_last).map_err(io_error(&path))?;
        let file_len = file.len().map_err(io_error(&path))?;
        let mut header = [0u8; SEGMENT_HEADER_SIZE as usize];
        let header_read = file_len >= SEGMENT_HEADER_SIZE && file.read_exact_at(&mut header, 0).is_ok();
        let unwritten_header = !header_read || header.iter().all(|&b| b == 0);
        if is_last && file_len <= SEGMENT_HEADER_SIZE && unwritten_header {
            // A crash while the segment was being created: it never held data
            // (the header is synced before any data goes in, so a longer file
            // with no header is damage, not this).
            storage.remove_file(&path).map_err(io_error(&path))?;
            storage.sync_dir(dir).map_err(io_error(dir))?;
            // The previous segment, opened read-only as a sealed one, is the
            // last one now and takes the appends. With none, segment 0 is
            // made afresh below.
            if let Some(previous) = segments.pop() {
                let file = storage.open(&previous.path, true).map_err(io_error(&previous.path))?;
                segments.push(Arc::new(Segment { base: previous.base, path: previous.path.clone(), file }));
            }
            break;
        }
        if !header_read {
            let reason = format::SegmentHeaderError::BadMagic;
            return Err(OpenError::BadSegmentHeader { path, reason });
        }
        let found = decode_segment_header(&header)
            .map_err(|reason| OpenError::BadSegmentHeader { path: path.clone(), reason })?;
        if found != base {
            return Err(OpenError::SegmentNameMismatch { path, named: base, found });
        }
        if let Some(previous) = segments.last() {
            let expected = previous.base + data_lengths.last().copied().unwrap_or(0);
            if base != expected {
                let previous = previous.path.clone();
                return Err(OpenError::SegmentGap { path, previous, expected, found: base });
            }
        }
        data_lengths.push(file_len - SEGMENT_HEADER_SIZE);
        segments.push(Arc::new(Segment { base, path, file }));
    }
    if segments.is_empty() {
        let segment = create_segment(&*storage, dir, 0).map_err(|(source, path)| OpenError::Io { path, source })?;
        segments.push(segment);
        data_lengths.push(0);
    }

    let last = segments.last().unwrap().clone();
    let last_data_len = *data_lengths.last().unwrap();
    let file_end = last.base + last_data_len;
    if scan_from > file_end {
        return Err(OpenError::LogBehindIndex { covered: scan_from, end: file_end, path: last.path.clone() });
    }
    let mut scanned_from = scan_from.max(last.base);
    if scanned_from > last.base && !record_ends_at(&last, scanned_from) {
        // No record ends where the index says it covers to. Zeros
        // preallocated past the data make the file look longer than the
        // data, so the size check above cannot tell: find the data's end by
        // scanning the whole segment.
        scanned_from = last.base;
    }
    let tail = scan_tail(&last, scanned_from, file_end)?;
    if tail.valid_end < scan_from {
        return Err(OpenError::LogBehindIndex { covered: scan_from, end: tail.valid_end, path: last.path.clone() });
    }
    if tail.valid_end < file_end {
        last.file.set_len(last.file_offset(tail.valid_end)).map_err(io_error(&last.path))?;
        last.file.sync_data().map_err(io_error(&last.path))?;
    }
    let recovery = Recovery {
        end_position: tail.valid_end,
        truncated_bytes: file_end - tail.valid_end,
        scanned_from,
        segment_count: segments.len(),
    };
    let shared = Arc::new(Shared {
        segments: RwLock::new(segments),
        committed_end: AtomicU64::new(tail.valid_end),
        commit_lock: Mutex::new(()),
        commit_signal: Condvar::new(),
        stats: LogStats::default(),
    });
    let writer = LogWriter {
        shared: shared.clone(),
        storage,
        dir: dir.to_path_buf(),
        config,
        active: last,
        end: tail.valid_end,
        pending: Vec::new(),
        poisoned: None,
        zeroed_end: tail.valid_end,
        preallocate_failed: false,
    };
    Ok((writer, LogReader { shared }, recovery))
}

/// Whether a whole, valid record ends exactly at `position` in `segment`
/// (read backwards from its trailing length, as `read_before` does).
fn record_ends_at(segment: &Segment, position: u64) -> bool {
    let Some(room) = position.checked_sub(segment.base) else { return false };
    if room < RECORD_OVERHEAD as u64 {
        return false;
    }
    let mut trailer = [0u8; 4];
    if segment.file.read_exact_at(&mut trailer, segment.file_offset(position - 4)).is_err() {
        return false;
    }
    let Some(length) = peek_record_length(&trailer).ok().map(|n| n as u64).filter(|&n| n <= room) else {
        return false;
    };
    let mut frame = vec![0u8; length as usize];
    segment.file.read_exact_at(&mut frame, segment.file_offset(position - length)).is_ok()
        && decode_record(&frame).is_ok_and(|record| u64::from(record.length_bytes) == length)
}

struct TailScan {
    /// End of the last complete transaction.
    valid_end: u64,
}

/// Reads a segment's bytes from `from` to `end` as one buffer. Segments are
/// bounded (`segment_size_bytes`), and only the last segment's tail is read
/// at open.
fn read_span(segment: &Segment, from: u64, end: u64) -> Result<Vec<u8>, OpenError> {
    let mut bytes = vec![0u8; (end - from) as usize];
    segment
        .file
        .read_exact_at(&mut bytes, segment.file_offset(from))
        .map_err(|source| OpenError::Io { path: segment.path.clone(), source })?;
    Ok(bytes)
}

fn scan_tail(segment: &Segment, from: u64, end: u64) -> Result<TailScan, OpenError> {
    let bytes = read_span(segment, from, end)?;
    let mut at = 0usize;
    let mut valid_end = from;
    while at < bytes.len() {
        match decode_record(&bytes[at..]) {
            Ok(record) => {
                at += record.length_bytes as usize;
                if record.is_transaction_end() {
                    valid_end = from + at as u64;
                }
            }
            Err(reason) => {
                check_torn(segment, &bytes, at, from, reason)?;
                break;
            }
        }
    }
    Ok(TailScan { valid_end })
}

/// Bytes at `bad` do not decode. That is a torn final write unless a later,
/// synced write exists after it: a valid commit-end record followed by any
/// further valid record means the damaged write had been synced.
fn check_torn(segment: &Segment, bytes: &[u8], bad: usize, from: u64, reason: FrameError) -> Result<(), OpenError> {
    let mut at = bad + 1;
    let mut commit_end_seen = false;
    while at + RECORD_OVERHEAD <= bytes.len() {
        match decode_record(&bytes[at..]) {
            Ok(record) => {
                if commit_end_seen {
                    let position = from + bad as u64;
                    return Err(OpenError::Corruption {
                        path: segment.path.clone(),
                        offset: segment.file_offset(position),
                        position,
                        reason,
                    });
                }
                commit_end_seen = record.is_commit_end();
                at += record.length_bytes as usize;
            }
            Err(_) => at += 1,
        }
    }
    Ok(())
}

/// Verifies every record of one segment, calling `on_record` for each and
/// returning the first damage found. Used by `stele verify`.
pub fn scan_segment(
    reader: &LogReader,
    segment: &SegmentInfo,
    mut on_record: impl FnMut(u64, RecordRef<'_>),
) -> Result<(), ReadError> {
    let mut cursor = reader.cursor(segment.base_position);
    while cursor.position() < segment.end_position {
        match cursor.next_record()? {
            Some((position, record)) => on_record(position, record),
            None => break,
        }
    }
    Ok(())
}

/// Reads per call of [`LogReader::read_many`] at most this far ahead in one
/// system call when the next wanted records lie close together.
const READ_MANY_WINDOW_BYTES: u64 = 256 * 1024;

impl LogReader {
    /// Reads the records at `positions` (ascending), calling `f` for each.
    /// Nearby records share one read, so a stream whose events sit close
    /// together in the log costs a few system calls, not one per event.
    pub fn read_many<E: From<ReadError>>(
        &self,
        positions: &[u64],
        f: impl FnMut(u64, RecordRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        debug_assert!(positions.windows(2).all(|w| w[0] < w[1]));
        // A window is larger than malloc's mmap threshold: a fresh buffer per
        // call would cost an mmap, page faults and an munmap every read. Reuse
        // this thread's, unless a callback is reading re-entrantly.
        thread_local! {
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffer) => self.read_many_with(positions, &mut buffer, f),
            Err(_) => self.read_many_with(positions, &mut Vec::new(), f),
        })
    }

    fn read_many_with<E: From<ReadError>>(
        &self,
        positions: &[u64],
        buffer: &mut Vec<u8>,
        mut f: impl FnMut(u64, RecordRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let end = self.committed_end();
        // `buffer[..valid]` holds the log from `buffer_start`. The buffer only
        // grows, so refilling it does not zero it again every call.
        let mut valid = 0usize;
        let mut buffer_start = 0u64;
        // The segment of the previous position: most runs stay in one.
        let mut current: Option<(Arc<Segment>, u64)> = None;
        let mut verified = VerifiedFrames::default();
        for (i, &position) in positions.iter().enumerate() {
            if position >= end {
                return Err(ReadError::PastEnd { position, end }.into());
            }
            let (segment, data_end) = match current.take() {
                Some((segment, data_end)) if segment.base <= position && position < data_end => (segment, data_end),
                _ => {
                    let (segment, data_end) = self.shared.segment_for(position).expect("segment 0 always exists");
                    (segment, data_end.min(end))
                }
            };
            let buffer_end = buffer_start + valid as u64;
            let mut frame_in_buffer = position >= buffer_start && position + 4 <= buffer_end && {
                let at = (position - buffer_start) as usize;
                peek_record_length(&buffer[at..]).is_ok_and(|n| position + n as u64 <= buffer_end)
            };
            if !frame_in_buffer {
                // Reach as far as the following wanted records that are close.
                let reach = positions[i..]
                    .iter()
                    .take_while(|&&p| p < data_end && p - position < READ_MANY_WINDOW_BYTES)
                    .last()
                    .copied()
                    .unwrap_or(position);
                let want_end = (reach + 4096).min(data_end);
                valid = (want_end - position) as usize;
                verified.clear();
                if buffer.len() < valid {
                    buffer.resize(valid, 0);
                }
                read_exact(&segment, &mut buffer[..valid], segment.file_offset(position))?;
                buffer_start = position;
                let length =
                    peek_record_length(&buffer[..valid]).map_err(|reason| bad_record(&segment, position, reason))?;
                if length > valid {
                    if position + length as u64 > data_end {
                        return Err(bad_record(&segment, position, FrameError::Truncated).into());
                    }
                    valid = length;
                    if buffer.len() < valid {
                        buffer.resize(valid, 0);
                    }
                    read_exact(&segment, &mut buffer[..valid], segment.file_offset(position))?;
                }
                frame_in_buffer = true;
            }
            debug_assert!(frame_in_buffer);
            let at = (position - buffer_start) as usize;
            if !verified.contains(at) {
                // Verify this frame and the next wanted ones in the buffer together.
                let mut starts = [at; FRAMES_PER_PASS];
                let mut count = 0;
                for &next in positions[i..].iter().take(FRAMES_PER_PASS) {
                    if next >= buffer_start + valid as u64 {
                        break;
                    }
                    starts[count] = (next - buffer_start) as usize;
                    count += 1;
                }
                verified.verify(&buffer[..valid], &starts[..count]);
            }
            let record =
                verified.decode(&buffer[..valid], at).map_err(|reason| bad_record(&segment, position, reason))?;
            f(position, record)?;
            current = Some((segment, data_end));
        }
        Ok(())
    }
}
