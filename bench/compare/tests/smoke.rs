//! Smoke test of the load generator: a tiny run of every workload against
//! SteleDB only (a server started in this process on a free port, and the
//! embedded engine), checking that the figures it writes are sane. The
//! comparison itself is a tool (bench/compare/run.py), not a test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// Events in the log before the rounds; small so the test stays fast.
const CATCH_UP_EVENTS: u64 = 3000;
const WORKLOADS: [&str; 7] = [
    "append-1-client",
    "append-16-clients",
    "append-64-clients",
    "append-100-per-call",
    "conflicting-appends",
    "read-1000-event-stream",
    "catch-up-read",
];

fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

/// A server on its own runtime thread; stopped when the sender is dropped or used.
fn start_server(
    data_dir: std::path::PathBuf,
    listen: SocketAddr,
) -> (tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
        let config = stele_server::ServerConfig { data_dir, listen, ..Default::default() };
        let shutdown = async move {
            let _ = stopped.await;
        };
        runtime.block_on(stele_server::run(config, shutdown)).expect("the server runs");
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(listen).is_err() {
        assert!(Instant::now() < deadline, "the server did not listen within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    (stop, thread)
}

#[test]
fn tiny_run_against_steledb_gives_sane_figures() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let listen = free_address();
    let (stop, server) = start_server(root.path().join("server"), listen);
    let out = root.path().join("results.jsonl");
    let markdown = root.path().join("results.md");
    let output = Command::new(env!("CARGO_BIN_EXE_stele-compare"))
        .args(["--stele-grpc", &format!("http://{listen}")])
        .args(["--stele-embedded".as_ref(), root.path().join("embedded").as_os_str()])
        .args(["--rounds", "1", "--seconds", "0.3", "--settle-seconds", "0", "--events", &CATCH_UP_EVENTS.to_string()])
        .args(["--out".as_ref(), out.as_os_str(), "--markdown".as_ref(), markdown.as_os_str()])
        .output()
        .expect("run stele-compare");
    let _ = stop.send(());
    server.join().expect("the server thread ends");
    assert!(output.status.success(), "stele-compare failed: {}", String::from_utf8_lossy(&output.stderr));

    let text = std::fs::read_to_string(&out).expect("the JSON lines");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect();
    let systems: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "system").collect();
    assert_eq!(systems.len(), 2, "{text}");
    assert!(systems.iter().all(|s| s["fsync_before_ack"] == true), "{text}");
    for system in ["SteleDB (gRPC)", "SteleDB (embedded)"] {
        for workload in WORKLOADS {
            let row = lines
                .iter()
                .find(|l| l["kind"] == "result" && l["system"] == system && l["workload"] == workload)
                .unwrap_or_else(|| panic!("no result for {system} {workload}:\n{text}"));
            let number = |key: &str| row[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {row}"));
            assert!(number("events") > 0.0, "{row}");
            assert!(number("events_per_sec") > 0.0, "{row}");
            let (p50, p99, p999) = (number("latency_us_p50"), number("latency_us_p99"), number("latency_us_p999"));
            assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{row}");
            // Nothing here should take a whole second per operation on loopback.
            assert!(p50 < 1_000_000.0, "{row}");
            match workload {
                "catch-up-read" => assert_eq!(number("events") as u64, CATCH_UP_EVENTS, "{row}"),
                "read-1000-event-stream" => assert_eq!(number("events") as u64 % 1000, 0, "{row}"),
                "append-100-per-call" => assert_eq!(number("events") as u64 % 100, 0, "{row}"),
                _ => {}
            }
        }
    }
    let report = std::fs::read_to_string(&markdown).expect("the Markdown summary");
    assert!(report.contains("| append-1-client | SteleDB (gRPC) |"), "{report}");
    assert!(report.contains("all correct"), "{report}");
}
