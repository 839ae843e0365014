//! `stele import`: appends the events of an export file to their streams,
//! keeping ids, types, data and metadata.
//!
//! Each run of consecutive events of one stream is one append (up to a size
//! cap), expecting the stream to be exactly where the file says it was
//! (`no_stream` before revision 0, else revision - 1). So re-running an
//! interrupted import is idempotent: the server recognises an append of the
//! same ids at the same place as a retry and writes nothing. Two kinds of
//! events the server writes itself get the same treatment here: metadata
//! events (`$$stream`, whose ids the server derives from stream and
//! revision, so they are compared) and tombstones (a tombstoned stream
//! refuses further writes, so its events count as present when the file
//! tombstones it later too). Positions and recording times are the target's own.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::progress::Progress;
use super::{event_json, runtime, TargetArgs};
use steledb::{Direction, NewEvent};

use crate::remote::{self, Current, Expected, ReadFrom, RemoteError, Source};

/// Events per append call at most.
const GROUP_EVENTS_MAX: usize = 1000;
/// Bytes (data, metadata, type, content type) per append call at most,
/// well under the server's default limit of 64 MiB.
const GROUP_BYTES_MAX: usize = 4 * 1024 * 1024;
/// How a tombstone appears in `$all`: this type at the last revision.
const EVENT_TYPE_TOMBSTONE: &str = "$streamDeleted";
const TOMBSTONE_REVISION: u64 = u64::MAX;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// An NDJSON file written by `stele export`.
    file: PathBuf,
    #[command(flatten)]
    target: TargetArgs,
}

pub fn run(args: ImportArgs) -> Result<ExitCode, String> {
    let shown = args.file.display().to_string();
    let file = File::open(&args.file).map_err(|e| format!("cannot open {shown}: {e}"))?;
    let length = file.metadata().map_err(|e| format!("cannot read {shown}: {e}"))?.len();
    runtime()?.block_on(async {
        let client = remote::connect(&args.target.target).await?;
        let mut import = Import {
            client,
            path: &args.file,
            shown: &shown,
            length,
            group: None,
            tombstoned_later: HashSet::new(),
            progress: Progress::new("imported"),
            stats: Stats::default(),
        };
        import.run(BufReader::with_capacity(1 << 20, file)).await?;
        import.progress.finish();
        let stats = &import.stats;
        let plural = |n: u64, word: &str| if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") };
        let mut notes = vec![plural(stats.appends, "append call")];
        if stats.tombstones > 0 {
            notes.push(plural(stats.tombstones, "tombstone"));
        }
        if stats.already_present > 0 {
            notes.push(format!("{} already present", stats.already_present));
        }
        println!(
            "imported {} events from {shown} in {:.1} s ({:.0} events/s; {})",
            stats.events,
            import.progress.elapsed().as_secs_f64(),
            import.progress.rate(stats.events),
            notes.join(", ")
        );
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Default)]
struct Stats {
    /// Events of the file handled so far (appended, or found there already).
    events: u64,
    appends: u64,
    tombstones: u64,
    /// Metadata events, tombstones and tombstoned streams' events found
    /// already imported (ordinary retries are recognised by the server and
    /// count as appended).
    already_present: u64,
}

/// Consecutive events of one stream, appended together.
struct Group {
    stream: String,
    first_revision: u64,
    first_line: u64,
    events: Vec<NewEvent>,
    bytes: usize,
    /// File offset just after the group's last line.
    end_offset: u64,
}

impl Group {
    fn next_revision(&self) -> u64 {
        self.first_revision + self.events.len() as u64
    }

    /// Metadata streams take one event per append (the server sets metadata one write at a time).
    fn takes(&self, stream: &str, revision: u64, event: &NewEvent) -> bool {
        self.stream == stream
            && !stream.starts_with("$$")
            && self.next_revision() == revision
            && self.events.len() < GROUP_EVENTS_MAX
            && self.bytes + event.size_bytes() <= GROUP_BYTES_MAX
    }
}

struct Import<'a> {
    client: steledb_client::Client,
    path: &'a Path,
    shown: &'a str,
    length: u64,
    group: Option<Group>,
    /// Streams the target has tombstoned and the file tombstones further on.
    tombstoned_later: HashSet<String>,
    progress: Progress,
    stats: Stats,
}

impl Import<'_> {
    async fn run(&mut self, mut reader: BufReader<File>) -> Result<(), String> {
        let mut bytes = Vec::new();
        let (mut offset, mut number) = (0u64, 0u64);
        loop {
            bytes.clear();
            let read = reader.read_until(b'\n', &mut bytes).map_err(|e| format!("cannot read {}: {e}", self.shown))?;
            if read == 0 {
                break;
            }
            offset += read as u64;
            number += 1;
            let complete = bytes.last() == Some(&b'\n');
            let at = |why: String| {
                let hint = if complete {
                    ""
                } else {
                    " (the file ends in a partial line: was the export interrupted? Run it again to complete the file)"
                };
                format!("line {number} of {}: {why}{hint}", self.shown)
            };
            let text = std::str::from_utf8(&bytes).map_err(|_| at("not UTF-8".to_owned()))?;
            if text.trim().is_empty() {
                continue;
            }
            let line = event_json::parse_line(text).map_err(at)?;
            let stream = line.stream.clone().ok_or_else(|| at("no \"stream\"".to_owned()))?;
            let revision = line.revision.ok_or_else(|| at("no \"revision\"".to_owned()))?;
            if line.id.is_none() {
                return Err(at("no \"id\" (import keeps event ids; export writes them)".to_owned()));
            }
            if line.event_type == EVENT_TYPE_TOMBSTONE && revision == TOMBSTONE_REVISION {
                self.flush().await?;
                self.tombstone(&stream, number).await?;
                continue;
            }
            let event = line.into_new_event(uuid::Uuid::nil());
            if !self.group.as_ref().is_some_and(|group| group.takes(&stream, revision, &event)) {
                self.flush().await?;
                self.group = Some(Group {
                    stream,
                    first_revision: revision,
                    first_line: number,
                    events: Vec::new(),
                    bytes: 0,
                    end_offset: offset,
                });
            }
            if let Some(group) = &mut self.group {
                group.bytes += event.size_bytes();
                group.events.push(event);
                group.end_offset = offset;
            }
            let (events, length, shown) = (self.stats.events, self.length.max(1), self.shown);
            self.progress.update(events, || format!(", {}% of {shown}", offset * 100 / length));
        }
        self.flush().await
    }

    /// Appends the pending group, if any.
    async fn flush(&mut self) -> Result<(), String> {
        let Some(Group { stream, first_revision, first_line, events, end_offset, .. }) = self.group.take() else {
            return Ok(());
        };
        let count = events.len() as u64;
        let last_revision = first_revision + count - 1;
        let expected = match first_revision {
            0 => Expected::NoStream,
            revision => Expected::Exact(revision - 1),
        };
        let ids: Vec<_> = events.iter().map(|e| e.id).collect();
        let shown = self.shown;
        let at = |why: String| format!("line {first_line} of {shown}: {why}");
        match remote::append(&self.client, &stream, expected, events).await {
            Ok(_) => {
                self.stats.appends += 1;
                self.stats.events += count;
            }
            Err(RemoteError::WrongExpectedRevision { actual: Current::Revision(actual), .. })
                if stream.starts_with("$$")
                    && actual >= last_revision
                    && self.same_ids(&stream, first_revision, &ids).await? =>
            {
                self.stats.events += count;
                self.stats.already_present += count;
            }
            Err(RemoteError::StreamDeleted { stream }) => {
                if !self.tombstoned_later(&stream, end_offset)? {
                    return Err(at(format!(
                        "stream '{stream}' is tombstoned in the target, and the file does not tombstone it later"
                    )));
                }
                self.stats.events += count;
                self.stats.already_present += count;
            }
            Err(error @ RemoteError::WrongExpectedRevision { .. }) => {
                return Err(at(format!("{error}; the target holds other events there (import into an empty server)")))
            }
            Err(error) => return Err(at(error.to_string())),
        }
        Ok(())
    }

    async fn tombstone(&mut self, stream: &str, number: u64) -> Result<(), String> {
        match remote::tombstone(&self.client, stream, Expected::Any).await {
            Ok(_) => self.stats.tombstones += 1,
            Err(RemoteError::StreamDeleted { .. }) => self.stats.already_present += 1,
            Err(error) => return Err(format!("line {number} of {}: tombstoning: {error}", self.shown)),
        }
        self.stats.events += 1;
        Ok(())
    }

    /// Whether the target holds `ids` in `stream` from `first_revision` on.
    async fn same_ids(&mut self, stream: &str, first_revision: u64, ids: &[uuid::Uuid]) -> Result<bool, String> {
        let source = Source::Stream(stream.to_owned());
        let from = ReadFrom::At(first_revision);
        let mut reader = remote::read(&self.client, &source, from, Direction::Forward, ids.len() as u64).await?;
        let mut stored = Vec::new();
        while let Some(event) = reader.next_event().await? {
            stored.push((event.revision, event.id));
        }
        let wanted: Vec<_> = (first_revision..).zip(ids.iter().copied()).collect();
        Ok(stored == wanted)
    }

    /// Whether the file tombstones `stream` after `offset` (remembered once seen).
    fn tombstoned_later(&mut self, stream: &str, offset: u64) -> Result<bool, String> {
        if self.tombstoned_later.contains(stream) {
            return Ok(true);
        }
        let failed = |e: std::io::Error| format!("cannot read {}: {e}", self.shown);
        let mut file = File::open(self.path).map_err(failed)?;
        file.seek(SeekFrom::Start(offset)).map_err(failed)?;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(failed)?;
            let Ok(text) = std::str::from_utf8(&line) else { continue };
            if !text.contains(EVENT_TYPE_TOMBSTONE) {
                continue;
            }
            let Ok(event) = event_json::parse_line(text) else { continue };
            if event.event_type == EVENT_TYPE_TOMBSTONE
                && event.revision == Some(TOMBSTONE_REVISION)
                && event.stream.as_deref() == Some(stream)
            {
                self.tombstoned_later.insert(stream.to_owned());
                return Ok(true);
            }
        }
        Ok(false)
    }
}
