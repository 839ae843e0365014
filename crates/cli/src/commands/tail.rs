//! `stele tail`: a catch-up subscription printing events as they arrive.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::{event_json, runtime, stdout_failed, TargetArgs};
use crate::remote::{self, Message, ReadFrom, Source};

#[derive(Args, Debug)]
pub struct TailArgs {
    /// A stream name, or '$all' for every event in log order (quote it in a shell).
    stream: String,
    /// end: only events appended from now on; start: every event, then new
    /// ones; N: the events after revision N (for $all: after the event at
    /// position N). N is exclusive, as in the protocol, so the last revision
    /// or position you saw resumes without a repeat.
    #[arg(long, default_value = "end", value_name = "end|start|N")]
    from: ReadFrom,
    #[command(flatten)]
    target: TargetArgs,
}

/// Prints each event as one JSON line (flushed at once) until Ctrl-C or
/// until the server ends the subscription; notes go to stderr.
pub fn run(args: TailArgs) -> Result<ExitCode, String> {
    let source = Source::parse(&args.stream);
    runtime()?.block_on(async move {
        let client = remote::connect(&args.target.target).await?;
        let mut reader = remote::subscribe(&client, &source, args.from).await?;
        let mut stdout = std::io::stdout().lock();
        let mut line = Vec::new();
        while let Some(message) = reader.next().await? {
            match message {
                Message::Event(event) => {
                    line.clear();
                    event_json::write_line(&mut line, &event);
                    if let Err(error) = stdout.write_all(&line).and_then(|()| stdout.flush()) {
                        return stdout_failed(error);
                    }
                }
                Message::CaughtUp => eprintln!("caught up; waiting for new events"),
                Message::FellBehind => eprintln!("fell behind; catching up"),
            }
        }
        eprintln!("the server ended the subscription");
        Ok(ExitCode::SUCCESS)
    })
}
