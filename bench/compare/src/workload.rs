//! The workloads, each run the same way against every system.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::client::{Appended, Target};
use crate::error::BenchError;
use crate::event;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Append1,
    Append16,
    Append64,
    Batch100,
    Conflict,
    ReadStream,
    CatchUp,
}

impl Workload {
    pub const ALL: [Workload; 7] = [
        Self::Append1,
        Self::Append16,
        Self::Append64,
        Self::Batch100,
        Self::Conflict,
        Self::ReadStream,
        Self::CatchUp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Append1 => "append-1-client",
            Self::Append16 => "append-16-clients",
            Self::Append64 => "append-64-clients",
            Self::Batch100 => "append-100-per-call",
            Self::Conflict => "conflicting-appends",
            Self::ReadStream => "read-1000-event-stream",
            Self::CatchUp => "catch-up-read",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// Sizes of one invocation.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How long each timed append or read-stream workload runs per system per round.
    pub duration: Duration,
    /// Events in the log before the rounds start, and read by the catch-up.
    pub catch_up_events: u64,
    pub conflict_clients: usize,
    pub conflict_streams: usize,
    /// Distinguishes this invocation's streams from earlier ones' on a reused server.
    pub run_tag: String,
}

/// Events in the stream the read-stream workload reads.
pub const READ_STREAM_EVENTS: u64 = 1000;
/// Events per append while filling the log before the rounds.
const FILL_EVENTS_PER_APPEND: usize = 100;
/// Events per stream while filling, so the log holds many streams.
const FILL_STREAM_EVENTS: u64 = 1000;
/// Concurrent clients while filling (fill time is not measured).
const FILL_CLIENTS: u64 = 4;
/// A workload that has not finished this long after its planned end has hung.
const GRACE: Duration = Duration::from_secs(120);

/// What one workload measured on one system in one round.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Events written (successfully) or read.
    pub events: u64,
    pub seconds: f64,
    /// One entry per operation (append call, stream read or whole catch-up).
    pub latencies_ns: Vec<u64>,
    /// Appends correctly refused for a stale expectation.
    pub rejections: u64,
}

fn read_stream_name(plan: &Plan) -> String {
    format!("read-{}", plan.run_tag)
}

/// Puts the read-stream's events and `catch_up_events` events in the log.
pub async fn fill(target: &Target, plan: &Plan) -> Result<(), BenchError> {
    let mut client = target.connect().await?;
    let mut version = 0;
    for n in 0..READ_STREAM_EVENTS / FILL_EVENTS_PER_APPEND as u64 {
        let events = event::events(n * FILL_EVENTS_PER_APPEND as u64, FILL_EVENTS_PER_APPEND);
        version = written(target, client.append(&read_stream_name(plan), version, events).await?)?;
    }
    let fill_events = plan.catch_up_events.saturating_sub(READ_STREAM_EVENTS);
    let per_client = fill_events.div_ceil(FILL_CLIENTS);
    let mut tasks = Vec::new();
    for filler in 0..FILL_CLIENTS {
        let mut client = target.connect().await?;
        let (target, tag) = (target.clone(), plan.run_tag.clone());
        tasks.push(tokio::spawn(async move {
            let mut left = per_client;
            let mut stream_number = 0;
            while left > 0 {
                let stream = format!("fill-{tag}-{filler}-{stream_number}");
                let mut version = 0;
                let mut in_stream = 0;
                while left > 0 && in_stream < FILL_STREAM_EVENTS {
                    let count = (FILL_EVENTS_PER_APPEND as u64).min(left) as usize;
                    let events = event::events(left, count);
                    version = written(&target, client.append(&stream, version, events).await?)?;
                    left -= count as u64;
                    in_stream += count as u64;
                }
                stream_number += 1;
            }
            Ok::<(), BenchError>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| joined(target, e))??;
    }
    Ok(())
}

fn written(target: &Target, appended: Appended) -> Result<u64, BenchError> {
    match appended {
        Appended::Written { next_version } => Ok(next_version),
        Appended::Conflict { current_version } => Err(BenchError::Wrong {
            system: target.name(),
            message: format!("a stream with one writer refused an append (current version {current_version})"),
        }),
    }
}

fn joined(target: &Target, error: tokio::task::JoinError) -> BenchError {
    BenchError::Wrong { system: target.name(), message: format!("a client task failed: {error}") }
}

pub async fn run(target: &Target, workload: Workload, round: u32, plan: &Plan) -> Result<Sample, BenchError> {
    let prefix = format!("{}-r{round}-{}", workload.name(), plan.run_tag);
    let limit = match workload {
        Workload::CatchUp => Duration::from_secs(1800),
        _ => plan.duration + GRACE,
    };
    let work = async {
        match workload {
            Workload::Append1 => appends(target, 1, 1, plan.duration, &prefix).await,
            Workload::Append16 => appends(target, 16, 1, plan.duration, &prefix).await,
            Workload::Append64 => appends(target, 64, 1, plan.duration, &prefix).await,
            Workload::Batch100 => appends(target, 1, 100, plan.duration, &prefix).await,
            Workload::Conflict => conflicts(target, plan, &prefix).await,
            Workload::ReadStream => read_stream(target, plan).await,
            Workload::CatchUp => catch_up(target, plan.catch_up_events).await,
        }
    };
    tokio::time::timeout(limit, work).await.map_err(|_| BenchError::Timeout {
        system: target.name(),
        what: workload.name(),
        seconds: limit.as_secs(),
    })?
}

/// `clients` clients, each appending `per_append` events per call to its
/// own stream, each call with the exact expected version, until `duration`.
async fn appends(
    target: &Target,
    clients: usize,
    per_append: usize,
    duration: Duration,
    prefix: &str,
) -> Result<Sample, BenchError> {
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        connected.push(target.connect().await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = connected
        .into_iter()
        .enumerate()
        .map(|(n, mut client)| {
            let stream = format!("{prefix}-{n}");
            let target = target.clone();
            tokio::spawn(async move {
                let mut latencies_ns = Vec::new();
                let mut version = 0;
                let mut sequence = 0u64;
                while Instant::now() < deadline {
                    let begun = Instant::now();
                    let events = event::events(sequence, per_append);
                    version = written(&target, client.append(&stream, version, events).await?)?;
                    latencies_ns.push(begun.elapsed().as_nanos() as u64);
                    sequence += per_append as u64;
                }
                Ok::<_, BenchError>(latencies_ns)
            })
        })
        .collect();
    let mut sample = Sample::default();
    for task in tasks {
        sample.latencies_ns.extend(task.await.map_err(|e| joined(target, e))??);
    }
    sample.seconds = started.elapsed().as_secs_f64();
    sample.events = sample.latencies_ns.len() as u64 * per_append as u64;
    Ok(sample)
}

/// `conflict_clients` clients share `conflict_streams` streams; each
/// appends one event at the version it last saw, and on a refusal takes
/// the current version from the reply and tries again. Afterwards every
/// stream must hold exactly the appends that were acknowledged.
async fn conflicts(target: &Target, plan: &Plan, prefix: &str) -> Result<Sample, BenchError> {
    let mut connected = Vec::with_capacity(plan.conflict_clients);
    for _ in 0..plan.conflict_clients {
        connected.push(target.connect().await?);
    }
    let started = Instant::now();
    let deadline = started + plan.duration;
    let streams = plan.conflict_streams.max(1);
    let tasks: Vec<_> = connected
        .into_iter()
        .enumerate()
        .map(|(n, mut client)| {
            let stream = format!("{prefix}-{}", n % streams);
            tokio::spawn(async move {
                let (mut latencies_ns, mut written, mut rejected) = (Vec::new(), 0u64, 0u64);
                let mut version = 0;
                let mut sequence = 0u64;
                while Instant::now() < deadline {
                    let begun = Instant::now();
                    let appended = client.append(&stream, version, event::events(sequence, 1)).await?;
                    latencies_ns.push(begun.elapsed().as_nanos() as u64);
                    sequence += 1;
                    match appended {
                        Appended::Written { next_version } => (version, written) = (next_version, written + 1),
                        Appended::Conflict { current_version } => (version, rejected) = (current_version, rejected + 1),
                    }
                }
                Ok::<_, BenchError>((stream, latencies_ns, written, rejected))
            })
        })
        .collect();
    let mut sample = Sample::default();
    let mut written_by_stream: HashMap<String, u64> = HashMap::new();
    for task in tasks {
        let (stream, latencies_ns, written, rejected) = task.await.map_err(|e| joined(target, e))??;
        sample.latencies_ns.extend(latencies_ns);
        *written_by_stream.entry(stream).or_default() += written;
        sample.events += written;
        sample.rejections += rejected;
    }
    sample.seconds = started.elapsed().as_secs_f64();
    let mut reader = target.connect().await?;
    for (stream, acknowledged) in written_by_stream {
        let stored = reader.read_stream(&stream, acknowledged + 10).await?;
        if stored != acknowledged {
            return Err(BenchError::Wrong {
                system: target.name(),
                message: format!("stream {stream} holds {stored} events but {acknowledged} appends were acknowledged"),
            });
        }
    }
    Ok(sample)
}

/// One client reads the 1,000-event stream from its start, again and again.
async fn read_stream(target: &Target, plan: &Plan) -> Result<Sample, BenchError> {
    let mut client = target.connect().await?;
    let stream = read_stream_name(plan);
    let started = Instant::now();
    let mut sample = Sample::default();
    while started.elapsed() < plan.duration {
        let begun = Instant::now();
        let read = client.read_stream(&stream, READ_STREAM_EVENTS).await?;
        sample.latencies_ns.push(begun.elapsed().as_nanos() as u64);
        if read != READ_STREAM_EVENTS {
            return Err(BenchError::Wrong {
                system: target.name(),
                message: format!("read {read} events of a {READ_STREAM_EVENTS}-event stream"),
            });
        }
        sample.events += read;
    }
    sample.seconds = started.elapsed().as_secs_f64();
    Ok(sample)
}

/// One client reads the first `count` events of the log, in order.
async fn catch_up(target: &Target, count: u64) -> Result<Sample, BenchError> {
    let mut client = target.connect().await?;
    let started = Instant::now();
    let read = client.catch_up(count).await?;
    let elapsed = started.elapsed();
    if read != count {
        return Err(BenchError::Wrong {
            system: target.name(),
            message: format!("caught up {read} of {count} events"),
        });
    }
    Ok(Sample {
        events: read,
        seconds: elapsed.as_secs_f64(),
        latencies_ns: vec![elapsed.as_nanos() as u64],
        rejections: 0,
    })
}
