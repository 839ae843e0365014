//! The `stele` command. Each subcommand lives in its own module; this file
//! only parses arguments and dispatches.

mod bench;
mod commands;
mod damage;
mod load;
mod remote;
mod rng;
mod serve;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc's malloc returned and re-faulted heap pages under the server's
// churn of short-lived reply buffers (15 % of a read's server time in page
// faults); mimalloc keeps them. See docs/benchmarks.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Append events to a stream on a server: one from --type/--data, or
    /// NDJSON lines from stdin in one atomic append.
    Append(commands::append::AppendArgs),
    /// Read a stream or $all from a server, one JSON event per line.
    Read(commands::read::ReadArgs),
    /// Follow a stream or $all on a server: a catch-up subscription
    /// printing events as they arrive, until Ctrl-C.
    Tail(commands::tail::TailArgs),
    /// Write all of a server's events ($all) as NDJSON, resumably.
    Export(commands::export::ExportArgs),
    /// Append the events of an export file to a server, keeping their ids;
    /// safe to re-run after an interruption.
    Import(commands::import::ImportArgs),
    /// Append under load, printing one line per acknowledged append (used
    /// by the crash tests; runs until killed or `--appends` are done).
    #[command(hide = true)]
    DebugLoad(load::LoadArgs),
    /// Damage one segment file of a stopped store (truncate, flip a bit,
    /// zero a sector, duplicate a block), reproducibly from a seed; for
    /// fault tests and drills. Prints what it did, with file and offset.
    #[command(hide = true)]
    DebugDamage(damage::DamageArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(&args),
        Command::Verify { data_dir } => verify::run(&data_dir),
        Command::Append(args) => commands::append::run(args),
        Command::Read(args) => commands::read::run(args),
        Command::Tail(args) => commands::tail::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Import(args) => commands::import::run(args),
        Command::DebugLoad(args) => load::run(&args),
        Command::DebugDamage(args) => damage::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
