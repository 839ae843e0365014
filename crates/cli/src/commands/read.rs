//! `stele read`: a stream or `$all`, one JSON event per line.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::{event_json, runtime, stdout_failed, TargetArgs};
use steledb::Direction;

use crate::remote::{self, ReadFrom, Source};

#[derive(Args, Debug)]
pub struct ReadArgs {
    /// A stream name, or '$all' for every event in log order (quote it in a shell).
    stream: String,
    /// Where to start: start, end, or a revision (for $all: a position),
    /// inclusive; backwards in $all, a position reads the events before it
    /// [default: start, or end with --backwards].
    #[arg(long, value_name = "start|end|N")]
    from: Option<ReadFrom>,
    /// Events to read at most.
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// Read from newest to oldest.
    #[arg(long)]
    backwards: bool,
    #[command(flatten)]
    target: TargetArgs,
}

pub fn run(args: ReadArgs) -> Result<ExitCode, String> {
    let (direction, default_from) =
        if args.backwards { (Direction::Backward, ReadFrom::End) } else { (Direction::Forward, ReadFrom::Start) };
    let source = Source::parse(&args.stream);
    runtime()?.block_on(async move {
        let client = remote::connect(&args.target.target).await?;
        let mut reader =
            remote::read(&client, &source, args.from.unwrap_or(default_from), direction, args.limit).await?;
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        let mut line = Vec::new();
        while let Some(event) = reader.next_event().await? {
            line.clear();
            event_json::write_line(&mut line, &event);
            if let Err(error) = stdout.write_all(&line) {
                return stdout_failed(error);
            }
        }
        if let Err(error) = stdout.flush() {
            return stdout_failed(error);
        }
        Ok(ExitCode::SUCCESS)
    })
}
