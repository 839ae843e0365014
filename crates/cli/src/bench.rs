//! `stele bench`: the embedded engine under a chosen workload.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use steledb::{AllStart, Direction, ExpectedRevision, NewEvent, Store, StoreConfig, StreamAppend, StreamStart, Uuid};
use steledb_client::{SubscriptionReply, SubscriptionStart};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Writers append batches of events to their own streams.
    Append,
    /// Read one stream of `--stream-events` events from the start, repeatedly.
    ReadStream,
    /// Read `$all` from the start to the end, in pages of owned events.
    ReadAll,
    /// Scan `$all` from the start to the end with the zero-copy visitor
    /// (`Store::scan_all`), as a server encoding replies would.
    ScanAll,
    /// Open the store in `--data-dir` (filling it first if it is empty) and
    /// report the open time and resident memory.
    Open,
    /// The baseline: a bare 4 KiB write + fdatasync per operation to a
    /// file, no store at all (`--events` operations).
    Fsync,
}

/// How the remote append workload appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AppendApi {
    /// `Streams.Append`: one client-streaming call per append (as the
    /// official Rust client's `append_to_stream` does).
    Append,
    /// `Streams.BatchAppend`: one long-lived call per client and one message
    /// per append, answered on the same call (as the .NET client does).
    BatchAppend,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value_t = Workload::Append)]
    workload: Workload,
    /// Concurrent writer threads (append workload).
    #[arg(long, default_value_t = 1)]
    writers: usize,
    #[arg(long, default_value_t = 1)]
    events_per_append: usize,
    /// Appends each writer keeps in flight (1: wait for each before the next).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// With `--target`: the gRPC call each append is.
    #[arg(long, value_enum, default_value_t = AppendApi::Append)]
    api: AppendApi,
    /// With `--target`: HTTP/2 connections the `--writers` clients share,
    /// round robin (default: one connection per client). One connection
    /// shared by many tasks is how an application uses an official client.
    #[arg(long)]
    connections: Option<usize>,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 200)]
    event_bytes: usize,
    /// Total events to append (or to prepare for the read workloads).
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Events in the stream read by the read-stream workload.
    #[arg(long, default_value_t = 1000)]
    stream_events: u64,
    /// Reads of the stream in the read-stream workload.
    #[arg(long, default_value_t = 2000)]
    reads: u64,
    /// Run against a server instead of the embedded engine, e.g.
    /// `kurrentdb://127.0.0.1:2113?tls=false`: append, read-stream and
    /// read-all (a catch-up subscription to `$all`) over gRPC, with
    /// `--writers` concurrent clients for append.
    #[arg(long)]
    target: Option<String>,
    /// Where the store lives. Default: a fresh directory under the system
    /// temporary directory, removed afterwards.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// read-stream: visit events borrowed (`Store::scan_stream`) instead of
    /// returning owned copies (`Store::read_stream`).
    #[arg(long)]
    zero_copy: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

struct Report {
    workload: &'static str,
    events: u64,
    elapsed: Duration,
    latencies_ns: Vec<u64>,
    bytes_written: u64,
    extra: Vec<(&'static str, serde_json::Value)>,
}

pub fn run(args: &BenchArgs) -> Result<ExitCode, String> {
    if args.writers == 0 || args.events_per_append == 0 || args.events == 0 {
        return Err("--writers, --events-per-append and --events must be at least 1".into());
    }
    if let Some(target) = &args.target {
        let report = remote_bench(args, target)?;
        print_report(&report, args);
        return Ok(ExitCode::SUCCESS);
    }
    let (dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (std::env::temp_dir().join(format!("stele-bench-{}", std::process::id())), true),
    };
    let result = match args.workload {
        Workload::Append => bench_append(args, &dir),
        Workload::ReadStream => bench_read_stream(args, &dir),
        Workload::ReadAll => bench_read_all(args, &dir),
        Workload::ScanAll => bench_scan_all(args, &dir),
        Workload::Open => bench_open(args, &dir),
        Workload::Fsync => bench_fsync(args, &dir),
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    print_report(&result?, args);
    Ok(ExitCode::SUCCESS)
}

fn open(dir: &PathBuf) -> Result<Store, String> {
    Store::open_with(StoreConfig::new(dir)).map_err(|e| format!("opening {}: {e}", dir.display()))
}

fn event(id: Uuid, bytes: usize) -> NewEvent {
    // JSON-shaped payload of the requested size.
    let mut data = Vec::with_capacity(bytes);
    data.extend_from_slice(b"{\"pad\":\"");
    data.resize(bytes.saturating_sub(2).max(data.len()), b'x');
    data.extend_from_slice(b"\"}");
    data.truncate(bytes.max(1));
    NewEvent::json(id, "BenchEvent", data)
}

fn bench_append(args: &BenchArgs, dir: &PathBuf) -> Result<Report, String> {
    let store = Arc::new(open(dir)?);
    let start_position = store.end_position();
    let syncs_before = store.log_stats().syncs.load(Ordering::Relaxed);
    let sync_us_before = store.log_stats().sync_latency_us_sum.load(Ordering::Relaxed);
    let appends_total = args.events.div_ceil(args.events_per_append as u64);
    let per_writer = appends_total.div_ceil(args.writers as u64);
    let started = Instant::now();
    let threads: Vec<_> = (0..args.writers)
        .map(|writer| {
            let store = store.clone();
            let (count, size, pipeline) = (args.events_per_append, args.event_bytes, args.pipeline.max(1));
            let stream = format!("bench-{}-{writer}", std::process::id());
            std::thread::spawn(move || append_loop(&store, &stream, writer as u64, per_writer, count, size, pipeline))
        })
        .collect();
    let mut latencies_ns = Vec::new();
    for thread in threads {
        latencies_ns.extend(thread.join().map_err(|_| "a writer thread panicked")??);
    }
    let elapsed = started.elapsed();
    let events = latencies_ns.len() as u64 * args.events_per_append as u64;
    // How well commits were grouped: events per fdatasync, and what one cost.
    let syncs = store.log_stats().syncs.load(Ordering::Relaxed) - syncs_before;
    let sync_us = store.log_stats().sync_latency_us_sum.load(Ordering::Relaxed) - sync_us_before;
    let events_per_sync = events as f64 / syncs.max(1) as f64;
    let sync_us_mean = sync_us as f64 / syncs.max(1) as f64;
    Ok(Report {
        workload: "append",
        events,
        elapsed,
        latencies_ns,
        bytes_written: store.end_position() - start_position,
        extra: vec![
            ("writers", args.writers.into()),
            ("events_per_append", args.events_per_append.into()),
            ("event_bytes", args.event_bytes.into()),
            ("pipeline", args.pipeline.into()),
            ("syncs", syncs.into()),
            ("events_per_sync", ((events_per_sync * 10.0).round() / 10.0).into()),
            ("sync_us_mean", sync_us_mean.round().into()),
        ],
    })
}

/// One writer: `appends` appends of `count` events, at most `pipeline` in
/// flight. Returns each append's latency.
fn append_loop(
    store: &Store,
    stream: &str,
    writer: u64,
    appends: u64,
    count: usize,
    size: usize,
    pipeline: usize,
) -> Result<Vec<u64>, String> {
    let mut ids = IdSource::new(writer);
    let mut latencies = Vec::with_capacity(appends as usize);
    // Answers carry the appended events back, to be freed on this thread
    // as a front end would, not on the writer's.
    type Done = (Result<u64, String>, Vec<StreamAppend>);
    let (done_sender, done) = std::sync::mpsc::channel::<Done>();
    let wait = || done.recv().map_err(|e| e.to_string()).and_then(|(latency, _parts)| latency);
    let mut in_flight = 0;
    for _ in 0..appends {
        if in_flight == pipeline {
            latencies.push(wait()?);
            in_flight -= 1;
        }
        let events: Vec<NewEvent> = (0..count).map(|_| event(ids.next(), size)).collect();
        let begun = Instant::now();
        let sender = done_sender.clone();
        store.append_with(vec![StreamAppend::new(stream, ExpectedRevision::Any, events)], move |result, parts| {
            let latency = result.map(|_| begun.elapsed().as_nanos() as u64).map_err(|e| e.to_string());
            let _ = sender.send((latency, parts));
        });
        in_flight += 1;
    }
    for _ in 0..in_flight {
        latencies.push(wait()?);
    }
    Ok(latencies)
}

/// Random-looking version-4 UUIDs without a system call each: a client
/// generating ids this way is realistic, and getrandom per event would
/// otherwise dominate the client side of the measurement.
struct IdSource(u64);

impl IdSource {
    fn new(salt: u64) -> Self {
        Self(Uuid::new_v4().as_u64_pair().0 ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> Uuid {
        let mut word = || {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        };
        let (high, low) = (word(), word());
        uuid::Builder::from_random_bytes(((u128::from(high) << 64) | u128::from(low)).to_le_bytes()).into_uuid()
    }
}

/// Appends `count` events to `stream` in batches of 1000.
fn fill(store: &Store, stream: &str, count: u64, event_bytes: usize) -> Result<(), String> {
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        let events = (0..n).map(|_| event(Uuid::new_v4(), event_bytes)).collect();
        store.append(stream, ExpectedRevision::Any, events).map_err(|e| e.to_string())?;
        left -= n;
    }
    Ok(())
}

fn bench_read_stream(args: &BenchArgs, dir: &PathBuf) -> Result<Report, String> {
    let store = open(dir)?;
    let stream = "bench-read-stream";
    let have = store.stream_revision(stream).map_err(|e| e.to_string())?.map_or(0, |r| r + 1);
    if have < args.stream_events {
        fill(&store, stream, args.stream_events - have, args.event_bytes)?;
    }
    let mut latencies_ns = Vec::with_capacity(args.reads as usize);
    let mut events = 0;
    let started = Instant::now();
    for _ in 0..args.reads {
        let begun = Instant::now();
        let read = if args.zero_copy {
            let mut data_bytes = 0;
            let visited = store
                .scan_stream(stream, StreamStart::Start, args.stream_events as usize, |event, _| {
                    data_bytes += event.data.len()
                })
                .map_err(|e| e.to_string())?;
            assert!(data_bytes > 0);
            visited
        } else {
            store
                .read_stream(stream, StreamStart::Start, Direction::Forward, args.stream_events as usize)
                .map_err(|e| e.to_string())?
                .len()
        };
        latencies_ns.push(begun.elapsed().as_nanos() as u64);
        assert_eq!(read as u64, args.stream_events);
        events += read as u64;
    }
    Ok(Report {
        workload: "read-stream",
        events,
        elapsed: started.elapsed(),
        latencies_ns,
        bytes_written: 0,
        extra: vec![("stream_events", args.stream_events.into()), ("zero_copy", args.zero_copy.into())],
    })
}

fn bench_read_all(args: &BenchArgs, dir: &PathBuf) -> Result<Report, String> {
    let store = open(dir)?;
    let have = count_all(&store)?;
    if have < args.events {
        fill_many(&store, args.events - have, args.event_bytes)?;
    }
    // Page size as a client would use; latency is per page.
    const PAGE: usize = 4096;
    let mut latencies_ns = Vec::new();
    let mut events = 0u64;
    let mut position = AllStart::Start;
    let started = Instant::now();
    loop {
        let begun = Instant::now();
        let slice = store.read_all(position, Direction::Forward, PAGE, None).map_err(|e| e.to_string())?;
        latencies_ns.push(begun.elapsed().as_nanos() as u64);
        events += slice.events.len() as u64;
        position = AllStart::Position(slice.next_position);
        if slice.is_end {
            break;
        }
    }
    Ok(Report {
        workload: "read-all",
        events,
        elapsed: started.elapsed(),
        latencies_ns,
        bytes_written: 0,
        extra: vec![("page_events", PAGE.into())],
    })
}

fn bench_scan_all(args: &BenchArgs, dir: &PathBuf) -> Result<Report, String> {
    let store = open(dir)?;
    let have = count_all(&store)?;
    if have < args.events {
        fill_many(&store, args.events - have, args.event_bytes)?;
    }
    let mut events = 0u64;
    let mut data_bytes = 0u64;
    let started = Instant::now();
    store
        .scan_all(0, |event, _position| {
            events += 1;
            data_bytes += event.data.len() as u64;
            true
        })
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    Ok(Report {
        workload: "scan-all",
        events,
        elapsed,
        latencies_ns: vec![elapsed.as_nanos() as u64],
        bytes_written: 0,
        extra: vec![("data_bytes", data_bytes.into())],
    })
}

fn count_all(store: &Store) -> Result<u64, String> {
    if store.end_position() == 0 {
        return Ok(0);
    }
    let mut count = 0;
    let mut position = AllStart::Start;
    loop {
        let slice = store.read_all(position, Direction::Forward, 65_536, None).map_err(|e| e.to_string())?;
        count += slice.events.len() as u64;
        position = AllStart::Position(slice.next_position);
        if slice.is_end {
            return Ok(count);
        }
    }
}

/// Fills with many streams of 100 events each, as a busy store would hold.
fn fill_many(store: &Store, count: u64, event_bytes: usize) -> Result<(), String> {
    let mut written = 0u64;
    let mut stream = 0u64;
    while written < count {
        let n = (count - written).min(100);
        let events = (0..n).map(|_| event(Uuid::new_v4(), event_bytes)).collect();
        store.append(&format!("fill-{stream}"), ExpectedRevision::Any, events).map_err(|e| e.to_string())?;
        written += n;
        stream += 1;
    }
    Ok(())
}

/// Measures the first open of the store in `dir` (after a crash, that
/// includes recovery and replay); an empty store is filled and closed first.
fn bench_open(args: &BenchArgs, dir: &PathBuf) -> Result<Report, String> {
    let mut started = Instant::now();
    let mut store = open(dir)?;
    if store.end_position() == 0 {
        fill_many(&store, args.events, args.event_bytes)?;
        drop(store);
        started = Instant::now();
        store = open(dir)?;
    }
    let elapsed = started.elapsed();
    let report = store.open_report().clone();
    Ok(Report {
        workload: "open",
        events: 0,
        elapsed,
        latencies_ns: vec![elapsed.as_nanos() as u64],
        bytes_written: 0,
        extra: vec![
            ("open_ms", (elapsed.as_secs_f64() * 1000.0).into()),
            ("replayed_events", report.replayed_events.into()),
            ("truncated_bytes", report.log.truncated_bytes.into()),
            ("log_bytes", store.end_position().into()),
            ("resident_memory_peak_kib", peak_rss_kib().into()),
        ],
    })
}

fn bench_fsync(args: &BenchArgs, dir: &PathBuf) -> Result<Report, String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join("fsync-baseline");
    let mut file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let block = vec![0x5au8; 4096];
    let mut latencies_ns = Vec::with_capacity(args.events as usize);
    let started = Instant::now();
    for _ in 0..args.events {
        let begun = Instant::now();
        file.write_all(&block).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
        latencies_ns.push(begun.elapsed().as_nanos() as u64);
    }
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(&path);
    Ok(Report {
        workload: "fsync",
        events: args.events,
        elapsed,
        latencies_ns,
        bytes_written: args.events * 4096,
        extra: vec![("write_bytes", 4096.into())],
    })
}

fn remote_bench(args: &BenchArgs, target: &str) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        match args.workload {
            Workload::Append => remote_append(args, target).await,
            Workload::ReadStream => remote_read_stream(args, target).await,
            Workload::ReadAll => remote_catch_up(args, target).await,
            other => Err(format!("--target supports append, read-stream and read-all, not {other:?}")),
        }
    })
}

fn remote_events(
    ids: &mut IdSource,
    count: usize,
    size: usize,
) -> Vec<steledb_client::proto::event_store::client::streams::AppendReq> {
    (0..count).map(|_| crate::remote::proposed(ids.next(), "BenchEvent", event(Uuid::nil(), size).data)).collect()
}

async fn remote_append(args: &BenchArgs, target: &str) -> Result<Report, String> {
    let appends_total = args.events.div_ceil(args.events_per_append as u64);
    let per_client = appends_total.div_ceil(args.writers as u64);
    let connections_count = args.connections.unwrap_or(args.writers);
    if connections_count == 0 || connections_count > args.writers {
        return Err(format!("--connections must be between 1 and --writers ({})", args.writers));
    }
    let mut connections = Vec::with_capacity(connections_count);
    for _ in 0..connections_count {
        connections.push(crate::remote::connect(target).await?);
    }
    let clients: Vec<_> = (0..args.writers).map(|n| connections[n % connections_count].clone()).collect();
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, client)| {
            let (count, size) = (args.events_per_append, args.event_bytes);
            let stream = format!("bench-{}-{n}-{}", std::process::id(), Uuid::new_v4().simple());
            let api = args.api;
            tokio::spawn(async move {
                let mut ids = IdSource::new(n as u64);
                let mut latencies = Vec::with_capacity(per_client as usize);
                if api == AppendApi::BatchAppend {
                    let (requests, outgoing) = tokio::sync::mpsc::channel(1);
                    let mut streams = client.streams();
                    let call = streams.batch_append(tokio_stream::wrappers::ReceiverStream::new(outgoing));
                    let mut replies = call.await.map_err(|e| format!("batch append: {e}"))?.into_inner();
                    for _ in 0..per_client {
                        let events = (0..count).map(|_| event(ids.next(), size)).collect();
                        let request = crate::remote::batch_append_request(ids.next(), &stream, events);
                        let begun = Instant::now();
                        requests.send(request).await.map_err(|_| "the batch append call ended".to_owned())?;
                        let reply = replies.message().await.map_err(|e| format!("batch append: {e}"))?;
                        crate::remote::batch_append_outcome(reply.ok_or("the batch append call ended")?)?;
                        latencies.push(begun.elapsed().as_nanos() as u64);
                    }
                    return Ok::<_, String>(latencies);
                }
                for _ in 0..per_client {
                    let events = remote_events(&mut ids, count, size);
                    let begun = Instant::now();
                    crate::remote::append_any(&client, &stream, events).await?;
                    latencies.push(begun.elapsed().as_nanos() as u64);
                }
                Ok::<_, String>(latencies)
            })
        })
        .collect();
    let mut latencies_ns = Vec::new();
    for task in tasks {
        latencies_ns.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    Ok(Report {
        workload: match args.api {
            AppendApi::Append => "grpc-append",
            AppendApi::BatchAppend => "grpc-batch-append",
        },
        events: latencies_ns.len() as u64 * args.events_per_append as u64,
        elapsed,
        latencies_ns,
        bytes_written: 0,
        extra: vec![
            ("clients", args.writers.into()),
            ("connections", connections_count.into()),
            ("events_per_append", args.events_per_append.into()),
        ],
    })
}

async fn remote_read_stream(args: &BenchArgs, target: &str) -> Result<Report, String> {
    let client = crate::remote::connect(target).await?;
    let stream = format!("bench-read-{}", Uuid::new_v4().simple());
    let mut ids = IdSource::new(7);
    let mut left = args.stream_events;
    while left > 0 {
        let n = left.min(500);
        crate::remote::append_any(&client, &stream, remote_events(&mut ids, n as usize, args.event_bytes)).await?;
        left -= n;
    }
    // Reads go through steledb-client, which decodes each reply straight
    // into a `RecordedEvent`: what an application using it gets.
    let mut latencies_ns = Vec::with_capacity(args.reads as usize);
    let started = Instant::now();
    for _ in 0..args.reads {
        let begun = Instant::now();
        let read = client.read_forward(&stream, 0, args.stream_events).await.map_err(|e| e.to_string())?;
        latencies_ns.push(begun.elapsed().as_nanos() as u64);
        if read.len() as u64 != args.stream_events {
            return Err(format!("read {} events, expected {}", read.len(), args.stream_events));
        }
    }
    Ok(Report {
        workload: "grpc-read-stream",
        events: args.reads * args.stream_events,
        elapsed: started.elapsed(),
        latencies_ns,
        bytes_written: 0,
        extra: vec![("stream_events", args.stream_events.into())],
    })
}

/// Appends `--events` events, then times one client's catch-up
/// subscription to `$all` from the start (it reads the whole log).
async fn remote_catch_up(args: &BenchArgs, target: &str) -> Result<Report, String> {
    let client = crate::remote::connect(target).await?;
    let mut ids = IdSource::new(11);
    let mut left = args.events;
    let mut stream = 0u64;
    while left > 0 {
        let n = left.min(1000);
        let name = format!("fill-{}-{stream}", std::process::id());
        crate::remote::append_any(&client, &name, remote_events(&mut ids, n as usize, args.event_bytes)).await?;
        left -= n;
        stream += 1;
    }
    let started = Instant::now();
    let mut subscription = client.subscribe_all(SubscriptionStart::Start, None, 1).await.map_err(|e| e.to_string())?;
    let mut events = 0u64;
    loop {
        match subscription.next().await.map_err(|e| e.to_string())? {
            SubscriptionReply::Event(_) => events += 1,
            SubscriptionReply::CaughtUp => break,
            SubscriptionReply::Checkpoint { .. } | SubscriptionReply::FellBehind => {}
        }
    }
    let elapsed = started.elapsed();
    Ok(Report {
        workload: "grpc-catch-up-all",
        events,
        elapsed,
        latencies_ns: vec![elapsed.as_nanos() as u64],
        bytes_written: 0,
        extra: vec![],
    })
}

/// Peak resident memory of this process (Linux `VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile_us(sorted_ns: &[u64], fraction: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let at = ((sorted_ns.len() as f64 * fraction).ceil() as usize).clamp(1, sorted_ns.len()) - 1;
    sorted_ns[at] as f64 / 1000.0
}

fn print_report(report: &Report, args: &BenchArgs) {
    let mut sorted = report.latencies_ns.clone();
    sorted.sort_unstable();
    let seconds = report.elapsed.as_secs_f64();
    let events_per_sec = if seconds > 0.0 { report.events as f64 / seconds } else { 0.0 };
    let bytes_per_event = if report.events > 0 { report.bytes_written as f64 / report.events as f64 } else { 0.0 };
    let (p50, p99, p999) = (percentile_us(&sorted, 0.50), percentile_us(&sorted, 0.99), percentile_us(&sorted, 0.999));
    if args.json {
        let mut object = serde_json::json!({
            "workload": report.workload,
            "events": report.events,
            "seconds": seconds,
            "events_per_sec": events_per_sec.round(),
            "latency_us_p50": p50,
            "latency_us_p99": p99,
            "latency_us_p999": p999,
            "bytes_written_per_event": bytes_per_event,
        });
        for (key, value) in &report.extra {
            object[*key] = value.clone();
        }
        println!("{object}");
    } else {
        println!("workload            {}", report.workload);
        for (key, value) in &report.extra {
            println!("{key:<20}{value}");
        }
        println!("events              {}", report.events);
        println!("seconds             {seconds:.3}");
        println!("events/s            {events_per_sec:.0}");
        println!("latency p50         {p50:.1} us");
        println!("latency p99         {p99:.1} us");
        println!("latency p99.9       {p999:.1} us");
        println!("bytes written/event {bytes_per_event:.1}");
    }
}
