//! `stele verify`: read every record, check every checksum and decode every
//! event, then check every index entry against the log.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use steledb::Store;

pub fn run(data_dir: &Path) -> Result<ExitCode, String> {
    if !data_dir.join("log").is_dir() {
        return Err(format!("{} is not a SteleDB data directory (no log/ in it)", data_dir.display()));
    }
    let started = Instant::now();
    // Opening already checks segment headers, the tail and index tables.
    let store = Store::open(data_dir).map_err(|e| format!("the store does not open: {e}"))?;
    let total_bytes = store.end_position();
    let log = store.verify_log(|done| progress("log  ", done, total_bytes));
    eprintln!();
    for (path, problem) in &log.problems {
        println!("DAMAGED {}: {problem}", path.display());
    }
    let mut problems = log.problems.len();
    let index = store.verify_index(|checked| {
        eprint!("\rindex: {checked} entries checked");
        let _ = std::io::stderr().flush();
    });
    let entries = match index {
        Ok(entries) => {
            eprintln!("\rindex: {entries} entries checked");
            entries
        }
        Err(error) => {
            problems += 1;
            println!("DAMAGED index: {error}");
            0
        }
    };
    println!(
        "{} segments, {} records, {entries} index entries, {problems} problems, {:.1}s",
        log.segments,
        log.records,
        started.elapsed().as_secs_f64()
    );
    Ok(if problems == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// A progress bar on stderr, redrawn in place.
fn progress(what: &str, done: u64, total: u64) {
    let fraction = if total == 0 { 1.0 } else { (done as f64 / total as f64).min(1.0) };
    let width = 40;
    let filled = (fraction * width as f64) as usize;
    eprint!("\r{what}: [{}{}] {:5.1}%", "#".repeat(filled), " ".repeat(width - filled), fraction * 100.0);
    let _ = std::io::stderr().flush();
}
