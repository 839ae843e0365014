//! SIGKILL of a real `stele serve` while several network clients append to
//! it over HTTP with conflicting expectations; after each kill the shared
//! history checker compares what clients were told with what the store
//! holds (`support/history.rs`), and `stele verify` must find it clean.
//!
//! `STELE_CRASH_CYCLES=50 cargo test -p stele-cli --test server_crash` soaks.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use steledb::Uuid;
use support::history::{check_directory, fnv1a_64, Append, Expected, History, Outcome, Part, PartAck, SentEvent};

const CLIENTS: usize = 4;
const STREAMS: [&str; 3] = ["account-a", "account-b", "account-c"];
/// How long a request may take before the client counts it as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn cycles() -> u64 {
    std::env::var("STELE_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(4)
}

fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The reply to one HTTP request, or `None` when there was none (the
/// connection failed or was cut: the outcome is unknown).
fn post(address: SocketAddr, path: &str, body: &str) -> Option<(u16, serde_json::Value)> {
    let mut stream = TcpStream::connect_timeout(&address, REQUEST_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).ok()?;
    let text = String::from_utf8(reply).ok()?;
    let status: u16 = text.get(9..12)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// One client: appends 1–3 events to a shared stream expecting the revision
/// it last saw, learning the actual one from refusals, until `stop`.
fn client(address: SocketAddr, id: usize, cycle: u64, stop: &AtomicBool, history: &Mutex<History>) {
    let mut random = (cycle + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (id as u64 + 1) | 1;
    let mut seen: [Option<u64>; 3] = [None; 3];
    let mut attempt = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let which = (next_random(&mut random) % STREAMS.len() as u64) as usize;
        let stream = STREAMS[which];
        let count = 1 + next_random(&mut random) % 3;
        let expected = match seen[which] {
            None => Expected::NoStream,
            Some(revision) => Expected::Exact(revision),
        };
        let mut events = Vec::new();
        let mut bodies = Vec::new();
        for n in 0..count {
            let event_id = Uuid::new_v4();
            let data = format!("{{\"client\":{id},\"cycle\":{cycle},\"attempt\":{attempt},\"n\":{n}}}");
            events.push(SentEvent { id: event_id, data_hash: fnv1a_64(data.as_bytes()) });
            bodies.push(format!("{{\"id\":\"{event_id}\",\"type\":\"Deposited\",\"data\":{data}}}"));
        }
        let expected_text = match expected {
            Expected::NoStream => "no_stream".to_owned(),
            Expected::Exact(n) => n.to_string(),
            Expected::Any | Expected::StreamExists => unreachable!("only these two are sent"),
        };
        let body = format!("[{}]", bodies.join(","));
        let reply = post(address, &format!("/streams/{stream}?expected={expected_text}"), &body);
        let outcome = match &reply {
            Some((201, ack)) => {
                let field = |name: &str| ack[name].as_u64().expect("acknowledgements carry revisions and positions");
                let ack = PartAck {
                    first_revision: field("first_revision"),
                    last_revision: field("last_revision"),
                    first_position: field("first_position"),
                    last_position: field("last_position"),
                };
                seen[which] = Some(ack.last_revision);
                Outcome::Acknowledged(vec![ack])
            }
            Some((409, refusal)) => {
                seen[which] = refusal["error"]["actual"].as_u64();
                Outcome::Rejected { kind: refusal["error"]["code"].as_str().unwrap_or("?").to_owned() }
            }
            Some((status, other)) => panic!("client {id}: unexpected reply {status}: {other}"),
            None => Outcome::Unknown,
        };
        let part = Part { stream: stream.to_owned(), expected, events };
        let name = format!("c{cycle}-client{id}-{attempt}");
        history.lock().unwrap().push(Append { name, parts: vec![part], outcome });
        attempt += 1;
        if reply.is_none() {
            return; // the server is gone
        }
    }
}

#[test]
fn sigkill_of_the_server_under_conflicting_network_load_loses_no_acknowledged_append() {
    let history = Mutex::new(History::default());
    let mut seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("server crash test seed {seed}");
    let mut server = support::start();
    let mut totals = (0usize, 0usize);
    for cycle in 0..cycles() {
        let address = server.address();
        let stop = Arc::new(AtomicBool::new(false));
        let kill_after = Duration::from_millis(150 + next_random(&mut seed) % 450);
        std::thread::scope(|scope| {
            for id in 0..CLIENTS {
                let (stop, history) = (&stop, &history);
                scope.spawn(move || client(address, id, cycle, stop, history));
            }
            std::thread::sleep(kill_after);
            server.kill();
            stop.store(true, Ordering::Relaxed);
        });
        let summary = check_directory(&history.lock().unwrap(), &server.data_dir(), &format!("after kill {cycle}"));
        totals = (summary.acknowledged, summary.rejected);
        server = support::restart(server);
    }
    eprintln!("acknowledged {} rejected {} over {} kills", totals.0, totals.1, cycles());
    // The load did conflict and did succeed: the checks above had work to do.
    assert!(totals.0 > 10, "too few acknowledged appends: {totals:?}");
    assert!(totals.1 > 0, "no conflicting append was refused: {totals:?}");
}
