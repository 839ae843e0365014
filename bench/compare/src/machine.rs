//! Whether other heavy work (compilers, linkers) ran during a measurement.
//! On a shared 2-core machine a parallel build raises fsync latency from
//! ~0.1 ms to several ms and takes CPU from the systems under test, so
//! such rounds are marked and the summary prefers the quiet ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Process names that mean someone is building beside the benchmark.
const BUSY_NAMES: [&str; 7] = ["rustc", "cc1", "cc1plus", "ld", "cargo", "clang", "lld"];
/// How often /proc is scanned; a build step lasts far longer than this.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// True if any process with a name in `BUSY_NAMES` runs now.
pub fn others_building() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|entry| {
        entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| BUSY_NAMES.contains(&comm.trim_end()))
    })
}

/// Samples `others_building` on its own thread until finished.
pub struct BusyProbe {
    seen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BusyProbe {
    pub fn start() -> Self {
        let seen = Arc::new(AtomicBool::new(others_building()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen_by_thread, stop_seen) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop_seen.load(Ordering::Relaxed) {
                std::thread::sleep(SAMPLE_INTERVAL);
                if others_building() {
                    seen_by_thread.store(true, Ordering::Relaxed);
                }
            }
        });
        Self { seen, stop, thread: Some(thread) }
    }

    /// Stops sampling; true if other builds were seen at any point.
    pub fn finish(mut self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The sampler cannot panic short of a bug; a lost sample only makes the flag optimistic.
            let _ = thread.join();
        }
        self.seen.load(Ordering::Relaxed) || others_building()
    }
}
