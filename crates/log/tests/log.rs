//! Integration tests of the record log against real files (in a temporary
//! directory, with real `fdatasync`), plus the fault-injecting storage for
//! the failure paths.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use stele_log::format::{
    encode_record, encode_segment_header, FrameError, FLAG_COMMIT_END, FLAG_TRANSACTION_END, RECORD_OVERHEAD,
    SEGMENT_HEADER_SIZE,
};
use stele_log::storage::segment_path;
use stele_log::{
    open, scan_segment, DiskStorage, Fault, FaultyStorage, LogConfig, LogReader, LogWriter, OpenError, ReadError,
    Record, Recovery, WriteError, PREALLOCATE_CHUNK_BYTES,
};

const SMALL: LogConfig = LogConfig { segment_size_bytes: 4096 };

type Tx = Vec<(u8, Vec<u8>)>;

fn open_disk(dir: &Path, config: LogConfig) -> (LogWriter, LogReader, Recovery) {
    open_disk_from(dir, config, 0)
}

fn open_disk_from(dir: &Path, config: LogConfig, scan_from: u64) -> (LogWriter, LogReader, Recovery) {
    match open(Arc::new(DiskStorage), dir, config, scan_from) {
        Ok(opened) => opened,
        Err(error) => panic!("open failed: {error}"),
    }
}

fn as_pair((kind, payload): &(u8, Vec<u8>)) -> (u8, &[u8]) {
    (*kind, payload.as_slice())
}

/// A deterministic pseudo-random byte generator, so failures reproduce.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn vec(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the test believes the log holds: every committed record (flags
/// filled in by [`Model::expected`]), transaction ends and commit ends.
#[derive(Debug, Default, Clone)]
struct Model {
    records: Vec<Record>,
    tx_ends: Vec<u64>,
    commit_ends: Vec<u64>,
    /// Staged but not yet committed.
    staged: Vec<Record>,
    staged_tx_ends: Vec<u64>,
}

impl Model {
    fn end(&self) -> u64 {
        self.records.last().map_or(0, Record::next_position)
    }

    /// Stages `tx` and checks the positions the writer hands out.
    fn append(&mut self, writer: &mut LogWriter, tx: &Tx) -> Vec<u64> {
        let start = writer.end_position();
        let positions = writer.append_transaction(tx.iter().map(as_pair)).expect("append_transaction");
        assert_eq!(positions, self.stage(start, tx), "positions must be contiguous");
        assert_eq!(writer.end_position(), *self.staged_tx_ends.last().unwrap());
        positions
    }

    /// Adds `tx` at `start` to the staged records; returns its positions.
    fn stage(&mut self, start: u64, tx: &Tx) -> Vec<u64> {
        let mut positions = Vec::with_capacity(tx.len());
        let mut position = start;
        for (i, (kind, payload)) in tx.iter().enumerate() {
            let record = Record {
                position,
                kind: *kind,
                flags: if i + 1 == tx.len() { FLAG_TRANSACTION_END } else { 0 },
                length_bytes: (payload.len() + RECORD_OVERHEAD) as u32,
                payload: payload.clone(),
            };
            positions.push(position);
            position = record.next_position();
            self.staged.push(record);
        }
        self.staged_tx_ends.push(position);
        positions
    }

    /// Takes what is staged as committed by one write.
    fn promote_staged(&mut self) {
        let end = self.staged.last().expect("something staged").next_position();
        self.records.append(&mut self.staged);
        self.tx_ends.append(&mut self.staged_tx_ends);
        self.commit_ends.push(end);
    }

    /// Commits what is staged and checks the new end everywhere.
    fn commit(&mut self, writer: &mut LogWriter, reader: &LogReader) -> u64 {
        let end = writer.commit().expect("commit");
        assert_eq!(end, writer.end_position());
        assert_eq!(end, writer.committed_end());
        assert_eq!(end, reader.committed_end());
        assert!(!writer.has_pending());
        let expected_end = self.staged.last().map_or(self.end(), Record::next_position);
        assert_eq!(end, expected_end);
        if !self.staged.is_empty() {
            self.promote_staged();
        }
        end
    }

    fn commit_one(&mut self, writer: &mut LogWriter, reader: &LogReader, tx: &Tx) -> u64 {
        self.append(writer, tx);
        self.commit(writer, reader)
    }

    /// Forgets staged records (after a failed commit).
    fn drop_staged(&mut self) {
        self.staged.clear();
        self.staged_tx_ends.clear();
    }

    /// The committed records with their exact flags: a record carries
    /// `FLAG_COMMIT_END` iff it ends one write, which is the end of a commit
    /// or the end of a segment that a commit rolled over.
    fn expected(&self, reader: &LogReader) -> Vec<Record> {
        let bases: Vec<u64> = reader.segments().iter().map(|s| s.base_position).collect();
        self.records
            .iter()
            .map(|record| {
                let mut record = record.clone();
                let next = record.next_position();
                if self.commit_ends.contains(&next) || bases.contains(&next) {
                    record.flags |= FLAG_COMMIT_END;
                }
                record
            })
            .collect()
    }

    /// The model cut back to the records that end at or before `end`. The
    /// kept bytes are unchanged, flags included.
    fn truncated_to(&self, end: u64) -> Model {
        let mut model = self.clone();
        model.records.retain(|r| r.next_position() <= end);
        model.tx_ends.retain(|&e| e <= end);
        model.commit_ends.retain(|&e| e <= end);
        model
    }
}

fn cursor_records(reader: &LogReader, from: u64) -> Result<Vec<Record>, ReadError> {
    let mut cursor = reader.cursor(from);
    let mut records = Vec::new();
    while let Some((position, record)) = cursor.next_record()? {
        records.push(Record {
            position,
            kind: record.kind,
            flags: record.flags,
            length_bytes: record.length_bytes,
            payload: record.payload.to_vec(),
        });
        let next = records.last().unwrap().next_position();
        assert_eq!(cursor.position(), next);
    }
    Ok(records)
}

/// Reads the whole log three ways (by position, backwards, with a cursor)
/// and compares each with `expected`.
fn check_log(reader: &LogReader, expected: &[Record]) {
    let end = expected.last().map_or(0, Record::next_position);
    assert_eq!(reader.committed_end(), end);

    let mut position = 0;
    for want in expected {
        let got = reader.read(position).expect("read");
        assert_eq!(&got, want, "read({position})");
        position = got.next_position();
    }
    assert_eq!(position, end);
    match reader.read(end) {
        Err(ReadError::PastEnd { position, end: e }) => assert_eq!((position, e), (end, end)),
        other => panic!("read at the end must be PastEnd, got {other:?}"),
    }

    let mut backwards = Vec::new();
    let mut position = end;
    while let Some(record) = reader.read_before(position).expect("read_before") {
        assert_eq!(record.next_position(), position);
        position = record.position;
        backwards.push(record);
    }
    assert_eq!(position, 0, "read_before must walk back to the start");
    backwards.reverse();
    assert_eq!(backwards, expected);

    assert_eq!(cursor_records(reader, 0).expect("cursor"), expected);

    // Segments tile the log.
    let segments = reader.segments();
    assert_eq!(segments[0].base_position, 0);
    for pair in segments.windows(2) {
        assert_eq!(pair[0].end_position, pair[1].base_position);
    }
    assert_eq!(segments.last().unwrap().end_position, end);
}

fn check_model(reader: &LogReader, model: &Model) {
    check_log(reader, &model.expected(reader));
}

/// Checks each segment file's size matches what the reader says it holds;
/// only the last one may go on past its data, with zeros (preallocated).
fn check_files(reader: &LogReader, dir: &Path) {
    let segments = reader.segments();
    for (i, segment) in segments.iter().enumerate() {
        assert_eq!(segment.path, segment_path(dir, segment.base_position));
        let bytes = std::fs::read(&segment.path).unwrap();
        let data_len = (SEGMENT_HEADER_SIZE + segment.end_position - segment.base_position) as usize;
        if i + 1 == segments.len() {
            assert!(bytes.len() >= data_len, "{}", segment.path.display());
            assert!(
                bytes[data_len..].iter().all(|&b| b == 0),
                "{}: non-zero bytes past the data",
                segment.path.display()
            );
        } else {
            assert_eq!(bytes.len(), data_len, "{}", segment.path.display());
        }
    }
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

fn last_segment_path(reader: &LogReader) -> PathBuf {
    reader.segments().last().unwrap().path.clone()
}

fn append_to_file(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

fn flip_byte(path: &Path, offset: u64, mask: u8) {
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= mask;
    file.write_all_at(&byte, offset).unwrap();
    file.sync_all().unwrap();
}

fn file_offset(segment_base: u64, position: u64) -> u64 {
    SEGMENT_HEADER_SIZE + position - segment_base
}

/// Builds a log of many transactions over several small segments, with one
/// transaction larger than a segment, committing after a random number of
/// transactions (one commit can span a segment roll).
fn build_multi_segment(writer: &mut LogWriter, reader: &LogReader, model: &mut Model, seed: u64) {
    let mut rng = Bytes(seed);
    for i in 0..60 {
        let records = 1 + rng.below(4) as usize;
        let tx: Tx = if i == 25 {
            vec![(7, rng.vec(5000))]
        } else {
            (0..records)
                .map(|_| {
                    let kind = 1 + rng.below(255) as u8;
                    let len = rng.below(700) as usize;
                    (kind, rng.vec(len))
                })
                .collect()
        };
        model.append(writer, &tx);
        if rng.below(3) == 0 || i == 59 {
            model.commit(writer, reader);
            // Zeros ahead of the data, as an idle store writer leaves them.
            if rng.below(2) == 0 {
                writer.preallocate_ahead();
            }
        }
    }
}

#[test]
fn append_commit_and_read_back_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader, recovery) = open_disk(dir.path(), SMALL);
    assert_eq!(recovery, Recovery { end_position: 0, truncated_bytes: 0, scanned_from: 0, segment_count: 1 });
    assert_eq!(reader.read_before(0).unwrap(), None);
    assert_eq!(cursor_records(&reader, 0).unwrap(), vec![]);

    let mut model = Model::default();
    build_multi_segment(&mut writer, &reader, &mut model, 0x5eed);
    check_model(&reader, &model);
    check_files(&reader, dir.path());

    let segments = reader.segments();
    assert!(segments.len() >= 4, "expected several segments, got {}", segments.len());
    for segment in &segments {
        // No transaction straddles a segment boundary.
        assert!(segment.base_position == 0 || model.tx_ends.contains(&segment.base_position));
        // A segment stays within its size unless one transaction alone is bigger.
        let size = segment.end_position - segment.base_position;
        let transactions =
            model.tx_ends.iter().filter(|&&e| e > segment.base_position && e <= segment.end_position).count();
        assert!(
            size <= SMALL.segment_size_bytes || transactions == 1,
            "segment {segment:?} holds {size} bytes in {transactions} transactions"
        );
    }
    // The oversized transaction got a segment of its own.
    let big = model.records.iter().find(|r| r.payload.len() == 5000).unwrap();
    let own = segments.iter().find(|s| s.base_position == big.position).expect("big transaction starts a segment");
    assert_eq!(own.end_position, big.next_position());

    // A cursor started mid-log, and one that sees later commits.
    let middle = model.records[model.records.len() / 2].position;
    let expected = model.expected(&reader);
    let tail: Vec<Record> = expected.iter().filter(|r| r.position >= middle).cloned().collect();
    assert_eq!(cursor_records(&reader, middle).unwrap(), tail);

    let mut cursor = reader.cursor(0);
    while cursor.next_record().unwrap().is_some() {}
    assert_eq!(cursor.position(), model.end());
    let extra: Tx = vec![(9, b"late".to_vec())];
    let positions = model.append(&mut writer, &extra);
    assert!(cursor.next_record().unwrap().is_none(), "staged is not visible");
    model.commit(&mut writer, &reader);
    let (position, record) = cursor.next_record().unwrap().expect("committed record");
    assert_eq!(position, positions[0]);
    assert_eq!(record.payload, b"late");
    assert!(cursor.next_record().unwrap().is_none());

    // scan_segment visits each segment's records in order.
    let mut seen = Vec::new();
    for segment in reader.segments() {
        scan_segment(&reader, &segment, |position, record| {
            assert!(position >= segment.base_position && position < segment.end_position);
            seen.push((position, record.payload.to_vec()));
        })
        .unwrap();
    }
    let want: Vec<(u64, Vec<u8>)> = model.records.iter().map(|r| (r.position, r.payload.clone())).collect();
    assert_eq!(seen, want);
}

#[test]
fn nothing_staged_is_visible_or_written_before_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, reader, _) = open_disk(dir.path(), SMALL);
    let mut model = Model::default();
    let end = model.commit_one(&mut writer, &reader, &vec![(1, b"first".to_vec())]);

    // Stage enough to need two more segments.
    let mut rng = Bytes(42);
    for _ in 0..12 {
        model.append(&mut writer, &vec![(2, rng.vec(900))]);
    }
    assert!(writer.has_pending());
    assert!(writer.end_position() > end + 2 * SMALL.segment_size_bytes);
    assert_eq!(writer.committed_end(), end);
    assert_eq!(reader.committed_end(), end);
    match reader.read(end) {
        Err(ReadError::PastEnd { position, end: e }) => assert_eq!((position, e), (end, end)),
        other => panic!("expected PastEnd, got {other:?}"),
    }
    let staged_end = writer.end_position();
    assert!(matches!(reader.read_before(staged_end), Err(ReadError::PastEnd { .. })));
    assert_eq!(cursor_records(&reader, 0).unwrap().len(), 1);
    assert_eq!(reader.segments().len(), 1);
    // Nothing reached the disk: no new segment, no bytes past the end.
    assert_eq!(segment_files(dir.path()), vec![format!("{:020}.seg", 0)]);
    check_files(&reader, dir.path());

    // Dropped without commit: gone after reopen.
    drop(writer);
    drop(reader);
    model.drop_staged();
    let (mut writer, reader, recovery) = open_disk(dir.path(), SMALL);
    assert_eq!(recovery.end_position, end);
    assert_eq!(recovery.truncated_bytes, 0);
    check_model(&reader, &model);

    // Staged then committed: all visible at once.
    for _ in 0..12 {
        model.append(&mut writer, &vec![(2, rng.vec(900))]);
    }
    model.commit(&mut writer, &reader);
    assert!(reader.segments().len() >= 3);
    check_model(&reader, &model);
    check_files(&reader, dir.path());
}

#[test]
fn reopen_after_clean_commits_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let segment_count;
    {
        let (mut writer, reader, _) = open_disk(dir.path(), SMALL);
        build_multi_segment(&mut writer, &reader, &mut model, 7);
        segment_count = reader.segments().len();
    }
    let (mut writer, reader, recovery) = open_disk(dir.path(), SMALL);
    let last_base = reader.segments().last().unwrap().base_position;
    assert_eq!(
        recovery,
        Recovery { end_position: model.end(), truncated_bytes: 0, scanned_from: last_base, segment_count }
    );
    assert_eq!(writer.end_position(), model.end());
    check_model(&reader, &model);
    check_files(&reader, dir.path());

    // Appending continues where the log ended, across reopens.
    model.commit_one(&mut writer, &reader, &vec![(3, b"after reopen".to_vec())]);
    drop((writer, reader));
    // scan_from inside the last segment, at a transaction end.
    let scan_from = *model.tx_ends.iter().rev().nth(1).unwrap();
    assert!(scan_from >= last_base);
    let (_writer, reader, recovery) = open_disk_from(dir.path(), SMALL, scan_from);
    assert_eq!(recovery.scanned_from, scan_from);
    assert_eq!(recovery.truncated_bytes, 0);
    check_model(&reader, &model);
}

/// Commits a multi-segment log, then damages the tail with `tail` and
/// checks recovery cuts exactly that off and the log keeps working.
fn torn_tail_case(tail: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let path;
    {
        let (mut writer, reader, _) = open_disk(dir.path(), SMALL);
        build_multi_segment(&mut writer, &reader, &mut model, 11);
        path = last_segment_path(&reader);
    }
    let len_before = std::fs::metadata(&path).unwrap().len();
    append_to_file(&path, tail);
    let (mut writer, reader, recovery) = open_disk(dir.path(), SMALL);
    assert_eq!(recovery.end_position, model.end());
    assert_eq!(recovery.truncated_bytes, tail.len() as u64);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len_before);
    check_model(&reader, &model);
    check_files(&reader, dir.path());

    let positions = model.append(&mut writer, &vec![(4, b"after the tear".to_vec())]);
    assert_eq!(positions[0], recovery.end_position);
    model.commit(&mut writer, &reader);
    drop((writer, reader));
    let (_writer, reader, recovery) = open_disk(dir.path(), SMALL);
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(reader.read(positions[0]).unwrap().payload, b"after the tear");
    check_model(&reader, &model);
}

#[test]
fn torn_tail_of_garbage_is_truncated() {
    torn_tail_case(&[0xab; 100]);
}

#[test]
fn torn_tail_of_zeros_is_truncated() {
    torn_tail_case(&[0; 4096]);
}

#[test]
fn torn_tail_of_a_partial_record_is_truncated() {
    let mut frame = Vec::new();
    encode_record(&mut frame, 5, FLAG_TRANSACTION_END | FLAG_COMMIT_END, &[0x5a; 300]);
    for cut in [1, 4, 11, 12, 100, frame.len() - 4, frame.len() - 1] {
        torn_tail_case(&frame[..cut]);
    }
}

#[test]
fn incomplete_transaction_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let path;
    {
        let (mut writer, reader, _) = open_disk(dir.path(), LogConfig::default());
        for i in 0..5u8 {
            model.commit_one(&mut writer, &reader, &vec![(1, vec![i; 50]), (2, vec![i; 10])]);
        }
        path = last_segment_path(&reader);
    }
    // Two records of a transaction whose end record never made it.
    let mut frames = Vec::new();
    encode_record(&mut frames, 3, 0, b"first of three");
    encode_record(&mut frames, 3, 0, b"second of three");
    append_to_file(&path, &frames);

    let (writer, reader, recovery) = open_disk(dir.path(), LogConfig::default());
    assert_eq!(recovery.end_position, model.end());
    assert_eq!(recovery.truncated_bytes, frames.len() as u64);
    check_model(&reader, &model);
    check_files(&reader, dir.path());

    // A complete transaction (even without the commit-end flag) followed by
    // an incomplete one: the first stays, the second goes.
    let end = model.end();
    let mut complete = Vec::new();
    encode_record(&mut complete, 6, 0, b"a");
    encode_record(&mut complete, 6, FLAG_TRANSACTION_END, b"b");
    let mut incomplete = Vec::new();
    encode_record(&mut incomplete, 6, 0, b"c");
    drop((writer, reader));
    append_to_file(&path, &complete);
    append_to_file(&path, &incomplete);
    let (mut writer, reader, recovery) = open_disk(dir.path(), LogConfig::default());
    assert_eq!(recovery.end_position, end + complete.len() as u64);
    assert_eq!(recovery.truncated_bytes, incomplete.len() as u64);
    let first = reader.read(end).unwrap();
    assert_eq!((first.kind, first.flags, first.payload.as_slice()), (6, 0, &b"a"[..]));
    let second = reader.read(first.next_position()).unwrap();
    assert_eq!((second.kind, second.flags, second.payload.as_slice()), (6, FLAG_TRANSACTION_END, &b"b"[..]));
    assert!(matches!(reader.read(second.next_position()), Err(ReadError::PastEnd { .. })));
    // And the writer carries on after it.
    let positions = writer.append_transaction([(8u8, &b"next"[..])]).unwrap();
    assert_eq!(positions, vec![second.next_position()]);
    writer.commit().unwrap();
    assert_eq!(reader.read(positions[0]).unwrap().payload, b"next");
}

#[test]
fn damage_before_synced_data_in_the_last_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let (path, base);
    {
        let (mut writer, reader, _) = open_disk(dir.path(), SMALL);
        build_multi_segment(&mut writer, &reader, &mut model, 3);
        let last = reader.segments().last().unwrap().clone();
        (path, base) = (last.path, last.base_position);
        // Several separate commits into the last segment.
        for i in 0..4u8 {
            model.commit_one(&mut writer, &reader, &vec![(1, vec![i; 40]), (2, vec![i; 20])]);
        }
        assert_eq!(reader.segments().last().unwrap().base_position, base);
    }
    let victim = model.records.iter().find(|r| r.position >= base).unwrap().clone();
    let offset = file_offset(base, victim.position);
    let before = std::fs::read(&path).unwrap();
    flip_byte(&path, offset + 12 + victim.payload.len() as u64 / 2, 0x10);
    let damaged = std::fs::read(&path).unwrap();

    match open(Arc::new(DiskStorage), dir.path(), SMALL, 0) {
        Err(OpenError::Corruption { path: p, offset: o, position, reason }) => {
            assert_eq!(p, path);
            assert_eq!(o, offset);
            assert_eq!(position, victim.position);
            assert_eq!(reason, FrameError::BadChecksum);
        }
        Ok(_) => panic!("open must fail on corruption before synced data"),
        Err(other) => panic!("expected Corruption, got {other}"),
    }
    // A failed open changes nothing on disk.
    assert_eq!(std::fs::read(&path).unwrap(), damaged);
    assert_ne!(damaged, before);

    // Told the damaged part is already indexed, open skips it but reads
    // still never return the damaged record.
    let scan_from = *model.commit_ends.last().unwrap();
    let (_writer, reader, recovery) = open_disk_from(dir.path(), SMALL, scan_from);
    assert_eq!(recovery.truncated_bytes, 0);
    match reader.read(victim.position) {
        Err(ReadError::BadRecord { path: p, offset: o, position, reason }) => {
            assert_eq!((p, o, position), (path, offset, victim.position));
            assert_eq!(reason, FrameError::BadChecksum);
        }
        other => panic!("expected BadRecord, got {other:?}"),
    }
}

#[test]
fn damage_in_a_sealed_segment_is_found_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let sealed;
    {
        let (mut writer, reader, _) = open_disk(dir.path(), SMALL);
        build_multi_segment(&mut writer, &reader, &mut model, 5);
        sealed = reader.segments()[1].clone();
    }
    let victim =
        model.records.iter().find(|r| r.position > sealed.base_position && !r.payload.is_empty()).unwrap().clone();
    assert!(victim.next_position() <= sealed.end_position);
    let offset = file_offset(sealed.base_position, victim.position);
    flip_byte(&sealed.path, offset + 12, 0x01);

    let (_writer, reader, recovery) = open_disk(dir.path(), SMALL);
    assert_eq!(recovery.end_position, model.end());
    assert_eq!(recovery.truncated_bytes, 0);

    let is_victim_error = |result: Result<Record, ReadError>| match result {
        Err(ReadError::BadRecord { path, offset: o, position, reason }) => {
            assert_eq!((path, o, position), (sealed.path.clone(), offset, victim.position));
            assert_eq!(reason, FrameError::BadChecksum);
        }
        other => panic!("expected BadRecord, got {other:?}"),
    };
    is_victim_error(reader.read(victim.position));
    is_victim_error(reader.read_before(victim.next_position()).map(Option::unwrap));
    // The cursor stops at the damage with the same error.
    let mut cursor = reader.cursor(sealed.base_position);
    loop {
        match cursor.next_record() {
            Ok(Some((position, _))) => assert!(position < victim.position),
            Ok(None) => panic!("cursor passed the damaged record"),
            Err(error) => {
                is_victim_error(Err(error));
                break;
            }
        }
    }
    assert!(scan_segment(&reader, &sealed, |_, _| {}).is_err());
    // Every other record still reads fine.
    for want in model.expected(&reader) {
        if want.position != victim.position {
            assert_eq!(reader.read(want.position).unwrap(), want);
        }
    }
}

#[test]
fn read_before_does_not_return_a_record_that_does_not_end_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let sealed;
    {
        let (mut writer, reader, _) = open_disk(dir.path(), SMALL);
        // 32-byte frames, so a length of 32 with bit 6 flipped (96) points
        // at another record boundary, two records further back.
        for i in 0..200u8 {
            model.commit_one(&mut writer, &reader, &vec![(1, vec![i; 16])]);
        }
        assert!(reader.segments().len() >= 2);
        sealed = reader.segments()[0].clone();
    }
    let victim = model.records[10].clone();
    assert_eq!(victim.length_bytes, 32);
    let trailer = file_offset(sealed.base_position, victim.next_position()) - 4;
    flip_byte(&sealed.path, trailer, 0x40);

    let (_writer, reader, _) = open_disk(dir.path(), SMALL);
    match reader.read_before(victim.next_position()) {
        Err(ReadError::BadRecord { .. }) => {}
        other => panic!("expected BadRecord, got {other:?}"),
    }
    assert!(matches!(reader.read(victim.position), Err(ReadError::BadRecord { reason: FrameError::BadChecksum, .. })));
}

/// Data committed before `fault`, then one failed commit.
fn fail_stop_case(fault: Fault) {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new();
    let (mut writer, reader, _) = open(Arc::new(storage.clone()), dir.path(), LogConfig::default(), 0).unwrap();
    let mut model = Model::default();
    for i in 0..3u8 {
        model.commit_one(&mut writer, &reader, &vec![(1, vec![i; 64])]);
    }
    let end = model.end();

    storage.arm(fault);
    let failed: Tx = vec![(2, vec![0xee; 100]), (2, vec![0xdd; 300])];
    model.append(&mut writer, &failed);
    let failed_end = writer.end_position();
    match writer.commit() {
        Err(WriteError::Poisoned { .. }) => {}
        other => panic!("{fault:?}: expected Poisoned, got {other:?}"),
    }
    model.drop_staged();
    assert!(writer.is_poisoned().is_some());
    assert_eq!(writer.committed_end(), end);
    assert_eq!(reader.committed_end(), end);
    assert!(matches!(writer.append_transaction([(1u8, &b"more"[..])]), Err(WriteError::Poisoned { .. })));
    assert!(matches!(writer.commit(), Err(WriteError::Poisoned { .. })));
    assert_eq!(reader.committed_end(), end);
    // Earlier data still reads; the failed batch is invisible.
    check_model(&reader, &model);

    // A restart recovers the committed data; what the failed write left
    // behind is either cut off whole or (sync failed after a full write)
    // kept whole, never in part.
    drop((writer, reader));
    let (mut writer, reader, recovery) = open_disk(dir.path(), LogConfig::default());
    match fault {
        Fault::WriteError => {
            assert_eq!(recovery.end_position, end);
            assert_eq!(recovery.truncated_bytes, 0);
        }
        Fault::ShortWrite => {
            assert_eq!(recovery.end_position, end);
            assert_eq!(recovery.truncated_bytes, (failed_end - end) / 2);
        }
        _ => {
            assert!(recovery.end_position == end || recovery.end_position == failed_end);
            if recovery.end_position == failed_end {
                // Written in full (commit-end flag included), only the
                // sync failed: recovery may keep it, all of it.
                model.stage(end, &failed);
                model.promote_staged();
            }
        }
    }
    check_model(&reader, &model);
    model.commit_one(&mut writer, &reader, &vec![(3, b"after restart".to_vec())]);
    check_model(&reader, &model);
}

#[test]
fn sync_error_poisons_the_writer() {
    fail_stop_case(Fault::SyncError);
}

#[test]
fn write_error_poisons_the_writer() {
    fail_stop_case(Fault::WriteError);
}

#[test]
fn short_write_poisons_the_writer() {
    fail_stop_case(Fault::ShortWrite);
}

#[test]
fn failure_while_creating_a_segment_poisons_and_leaves_no_segment() {
    for fault in [Fault::WriteError, Fault::ShortWrite, Fault::SyncError] {
        let dir = tempfile::tempdir().unwrap();
        let storage = FaultyStorage::new();
        let (mut writer, reader, _) = open(Arc::new(storage.clone()), dir.path(), SMALL, 0).unwrap();
        let mut model = Model::default();
        model.commit_one(&mut writer, &reader, &vec![(1, vec![1; 3000])]);
        let end = model.end();
        storage.arm(fault);
        // Does not fit: the commit must start a new segment first.
        model.append(&mut writer, &vec![(1, vec![2; 3000])]);
        assert!(matches!(writer.commit(), Err(WriteError::Poisoned { .. })), "{fault:?}");
        model.drop_staged();
        assert_eq!(reader.committed_end(), end);
        assert_eq!(reader.segments().len(), 1);
        assert!(!segment_path(dir.path(), end).exists(), "{fault:?}");
        check_model(&reader, &model);
        drop((writer, reader));

        let (mut writer, reader, recovery) = open_disk(dir.path(), SMALL);
        assert_eq!(recovery.end_position, end);
        assert_eq!(recovery.segment_count, 1);
        model.commit_one(&mut writer, &reader, &vec![(1, vec![3; 3000])]);
        assert_eq!(reader.segments().len(), 2);
        check_model(&reader, &model);
        check_files(&reader, dir.path());
    }
}

#[test]
fn no_space_fails_the_batch_but_not_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FaultyStorage::new();
    let (mut writer, reader, _) = open(Arc::new(storage.clone()), dir.path(), SMALL, 0).unwrap();
    let mut model = Model::default();
    model.commit_one(&mut writer, &reader, &vec![(1, vec![1; 1000])]);
    let end = model.end();

    storage.arm(Fault::NoSpace);
    // A batch that stays in the current segment.
    model.append(&mut writer, &vec![(2, vec![2; 500]), (2, vec![3; 10])]);
    assert!(matches!(writer.commit(), Err(WriteError::NoSpace)));
    model.drop_staged();
    assert!(writer.is_poisoned().is_none());
    assert!(!writer.has_pending());
    assert_eq!(writer.end_position(), end);
    assert_eq!(writer.committed_end(), end);
    assert_eq!(reader.committed_end(), end);
    check_files(&reader, dir.path());

    // A batch that fills the segment and rolls into a new one.
    model.append(&mut writer, &vec![(4, vec![4; 2500])]);
    model.append(&mut writer, &vec![(4, vec![5; 2500])]);
    assert!(matches!(writer.commit(), Err(WriteError::NoSpace)));
    model.drop_staged();
    assert!(writer.is_poisoned().is_none());
    assert_eq!(writer.end_position(), end);
    assert_eq!(reader.segments().len(), 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
    check_files(&reader, dir.path());
    check_model(&reader, &model);

    storage.clear();
    let positions = model.append(&mut writer, &vec![(6, vec![6; 2500])]);
    assert_eq!(positions, vec![end]);
    model.append(&mut writer, &vec![(6, vec![7; 2500])]);
    model.commit(&mut writer, &reader);
    assert_eq!(reader.segments().len(), 2);
    check_model(&reader, &model);
    check_files(&reader, dir.path());

    // Again with a fault when a fresh segment is needed at the start of a batch.
    storage.arm(Fault::NoSpace);
    let end = model.end();
    model.append(&mut writer, &vec![(8, vec![8; 3000])]);
    assert!(matches!(writer.commit(), Err(WriteError::NoSpace)));
    model.drop_staged();
    assert_eq!(reader.segments().len(), 2);
    assert!(!segment_path(dir.path(), end).exists());
    storage.clear();
    model.commit_one(&mut writer, &reader, &vec![(9, vec![9; 3000])]);
    assert_eq!(reader.segments().len(), 3);
    drop((writer, reader));

    let (_writer, reader, recovery) = open_disk(dir.path(), SMALL);
    assert_eq!(recovery.truncated_bytes, 0);
    assert_eq!(recovery.end_position, model.end());
    check_model(&reader, &model);
    check_files(&reader, dir.path());
}

#[test]
fn scan_from_past_the_end_is_log_behind_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    {
        let (mut writer, reader, _) = open_disk(dir.path(), SMALL);
        build_multi_segment(&mut writer, &reader, &mut model, 9);
    }
    let end = model.end();
    match open(Arc::new(DiskStorage), dir.path(), SMALL, end + 1) {
        Err(OpenError::LogBehindIndex { covered, end: e, .. }) => {
            assert_eq!((covered, e), (end + 1, end))
        }
        Ok(_) => panic!("open must fail when the index is ahead of the log"),
        Err(other) => panic!("expected LogBehindIndex, got {other}"),
    }
    // At the end exactly is fine, and so is a point in an earlier segment.
    let (writer, reader, recovery) = open_disk_from(dir.path(), SMALL, end);
    assert_eq!(recovery.scanned_from, end);
    check_model(&reader, &model);
    let last_base = reader.segments().last().unwrap().base_position;
    drop((writer, reader));
    let early = model.tx_ends[0];
    assert!(early < last_base);
    let (_writer, reader, recovery) = open_disk_from(dir.path(), SMALL, early);
    assert_eq!(recovery.scanned_from, last_base);
    assert_eq!(recovery.truncated_bytes, 0);
    check_model(&reader, &model);
}

#[test]
fn crash_while_creating_a_segment_is_recovered() {
    // The states a crash inside segment creation can leave behind: the file
    // made but empty, its header not yet written, or only partly.
    for state in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        let segment_count;
        {
            let (mut writer, reader, _) = open_disk(dir.path(), SMALL);
            build_multi_segment(&mut writer, &reader, &mut model, 13);
            segment_count = reader.segments().len();
        }
        let stray = segment_path(dir.path(), model.end());
        let bytes = match state {
            0 => vec![],
            1 => vec![0; SEGMENT_HEADER_SIZE as usize],
            2 => vec![0; 10],
            _ => encode_segment_header(model.end())[..16].to_vec(),
        };
        std::fs::write(&stray, bytes).unwrap();

        let (mut writer, reader, recovery) = open_disk(dir.path(), SMALL);
        assert_eq!(recovery.segment_count, segment_count);
        assert_eq!(recovery.end_position, model.end());
        assert!(!stray.exists());
        check_model(&reader, &model);

        // The log stays writable, in the same segment and in new ones.
        model.commit_one(&mut writer, &reader, &vec![(1, b"small".to_vec())]);
        for _ in 0..3 {
            model.commit_one(&mut writer, &reader, &vec![(1, vec![0x77; 2000])]);
        }
        assert!(reader.segments().len() > segment_count);
        drop((writer, reader));
        let (_writer, reader, recovery) = open_disk(dir.path(), SMALL);
        assert_eq!(recovery.truncated_bytes, 0);
        check_model(&reader, &model);
        check_files(&reader, dir.path());
    }
}

#[test]
fn crash_while_creating_the_first_segment_is_recovered() {
    for state in [&[][..], &[0; SEGMENT_HEADER_SIZE as usize][..]] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(segment_path(dir.path(), 0), state).unwrap();
        let (mut writer, reader, recovery) = open_disk(dir.path(), SMALL);
        assert_eq!(recovery.end_position, 0);
        let mut model = Model::default();
        model.commit_one(&mut writer, &reader, &vec![(1, b"first".to_vec())]);
        drop((writer, reader));
        let (_writer, reader, _) = open_disk(dir.path(), SMALL);
        check_model(&reader, &model);
    }
}

#[test]
fn zeroed_header_of_a_last_segment_with_data_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let last;
    {
        let (mut writer, reader, _) = open_disk(dir.path(), SMALL);
        build_multi_segment(&mut writer, &reader, &mut model, 17);
        last = reader.segments().last().unwrap().clone();
        assert!(last.end_position > last.base_position);
    }
    let file = OpenOptions::new().write(true).open(&last.path).unwrap();
    file.write_all_at(&[0; SEGMENT_HEADER_SIZE as usize], 0).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let len = std::fs::metadata(&last.path).unwrap().len();

    // The header was synced before any data went in, so this is damage:
    // open must refuse rather than drop acknowledged data.
    match open(Arc::new(DiskStorage), dir.path(), SMALL, 0) {
        Err(OpenError::BadSegmentHeader { path, .. }) => assert_eq!(path, last.path),
        Ok((_, _, recovery)) => panic!("open dropped a segment with data: {recovery:?}"),
        Err(other) => panic!("expected BadSegmentHeader, got {other}"),
    }
    assert_eq!(std::fs::metadata(&last.path).unwrap().len(), len);
}

fn tx_strategy() -> impl Strategy<Value = Tx> {
    prop::collection::vec((1u8..=255, prop::collection::vec(any::<u8>(), 0..200)), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Cutting the last segment anywhere loses exactly the transactions not
    /// wholly inside the kept bytes, and nothing else.
    #[test]
    fn truncated_last_segment_recovers_a_prefix_of_whole_transactions(
        txs in prop::collection::vec((tx_strategy(), any::<bool>()), 1..30),
        segment_size in prop::sample::select(vec![200u64, 512, 1024]),
        cut in any::<prop::sample::Index>(),
    ) {
        let config = LogConfig { segment_size_bytes: segment_size };
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        let (last, committed);
        {
            let (mut writer, reader, _) = open_disk(dir.path(), config);
            for (i, (tx, commit_after)) in txs.iter().enumerate() {
                model.append(&mut writer, tx);
                if *commit_after || i + 1 == txs.len() {
                    model.commit(&mut writer, &reader);
                }
            }
            check_model(&reader, &model);
            last = reader.segments().last().unwrap().clone();
            committed = model.expected(&reader);
        }
        let file_len = std::fs::metadata(&last.path).unwrap().len();
        let kept_len = SEGMENT_HEADER_SIZE
            + cut.index((file_len - SEGMENT_HEADER_SIZE + 1) as usize) as u64;
        OpenOptions::new().write(true).open(&last.path).unwrap().set_len(kept_len).unwrap();
        let kept_end = last.base_position + kept_len - SEGMENT_HEADER_SIZE;

        let (mut writer, reader, recovery) = open_disk(dir.path(), config);
        let want_end = model
            .tx_ends
            .iter()
            .copied()
            .filter(|&e| e <= kept_end)
            .max()
            .unwrap_or(0)
            .max(last.base_position);
        prop_assert_eq!(recovery.end_position, want_end);
        prop_assert_eq!(recovery.truncated_bytes, kept_end - want_end);
        for &commit_end in &model.commit_ends {
            if commit_end <= kept_end {
                prop_assert!(commit_end <= recovery.end_position);
            }
        }
        let recovered = cursor_records(&reader, 0).unwrap();
        let want: Vec<Record> = committed
            .iter()
            .filter(|r| r.next_position() <= want_end)
            .cloned()
            .collect();
        prop_assert_eq!(&recovered, &want);
        let mut survivors = model.truncated_to(want_end);
        check_model(&reader, &survivors);
        check_files(&reader, dir.path());

        // The log goes on from there.
        survivors.commit_one(&mut writer, &reader, &vec![(1, b"after".to_vec())]);
        drop((writer, reader));
        let (_writer, reader, recovery) = open_disk(dir.path(), config);
        prop_assert_eq!(recovery.truncated_bytes, 0);
        check_model(&reader, &survivors);
    }

    /// Hostile bytes after the last commit (a torn write of anything, or
    /// random junk) never panic recovery, never change a committed record,
    /// and are cut off as a torn tail; the log takes appends after them.
    #[test]
    fn arbitrary_bytes_after_the_last_commit_are_a_torn_tail(
        txs in prop::collection::vec(tx_strategy(), 1..10),
        junk in prop::collection::vec(any::<u8>(), 1..600),
        plausible_length in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        let last = {
            let (mut writer, reader, _) = open_disk(dir.path(), SMALL);
            for tx in &txs {
                model.commit_one(&mut writer, &reader, tx);
            }
            reader.segments().last().unwrap().clone()
        };
        let mut junk = junk;
        if plausible_length && junk.len() >= 4 {
            // A length field that fits the junk, so the frame checks run.
            let length = (junk.len() as u32).to_le_bytes();
            junk[..4].copy_from_slice(&length);
        }
        let mut file = OpenOptions::new().append(true).open(&last.path).unwrap();
        file.write_all(&junk).unwrap();
        drop(file);

        let (mut writer, reader, recovery) = open_disk(dir.path(), SMALL);
        prop_assert_eq!(recovery.end_position, model.end());
        prop_assert_eq!(recovery.truncated_bytes, junk.len() as u64);
        check_model(&reader, &model);
        check_files(&reader, dir.path());
        model.commit_one(&mut writer, &reader, &vec![(1, b"after".to_vec())]);
        check_model(&reader, &model);
    }
}

/// Readers verify several records' checksums in one pass; damage to any
/// record of a pass, first, middle or last, must still stop the read at
/// exactly that record.
#[test]
fn damage_anywhere_in_a_verified_pass_is_found_by_cursor_and_read_many() {
    for victim in 0..7 {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::default();
        let (mut writer, reader, _) = open_disk(dir.path(), LogConfig::default());
        for i in 0..12u8 {
            model.commit_one(&mut writer, &reader, &vec![(1, vec![i; 40 + i as usize])]);
        }
        let records = model.expected(&reader);
        let damaged = records[victim].clone();
        let path = last_segment_path(&reader);
        let offset = file_offset(0, damaged.position);
        flip_byte(&path, offset + 12 + 3, 0x08);
        let is_victim_error = |error: ReadError| match error {
            ReadError::BadRecord { offset: o, position, reason, .. } => {
                assert_eq!(
                    (o, position, reason),
                    (offset, damaged.position, FrameError::BadChecksum),
                    "victim {victim}"
                );
            }
            other => panic!("victim {victim}: expected BadRecord, got {other:?}"),
        };

        for from in [0, victim.saturating_sub(1), victim] {
            let mut cursor = reader.cursor(records[from].position);
            for want in &records[from..victim] {
                let (position, record) = cursor.next_record().unwrap().unwrap();
                assert_eq!((position, record.payload), (want.position, &want.payload[..]), "victim {victim}");
            }
            is_victim_error(cursor.next_record().unwrap_err());
        }

        let all: Vec<u64> = records.iter().map(|r| r.position).collect();
        let mut served = Vec::new();
        let result = reader.read_many(&all, |position, record| -> Result<(), ReadError> {
            served.push((position, record.payload.to_vec()));
            Ok(())
        });
        is_victim_error(result.unwrap_err());
        let before: Vec<(u64, Vec<u8>)> = records[..victim].iter().map(|r| (r.position, r.payload.clone())).collect();
        assert_eq!(served, before, "victim {victim}");

        let others: Vec<u64> = all.iter().copied().filter(|&p| p != damaged.position).collect();
        let mut count = 0;
        reader
            .read_many(&others, |position, record| -> Result<(), ReadError> {
                let want = records.iter().find(|r| r.position == position).unwrap();
                assert_eq!(record.payload, &want.payload[..]);
                count += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(count, others.len());
    }
}

/// Zeros preallocated ahead of the data never read as records: a clean
/// close cuts them off, and after a crash (the writer never dropped)
/// recovery does, keeping every committed record.
#[test]
fn preallocated_zeros_are_cut_on_close_and_by_recovery() {
    let config = LogConfig { segment_size_bytes: 4 * PREALLOCATE_CHUNK_BYTES };
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let (mut writer, reader, _) = open_disk(dir.path(), config);
    model.commit_one(&mut writer, &reader, &vec![(1, vec![1; 100])]);
    assert!(writer.preallocate_ahead());
    assert_eq!(writer.preallocated_bytes(), PREALLOCATE_CHUNK_BYTES);
    let path = last_segment_path(&reader);
    let file_len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(file_len, SEGMENT_HEADER_SIZE + model.end() + PREALLOCATE_CHUNK_BYTES);
    // Whole chunks only, and never past the segment's size.
    while writer.preallocate_ahead() {}
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SEGMENT_HEADER_SIZE + config.segment_size_bytes);
    // Data goes over the zeros; the zeros past it still read as nothing.
    model.commit_one(&mut writer, &reader, &vec![(2, vec![2; 300]), (3, vec![3; 50])]);
    check_model(&reader, &model);
    check_files(&reader, dir.path());

    // A crash: the writer is never dropped, the zeros stay on disk.
    std::mem::forget(writer);
    drop(reader);
    let (mut writer, reader, recovery) = open_disk(dir.path(), config);
    assert_eq!(recovery.end_position, model.end());
    assert_eq!(recovery.truncated_bytes, config.segment_size_bytes - model.end());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SEGMENT_HEADER_SIZE + model.end());
    check_model(&reader, &model);

    // Preallocated again, then a roll: the sealed segment is cut to its data
    // before the next one is made.
    assert!(writer.preallocate_ahead());
    let big = vec![(4, vec![4; 3 * PREALLOCATE_CHUNK_BYTES as usize])];
    model.commit_one(&mut writer, &reader, &big);
    model.commit_one(&mut writer, &reader, &big);
    assert!(reader.segments().len() >= 2);
    assert!(writer.preallocate_ahead());
    check_model(&reader, &model);
    check_files(&reader, dir.path());

    // A clean close leaves every file exactly as long as its data.
    drop((writer, reader));
    let lengths: Vec<u64> =
        segment_files(dir.path()).iter().map(|name| std::fs::metadata(dir.path().join(name)).unwrap().len()).collect();
    let (_writer, reader, recovery) = open_disk(dir.path(), config);
    assert_eq!(recovery.truncated_bytes, 0);
    let data_lengths: Vec<u64> =
        reader.segments().iter().map(|s| SEGMENT_HEADER_SIZE + s.end_position - s.base_position).collect();
    assert_eq!(lengths, data_lengths);
    check_model(&reader, &model);
}

/// Zeros preallocated past the data make the last segment's file longer
/// than its data: an index that claims to cover part of them must still be
/// found ahead of the log, not have the zeros taken for records.
#[test]
fn an_index_ahead_of_the_data_is_found_behind_preallocated_zeros() {
    let config = LogConfig { segment_size_bytes: 4 * PREALLOCATE_CHUNK_BYTES };
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let (mut writer, reader, _) = open_disk(dir.path(), config);
    for i in 0..3u8 {
        model.commit_one(&mut writer, &reader, &vec![(1, vec![i; 100])]);
    }
    assert!(writer.preallocate_ahead());
    // A crash: the zeros stay.
    std::mem::forget(writer);
    drop(reader);
    let end = model.end();
    let path = segment_path(dir.path(), 0);
    let before = std::fs::read(&path).unwrap();
    for covered in [end + 1, end + 200, end + PREALLOCATE_CHUNK_BYTES] {
        match open(Arc::new(DiskStorage), dir.path(), config, covered) {
            Err(OpenError::LogBehindIndex { covered: c, end: e, .. }) => assert_eq!((c, e), (covered, end)),
            Ok(_) => panic!("open must fail when the index covers {covered} and the data ends at {end}"),
            Err(other) => panic!("expected LogBehindIndex, got {other}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), before, "a failed open changes nothing");
    }
    // Covered up to a transaction end inside the data: fine, zeros cut.
    let (_writer, reader, recovery) = open_disk_from(dir.path(), config, model.tx_ends[1]);
    assert_eq!(recovery.end_position, end);
    check_model(&reader, &model);
}

/// `is_framed_at` tells record starts (damaged or not) from positions
/// inside records, so a bad start position is rarely taken for damage.
#[test]
fn record_starts_are_framed_and_positions_inside_records_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let (mut writer, reader, _) = open_disk(dir.path(), LogConfig::default());
    for i in 0..20u8 {
        model.commit_one(
            &mut writer,
            &reader,
            &vec![(1, format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i as usize)).into_bytes())],
        );
    }
    let records = model.expected(&reader);
    let end = reader.committed_end();
    let starts: Vec<u64> = records.iter().map(|r| r.position).collect();
    for position in 0..end + 8 {
        assert_eq!(reader.is_framed_at(position), starts.contains(&position), "position {position}");
    }
    // A damaged payload leaves the frame: still a record start.
    let victim = &records[5];
    flip_byte(&last_segment_path(&reader), file_offset(0, victim.position) + 16, 0x01);
    assert!(reader.read(victim.position).is_err());
    assert!(reader.is_framed_at(victim.position));
}

/// A large record whose trailer no longer matches its length is refused
/// from the trailer alone, before the frame is read in full.
#[test]
fn a_large_record_with_a_bad_trailer_is_refused_by_its_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let (mut writer, reader, _) = open_disk(dir.path(), LogConfig::default());
    model.commit_one(&mut writer, &reader, &vec![(1, vec![7u8; 200 * 1024])]);
    model.commit_one(&mut writer, &reader, &vec![(1, vec![8u8; 40])]);
    let records = model.expected(&reader);
    assert_eq!(reader.read(records[0].position).unwrap().payload, records[0].payload);
    let trailer_at = records[1].position - 4;
    flip_byte(&last_segment_path(&reader), file_offset(0, trailer_at), 0x01);
    match reader.read(records[0].position) {
        Err(ReadError::BadRecord { position, reason: FrameError::TrailerMismatch, .. }) => {
            assert_eq!(position, records[0].position)
        }
        other => panic!("expected a trailer mismatch, got {other:?}"),
    }
    assert_eq!(reader.read(records[1].position).unwrap().payload, records[1].payload);
}
