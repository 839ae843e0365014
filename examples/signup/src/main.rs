//! `stele-signup`: runs the sign-up example on a data directory.
//!
//! ```text
//! stele-signup [--data-dir DIR] [--server URL] [--listen ADDR] [--smtp HOST:PORT] [--mail-from ADDR]
//!              [--reminder-delay-s N]
//! ```
//! Each flag falls back to an environment variable (`SIGNUP_DATA_DIR`,
//! `SIGNUP_SERVER`, `SIGNUP_LISTEN`, `SIGNUP_SMTP`, `SIGNUP_MAIL_FROM`,
//! `SIGNUP_REMINDER_DELAY_S`), then to a default. Without `--server` the
//! events are kept in an embedded store in the data directory; with it
//! (`kurrentdb://127.0.0.1:2113?tls=false`), in that running `stele serve`.

use std::io::Write;
use std::process::ExitCode;

use stele_example_signup::{App, Config};

const USAGE: &str = "usage: stele-signup [--data-dir DIR] [--server URL] [--listen ADDR] [--smtp HOST:PORT] \
                     [--mail-from ADDR] [--reminder-delay-s N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("stele-signup: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut flags = Flags::from_env();
    flags.parse(std::env::args().skip(1))?;
    let listen = flags.listen.parse().map_err(|e| format!("--listen {}: {e}", flags.listen))?;
    let mut config = Config::new(&flags.data_dir, listen, flags.smtp);
    config.server = flags.server;
    if let Some(from) = flags.mail_from {
        config.mail_from = from;
    }
    let delay_s: u64 = flags.reminder_delay_s.parse().map_err(|e| format!("--reminder-delay-s: {e}"))?;
    config.reminder_delay_us = delay_s.saturating_mul(1_000_000);
    let smtp = config.smtp_address.clone();
    let events = match &config.server {
        Some(url) => format!("events in {url}"),
        None => "events embedded".to_owned(),
    };
    let app = App::start(config).map_err(|e| e.to_string())?;
    println!(
        "stele-signup: listening on http://{}, data in {} ({events}), mail via {smtp}",
        app.http_address(),
        flags.data_dir
    );
    let waited = app.wait_for_stop_signal();
    // Not `println!`: stdout may be closed by now, and stopping must not panic.
    let _ = writeln!(std::io::stdout(), "stele-signup: stopping");
    let errors = app.shutdown();
    waited.map_err(|e| format!("waiting for a stop signal: {e}"))?;
    for error in &errors {
        eprintln!("stele-signup: {error}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} component(s) failed", errors.len()))
    }
}

struct Flags {
    data_dir: String,
    server: Option<String>,
    listen: String,
    smtp: String,
    mail_from: Option<String>,
    reminder_delay_s: String,
}

impl Flags {
    fn from_env() -> Self {
        let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Self {
            data_dir: env("SIGNUP_DATA_DIR", "./signup-data"),
            server: std::env::var("SIGNUP_SERVER").ok(),
            listen: env("SIGNUP_LISTEN", "127.0.0.1:8080"),
            smtp: env("SIGNUP_SMTP", "127.0.0.1:2525"),
            mail_from: std::env::var("SIGNUP_MAIL_FROM").ok(),
            reminder_delay_s: env("SIGNUP_REMINDER_DELAY_S", "86400"),
        }
    }

    fn parse(&mut self, mut args: impl Iterator<Item = String>) -> Result<(), String> {
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            match flag.as_str() {
                "--data-dir" => self.data_dir = value,
                "--server" => self.server = Some(value),
                "--listen" => self.listen = value,
                "--smtp" => self.smtp = value,
                "--mail-from" => self.mail_from = Some(value),
                "--reminder-delay-s" => self.reminder_delay_s = value,
                _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
            }
        }
        Ok(())
    }
}
