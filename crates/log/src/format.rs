//! On-disk layouts of the log: the segment header and the record frame.
//!
//! All integers are little-endian. Both layouts carry a format version and a
//! CRC32C, so a reader can tell "written by a newer SteleDB" from "damaged".
//!
//! Segment header (`SEGMENT_HEADER_SIZE` = 32 bytes):
//!
//! ```text
//! offset size field
//!      0    8 magic            b"STELESEG"
//!      8    2 format_version   SEGMENT_FORMAT_VERSION
//!     10    6 reserved         zero
//!     16    8 base_position    logical position of the first record
//!     24    4 reserved         zero
//!     28    4 crc32c           over bytes [0, 28)
//! ```
//!
//! Record frame (`RECORD_OVERHEAD` = 16 bytes around the payload):
//!
//! ```text
//! offset   size field
//!      0      4 length_bytes    whole frame, header + payload + trailer
//!      4      4 crc32c          over [0, 4) ++ [8, length_bytes)
//!      8      1 format_version  RECORD_FORMAT_VERSION
//!      9      1 kind            owned by the layer above (never 0)
//!     10      1 flags           FLAG_TRANSACTION_END, FLAG_COMMIT_END
//!     11      1 reserved        zero
//!     12      n payload
//! 12 + n      4 length_bytes    again, so the log can be walked backwards
//! ```
//!
//! A record's position is the logical byte offset of its first byte; the
//! next record starts at `position + length_bytes`.

use crate::checksum::{self, frame_checksum, FRAMES_PER_PASS};

pub const SEGMENT_MAGIC: [u8; 8] = *b"STELESEG";
pub const SEGMENT_FORMAT_VERSION: u16 = 1;
pub const SEGMENT_HEADER_SIZE: u64 = 32;

pub const RECORD_FORMAT_VERSION: u8 = 1;
pub const RECORD_HEADER_SIZE: usize = 12;
pub const RECORD_TRAILER_SIZE: usize = 4;
pub const RECORD_OVERHEAD: usize = RECORD_HEADER_SIZE + RECORD_TRAILER_SIZE;

/// The last record of an atomic group (a transaction). Recovery never keeps
/// a group whose end record is missing.
pub const FLAG_TRANSACTION_END: u8 = 0b0000_0001;
/// The last record of one write+fdatasync. Recovery uses it to tell a torn
/// final write (truncate) from damage to a write that was already synced
/// (corruption): a synced write is always followed by a later one.
pub const FLAG_COMMIT_END: u8 = 0b0000_0010;
const FLAGS_KNOWN: u8 = FLAG_TRANSACTION_END | FLAG_COMMIT_END;

/// A frame longer than this is damage, not data: it bounds the allocation a
/// corrupt length prefix could ask for. The store's own limits sit far below.
pub const RECORD_SIZE_BYTES_MAX: usize = 256 * 1024 * 1024;

const _: () = assert!(RECORD_SIZE_BYTES_MAX < u32::MAX as usize);
const _: () = assert!(SEGMENT_HEADER_SIZE.is_multiple_of(8));

pub fn encode_segment_header(base_position: u64) -> [u8; SEGMENT_HEADER_SIZE as usize] {
    let mut header = [0u8; SEGMENT_HEADER_SIZE as usize];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..10].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&base_position.to_le_bytes());
    let crc = crc32c::crc32c(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentHeaderError {
    BadMagic,
    BadChecksum,
    UnknownVersion(u16),
}

impl std::fmt::Display for SegmentHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadMagic => write!(f, "not a SteleDB segment (bad magic)"),
            Self::BadChecksum => write!(f, "segment header checksum mismatch"),
            Self::UnknownVersion(v) => write!(f, "unknown segment format version {v}"),
        }
    }
}

/// Returns the base position stored in a segment header.
pub fn decode_segment_header(header: &[u8]) -> Result<u64, SegmentHeaderError> {
    assert_eq!(header.len(), SEGMENT_HEADER_SIZE as usize);
    if header[0..8] != SEGMENT_MAGIC {
        return Err(SegmentHeaderError::BadMagic);
    }
    let crc_stored = u32::from_le_bytes(header[28..32].try_into().unwrap());
    if crc32c::crc32c(&header[0..28]) != crc_stored {
        return Err(SegmentHeaderError::BadChecksum);
    }
    let version = u16::from_le_bytes(header[8..10].try_into().unwrap());
    if version != SEGMENT_FORMAT_VERSION {
        return Err(SegmentHeaderError::UnknownVersion(version));
    }
    Ok(u64::from_le_bytes(header[16..24].try_into().unwrap()))
}

/// Appends one framed record to `buffer` and returns the frame's length.
pub fn encode_record(buffer: &mut Vec<u8>, kind: u8, flags: u8, payload: &[u8]) -> usize {
    assert_ne!(kind, 0, "record kind 0 is reserved: zeroed disk must never decode");
    assert_eq!(flags & !FLAGS_KNOWN, 0);
    let length_bytes = payload.len() + RECORD_OVERHEAD;
    assert!(length_bytes <= RECORD_SIZE_BYTES_MAX);
    let start = buffer.len();
    buffer.reserve(length_bytes);
    buffer.extend_from_slice(&(length_bytes as u32).to_le_bytes());
    buffer.extend_from_slice(&[0u8; 4]); // crc, filled below
    buffer.extend_from_slice(&[RECORD_FORMAT_VERSION, kind, flags, 0]);
    buffer.extend_from_slice(payload);
    buffer.extend_from_slice(&(length_bytes as u32).to_le_bytes());
    let crc = frame_checksum(&buffer[start..]);
    buffer[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    length_bytes
}

/// Sets `flag` on an already encoded frame and fixes its checksum.
pub fn set_record_flag(frame: &mut [u8], flag: u8) {
    assert_eq!(flag & !FLAGS_KNOWN, 0);
    frame[10] |= flag;
    let crc = frame_checksum(frame);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
    debug_assert!(decode_record(frame).is_ok());
}

/// Why bytes at some offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes remain than the frame needs (a torn tail, or a bad length).
    Truncated,
    BadLength(u32),
    BadChecksum,
    UnknownVersion(u8),
    BadKind,
    TrailerMismatch,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => write!(f, "record is cut short"),
            Self::BadLength(n) => write!(f, "record length {n} is impossible"),
            Self::BadChecksum => write!(f, "record checksum mismatch"),
            Self::UnknownVersion(v) => write!(f, "unknown record format version {v}"),
            Self::BadKind => write!(f, "record kind 0 or unknown flags"),
            Self::TrailerMismatch => write!(f, "record trailer length differs from header"),
        }
    }
}

/// A record decoded in place; `payload` borrows from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub kind: u8,
    pub flags: u8,
    pub payload: &'a [u8],
    pub length_bytes: u32,
}

impl RecordRef<'_> {
    pub fn is_transaction_end(&self) -> bool {
        self.flags & FLAG_TRANSACTION_END != 0
    }
    pub fn is_commit_end(&self) -> bool {
        self.flags & FLAG_COMMIT_END != 0
    }
}

/// Reads the length prefix of a frame and checks it is plausible, so a
/// caller can size a read before it allocates.
pub fn peek_record_length(bytes: &[u8]) -> Result<usize, FrameError> {
    if bytes.len() < 4 {
        return Err(FrameError::Truncated);
    }
    let length_bytes = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let length = length_bytes as usize;
    if !(RECORD_OVERHEAD..=RECORD_SIZE_BYTES_MAX).contains(&length) {
        return Err(FrameError::BadLength(length_bytes));
    }
    Ok(length)
}

/// Decodes the frame at the start of `bytes`, verifying everything. Bytes
/// past the frame are ignored.
pub fn decode_record(bytes: &[u8]) -> Result<RecordRef<'_>, FrameError> {
    let frame = frame_at(bytes)?;
    if frame_checksum(frame) != stored_checksum(frame) {
        return Err(FrameError::BadChecksum);
    }
    decode_checksummed(frame)
}

/// The whole frame at the start of `bytes`, by its length prefix; nothing in
/// it is verified yet.
fn frame_at(bytes: &[u8]) -> Result<&[u8], FrameError> {
    let length = peek_record_length(bytes)?;
    if bytes.len() < length {
        return Err(FrameError::Truncated);
    }
    Ok(&bytes[..length])
}

fn stored_checksum(frame: &[u8]) -> u32 {
    u32::from_le_bytes(frame[4..8].try_into().unwrap())
}

/// Decodes a whole frame whose checksum has been verified.
fn decode_checksummed(frame: &[u8]) -> Result<RecordRef<'_>, FrameError> {
    let length = frame.len();
    // The checksum matched, so what follows is what the writer wrote; these
    // checks catch frames from a newer or a broken writer.
    if frame[8] != RECORD_FORMAT_VERSION {
        return Err(FrameError::UnknownVersion(frame[8]));
    }
    let (kind, flags) = (frame[9], frame[10]);
    if kind == 0 || flags & !FLAGS_KNOWN != 0 {
        return Err(FrameError::BadKind);
    }
    let trailer = u32::from_le_bytes(frame[length - 4..].try_into().unwrap());
    if trailer as usize != length {
        return Err(FrameError::TrailerMismatch);
    }
    Ok(RecordRef {
        kind,
        flags,
        payload: &frame[RECORD_HEADER_SIZE..length - RECORD_TRAILER_SIZE],
        length_bytes: length as u32,
    })
}

/// Frames of one read buffer whose checksums were verified together, named
/// by their start offsets in the buffer. Readers that walk many records
/// verify a few ahead in one pass ([`checksum::frame_checksums`]) and then
/// decode them without checking again. Forget them whenever the buffer's
/// bytes change.
#[derive(Debug, Default)]
pub(crate) struct VerifiedFrames {
    starts: [usize; FRAMES_PER_PASS],
    count: usize,
}

impl VerifiedFrames {
    pub(crate) fn clear(&mut self) {
        self.count = 0;
    }

    pub(crate) fn contains(&self, start: usize) -> bool {
        self.starts[..self.count].contains(&start)
    }

    /// Verifies the frames starting at `starts` in `bytes` (at most
    /// [`FRAMES_PER_PASS`]) and remembers those that are whole and whose
    /// checksums match. Forgets what it knew before.
    pub(crate) fn verify(&mut self, bytes: &[u8], starts: &[usize]) {
        assert!(starts.len() <= FRAMES_PER_PASS);
        self.count = 0;
        let mut whole = [None; FRAMES_PER_PASS];
        for (slot, &start) in whole.iter_mut().zip(starts) {
            *slot = bytes.get(start..).and_then(|rest| frame_at(rest).ok());
        }
        let checksums = match whole {
            [Some(a), Some(b), Some(c)] => checksum::frame_checksums([a, b, c]).map(Some),
            _ => whole.map(|frame| frame.map(frame_checksum)),
        };
        for ((&start, frame), checksum) in starts.iter().zip(whole).zip(checksums) {
            if let (Some(frame), Some(checksum)) = (frame, checksum) {
                if checksum == stored_checksum(frame) {
                    self.starts[self.count] = start;
                    self.count += 1;
                }
            }
        }
    }

    /// Decodes the frame at `start` of `bytes`, verifying its checksum
    /// unless it was verified in the last pass.
    pub(crate) fn decode<'a>(&self, bytes: &'a [u8], start: usize) -> Result<RecordRef<'a>, FrameError> {
        if self.contains(start) {
            decode_checksummed(frame_at(&bytes[start..])?)
        } else {
            decode_record(&bytes[start..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn segment_header_round_trip() {
        let header = encode_segment_header(123_456);
        assert_eq!(decode_segment_header(&header), Ok(123_456));
        let mut damaged = header;
        damaged[17] ^= 1;
        assert_eq!(decode_segment_header(&damaged), Err(SegmentHeaderError::BadChecksum));
    }

    #[test]
    fn zeroed_bytes_never_decode() {
        assert!(decode_record(&[0u8; 64]).is_err());
    }

    proptest! {
        #[test]
        fn record_round_trip(kind in 1u8.., end: bool, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buffer = vec![7u8; 3];
            let flags = if end { FLAG_TRANSACTION_END } else { 0 };
            let length = encode_record(&mut buffer, kind, flags, &payload);
            prop_assert_eq!(length, buffer.len() - 3);
            let record = decode_record(&buffer[3..]).unwrap();
            prop_assert_eq!(record.kind, kind);
            prop_assert_eq!(record.is_transaction_end(), end);
            prop_assert_eq!(record.payload, &payload[..]);
        }

        #[test]
        fn any_single_bit_flip_is_detected(payload in proptest::collection::vec(any::<u8>(), 0..200), bit in any::<prop::sample::Index>()) {
            let mut buffer = Vec::new();
            encode_record(&mut buffer, 1, FLAG_TRANSACTION_END, &payload);
            let bit = bit.index(buffer.len() * 8);
            buffer[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_record(&buffer).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode_record(&bytes);
        }
    }
}
