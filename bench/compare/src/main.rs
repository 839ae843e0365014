//! `stele-compare`: drives the same workloads against SteleDB (server and
//! embedded), PostgreSQL, Redis Streams and NATS JetStream, each system in
//! turn, for several rounds; writes one JSON line per measurement and a
//! Markdown table of medians. `bench/compare/run.py` starts the systems.

mod client;
mod error;
mod event;
mod machine;
mod nats;
mod postgres;
mod redis;
mod stats;
mod stele;
mod workload;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use client::Target;
use stats::Row;
use workload::{Plan, Workload};

#[derive(Debug, Parser)]
#[command(name = "stele-compare", about = "Compare SteleDB with PostgreSQL, Redis Streams and NATS JetStream")]
struct Args {
    /// SteleDB server, e.g. http://127.0.0.1:2113
    #[arg(long)]
    stele_grpc: Option<String>,
    /// Data directory for the embedded engine (created; should be empty)
    #[arg(long)]
    stele_embedded: Option<PathBuf>,
    /// PostgreSQL connection, e.g. "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    #[arg(long)]
    postgres: Option<String>,
    /// Redis address, e.g. 127.0.0.1:6379
    #[arg(long)]
    redis: Option<SocketAddr>,
    /// NATS address, e.g. 127.0.0.1:4222
    #[arg(long)]
    nats: Option<SocketAddr>,
    /// The NATS server was started with `sync_interval: always` (no client can check)
    #[arg(long)]
    nats_sync_always: bool,
    /// Rounds; each runs every workload on every system in turn
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds each timed workload runs per system per round
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Events in the log before the rounds, read back by the catch-up workload
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Clients in the conflicting-appends workload
    #[arg(long, default_value_t = 16)]
    conflict_clients: usize,
    /// Streams they share
    #[arg(long, default_value_t = 4)]
    conflict_streams: usize,
    /// Pause after filling, once pending writes are synced
    #[arg(long, default_value_t = 5.0)]
    settle_seconds: f64,
    /// Comma-separated workloads (default: all)
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Append one JSON line per measurement here
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the Markdown summary here (it is printed either way)
    #[arg(long)]
    markdown: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("stele-compare: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn targets(args: &Args) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    if let Some(uri) = &args.stele_grpc {
        targets.push(Target::SteleGrpc { uri: uri.clone() });
    }
    if let Some(dir) = &args.stele_embedded {
        let store = steledb::Store::open(dir)
            .map_err(|e| format!("cannot open the embedded store in {}: {e}", dir.display()))?;
        targets.push(Target::SteleEmbedded { store: Arc::new(store) });
    }
    if let Some(config) = &args.postgres {
        targets.push(Target::Postgres { config: config.clone() });
    }
    if let Some(address) = args.redis {
        targets.push(Target::Redis { address });
    }
    if let Some(address) = args.nats {
        targets.push(Target::Nats { address, sync_always: args.nats_sync_always });
    }
    if targets.is_empty() {
        return Err("name at least one system (--stele-grpc, --stele-embedded, --postgres, --redis, --nats)".into());
    }
    Ok(targets)
}

async fn run(args: Args) -> Result<(), String> {
    let workloads = if args.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.workloads
            .iter()
            .map(|name| Workload::parse(name).ok_or_else(|| format!("unknown workload '{name}'")))
            .collect::<Result<_, _>>()?
    };
    let plan = Plan {
        duration: Duration::from_secs_f64(args.seconds),
        catch_up_events: if workloads.contains(&Workload::CatchUp) { args.events } else { 0 },
        conflict_clients: args.conflict_clients,
        conflict_streams: args.conflict_streams,
        run_tag: format!("{}x{}", std::process::id(), uuid::Uuid::new_v4().simple().to_string().split_at(8).0),
    };
    let mut out = match &args.out {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut emit = |value: serde_json::Value| {
        if let Some(file) = out.as_mut() {
            // A lost line shows as a missing round in the report; keep measuring.
            let _ = writeln!(file, "{value}");
        }
    };

    let mut ready = Vec::new();
    let mut systems: Vec<(&'static str, String)> = Vec::new();
    let mut notes = Vec::new();
    for target in targets(&args)? {
        eprintln!("[{}] preparing and filling {} events", target.name(), plan.catch_up_events);
        let prepared = async {
            let durability = target.prepare().await?;
            workload::fill(&target, &plan).await?;
            Ok::<_, error::BenchError>(durability)
        };
        match prepared.await {
            Ok(durability) => {
                let label = if durability.fsync_before_ack {
                    target.name().to_owned()
                } else {
                    format!("{} (no fsync before ack)", target.name())
                };
                emit(serde_json::json!({
                    "kind": "system", "system": target.name(), "label": label,
                    "fsync_before_ack": durability.fsync_before_ack, "settings": durability.settings,
                }));
                notes.push(format!("- {label}: {}", durability.settings));
                systems.push((target.name(), label));
                ready.push(target);
            }
            Err(e) => {
                eprintln!("[{}] skipped: {e}", target.name());
                notes.push(format!("- {}: not measured: {e}", target.name()));
            }
        }
    }

    // The fill leaves dirty pages and pending checkpoints behind; let them
    // reach the disk before measuring, so round 1 does not pay for them.
    for target in &ready {
        if let Err(e) = target.settle().await {
            eprintln!("[{}] could not settle: {e}", target.name());
        }
    }
    let _ = std::process::Command::new("sync").status();
    tokio::time::sleep(Duration::from_secs_f64(args.settle_seconds)).await;

    let mut rows = Vec::new();
    for round in 1..=args.rounds {
        for &workload in &workloads {
            for target in &ready {
                let probe = machine::BusyProbe::start();
                let result = workload::run(target, workload, round, &plan).await;
                let busy = probe.finish();
                match result {
                    Ok(sample) => {
                        let row = Row::new(target.name(), workload, round, sample, busy);
                        eprintln!(
                            "[{}] round {round} {}: {} events/s, p50 {:.0} µs, p99 {:.0} µs{}",
                            target.name(),
                            workload.name(),
                            stats::grouped(row.events_per_sec),
                            row.latency_us_p50,
                            row.latency_us_p99,
                            if busy { " (other builds running)" } else { "" }
                        );
                        let mut json = row.to_json();
                        json["kind"] = "result".into();
                        emit(json);
                        rows.push(row);
                    }
                    Err(e) => {
                        eprintln!("[{}] round {round} {} failed: {e}", target.name(), workload.name());
                        notes.push(format!("- {} round {round} {}: failed: {e}", target.name(), workload.name()));
                    }
                }
            }
        }
    }

    let mut report = stats::markdown(&rows, &systems, &workloads);
    report.push_str("\nSystems and their durability settings:\n\n");
    for note in &notes {
        report.push_str(note);
        report.push('\n');
    }
    print!("{report}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &report).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
