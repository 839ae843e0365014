//! A gateway to a flaky outside system, with simulated time: retries,
//! back-off, the circuit breaker, and the checkpoint across restarts.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use steledb::{
    AppendError, AppendResult, EventFilter, ExpectedRevision, NewEvent, RecordedEvent, Store, StreamAppend, Uuid,
};
use steledb_sdk::{
    dead_letter_stream, Backoff, BreakerConfig, BreakerState, EventStore, EventSubscription, Gateway, GatewayClock,
    GatewayError, GatewayRunner, MemoryCheckpoints, Source, StopHandle, StoreError, SubscribeTo,
    DEAD_LETTER_EVENT_TYPE,
};

/// (time of the call, event number, succeeded), shared with the test.
type Calls = Rc<RefCell<Vec<(u64, u64, bool)>>>;

/// Time that moves only when someone sleeps.
#[derive(Clone, Default)]
struct SimClock(Rc<Cell<u64>>);

impl GatewayClock for SimClock {
    fn now_ms(&mut self) -> u64 {
        self.0.get()
    }
    fn sleep_ms(&mut self, duration_ms: u64) {
        self.0.set(self.0.get() + duration_ms);
    }
}

/// A mail server that fails its first `failures_left` calls.
struct Mailer {
    clock: SimClock,
    failures_left: u32,
    /// (time of the call, event number, succeeded)
    calls: Calls,
    /// Stop the run at this call (an operator stopping it mid-outage).
    stop_at_call: Option<(usize, StopHandle)>,
}

impl Gateway for Mailer {
    fn name(&self) -> &str {
        "mailer"
    }
    fn source(&self) -> Source {
        Source::AllFiltered(EventFilter::StreamPrefix(vec!["user-".into()]))
    }
    fn deliver(&mut self, event: &RecordedEvent) -> Result<(), GatewayError> {
        let number: u64 = event.stream().trim_start_matches("user-").parse().unwrap();
        let ok = self.failures_left == 0;
        self.calls.borrow_mut().push((self.clock.0.get(), number, ok));
        if let Some((at, stop)) = &self.stop_at_call {
            if self.calls.borrow().len() >= *at {
                stop.stop();
            }
        }
        if ok {
            Ok(())
        } else {
            self.failures_left -= 1;
            Err(GatewayError::Transient("connection refused".into()))
        }
    }
}

fn sign_up(store: &Store, users: impl IntoIterator<Item = u64>) {
    for n in users {
        let event = NewEvent::json(Uuid::new_v4(), "SignedUp", b"{}".to_vec());
        store.append(&format!("user-{n}"), ExpectedRevision::NoStream, vec![event]).unwrap();
    }
}

fn mailer(clock: &SimClock, failures_left: u32, calls: &Calls) -> Mailer {
    Mailer { clock: clock.clone(), failures_left, calls: calls.clone(), stop_at_call: None }
}

const BACKOFF: Backoff = Backoff { backoff_ms_initial: 10, backoff_ms_max: 40 };
const BREAKER: BreakerConfig = BreakerConfig { failures_threshold: 3, cool_down_ms: 1_000 };

#[test]
fn an_outage_is_retried_with_back_off_and_the_breaker_then_every_event_is_delivered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    sign_up(&store, 1..=5);
    let (clock, calls) = (SimClock::default(), Rc::new(RefCell::new(Vec::new())));
    let checkpoints = MemoryCheckpoints::new();
    let mut runner = GatewayRunner::new(&store, mailer(&clock, 7, &calls), checkpoints.clone(), clock.clone())
        .with_backoff(BACKOFF)
        .with_breaker(BREAKER);
    let report = runner.run_until_caught_up().unwrap();
    assert_eq!(report.events_handled, 5);

    let times: Vec<u64> = calls.borrow().iter().map(|c| c.0).collect();
    // Back-off 10, 20; the third failure opens the breaker for 1 s; each
    // half-open trial that fails opens it again; the eighth call succeeds.
    assert_eq!(times, [0, 10, 30, 1_030, 2_030, 3_030, 4_030, 5_030, 5_030, 5_030, 5_030, 5_030]);
    let delivered: Vec<u64> = calls.borrow().iter().filter(|c| c.2).map(|c| c.1).collect();
    assert_eq!(delivered, [1, 2, 3, 4, 5], "each event once, in order, after the outage");
    assert!(calls.borrow()[..7].iter().all(|c| c.1 == 1 && !c.2), "no later event overtook the failing one");
    assert_eq!(runner.breaker().opened_count(), 5);
    assert_eq!(runner.breaker().state(), BreakerState::Closed { failures: 0 });
    let stats = runner.stats();
    assert_eq!((stats.delivered, stats.transient_failures, stats.waited_ms), (5, 7, 5_030));

    // A new runner (a restart) resumes after the last delivery.
    sign_up(&store, 6..=7);
    calls.borrow_mut().clear();
    let mut runner = GatewayRunner::new(&store, mailer(&clock, 0, &calls), checkpoints.clone(), clock.clone());
    assert_eq!(runner.run_until_caught_up().unwrap().events_handled, 2);
    assert_eq!(calls.borrow().iter().map(|c| c.1).collect::<Vec<_>>(), [6, 7]);
    assert_eq!(checkpoints.get("mailer").unwrap().events_handled, 7);
}

#[test]
fn a_stop_during_an_outage_keeps_the_undelivered_event_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    sign_up(&store, 1..=3);
    let (clock, calls) = (SimClock::default(), Rc::new(RefCell::new(Vec::new())));
    let checkpoints = MemoryCheckpoints::new();
    let stop = StopHandle::new();
    // Event 1 goes through; event 2 fails for ever; stop at the 6th call.
    struct FailAfterFirst(Mailer);
    impl Gateway for FailAfterFirst {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn source(&self) -> Source {
            self.0.source()
        }
        fn deliver(&mut self, event: &RecordedEvent) -> Result<(), GatewayError> {
            if !self.0.calls.borrow().is_empty() {
                self.0.failures_left = u32::MAX;
            }
            self.0.deliver(event)
        }
    }
    let down = FailAfterFirst(Mailer { stop_at_call: Some((6, stop.clone())), ..mailer(&clock, 0, &calls) });
    let mut runner = GatewayRunner::new(&store, down, checkpoints.clone(), clock.clone())
        .with_backoff(BACKOFF)
        .with_breaker(BREAKER)
        .with_poll_interval_ms(1);
    let report = runner.run(&stop).unwrap();
    assert!(report.stopped);
    assert_eq!(report.events_handled, 1);
    assert!(matches!(runner.breaker().state(), BreakerState::Open { .. }), "{:?}", runner.breaker().state());
    assert_eq!(checkpoints.get("mailer").unwrap().events_handled, 1, "only the delivered event is checkpointed");

    // The outside is back: the next run starts with event 2.
    calls.borrow_mut().clear();
    let mut runner = GatewayRunner::new(&store, mailer(&clock, 0, &calls), checkpoints.clone(), clock.clone());
    assert_eq!(runner.run_until_caught_up().unwrap().events_handled, 2);
    assert_eq!(calls.borrow().iter().map(|c| (c.1, c.2)).collect::<Vec<_>>(), [(2, true), (3, true)]);
}

#[test]
fn a_permanent_failure_stops_the_run_without_skipping_the_event() {
    struct Refuses;
    impl Gateway for Refuses {
        fn name(&self) -> &str {
            "refuses"
        }
        fn deliver(&mut self, _: &RecordedEvent) -> Result<(), GatewayError> {
            Err(GatewayError::Permanent("550 mailbox unavailable".into()))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    sign_up(&store, [1]);
    let checkpoints = MemoryCheckpoints::new();
    let mut runner = GatewayRunner::new(&store, Refuses, checkpoints.clone(), SimClock::default());
    let error = runner.run_until_caught_up().unwrap_err();
    assert!(error.to_string().contains("550 mailbox unavailable"), "{error}");
    assert_eq!(checkpoints.get("refuses"), None);
}

/// With dead letters kept, a refused event is recorded (once, even when a
/// crash makes the runner meet it again) and delivery goes on past it.
#[test]
fn a_permanent_refusal_becomes_a_dead_letter_and_delivery_goes_on() {
    /// Refuses user 2 for good, delivers everyone else.
    struct RefusesTwo(Vec<u64>);
    impl Gateway for RefusesTwo {
        fn name(&self) -> &str {
            "picky"
        }
        fn source(&self) -> Source {
            Source::AllFiltered(EventFilter::StreamPrefix(vec!["user-".into()]))
        }
        fn deliver(&mut self, event: &RecordedEvent) -> Result<(), GatewayError> {
            let number: u64 = event.stream().trim_start_matches("user-").parse().unwrap();
            if number == 2 {
                return Err(GatewayError::Permanent("550 mailbox unavailable".into()));
            }
            self.0.push(number);
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    sign_up(&store, [1, 2, 3]);
    let refused = store.read_forward("user-2", 0, 1).unwrap().remove(0);

    let checkpoints = MemoryCheckpoints::new();
    let mut runner = GatewayRunner::new(&store, RefusesTwo(Vec::new()), checkpoints.clone(), SimClock::default())
        .with_dead_letters();
    assert_eq!(runner.run_until_caught_up().unwrap().events_handled, 3);
    assert_eq!(runner.gateway().0, [1, 3]);
    assert_eq!(runner.stats().dead_lettered, 1);
    assert_eq!(runner.breaker().state(), BreakerState::Closed { failures: 0 });
    assert_eq!(checkpoints.get("picky").unwrap().events_handled, 3);

    let stream = dead_letter_stream("picky");
    let letters = store.read_forward(&stream, 0, 10).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_type(), DEAD_LETTER_EVENT_TYPE);
    let letter: serde_json::Value = serde_json::from_slice(letters[0].data()).unwrap();
    assert_eq!(letter["event_id"], refused.id.to_string());
    assert_eq!(letter["stream"], "user-2");
    assert_eq!(letter["position"], refused.position);
    assert_eq!(letter["reason"], "550 mailbox unavailable");

    // A crash before the checkpoint: the runner meets the refusal again and
    // the store recognises the record.
    let mut again = GatewayRunner::new(&store, RefusesTwo(Vec::new()), MemoryCheckpoints::new(), SimClock::default())
        .with_dead_letters();
    assert_eq!(again.run_until_caught_up().unwrap().events_handled, 3);
    assert_eq!(again.stats().dead_lettered, 1);
    assert_eq!(store.read_forward(&stream, 0, 10).unwrap().len(), 1, "recorded once");
}

/// A gateway reading all of `$all` never delivers its own dead letters:
/// refusing those too would record a refusal of a refusal, without end.
#[test]
fn a_gateway_never_delivers_its_own_dead_letters() {
    struct RefusesAll(Vec<String>);
    impl Gateway for RefusesAll {
        fn name(&self) -> &str {
            "strict"
        }
        fn deliver(&mut self, event: &RecordedEvent) -> Result<(), GatewayError> {
            self.0.push(event.stream().to_owned());
            Err(GatewayError::Permanent("no".into()))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    sign_up(&store, [1, 2]);
    let checkpoints = MemoryCheckpoints::new();
    let mut runner = GatewayRunner::new(&store, RefusesAll(Vec::new()), checkpoints.clone(), SimClock::default())
        .with_dead_letters();
    runner.run_until_caught_up().unwrap();
    // Once more, now that the dead letters are in the log.
    runner.run_until_caught_up().unwrap();
    assert_eq!(runner.gateway().0, ["user-1", "user-2"]);
    assert_eq!(store.read_forward(&dead_letter_stream("strict"), 0, 10).unwrap().len(), 2);
}

/// A store that is busy for the first `busy_left` appends to one stream.
struct BusyFor {
    inner: Store,
    stream: String,
    busy_left: std::sync::Mutex<u32>,
}

impl EventStore for BusyFor {
    fn read_forward(&self, stream: &str, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        EventStore::read_forward(&self.inner, stream, from, limit)
    }
    fn read_last(&self, stream: &str) -> Result<Option<RecordedEvent>, StoreError> {
        EventStore::read_last(&self.inner, stream)
    }
    fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        let mut busy_left = self.busy_left.lock().unwrap();
        if *busy_left > 0 && parts.iter().any(|p| p.stream == self.stream) {
            *busy_left -= 1;
            return Err(StoreError::Append(AppendError::Overloaded { capacity: 1 }));
        }
        EventStore::append_multi(&self.inner, parts)
    }
    fn subscribe(&self, to: SubscribeTo<'_>) -> Result<Box<dyn EventSubscription>, StoreError> {
        EventStore::subscribe(&self.inner, to)
    }
    fn last_position(&self) -> Result<Option<u64>, StoreError> {
        EventStore::last_position(&self.inner)
    }
}

/// A busy store does not stop a gateway from recording a dead letter: it is
/// waited out with the delivery back-off.
#[test]
fn a_busy_store_is_waited_out_when_recording_a_dead_letter() {
    struct RefusesAll;
    impl Gateway for RefusesAll {
        fn name(&self) -> &str {
            "strict"
        }
        fn source(&self) -> Source {
            Source::AllFiltered(EventFilter::StreamPrefix(vec!["user-".into()]))
        }
        fn deliver(&mut self, _: &RecordedEvent) -> Result<(), GatewayError> {
            Err(GatewayError::Permanent("no".into()))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let inner = Store::open(dir.path()).unwrap();
    sign_up(&inner, [1]);
    let store = BusyFor { inner, stream: dead_letter_stream("strict"), busy_left: std::sync::Mutex::new(3) };
    let clock = SimClock::default();
    let mut runner = GatewayRunner::new(&store, RefusesAll, MemoryCheckpoints::new(), clock.clone())
        .with_backoff(BACKOFF)
        .with_dead_letters();
    assert_eq!(runner.run_until_caught_up().unwrap().events_handled, 1);
    assert_eq!(runner.stats().dead_lettered, 1);
    assert_eq!(clock.0.get(), 10 + 20 + 40, "three back-offs");
    assert_eq!(EventStore::read_forward(&store, &dead_letter_stream("strict"), 0, 10).unwrap().len(), 1);
}
