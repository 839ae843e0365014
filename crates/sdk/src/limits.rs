//! Every limit and default of the toolkit in one place.

/// Events read per store call while loading an aggregate. Aggregate
/// streams are short and their events small; a page this size keeps one
/// read well under a few MiB for typical events while needing few calls.
pub const READ_PAGE_EVENTS: usize = 512;

/// Default attempts of one command (the first plus retries after a
/// concurrency conflict). A conflict means another writer just won the
/// same stream; a handful of reloads resolves all but a hot-spot
/// aggregate, which should be redesigned rather than retried forever.
pub const ATTEMPTS_MAX_DEFAULT: u32 = 5;

/// Default number of commands per stream whose ids are remembered for
/// idempotent retries (kept in snapshots, so bounded). A retry after a
/// lost reply comes within seconds; by then few other commands hit the
/// same aggregate.
pub const COMMANDS_REMEMBERED_MAX_DEFAULT: usize = 128;

/// Stream name prefix of snapshot streams. Not `$...`: system names are
/// refused for user appends. A prefix (not a suffix) gives snapshots their
/// own category, so `$all` readers filtering by an aggregate's category
/// prefix (`account-`) never see them.
pub const SNAPSHOT_STREAM_PREFIX_DEFAULT: &str = "snapshot-";

/// Default events applied per projection transaction. One commit per batch
/// amortises SQLite's commit (a WAL append) over many events; 500 typical
/// events are well under a MiB held in memory, and a failure rolls back
/// (and a restart repeats) at most this many.
pub const PROJECTION_BATCH_EVENTS_MAX_DEFAULT: usize = 500;

/// Default events a process manager or gateway handles between checkpoint
/// saves. Events since the last save are handled again after a crash
/// (handlers are idempotent); a save per event costs a SQLite commit.
pub const CHECKPOINT_EVERY_EVENTS_DEFAULT: u64 = 100;

/// Default wait for new events before a live consumer checks its stop
/// handle: the stop latency. Appends wake a waiting consumer at once.
pub const POLL_INTERVAL_MS_DEFAULT: u64 = 50;

/// Records a filtered `$all` subscription scans without a match before it
/// reports its position, so a consumer's checkpoint moves through quiet
/// stretches and a restart does not rescan them.
pub const FILTER_CHECKPOINT_INTERVAL_RECORDS: u64 = 1024;

/// Name of the stream timers are scheduled, cancelled and fired in.
pub const TIMER_STREAM_DEFAULT: &str = "timers";

/// Timers fired per `TimerService::tick` at most (one append each): bounds
/// the time one tick takes; the rest fire on the next tick.
pub const TIMERS_FIRED_PER_TICK_MAX: usize = 1024;

/// Gateway back-off defaults: the first retry waits 100 ms, each further
/// one twice as long, up to 30 s (a down system is probed at least twice
/// a minute, and a blip costs only a fraction of a second).
pub const BACKOFF_MS_INITIAL_DEFAULT: u64 = 100;
pub const BACKOFF_MS_MAX_DEFAULT: u64 = 30_000;

/// Circuit breaker defaults: open after 5 consecutive failures, try again
/// (half-open) after 30 s.
pub const BREAKER_FAILURES_THRESHOLD_DEFAULT: u32 = 5;
pub const BREAKER_COOL_DOWN_MS_DEFAULT: u64 = 30_000;

const _: () = assert!(READ_PAGE_EVENTS > 0);
const _: () = assert!(PROJECTION_BATCH_EVENTS_MAX_DEFAULT > 0);
const _: () = assert!(CHECKPOINT_EVERY_EVENTS_DEFAULT > 0);
const _: () = assert!(TIMERS_FIRED_PER_TICK_MAX > 0);
const _: () = assert!(BACKOFF_MS_INITIAL_DEFAULT > 0 && BACKOFF_MS_INITIAL_DEFAULT <= BACKOFF_MS_MAX_DEFAULT);
const _: () = assert!(BREAKER_FAILURES_THRESHOLD_DEFAULT > 0);
const _: () = assert!(ATTEMPTS_MAX_DEFAULT > 0);
const _: () = assert!(READ_PAGE_EVENTS <= steledb::limits::READ_EVENTS_MAX);
