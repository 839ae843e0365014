//! Timers through the log, with simulated time passed to `tick`.

use serde_json::json;
use steledb::{Direction, Store, StreamStart};
use steledb_sdk::{TimerEvent, TimerService, Timers};

fn open_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// The timer stream's events, decoded.
fn timer_log(store: &Store) -> Vec<TimerEvent> {
    store
        .read_stream("timers", StreamStart::Start, Direction::Forward, 1_000)
        .unwrap()
        .iter()
        .map(|e| TimerEvent::decode(e).unwrap())
        .collect()
}

fn fired_ids(store: &Store) -> Vec<String> {
    timer_log(store)
        .into_iter()
        .filter_map(|e| match e {
            TimerEvent::TimerFired { timer_id, .. } => Some(timer_id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_timer_fires_once_when_the_clock_passes_its_due_time() {
    let (_dir, store) = open_store();
    let timers = Timers::new(&store);
    timers.schedule("remind-ann", 2_000, json!({ "user": "ann" })).unwrap();
    timers.schedule("remind-bob", 1_000, json!({ "user": "bob" })).unwrap();
    // Scheduling is idempotent by timer id.
    assert!(timers.schedule("remind-bob", 9_999, json!(null)).unwrap().duplicate);

    let mut service = TimerService::start(&store).unwrap();
    assert_eq!(service.next_due_at_us(), Some(1_000));
    assert!(service.tick(999).unwrap().is_empty());
    let fired = service.tick(1_000).unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(
        (fired[0].timer_id.as_str(), fired[0].payload.clone(), fired[0].duplicate),
        ("remind-bob", json!({ "user": "bob" }), false)
    );
    assert!(service.tick(1_500).unwrap().is_empty());
    let fired = service.tick(10_000).unwrap();
    assert_eq!(fired.iter().map(|f| f.timer_id.as_str()).collect::<Vec<_>>(), ["remind-ann"]);
    assert!(service.tick(20_000).unwrap().is_empty());
    assert_eq!(service.pending_count(), 0);
    assert_eq!(fired_ids(&store), ["remind-bob", "remind-ann"]);
    // The fired event records when it was due and when the service fired it.
    let last = timer_log(&store).pop().unwrap();
    assert_eq!(
        last,
        TimerEvent::TimerFired {
            timer_id: "remind-ann".into(),
            due_at_us: 2_000,
            fired_at_us: 10_000,
            payload: json!({ "user": "ann" })
        }
    );
}

#[test]
fn pending_timers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut service = TimerService::start(&store).unwrap();
        Timers::new(&store).schedule("t-1", 5_000, json!(1)).unwrap();
        Timers::new(&store).schedule("t-2", 6_000, json!(2)).unwrap();
        assert!(service.tick(4_000).unwrap().is_empty());
        assert_eq!(service.pending_count(), 2);
        let fired = service.tick(5_000).unwrap();
        assert_eq!(fired.len(), 1);
    } // the process stops: store and service gone

    let store = Store::open(dir.path()).unwrap();
    let mut service = TimerService::start(&store).unwrap();
    let pending: Vec<_> = service.pending().map(|t| (t.timer_id.clone(), t.due_at_us)).collect();
    assert_eq!(pending, [("t-2".to_owned(), 6_000)], "rebuilt from the log: t-1 fired, t-2 waits");
    let fired = service.tick(7_000).unwrap();
    assert_eq!((fired.len(), fired[0].timer_id.as_str(), fired[0].duplicate), (1, "t-2", false));
    assert_eq!(fired_ids(&store), ["t-1", "t-2"]);
}

#[test]
fn a_cancelled_timer_never_fires() {
    let (_dir, store) = open_store();
    let timers = Timers::new(&store);
    let mut service = TimerService::start(&store).unwrap();
    timers.schedule("t-keep", 100, json!(null)).unwrap();
    timers.schedule("t-cancel", 100, json!(null)).unwrap();
    assert_eq!(service.poll().unwrap(), 2);
    timers.cancel("t-cancel").unwrap();
    let fired = service.tick(1_000).unwrap();
    assert_eq!(fired.iter().map(|f| f.timer_id.as_str()).collect::<Vec<_>>(), ["t-keep"]);
    assert_eq!(fired_ids(&store), ["t-keep"]);
    // A service rebuilt later also knows the cancel.
    assert_eq!(TimerService::start(&store).unwrap().pending_count(), 0);
}

#[test]
fn a_double_fire_is_written_once() {
    let (_dir, store) = open_store();
    Timers::new(&store).schedule("t", 100, json!({ "n": 1 })).unwrap();
    // Two services that both know the timer (two instances, or one that
    // crashed after appending `TimerFired` and before noting it).
    let mut first = TimerService::start(&store).unwrap();
    let mut second = TimerService::start(&store).unwrap();
    let a = first.fire_due(200).unwrap();
    let b = second.fire_due(300).unwrap();
    assert_eq!((a.len(), a[0].duplicate), (1, false));
    assert_eq!((b.len(), b[0].duplicate), (1, true), "the store recognised the derived event id");
    assert_eq!(fired_ids(&store), ["t"]);
    assert_eq!(timer_log(&store).len(), 2, "one scheduled, one fired");
    // A service that polls sees the fire and does not try again.
    assert!(TimerService::start(&store).unwrap().tick(1_000).unwrap().is_empty());
}
