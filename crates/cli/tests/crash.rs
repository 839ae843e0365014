//! Crash test: a real `stele debug-load` process appends with conflicting
//! expectations from several threads and is killed with SIGKILL at random
//! moments; after each kill the store is reopened and the history of what
//! the process attempted and acknowledged is checked against what is there.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use steledb::{AllStart, Direction, Store, StreamStart, Uuid};

/// One append the load process attempted: its parts as (stream, ids).
#[derive(Debug, Default, Clone)]
struct Attempt {
    parts: Vec<(String, Vec<Uuid>)>,
    /// Per part: first revision, last revision, first position, last position.
    acknowledged: Option<Vec<(u64, u64, u64, u64)>>,
    rejected: bool,
}

#[derive(Debug, Default)]
struct History {
    attempts: HashMap<String, Attempt>,
}

impl History {
    fn record(&mut self, line: &str) {
        let mut words = line.split(' ');
        let (Some(kind), Some(batch)) = (words.next(), words.next()) else { return };
        let fields: Vec<&str> = words.collect();
        match kind {
            "try" => {
                let parts = fields
                    .iter()
                    .filter_map(|f| {
                        let (stream, ids) = f.split_once(':')?;
                        let ids: Option<Vec<Uuid>> = ids.split(',').map(|i| Uuid::parse_str(i).ok()).collect();
                        Some((stream.to_owned(), ids?))
                    })
                    .collect();
                self.attempts.insert(batch.to_owned(), Attempt { parts, ..Default::default() });
            }
            "ok" => {
                let acks: Option<Vec<_>> = fields
                    .iter()
                    .map(|f| {
                        let n: Vec<u64> = f.split(':').skip(1).filter_map(|x| x.parse().ok()).collect();
                        (n.len() == 4).then(|| (n[0], n[1], n[2], n[3]))
                    })
                    .collect();
                // A line cut by the kill acknowledges nothing we can check.
                if let (Some(acks), Some(attempt)) = (acks, self.attempts.get_mut(batch)) {
                    if acks.len() == attempt.parts.len() {
                        attempt.acknowledged = Some(acks);
                    }
                }
            }
            "rejected" => {
                if let Some(attempt) = self.attempts.get_mut(batch) {
                    attempt.rejected = true;
                }
            }
            _ => {}
        }
    }

    /// Checks the invariants against the store's contents; returns the
    /// number of acknowledged appends verified.
    fn check(&self, store: &Store) -> usize {
        // Where every event is: id -> (stream, revision, position).
        let mut located: HashMap<Uuid, (String, u64, u64)> = HashMap::new();
        let all = store.read_all(AllStart::Start, Direction::Forward, usize::MAX, None).unwrap().events;
        assert!(all.windows(2).all(|w| w[0].position < w[1].position), "$all positions must strictly increase");
        let streams: HashSet<&str> = all.iter().map(|e| e.stream()).collect();
        for stream in streams {
            let events = store.read_stream(stream, StreamStart::Start, Direction::Forward, usize::MAX).unwrap();
            for (i, event) in events.iter().enumerate() {
                assert_eq!(event.revision, i as u64, "revisions of {stream} must be contiguous");
                let previous = located.insert(event.id, (stream.to_owned(), event.revision, event.position));
                assert!(previous.is_none(), "event {} is stored twice", event.id);
            }
        }
        assert_eq!(located.len(), all.len(), "every $all event belongs to its stream");

        let mut verified = 0;
        for (batch, attempt) in &self.attempts {
            let ids = attempt.parts.iter().flat_map(|(_, ids)| ids);
            let present = ids.clone().filter(|id| located.contains_key(id)).count();
            let total = ids.count();
            assert!(
                present == 0 || present == total,
                "batch {batch} is partially visible: {present} of {total} events"
            );
            if attempt.rejected {
                assert_eq!(present, 0, "rejected batch {batch} was written");
            }
            if let Some(acks) = &attempt.acknowledged {
                assert_eq!(present, total, "acknowledged batch {batch} is missing");
                for ((stream, ids), &(first, last, first_position, last_position)) in attempt.parts.iter().zip(acks) {
                    assert_eq!(last - first + 1, ids.len() as u64);
                    for (i, id) in ids.iter().enumerate() {
                        let (at_stream, revision, position) = &located[id];
                        assert_eq!((at_stream, *revision), (stream, first + i as u64), "batch {batch} moved");
                        if i == 0 {
                            assert_eq!(*position, first_position);
                        }
                        if i + 1 == ids.len() {
                            assert_eq!(*position, last_position);
                        }
                    }
                }
                verified += 1;
            } else if present == total && total > 0 {
                // Unknown outcome that did land: still whole and in order.
                for (stream, ids) in &attempt.parts {
                    let revisions: Vec<u64> = ids.iter().map(|id| located[id].1).collect();
                    assert!(ids.iter().all(|id| &located[id].0 == stream));
                    assert!(revisions.windows(2).all(|w| w[0] + 1 == w[1]));
                }
            }
        }
        verified
    }
}

fn random_below(seed: &mut u64, n: u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % n
}

fn run_and_kill(dir: &Path, kill_after: Duration, history: &mut History) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["debug-load", "--writers", "4", "--streams", "5", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start stele debug-load");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    std::thread::sleep(kill_after);
    child.kill().expect("SIGKILL the load process");
    child.wait().unwrap();
    for line in reader.join().unwrap() {
        history.record(&line);
    }
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_append() {
    let cycles: u64 = std::env::var("STELE_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let mut seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash test seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::default();
    let mut acknowledged_total = 0;
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(150 + random_below(&mut seed, 600));
        run_and_kill(dir.path(), kill_after, &mut history);
        let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        acknowledged_total = history.check(&store);
        eprintln!(
            "cycle {cycle}: killed after {kill_after:?}, {} attempts, {acknowledged_total} acknowledged and verified, truncated {} bytes",
            history.attempts.len(),
            store.open_report().log.truncated_bytes
        );
    }
    assert!(acknowledged_total > 0, "the load process acknowledged nothing; the test checked nothing");
    let verify = Command::new(env!("CARGO_BIN_EXE_stele")).arg("verify").arg(dir.path()).output().unwrap();
    assert!(verify.status.success(), "stele verify failed: {}", String::from_utf8_lossy(&verify.stdout));
}
