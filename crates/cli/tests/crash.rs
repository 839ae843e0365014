//! Crash tests: real `stele` processes are killed with SIGKILL at random
//! moments (under concurrent conflicting load, while they flush index
//! tables, while they recover on open, while they flush on shutdown), and
//! after each kill the shared history checker (`support/history.rs`)
//! compares what the clients attempted and were told with what the store
//! returns, and `stele verify` must find the directory clean.
//!
//! `STELE_CRASH_CYCLES=200 cargo test -p stele-cli --test crash` soaks.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use support::history::{check_directory, History, Summary};

/// How long a server may take to open a store with the tails these tests make.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);

fn cycles(default: u64) -> u64 {
    std::env::var("STELE_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    let seed = match std::env::var("STELE_CRASH_SEED").ok().and_then(|v| v.parse().ok()) {
        Some(seed) => seed,
        None => SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1,
    };
    eprintln!("crash test seed {seed} (STELE_CRASH_SEED={seed} repeats the kill times)");
    seed
}

fn random_below(seed: &mut u64, n: u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % n.max(1)
}

/// Sends SIGKILL and reaps the process.
fn kill(child: &mut Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap the killed process");
}

/// Runs `stele debug-load` with `extra` flags, kills it after `kill_after`
/// and adds everything it printed to `history`.
fn load_and_kill(dir: &Path, extra: &[&str], seed: u64, kill_after: Duration, history: &mut History) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["debug-load", "--seed", &seed.to_string(), "--data-dir"])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start stele debug-load");
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    std::thread::sleep(kill_after);
    kill(&mut child);
    let lines = reader.join().expect("the stdout reader");
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        history.record_line(line, i == last).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_append() {
    let cycles = cycles(6);
    let mut seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::default();
    let mut summary = Summary::default();
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(150 + random_below(&mut seed, 600));
        // Three streams for four writers: exact expectations collide often.
        let mut flags = vec!["--writers", "4", "--streams", "3"];
        // Every other cycle flushes an index table every few appends (and
        // merges them), so kills land inside flushes and merges too.
        if cycle % 2 == 1 {
            flags.extend(["--index-memtable-entries", "40"]);
        }
        load_and_kill(dir.path(), &flags, seed ^ cycle, kill_after, &mut history);
        // Each check covers the whole history, so the last summary is the total.
        summary = check_directory(&history, dir.path(), &format!("cycle {cycle}"));
        eprintln!("cycle {cycle}: killed after {kill_after:?}, {} attempts; {summary:?}", history.appends.len());
    }
    assert!(summary.acknowledged > 0, "nothing was acknowledged; the test checked nothing");
    assert!(summary.rejected > 0, "no append was rejected: the load had no conflicting expectations");
    assert!(summary.multi_stream_acknowledged > 0, "no multi-stream append was acknowledged");
    let tables = std::fs::read_dir(dir.path().join("index")).map(|d| d.count()).unwrap_or(0);
    assert!(tables > 0, "no index table was ever written: the flush cycles did not flush");
}

/// A running `stele serve` whose stdout and stderr lines arrive on a channel.
struct Serve {
    child: Child,
    lines: Receiver<String>,
    started: Instant,
}

impl Serve {
    fn start(dir: &Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stele"));
        command.arg("serve").arg("--data-dir").arg(dir).args(["--listen", "127.0.0.1:0", "--log-level", "info"]);
        for variable in ["STELE_DATA_DIR", "STELE_LISTEN", "STELE_ADVERTISE", "STELE_CONFIG", "STELE_LOG"] {
            command.env_remove(variable);
        }
        let started = Instant::now();
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn serve");
        let (sender, lines) = channel();
        let pipes: [Box<dyn Read + Send>; 2] =
            [Box::new(child.stdout.take().expect("stdout")), Box::new(child.stderr.take().expect("stderr"))];
        for pipe in pipes {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = sender.send(line);
                }
            });
        }
        Self { child, lines, started }
    }

    /// Waits for the "listening" line; returns the `store opened` log line's
    /// `open_ms` and the time from spawn to listening.
    fn wait_listening(&mut self) -> (u64, Duration) {
        // The two lines come on different pipes, in either order.
        let (mut open_ms, mut listening_after) = (None, None);
        loop {
            if let (Some(open_ms), Some(listening_after)) = (open_ms, listening_after) {
                return (open_ms, listening_after);
            }
            let line = match self.lines.recv_timeout(OPEN_TIMEOUT) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => panic!("stele serve did not listen within {OPEN_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("stele serve exited before listening: {:?}", self.child.wait())
                }
            };
            if line.contains("store opened") {
                open_ms = line.split_whitespace().find_map(|w| w.strip_prefix("open_ms=")?.parse().ok());
            }
            if line.starts_with("stele listening on ") {
                listening_after = Some(self.started.elapsed());
            }
        }
    }

    /// True if the server said it was listening by now.
    fn listened(&self) -> bool {
        self.lines.try_iter().any(|line| line.starts_with("stele listening on "))
    }
}

/// Kills during the two slow moments of a store's life that are not
/// appends: recovery on open with a long unflushed tail to replay, and the
/// index flush of that tail at a graceful shutdown.
#[test]
fn sigkill_during_recovery_and_shutdown_flush_loses_nothing() {
    let rounds = cycles(6).div_ceil(3);
    let kills_per_round = 6;
    let mut seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut history = History::default();
    let mut killed_inside_open = 0;
    let mut replay_ms_max = 0;
    for round in 0..rounds {
        // A killed load never flushes its index: the whole burst is a tail
        // that every open must replay.
        let flags = ["--writers", "4", "--streams", "6", "--events-max", "20"];
        load_and_kill(&data, &flags, seed ^ round, Duration::from_millis(1500), &mut history);

        // Measure how long an open takes, then kill later opens inside it.
        let mut serve = Serve::start(&data);
        let (open_ms, listening_after) = serve.wait_listening();
        kill(&mut serve.child);
        replay_ms_max = replay_ms_max.max(open_ms);
        let startup = listening_after.saturating_sub(Duration::from_millis(open_ms));
        for _ in 0..kills_per_round {
            let delay = startup + Duration::from_micros(random_below(&mut seed, open_ms * 1000 + 1));
            let mut serve = Serve::start(&data);
            std::thread::sleep(delay.saturating_sub(serve.started.elapsed()));
            kill(&mut serve.child);
            if !serve.listened() {
                killed_inside_open += 1;
            }
        }

        // A graceful stop flushes the replayed tail as an index table;
        // SIGKILL lands somewhere in that flush (or just before or after).
        let mut serve = Serve::start(&data);
        serve.wait_listening();
        let sent = Command::new("kill").arg("-TERM").arg(serve.child.id().to_string()).status().expect("run kill");
        assert!(sent.success());
        std::thread::sleep(Duration::from_micros(random_below(&mut seed, open_ms * 1000 + 1)));
        kill(&mut serve.child);

        let summary = check_directory(&history, &data, &format!("round {round}"));
        eprintln!("round {round}: open took {open_ms} ms of {listening_after:?}; {summary:?}");
        assert!(summary.acknowledged > 0, "round {round}: the load acknowledged nothing");
    }
    assert!(replay_ms_max > 0, "opens took under a millisecond: no tail to replay, nothing to kill inside");
    assert!(killed_inside_open > 0, "no kill landed before the server listened");
}
