//! Percentiles of one sample, and medians and spread across rounds as the
//! Markdown table the report shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::workload::{Sample, Workload};

/// One workload on one system in one round, as written to the JSON lines.
#[derive(Debug, Clone)]
pub struct Row {
    pub system: &'static str,
    pub workload: Workload,
    pub round: u32,
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    pub latency_us_p999: f64,
    pub rejections: u64,
    pub operations: u64,
    /// Other builds ran during the measurement (see `machine`).
    pub busy: bool,
}

/// The value at `fraction` of sorted nanoseconds, in microseconds
/// (nearest rank, so p99.9 of fewer than 1,000 samples is the maximum).
pub fn percentile_us(sorted_ns: &[u64], fraction: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_ns.len() as f64 * fraction).ceil() as usize).clamp(1, sorted_ns.len());
    sorted_ns[rank - 1] as f64 / 1000.0
}

impl Row {
    pub fn new(system: &'static str, workload: Workload, round: u32, mut sample: Sample, busy: bool) -> Self {
        sample.latencies_ns.sort_unstable();
        let sorted = &sample.latencies_ns;
        Self {
            system,
            workload,
            round,
            events: sample.events,
            seconds: sample.seconds,
            events_per_sec: if sample.seconds > 0.0 { sample.events as f64 / sample.seconds } else { 0.0 },
            latency_us_p50: percentile_us(sorted, 0.50),
            latency_us_p99: percentile_us(sorted, 0.99),
            latency_us_p999: percentile_us(sorted, 0.999),
            rejections: sample.rejections,
            operations: sorted.len() as u64,
            busy,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "system": self.system,
            "workload": self.workload.name(),
            "round": self.round,
            "events": self.events,
            "seconds": self.seconds,
            "events_per_sec": self.events_per_sec.round(),
            "latency_us_p50": self.latency_us_p50,
            "latency_us_p99": self.latency_us_p99,
            "latency_us_p999": self.latency_us_p999,
            "rejections": self.rejections,
            "operations": self.operations,
            "busy": self.busy,
        })
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// Medians over rounds of one workload on one system.
#[derive(Debug, Clone)]
pub struct Summary {
    pub rounds: usize,
    pub events_per_sec: f64,
    pub events_per_sec_min: f64,
    pub events_per_sec_max: f64,
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    pub latency_us_p999: f64,
    pub rejections_per_sec: f64,
    pub rejected_fraction: f64,
}

pub fn summarize(rows: &[&Row]) -> Summary {
    let column = |f: &dyn Fn(&Row) -> f64| -> Vec<f64> { rows.iter().map(|r| f(r)).collect() };
    let mut eps = column(&|r| r.events_per_sec);
    Summary {
        rounds: rows.len(),
        events_per_sec_min: eps.iter().copied().fold(f64::INFINITY, f64::min),
        events_per_sec_max: eps.iter().copied().fold(0.0, f64::max),
        events_per_sec: median(&mut eps),
        latency_us_p50: median(&mut column(&|r| r.latency_us_p50)),
        latency_us_p99: median(&mut column(&|r| r.latency_us_p99)),
        latency_us_p999: median(&mut column(&|r| r.latency_us_p999)),
        rejections_per_sec: median(&mut column(&|r| {
            if r.seconds > 0.0 {
                r.rejections as f64 / r.seconds
            } else {
                0.0
            }
        })),
        rejected_fraction: median(&mut column(&|r| {
            if r.operations > 0 {
                r.rejections as f64 / r.operations as f64
            } else {
                0.0
            }
        })),
    }
}

/// A count with thousands separators.
pub fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (n, c) in digits.chars().enumerate() {
        if n > 0 && (digits.len() - n) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds as µs below 1 ms, as ms above.
pub fn latency(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 100_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.0} ms", us / 1000.0)
    }
}

/// The row every ratio is taken against.
pub const REFERENCE_SYSTEM: &str = "SteleDB (gRPC)";

/// The Markdown table: one line per workload and system, in the order
/// given, with the ratio of events/s to SteleDB over gRPC (or to the
/// embedded engine if the server was not measured).
pub fn markdown(rows: &[Row], systems: &[(&'static str, String)], workloads: &[Workload]) -> String {
    let mut groups: BTreeMap<(usize, usize), Vec<&Row>> = BTreeMap::new();
    // A round counts for a workload if no system saw other builds in it;
    // if no round was quiet, every round counts and the table says so.
    let quiet_rounds = |workload: Workload| -> Vec<u32> {
        let mut rounds: Vec<u32> = rows.iter().filter(|r| r.workload == workload).map(|r| r.round).collect();
        rounds.sort_unstable();
        rounds.dedup();
        rounds.retain(|round| !rows.iter().any(|r| r.workload == workload && r.round == *round && r.busy));
        rounds
    };
    let quiet: Vec<Vec<u32>> = workloads.iter().map(|w| quiet_rounds(*w)).collect();
    for row in rows {
        let w = workloads.iter().position(|w| *w == row.workload);
        if let Some(w) = w {
            if !quiet[w].is_empty() && !quiet[w].contains(&row.round) {
                continue;
            }
        }
        let s = systems.iter().position(|(name, _)| *name == row.system);
        if let (Some(w), Some(s)) = (w, s) {
            groups.entry((w, s)).or_default().push(row);
        }
    }
    let mut out = String::from(
        "| workload | system | events/s median (min–max) | p50 | p99 | p99.9 | ratio to SteleDB | rounds used | notes |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (w, workload) in workloads.iter().enumerate() {
        let reference = [REFERENCE_SYSTEM, "SteleDB (embedded)"].iter().find_map(|name| {
            let s = systems.iter().position(|(n, _)| n == name)?;
            groups.get(&(w, s)).map(|rows| summarize(rows).events_per_sec)
        });
        for (s, (system, label)) in systems.iter().enumerate() {
            let Some(group) = groups.get(&(w, s)) else {
                let _ = writeln!(out, "| {} | {label} | not measured | | | | | 0 | see the log |", workload.name());
                continue;
            };
            let summary = summarize(group);
            let ratio = match reference {
                Some(r) if r > 0.0 => format!("{:.2}×", summary.events_per_sec / r),
                _ => "—".to_owned(),
            };
            let (p50, p99, p999) = if *workload == Workload::CatchUp {
                ("—".to_owned(), "—".to_owned(), "—".to_owned())
            } else {
                (latency(summary.latency_us_p50), latency(summary.latency_us_p99), latency(summary.latency_us_p999))
            };
            let notes = match workload {
                Workload::Conflict => format!(
                    "{} rejections/s ({:.0} % of attempts), all correct",
                    grouped(summary.rejections_per_sec),
                    summary.rejected_fraction * 100.0
                ),
                Workload::ReadStream => "latency per 1,000-event read".to_owned(),
                Workload::CatchUp => format!("{} s median", latency_seconds(group)),
                _ => String::new(),
            };
            let rounds_note = if quiet[w].is_empty() {
                format!("{} (all with other builds running)", summary.rounds)
            } else {
                format!("{} quiet", summary.rounds)
            };
            let _ = writeln!(
                out,
                "| {} | {label} | {} ({}–{}) | {p50} | {p99} | {p999} | {ratio} | {rounds_note} | {notes} |",
                workload.name(),
                grouped(summary.events_per_sec),
                grouped(summary.events_per_sec_min),
                grouped(summary.events_per_sec_max),
            );
            let _ = system;
        }
    }
    out
}

fn latency_seconds(rows: &[&Row]) -> String {
    let mut seconds: Vec<f64> = rows.iter().map(|r| r.seconds).collect();
    format!("{:.2}", median(&mut seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<u64> = (1..=1000).map(|n| n * 1000).collect();
        assert_eq!(percentile_us(&sorted, 0.5), 500.0);
        assert_eq!(percentile_us(&sorted, 0.99), 990.0);
        assert_eq!(percentile_us(&sorted, 0.999), 999.0);
        assert_eq!(percentile_us(&[], 0.5), 0.0);
    }

    #[test]
    fn medians_and_grouping() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(grouped(1234567.4), "1,234,567");
        assert_eq!(grouped(999.0), "999");
    }
}
