//! `stele append`, `read`, `tail`, `export` and `import`: the real binary
//! against real `stele serve` processes over gRPC.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{encode, Server, READ_TIMEOUT};

fn target(server: &Server) -> String {
    format!("kurrentdb://{}?tls=false", server.address())
}

/// What a finished `stele` run left behind.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "stele failed: {self:?}");
        self
    }

    /// stdout as one JSON value per line.
    fn lines(&self) -> Vec<Value> {
        json_lines(&self.stdout)
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect()
}

fn command(server: &Server, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stele"));
    command.args(args).arg("--target").arg(target(server)).env_remove("STELE_TARGET");
    command
}

/// Runs `stele ARGS --target <server>` with `stdin`, waiting for it to end.
fn stele_with_input(server: &Server, args: &[&str], stdin: &str) -> Run {
    let mut child = command(server, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stele");
    let mut pipe = child.stdin.take().expect("piped stdin");
    let input = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let output = child.wait_with_output().expect("wait for stele");
    writer.join().expect("the stdin writer");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

fn stele(server: &Server, args: &[&str]) -> Run {
    stele_with_input(server, args, "")
}

fn revisions(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["revision"].as_u64().expect("a revision")).collect()
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_micros() as u64
}

#[test]
fn append_one_event_and_ndjson_from_stdin_then_read_back() {
    let server = support::start();
    let placed = stele(
        &server,
        &["append", "order-1", "--expected", "no_stream", "--type", "Placed", "--data", r#"{"total": 42}"#],
    );
    assert_eq!(placed.ok().lines(), [json!({"stream": "order-1", "next_expected_revision": 0, "position": 0})]);
    assert!(placed.stdout.starts_with(r#"{"stream":"order-1","next_expected_revision":0,"position":0}"#));

    let id = "6f1c2b7a-1d2e-4f3a-8b9c-0d1e2f3a4b5c";
    let input = format!(
        "{}\n\n{}\n{}\n",
        r#"{"type": "Paid", "data": [1, "two", null], "metadata": {"user": "u1"}}"#,
        format_args!(r#"{{"type": "Shipped", "data": {{"carrier": "post"}}, "id": "{id}"}}"#),
        r#"{"type": "Label", "data_base64": "AAEC/w==", "content_type": "application/pdf"}"#,
    );
    let batch = stele_with_input(&server, &["append", "order-1", "--expected", "0"], &input);
    let batch = batch.ok().lines().remove(0);
    assert_eq!(batch["stream"], "order-1");
    assert_eq!(batch["next_expected_revision"], 3);
    let last_position = batch["position"].as_u64().expect("a position");
    assert!(last_position > 0);
    stele(&server, &["append", "other", "--type", "Noted", "--data", "1", "--metadata", r#"{"m":true}"#]).ok();

    let before = now_us();
    let events = stele(&server, &["read", "order-1"]).ok().lines();
    assert_eq!(revisions(&events), [0, 1, 2, 3]);
    let types: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Placed", "Paid", "Shipped", "Label"]);
    assert_eq!(events[0]["data"], json!({"total": 42}));
    assert_eq!(events[0]["content_type"], "application/json");
    assert!(events[0].get("metadata").is_none(), "no metadata key when there is none: {}", events[0]);
    assert_eq!(events[1]["data"], json!([1, "two", null]));
    assert_eq!(events[1]["metadata"], json!({"user": "u1"}));
    assert_eq!(events[2]["id"], id);
    assert_eq!(events[3]["data_base64"], "AAEC/w==");
    assert_eq!(events[3]["content_type"], "application/pdf");
    assert!(events[3].get("data").is_none());
    assert_eq!(events[3]["position"], last_position);
    for event in &events {
        let recorded = event["recorded_at_us"].as_u64().expect("recorded_at_us");
        // Microseconds, not 100 ns ticks: within the last minute.
        assert!(recorded <= before && recorded > before - 60_000_000, "recorded_at_us {recorded} vs now {before}");
        uuid_of(event);
    }

    // The same shape as the HTTP API, field for field.
    let http = server.get("/streams/order-1").json()["events"].clone();
    assert_eq!(Value::Array(events.clone()), http);
    let all = stele(&server, &["read", "$all"]).ok().lines();
    assert_eq!(Value::Array(all.clone()), server.get("/all").json()["events"]);
    assert_eq!(all.len(), 5);
    assert_eq!(all[4]["stream"], "other");
    assert_eq!(all[4]["metadata"], json!({"m": true}));

    let newest = stele(&server, &["read", "order-1", "--backwards", "--limit", "2"]).ok().lines();
    assert_eq!(revisions(&newest), [3, 2]);
    let middle = stele(&server, &["read", "order-1", "--from", "1", "--limit", "2"]).ok().lines();
    assert_eq!(revisions(&middle), [1, 2]);
    let older = stele(&server, &["read", "order-1", "--backwards", "--from", "1"]).ok().lines();
    assert_eq!(revisions(&older), [1, 0]);
    let none = stele(&server, &["read", "order-1", "--from", "end"]);
    assert_eq!(none.ok().stdout, "");

    let position = all[2]["position"].as_u64().unwrap().to_string();
    let from_position = stele(&server, &["read", "$all", "--from", &position, "--limit", "2"]).ok().lines();
    assert_eq!(from_position, all[2..4]);
    let before_position = stele(&server, &["read", "$all", "--backwards", "--from", &position]).ok().lines();
    assert_eq!(before_position, [all[1].clone(), all[0].clone()], "backwards in $all: the events before the position");
    let last = stele(&server, &["read", "$all", "--backwards", "--limit", "1"]).ok().lines();
    assert_eq!(last, all[4..]);
}

fn uuid_of(event: &Value) -> String {
    let id = event["id"].as_str().expect("an id").to_owned();
    assert_eq!(id.len(), 36, "a hyphenated UUID: {id}");
    id
}

#[test]
fn the_target_comes_from_stele_target_too() {
    let server = support::start();
    let output = Command::new(env!("CARGO_BIN_EXE_stele"))
        .args(["append", "via-env", "--type", "T", "--data", "{}"])
        .env("STELE_TARGET", target(&server))
        .output()
        .expect("run stele");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let events = stele(&server, &["read", "via-env"]).ok().lines();
    assert_eq!(events.len(), 1);
}

#[test]
fn a_wrong_expected_revision_exits_1_naming_expected_and_actual() {
    let server = support::start();
    stele_with_input(&server, &["append", "s"], "{\"type\":\"A\",\"data\":1}\n{\"type\":\"B\",\"data\":2}\n").ok();

    let stale = stele(&server, &["append", "s", "--expected", "0", "--type", "C", "--data", "3"]);
    assert_eq!(stale.code, Some(1), "{stale:?}");
    assert_eq!(stale.stdout, "");
    assert_eq!(stale.stderr.trim(), "error: wrong expected revision for stream 's': expected 0, actual 1");
    let exists = stele(&server, &["append", "s", "--expected", "no_stream", "--type", "C", "--data", "3"]);
    assert_eq!(exists.code, Some(1));
    assert!(exists.stderr.contains("expected no_stream, actual 1"), "{}", exists.stderr);
    let missing = stele(&server, &["append", "nothing", "--expected", "stream_exists", "--type", "C", "--data", "3"]);
    assert_eq!(missing.code, Some(1));
    assert!(missing.stderr.contains("expected stream_exists, actual no_stream"), "{}", missing.stderr);
    // All or nothing: a batch with a stale expectation writes none of its events.
    let batch = stele_with_input(&server, &["append", "s", "--expected", "5"], "{\"type\":\"X\",\"data\":0}\n");
    assert_eq!(batch.code, Some(1));
    assert!(batch.stderr.contains("expected 5, actual 1"), "{}", batch.stderr);
    assert_eq!(revisions(&stele(&server, &["read", "s"]).ok().lines()), [0, 1]);

    let right = stele(&server, &["append", "s", "--expected", "1", "--type", "C", "--data", "3"]);
    assert_eq!(right.ok().lines()[0]["next_expected_revision"], 2);
}

#[test]
fn errors_are_specific_and_exit_1() {
    let server = support::start();
    let missing = stele(&server, &["read", "missing"]);
    assert_eq!((missing.code, missing.stderr.trim()), (Some(1), "error: stream 'missing' not found"));

    let bad_json = stele(&server, &["append", "s", "--type", "T", "--data", "{oops"]);
    assert_eq!(bad_json.code, Some(1));
    assert!(bad_json.stderr.starts_with("error: --data is not JSON"), "{}", bad_json.stderr);

    let bad_line = stele_with_input(&server, &["append", "s"], "{\"type\":\"T\",\"data\":1}\n{\"data\":1}\n");
    assert_eq!(bad_line.code, Some(1));
    assert_eq!(bad_line.stderr.trim(), r#"error: stdin line 2: no "type""#);
    let bad_id = stele_with_input(&server, &["append", "s"], "{\"type\":\"T\",\"data\":1,\"id\":\"nope\"}\n");
    assert!(bad_id.stderr.contains("stdin line 1: \"id\" 'nope' is not a UUID"), "{}", bad_id.stderr);
    let empty = stele_with_input(&server, &["append", "s"], "\n");
    assert_eq!(empty.code, Some(1));
    assert!(empty.stderr.contains("no events on stdin"), "{}", empty.stderr);
    assert_eq!(stele(&server, &["read", "s"]).code, Some(1), "nothing was appended");

    let bad_expected = stele(&server, &["append", "s", "--expected", "sometimes", "--type", "T", "--data", "1"]);
    assert_eq!(bad_expected.code, Some(2), "a usage error");
    assert!(bad_expected.stderr.contains("'sometimes' is not an expected revision"), "{}", bad_expected.stderr);

    let reserved = stele(&server, &["append", "$system", "--type", "T", "--data", "1"]);
    assert_eq!(reserved.code, Some(1));
    assert!(reserved.stderr.contains("$system"), "{}", reserved.stderr);

    let elsewhere = |target: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_stele"))
            .args(["read", "s", "--target", target])
            .output()
            .expect("run stele");
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, stderr) = elsewhere("kurrentdb://127.0.0.1:1?tls=false");
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("error: cannot connect to http://127.0.0.1:1"), "{stderr}");
    let (code, stderr) = elsewhere("kurrentdb://localhost:2113?tls=true");
    assert_eq!((code, stderr.trim()), (Some(1), "error: TLS is not supported yet; use ?tls=false"));
    let (code, stderr) = elsewhere("postgres://localhost");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is not a connection string"), "{stderr}");
}

/// A running `stele tail`, its stdout and stderr lines arriving on channels.
struct Tail {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Tail {
    fn start(server: &Server, args: &[&str]) -> Self {
        let mut child = command(server, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn stele tail");
        let stdout = forward(child.stdout.take().expect("piped stdout"));
        let stderr = forward(child.stderr.take().expect("piped stderr"));
        Self { child, stdout, stderr }
    }

    fn next_event(&self) -> Value {
        let line = self.stdout.recv_timeout(READ_TIMEOUT).expect("stele tail printed no event in time");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
    }

    fn wait_for_stderr(&self, text: &str) {
        loop {
            let line = self.stderr.recv_timeout(READ_TIMEOUT).unwrap_or_else(|_| panic!("no '{text}' from stele tail"));
            if line.contains(text) {
                return;
            }
        }
    }

    fn assert_quiet(&self) {
        if let Ok(line) = self.stdout.recv_timeout(Duration::from_millis(300)) {
            panic!("unexpected event from stele tail: {line}");
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn append_data(server: &Server, stream: &str, n: u64) {
    stele(server, &["append", stream, "--type", "Tick", "--data", &json!({ "n": n }).to_string()]).ok();
}

#[test]
fn tail_prints_events_as_they_arrive() {
    let server = support::start();
    append_data(&server, "ticks", 0);
    append_data(&server, "ticks", 1);

    let tail = Tail::start(&server, &["tail", "ticks", "--from", "start"]);
    assert_eq!(revisions(&[tail.next_event(), tail.next_event()]), [0, 1]);
    tail.wait_for_stderr("caught up");
    append_data(&server, "ticks", 2);
    append_data(&server, "other", 0);
    append_data(&server, "ticks", 3);
    let live = [tail.next_event(), tail.next_event()];
    assert_eq!(revisions(&live), [2, 3]);
    assert_eq!(live[1]["data"], json!({"n": 3}));
    assert_eq!(live[1]["stream"], "ticks");
    tail.assert_quiet();

    // --from N: the events after revision N.
    let after = Tail::start(&server, &["tail", "ticks", "--from", "1"]);
    assert_eq!(revisions(&[after.next_event(), after.next_event()]), [2, 3]);
    after.assert_quiet();

    // $all from the end: only what is appended after it started.
    let all = Tail::start(&server, &["tail", "$all"]);
    all.wait_for_stderr("caught up");
    append_data(&server, "late", 7);
    let event = all.next_event();
    assert_eq!((event["stream"].as_str(), event["revision"].as_u64()), (Some("late"), Some(0)));
    assert_eq!(event["data"], json!({"n": 7}));
    all.assert_quiet();

    // $all after a position: the events after that event.
    let everything = stele(&server, &["read", "$all"]).ok().lines();
    let position = everything[3]["position"].as_u64().unwrap().to_string();
    let resumed = Tail::start(&server, &["tail", "$all", "--from", &position]);
    for expected in &everything[4..] {
        assert_eq!(&resumed.next_event(), expected);
    }
    resumed.assert_quiet();
}

/// The parts of an exported event that an import must keep.
fn essence(event: &Value) -> Value {
    json!({
        "stream": event["stream"], "revision": event["revision"], "id": event["id"], "type": event["type"],
        "content_type": event["content_type"], "data": event["data"], "data_base64": event["data_base64"],
        "metadata": event["metadata"], "metadata_base64": event["metadata_base64"],
    })
}

fn read_file(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Streams of several shapes, a soft delete with a recreated stream, and a tombstone.
fn fill(server: &Server) {
    for n in 0..5 {
        append_data(server, &format!("order-{}", n % 3), n);
    }
    let lines: String = (0..4)
        .map(|n| format!("{{\"type\":\"Batch\",\"data\":{{\"n\": {n}}},\"metadata\":{{\"k\":{n}}}}}\n"))
        .collect();
    stele_with_input(server, &["append", "batch"], &lines).ok();
    stele_with_input(server, &["append", "blob"], "{\"type\":\"Blob\",\"data_base64\":\"AP8=\"}\n").ok();
    assert_eq!(server.delete(&format!("/streams/{}", encode("order-1"))).status, 200);
    append_data(server, "order-1", 99);
    append_data(server, "doomed", 0);
    assert_eq!(server.delete(&format!("/streams/{}?tombstone=true", encode("doomed"))).status, 200);
    append_data(server, "order-2", 100);
}

#[test]
fn export_then_import_into_another_server_keeps_every_event() {
    let source = support::start();
    fill(&source);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exported = dir.path().join("source.ndjson");
    let run = stele(&source, &["export", "--output", exported.to_str().unwrap(), "--page-size", "3"]);
    assert!(run.ok().stderr.contains("exported 15 events"), "{}", run.stderr);
    let original = read_file(&exported);
    let events = json_lines(&original);
    assert_eq!(events.len(), 15);
    assert!(events.iter().any(|e| e["stream"] == "$$order-1" && e["type"] == "$metadata"), "the soft delete");
    assert!(events.iter().any(|e| e["stream"] == "doomed" && e["type"] == "$streamDeleted"), "the tombstone");
    assert_eq!(Value::Array(events.clone()), source.get("/all?limit=100").json()["events"]);
    let to_stdout = stele(&source, &["export"]).ok().stdout.clone();
    assert_eq!(to_stdout, original, "stdout gets the same lines");

    let target = support::start();
    // An interrupted import first: the first 9 lines only.
    let first_part = dir.path().join("part.ndjson");
    let nine: String = original.lines().take(9).map(|l| format!("{l}\n")).collect();
    std::fs::write(&first_part, nine).expect("write the first part");
    stele(&target, &["import", first_part.to_str().unwrap()]).ok();
    // The whole file, twice: what is there already is recognised, not written again.
    for _ in 0..2 {
        let run = stele(&target, &["import", exported.to_str().unwrap()]);
        assert!(run.ok().stdout.starts_with("imported 15 events from"), "{}", run.stdout);
    }

    let again = dir.path().join("target.ndjson");
    stele(&target, &["export", "--output", again.to_str().unwrap()]).ok();
    let copied = json_lines(&read_file(&again));
    assert_eq!(copied.iter().map(essence).collect::<Vec<_>>(), events.iter().map(essence).collect::<Vec<_>>());

    // The target behaves as the source did.
    let order_1 = stele(&target, &["read", "order-1"]).ok().lines();
    assert_eq!(revisions(&order_1), [2], "the soft delete hides the events before it");
    assert_eq!(order_1[0]["data"], json!({"n": 99}));
    let doomed = stele(&target, &["read", "doomed"]);
    assert_eq!((doomed.code, doomed.stderr.trim()), (Some(1), "error: stream 'doomed' is deleted"));
    let blob = stele(&target, &["read", "blob"]).ok().lines();
    assert_eq!(
        (blob[0]["data_base64"].as_str(), blob[0]["content_type"].as_str()),
        (Some("AP8="), Some("application/octet-stream"))
    );
    for (source_event, target_event) in events.iter().zip(&copied) {
        assert_eq!(source_event["position"], target_event["position"], "same order, same sizes: same positions");
    }
}

#[test]
fn import_refuses_a_target_holding_other_events() {
    let source = support::start();
    append_data(&source, "clash", 0);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("clash.ndjson");
    stele(&source, &["export", "-o", file.to_str().unwrap()]).ok();

    let target = support::start();
    append_data(&target, "clash", 0); // another event (another id) at revision 0
    let run = stele(&target, &["import", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("line 1 of") && run.stderr.contains("expected no_stream, actual 0"), "{}", run.stderr);

    let partial = dir.path().join("partial.ndjson");
    std::fs::write(&partial, "{\"id\":\"6f1c2b7a-1d2e-4f3a-8b9c-0d1e2f3a4b5c\",\"stream\":\"x\",\"rev").unwrap();
    let run = stele(&target, &["import", partial.to_str().unwrap()]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("line 1 of") && run.stderr.contains("partial line"), "{}", run.stderr);
    let no_id = dir.path().join("no-id.ndjson");
    std::fs::write(&no_id, "{\"stream\":\"x\",\"revision\":0,\"type\":\"T\",\"data\":1}\n").unwrap();
    let run = stele(&target, &["import", no_id.to_str().unwrap()]);
    assert!(run.stderr.contains("no \"id\""), "{}", run.stderr);
    let run = stele(&target, &["import", dir.path().join("absent").to_str().unwrap()]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("cannot open"), "{}", run.stderr);
}

#[test]
fn an_interrupted_export_resumes_without_duplicates_or_gaps() {
    let server = support::start();
    for n in 0..40 {
        append_data(&server, &format!("s-{}", n % 4), n);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let complete = dir.path().join("complete.ndjson");
    stele(&server, &["export", "-o", complete.to_str().unwrap(), "--page-size", "7"]).ok();
    let reference = read_file(&complete);
    assert_eq!(reference.lines().count(), 40);

    // Cut after 17 lines and half of the 18th, as an interruption would.
    let lines: Vec<&str> = reference.lines().collect();
    let mut cut: String = lines[..17].iter().map(|l| format!("{l}\n")).collect();
    cut.push_str(&lines[17][..lines[17].len() / 2]);
    let resumed = dir.path().join("resumed.ndjson");
    std::fs::write(&resumed, &cut).expect("write the cut file");
    let run = stele(&server, &["export", "-o", resumed.to_str().unwrap(), "--page-size", "5"]);
    assert!(run.ok().stderr.contains("cutting off a partial last line"), "{}", run.stderr);
    let position = json_lines(lines[16])[0]["position"].as_u64().unwrap();
    assert!(
        run.stderr.contains(&format!("resuming {} after position {position}", resumed.display())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("exported 23 new events"), "{}", run.stderr);
    assert_eq!(read_file(&resumed), reference, "the resumed file is the complete export, byte for byte");

    // Only a partial first line: start over.
    std::fs::write(&resumed, &lines[0][..10]).unwrap();
    stele(&server, &["export", "-o", resumed.to_str().unwrap()]).ok();
    assert_eq!(read_file(&resumed), reference);

    // Complete already: new events are added after the old ones.
    let run = stele(&server, &["export", "-o", resumed.to_str().unwrap()]);
    assert!(run.ok().stderr.contains("exported 0 new events"), "{}", run.stderr);
    for n in 40..43 {
        append_data(&server, "s-late", n);
    }
    stele(&server, &["export", "-o", resumed.to_str().unwrap(), "--from", "0"]).ok();
    let grown = json_lines(&read_file(&resumed));
    let fresh = stele(&server, &["export"]).ok().lines();
    assert_eq!(grown, fresh);
    assert_eq!(grown.len(), 43);
    let mut ids: Vec<String> = grown.iter().map(uuid_of).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 43, "no event twice");

    // --from starts at an event's position, inclusive.
    let at = grown[10]["position"].as_u64().unwrap().to_string();
    assert_eq!(stele(&server, &["export", "--from", &at]).ok().lines(), grown[10..]);
    let bad = stele(&server, &["export", "--from", &(grown[10]["position"].as_u64().unwrap() + 1).to_string()]);
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("not the position of an event"), "{}", bad.stderr);

    // A file that is not an export is left alone.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "hello\n").unwrap();
    let run = stele(&server, &["export", "-o", other.to_str().unwrap()]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("its last line is not an exported event"), "{}", run.stderr);
    assert_eq!(read_file(&other), "hello\n");
}
