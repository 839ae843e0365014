//! `stele debug-load`: conflicting appends from several threads, reporting
//! each attempt and each acknowledgement on stdout, so a test that kills
//! this process at a random moment can check what survived.
//!
//! Output, one line each, fields separated by spaces:
//! `opened <open_ms> <replayed_events>` once the store is open,
//! `try <batch> <stream>@<expected>:<id>/<data_hash>,... [<stream>@<expected>:...]` before an append,
//! `ok <batch> <stream>:<first_rev>:<last_rev>:<first_pos>:<last_pos> ...` after it is acknowledged,
//! `rejected <batch> <error kind>` when it is refused.
//!
//! `<expected>` is `any`, `no-stream`, `exists` or a revision; `<data_hash>`
//! is the FNV-1a 64 hash of the event's data in hex, so a checker can tell
//! an event read back with other bytes from the one appended. A `try` line
//! is written and flushed under the stdout lock before its append starts, so
//! a line cut by a kill belongs to an append that never started.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use steledb::{AppendError, ExpectedRevision, NewEvent, Store, StoreConfig, StreamAppend, Uuid};

use crate::rng::Rng;

#[derive(Args, Debug)]
pub struct LoadArgs {
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value_t = 4)]
    writers: usize,
    #[arg(long, default_value_t = 6)]
    streams: u64,
    /// Stop after this many appends per writer (default: run until killed).
    #[arg(long)]
    appends: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Events per append are 1..=this (per stream of a multi-stream append).
    #[arg(long, default_value_t = 3)]
    events_max: u64,
    /// Padding added to each event's data, to grow the log faster.
    #[arg(long, default_value_t = 0)]
    padding_bytes: usize,
    /// Segment size; small values make many segments for damage tests.
    #[arg(long)]
    segment_size_bytes: Option<u64>,
    /// Index memtable size; small values make the writer flush (and merge)
    /// index tables all the time, so a kill lands inside one.
    #[arg(long)]
    index_memtable_entries: Option<usize>,
}

pub fn run(args: &LoadArgs) -> Result<ExitCode, String> {
    let defaults = StoreConfig::new(&args.data_dir);
    let config = StoreConfig {
        segment_size_bytes: args.segment_size_bytes.unwrap_or(defaults.segment_size_bytes),
        index_memtable_entries_max: args.index_memtable_entries.unwrap_or(defaults.index_memtable_entries_max),
        ..defaults
    };
    let store = Arc::new(Store::open_with(config).map_err(|e| e.to_string())?);
    let report = store.open_report();
    say(&format!("opened {} {}", report.open_ms, report.replayed_events));
    let shape = Shape {
        streams: args.streams,
        appends: args.appends,
        events_max: args.events_max.max(1),
        padding_bytes: args.padding_bytes,
    };
    let threads: Vec<_> = (0..args.writers)
        .map(|writer| {
            let store = store.clone();
            let seed = args.seed;
            std::thread::spawn(move || write_loop(&store, writer as u64, shape, seed))
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a writer thread panicked".to_string())??;
    }
    Ok(ExitCode::SUCCESS)
}

/// What each writer thread appends.
#[derive(Debug, Clone, Copy)]
struct Shape {
    streams: u64,
    appends: Option<u64>,
    events_max: u64,
    padding_bytes: usize,
}

fn write_loop(store: &Store, writer: u64, shape: Shape, seed: u64) -> Result<(), String> {
    let Shape { streams, appends, events_max, padding_bytes } = shape;
    let padding = "p".repeat(padding_bytes);
    let mut rng = Rng((seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (writer + 1)).max(1));
    let mut count = 0u64;
    while appends.is_none_or(|n| count < n) {
        count += 1;
        let batch = format!("{}-{writer}-{count}", std::process::id());
        let part_count = if rng.below(4) == 0 { 2 } else { 1 };
        let first_stream = rng.below(streams);
        let mut parts = Vec::new();
        for k in 0..part_count {
            let stream = format!("load-{}", (first_stream + k) % streams);
            let expected = match rng.below(3) {
                0 => ExpectedRevision::Any,
                // A guess from the current state: concurrent writers make
                // some of these stale, which is the point.
                _ => match store.stream_revision(&stream).map_err(|e| e.to_string())? {
                    Some(revision) => ExpectedRevision::Exact(revision),
                    None => ExpectedRevision::NoStream,
                },
            };
            let events = (0..1 + rng.below(events_max))
                .map(|i| {
                    let data = format!("{{\"writer\":{writer},\"i\":{i},\"pad\":\"{padding}\"}}");
                    NewEvent::json(Uuid::new_v4(), "Loaded", data)
                })
                .collect();
            parts.push(StreamAppend::new(stream, expected, events));
        }
        let attempt: Vec<String> = parts
            .iter()
            .map(|p| {
                let ids: Vec<String> = p.events.iter().map(|e| format!("{}/{:x}", e.id, fnv1a_64(&e.data))).collect();
                let expected = match p.expected {
                    ExpectedRevision::Any => "any".to_owned(),
                    ExpectedRevision::NoStream => "no-stream".to_owned(),
                    ExpectedRevision::StreamExists => "exists".to_owned(),
                    ExpectedRevision::Exact(revision) => revision.to_string(),
                };
                format!("{}@{expected}:{}", p.stream, ids.join(","))
            })
            .collect();
        say(&format!("try {batch} {}", attempt.join(" ")));
        match store.append_multi(parts.clone()) {
            Ok(results) => {
                let acks: Vec<String> = parts
                    .iter()
                    .zip(&results)
                    .map(|(p, r)| {
                        format!(
                            "{}:{}:{}:{}:{}",
                            p.stream, r.first_revision, r.last_revision, r.first_position, r.last_position
                        )
                    })
                    .collect();
                say(&format!("ok {batch} {}", acks.join(" ")));
            }
            Err(AppendError::WrongExpectedRevision { .. }) => say(&format!("rejected {batch} wrong-expected-revision")),
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits: a fingerprint of the data for the checker, not a checksum
/// the store relies on (the checker computes the same over what it reads).
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // A reader that went away is the test ending; nothing to report to.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
