//! `stele append`: one event from flags, or NDJSON events from stdin in one
//! atomic append.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::Args;
use serde_json::value::RawValue;

use super::event_json::{self, CONTENT_TYPE_JSON};
use super::{runtime, TargetArgs};
use steledb::NewEvent;

use crate::remote::{self, Expected};

#[derive(Args, Debug)]
pub struct AppendArgs {
    /// The stream to append to.
    stream: String,
    /// What the stream must be at: any, no_stream, stream_exists, or its
    /// last revision. A mismatch appends nothing and exits 1.
    #[arg(long, default_value = "any")]
    expected: Expected,
    /// Event type of the one event to append (with --data). Without
    /// --type/--data, events are read from stdin, one JSON object per line:
    /// {"type": "...", "data": <json>, "metadata"?: <json>, "id"?: "<uuid>"}.
    #[arg(long = "type", requires = "data", value_name = "TYPE")]
    event_type: Option<String>,
    /// The event's data, as JSON.
    #[arg(long, requires = "event_type", value_name = "JSON")]
    data: Option<String>,
    /// The event's metadata, as JSON (with --type/--data).
    #[arg(long, requires = "data", value_name = "JSON")]
    metadata: Option<String>,
    /// The event's id (with --type/--data) [default: a new random UUID].
    #[arg(long, requires = "data", value_name = "UUID")]
    id: Option<uuid::Uuid>,
    #[command(flatten)]
    target: TargetArgs,
}

pub fn run(args: AppendArgs) -> Result<ExitCode, String> {
    let events = match (&args.event_type, &args.data) {
        (Some(event_type), Some(data)) => vec![event_from_flags(&args, event_type, data)?],
        _ => events_from_stdin()?,
    };
    runtime()?.block_on(async move {
        let client = remote::connect(&args.target.target).await?;
        let appended = remote::append(&client, &args.stream, args.expected, events).await?;
        // Written by hand to keep the keys in this order.
        let number = |n: Option<u64>| n.map_or_else(|| "null".to_owned(), |n| n.to_string());
        println!(
            "{{\"stream\":{},\"next_expected_revision\":{},\"position\":{}}}",
            serde_json::Value::from(args.stream.as_str()),
            number(appended.next_expected_revision),
            number(appended.position)
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn json_text(flag: &str, text: &str) -> Result<Vec<u8>, String> {
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| format!("{flag} is not JSON: {e}"))?;
    Ok(raw.get().as_bytes().to_vec())
}

fn event_from_flags(args: &AppendArgs, event_type: &str, data: &str) -> Result<NewEvent, String> {
    Ok(NewEvent {
        id: args.id.unwrap_or_else(uuid::Uuid::new_v4),
        event_type: event_type.to_owned(),
        content_type: CONTENT_TYPE_JSON.to_owned(),
        data: json_text("--data", data)?,
        metadata: args.metadata.as_deref().map(|m| json_text("--metadata", m)).transpose()?.unwrap_or_default(),
    })
}

fn events_from_stdin() -> Result<Vec<NewEvent>, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading events from stdin, one JSON object per line; end with Ctrl-D (or give --type and --data)");
    }
    let mut events = Vec::new();
    for (index, line) in stdin.lock().lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| format!("stdin line {number}: cannot read it: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = event_json::parse_line(&line).map_err(|e| format!("stdin line {number}: {e}"))?;
        events.push(event.into_new_event(uuid::Uuid::new_v4()));
    }
    if events.is_empty() {
        return Err("no events on stdin: give one JSON object per line, or --type and --data".to_owned());
    }
    Ok(events)
}
