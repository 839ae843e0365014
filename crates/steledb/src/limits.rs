//! Every limit of the store in one place. Each is checked where data enters
//! (before anything is written), and README.md lists them in one table.

/// Size of one event: data + metadata + type + content type. KurrentDB's
/// clients assume up to 16 MiB.
pub const EVENT_SIZE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Total size of the events of one append request (all streams together).
pub const APPEND_SIZE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Events in one append request.
pub const APPEND_EVENTS_MAX: usize = 100_000;
/// Streams in one atomic multi-stream append.
pub const APPEND_STREAMS_MAX: usize = 128;
/// Stream names, in UTF-8 bytes. Long enough for `category-<uuid>` shapes
/// with room to spare, short enough that index lookups stay cheap.
pub const STREAM_NAME_BYTES_MAX: usize = 512;
pub const EVENT_TYPE_BYTES_MAX: usize = 512;
pub const CONTENT_TYPE_BYTES_MAX: usize = 128;
/// Append requests waiting for the writer. Past this, appends are refused
/// with `AppendError::Overloaded` instead of queueing without bound.
pub const QUEUE_REQUESTS_MAX: usize = 8192;
/// The writer stops draining the queue into one group commit past this many
/// bytes; a single larger append still goes alone.
pub const BATCH_SIZE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Events a single read returns at most, whatever limit the caller asks for.
pub const READ_EVENTS_MAX: usize = 1_000_000;
/// Appends remembered (by their first event id) for idempotent retries with
/// `Any`/`StreamExists`. Retries with an exact or no-stream expectation are
/// checked against the stream itself, without this window.
pub const RECENT_APPENDS_MAX: usize = 262_144;
/// On open, the window is rebuilt from at most this many records before the
/// index checkpoint, so open time stays independent of history.
pub const RECENT_WINDOW_REPLAY_RECORDS_MAX: usize = 65_536;
/// Index entries that may wait in memory, in memtables' worth, while index
/// tables cannot be written (a memtable is frozen and its write keeps
/// failing). Past this, appends are refused with `AppendError::IndexBacklog`
/// instead of memory growing until the process dies.
pub const INDEX_BACKLOG_MEMTABLES_MAX: usize = 8;
/// While appends are refused for an index backlog, the failed table write
/// is retried at most this often (by a monotonic clock: retrying is not
/// state, and a wall clock set back must not hold it off).
pub const INDEX_BACKLOG_RETRY_INTERVAL_MS: u64 = 100;
/// Stream heads cached by the writer before the cache is cleared.
pub const STREAM_CACHE_ENTRIES_MAX: usize = 262_144;

/// Configurable limits, defaulting to the constants above. Tests use small
/// values to reach the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub event_size_bytes_max: usize,
    pub append_size_bytes_max: usize,
    pub append_events_max: usize,
    pub append_streams_max: usize,
    pub queue_requests_max: usize,
    pub batch_size_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            event_size_bytes_max: EVENT_SIZE_BYTES_MAX,
            append_size_bytes_max: APPEND_SIZE_BYTES_MAX,
            append_events_max: APPEND_EVENTS_MAX,
            append_streams_max: APPEND_STREAMS_MAX,
            queue_requests_max: QUEUE_REQUESTS_MAX,
            batch_size_bytes_max: BATCH_SIZE_BYTES_MAX,
        }
    }
}

const _: () = assert!(EVENT_SIZE_BYTES_MAX <= APPEND_SIZE_BYTES_MAX);
// One event is one log record: it must fit the log's frame limit with room
// for its header and name fields.
const _: () = assert!(EVENT_SIZE_BYTES_MAX + STREAM_NAME_BYTES_MAX + 1024 < stele_log::format::RECORD_SIZE_BYTES_MAX);
const _: () = assert!(STREAM_NAME_BYTES_MAX < u16::MAX as usize);
const _: () = assert!(EVENT_TYPE_BYTES_MAX < u16::MAX as usize);
const _: () = assert!(CONTENT_TYPE_BYTES_MAX < u8::MAX as usize);
