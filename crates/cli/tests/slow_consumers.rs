//! Subscribers that never read must not make the server buffer without
//! bound, nor stop appends or other readers.

mod support;

use std::io::Write;
use std::net::TcpStream;

use serde_json::{json, Value};

const SLOW_SUBSCRIBERS: usize = 5;
const EVENTS: usize = 40_000;
const EVENTS_PER_APPEND: usize = 200;
const PAD_BYTES: usize = 2_000;
/// What one subscription may hold: its bounded reply channel and batches
/// (a few thousand events of this size) with room to spare.
const SUBSCRIBER_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// The allocator's, the index's and the request bodies' working memory.
const SERVER_GROWTH_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The server's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS in kB");
    kib * 1024
}

#[test]
fn subscribers_that_never_read_hold_bounded_memory_and_block_no_one() {
    let server = support::start();
    // Subscribed from the start, then never read from again.
    let slow: Vec<TcpStream> = (0..SLOW_SUBSCRIBERS)
        .map(|_| {
            let mut stream = TcpStream::connect(server.address()).unwrap();
            stream.write_all(b"GET /all/subscribe?from=start HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            stream
        })
        .collect();
    let baseline = rss_bytes(server.pid());

    let pad = "x".repeat(PAD_BYTES);
    for batch in 0..EVENTS / EVENTS_PER_APPEND {
        let events: Vec<Value> = (0..EVENTS_PER_APPEND)
            .map(|i| json!({ "type": "Padded", "data": { "n": batch * EVENTS_PER_APPEND + i, "pad": pad } }))
            .collect();
        let reply = server.post_json("/streams/padded", &Value::Array(events));
        assert_eq!(reply.status, 201, "append {batch} with slow subscribers: {}", reply.text());
    }
    let appended_bytes = (EVENTS * PAD_BYTES) as u64;
    let grown = rss_bytes(server.pid()).saturating_sub(baseline);
    // Buffering everything for each slow subscriber would be 5 × 80 MB.
    let bound = SERVER_GROWTH_BYTES_MAX + SLOW_SUBSCRIBERS as u64 * SUBSCRIBER_BYTES_MAX;
    assert!(bound < appended_bytes * SLOW_SUBSCRIBERS as u64 / 2, "the bound must tell bounded from unbounded");
    eprintln!("resident memory grew by {grown} bytes; bound {bound}");
    assert!(grown < bound, "resident memory grew by {grown} bytes for {appended_bytes} bytes appended");

    // Others are served: a reader gets the end of the stream at once.
    let reply = server.get("/streams/padded?from=end&direction=backward&limit=1");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["events"][0]["revision"], (EVENTS - 1) as u64);
    assert_eq!(server.get("/health").status, 200);
    drop(slow);
}
