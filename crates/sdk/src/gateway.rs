//! Gateways: deliver events to an outside system, at least once, in order.
//!
//! Each event is delivered until it succeeds: transient failures are
//! retried with exponential back-off, and a circuit breaker stops calling a
//! system that keeps failing, probing it again after a cool-down. The
//! checkpoint advances only past delivered events, so a restart resumes at
//! the first event not yet delivered (it may deliver the last few again:
//! the outside should recognise repeats by the event id).
//!
//! An event the outside refuses for good stops the run, unless the runner
//! keeps dead letters ([`GatewayRunner::with_dead_letters`]): then the
//! refusal is recorded as an event in the gateway's dead-letter stream and
//! delivery goes on.
//!
//! Time comes from a [`GatewayClock`] the caller supplies, so tests run
//! hours of back-off in microseconds.

use std::time::{Duration, Instant};

use steledb::{ExpectedRevision, NewEvent, RecordedEvent};

use crate::ids::{name_of, uuid_v5, DEAD_LETTER_ID_NAMESPACE};
use crate::store::{EventStore, StoreError};

use crate::consumer::{consume, CheckpointStore, ConsumeConfig, ConsumerError, Handled, RunMode, RunReport, Source};
use crate::limits::{
    BACKOFF_MS_INITIAL_DEFAULT, BACKOFF_MS_MAX_DEFAULT, BREAKER_COOL_DOWN_MS_DEFAULT,
    BREAKER_FAILURES_THRESHOLD_DEFAULT, POLL_INTERVAL_MS_DEFAULT,
};

/// A delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The outside is down or slow: retry later.
    #[error("transient delivery failure: {0}")]
    Transient(String),
    /// The outside refuses this event for good: the run stops with an
    /// error and the checkpoint stays before the event, for a human to
    /// decide (a retry would fail the same way; skipping would lose it).
    /// With dead letters kept, the refusal is recorded instead and the run
    /// goes on.
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}

/// The type of the events in a dead-letter stream.
pub const DEAD_LETTER_EVENT_TYPE: &str = "DeliveryRefused";

/// The stream where the gateway named `gateway_name` records the events
/// the outside refused for good, when it keeps dead letters.
pub fn dead_letter_stream(gateway_name: &str) -> String {
    format!("dead-letters-{gateway_name}")
}

/// The outside system.
pub trait Gateway {
    /// The checkpoint's key.
    fn name(&self) -> &str;

    fn source(&self) -> Source {
        Source::All
    }

    /// Delivers one event. Called again with the same event after a
    /// failure, and possibly after a restart even when it succeeded.
    fn deliver(&mut self, event: &RecordedEvent) -> Result<(), GatewayError>;
}

/// Time for a gateway: what it is, and waiting.
pub trait GatewayClock {
    /// Milliseconds on a monotonic clock.
    fn now_ms(&mut self) -> u64;
    fn sleep_ms(&mut self, duration_ms: u64);
}

/// The real clock: `Instant` and `thread::sleep`.
#[derive(Debug, Clone, Copy)]
pub struct SystemGatewayClock {
    origin: Instant,
}

impl Default for SystemGatewayClock {
    fn default() -> Self {
        Self { origin: Instant::now() }
    }
}

impl GatewayClock for SystemGatewayClock {
    fn now_ms(&mut self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
    fn sleep_ms(&mut self, duration_ms: u64) {
        std::thread::sleep(Duration::from_millis(duration_ms));
    }
}

/// Exponential back-off between attempts at one event: `backoff_ms_initial`
/// after the first failure, doubling up to `backoff_ms_max`. No jitter:
/// there is one gateway per outside system, not a herd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub backoff_ms_initial: u64,
    pub backoff_ms_max: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { backoff_ms_initial: BACKOFF_MS_INITIAL_DEFAULT, backoff_ms_max: BACKOFF_MS_MAX_DEFAULT }
    }
}

impl Backoff {
    /// The wait after the `failures`-th consecutive failure (1-based).
    pub fn delay_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(63);
        self.backoff_ms_initial.saturating_mul(1u64 << doublings).min(self.backoff_ms_max)
    }
}

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures_threshold: u32,
    /// How long an open breaker refuses calls before letting one through.
    pub cool_down_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures_threshold: BREAKER_FAILURES_THRESHOLD_DEFAULT, cool_down_ms: BREAKER_COOL_DOWN_MS_DEFAULT }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; `failures` consecutive ones failed so far.
    Closed { failures: u32 },
    /// No calls until `until_ms`.
    Open { until_ms: u64 },
    /// One trial call: success closes, failure opens again.
    HalfOpen,
}

/// A circuit breaker: pure state, time passed in.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
    opened_count: u64,
}

impl CircuitBreaker {
    /// # Panics
    /// If `failures_threshold` is 0.
    pub fn new(config: BreakerConfig) -> Self {
        assert!(config.failures_threshold > 0, "the breaker opens after at least one failure");
        Self { config, state: BreakerState::Closed { failures: 0 }, opened_count: 0 }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// How many times the breaker has opened.
    pub fn opened_count(&self) -> u64 {
        self.opened_count
    }

    /// Whether a call may go out at `now_ms`; `Err(wait_ms)` when open.
    /// An open breaker whose cool-down has passed turns half-open.
    pub fn allow(&mut self, now_ms: u64) -> Result<(), u64> {
        match self.state {
            BreakerState::Open { until_ms } if now_ms < until_ms => Err(until_ms - now_ms),
            BreakerState::Open { .. } => {
                self.state = BreakerState::HalfOpen;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    pub fn on_failure(&mut self, now_ms: u64) {
        let open = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.config.failures_threshold => {
                self.state = BreakerState::Closed { failures: failures + 1 };
                false
            }
            _ => true,
        };
        if open {
            self.state = BreakerState::Open { until_ms: now_ms.saturating_add(self.config.cool_down_ms) };
            self.opened_count += 1;
        }
    }
}

/// Counters of a gateway runner, kept across runs of one runner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayStats {
    pub delivered: u64,
    pub transient_failures: u64,
    /// Events refused for good and recorded in the dead-letter stream.
    pub dead_lettered: u64,
    /// Time spent waiting (back-off and open breaker), by the gateway clock.
    pub waited_ms: u64,
}

/// Runs a [`Gateway`]: delivers each event of its source in order,
/// retrying until it succeeds, and checkpoints after each delivery.
pub struct GatewayRunner<'s, G, C, K> {
    store: &'s dyn EventStore,
    gateway: G,
    checkpoints: C,
    clock: K,
    backoff: Backoff,
    breaker: CircuitBreaker,
    stats: GatewayStats,
    poll_interval: Duration,
    dead_letters: bool,
}

impl<'s, G: Gateway, C: CheckpointStore, K: GatewayClock> GatewayRunner<'s, G, C, K> {
    pub fn new(store: &'s dyn EventStore, gateway: G, checkpoints: C, clock: K) -> Self {
        Self {
            store,
            gateway,
            checkpoints,
            clock,
            backoff: Backoff::default(),
            breaker: CircuitBreaker::new(BreakerConfig::default()),
            stats: GatewayStats::default(),
            poll_interval: Duration::from_millis(POLL_INTERVAL_MS_DEFAULT),
            dead_letters: false,
        }
    }

    /// Keeps dead letters: an event the outside refuses for good
    /// ([`GatewayError::Permanent`]) no longer stops the run. The refusal
    /// is appended to [`dead_letter_stream`] as a [`DEAD_LETTER_EVENT_TYPE`]
    /// event (JSON: the refused event's id, stream, revision, position and
    /// type, and the reason), and delivery goes on with the next event. The
    /// refused event stays in the log, so whoever watches the dead-letter
    /// stream can fix the cause and deliver it again.
    ///
    /// The record's id is derived from the refused event's id, so a crash
    /// between recording and checkpointing records it once (within the
    /// store's idempotency window). A busy or full store is waited out
    /// with the delivery back-off; any other failure to record stops the
    /// run as it would without dead letters, the checkpoint before the
    /// event.
    pub fn with_dead_letters(mut self) -> Self {
        self.dead_letters = true;
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn with_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = CircuitBreaker::new(config);
        self
    }

    pub fn with_poll_interval_ms(mut self, poll_interval_ms: u64) -> Self {
        self.poll_interval = Duration::from_millis(poll_interval_ms);
        self
    }

    pub fn gateway(&self) -> &G {
        &self.gateway
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    pub fn stats(&self) -> GatewayStats {
        self.stats
    }

    pub fn run_until_caught_up(&mut self) -> Result<RunReport, ConsumerError> {
        self.run_with(RunMode::UntilCaughtUp)
    }

    /// Delivers until `stop` is stopped, including while waiting out an
    /// outage: a stop during retries leaves the event undelivered and the
    /// checkpoint before it.
    pub fn run(&mut self, stop: &crate::StopHandle) -> Result<RunReport, ConsumerError> {
        self.run_with(RunMode::Follow(stop))
    }

    pub fn run_with(&mut self, mode: RunMode<'_>) -> Result<RunReport, ConsumerError> {
        let source = self.gateway.source();
        let name = self.gateway.name().to_owned();
        // One save per delivery: a restart repeats at most one event.
        let config = ConsumeConfig {
            store: self.store,
            source: &source,
            name: &name,
            checkpoint_every_events: 1,
            poll_interval: self.poll_interval,
        };
        let mut delivery = Delivery {
            store: self.store,
            dead_letter_stream: dead_letter_stream(&name),
            keep_dead_letters: self.dead_letters,
            gateway: &mut self.gateway,
            clock: &mut self.clock,
            backoff: self.backoff,
            breaker: &mut self.breaker,
            stats: &mut self.stats,
            mode,
            wait_slice_ms: (self.poll_interval.as_millis() as u64).max(1),
        };
        consume(config, &mut self.checkpoints, mode, |event| delivery.deliver(event))
    }
}

/// The retry loop for one event, borrowed from the runner.
struct Delivery<'r, G, K> {
    store: &'r dyn EventStore,
    /// Where permanent refusals are recorded. Its events are never
    /// delivered: a refused record of a refusal would make another one.
    dead_letter_stream: String,
    /// Whether permanent refusals are recorded; otherwise they stop the run.
    keep_dead_letters: bool,
    gateway: &'r mut G,
    clock: &'r mut K,
    backoff: Backoff,
    breaker: &'r mut CircuitBreaker,
    stats: &'r mut GatewayStats,
    mode: RunMode<'r>,
    /// Waits are cut into slices this long so a stop is noticed.
    wait_slice_ms: u64,
}

impl<G: Gateway, K: GatewayClock> Delivery<'_, G, K> {
    fn deliver(&mut self, event: &RecordedEvent) -> Result<Handled, GatewayError> {
        if event.stream() == self.dead_letter_stream {
            return Ok(Handled::Done);
        }
        let mut failures = 0u32;
        loop {
            if self.mode.stop_requested() {
                return Ok(Handled::Stopped);
            }
            let now_ms = self.clock.now_ms();
            if let Err(wait_ms) = self.breaker.allow(now_ms) {
                self.wait(wait_ms);
                continue;
            }
            match self.gateway.deliver(event) {
                Ok(()) => {
                    self.breaker.on_success();
                    self.stats.delivered += 1;
                    return Ok(Handled::Done);
                }
                Err(GatewayError::Transient(_)) => {
                    failures = failures.saturating_add(1);
                    self.stats.transient_failures += 1;
                    let now_ms = self.clock.now_ms();
                    self.breaker.on_failure(now_ms);
                    // An open breaker sets the next wait itself (at `allow`).
                    if !matches!(self.breaker.state(), BreakerState::Open { .. }) {
                        self.wait(self.backoff.delay_ms(failures));
                    }
                }
                Err(GatewayError::Permanent(reason)) => {
                    if !self.keep_dead_letters {
                        return Err(GatewayError::Permanent(reason));
                    }
                    // The outside answered, so the breaker is left alone.
                    let mut store_failures = 0u32;
                    loop {
                        match record_dead_letter(self.store, &self.dead_letter_stream, event, &reason) {
                            Ok(()) => break,
                            // A busy or full store: try again, as a delivery would be.
                            Err(error) if error.is_transient() => {
                                if self.mode.stop_requested() {
                                    return Ok(Handled::Stopped);
                                }
                                store_failures = store_failures.saturating_add(1);
                                self.wait(self.backoff.delay_ms(store_failures));
                            }
                            Err(error) => {
                                let message = format!("{reason} (recording it as a dead letter failed: {error})");
                                return Err(GatewayError::Permanent(message));
                            }
                        }
                    }
                    self.stats.dead_lettered += 1;
                    return Ok(Handled::Done);
                }
            }
        }
    }

    /// Waits `duration_ms` in slices, checking the stop handle between
    /// them; the caller's loop checks it once more afterwards.
    fn wait(&mut self, duration_ms: u64) {
        let mut left_ms = duration_ms;
        while left_ms > 0 && !self.mode.stop_requested() {
            let slice_ms = left_ms.min(self.wait_slice_ms);
            self.clock.sleep_ms(slice_ms);
            self.stats.waited_ms += slice_ms;
            left_ms -= slice_ms;
        }
    }
}

fn record_dead_letter(
    store: &dyn EventStore,
    stream: &str,
    refused: &RecordedEvent,
    reason: &str,
) -> Result<(), StoreError> {
    let id = uuid_v5(DEAD_LETTER_ID_NAMESPACE, &name_of(refused.id, stream.as_bytes(), 0));
    let data = serde_json::json!({
        "event_id": refused.id.to_string(),
        "stream": refused.stream(),
        "revision": refused.revision,
        "position": refused.position,
        "event_type": refused.event_type(),
        "reason": reason,
    });
    let event = NewEvent::json(id, DEAD_LETTER_EVENT_TYPE, serde_json::to_vec(&data).expect("a JSON value encodes"));
    store.append(stream, ExpectedRevision::Any, vec![event]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let backoff = Backoff { backoff_ms_initial: 10, backoff_ms_max: 50 };
        let delays: Vec<u64> = (1..=5).map(|n| backoff.delay_ms(n)).collect();
        assert_eq!(delays, [10, 20, 40, 50, 50]);
        assert_eq!(backoff.delay_ms(u32::MAX), 50);
    }

    #[test]
    fn breaker_opens_at_the_threshold_and_half_opens_after_the_cool_down() {
        let mut breaker = CircuitBreaker::new(BreakerConfig { failures_threshold: 3, cool_down_ms: 1_000 });
        breaker.on_failure(0);
        breaker.on_failure(10);
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 2 });
        assert_eq!(breaker.allow(20), Ok(()));
        breaker.on_failure(20);
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: 1_020 });
        assert_eq!(breaker.allow(500), Err(520));
        assert_eq!(breaker.allow(1_020), Ok(()));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        // A failed trial opens it again at once, without counting to the threshold.
        breaker.on_failure(1_030);
        assert_eq!(breaker.state(), BreakerState::Open { until_ms: 2_030 });
        assert_eq!(breaker.allow(2_030), Ok(()));
        breaker.on_success();
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
        assert_eq!(breaker.opened_count(), 2);
    }
}
