//! `stele export`: `$all` as NDJSON, one event per line in log order, read
//! page by page; resumable when writing to a file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::progress::Progress;
use super::{event_json, runtime, stdout_failed, TargetArgs};
use steledb::Direction;

use crate::remote::{self, ReadFrom, RemoteError, Source};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The file to write [default: stdout]. If it exists and is not empty,
    /// the export resumes after its last complete line (a partial last line,
    /// from an interrupted run, is cut off first).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The $all position to start at, inclusive (the position of an event);
    /// ignored when resuming a file [default: the start of the log].
    #[arg(long, value_name = "POSITION")]
    from: Option<u64>,
    /// Events fetched per read call.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    page_size: u64,
    #[command(flatten)]
    target: TargetArgs,
}

pub fn run(args: ExportArgs) -> Result<ExitCode, String> {
    match &args.output {
        Some(path) => {
            let shown = path.display();
            let (file, resume_after) = open_for_resume(path)?;
            let from = match (resume_after, args.from) {
                (Some(position), from) => {
                    let ignored = if from.is_some() { " (--from is ignored)" } else { "" };
                    eprintln!("resuming {shown} after position {position}{ignored}");
                    Resume::After(position)
                }
                (None, Some(position)) => Resume::At(position),
                (None, None) => Resume::Start,
            };
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let written = |e: std::io::Error| format!("cannot write {shown}: {e}");
            match runtime()?.block_on(export(&args, from, &mut out, &shown.to_string())) {
                Ok(()) => {}
                Err(Failure::Write(error)) => return Err(written(error)),
                Err(Failure::Other(message)) => {
                    // Whole lines written so far stay: the same command resumes after them.
                    let kept = out.flush().is_ok() && out.get_ref().metadata().is_ok_and(|m| m.len() > 0);
                    if kept {
                        return Err(format!("{message} (run the same command again to resume {shown})"));
                    }
                    return Err(message);
                }
            }
            let file = out.into_inner().map_err(|e| written(e.into_error()))?;
            file.sync_all().map_err(|e| format!("cannot sync {shown}: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let from = args.from.map_or(Resume::Start, Resume::At);
            let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            match runtime()?.block_on(export(&args, from, &mut out, "stdout")) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(Failure::Write(error)) => stdout_failed(error),
                Err(Failure::Other(message)) => Err(message),
            }
        }
    }
}

/// Why an export stopped: writing its output, or anything else.
enum Failure {
    Write(std::io::Error),
    Other(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Other(message)
    }
}

impl From<RemoteError> for Failure {
    fn from(error: RemoteError) -> Self {
        Self::Other(error.to_string())
    }
}

/// Where the export starts.
#[derive(Debug, Clone, Copy)]
enum Resume {
    Start,
    /// At this position, inclusive.
    At(u64),
    /// After the event at this position (the last one already written).
    After(u64),
}

async fn export(args: &ExportArgs, from: Resume, out: &mut impl Write, name: &str) -> Result<(), Failure> {
    let client = remote::connect(&args.target.target).await?;
    let (mut start, mut skip_through) = match from {
        Resume::Start => (ReadFrom::Start, None),
        Resume::At(position) => (ReadFrom::At(position), None),
        Resume::After(position) => (ReadFrom::At(position), Some(position)),
    };
    let mut progress = Progress::new("exported");
    let mut written = 0u64;
    let mut last_position = skip_through;
    let mut line = Vec::new();
    loop {
        // A page after the first starts at the last event written, which is read again and skipped.
        let count = args.page_size + u64::from(skip_through.is_some());
        let mut reader =
            remote::read(&client, &Source::All, start, Direction::Forward, count).await.map_err(|e| {
                match (from, written) {
                    (Resume::After(position), 0) => format!("cannot resume {name} after position {position}: {e}"),
                    _ => e.to_string(),
                }
            })?;
        let mut received = 0u64;
        while let Some(event) = reader.next_event().await? {
            received += 1;
            if skip_through.is_some_and(|p| event.position <= p) {
                continue;
            }
            line.clear();
            event_json::write_line(&mut line, &event);
            out.write_all(&line).map_err(Failure::Write)?;
            written += 1;
            last_position = Some(event.position);
        }
        // Whole lines reach the file page by page: an interruption leaves at most one partial line.
        out.flush().map_err(Failure::Write)?;
        progress.update(written, || last_position.map(|p| format!(", at position {p}")).unwrap_or_default());
        let Some(last) = last_position else { break };
        if received < count {
            break;
        }
        start = ReadFrom::At(last);
        skip_through = Some(last);
    }
    progress.finish();
    let at = last_position.map(|p| format!("; last position {p}")).unwrap_or_default();
    let new = if matches!(from, Resume::After(_)) { " new" } else { "" };
    eprintln!(
        "exported {written}{new} events to {name} in {:.1} s ({:.0} events/s){at}",
        progress.elapsed().as_secs_f64(),
        progress.rate(written)
    );
    Ok(())
}

/// Opens (or creates) `path` for appending; when it holds lines already,
/// cuts off a partial last line and returns the position of the last one.
fn open_for_resume(path: &Path) -> Result<(File, Option<u64>), String> {
    let shown = path.display();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("cannot open {shown}: {e}"))?;
    let read_failed = |e: std::io::Error| format!("cannot read {shown}: {e}");
    let length = file.metadata().map_err(read_failed)?.len();
    let last_newline = rfind_newline(&mut file, length).map_err(read_failed)?;
    let complete = last_newline.map_or(0, |at| at + 1);
    if complete < length {
        eprintln!("{shown}: cutting off a partial last line ({} bytes) from an interrupted export", length - complete);
        file.set_len(complete).map_err(|e| format!("cannot truncate {shown}: {e}"))?;
    }
    let position = match last_newline {
        None => None,
        Some(end) => {
            let begin = rfind_newline(&mut file, end).map_err(read_failed)?.map_or(0, |at| at + 1);
            let mut bytes = vec![0; (end - begin) as usize];
            file.seek(SeekFrom::Start(begin)).map_err(read_failed)?;
            file.read_exact(&mut bytes).map_err(read_failed)?;
            let not_export =
                |why: String| format!("cannot resume {shown}: its last line is not an exported event: {why}");
            let text = String::from_utf8(bytes).map_err(|_| not_export("not UTF-8".to_owned()))?;
            let event = event_json::parse_line(&text).map_err(not_export)?;
            Some(event.position.ok_or_else(|| not_export("no \"position\"".to_owned()))?)
        }
    };
    file.seek(SeekFrom::End(0)).map_err(read_failed)?;
    Ok((file, position))
}

/// The offset of the last `\n` before `end`, scanning backwards in blocks.
fn rfind_newline(file: &mut File, end: u64) -> std::io::Result<Option<u64>> {
    const BLOCK: u64 = 64 * 1024;
    let mut block = vec![0u8; BLOCK as usize];
    let mut high = end;
    while high > 0 {
        let low = high.saturating_sub(BLOCK);
        let bytes = &mut block[..(high - low) as usize];
        file.seek(SeekFrom::Start(low))?;
        file.read_exact(bytes)?;
        if let Some(at) = bytes.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(low + at as u64));
        }
        high = low;
    }
    Ok(None)
}
