//! Counters for `GET /metrics`, rendered in the Prometheus text format.
//! Names follow `stele_<thing>_<unit>`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use steledb::{AppendError, Store};

#[derive(Debug, Default)]
pub struct Metrics {
    pub appends: AtomicU64,
    pub append_events: AtomicU64,
    pub append_bytes: AtomicU64,
    pub append_errors: [AtomicU64; APPEND_ERROR_KINDS.len()],
    pub reads: AtomicU64,
    pub subscriptions_active: AtomicI64,
    pub subscriptions: AtomicU64,
    pub connections_open: AtomicI64,
}

/// Labels of `stele_append_errors_total`, by `AppendError` variant group.
const APPEND_ERROR_KINDS: [&str; 8] = [
    "wrong_expected_revision",
    "stream_deleted",
    "invalid",
    "overloaded",
    "no_space",
    "writer_stopped",
    "other",
    "index_backlog",
];

fn error_kind(error: &AppendError) -> usize {
    match error {
        AppendError::WrongExpectedRevision { .. } | AppendError::DuplicateEventIds { .. } => 0,
        AppendError::StreamDeleted { .. } => 1,
        AppendError::Overloaded { .. } => 3,
        AppendError::NoSpace => 4,
        AppendError::WriterStopped { .. } => 5,
        AppendError::Read(_) => 6,
        AppendError::IndexBacklog { .. } => 7,
        _ => 2,
    }
}

impl Metrics {
    pub fn record_append(&self, events: usize, bytes: usize) {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.append_events.fetch_add(events as u64, Ordering::Relaxed);
        self.append_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn record_append_error(&self, error: &AppendError) {
        self.append_errors[error_kind(error)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a subscription for as long as the guard lives.
    pub fn subscription(self: &Arc<Self>) -> SubscriptionGuard {
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        self.subscriptions_active.fetch_add(1, Ordering::Relaxed);
        SubscriptionGuard(self.clone())
    }

    pub fn render(&self, store: &Store) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter("stele_appends_total", "Append requests acknowledged.", load(&self.appends));
        counter("stele_append_events_total", "Events acknowledged.", load(&self.append_events));
        counter("stele_append_bytes_total", "Event bytes acknowledged.", load(&self.append_bytes));
        counter("stele_reads_total", "Read requests served.", load(&self.reads));
        counter("stele_subscriptions_total", "Subscriptions started.", load(&self.subscriptions));
        let stats = store.log_stats();
        counter("stele_log_syncs_total", "fdatasync calls on the log.", load(&stats.syncs));
        counter("stele_log_written_bytes_total", "Bytes written to the log.", load(&stats.bytes_written));

        let _ = writeln!(out, "# HELP stele_append_errors_total Append requests refused, by reason.");
        let _ = writeln!(out, "# TYPE stele_append_errors_total counter");
        for (kind, count) in APPEND_ERROR_KINDS.iter().zip(&self.append_errors) {
            let _ = writeln!(out, "stele_append_errors_total{{reason=\"{kind}\"}} {}", load(count));
        }
        let gauge = |out: &mut String, name: &str, help: &str, value: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        gauge(
            &mut out,
            "stele_subscriptions_active",
            "Subscriptions open now.",
            self.subscriptions_active.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "stele_connections_open",
            "Client connections open now.",
            self.connections_open.load(Ordering::Relaxed),
        );
        gauge(&mut out, "stele_log_size_bytes", "Logical size of the log.", store.end_position() as i64);
        gauge(&mut out, "stele_log_segments", "Segment files.", store.segments().len() as i64);
        gauge(
            &mut out,
            "stele_writer_stopped",
            "1 once the writer stopped after an I/O failure.",
            i64::from(store.writer_stopped().is_some()),
        );
        gauge(
            &mut out,
            "stele_index_flush_failing",
            "1 while writing the index out fails (appends go on; memory grows).",
            i64::from(store.index_error().is_some()),
        );

        let name = "stele_log_sync_latency_seconds";
        let _ = writeln!(out, "# HELP {name} Latency of fdatasync on the log.\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in stats.sync_latency_us_buckets.iter().enumerate() {
            cumulative += load(bucket);
            let bound = steledb::log_sync_bucket_bound_seconds(i);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}", load(&stats.sync_latency_us_sum) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
        out
    }
}

pub struct SubscriptionGuard(Arc<Metrics>);

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.0.subscriptions_active.fetch_sub(1, Ordering::Relaxed);
    }
}
