//! Damage test: for many seeds, `stele debug-load` writes through the real
//! binary into small segments, `stele debug-damage` truncates, flips a bit,
//! zeroes a sector or duplicates a block, and then:
//!
//! - the store refuses to open with an error naming the damaged file (and
//!   the offset, for damage inside records), and `stele verify` exits 1
//!   naming it too; or
//! - it opens, and either reads back whole, passing the shared history
//!   checker (only a tail of the damaged *last* segment may be gone), with
//!   `stele verify` clean; or the damage is still there, every read that
//!   meets it fails naming the file and offset, every acknowledged event
//!   reads back intact or as such an error, and `stele verify` exits 2
//!   naming the file and offset.
//!
//! `STELE_DAMAGE_SEEDS=500 cargo test -p stele-cli --test damage` soaks.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use steledb::{Direction, OpenError, ReadError, Store, StreamStart};
use support::history::{check, fnv1a_64, verify, CheckOptions, History, Outcome, ReadBack};

const KINDS: [&str; 4] = ["truncate", "flip-bit", "zero-sector", "duplicate-block"];
/// Small segments, so one run spans many and damage hits sealed ones too.
const SEGMENT_SIZE_BYTES: u64 = 4096;

/// What `stele debug-damage` printed.
#[derive(Debug)]
struct Damage {
    file: PathBuf,
    offset: u64,
    length_bytes: u64,
}

fn stele(args: &[&str], dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_stele")).args(args).arg(dir).output().expect("run stele");
    assert!(output.status.success(), "stele {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn write_history(dir: &Path, seed: u64) -> History {
    let seed = seed.to_string();
    let segment = SEGMENT_SIZE_BYTES.to_string();
    let args = [
        "debug-load",
        "--writers",
        "2",
        "--streams",
        "4",
        "--appends",
        "40",
        "--seed",
        &seed,
        "--segment-size-bytes",
        &segment,
        "--data-dir",
    ];
    let mut history = History::default();
    for line in stele(&args, dir).lines() {
        history.record_line(line, false).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(history.appends.iter().all(|a| a.outcome != Outcome::Unknown), "a clean run answers every append");
    history
}

fn damage(dir: &Path, kind: &str, seed: u64) -> Damage {
    let line = stele(&["debug-damage", "--kind", kind, "--seed", &seed.to_string()], dir);
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_owned()
    };
    Damage {
        file: PathBuf::from(field("file")),
        offset: field("offset").parse().expect("an offset"),
        length_bytes: field("length").parse().expect("a length"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The segment files, sorted by name (= by base position), with their base positions.
fn segments(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut segments: Vec<(PathBuf, u64)> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|path| {
            let base = path.file_stem()?.to_str()?.parse().ok()?;
            Some((path, base))
        })
        .collect();
    segments.sort();
    segments
}

/// How one seed ended, to show the test reached every branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ending {
    Unchanged,
    RefusedToOpen,
    RecoveredWhole,
    RecoveredLosingTail,
    ServesWithErrors,
}

fn run_seed(seed: u64) -> Ending {
    let kind = KINDS[seed as usize % KINDS.len()];
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let history = write_history(&dir, seed);
    // Half the seeds lose the index too, so the open replays across the damage.
    if seed % 8 >= 4 {
        std::fs::remove_dir_all(dir.join("index")).unwrap();
    }
    let before = segments(&dir);
    let original = root.path().join("original");
    copy_dir(&dir, &original);
    let damage = damage(&dir, kind, seed);
    let context = format!("seed {seed}, {kind} {damage:?}");
    let name = damage.file.file_name().unwrap();
    if std::fs::read(&damage.file).unwrap() == std::fs::read(original.join("log").join(name)).unwrap() {
        return Ending::Unchanged;
    }
    let (_, base_position) = before.iter().find(|(p, _)| p == &damage.file).expect("a segment was damaged");
    let is_last = before.last().is_some_and(|(p, _)| p == &damage.file);
    // `stele verify` runs on a copy: opening either copy recovers it.
    let for_verify = root.path().join("for-verify");
    copy_dir(&dir, &for_verify);
    let verified = verify(&for_verify);
    let file_name = |in_dir: &Path| in_dir.join("log").join(name).display().to_string();
    let file = damage.file.display().to_string();

    let store = match Store::open(&dir) {
        Err(error) => {
            check_open_error(&error, &damage, &context);
            assert_eq!(verified.exit_code, 1, "{context}: verify must refuse too: {}", verified.output);
            assert!(verified.output.contains(&file_name(&for_verify)), "{context}: {}", verified.output);
            return Ending::RefusedToOpen;
        }
        Ok(store) => store,
    };
    match ReadBack::from_store(&store) {
        Ok(read) => {
            // Damage to records of a sealed segment can never pass unseen.
            assert!(is_last, "{context}: a sealed segment was damaged and everything reads back");
            let options = CheckOptions { lost_tail_from_position: Some(*base_position) };
            let summary =
                check(&history, &read, options).unwrap_or_else(|v| panic!("{context}: {} violations: {v:#?}", v.len()));
            assert_eq!(verified.exit_code, 0, "{context}: recovered, verify must agree: {}", verified.output);
            if summary.acknowledged_lost > 0 {
                Ending::RecoveredLosingTail
            } else {
                Ending::RecoveredWhole
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains(&file) && message.contains("offset"), "{context}: read error {message}");
            check_each_event(&store, &history, &file, is_last, &context);
            assert_eq!(verified.exit_code, 2, "{context}: verify must report the damage: {}", verified.output);
            let reported = verified.output.lines().find(|l| l.starts_with("DAMAGED")).unwrap_or_default();
            assert!(
                reported.contains(&file_name(&for_verify)) && reported.contains("offset"),
                "{context}: verify does not name the file and offset: {}",
                verified.output
            );
            Ending::ServesWithErrors
        }
    }
}

/// The open error names the damaged file, and for damage inside records an
/// offset no later than the damage.
fn check_open_error(error: &OpenError, damage: &Damage, context: &str) {
    let damage_end = damage.offset + damage.length_bytes;
    match error {
        OpenError::Log(stele_log::OpenError::Corruption { path, offset, .. })
        | OpenError::Replay(ReadError::Log(stele_log::ReadError::BadRecord { path, offset, .. })) => {
            assert_eq!(path, &damage.file, "{context}: {error}");
            assert!(*offset < damage_end, "{context}: reported offset {offset} is after the damage: {error}");
        }
        // A sealed segment cut short: the gap after it, naming it.
        OpenError::Log(stele_log::OpenError::SegmentGap { previous, .. }) => {
            assert_eq!(previous, &damage.file, "{context}: {error}");
        }
        OpenError::Log(stele_log::OpenError::LogBehindIndex { path, .. }) => {
            assert_eq!(path, &damage.file, "{context}: {error}");
        }
        other => panic!("{context}: unexpected open error: {other}"),
    }
}

/// Every acknowledged event reads back by stream and revision either intact
/// or as an error naming the damaged file; missing ones (the last segment
/// only) form the tail of their stream.
fn check_each_event(store: &Store, history: &History, file: &str, is_last: bool, context: &str) {
    let mut missing_from: BTreeMap<&str, u64> = BTreeMap::new();
    let mut intact = 0;
    for append in &history.appends {
        let Outcome::Acknowledged(acks) = &append.outcome else { continue };
        for (part, ack) in append.parts.iter().zip(acks) {
            for (i, sent) in part.events.iter().enumerate() {
                let revision = ack.first_revision + i as u64;
                let start = StreamStart::Revision(revision);
                match store.read_stream(&part.stream, start, Direction::Forward, 1) {
                    Ok(events) if events.len() == 1 => {
                        let event = &events[0];
                        assert_eq!((event.id, event.revision), (sent.id, revision), "{context}: another event");
                        assert_eq!(fnv1a_64(event.data()), sent.data_hash, "{context}: data changed");
                        if let Some(&from) = missing_from.get(part.stream.as_str()) {
                            panic!("{context}: {} revision {revision} present after {from} is missing", part.stream);
                        }
                        intact += 1;
                    }
                    Ok(_) | Err(ReadError::StreamNotFound { .. }) => {
                        assert!(is_last, "{context}: {} revision {revision} missing", part.stream);
                        missing_from.entry(&part.stream).or_insert(revision);
                    }
                    Err(error) => {
                        let message = error.to_string();
                        assert!(message.contains(file), "{context}: read error not naming {file}: {message}");
                    }
                }
            }
        }
    }
    assert!(intact > 0, "{context}: no acknowledged event reads back at all");
}

#[test]
fn damaged_segments_are_recovered_or_reported_never_served_changed() {
    let seeds: u64 = std::env::var("STELE_DAMAGE_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    let first: u64 = std::env::var("STELE_DAMAGE_FIRST_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut endings: BTreeMap<Ending, u64> = BTreeMap::new();
    for seed in first..first + seeds {
        let ending = run_seed(seed);
        eprintln!("seed {seed} ({}): {ending:?}", KINDS[seed as usize % KINDS.len()]);
        *endings.entry(ending).or_default() += 1;
    }
    eprintln!("{endings:?}");
    let detected = endings.get(&Ending::RefusedToOpen).copied().unwrap_or(0)
        + endings.get(&Ending::ServesWithErrors).copied().unwrap_or(0);
    assert!(seeds < 8 || detected > 0, "no damage was ever detected: {endings:?}");
}

/// `stele debug-damage` is reproducible: the same seed on the same files
/// does the same damage.
#[test]
fn the_same_seed_damages_the_same_bytes() {
    let root = tempfile::tempdir().unwrap();
    let (first, second) = (root.path().join("a"), root.path().join("b"));
    write_history(&first, 7);
    copy_dir(&first, &second);
    for kind in KINDS {
        let (a, b) = (damage(&first, kind, 11), damage(&second, kind, 11));
        assert_eq!(a.file.file_name(), b.file.file_name(), "{kind}");
        assert_eq!((a.offset, a.length_bytes), (b.offset, b.length_bytes), "{kind}");
        assert!(a.offset >= 32, "{kind}: the segment header is never damaged");
        let name = a.file.file_name().unwrap();
        let read = |dir: &Path| std::fs::read(dir.join("log").join(name)).unwrap();
        assert_eq!(read(&first), read(&second), "{kind}: the files differ after the same damage");
    }
}
