//! The history checker must be able to fail: each test hands it a history
//! and a read-back that break one invariant and requires that exact
//! violation, next to a clean case that must pass.

mod support;

use std::collections::BTreeMap;

use steledb::Uuid;
use support::history::{
    check, fnv1a_64, Append, CheckOptions, Expected, History, Outcome, Part, PartAck, ReadBack, SentEvent, StoredEvent,
    Violation,
};

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn hash(n: u128) -> u64 {
    fnv1a_64(&n.to_le_bytes())
}

fn part(stream: &str, expected: Expected, ids: &[u128]) -> Part {
    let events = ids.iter().map(|&n| SentEvent { id: id(n), data_hash: hash(n) }).collect();
    Part { stream: stream.to_owned(), expected, events }
}

/// Positions are 100 apart; `layout` lists (id, stream, revision) in log order.
fn read_back(layout: &[(u128, &str, u64)]) -> ReadBack {
    let all: Vec<StoredEvent> = layout
        .iter()
        .enumerate()
        .map(|(i, &(n, stream, revision))| StoredEvent {
            id: id(n),
            stream: stream.to_owned(),
            revision,
            position: 100 * i as u64,
            data_hash: hash(n),
        })
        .collect();
    let mut streams: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
    for event in &all {
        streams.entry(event.stream.clone()).or_default().push(event.clone());
    }
    ReadBack { all, streams }
}

fn ack(first_revision: u64, last_revision: u64, first_position: u64, last_position: u64) -> PartAck {
    PartAck { first_revision, last_revision, first_position, last_position }
}

/// a: [1, 2] on s (no stream), acknowledged at positions 0, 100.
/// b: [3] on s expecting 1 and [4] on t (no stream), acknowledged at 200, 300.
/// c: [5] on s expecting 1, rejected. d: [6] on t expecting 0, unknown, landed at 400.
fn good_history() -> History {
    let mut history = History::default();
    history.push(Append {
        name: "a".into(),
        parts: vec![part("s", Expected::NoStream, &[1, 2])],
        outcome: Outcome::Acknowledged(vec![ack(0, 1, 0, 100)]),
    });
    history.push(Append {
        name: "b".into(),
        parts: vec![part("s", Expected::Exact(1), &[3]), part("t", Expected::NoStream, &[4])],
        outcome: Outcome::Acknowledged(vec![ack(2, 2, 200, 200), ack(0, 0, 300, 300)]),
    });
    history.push(Append {
        name: "c".into(),
        parts: vec![part("s", Expected::Exact(1), &[5])],
        outcome: Outcome::Rejected { kind: "wrong-expected-revision".into() },
    });
    history.push(Append {
        name: "d".into(),
        parts: vec![part("t", Expected::Exact(0), &[6])],
        outcome: Outcome::Unknown,
    });
    history
}

const GOOD: &[(u128, &str, u64)] = &[(1, "s", 0), (2, "s", 1), (3, "s", 2), (4, "t", 0), (6, "t", 1)];

fn violations(history: &History, read: &ReadBack) -> Vec<Violation> {
    check(history, read, CheckOptions::default()).expect_err("the checker must find the violation")
}

#[test]
fn a_correct_history_passes_and_is_counted() {
    let summary = check(&good_history(), &read_back(GOOD), CheckOptions::default()).expect("no violations");
    assert_eq!(summary.acknowledged, 2);
    assert_eq!(summary.multi_stream_acknowledged, 1);
    assert_eq!(summary.rejected, 1);
    assert_eq!(summary.unknown_landed, 1);
    assert_eq!(summary.unknown_absent, 0);
}

#[test]
fn an_unknown_append_may_be_absent() {
    let summary = check(&good_history(), &read_back(&GOOD[..4]), CheckOptions::default()).expect("no violations");
    assert_eq!(summary.unknown_absent, 1);
}

// Invariant 1.

#[test]
fn a_missing_acknowledged_append_is_found() {
    let read = read_back(&[(1, "s", 0), (2, "s", 1), (6, "t", 0)]);
    let found = violations(&good_history(), &read);
    assert!(found.contains(&Violation::AcknowledgedMissing { append: "b".into(), id: id(3) }), "{found:?}");
    assert!(found.contains(&Violation::AcknowledgedMissing { append: "b".into(), id: id(4) }), "{found:?}");
}

#[test]
fn an_acknowledged_event_at_another_position_is_found() {
    let mut read = read_back(GOOD);
    // Shift everything after the first event: positions still increase.
    for event in &mut read.all[1..] {
        event.position += 8;
    }
    for events in read.streams.values_mut() {
        for event in events.iter_mut().filter(|e| e.id != id(1)) {
            event.position += 8;
        }
    }
    let found = violations(&good_history(), &read);
    assert!(
        found.iter().any(
            |v| matches!(v, Violation::AcknowledgedMoved { append, id: moved, .. } if append == "a" && *moved == id(2))
        ),
        "{found:?}"
    );
}

#[test]
fn an_acknowledged_event_at_another_revision_is_found() {
    // b's event 3 acknowledged at s:2, read back at s:2 but a's events swapped into other revisions.
    let read = read_back(&[(2, "s", 0), (1, "s", 1), (3, "s", 2), (4, "t", 0), (6, "t", 1)]);
    let found = violations(&good_history(), &read);
    assert!(
        found.iter().any(|v| matches!(v, Violation::AcknowledgedMoved { append, .. } if append == "a")),
        "{found:?}"
    );
}

#[test]
fn changed_data_is_found() {
    let mut read = read_back(GOOD);
    read.all[2].data_hash ^= 1;
    read.streams.get_mut("s").unwrap()[2].data_hash ^= 1;
    let found = violations(&good_history(), &read);
    assert!(
        found.iter().any(|v| matches!(v, Violation::DataChanged { id: changed, .. } if *changed == id(3))),
        "{found:?}"
    );
}

#[test]
fn a_lost_tail_is_allowed_only_when_asked_and_only_as_a_tail() {
    let tail_lost = read_back(&[(1, "s", 0), (2, "s", 1)]);
    let mut history = good_history();
    history.appends.truncate(2);
    let options = CheckOptions { lost_tail_from_position: Some(150) };
    let summary = check(&history, &tail_lost, options).expect("losing a tail past the threshold is allowed");
    assert_eq!(summary.acknowledged_lost, 1);
    // Not allowed below the threshold.
    let options = CheckOptions { lost_tail_from_position: Some(250) };
    assert!(check(&history, &tail_lost, options).is_err());
    // Not allowed when something after it survived.
    let hole = read_back(&[(1, "s", 0), (2, "s", 1), (7, "u", 0)]);
    history.push(Append {
        name: "e".into(),
        parts: vec![part("u", Expected::Any, &[7])],
        outcome: Outcome::Acknowledged(vec![ack(0, 0, 400, 400)]),
    });
    let mut hole = hole;
    hole.all[2].position = 400;
    hole.streams.get_mut("u").unwrap()[0].position = 400;
    let found = check(&history, &hole, CheckOptions { lost_tail_from_position: Some(150) }).unwrap_err();
    assert!(found.iter().any(|v| matches!(v, Violation::LostNotATail { append, .. } if append == "b")), "{found:?}");
}

// Invariant 2.

#[test]
fn a_partly_visible_multi_stream_append_is_found() {
    // b's part on t is missing, and b was never answered.
    let mut history = good_history();
    history.appends[1].outcome = Outcome::Unknown;
    let read = read_back(&[(1, "s", 0), (2, "s", 1), (3, "s", 2), (6, "t", 0)]);
    let found = check(&history, &read, CheckOptions::default()).unwrap_err();
    assert!(found.contains(&Violation::PartiallyVisible { append: "b".into(), present: 1, total: 2 }), "{found:?}");
}

#[test]
fn a_visible_rejected_append_is_found() {
    let read = read_back(&[(1, "s", 0), (2, "s", 1), (3, "s", 2), (4, "t", 0), (6, "t", 1), (5, "s", 3)]);
    let found = violations(&good_history(), &read);
    assert!(found.iter().any(|v| matches!(v, Violation::RejectedVisible { append, .. } if append == "c")), "{found:?}");
}

#[test]
fn an_interleaved_append_is_found() {
    // d's event between the two parts of b.
    let read = read_back(&[(1, "s", 0), (2, "s", 1), (3, "s", 2), (6, "t", 0), (4, "t", 1)]);
    let mut history = good_history();
    history.appends[1].outcome = Outcome::Unknown;
    let found = check(&history, &read, CheckOptions::default()).unwrap_err();
    assert!(found.contains(&Violation::AppendInterleaved { append: "b".into() }), "{found:?}");
}

#[test]
fn a_part_in_the_wrong_stream_is_found() {
    let read = read_back(&[(1, "s", 0), (2, "s", 1), (3, "s", 2), (4, "t", 0), (6, "s", 3)]);
    let found = violations(&good_history(), &read);
    assert!(found.contains(&Violation::PartMisplaced { append: "d".into(), stream: "t".into() }), "{found:?}");
}

// Invariant 3.

#[test]
fn a_revision_gap_is_found() {
    let mut read = read_back(GOOD);
    read.streams.get_mut("t").unwrap()[1].revision = 2;
    read.all[4].revision = 2;
    let found = violations(&good_history(), &read);
    assert!(found.contains(&Violation::RevisionGap { stream: "t".into(), index: 1, revision: 2 }), "{found:?}");
}

#[test]
fn positions_that_do_not_increase_are_found() {
    let mut read = read_back(GOOD);
    read.all[4].position = 300;
    read.streams.get_mut("t").unwrap()[1].position = 300;
    let found = violations(&good_history(), &read);
    assert!(found.contains(&Violation::PositionNotIncreasing { before: 300, after: 300 }), "{found:?}");
}

#[test]
fn a_stream_read_that_disagrees_with_all_is_found() {
    let mut read = read_back(GOOD);
    read.streams.get_mut("t").unwrap().pop();
    let found = violations(&good_history(), &read);
    assert!(
        found.iter().any(|v| matches!(v, Violation::StreamDisagreesWithAll { stream, .. } if stream == "t")),
        "{found:?}"
    );
}

#[test]
fn an_event_returned_twice_is_found() {
    let mut read = read_back(GOOD);
    let mut copy = read.all[4].clone();
    copy.position = 500;
    copy.revision = 2;
    read.all.push(copy.clone());
    read.streams.get_mut("t").unwrap().push(copy);
    let found = violations(&good_history(), &read);
    assert!(found.contains(&Violation::DuplicateEvent { id: id(6) }), "{found:?}");
}

// Invariant 4.

#[test]
fn two_appends_with_the_same_expected_revision_both_succeeding_is_found() {
    // c expected s at 1 like b; pretend c took effect too (and b's s part
    // is read back after it, at revision 3).
    let mut history = good_history();
    history.appends[2].outcome = Outcome::Unknown;
    history.appends[1].outcome = Outcome::Unknown;
    let read = read_back(&[(1, "s", 0), (2, "s", 1), (5, "s", 2), (3, "s", 3), (4, "t", 0), (6, "t", 1)]);
    let found = check(&history, &read, CheckOptions::default()).unwrap_err();
    assert!(
        found.contains(&Violation::ConflictingAppendsBothSucceeded {
            stream: "s".into(),
            expected: Expected::Exact(1),
            appends: ("b".into(), "c".into()),
        }),
        "{found:?}"
    );
    assert!(
        found.contains(&Violation::ExpectationNotHonoured {
            append: "b".into(),
            stream: "s".into(),
            expected: Expected::Exact(1),
            first_revision: 3,
        }),
        "{found:?}"
    );
}

#[test]
fn an_append_landing_against_its_expectation_is_found() {
    // d expected t at 0 but landed first, at revision 0.
    let read = read_back(&[(1, "s", 0), (2, "s", 1), (6, "t", 0), (3, "s", 2), (4, "t", 1)]);
    let mut history = good_history();
    history.appends[1].outcome = Outcome::Unknown;
    let found = check(&history, &read, CheckOptions::default()).unwrap_err();
    assert!(
        found.contains(&Violation::ExpectationNotHonoured {
            append: "d".into(),
            stream: "t".into(),
            expected: Expected::Exact(0),
            first_revision: 0,
        }),
        "{found:?}"
    );
}

// Invariant 5.

#[test]
fn an_event_nobody_appended_is_found() {
    let mut read = read_back(GOOD);
    let stranger = StoredEvent { id: id(99), stream: "t".into(), revision: 2, position: 500, data_hash: 0 };
    read.all.push(stranger.clone());
    read.streams.get_mut("t").unwrap().push(stranger);
    let found = violations(&good_history(), &read);
    assert!(found.contains(&Violation::UnknownEvent { id: id(99), position: 500 }), "{found:?}");
}

// Parsing `stele debug-load` output.

#[test]
fn debug_load_lines_build_the_history() {
    let a = Uuid::from_u128(1);
    let b = Uuid::from_u128(2);
    let mut history = History::default();
    history.record_line("opened 3 0", false).unwrap();
    history.record_line(&format!("try 9-0-1 load-0@no-stream:{a}/ff load-1@4:{b}/a0"), false).unwrap();
    history.record_line("ok 9-0-1 load-0:0:0:32:32 load-1:5:5:96:96", false).unwrap();
    history.record_line(&format!("try 9-0-2 load-0@any:{b}/1"), false).unwrap();
    history.record_line("rejected 9-0-2 wrong-expected-revision", false).unwrap();
    let first = &history.appends[0];
    assert_eq!(first.parts[1].expected, Expected::Exact(4));
    assert_eq!(first.parts[0].events[0], SentEvent { id: a, data_hash: 0xff });
    assert_eq!(first.outcome, Outcome::Acknowledged(vec![ack(0, 0, 32, 32), ack(5, 5, 96, 96)]));
    assert_eq!(history.appends[1].outcome, Outcome::Rejected { kind: "wrong-expected-revision".into() });
    // A line cut by a kill is only accepted as the last line.
    assert!(history.record_line("ok 9-0-3 load-0:0:0:3", false).is_err());
    assert!(history.record_line("ok 9-0-3 load-0:0:0:3", true).is_ok());
}
