//! `stele debug-damage` (hidden): damages one segment file of a stopped
//! store's data directory the way disks do, for tests and operators' drills.
//!
//! Kinds: `truncate` (cut the file at an offset), `flip-bit` (one bit of one
//! byte), `zero-sector` (an aligned 512-byte sector of zeros), and
//! `duplicate-block` (an aligned 512-byte block written again over another
//! block: a misdirected write). The segment header (first 32 bytes) is never
//! touched, so every damage lands on records. The same seed on the same
//! files picks the same segment and offsets. Prints one line:
//! `damaged file=<path> kind=<kind> offset=<o> length=<n> [bit=<b>] [source_offset=<s>]`.

use std::fmt;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::rng::Rng;

/// Bytes at the start of every segment file (the header) left intact.
const SEGMENT_HEADER_BYTES: u64 = stele_log::format::SEGMENT_HEADER_SIZE;
/// The unit of `zero-sector` and `duplicate-block`: a disk sector.
const SECTOR_BYTES: u64 = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Truncate,
    FlipBit,
    ZeroSector,
    DuplicateBlock,
}

#[derive(Args, Debug)]
pub struct DamageArgs {
    /// The data directory (its store must not be open).
    data_dir: PathBuf,
    #[arg(long, value_enum)]
    kind: Kind,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Damage this segment file instead of a randomly chosen one.
    #[arg(long)]
    segment: Option<PathBuf>,
}

#[derive(Debug)]
pub enum DamageError {
    NotADataDirectory { path: PathBuf },
    Locked { path: PathBuf },
    NoSegments { path: PathBuf },
    TooSmall { path: PathBuf, size_bytes: u64, kind: Kind },
    Io { path: PathBuf, source: std::io::Error },
}

impl fmt::Display for DamageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotADataDirectory { path } => write!(f, "{} is not a SteleDB data directory", path.display()),
            Self::Locked { path } => write!(f, "the store in {} is open; stop it first", path.display()),
            Self::NoSegments { path } => write!(f, "no segment files in {}", path.display()),
            Self::TooSmall { path, size_bytes, kind } => {
                write!(f, "{} ({size_bytes} bytes) is too small for {kind:?}", path.display())
            }
            Self::Io { path, source } => write!(f, "I/O error on {}: {source}", path.display()),
        }
    }
}

/// What was done, for the one line printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub file: PathBuf,
    pub kind: Kind,
    pub offset: u64,
    pub length_bytes: u64,
    pub bit: Option<u8>,
    pub source_offset: Option<u64>,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
        write!(
            f,
            "damaged file={} kind={kind} offset={} length={}",
            self.file.display(),
            self.offset,
            self.length_bytes
        )?;
        if let Some(bit) = self.bit {
            write!(f, " bit={bit}")?;
        }
        if let Some(source) = self.source_offset {
            write!(f, " source_offset={source}")?;
        }
        Ok(())
    }
}

pub fn run(args: &DamageArgs) -> Result<ExitCode, String> {
    let damage = damage(args).map_err(|e| e.to_string())?;
    println!("{damage}");
    Ok(ExitCode::SUCCESS)
}

fn damage(args: &DamageArgs) -> Result<Damage, DamageError> {
    let log = args.data_dir.join("log");
    if !log.is_dir() {
        return Err(DamageError::NotADataDirectory { path: args.data_dir.clone() });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DamageError::Io { path, source }
    };
    // Damaging a live store would race its writer; hold its lock meanwhile.
    let _lock = stele_log::storage::lock_directory(&args.data_dir)
        .map_err(io(&args.data_dir))?
        .ok_or_else(|| DamageError::Locked { path: args.data_dir.clone() })?;
    let mut rng = Rng(args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let file = match &args.segment {
        Some(segment) => segment.clone(),
        None => {
            let mut segments: Vec<PathBuf> = std::fs::read_dir(&log)
                .map_err(io(&log))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|e| e == "seg"))
                // Only files the kind can damage: a short last segment has no second block.
                .filter(|path| std::fs::metadata(path).is_ok_and(|m| m.len() > size_bytes_min(args.kind)))
                .collect();
            segments.sort();
            if segments.is_empty() {
                return Err(DamageError::NoSegments { path: log });
            }
            segments.swap_remove(rng.below(segments.len() as u64) as usize)
        }
    };
    let handle = OpenOptions::new().read(true).write(true).open(&file).map_err(io(&file))?;
    let size_bytes = handle.metadata().map_err(io(&file))?.len();
    let too_small = || DamageError::TooSmall { path: file.clone(), size_bytes, kind: args.kind };
    let span_bytes = size_bytes.checked_sub(SEGMENT_HEADER_BYTES).filter(|&n| n > 0).ok_or_else(too_small)?;
    let offset = SEGMENT_HEADER_BYTES + rng.below(span_bytes);
    let mut done =
        Damage { file: file.clone(), kind: args.kind, offset, length_bytes: 0, bit: None, source_offset: None };
    match args.kind {
        Kind::Truncate => {
            handle.set_len(offset).map_err(io(&file))?;
            done.length_bytes = size_bytes - offset;
        }
        Kind::FlipBit => {
            let bit = rng.below(8) as u8;
            let mut byte = [0u8];
            handle.read_exact_at(&mut byte, offset).map_err(io(&file))?;
            byte[0] ^= 1 << bit;
            handle.write_all_at(&byte, offset).map_err(io(&file))?;
            (done.bit, done.length_bytes) = (Some(bit), 1);
        }
        Kind::ZeroSector => {
            let (start, end) = sector_around(offset, size_bytes);
            handle.write_all_at(&vec![0u8; (end - start) as usize], start).map_err(io(&file))?;
            (done.offset, done.length_bytes) = (start, end - start);
        }
        Kind::DuplicateBlock => {
            let sectors = size_bytes.div_ceil(SECTOR_BYTES);
            if sectors < 2 {
                return Err(too_small());
            }
            let target = offset / SECTOR_BYTES;
            // Any other sector; never the same one, which would change nothing.
            let source = (target + 1 + rng.below(sectors - 1)) % sectors;
            let (source_start, source_end) = sector_around(source * SECTOR_BYTES, size_bytes);
            let (target_start, target_end) = sector_around(offset, size_bytes);
            let mut block = vec![0u8; (source_end - source_start) as usize];
            handle.read_exact_at(&mut block, source_start).map_err(io(&file))?;
            block.truncate((target_end - target_start) as usize);
            handle.write_all_at(&block, target_start).map_err(io(&file))?;
            (done.offset, done.length_bytes, done.source_offset) =
                (target_start, block.len() as u64, Some(source_start));
        }
    }
    handle.sync_all().map_err(io(&file))?;
    Ok(done)
}

/// A file must be longer than this for `kind` to change it.
fn size_bytes_min(kind: Kind) -> u64 {
    match kind {
        Kind::DuplicateBlock => SECTOR_BYTES,
        _ => SEGMENT_HEADER_BYTES,
    }
}

/// The 512-byte sector holding `offset`, clipped to the records: never the
/// header, never past the end of the file.
fn sector_around(offset: u64, size_bytes: u64) -> (u64, u64) {
    let start = (offset / SECTOR_BYTES * SECTOR_BYTES).max(SEGMENT_HEADER_BYTES);
    let end = (offset / SECTOR_BYTES * SECTOR_BYTES + SECTOR_BYTES).min(size_bytes);
    (start, end)
}
