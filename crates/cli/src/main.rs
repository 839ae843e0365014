//! The `stele` command. Each subcommand lives in its own module; this file
//! only parses arguments and dispatches.

mod bench;
mod load;
mod remote;
mod serve;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "stele", version, about = "SteleDB: an event store over a durable, checksummed log")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: KurrentDB-compatible gRPC and HTTP/JSON on one port.
    Serve(serve::ServeArgs),
    /// Measure the embedded engine: throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Check every record checksum and every index entry of a data directory.
    Verify {
        /// The data directory to check (the store must not be open elsewhere).
        data_dir: PathBuf,
    },
    /// Append under load, printing one line per acknowledged append (used
    /// by the crash tests; runs until killed or `--appends` are done).
    #[command(hide = true)]
    DebugLoad(load::LoadArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(&args),
        Command::Verify { data_dir } => verify::run(&data_dir),
        Command::DebugLoad(args) => load::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
