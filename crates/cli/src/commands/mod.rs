//! Commands that work against a running server over gRPC: `append`, `read`,
//! `tail`, `export` and `import`. The wire lives in `crate::remote`; this
//! module holds what they share: the `--target` flag, the event lines they
//! print and read, and a progress line.

pub mod append;
pub mod export;
pub mod import;
pub mod read;
pub mod tail;

mod event_json;
mod progress;

use std::io::ErrorKind;
use std::process::ExitCode;

use clap::Args;

use crate::remote;

/// The server to talk to.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Connection string of the server, e.g. kurrentdb://host:2113?tls=false.
    #[arg(long, env = "STELE_TARGET", default_value = remote::DEFAULT_TARGET)]
    pub target: String,
}

/// A single-threaded runtime for a command's async body.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// A failed write to stdout: a closed pipe (`stele read ... | head`) ends
/// the command quietly; anything else is an error.
fn stdout_failed(error: std::io::Error) -> Result<ExitCode, String> {
    if error.kind() == ErrorKind::BrokenPipe {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!("cannot write to stdout: {error}"))
    }
}
