//! The stream index: `(stream hash, revision) -> log position`.
//!
//! Recent entries live in a memtable; older ones in immutable sorted table
//! files. Each table records the log range `[covers_start, covers_end)` it
//! indexes, so the highest `covers_end` is the checkpoint: on open only the
//! log after it is replayed. Lookups never trust an entry alone: the store
//! reads the record it points at and checks stream and revision.
//!
//! Table file layout (little-endian):
//!
//! ```text
//! offset size field
//!      0    8 magic           b"STELEIDX"
//!      8    2 format_version  TABLE_FORMAT_VERSION
//!     10    6 reserved        zero
//!     16    8 entry_count
//!     24    8 covers_start    log position
//!     32    8 covers_end      log position
//!     40    4 entries_crc32c  over all entry bytes
//!     44   16 reserved        zero
//!     60    4 header_crc32c   over [0, 60)
//!     64    . entries, ENTRY_BYTES each: hash u64, revision u64, position u64,
//!             sorted by (hash, revision, position)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use stele_log::{Storage, StorageFile};

use crate::error::IndexError;
use crate::fast_hash::FastMap;

const TABLE_MAGIC: [u8; 8] = *b"STELEIDX";
const TABLE_FORMAT_VERSION: u16 = 1;
const TABLE_HEADER_BYTES: u64 = 64;
const ENTRY_BYTES: usize = 24;
/// Entries per block: a lookup reads one block (6 KiB) per table after a
/// binary search of the in-memory summary (one key per block).
const BLOCK_ENTRIES: usize = 256;
/// More tables than this are merged into one, bounding lookup cost.
const TABLES_MAX: usize = 6;
const IO_CHUNK_ENTRIES: usize = 43_690; // about 1 MiB

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub hash: u64,
    pub revision: u64,
    pub position: u64,
}

impl Entry {
    fn encode(&self, buffer: &mut Vec<u8>) {
        buffer.extend_from_slice(&self.hash.to_le_bytes());
        buffer.extend_from_slice(&self.revision.to_le_bytes());
        buffer.extend_from_slice(&self.position.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Self {
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        Self { hash: word(0), revision: word(1), position: word(2) }
    }
}

#[derive(Debug, Default)]
struct Memtable {
    streams: FastMap<u64, Vec<(u64, u64)>>,
    count: usize,
}

impl Memtable {
    fn range(&self, hash: u64, low: u64, high: u64, found: &mut Vec<(u64, u64)>) {
        if let Some(entries) = self.streams.get(&hash) {
            found.extend(entries.iter().copied().filter(|(revision, _)| (low..=high).contains(revision)));
        }
    }

    fn last(&self, hash: u64) -> Option<(u64, u64)> {
        self.streams.get(&hash).and_then(|entries| entries.iter().max().copied())
    }

    fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.streams
            .iter()
            .flat_map(|(&hash, list)| list.iter().map(move |&(revision, position)| Entry { hash, revision, position }))
    }
}

/// A memtable taken out of service to be written as a table by a
/// background thread; lookups consult it until its table is in place.
#[derive(Debug)]
struct Frozen {
    memtable: Memtable,
    covers_end: u64,
}

#[derive(Debug)]
struct Table {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    entry_count: u64,
    covers_start: u64,
    covers_end: u64,
    /// The first `(hash, revision)` of each block.
    summary: Vec<(u64, u64)>,
}

#[derive(Debug)]
pub struct Index {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    memtable: RwLock<Memtable>,
    /// At most one memtable waiting to be written (see `freeze`).
    frozen: RwLock<Option<Arc<Frozen>>>,
    /// Oldest first. Replaced whole (copy on write) by flush and merge.
    tables: RwLock<Arc<Vec<Arc<Table>>>>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io { path: path.to_path_buf(), source }
}

fn table_name(covers_start: u64, covers_end: u64) -> String {
    format!("{covers_start:020}-{covers_end:020}.idx")
}

impl Index {
    pub fn open(storage: Arc<dyn Storage>, dir: &Path) -> Result<Self, IndexError> {
        storage.create_dir_all(dir).map_err(io_error(dir))?;
        let mut tables = Vec::new();
        for name in storage.list_dir(dir).map_err(io_error(dir))? {
            let path = dir.join(&name);
            if name.ends_with(".tmp") {
                // A flush or merge that did not finish; its inputs are intact.
                storage.remove_file(&path).map_err(io_error(&path))?;
            } else if name.ends_with(".idx") {
                tables.push(Arc::new(load_table(&*storage, path)?));
            }
        }
        // A merge that crashed after its rename but before removing its
        // inputs leaves tables inside the merged one's range: drop those.
        tables.sort_by_key(|t| (t.covers_start, std::cmp::Reverse(t.covers_end)));
        let mut kept: Vec<Arc<Table>> = Vec::new();
        for table in tables {
            match kept.last() {
                Some(last) if table.covers_end <= last.covers_end => {
                    storage.remove_file(&table.path).map_err(io_error(&table.path))?;
                }
                Some(last) if table.covers_start != last.covers_end => {
                    let reason = format!(
                        "covers log from {} but the previous table ends at {}",
                        table.covers_start, last.covers_end
                    );
                    return Err(IndexError::Corrupt { path: table.path.clone(), reason });
                }
                _ => kept.push(table),
            }
        }
        storage.sync_dir(dir).map_err(io_error(dir))?;
        Ok(Self {
            storage,
            dir: dir.to_path_buf(),
            memtable: RwLock::new(Memtable::default()),
            frozen: RwLock::new(None),
            tables: RwLock::new(Arc::new(kept)),
        })
    }

    /// The log position up to which the table files cover the log.
    pub fn checkpoint(&self) -> u64 {
        self.tables.read().unwrap().last().map_or(0, |t| t.covers_end)
    }

    pub fn table_count(&self) -> usize {
        self.tables.read().unwrap().len()
    }

    pub fn memtable_len(&self) -> usize {
        self.memtable.read().unwrap().count
    }

    pub fn insert(&self, entries: impl IntoIterator<Item = Entry>) {
        let mut memtable = self.memtable.write().unwrap();
        for entry in entries {
            memtable.streams.entry(entry.hash).or_default().push((entry.revision, entry.position));
            memtable.count += 1;
        }
    }

    /// Entries of `hash` with revision in `[low, high]`, sorted, without duplicates.
    pub fn range(&self, hash: u64, low: u64, high: u64) -> Result<Vec<(u64, u64)>, IndexError> {
        // Memtable, then the frozen one, then tables: entries move only in
        // that direction, each step adding to the next place before it
        // leaves the previous one, so this order never misses an entry.
        let mut found = Vec::new();
        self.memtable.read().unwrap().range(hash, low, high, &mut found);
        if let Some(frozen) = self.frozen() {
            frozen.memtable.range(hash, low, high, &mut found);
        }
        let tables = self.tables.read().unwrap().clone();
        for table in tables.iter() {
            table.range(hash, low, high, &mut found)?;
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// The highest `(revision, position)` of `hash`.
    pub fn last(&self, hash: u64) -> Result<Option<(u64, u64)>, IndexError> {
        let mut best = self.memtable.read().unwrap().last(hash);
        if let Some(frozen) = self.frozen() {
            best = best.max(frozen.memtable.last(hash));
        }
        let tables = self.tables.read().unwrap().clone();
        for table in tables.iter() {
            best = best.max(table.last(hash)?);
        }
        Ok(best)
    }

    fn frozen(&self) -> Option<Arc<Frozen>> {
        self.frozen.read().unwrap().clone()
    }

    /// Whether a frozen memtable is waiting to be written.
    pub fn has_frozen(&self) -> bool {
        self.frozen.read().unwrap().is_some()
    }

    /// Takes the memtable out of service, to be written by `write_frozen`
    /// (on another thread) while new entries go to a fresh one. `covers_end`
    /// is the committed log end the memtable indexes up to. Returns false,
    /// doing nothing, while an earlier frozen memtable is still unwritten.
    pub fn freeze(&self, covers_end: u64) -> bool {
        let mut memtable = self.memtable.write().unwrap();
        let mut frozen = self.frozen.write().unwrap();
        if frozen.is_some() {
            return false;
        }
        // Installed before the memtable lock is released: a reader that
        // finds the new, empty memtable finds this one next.
        *frozen = Some(Arc::new(Frozen { memtable: std::mem::take(&mut *memtable), covers_end }));
        true
    }

    /// Writes the frozen memtable as a table and retires it. On failure it
    /// stays frozen (and consulted), and a later call tries again.
    pub fn write_frozen(&self) -> Result<(), IndexError> {
        let Some(frozen) = self.frozen() else { return Ok(()) };
        let mut entries: Vec<Entry> = frozen.memtable.entries().collect();
        entries.sort_unstable();
        let covers_start = self.checkpoint();
        assert!(covers_start <= frozen.covers_end);
        let written =
            write_table(&*self.storage, &self.dir, covers_start, frozen.covers_end, &mut entries.into_iter())?;
        let table = written.install(&*self.storage, &self.dir)?;
        {
            let mut tables = self.tables.write().unwrap();
            let mut list = Vec::clone(&tables);
            list.push(Arc::new(table));
            *tables = Arc::new(list);
        }
        *self.frozen.write().unwrap() = None;
        Ok(())
    }

    /// Writes everything in memory out as tables, the index then covering
    /// the log up to `covers_end` (a committed transaction boundary): the
    /// frozen memtable if one is waiting, then the memtable.
    pub fn flush(&self, covers_end: u64) -> Result<(), IndexError> {
        self.write_frozen()?;
        if self.freeze(covers_end) {
            self.write_frozen()?;
        }
        Ok(())
    }

    /// Whether lookups now touch enough tables that they should be merged.
    pub fn needs_merge(&self) -> bool {
        self.table_count() > TABLES_MAX
    }

    /// Merges the newest tables into one. Meant for a background thread:
    /// flushes may add tables meanwhile, and readers keep using the old
    /// tables until the merged one replaces them in one step. Only one
    /// merge may run at a time (the writer makes sure of it).
    ///
    /// Which tables: the newest two, then each older neighbour while it
    /// holds at most twice the entries gathered so far. Tables of like size
    /// merge and a large old one waits until the newer ones add up to half
    /// of it, so an entry is rewritten a logarithmic number of times rather
    /// than at every merge.
    pub fn merge(&self) -> Result<(), IndexError> {
        let tables_now = self.tables.read().unwrap().clone();
        let start = merge_start(&tables_now.iter().map(|t| t.entry_count).collect::<Vec<_>>());
        let Some(start) = start else { return Ok(()) };
        let inputs = &tables_now[start..];
        let (first, last) = (&inputs[0], &inputs[inputs.len() - 1]);
        let iters = inputs.iter().map(|table| TableIter::new(table.clone())).collect();
        let mut merged = MergeIter { iters, heads: Vec::new(), started: false };
        let written = write_table(&*self.storage, &self.dir, first.covers_start, last.covers_end, &mut merged)?;
        // An input that failed to read ended the merge early: the table is
        // short and must never get its real name (an open would trust it
        // and drop the inputs it covers).
        if let Some(error) = merged.iters.iter_mut().find_map(|i| i.error.take()) {
            written.discard(&*self.storage);
            return Err(error);
        }
        let table = written.install(&*self.storage, &self.dir)?;
        {
            let mut tables = self.tables.write().unwrap();
            // Only flushes ran meanwhile, and they add tables after the inputs.
            let end = tables_now.len();
            assert!(tables.len() >= end && tables.iter().zip(tables_now.iter()).all(|(a, b)| Arc::ptr_eq(a, b)));
            let mut list: Vec<Arc<Table>> = tables[..start].to_vec();
            list.push(Arc::new(table));
            list.extend(tables[end..].iter().cloned());
            *tables = Arc::new(list);
        }
        for table in inputs.iter() {
            self.storage.remove_file(&table.path).map_err(io_error(&table.path))?;
        }
        self.storage.sync_dir(&self.dir).map_err(io_error(&self.dir))
    }

    /// Calls `f` with every entry in `(hash, revision, position)` order.
    pub fn for_each(&self, mut f: impl FnMut(Entry)) -> Result<(), IndexError> {
        let mut all: Vec<Entry> = self.memtable.read().unwrap().entries().collect();
        if let Some(frozen) = self.frozen() {
            all.extend(frozen.memtable.entries());
        }
        let tables = self.tables.read().unwrap().clone();
        for table in tables.iter() {
            let mut iter = TableIter::new(table.clone());
            all.extend(&mut iter);
            if let Some(error) = iter.error {
                return Err(error);
            }
        }
        all.sort_unstable();
        all.dedup();
        all.into_iter().for_each(&mut f);
        Ok(())
    }
}

impl Table {
    fn block_count(&self) -> usize {
        self.summary.len()
    }

    fn read_block(&self, block: usize) -> Result<Vec<Entry>, IndexError> {
        let first = block * BLOCK_ENTRIES;
        let count = (self.entry_count as usize - first).min(BLOCK_ENTRIES);
        let mut bytes = vec![0u8; count * ENTRY_BYTES];
        let offset = TABLE_HEADER_BYTES + (first * ENTRY_BYTES) as u64;
        self.file.read_exact_at(&mut bytes, offset).map_err(io_error(&self.path))?;
        Ok(bytes.chunks_exact(ENTRY_BYTES).map(Entry::decode).collect())
    }

    fn range(&self, hash: u64, low: u64, high: u64, found: &mut Vec<(u64, u64)>) -> Result<(), IndexError> {
        let start = self.summary.partition_point(|&key| key < (hash, low)).saturating_sub(1);
        for block in start..self.block_count() {
            if self.summary[block] > (hash, high) {
                break;
            }
            for entry in self.read_block(block)? {
                if (entry.hash, entry.revision) > (hash, high) {
                    return Ok(());
                }
                if entry.hash == hash && entry.revision >= low {
                    found.push((entry.revision, entry.position));
                }
            }
        }
        Ok(())
    }

    fn last(&self, hash: u64) -> Result<Option<(u64, u64)>, IndexError> {
        let Some(block) = self.summary.partition_point(|&key| key <= (hash, u64::MAX)).checked_sub(1) else {
            return Ok(None);
        };
        Ok(self.read_block(block)?.into_iter().filter(|e| e.hash == hash).map(|e| (e.revision, e.position)).max())
    }
}

fn encode_header(entry_count: u64, covers_start: u64, covers_end: u64, entries_crc: u32) -> [u8; 64] {
    let mut header = [0u8; TABLE_HEADER_BYTES as usize];
    header[0..8].copy_from_slice(&TABLE_MAGIC);
    header[8..10].copy_from_slice(&TABLE_FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&entry_count.to_le_bytes());
    header[24..32].copy_from_slice(&covers_start.to_le_bytes());
    header[32..40].copy_from_slice(&covers_end.to_le_bytes());
    header[40..44].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..60]);
    header[60..64].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Writes entries (already sorted) as `<name>.tmp`, syncs it, and returns
/// it for [`WrittenTable::install`]. On failure the temporary file is removed, so a retry of
/// the same range (same name) can start afresh.
fn write_table(
    storage: &dyn Storage,
    dir: &Path,
    covers_start: u64,
    covers_end: u64,
    entries: &mut dyn Iterator<Item = Entry>,
) -> Result<WrittenTable, IndexError> {
    let name = table_name(covers_start, covers_end);
    let temp_path = dir.join(format!("{name}.tmp"));
    // Left by an earlier attempt that could not remove it.
    let _ = storage.remove_file(&temp_path);
    let file = storage.create_new(&temp_path).map_err(io_error(&temp_path))?;
    let written = write_entries(&*file, &temp_path, entries);
    match written {
        Ok((count, crc, summary)) => {
            let header = encode_header(count, covers_start, covers_end, crc);
            let synced = file.write_all_at(&header, 0).and_then(|()| file.sync_data());
            if let Err(error) = synced {
                let _ = storage.remove_file(&temp_path);
                return Err(io_error(&temp_path)(error));
            }
            let table = Table { path: dir.join(&name), file, entry_count: count, covers_start, covers_end, summary };
            Ok(WrittenTable { temp_path, table })
        }
        Err(error) => {
            let _ = storage.remove_file(&temp_path);
            Err(error)
        }
    }
}

/// A table written and synced under its temporary name.
struct WrittenTable {
    temp_path: PathBuf,
    table: Table,
}

impl WrittenTable {
    /// Gives the table its real name, durably. Only now can an open see it.
    fn install(self, storage: &dyn Storage, dir: &Path) -> Result<Table, IndexError> {
        if let Err(error) = storage.rename(&self.temp_path, &self.table.path) {
            let _ = storage.remove_file(&self.temp_path);
            return Err(io_error(&self.table.path)(error));
        }
        storage.sync_dir(dir).map_err(io_error(dir))?;
        Ok(self.table)
    }

    fn discard(self, storage: &dyn Storage) {
        let _ = storage.remove_file(&self.temp_path);
    }
}

/// What `write_entries` wrote: the entry count, the checksum of the
/// entries and the block summary.
type EntriesWritten = (u64, u32, Vec<(u64, u64)>);

/// Streams sorted entries into `file` after the header.
fn write_entries(
    file: &dyn StorageFile,
    path: &Path,
    entries: &mut dyn Iterator<Item = Entry>,
) -> Result<EntriesWritten, IndexError> {
    let mut crc = 0u32;
    let mut count = 0u64;
    let mut summary = Vec::new();
    let mut previous: Option<Entry> = None;
    let mut buffer = Vec::with_capacity(IO_CHUNK_ENTRIES * ENTRY_BYTES);
    let mut offset = TABLE_HEADER_BYTES;
    loop {
        let entry = entries.next();
        if let Some(entry) = entry {
            assert!(previous.is_none_or(|p| p <= entry), "index entries must arrive sorted");
            previous = Some(entry);
            if count.is_multiple_of(BLOCK_ENTRIES as u64) {
                summary.push((entry.hash, entry.revision));
            }
            entry.encode(&mut buffer);
            count += 1;
        }
        if buffer.len() >= IO_CHUNK_ENTRIES * ENTRY_BYTES || (entry.is_none() && !buffer.is_empty()) {
            crc = crc32c::crc32c_append(crc, &buffer);
            file.write_all_at(&buffer, offset).map_err(io_error(path))?;
            offset += buffer.len() as u64;
            buffer.clear();
        }
        if entry.is_none() {
            return Ok((count, crc, summary));
        }
    }
}

/// Opens a table, verifying its header, checksum and order, and builds the
/// block summary.
fn load_table(storage: &dyn Storage, path: PathBuf) -> Result<Table, IndexError> {
    let corrupt = |reason: String| IndexError::Corrupt { path: path.clone(), reason };
    let file = storage.open(&path, false).map_err(io_error(&path))?;
    let mut header = [0u8; TABLE_HEADER_BYTES as usize];
    file.read_exact_at(&mut header, 0).map_err(|_| corrupt("header is cut short".into()))?;
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
    if header[0..8] != TABLE_MAGIC {
        return Err(corrupt("bad magic".into()));
    }
    if crc32c::crc32c(&header[0..60]) != u32::from_le_bytes(header[60..64].try_into().unwrap()) {
        return Err(corrupt("header checksum mismatch".into()));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != TABLE_FORMAT_VERSION {
        return Err(corrupt(format!("unknown format version {version}")));
    }
    let (entry_count, covers_start, covers_end) = (word(16), word(24), word(32));
    let entries_crc = u32::from_le_bytes(header[40..44].try_into().unwrap());
    let file_len = file.len().map_err(io_error(&path))?;
    if file_len != TABLE_HEADER_BYTES + entry_count * ENTRY_BYTES as u64 {
        return Err(corrupt(format!("{file_len} bytes long, but the header says {entry_count} entries")));
    }
    let mut table = Table { path: path.clone(), file, entry_count, covers_start, covers_end, summary: Vec::new() };
    let mut crc = 0u32;
    let mut previous: Option<Entry> = None;
    let mut index = 0u64;
    let mut chunk = vec![0u8; IO_CHUNK_ENTRIES * ENTRY_BYTES];
    while index < entry_count {
        let n = ((entry_count - index) as usize).min(IO_CHUNK_ENTRIES);
        let bytes = &mut chunk[..n * ENTRY_BYTES];
        table.file.read_exact_at(bytes, TABLE_HEADER_BYTES + index * ENTRY_BYTES as u64).map_err(io_error(&path))?;
        crc = crc32c::crc32c_append(crc, bytes);
        for raw in bytes.chunks_exact(ENTRY_BYTES) {
            let entry = Entry::decode(raw);
            if previous.is_some_and(|p| p > entry) {
                return Err(corrupt(format!("entry {index} is out of order")));
            }
            if index.is_multiple_of(BLOCK_ENTRIES as u64) {
                table.summary.push((entry.hash, entry.revision));
            }
            previous = Some(entry);
            index += 1;
        }
    }
    if crc != entries_crc {
        return Err(corrupt("entries checksum mismatch".into()));
    }
    Ok(table)
}

/// Reads a table's entries in order, in chunks. An I/O error ends the
/// iteration and is kept in `error`.
struct TableIter {
    table: Arc<Table>,
    next: u64,
    buffered: std::vec::IntoIter<Entry>,
    error: Option<IndexError>,
}

impl TableIter {
    fn new(table: Arc<Table>) -> Self {
        Self { table, next: 0, buffered: Vec::new().into_iter(), error: None }
    }
}

impl Iterator for TableIter {
    type Item = Entry;
    fn next(&mut self) -> Option<Entry> {
        if let Some(entry) = self.buffered.next() {
            return Some(entry);
        }
        if self.next >= self.table.entry_count || self.error.is_some() {
            return None;
        }
        let n = ((self.table.entry_count - self.next) as usize).min(IO_CHUNK_ENTRIES);
        let mut bytes = vec![0u8; n * ENTRY_BYTES];
        let offset = TABLE_HEADER_BYTES + self.next * ENTRY_BYTES as u64;
        if let Err(error) = self.table.file.read_exact_at(&mut bytes, offset) {
            self.error = Some(IndexError::Io { path: self.table.path.clone(), source: error });
            return None;
        }
        self.next += n as u64;
        self.buffered = bytes.chunks_exact(ENTRY_BYTES).map(Entry::decode).collect::<Vec<_>>().into_iter();
        self.buffered.next()
    }
}

/// The first of the newest tables to merge, given each table's entry
/// count oldest first (see `Index::merge`); `None` for fewer than two.
fn merge_start(entry_counts: &[u64]) -> Option<usize> {
    let mut start = entry_counts.len().checked_sub(2)?;
    let mut gathered: u64 = entry_counts[start..].iter().sum();
    while start > 0 && entry_counts[start - 1] <= gathered.saturating_mul(2) {
        start -= 1;
        gathered += entry_counts[start];
    }
    Some(start)
}

/// A k-way merge of sorted table iterators (k is a handful: about
/// `TABLES_MAX`, so a linear scan for the minimum is cheapest).
struct MergeIter {
    iters: Vec<TableIter>,
    heads: Vec<Option<Entry>>,
    started: bool,
}

impl Iterator for MergeIter {
    type Item = Entry;
    fn next(&mut self) -> Option<Entry> {
        if !self.started {
            self.heads = self.iters.iter_mut().map(Iterator::next).collect();
            self.started = true;
        }
        let (at, _) = self.heads.iter().enumerate().filter_map(|(i, h)| h.map(|h| (i, h))).min_by_key(|&(_, h)| h)?;
        let entry = self.heads[at].take();
        self.heads[at] = self.iters[at].next();
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_pick_tables_of_like_size() {
        assert_eq!(merge_start(&[5]), None);
        assert_eq!(merge_start(&[100, 1]), Some(0));
        // Six fresh tables gather; the big old one waits.
        assert_eq!(merge_start(&[1000, 1, 1, 1, 1, 1, 1]), Some(1));
        // Until the newer ones add up to half of it.
        assert_eq!(merge_start(&[12, 6, 1, 1, 1, 1, 1]), Some(0));
        // 6 > 2 × 2: only the two newest.
        assert_eq!(merge_start(&[100, 6, 1, 1]), Some(2));
        // Every entry is rewritten a logarithmic number of times: simulate
        // a long run of flushes and count the rewrites.
        let mut tables: Vec<u64> = Vec::new();
        let mut rewritten = 0u64;
        for _ in 0..1024 {
            tables.extend(std::iter::once(1));
            if tables.len() > TABLES_MAX {
                let start = merge_start(&tables).unwrap();
                let merged: u64 = tables.drain(start..).sum();
                rewritten += merged;
                tables.push(merged);
            }
        }
        assert!(rewritten <= 1024 * 11, "{rewritten} rewrites for 1024 entries");
        assert!(tables.len() <= TABLES_MAX + 1, "{tables:?}");
    }
    use stele_log::DiskStorage;

    fn entry(hash: u64, revision: u64, position: u64) -> Entry {
        Entry { hash, revision, position }
    }

    #[test]
    fn a_table_write_that_failed_part_way_can_be_retried() {
        let dir = tempfile::tempdir().unwrap();
        let storage = stele_log::FaultyStorage::new();
        let index = Index::open(Arc::new(storage.clone()), dir.path()).unwrap();
        index.insert((0..100u64).map(|r| entry(3, r, r * 10)));
        assert!(index.freeze(1_000));
        storage.arm(stele_log::Fault::NoSpace);
        assert!(index.write_frozen().is_err());
        assert!(index.has_frozen(), "still consulted after the failure");
        assert_eq!(index.range(3, 0, u64::MAX).unwrap().len(), 100);
        // Space again: the retry writes the same range under the same name.
        storage.clear();
        index.write_frozen().unwrap();
        assert_eq!((index.checkpoint(), index.table_count()), (1_000, 1));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_frozen_memtable_answers_until_its_table_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(Index::open(Arc::new(DiskStorage), dir.path()).unwrap());
        index.insert((0..500u64).map(|r| entry(7, r, r * 10)));
        assert!(index.freeze(5_000));
        assert!(!index.freeze(5_000), "one frozen memtable at a time");
        assert_eq!(index.memtable_len(), 0);
        index.insert((500..600u64).map(|r| entry(7, r, r * 10)));
        // Frozen and fresh memtable together, before the table exists.
        assert_eq!(index.range(7, 0, u64::MAX).unwrap().len(), 600);
        assert_eq!(index.last(7).unwrap(), Some((599, 5_990)));
        // Readers on other threads while the table is written never miss an entry.
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                for _ in 0..200 {
                    assert_eq!(index.range(7, 0, u64::MAX).unwrap().len(), 600);
                }
            });
            index.write_frozen().unwrap();
            reader.join().unwrap();
        });
        assert!(!index.has_frozen());
        assert_eq!(index.checkpoint(), 5_000);
        assert_eq!(index.table_count(), 1);
        assert_eq!(index.range(7, 0, u64::MAX).unwrap().len(), 600);
        index.flush(6_000).unwrap();
        assert_eq!((index.checkpoint(), index.memtable_len()), (6_000, 0));
    }

    #[test]
    fn memtable_and_tables_answer_alike() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(Arc::new(DiskStorage), dir.path()).unwrap();
        let mut position = 0;
        for round in 0..10u64 {
            let mut batch = Vec::new();
            for revision in round * 100..round * 100 + 100 {
                for hash in [7u64, 9, 11] {
                    batch.push(entry(hash, revision, position));
                    position += 10;
                }
            }
            index.insert(batch);
            if round % 2 == 1 {
                index.flush(position).unwrap();
            }
        }
        assert!(index.table_count() >= 1);
        let found = index.range(9, 150, 849).unwrap();
        assert_eq!(found.len(), 700);
        assert!(found.windows(2).all(|w| w[0].0 + 1 == w[1].0));
        assert_eq!(index.last(11).unwrap().map(|(r, _)| r), Some(999));
        assert_eq!(index.last(8).unwrap(), None);
        let checkpoint = index.checkpoint();
        drop(index);

        let reopened = Index::open(Arc::new(DiskStorage), dir.path()).unwrap();
        assert_eq!(reopened.checkpoint(), checkpoint);
        assert_eq!(reopened.range(7, 0, u64::MAX).unwrap().len(), 1000);
    }

    #[test]
    fn many_flushes_merge_and_stay_correct() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(Arc::new(DiskStorage), dir.path()).unwrap();
        for round in 0..20u64 {
            index.insert((0..600).map(|i| entry(i % 5, round * 1000 + i, round * 1000 + i)));
            index.flush((round + 1) * 1000).unwrap();
            if index.needs_merge() {
                index.merge().unwrap();
            }
        }
        assert!(index.table_count() <= TABLES_MAX);
        let mut total = 0;
        index.for_each(|_| total += 1).unwrap();
        assert_eq!(total, 20 * 600);
        assert_eq!(index.range(3, 0, u64::MAX).unwrap().len(), 20 * 120);
    }

    #[test]
    fn damaged_table_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(Arc::new(DiskStorage), dir.path()).unwrap();
        index.insert((0..1000).map(|i| entry(1, i, i)));
        index.flush(1000).unwrap();
        drop(index);
        let path = dir.path().join(table_name(0, 1000));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[500] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        match Index::open(Arc::new(DiskStorage), dir.path()) {
            Err(IndexError::Corrupt { path: reported, .. }) => assert_eq!(reported, path),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
