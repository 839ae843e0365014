use std::io;
use std::path::PathBuf;

use crate::format::{FrameError, SegmentHeaderError};

/// Opening the log failed; nothing was changed on disk except, possibly,
/// the truncation of a torn tail that was reported as done.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("corrupt segment header in {path}: {reason}")]
    BadSegmentHeader { path: PathBuf, reason: SegmentHeaderError },
    #[error("segment {path} says it starts at position {found}, its name says {named}")]
    SegmentNameMismatch { path: PathBuf, named: u64, found: u64 },
    /// Both segments are named: a segment cut short (or grown) shows up
    /// here, as a gap before the segment that follows it.
    #[error("segments are not contiguous: {previous} ends at position {expected}, but the next segment {path} starts at {found}")]
    SegmentGap { path: PathBuf, previous: PathBuf, expected: u64, found: u64 },
    #[error("corruption in {path} at file offset {offset} (log position {position}): {reason}; valid records follow it, so this is not a torn write")]
    Corruption { path: PathBuf, offset: u64, position: u64, reason: FrameError },
    /// `path` is the last segment, where the log now ends.
    #[error(
        "the index covers the log up to position {covered}, but the log ends at {end} in {path}: the log lost acknowledged data"
    )]
    LogBehindIndex { covered: u64, end: u64, path: PathBuf },
}

/// Reading a record failed. A record is never returned unless its checksum
/// matched.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("I/O error reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no valid record at log position {position} ({path}, file offset {offset}): {reason}; either the position is not a record boundary or the log is damaged")]
    BadRecord { path: PathBuf, offset: u64, position: u64, reason: FrameError },
    #[error("position {position} is past the end of the log ({end})")]
    PastEnd { position: u64, end: u64 },
}

/// Appending failed. Once [`WriteError::Poisoned`] is returned the writer
/// accepts nothing more: after a failed sync the page cache can no longer be
/// trusted, so the only safe continuation is a restart that re-reads the disk.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the log writer stopped after an earlier I/O failure ({cause}); restart to recover")]
    Poisoned { cause: String },
    #[error(
        "no space left on device; nothing from this batch was written, appends will work again once space is freed"
    )]
    NoSpace,
    #[error("transaction of {size_bytes} bytes exceeds the record limit")]
    TooLarge { size_bytes: usize },
}
