//! `stele debug-load`: conflicting appends from several threads, reporting
//! each attempt and each acknowledgement on stdout, so a test that kills
//! this process at a random moment can check what survived.
//!
//! Output, one line each, fields separated by spaces:
//! `try <batch> <stream>:<id>,<id>... [<stream>:<ids>...]` before an append,
//! `ok <batch> <stream>:<first_rev>:<last_rev>:<first_pos>:<last_pos> ...` after it is acknowledged,
//! `rejected <batch> <error kind>` when it is refused.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use steledb::{AppendError, ExpectedRevision, NewEvent, Store, StreamAppend, Uuid};

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
}

/// xorshift64*: a tiny deterministic generator; the load needs variety, not quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn run(args: &LoadArgs) -> Result<ExitCode, String> {
    let store = Arc::new(Store::open(&args.data_dir).map_err(|e| e.to_string())?);
    let threads: Vec<_> = (0..args.writers)
        .map(|writer| {
            let store = store.clone();
            let (streams, appends, seed) = (args.streams, args.appends, args.seed);
            std::thread::spawn(move || write_loop(&store, writer as u64, streams, appends, seed))
        })
        .collect();
    for thread in threads {
        thread.join().map_err(|_| "a writer thread panicked".to_string())??;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_loop(store: &Store, writer: u64, streams: u64, appends: Option<u64>, seed: u64) -> Result<(), String> {
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
            let events = (0..1 + rng.below(3))
                .map(|i| NewEvent::json(Uuid::new_v4(), "Loaded", format!("{{\"writer\":{writer},\"i\":{i}}}")))
                .collect();
            parts.push(StreamAppend::new(stream, expected, events));
        }
        let attempt: Vec<String> = parts
            .iter()
            .map(|p| {
                let ids: Vec<String> = p.events.iter().map(|e| e.id.to_string()).collect();
                format!("{}:{}", p.stream, ids.join(","))
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

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // A reader that went away is the test ending; nothing to report to.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
