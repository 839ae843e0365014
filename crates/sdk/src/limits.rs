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

const _: () = assert!(READ_PAGE_EVENTS > 0);
const _: () = assert!(ATTEMPTS_MAX_DEFAULT > 0);
const _: () = assert!(READ_PAGE_EVENTS <= steledb::limits::READ_EVENTS_MAX);
