//! Property tests of the embedded store against real files (every append
//! really fsyncs, so the case counts and workloads are kept small):
//!
//! 1. a model test: random single- and multi-stream appends with random
//!    expectations, retries and reopens, checked against an in-memory model;
//! 2. determinism: replaying the log, with no index or an old one, gives
//!    the same derived state (digest) and the same events, stamps included;
//! 3. damage: corrupting a segment file never makes the store return an
//!    acknowledged event changed: it fails to open, returns an error, or
//!    loses a whole tail of the log.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use steledb::{
    AllStart, AppendError, AppendResult, Clock, CurrentRevision, Direction, ExpectedRevision, ManualClock, NewEvent,
    ReadError, RecordedEvent, RecordedEventParts, Store, StoreConfig, StreamAppend, StreamStart, Uuid,
};

const STREAMS: [&str; 4] = ["order-1", "order-2", "cart-7", "user-x"];
/// More than any test here ever writes.
const READ_LIMIT: usize = 100_000;

fn open_store(config: StoreConfig) -> Store {
    Store::open_with(config).unwrap_or_else(|error| panic!("open failed: {error}"))
}

/// The `n`th event of a test: ids are unique within a test case, and the
/// content varies in type, content type, size and metadata.
fn make_event(n: u64, data_bytes: usize) -> NewEvent {
    let id = Uuid::from_u64_pair(0x5745_4c45_4d4f_4445, n);
    let blob: Vec<u8> = (0..data_bytes).map(|i| (i as u64).wrapping_mul(31).wrapping_add(n) as u8).collect();
    match n % 3 {
        0 => {
            let data = format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(data_bytes));
            NewEvent::json(id, format!("Happened{}", n % 5), data.into_bytes())
        }
        1 => NewEvent::binary(id, "Blob", blob),
        _ => NewEvent::binary(id, "WithMeta", blob).with_metadata(format!("{{\"seq\":{n}}}").into_bytes()),
    }
}

/// What an acknowledged event must read back as (the stamp aside).
#[derive(Debug, Clone)]
struct Expected {
    stream: String,
    revision: u64,
    position: u64,
    event: NewEvent,
}

impl Expected {
    fn recorded(&self, recorded_at_us: u64) -> RecordedEvent {
        RecordedEvent::new(RecordedEventParts {
            id: self.event.id,
            stream: &self.stream,
            revision: self.revision,
            position: self.position,
            event_type: &self.event.event_type,
            content_type: &self.event.content_type,
            data: &self.event.data,
            metadata: &self.event.metadata,
            recorded_at_us,
        })
    }

    fn check(&self, got: &RecordedEvent) {
        assert_eq!(got, &self.recorded(got.recorded_at_us), "read back differs from what was appended");
    }
}

// ---------------------------------------------------------------------------
// 1. The model test.
// ---------------------------------------------------------------------------

/// An expectation, chosen relative to the stream's true state when the
/// operation runs.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// `Exact(true last revision + delta)`, clamped at 0 (the "last
    /// revision" of a missing stream counts as -1).
    Near(i64),
    /// An absurd exact revision, which can never match.
    Raw(u64),
}

fn expect_strategy() -> impl Strategy<Value = Expect> {
    prop_oneof![
        2 => Just(Expect::Any),
        2 => Just(Expect::NoStream),
        2 => Just(Expect::StreamExists),
        4 => Just(Expect::Near(0)),
        3 => (-2i64..=2).prop_map(Expect::Near),
        1 => prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), Just(u64::MAX / 2)].prop_map(Expect::Raw),
    ]
}

fn resolve(expect: Expect, last: Option<u64>) -> ExpectedRevision {
    match expect {
        Expect::Any => ExpectedRevision::Any,
        Expect::NoStream => ExpectedRevision::NoStream,
        Expect::StreamExists => ExpectedRevision::StreamExists,
        Expect::Near(delta) => {
            let base = last.map_or(-1, |l| l as i64);
            ExpectedRevision::Exact((base + delta).max(0) as u64)
        }
        Expect::Raw(n) => ExpectedRevision::Exact(n),
    }
}

fn satisfied(expected: ExpectedRevision, last: Option<u64>) -> bool {
    match expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::NoStream => last.is_none(),
        ExpectedRevision::StreamExists => last.is_some(),
        ExpectedRevision::Exact(n) => last == Some(n),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: usize,
        expect: Expect,
        count: usize,
    },
    /// Two different streams, each with its own expectation.
    Multi {
        first: usize,
        skip: usize,
        expects: (Expect, Expect),
        counts: (usize, usize),
    },
    /// Repeat an earlier successful append (if there is one).
    Retry(Index),
    /// Close the store and open it again.
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let stream = 0..STREAMS.len();
    prop_oneof![
        5 => (stream.clone(), expect_strategy(), 1usize..=3)
            .prop_map(|(stream, expect, count)| Op::Append { stream, expect, count }),
        2 => (stream, 1..STREAMS.len(), (expect_strategy(), expect_strategy()), (1usize..=3, 1usize..=3))
            .prop_map(|(first, skip, expects, counts)| Op::Multi { first, skip, expects, counts }),
        2 => any::<Index>().prop_map(Op::Retry),
        1 => Just(Op::Reopen),
    ]
}

/// An acknowledged append, kept to retry it.
#[derive(Debug, Clone)]
struct Done {
    parts: Vec<StreamAppend>,
    results: Vec<AppendResult>,
    multi: bool,
}

#[derive(Debug, Default)]
struct Model {
    /// Every acknowledged event, in append (= log) order.
    log: Vec<Expected>,
    /// Stream -> indexes into `log`, by revision.
    streams: HashMap<String, Vec<usize>>,
    done: Vec<Done>,
    next_event: u64,
}

impl Model {
    fn last(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).and_then(|s| s.len().checked_sub(1)).map(|n| n as u64)
    }

    fn stream(&self, stream: &str) -> Vec<&Expected> {
        self.streams.get(stream).map_or_else(Vec::new, |s| s.iter().map(|&i| &self.log[i]).collect())
    }

    fn new_events(&mut self, count: usize) -> Vec<NewEvent> {
        (0..count)
            .map(|_| {
                self.next_event += 1;
                make_event(self.next_event, (self.next_event % 23) as usize * 3)
            })
            .collect()
    }
}

fn run_append(store: &Store, parts: &[StreamAppend], multi: bool) -> Result<Vec<AppendResult>, AppendError> {
    if multi {
        store.append_multi(parts.to_vec())
    } else {
        let part = &parts[0];
        store.append(&part.stream, part.expected, part.events.clone()).map(|r| vec![r])
    }
}

/// Runs a fresh append and checks the outcome against the model, then
/// updates the model.
fn apply_new(store: &Store, model: &mut Model, parts: Vec<StreamAppend>, multi: bool) {
    let end_before = store.end_position();
    let failing = parts.iter().find(|p| !satisfied(p.expected, model.last(&p.stream)));
    let outcome = run_append(store, &parts, multi);
    match (failing, outcome) {
        (None, Ok(results)) => {
            assert_eq!(results.len(), parts.len());
            let end_after = store.end_position();
            assert!(end_after > end_before, "a successful append must move the end");
            let mut previous_position = None;
            for (part, result) in parts.iter().zip(&results) {
                let first = model.last(&part.stream).map_or(0, |l| l + 1);
                let count = part.events.len() as u64;
                assert!(!result.duplicate, "fresh ids reported as a duplicate: {result:?}");
                assert_eq!((result.first_revision, result.last_revision), (first, first + count - 1));
                // The new events read back at once, at the positions reported.
                let read = store
                    .read_stream(&part.stream, StreamStart::Revision(first), Direction::Forward, part.events.len())
                    .unwrap_or_else(|e| panic!("reading back {}: {e}", part.stream));
                assert_eq!(read.len(), part.events.len());
                assert_eq!(read[0].position, result.first_position);
                assert_eq!(read[read.len() - 1].position, result.last_position);
                for (i, (event, got)) in part.events.iter().zip(&read).enumerate() {
                    // The first event of the first part goes exactly at the old end.
                    match previous_position {
                        None => assert_eq!(got.position, end_before),
                        Some(p) => assert!(got.position > p, "positions must grow within an append"),
                    }
                    assert!(got.position < end_after);
                    previous_position = Some(got.position);
                    let expected = Expected {
                        stream: part.stream.clone(),
                        revision: first + i as u64,
                        position: got.position,
                        event: event.clone(),
                    };
                    expected.check(got);
                    model.streams.entry(part.stream.clone()).or_default().push(model.log.len());
                    model.log.push(expected);
                }
            }
            model.done.push(Done { parts, results, multi });
        }
        (Some(part), Err(AppendError::WrongExpectedRevision { stream, expected, actual })) => {
            let want_actual = model.last(&part.stream).map_or(CurrentRevision::NoStream, CurrentRevision::Current);
            assert_eq!((stream.as_str(), expected, actual), (part.stream.as_str(), part.expected, want_actual));
            assert_eq!(store.end_position(), end_before, "a failed append wrote something");
            for part in &parts {
                assert_eq!(store.stream_revision(&part.stream).unwrap(), model.last(&part.stream));
            }
        }
        (failing, outcome) => {
            panic!("append {parts:?}: model predicted failure on {failing:?}, store answered {outcome:?}")
        }
    }
}

/// Repeats an acknowledged append: it must be recognised as a duplicate
/// with the original revisions and positions, and write nothing.
fn retry(store: &Store, done: &Done) {
    let end_before = store.end_position();
    let outcome = run_append(store, &done.parts, done.multi);
    let expected: Vec<AppendResult> = done.results.iter().map(|r| AppendResult { duplicate: true, ..*r }).collect();
    match outcome {
        Ok(results) => assert_eq!(results, expected, "retry of {:?}", done.parts),
        Err(error) => panic!("retry of {:?} failed: {error}", done.parts),
    }
    assert_eq!(store.end_position(), end_before, "a retry wrote something");
}

fn run_ops(mut store: Store, config: &StoreConfig, model: &mut Model, ops: &[Op]) -> Store {
    for op in ops {
        match *op {
            Op::Append { stream, expect, count } => {
                let stream = STREAMS[stream];
                let expected = resolve(expect, model.last(stream));
                let events = model.new_events(count);
                apply_new(&store, model, vec![StreamAppend::new(stream, expected, events)], false);
            }
            Op::Multi { first, skip, expects, counts } => {
                let a = STREAMS[first];
                let b = STREAMS[(first + skip) % STREAMS.len()];
                let parts = vec![
                    StreamAppend::new(a, resolve(expects.0, model.last(a)), model.new_events(counts.0)),
                    StreamAppend::new(b, resolve(expects.1, model.last(b)), model.new_events(counts.1)),
                ];
                apply_new(&store, model, parts, true);
            }
            Op::Retry(pick) => {
                if !model.done.is_empty() {
                    let done = model.done[pick.index(model.done.len())].clone();
                    retry(&store, &done);
                }
            }
            Op::Reopen => {
                let end = store.end_position();
                let digest = store.state_digest().unwrap();
                // Closed (and unlocked) before the new one opens.
                drop(store);
                store = open_store(config.clone());
                assert_eq!(store.end_position(), end);
                assert_eq!(store.state_digest().unwrap(), digest);
            }
        }
    }
    store
}

fn check_events(got: &[RecordedEvent], want: &[&Expected]) {
    assert_eq!(got.len(), want.len(), "got {got:?}");
    for (got, want) in got.iter().zip(want) {
        want.check(got);
    }
}

/// Reads everything back every way and compares with the model.
fn check_against_model(store: &Store, model: &Model) {
    for stream in STREAMS {
        let want = model.stream(stream);
        for (i, event) in want.iter().enumerate() {
            assert_eq!(event.revision, i as u64, "the model itself is contiguous");
        }
        assert_eq!(store.stream_revision(stream).unwrap(), model.last(stream));
        let forward = store.read_stream(stream, StreamStart::Start, Direction::Forward, READ_LIMIT);
        let backward = store.read_stream(stream, StreamStart::End, Direction::Backward, READ_LIMIT);
        if want.is_empty() {
            for result in [forward, backward] {
                match result {
                    Err(ReadError::StreamNotFound { stream: name }) => assert_eq!(name, stream),
                    other => panic!("reading the empty stream {stream}: {other:?}"),
                }
            }
            continue;
        }
        check_events(&forward.unwrap(), &want);
        let mut reversed = want.clone();
        reversed.reverse();
        check_events(&backward.unwrap(), &reversed);
        // Pages from the middle, both ways, and past the end.
        let mid = want.len() / 2;
        let page = store.read_stream(stream, StreamStart::Revision(mid as u64), Direction::Forward, 2).unwrap();
        check_events(&page, &want[mid..(mid + 2).min(want.len())]);
        let page = store.read_stream(stream, StreamStart::Revision(mid as u64), Direction::Backward, 2).unwrap();
        let mut expected: Vec<&Expected> = want[mid.saturating_sub(1)..=mid].to_vec();
        expected.reverse();
        check_events(&page, &expected);
        assert!(store.read_stream(stream, StreamStart::End, Direction::Forward, 10).unwrap().is_empty());
        let beyond = StreamStart::Revision(want.len() as u64 + 5);
        assert!(store.read_stream(stream, beyond, Direction::Forward, 10).unwrap().is_empty());
    }

    let log: Vec<&Expected> = model.log.iter().collect();
    let end = store.end_position();
    let all = store.read_all(AllStart::Start, Direction::Forward, READ_LIMIT, None).unwrap();
    assert!(all.is_end);
    assert_eq!(all.next_position, end);
    assert!(all.events.windows(2).all(|w| w[0].position < w[1].position), "$all positions must grow");
    check_events(&all.events, &log);
    let mut reversed = log.clone();
    reversed.reverse();
    let back = store.read_all(AllStart::End, Direction::Backward, READ_LIMIT, None).unwrap();
    assert!(back.is_end);
    check_events(&back.events, &reversed);

    // Small pages must add up to the same.
    let mut paged = Vec::new();
    let mut start = AllStart::Start;
    for _ in 0..=log.len() {
        let slice = store.read_all(start, Direction::Forward, 3, None).unwrap();
        paged.extend(slice.events);
        if slice.is_end {
            break;
        }
        start = AllStart::Position(slice.next_position);
    }
    check_events(&paged, &log);
    let mut paged = Vec::new();
    let mut start = AllStart::End;
    for _ in 0..=log.len() {
        let slice = store.read_all(start, Direction::Backward, 3, None).unwrap();
        paged.extend(slice.events);
        if slice.is_end {
            break;
        }
        start = AllStart::Position(slice.next_position);
    }
    check_events(&paged, &reversed);

    for expected in &model.log {
        expected.check(&store.read_event_at(expected.position).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Random appends, multi-stream appends and retries agree with a simple
    /// model, and a reopened store still does.
    #[test]
    fn store_follows_the_model(
        ops in vec(op_strategy(), 1..40),
        // Tiny memtables put the heads the writer checks expectations
        // against in index tables, not just in memory.
        memtable_entries_max in prop_oneof![Just(4usize), Just(262_144)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig { index_memtable_entries_max: memtable_entries_max, ..StoreConfig::new(dir.path()) };
        let mut model = Model::default();
        let store = run_ops(open_store(config.clone()), &config, &mut model, &ops);
        check_against_model(&store, &model);
        let digest = store.state_digest().unwrap();
        let end = store.end_position();
        drop(store);

        let store = open_store(config);
        prop_assert_eq!(store.end_position(), end);
        check_against_model(&store, &model);
        prop_assert_eq!(store.state_digest().unwrap(), digest);
        // Retries stay idempotent across a restart, whatever the expectation:
        // the window of recent appends is rebuilt from the log.
        for done in &model.done {
            retry(&store, done);
        }
        prop_assert_eq!(store.state_digest().unwrap(), digest);
    }
}

// ---------------------------------------------------------------------------
// 2. Determinism of replay.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct TimedAppend {
    streams: (usize, usize),
    multi: bool,
    exact: bool,
    counts: (usize, usize),
    advance_us: u64,
}

fn timed_append_strategy() -> impl Strategy<Value = TimedAppend> {
    (
        (0..3usize, 1..3usize),
        prop::bool::weighted(0.25),
        any::<bool>(),
        (1usize..=3, 1usize..=2),
        prop_oneof![1 => Just(0u64), 4 => 1u64..5_000],
    )
        .prop_map(|((first, skip), multi, exact, counts, advance_us)| TimedAppend {
            streams: (first, (first + skip) % 3),
            multi,
            exact,
            counts,
            advance_us,
        })
}

/// Everything a reader can see, for comparing a store before and after a reopen.
fn visible_state(store: &Store) -> (u64, Vec<RecordedEvent>, Vec<Vec<RecordedEvent>>) {
    let all = store.read_all(AllStart::Start, Direction::Forward, READ_LIMIT, None).unwrap();
    let streams = STREAMS
        .iter()
        .map(|s| match store.read_stream(s, StreamStart::Start, Direction::Forward, READ_LIMIT) {
            Ok(events) => events,
            Err(ReadError::StreamNotFound { .. }) => Vec::new(),
            Err(error) => panic!("reading {s}: {error}"),
        })
        .collect();
    (store.state_digest().unwrap(), all.events, streams)
}

struct Timed {
    clock: Arc<ManualClock>,
    /// Event id -> the clock when it was appended.
    stamps: HashMap<Uuid, u64>,
    heads: [Option<u64>; 3],
    next_event: u64,
    events: u64,
    done: Vec<Done>,
}

impl Timed {
    fn run(&mut self, store: &Store, appends: &[TimedAppend]) {
        for append in appends {
            self.clock.advance_us(append.advance_us);
            let now = self.clock.now_us();
            let mut parts = Vec::new();
            let streams = if append.multi { vec![append.streams.0, append.streams.1] } else { vec![append.streams.0] };
            for (k, &stream) in streams.iter().enumerate() {
                let count = if k == 0 { append.counts.0 } else { append.counts.1 };
                let expected = match (append.exact, self.heads[stream]) {
                    (false, _) => ExpectedRevision::Any,
                    (true, None) => ExpectedRevision::NoStream,
                    (true, Some(last)) => ExpectedRevision::Exact(last),
                };
                let events: Vec<NewEvent> = (0..count)
                    .map(|_| {
                        self.next_event += 1;
                        make_event(self.next_event, (self.next_event % 7) as usize * 10)
                    })
                    .collect();
                for event in &events {
                    self.stamps.insert(event.id, now);
                }
                self.heads[stream] = Some(self.heads[stream].map_or(count as u64 - 1, |l| l + count as u64));
                self.events += count as u64;
                parts.push(StreamAppend::new(STREAMS[stream], expected, events));
            }
            let results = store.append_multi(parts.clone()).unwrap_or_else(|e| panic!("append failed: {e}"));
            assert!(results.iter().all(|r| !r.duplicate));
            self.done.push(Done { parts, results, multi: true });
        }
    }

    fn check_stamps(&self, events: &[RecordedEvent]) {
        assert_eq!(events.len() as u64, self.events);
        for event in events {
            assert_eq!(Some(&event.recorded_at_us), self.stamps.get(&event.id), "stamp of {event:?}");
        }
    }
}

fn timed_config(dir: &Path, clock: &Arc<ManualClock>) -> StoreConfig {
    StoreConfig { index_memtable_entries_max: 16, clock: clock.clone(), ..StoreConfig::new(dir) }
}

/// Copies the files of `from`, starting over when one vanishes under it: a
/// background index merge may delete the tables it merged mid-copy.
fn copy_dir(from: &Path, to: &Path) {
    'again: loop {
        let _ = std::fs::remove_dir_all(to);
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            match std::fs::copy(entry.path(), to.join(entry.file_name())) {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue 'again,
                Err(error) => panic!("copying {}: {error}", entry.path().display()),
            }
        }
        return;
    }
}

/// Returns once the writer is idle: a request that fails its expectation is
/// answered only after the batches before it, index flushes included, are done.
fn wait_for_writer(store: &Store) {
    let probe = make_event(u64::MAX, 0);
    match store.append(STREAMS[3], ExpectedRevision::Exact(u64::MAX / 2), vec![probe]) {
        Err(AppendError::WrongExpectedRevision { .. }) => {}
        other => panic!("the probe append must fail: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// With a manual clock, replaying the log rebuilds exactly the state the
    /// live run built, through index flushes and merges, whether the index
    /// is gone (full replay) or old (as a crash before later flushes leaves
    /// it); and every event keeps the time it was appended at.
    #[test]
    fn replay_rebuilds_the_same_state(
        first in vec(timed_append_strategy(), 120..200),
        second in vec(timed_append_strategy(), 20..80),
        cuts in (any::<Index>(), any::<Index>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
        let mut timed = Timed {
            clock: clock.clone(),
            stamps: HashMap::new(),
            heads: [None; 3],
            next_event: 0,
            events: 0,
            done: Vec::new(),
        };
        let index_dir = dir.path().join("index");
        let mut store = open_store(timed_config(dir.path(), &clock));
        for (appends, cut) in [(&first, cuts.0), (&second, cuts.1)] {
            let cut = cut.index(appends.len() + 1);
            timed.run(&store, &appends[..cut]);
            wait_for_writer(&store);
            let old_index = tempfile::tempdir().unwrap();
            copy_dir(&index_dir, old_index.path());
            timed.run(&store, &appends[cut..]);
            let live = visible_state(&store);
            timed.check_stamps(&live.1);
            let end = store.end_position();
            drop(store);

            // A clean close flushed the index: nothing is replayed.
            store = open_store(timed_config(dir.path(), &clock));
            prop_assert_eq!(store.open_report().index_checkpoint, end);
            prop_assert_eq!(store.open_report().replayed_events, 0);
            prop_assert_eq!(&visible_state(&store), &live);
            drop(store);

            // With the older index, the log after its checkpoint is replayed.
            std::fs::remove_dir_all(&index_dir).unwrap();
            copy_dir(old_index.path(), &index_dir);
            store = open_store(timed_config(dir.path(), &clock));
            let checkpoint = store.open_report().index_checkpoint;
            let after_checkpoint = live.1.iter().filter(|e| e.position >= checkpoint).count() as u64;
            prop_assert_eq!(store.open_report().replayed_events, after_checkpoint);
            prop_assert_eq!(&visible_state(&store), &live);
            // The window of recent appends was rebuilt, before and after the
            // checkpoint: every append is recognised as a retry.
            for done in &timed.done {
                retry(&store, done);
            }
            prop_assert_eq!(&visible_state(&store), &live);
            drop(store);

            // Without the index, everything is replayed from the log.
            std::fs::remove_dir_all(&index_dir).unwrap();
            store = open_store(timed_config(dir.path(), &clock));
            prop_assert_eq!(store.open_report().index_checkpoint, 0);
            prop_assert_eq!(store.open_report().replayed_events, timed.events);
            prop_assert_eq!(store.end_position(), end);
            prop_assert_eq!(&visible_state(&store), &live);
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Damage to a segment file.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Damage {
    /// Cut the file at an offset past the segment header.
    Truncate(Index),
    /// Flip one bit of a byte past the segment header.
    FlipBit(Index, u8),
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Damage::FlipBit(at, bit)),
    ]
}

const SEGMENT_HEADER_BYTES: u64 = 32;

fn damage_file(path: &Path, damage: &Damage) {
    let file = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    assert!(len > SEGMENT_HEADER_BYTES, "{} holds no records", path.display());
    let span = (len - SEGMENT_HEADER_BYTES) as usize;
    match damage {
        Damage::Truncate(at) => file.set_len(SEGMENT_HEADER_BYTES + at.index(span) as u64).unwrap(),
        Damage::FlipBit(at, bit) => {
            let offset = SEGMENT_HEADER_BYTES + at.index(span) as u64;
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, offset).unwrap();
            byte[0] ^= 1 << bit;
            file.write_all_at(&byte, offset).unwrap();
        }
    }
    file.sync_all().unwrap();
}

/// How one acknowledged event reads back after the damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Intact,
    Error,
    Missing,
}

fn small_segments(dir: &Path) -> StoreConfig {
    StoreConfig { segment_size_bytes: 4096, ..StoreConfig::new(dir) }
}

/// Missing events must form a tail of the log: once one is missing, every
/// later one is too.
fn assert_lost_only_a_tail(seen: &[Seen], how: &str) {
    if let Some(first_missing) = seen.iter().position(|&s| s == Seen::Missing) {
        assert!(
            seen[first_missing..].iter().all(|&s| s == Seen::Missing),
            "{how}: event {first_missing} is missing but later ones are not: {seen:?}"
        );
    }
}

fn check_after_damage(store: &Store, acked: &[Expected]) {
    let end = store.end_position();
    // By position.
    let mut seen = Vec::new();
    for expected in acked {
        seen.push(match store.read_event_at(expected.position) {
            Ok(event) => {
                expected.check(&event);
                Seen::Intact
            }
            Err(_) if expected.position >= end => Seen::Missing,
            Err(_) => Seen::Error,
        });
    }
    assert_lost_only_a_tail(&seen, "read_event_at");
    // Through the stream index.
    let mut seen = Vec::new();
    for expected in acked {
        let start = StreamStart::Revision(expected.revision);
        seen.push(match store.read_stream(&expected.stream, start, Direction::Forward, 1) {
            Ok(events) if events.is_empty() => Seen::Missing,
            Ok(events) => {
                assert_eq!(events.len(), 1);
                expected.check(&events[0]);
                Seen::Intact
            }
            Err(ReadError::StreamNotFound { .. }) => Seen::Missing,
            Err(_) => Seen::Error,
        });
    }
    assert_lost_only_a_tail(&seen, "read_stream");
    // A full scan that succeeds returns every event below the end, unchanged.
    if let Ok(all) = store.read_all(AllStart::Start, Direction::Forward, READ_LIMIT, None) {
        let kept: Vec<&Expected> = acked.iter().filter(|e| e.position < end).collect();
        check_events(&all.events, &kept);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever single damage a segment file takes, the store never returns
    /// an acknowledged event changed.
    #[test]
    fn damage_never_changes_an_acknowledged_event(
        appends in vec((0..3usize, 40usize..300), 30..60),
        // Half the time the last segment, whose tail recovery handles.
        segment in prop_oneof![Just(None), any::<Index>().prop_map(Some)],
        damage in damage_strategy(),
        delete_index in prop::bool::weighted(0.3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(small_segments(dir.path()));
        let mut acked = Vec::new();
        for (n, &(stream, data_bytes)) in appends.iter().enumerate() {
            let event = make_event(n as u64, data_bytes);
            let stream = STREAMS[stream];
            let result = store.append(stream, ExpectedRevision::Any, vec![event.clone()]).unwrap();
            acked.push(Expected { stream: stream.to_owned(), revision: result.first_revision, position: result.first_position, event });
        }
        let segments: Vec<PathBuf> = store.segments().into_iter().map(|s| s.path).collect();
        prop_assert!(segments.len() >= 2, "the workload must span several segments");
        drop(store);

        let damaged = &segments[segment.map_or(segments.len() - 1, |s| s.index(segments.len()))];
        damage_file(damaged, &damage);
        if delete_index {
            std::fs::remove_dir_all(dir.path().join("index")).unwrap();
        }
        match Store::open_with(small_segments(dir.path())) {
            Err(error) => {
                let message = error.to_string();
                prop_assert!(
                    message.contains(&damaged.display().to_string()),
                    "the open error does not name the damaged file {}: {}", damaged.display(), message
                );
            }
            Ok(store) => check_after_damage(&store, &acked),
        }
    }
}
