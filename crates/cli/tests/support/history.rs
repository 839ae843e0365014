//! The history checker every fault test uses.
//!
//! A test records what its clients attempted and what each attempt came to
//! (acknowledged with its revisions and positions, rejected with an error
//! kind, or unknown because the process died first), reads the store back
//! through its checksummed read path, and calls [`check`]. The checker
//! reports every violation of the five invariants of issue 4:
//!
//! 1. every acknowledged append is present at the revisions and positions it
//!    was acknowledged with, with the bytes it was given;
//! 2. nothing unacknowledged is partially visible: an append is all or
//!    nothing, across streams, and its records are adjacent in `$all`;
//! 3. stream revisions are contiguous from 0 and `$all` positions strictly
//!    increase; a stream read agrees with `$all`;
//! 4. no two appends with the same exact expected revision (or `NoStream`)
//!    on one stream both took effect, and every append that took effect
//!    landed where its expectation said;
//! 5. nothing is returned as data that was not appended: every event read
//!    back belongs to an attempt and has the data fingerprint it was sent
//!    with. The read-back goes through `read_all`/`read_stream`, which check
//!    every CRC, and [`verify`] runs `stele verify` so a test can require it
//!    to agree.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::process::Command;

use steledb::{AllStart, Direction, ReadError, Store, StreamStart, Uuid};

/// Events read per `$all` page; bounds the memory of one read.
const READ_PAGE_EVENTS: usize = 10_000;

/// The expectation an append part was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expected {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

/// One event of an attempt: its id and the FNV-1a 64 of its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentEvent {
    pub id: Uuid,
    pub data_hash: u64,
}

/// The part of an append for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub stream: String,
    pub expected: Expected,
    pub events: Vec<SentEvent>,
}

/// What the store answered for one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartAck {
    pub first_revision: u64,
    pub last_revision: u64,
    pub first_position: u64,
    pub last_position: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// One acknowledgement per part, in part order.
    Acknowledged(Vec<PartAck>),
    Rejected {
        kind: String,
    },
    /// The process died before it answered.
    Unknown,
}

/// One append attempt and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub name: String,
    pub parts: Vec<Part>,
    pub outcome: Outcome,
}

impl Append {
    fn event_count(&self) -> usize {
        self.parts.iter().map(|p| p.events.len()).sum()
    }
}

/// Every append attempted, across all crashes of a test.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub appends: Vec<Append>,
    by_name: HashMap<String, usize>,
}

/// A line of `stele debug-load` output that is not in its documented format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine(pub String);

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a debug-load line: {:?}", self.0)
    }
}

impl History {
    pub fn push(&mut self, append: Append) {
        self.by_name.insert(append.name.clone(), self.appends.len());
        self.appends.push(append);
    }

    /// Takes one line of `stele debug-load` output (format in
    /// `crates/cli/src/load.rs`). Only the last line of a killed process can
    /// be cut short; callers pass `last_line_of_killed_process` for it, and
    /// a cut line then means "no answer" instead of an error.
    pub fn record_line(&mut self, line: &str, last_line_of_killed_process: bool) -> Result<(), BadLine> {
        match self.parse_line(line) {
            Some(()) => Ok(()),
            None if last_line_of_killed_process => Ok(()),
            None => Err(BadLine(line.to_owned())),
        }
    }

    fn parse_line(&mut self, line: &str) -> Option<()> {
        let mut words = line.split(' ');
        match words.next()? {
            "opened" => Some(()),
            "try" => {
                let name = words.next()?.to_owned();
                let parts = words.map(parse_part).collect::<Option<Vec<_>>>()?;
                (!parts.is_empty()).then_some(())?;
                self.push(Append { name, parts, outcome: Outcome::Unknown });
                Some(())
            }
            "ok" => {
                let name = words.next()?;
                let acks = words.map(parse_ack).collect::<Option<Vec<_>>>()?;
                let append = &mut self.appends[*self.by_name.get(name)?];
                (acks.len() == append.parts.len() && append.outcome == Outcome::Unknown).then_some(())?;
                append.outcome = Outcome::Acknowledged(acks);
                Some(())
            }
            "rejected" => {
                let name = words.next()?;
                let kind = words.next()?.to_owned();
                let append = &mut self.appends[*self.by_name.get(name)?];
                (append.outcome == Outcome::Unknown).then_some(())?;
                append.outcome = Outcome::Rejected { kind };
                Some(())
            }
            _ => None,
        }
    }

    pub fn count(&self, matches: impl Fn(&Append) -> bool) -> usize {
        self.appends.iter().filter(|a| matches(a)).count()
    }
}

/// `<stream>@<expected>:<id>/<hash>,...`
fn parse_part(text: &str) -> Option<Part> {
    let (head, events) = text.split_once(':')?;
    let (stream, expected) = head.split_once('@')?;
    let expected = match expected {
        "any" => Expected::Any,
        "no-stream" => Expected::NoStream,
        "exists" => Expected::StreamExists,
        revision => Expected::Exact(revision.parse().ok()?),
    };
    let events = events
        .split(',')
        .map(|event| {
            let (id, hash) = event.split_once('/')?;
            Some(SentEvent { id: Uuid::parse_str(id).ok()?, data_hash: u64::from_str_radix(hash, 16).ok()? })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Part { stream: stream.to_owned(), expected, events })
}

/// `<stream>:<first_rev>:<last_rev>:<first_pos>:<last_pos>`
fn parse_ack(text: &str) -> Option<PartAck> {
    let numbers: Vec<u64> = text.rsplitn(5, ':').take(4).map(|n| n.parse().ok()).collect::<Option<_>>()?;
    let [last_position, first_position, last_revision, first_revision] = numbers[..] else { return None };
    Some(PartAck { first_revision, last_revision, first_position, last_position })
}

/// FNV-1a 64, as `stele debug-load` fingerprints event data.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// One event as the store returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: Uuid,
    pub stream: String,
    pub revision: u64,
    pub position: u64,
    pub data_hash: u64,
}

/// Everything the store returns: all of `$all`, and each stream read by
/// itself (through the stream index, a separate path from `$all`).
#[derive(Debug, Default, Clone)]
pub struct ReadBack {
    pub all: Vec<StoredEvent>,
    pub streams: BTreeMap<String, Vec<StoredEvent>>,
}

impl ReadBack {
    /// Reads through the store's verified read path: a record whose CRC
    /// fails is an error here, never an event.
    pub fn from_store(store: &Store) -> Result<Self, ReadError> {
        let stored = |e: &steledb::RecordedEvent| StoredEvent {
            id: e.id,
            stream: e.stream().to_owned(),
            revision: e.revision,
            position: e.position,
            data_hash: fnv1a_64(e.data()),
        };
        let mut all = Vec::new();
        let mut start = AllStart::Start;
        loop {
            let page = store.read_all(start, Direction::Forward, READ_PAGE_EVENTS, None)?;
            all.extend(page.events.iter().map(stored));
            if page.is_end || page.events.is_empty() {
                break;
            }
            start = AllStart::Position(page.next_position);
        }
        let names: HashSet<&str> = all.iter().map(|e| e.stream.as_str()).collect();
        let mut streams = BTreeMap::new();
        for name in names {
            let events = store.read_stream(name, StreamStart::Start, Direction::Forward, usize::MAX)?;
            streams.insert(name.to_owned(), events.iter().map(stored).collect());
        }
        Ok(Self { all, streams })
    }
}

/// Leniency a test may grant, for faults that legitimately lose data.
#[derive(Debug, Default, Clone, Copy)]
pub struct CheckOptions {
    /// Acknowledged appends at or after this position may be missing, as
    /// long as what is missing is a whole tail of the log: for damage to the
    /// last segment, which recovery cannot tell from a torn write.
    pub lost_tail_from_position: Option<u64>,
}

/// One broken invariant, with what a person needs to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Invariant 1.
    AcknowledgedMissing { append: String, id: Uuid },
    /// Invariant 1: present, but not where the acknowledgement said.
    AcknowledgedMoved { append: String, id: Uuid, acknowledged: (String, u64, Option<u64>), found: (String, u64, u64) },
    /// Invariant 1 or 5: the bytes read back are not the bytes sent.
    DataChanged { id: Uuid, sent_hash: u64, read_hash: u64 },
    /// Invariant 1 with a lost tail allowed: the loss is not a tail.
    LostNotATail { append: String, first_position: u64, present_after: u64 },
    /// Invariant 2.
    PartiallyVisible { append: String, present: usize, total: usize },
    /// Invariant 2.
    RejectedVisible { append: String, kind: String },
    /// Invariant 2: another record sits between the records of one append.
    AppendInterleaved { append: String },
    /// Invariant 2: an event of a part landed in another stream, or its
    /// events are not consecutive revisions in the order sent.
    PartMisplaced { append: String, stream: String },
    /// Invariant 3.
    RevisionGap { stream: String, index: usize, revision: u64 },
    /// Invariant 3.
    PositionNotIncreasing { before: u64, after: u64 },
    /// Invariant 3: a stream read disagrees with `$all`.
    StreamDisagreesWithAll { stream: String, detail: String },
    /// Invariant 3 or 5: one event id returned twice.
    DuplicateEvent { id: Uuid },
    /// Invariant 4.
    ConflictingAppendsBothSucceeded { stream: String, expected: Expected, appends: (String, String) },
    /// Invariant 4: an append took effect somewhere its expectation forbids.
    ExpectationNotHonoured { append: String, stream: String, expected: Expected, first_revision: u64 },
    /// Invariant 5: an event no client appended.
    UnknownEvent { id: Uuid, position: u64 },
}

/// What a check covered, so a test can assert it checked something.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub acknowledged: usize,
    pub acknowledged_lost: usize,
    pub rejected: usize,
    pub unknown_landed: usize,
    pub unknown_absent: usize,
    pub multi_stream_acknowledged: usize,
}

/// Checks `read` against `history`; returns every violation found.
pub fn check(history: &History, read: &ReadBack, options: CheckOptions) -> Result<Summary, Vec<Violation>> {
    let mut violations = Vec::new();
    check_shape(read, &mut violations);
    // Where each event is: id -> index in $all.
    let mut located: HashMap<Uuid, usize> = HashMap::with_capacity(read.all.len());
    for (index, event) in read.all.iter().enumerate() {
        if located.insert(event.id, index).is_some() {
            violations.push(Violation::DuplicateEvent { id: event.id });
        }
    }
    let mut sent: HashSet<Uuid> = HashSet::new();
    let mut summary = Summary::default();
    // (stream, expectation) -> the first append that took effect with it.
    let mut took_effect: HashMap<(&str, Expected), &str> = HashMap::new();
    let mut lost: Vec<(&Append, u64)> = Vec::new();
    for append in &history.appends {
        let total = append.event_count();
        let mut present = 0;
        for part in &append.parts {
            for event in &part.events {
                sent.insert(event.id);
                if let Some(&index) = located.get(&event.id) {
                    present += 1;
                    let read_hash = read.all[index].data_hash;
                    if read_hash != event.data_hash {
                        violations.push(Violation::DataChanged { id: event.id, sent_hash: event.data_hash, read_hash });
                    }
                }
            }
        }
        if present > 0 && present < total {
            violations.push(Violation::PartiallyVisible { append: append.name.clone(), present, total });
        }
        match &append.outcome {
            Outcome::Rejected { kind } => {
                summary.rejected += 1;
                if present > 0 {
                    violations.push(Violation::RejectedVisible { append: append.name.clone(), kind: kind.clone() });
                }
            }
            Outcome::Acknowledged(acks) if present == 0 && total > 0 => {
                let first_position = acks.iter().map(|a| a.first_position).min().unwrap_or(0);
                match options.lost_tail_from_position {
                    Some(from) if first_position >= from => lost.push((append, first_position)),
                    _ => violations.extend(
                        append
                            .parts
                            .iter()
                            .flat_map(|p| &p.events)
                            .map(|e| Violation::AcknowledgedMissing { append: append.name.clone(), id: e.id }),
                    ),
                }
            }
            Outcome::Acknowledged(acks) => {
                summary.acknowledged += 1;
                if append.parts.len() > 1 {
                    summary.multi_stream_acknowledged += 1;
                }
                check_acknowledged(append, acks, read, &located, &mut violations);
            }
            Outcome::Unknown if present == 0 => summary.unknown_absent += 1,
            Outcome::Unknown => summary.unknown_landed += 1,
        }
        if present == total && total > 0 {
            check_landed(append, read, &located, &mut took_effect, &mut violations);
        }
    }
    for event in &read.all {
        if !sent.contains(&event.id) {
            violations.push(Violation::UnknownEvent { id: event.id, position: event.position });
        }
    }
    summary.acknowledged_lost = lost.len();
    let present_max = read.all.last().map(|e| e.position);
    for (append, first_position) in lost {
        if let Some(present_after) = present_max.filter(|&p| p > first_position) {
            violations.push(Violation::LostNotATail { append: append.name.clone(), first_position, present_after });
        }
    }
    if violations.is_empty() {
        Ok(summary)
    } else {
        Err(violations)
    }
}

/// Invariant 3, from the read-back alone.
fn check_shape(read: &ReadBack, violations: &mut Vec<Violation>) {
    for pair in read.all.windows(2) {
        if pair[0].position >= pair[1].position {
            violations.push(Violation::PositionNotIncreasing { before: pair[0].position, after: pair[1].position });
        }
    }
    let mut from_all: BTreeMap<&str, Vec<&StoredEvent>> = BTreeMap::new();
    for event in &read.all {
        from_all.entry(&event.stream).or_default().push(event);
    }
    for (stream, events) in &read.streams {
        for (index, event) in events.iter().enumerate() {
            if event.revision != index as u64 {
                violations.push(Violation::RevisionGap { stream: stream.clone(), index, revision: event.revision });
            }
        }
        let in_all = from_all.remove(stream.as_str()).unwrap_or_default();
        if let Some(detail) = disagreement(events, &in_all) {
            violations.push(Violation::StreamDisagreesWithAll { stream: stream.clone(), detail });
        }
    }
    for (stream, events) in from_all {
        violations.push(Violation::StreamDisagreesWithAll {
            stream: stream.to_owned(),
            detail: format!("{} events in $all, the stream was not read back", events.len()),
        });
    }
}

fn disagreement(stream: &[StoredEvent], all: &[&StoredEvent]) -> Option<String> {
    if stream.len() != all.len() {
        return Some(format!("{} events in the stream, {} in $all", stream.len(), all.len()));
    }
    let index = stream.iter().zip(all).position(|(a, b)| a != *b)?;
    Some(format!("event {index} differs: {:?} in the stream, {:?} in $all", stream[index], all[index]))
}

/// Invariant 1 for one acknowledged append that is (at least partly) present.
fn check_acknowledged(
    append: &Append,
    acks: &[PartAck],
    read: &ReadBack,
    located: &HashMap<Uuid, usize>,
    violations: &mut Vec<Violation>,
) {
    for (part, ack) in append.parts.iter().zip(acks) {
        let count = part.events.len() as u64;
        let revisions_fit = ack.last_revision.checked_sub(ack.first_revision) == Some(count.saturating_sub(1));
        for (i, event) in part.events.iter().enumerate() {
            let revision = ack.first_revision + i as u64;
            let position = match i {
                0 => Some(ack.first_position),
                _ if i as u64 + 1 == count => Some(ack.last_position),
                _ => None,
            };
            let acknowledged = (part.stream.clone(), revision, position);
            let Some(&index) = located.get(&event.id) else {
                violations.push(Violation::AcknowledgedMissing { append: append.name.clone(), id: event.id });
                continue;
            };
            let at = &read.all[index];
            let moved = at.stream != part.stream
                || at.revision != revision
                || position.is_some_and(|p| p != at.position)
                || !revisions_fit;
            if moved {
                violations.push(Violation::AcknowledgedMoved {
                    append: append.name.clone(),
                    id: event.id,
                    acknowledged,
                    found: (at.stream.clone(), at.revision, at.position),
                });
            }
        }
    }
}

/// Invariants 2 and 4 for an append whose events are all present, whatever
/// its outcome: each part in its stream at consecutive revisions in the
/// order sent, all records adjacent in `$all`, where the expectation said.
fn check_landed<'a>(
    append: &'a Append,
    read: &ReadBack,
    located: &HashMap<Uuid, usize>,
    took_effect: &mut HashMap<(&'a str, Expected), &'a str>,
    violations: &mut Vec<Violation>,
) {
    let mut indexes: Vec<usize> = append.parts.iter().flat_map(|p| &p.events).map(|e| located[&e.id]).collect();
    indexes.sort_unstable();
    if indexes.windows(2).any(|w| w[0] + 1 != w[1]) {
        violations.push(Violation::AppendInterleaved { append: append.name.clone() });
    }
    for part in &append.parts {
        let events: Vec<&StoredEvent> = part.events.iter().map(|e| &read.all[located[&e.id]]).collect();
        let in_place = events.iter().all(|e| e.stream == part.stream)
            && events.windows(2).all(|w| w[0].revision + 1 == w[1].revision);
        if !in_place {
            violations.push(Violation::PartMisplaced { append: append.name.clone(), stream: part.stream.clone() });
            continue;
        }
        let first_revision = events[0].revision;
        let honoured = match part.expected {
            Expected::Any => true,
            Expected::NoStream => first_revision == 0,
            Expected::StreamExists => first_revision > 0,
            Expected::Exact(revision) => first_revision == revision + 1,
        };
        if !honoured {
            violations.push(Violation::ExpectationNotHonoured {
                append: append.name.clone(),
                stream: part.stream.clone(),
                expected: part.expected,
                first_revision,
            });
        }
        if matches!(part.expected, Expected::NoStream | Expected::Exact(_)) {
            if let Some(earlier) = took_effect.insert((&part.stream, part.expected), &append.name) {
                violations.push(Violation::ConflictingAppendsBothSucceeded {
                    stream: part.stream.clone(),
                    expected: part.expected,
                    appends: (earlier.to_owned(), append.name.clone()),
                });
            }
        }
    }
}

/// What `stele verify` said about a data directory.
#[derive(Debug)]
pub struct Verify {
    /// 0: clean; 1: the store refuses to open; 2: damage found by the scan.
    pub exit_code: i32,
    /// stdout and stderr together.
    pub output: String,
}

/// Runs `stele verify` (the store must not be open in this process).
pub fn verify(data_dir: &Path) -> Verify {
    let output =
        Command::new(env!("CARGO_BIN_EXE_stele")).arg("verify").arg(data_dir).output().expect("run stele verify");
    Verify {
        exit_code: output.status.code().expect("stele verify exited by a signal"),
        output: format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    }
}

/// Opens the store, reads it back and checks it, then requires `stele
/// verify` to find it clean: the whole of a crash test's check after one
/// restart. Panics with every violation.
pub fn check_directory(history: &History, data_dir: &Path, context: &str) -> Summary {
    let store = Store::open(data_dir).unwrap_or_else(|e| panic!("{context}: the store does not open: {e}"));
    let read = ReadBack::from_store(&store).unwrap_or_else(|e| panic!("{context}: reading the store back failed: {e}"));
    drop(store);
    let summary = check(history, &read, CheckOptions::default())
        .unwrap_or_else(|violations| panic!("{context}: {} violations: {violations:#?}", violations.len()));
    let verified = verify(data_dir);
    assert_eq!(verified.exit_code, 0, "{context}: stele verify disagrees: {}", verified.output);
    summary
}
