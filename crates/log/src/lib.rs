//! The log layer of SteleDB: an append-only sequence of checksummed records
//! in segment files. It knows bytes and positions; it does not know streams.
//!
//! - [`open`] recovers the log and returns its single [`LogWriter`] and a
//!   cloneable [`LogReader`].
//! - The writer groups records into transactions (all-or-nothing on
//!   recovery) and commits a batch of them with one write and one
//!   `fdatasync`; only then does the committed end move, so readers never see
//!   data that is not durable.

mod checksum;
mod error;
pub mod format;
mod log;
pub mod storage;

pub use error::{OpenError, ReadError, WriteError};
pub use format::{FrameError, RecordRef};
pub use log::{
    open, scan_segment, Cursor, LogConfig, LogReader, LogStats, LogWriter, Record, Recovery, SegmentInfo,
    PREALLOCATE_AHEAD_BYTES, PREALLOCATE_CHUNK_BYTES, SYNC_LATENCY_BUCKETS_US,
};
pub use storage::{DiskStorage, Fault, FaultyStorage, Storage, StorageFile};
