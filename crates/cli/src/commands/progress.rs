//! A progress line on stderr for long commands: redrawn in place (`\r`)
//! a few times a second on a terminal, one plain line every few seconds
//! otherwise (logs), and a summary left to the caller.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const TERMINAL_EVERY: Duration = Duration::from_millis(200);
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    verb: &'static str,
    started: Instant,
    last_drawn: Instant,
    terminal: bool,
    /// Width of the line on screen, to blank it out when redrawing shorter.
    drawn_width: usize,
}

impl Progress {
    pub fn new(verb: &'static str) -> Self {
        let now = Instant::now();
        Self { verb, started: now, last_drawn: now, terminal: std::io::stderr().is_terminal(), drawn_width: 0 }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Events per second since the start.
    pub fn rate(&self, events: u64) -> f64 {
        let seconds = self.started.elapsed().as_secs_f64();
        if seconds > 0.0 {
            events as f64 / seconds
        } else {
            0.0
        }
    }

    /// Shows `events` done so far (and `detail`), when it is time to.
    pub fn update(&mut self, events: u64, detail: impl FnOnce() -> String) {
        let every = if self.terminal { TERMINAL_EVERY } else { LOG_EVERY };
        if self.last_drawn.elapsed() < every {
            return;
        }
        self.last_drawn = Instant::now();
        let line = format!("{} {events} events ({:.0} events/s){}", self.verb, self.rate(events), detail());
        let mut stderr = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the work.
        if self.terminal {
            let pad = self.drawn_width.saturating_sub(line.len());
            let _ = write!(stderr, "\r{line}{:pad$}", "");
            self.drawn_width = line.len();
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }

    /// Clears the redrawn line, so a summary can follow on a clean line.
    pub fn finish(&mut self) {
        if self.terminal && self.drawn_width > 0 {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r{:width$}\r", "", width = self.drawn_width);
            let _ = stderr.flush();
            self.drawn_width = 0;
        }
    }
}
