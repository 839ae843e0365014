//! The HTTP/JSON API of a real `stele serve` process, over real sockets,
//! with a minimal HTTP/1.1 client (tests/support) that can also send
//! malformed bytes and read Server-Sent Events.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{encode, metric, Server};

fn append(server: &Server, stream: &str, body: Value) -> Value {
    let reply = server.post_json(&format!("/streams/{}", encode(stream)), &body);
    assert_eq!(reply.status, 201, "append to {stream}: {}", reply.text());
    reply.json()
}

fn events_of(reply: &support::Response) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json()["events"].as_array().expect("an events array").clone()
}

fn read(server: &Server, path: &str) -> Vec<Value> {
    events_of(&server.get(path))
}

fn numbers(events: &[Value], field: &str) -> Vec<u64> {
    events.iter().map(|e| e[field].as_u64().unwrap_or_else(|| panic!("{field} in {e}"))).collect()
}

fn typed(kind: &str, n: u64) -> Value {
    json!({ "type": kind, "data": { "n": n } })
}

#[test]
fn append_single_and_array_and_read_back() {
    let server = support::start();
    let first = append(&server, "order-1", json!({ "type": "Placed", "data": { "total": 42 } }));
    assert_eq!(
        first,
        json!({"first_revision": 0, "last_revision": 0, "first_position": 0, "last_position": 0, "duplicate": false})
    );

    let ids = ["0b9a3b5e-3f5c-4a59-9b1e-5f1f3e1e2c3d", "6f1c2b7a-1d2e-4f3a-8b9c-0d1e2f3a4b5c"];
    let reply = append(
        &server,
        "order-1",
        json!([
            { "id": ids[0], "type": "Paid", "data": [1, "two", null], "metadata": { "user": "u1" } },
            { "id": ids[1], "type": "Shipped", "data_base64": "AAEC/w==" },
        ]),
    );
    assert_eq!(reply["first_revision"], 1);
    assert_eq!(reply["last_revision"], 2);
    assert!(reply["first_position"].as_u64().unwrap() > 0);
    assert!(reply["last_position"].as_u64().unwrap() > reply["first_position"].as_u64().unwrap());
    assert_eq!(reply["duplicate"], false);

    let events = read(&server, "/streams/order-1");
    assert_eq!(numbers(&events, "revision"), [0, 1, 2]);
    assert_eq!(events[0]["type"], "Placed");
    assert_eq!(events[0]["stream"], "order-1");
    assert_eq!(events[0]["content_type"], "application/json");
    assert_eq!(events[0]["data"], json!({ "total": 42 }));
    assert!(events[0].get("metadata").is_none(), "no metadata was given: {}", events[0]);
    assert!(events[0]["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok(), "a generated id");
    assert_eq!(events[1]["id"], ids[0]);
    assert_eq!(events[1]["data"], json!([1, "two", null]));
    assert_eq!(events[1]["metadata"], json!({ "user": "u1" }));
    assert_eq!(events[2]["id"], ids[1]);
    assert_eq!(events[2]["content_type"], "application/octet-stream");
    assert_eq!(events[2]["data_base64"], "AAEC/w==");
    assert!(events[2].get("data").is_none());
    assert_eq!(
        numbers(&events, "position")[1..],
        [reply["first_position"].as_u64().unwrap(), reply["last_position"].as_u64().unwrap()]
    );
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    for event in &events {
        let recorded = event["recorded_at_us"].as_u64().unwrap();
        assert!(recorded <= now_us && recorded > now_us - 600_000_000, "recorded_at_us is recent: {event}");
    }
}

#[test]
fn json_data_comes_back_byte_for_byte() {
    let server = support::start();
    // Key order, spacing and a number no f64 can hold must survive.
    let data = r#"{"z": 1, "a": 12345678901234567890123, "s": "é\n\"q\""}"#;
    let body = format!(r#"{{"type": "Exact", "data": {data}, "metadata": [ 3 , 2 ]}}"#);
    let reply = server.request("POST", "/streams/exact", &[("content-type", "application/json")], body.as_bytes());
    assert_eq!(reply.status, 201, "{}", reply.text());
    let raw = server.get("/streams/exact").text();
    assert!(raw.contains(&format!(r#""data":{data}"#)), "data is spliced verbatim: {raw}");
    assert!(raw.contains(r#""metadata":[ 3 , 2 ]"#), "metadata too: {raw}");
    // A text content type is kept, and its bytes come back as base64.
    let reply = server
        .post_json("/streams/exact", &json!({"type": "Note", "content_type": "text/plain", "data_base64": "aGk="}));
    assert_eq!(reply.status, 201);
    let events = read(&server, "/streams/exact?from=1");
    assert_eq!(events[0]["content_type"], "text/plain");
    assert_eq!(events[0]["data_base64"], "aGk=");
}

#[test]
fn expected_revision_options() {
    let server = support::start();
    let post = |query: &str, headers: &[(&str, &str)]| {
        let body = serde_json::to_vec(&typed("E", 0)).unwrap();
        server.request("POST", &format!("/streams/s{query}"), headers, &body)
    };
    // stream_exists on a missing stream: 409 with both sides.
    let reply = post("?expected=stream_exists", &[]);
    assert_eq!(reply.status, 409);
    assert_eq!(reply.error_code(), "wrong_expected_revision");
    let error = &reply.json()["error"];
    assert_eq!(error["stream"], "s");
    assert_eq!(error["expected"], "stream_exists");
    assert_eq!(error["actual"], "no_stream");
    assert!(error["message"].as_str().unwrap().contains("wrong expected revision"));

    assert_eq!(post("?expected=no_stream", &[]).status, 201);
    let reply = post("?expected=no_stream", &[]);
    assert_eq!(reply.status, 409);
    assert_eq!(reply.json()["error"]["expected"], "no_stream");
    assert_eq!(reply.json()["error"]["actual"], 0);

    assert_eq!(post("?expected=stream_exists", &[]).status, 201);
    assert_eq!(post("?expected=1", &[]).status, 201);
    let reply = post("?expected=7", &[]);
    assert_eq!(reply.status, 409);
    assert_eq!(reply.json()["error"]["expected"], 7);
    assert_eq!(reply.json()["error"]["actual"], 2);
    assert_eq!(post("?expected=any", &[]).status, 201);
    assert_eq!(post("", &[]).status, 201, "any by default");

    // The header works alike, and must agree with the query when both are given.
    assert_eq!(post("", &[("Stele-Expected-Revision", "9")]).status, 409);
    assert_eq!(post("", &[("Stele-Expected-Revision", "4")]).status, 201);
    let reply = post("?expected=5", &[("Stele-Expected-Revision", "6")]);
    assert_eq!((reply.status, reply.error_code()), (400, "invalid_parameter".to_owned()));
    for bad in ["-1", "soon", "1.5"] {
        let reply = post(&format!("?expected={bad}"), &[]);
        assert_eq!((reply.status, reply.error_code()), (400, "invalid_parameter".to_owned()), "expected={bad}");
    }
    // Exactly the acknowledged appends are there.
    assert_eq!(numbers(&read(&server, "/streams/s"), "revision"), [0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_retry_with_the_same_ids_is_idempotent() {
    let server = support::start();
    let body = json!([
        { "id": "11111111-1111-4111-8111-111111111111", "type": "A", "data": 1 },
        { "id": "22222222-2222-4222-8222-222222222222", "type": "B", "data": 2 },
    ]);
    let first = server.post_json("/streams/idem?expected=no_stream", &body);
    assert_eq!(first.status, 201);
    let retry = server.post_json("/streams/idem?expected=no_stream", &body);
    assert_eq!(retry.status, 200, "a retry is 200, not 201: {}", retry.text());
    let (first, retry) = (first.json(), retry.json());
    assert_eq!(retry["duplicate"], true);
    for field in ["first_revision", "last_revision", "first_position", "last_position"] {
        assert_eq!(first[field], retry[field], "{field}");
    }
    let retry_any = server.post_json("/streams/idem", &body);
    assert_eq!((retry_any.status, retry_any.json()["duplicate"].clone()), (200, json!(true)));
    assert_eq!(read(&server, "/streams/idem").len(), 2, "nothing was written twice");
    let metrics = server.get("/metrics").text();
    assert_eq!(metric(&metrics, "stele_appends_total"), Some(1.0), "duplicates are not counted as appends");
}

#[test]
fn stream_reads_forward_backward_limits_and_from() {
    let server = support::start();
    let batch: Vec<Value> = (0..10).map(|n| typed("E", n)).collect();
    append(&server, "r", Value::Array(batch));
    let revisions = |path: &str| numbers(&read(&server, path), "revision");
    assert_eq!(revisions("/streams/r"), (0..10).collect::<Vec<_>>());
    assert_eq!(revisions("/streams/r?limit=3"), [0, 1, 2]);
    assert_eq!(revisions("/streams/r?from=4&limit=3"), [4, 5, 6]);
    assert_eq!(revisions("/streams/r?from=start&limit=2&direction=forward"), [0, 1]);
    assert_eq!(revisions("/streams/r?direction=backward"), (0..10).rev().collect::<Vec<_>>());
    assert_eq!(revisions("/streams/r?direction=backward&from=5&limit=2"), [5, 4]);
    assert_eq!(revisions("/streams/r?direction=backward&from=end&limit=1"), [9]);
    assert_eq!(revisions("/streams/r?from=end"), Vec::<u64>::new());
    assert_eq!(revisions("/streams/r?from=100"), Vec::<u64>::new());
    assert_eq!(revisions("/streams/r?limit=0"), Vec::<u64>::new());
    let data: Vec<u64> = read(&server, "/streams/r?from=7").iter().map(|e| e["data"]["n"].as_u64().unwrap()).collect();
    assert_eq!(data, [7, 8, 9]);

    // Limits are capped at 1000 events per reply.
    let many: Vec<Value> = (0..1_100).map(|n| typed("M", n)).collect();
    append(&server, "many", Value::Array(many));
    assert_eq!(read(&server, "/streams/many").len(), 100, "the default limit");
    let capped = read(&server, "/streams/many?limit=5000");
    assert_eq!(numbers(&capped, "revision"), (0..1_000).collect::<Vec<_>>());

    for bad in ["direction=sideways", "limit=-1", "limit=x", "from=-3", "from=", "colour=red", "limit=1&limit=2"] {
        let reply = server.get(&format!("/streams/r?{bad}"));
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, "invalid_parameter".to_owned()),
            "{bad}: {}",
            reply.text()
        );
    }
    let metrics = server.get("/metrics").text();
    assert!(metric(&metrics, "stele_reads_total").unwrap() >= 13.0, "reads are counted:\n{metrics}");
}

#[test]
fn missing_deleted_and_tombstoned_streams() {
    let server = support::start();
    let reply = server.get("/streams/nobody");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_code(), "stream_not_found");
    assert_eq!(reply.json()["error"]["stream"], "nobody");
    assert_eq!(server.get("/streams/nobody?limit=0").status, 404, "even for limit=0");

    append(&server, "soft", json!([typed("E", 0), typed("E", 1), typed("E", 2)]));
    let reply = server.delete("/streams/soft?expected=0");
    assert_eq!(reply.status, 409);
    assert_eq!(reply.json()["error"]["actual"], 2);
    let reply = server.delete("/streams/soft?expected=2");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let position = reply.json()["position"].as_u64().expect("a position");
    assert!(position > 0);
    assert_eq!(server.get("/streams/soft").error_code(), "stream_not_found", "soft-deleted reads as missing");
    // Appending again recreates it, revisions continuing.
    let reply = append(&server, "soft", typed("E", 3));
    assert_eq!(reply["first_revision"], 3);
    assert_eq!(numbers(&read(&server, "/streams/soft"), "revision"), [3]);
    let mut subscription = server.subscribe("/streams/soft/subscribe").expect("subscribed");
    let seen = subscription.until("caught_up");
    assert_eq!(seen.len(), 2, "deleted events are not delivered: {seen:?}");
    assert_eq!(seen[0].id.as_deref(), Some("3"));

    append(&server, "gone", typed("E", 0));
    let reply = server.delete("/streams/gone?tombstone=true");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = server.get("/streams/gone");
    assert_eq!((reply.status, reply.error_code()), (410, "stream_deleted".to_owned()));
    assert_eq!(reply.json()["error"]["stream"], "gone");
    let reply = server.post_json("/streams/gone", &typed("E", 1));
    assert_eq!((reply.status, reply.error_code()), (410, "stream_deleted".to_owned()));
    let reply = server.delete("/streams/gone");
    assert_eq!((reply.status, reply.error_code()), (410, "stream_deleted".to_owned()));
    let reply = server.subscribe("/streams/gone/subscribe").err().expect("refused");
    assert_eq!((reply.status, reply.error_code()), (410, "stream_deleted".to_owned()));
    let reply = server.delete("/streams/soft?tombstone=maybe");
    assert_eq!((reply.status, reply.error_code()), (400, "invalid_parameter".to_owned()));
}

#[test]
fn all_reads_filters_and_paging() {
    let server = support::start();
    append(&server, "order-1", json!([typed("OrderPlaced", 0), typed("OrderPaid", 1)]));
    append(&server, "user-1", json!([typed("UserJoined", 2)]));
    append(&server, "order-2", json!([typed("OrderPlaced", 3)]));
    append(&server, "user-2", json!([typed("UserLeft", 4)]));

    let reply = server.get("/all");
    let body = reply.json();
    let everything = events_of(&reply);
    assert_eq!(everything.len(), 5);
    assert_eq!(body["is_end"], true);
    let positions = numbers(&everything, "position");
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions increase: {positions:?}");
    let end = server.get("/health").json()["end_position"].as_u64().unwrap();
    assert_eq!(body["next_position"], end);

    let streams = |path: &str| -> Vec<String> {
        read(&server, path).iter().map(|e| e["stream"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(streams("/all?stream_prefix=order-"), ["order-1", "order-1", "order-2"]);
    assert_eq!(streams("/all?stream_prefix=user-2&stream_prefix=order-2"), ["order-2", "user-2"]);
    assert_eq!(streams("/all?type_prefix=User"), ["user-1", "user-2"]);
    assert_eq!(streams("/all?stream_regex=%5Euser-%5Cd%24"), ["user-1", "user-2"]);
    assert_eq!(streams("/all?type_regex=Placed%24"), ["order-1", "order-2"]);
    assert_eq!(streams("/all?direction=backward&limit=2"), ["user-2", "order-2"]);

    // Paging by next_position gives exactly what one read gives.
    let mut paged = Vec::new();
    let mut from = "start".to_owned();
    for _ in 0..10 {
        let page = server.get(&format!("/all?limit=2&from={from}")).json();
        paged.extend(page["events"].as_array().unwrap().iter().cloned());
        if page["is_end"] == true {
            break;
        }
        from = page["next_position"].to_string();
    }
    assert_eq!(paged, everything);
    // Backwards too, from the end.
    let mut paged = Vec::new();
    let mut from = "end".to_owned();
    for _ in 0..10 {
        let page = server.get(&format!("/all?limit=2&direction=backward&from={from}")).json();
        paged.extend(page["events"].as_array().unwrap().iter().cloned());
        if page["is_end"] == true {
            break;
        }
        from = page["next_position"].to_string();
    }
    paged.reverse();
    assert_eq!(paged, everything);
    // A filtered page continues past what it skipped.
    let page = server.get("/all?type_prefix=User&limit=1").json();
    assert_eq!(page["events"][0]["stream"], "user-1");
    let next = page["next_position"].as_u64().unwrap();
    let rest = read(&server, &format!("/all?type_prefix=User&from={next}"));
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["stream"], "user-2");
    // from=<position> starts at that event.
    assert_eq!(read(&server, &format!("/all?from={}", positions[2]))[0]["stream"], "user-1");

    for (query, code) in [
        ("stream_prefix=a&type_prefix=b", "invalid_filter"),
        ("stream_regex=%28unclosed", "invalid_filter"),
        ("from=1", "invalid_position"),
        ("from=99999999", "invalid_position"),
        ("from=nowhere", "invalid_parameter"),
        ("filter=x", "invalid_parameter"),
    ] {
        let reply = server.get(&format!("/all?{query}"));
        assert_eq!((reply.status, reply.error_code()), (400, code.to_owned()), "{query}: {}", reply.text());
    }
}

#[test]
fn stream_subscription_catches_up_then_follows_live() {
    let server = support::start();
    append(&server, "live", json!([typed("E", 0), typed("E", 1), typed("E", 2)]));
    let mut subscription = server.subscribe("/streams/live/subscribe?from=start").expect("subscribed");
    let caught_up = subscription.until("caught_up");
    let (events, marker) = caught_up.split_at(caught_up.len() - 1);
    assert_eq!(events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["event"; 3]);
    assert_eq!(events.iter().map(|e| e.id.clone().unwrap()).collect::<Vec<_>>(), ["0", "1", "2"]);
    assert_eq!(numbers(&events.iter().map(|e| e.json()).collect::<Vec<_>>(), "revision"), [0, 1, 2]);
    assert!(marker[0].json()["position"].is_u64());

    // Live: appended while subscribed, in order, without gaps or repeats
    // (the sentinel must be the very next event after them).
    append(&server, "live", json!([typed("E", 3), typed("E", 4)]));
    append(&server, "other", typed("Noise", 0));
    append(&server, "live", json!({ "type": "Sentinel", "data": {} }));
    let live: Vec<Value> = (0..3)
        .map(|_| subscription.next())
        .map(|e| {
            assert_eq!(e.event, "event");
            let json = e.json();
            assert_eq!(e.id.as_deref(), Some(json["revision"].to_string().as_str()), "the SSE id is the revision");
            json
        })
        .collect();
    assert_eq!(numbers(&live, "revision"), [3, 4, 5]);
    assert_eq!(live[1]["data"], json!({ "n": 4 }));
    assert_eq!(live[2]["type"], "Sentinel");

    // Start points are inclusive; from=end waits for what comes next.
    let mut from_one = server.subscribe("/streams/live/subscribe?from=1").expect("subscribed");
    assert_eq!(from_one.next().id.as_deref(), Some("1"));
    let mut from_end = server.subscribe("/streams/live/subscribe?from=end").expect("subscribed");
    assert_eq!(from_end.next().event, "caught_up");
    append(&server, "live", typed("E", 6));
    assert_eq!(from_end.next().json()["revision"], 6);

    // A subscription to a stream that does not exist yet sees it appear.
    let mut future = server.subscribe("/streams/later/subscribe").expect("subscribed");
    assert_eq!(future.next().event, "caught_up");
    append(&server, "later", typed("E", 0));
    let first = future.next();
    assert_eq!((first.event.as_str(), first.json()["stream"].clone()), ("event", json!("later")));

    // A tombstone ends the subscription with an error event.
    assert_eq!(server.delete("/streams/later?tombstone=true").status, 200);
    let error = future.next();
    assert_eq!(error.event, "error");
    assert_eq!(error.json()["error"]["code"], "stream_deleted");
    assert_eq!(future.next_or_end(), None, "the response ends after an error");

    let metrics = server.get("/metrics").text();
    assert!(metric(&metrics, "stele_subscriptions_total").unwrap() >= 4.0, "{metrics}");
}

#[test]
fn all_subscription_with_a_filter() {
    let server = support::start();
    append(&server, "a-1", typed("A", 0));
    append(&server, "b-1", json!([typed("B", 0), typed("B", 1)]));
    append(&server, "a-2", typed("A", 1));
    append(&server, "b-2", typed("B", 2));

    let mut subscription = server.subscribe("/all/subscribe?stream_prefix=a-").expect("subscribed");
    let until_caught_up = subscription.until("caught_up");
    let events: Vec<_> = until_caught_up.iter().filter(|e| e.event == "event").collect();
    assert_eq!(
        events.iter().map(|e| e.json()["stream"].as_str().unwrap().to_owned()).collect::<Vec<_>>(),
        ["a-1", "a-2"]
    );
    for event in &events {
        assert_eq!(
            event.id.as_deref(),
            Some(event.json()["position"].to_string().as_str()),
            "the SSE id is the position"
        );
    }
    let checkpoints: Vec<u64> = until_caught_up
        .iter()
        .filter(|e| e.event == "checkpoint")
        .map(|e| e.json()["position"].as_u64().unwrap())
        .collect();
    let end = server.get("/health").json()["end_position"].as_u64().unwrap();
    assert_eq!(checkpoints.last(), Some(&end), "the scan past b-2 is reported: {until_caught_up:?}");
    assert!(until_caught_up.iter().all(|e| ["event", "checkpoint", "caught_up"].contains(&e.event.as_str())));

    // Live: only matching events, in order.
    append(&server, "b-3", typed("B", 3));
    append(&server, "a-3", typed("A", 2));
    append(&server, "a-1", json!({ "type": "Sentinel", "data": null }));
    let mut live = Vec::new();
    while live.len() < 2 {
        let event = subscription.next();
        match event.event.as_str() {
            "event" => live.push(event.json()),
            "checkpoint" => assert!(event.json()["position"].as_u64().unwrap() > end),
            other => panic!("unexpected {other}: {event:?}"),
        }
    }
    assert_eq!(live[0]["stream"], "a-3");
    assert_eq!((live[1]["stream"].clone(), live[1]["type"].clone()), (json!("a-1"), json!("Sentinel")));
    assert_eq!(live[1]["data"], Value::Null);

    // Unfiltered, from a position: inclusive, and no checkpoints.
    let all = read(&server, "/all");
    let from = all[3]["position"].as_u64().unwrap();
    let mut subscription = server.subscribe(&format!("/all/subscribe?from={from}")).expect("subscribed");
    let seen = subscription.until("caught_up");
    let positions: Vec<u64> =
        seen.iter().filter(|e| e.event == "event").map(|e| e.json()["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, numbers(&all[3..], "position"));
    assert!(seen.iter().all(|e| e.event != "checkpoint"));

    let reply = server.subscribe("/all/subscribe?from=3").err().expect("refused");
    assert_eq!((reply.status, reply.error_code()), (400, "invalid_position".to_owned()));
}

#[test]
fn stream_metadata_get_and_put() {
    let server = support::start();
    let put =
        |path: &str, body: &str| server.request("PUT", path, &[("content-type", "application/json")], body.as_bytes());
    let nothing = server.get("/streams/capped/metadata");
    assert_eq!(nothing.status, 200, "{}", nothing.text());
    assert_eq!(nothing.json(), json!({ "revision": null, "metadata": {} }));

    let set = put("/streams/capped/metadata?expected=no_stream", r#"{"$maxCount": 2, "owner": "ops"}"#);
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(set.json()["revision"], 0);
    append(&server, "capped", json!((0..5).map(|n| typed("E", n)).collect::<Vec<_>>()));
    assert_eq!(numbers(&read(&server, "/streams/capped"), "revision"), vec![3, 4]);
    let got = server.get("/streams/capped/metadata").json();
    assert_eq!(got, json!({ "revision": 0, "metadata": { "$maxCount": 2, "owner": "ops" } }));

    let stale = put("/streams/capped/metadata?expected=5", r#"{"$tb": 4}"#);
    assert_eq!((stale.status, stale.error_code()), (409, "wrong_expected_revision".to_owned()), "{}", stale.text());
    for bad in [r#"{"$maxCount": 0}"#, r#"{"$maxAge": "soon"}"#, "[1]", "not json"] {
        let reply = put("/streams/capped/metadata", bad);
        assert_eq!((reply.status, reply.error_code()), (400, "invalid_metadata".to_owned()), "{bad}: {}", reply.text());
    }
    let truncate = put("/streams/capped/metadata?expected=0", r#"{"$tb": 4}"#);
    assert_eq!(truncate.json()["revision"], 1, "{}", truncate.text());
    assert_eq!(numbers(&read(&server, "/streams/capped"), "revision"), vec![4]);
    let reply = server.get("/streams/%ff/metadata");
    assert_eq!((reply.status, reply.error_code()), (400, "invalid_stream_name".to_owned()), "{}", reply.text());
}

/// A browser's `EventSource` reconnects with the same URL and the id of
/// the last event it got in `Last-Event-ID`: the subscription resumes
/// after that event, whatever `from` says.
#[test]
fn a_reconnect_with_last_event_id_resumes_after_that_event() {
    let server = support::start();
    append(&server, "resume", json!((0..5).map(|n| typed("E", n)).collect::<Vec<_>>()));
    let event_ids = |seen: &[support::SseEvent]| -> Vec<u64> {
        seen.iter().filter(|e| e.event == "event").map(|e| e.id.as_deref().unwrap().parse().unwrap()).collect()
    };

    let mut first = server.subscribe("/streams/resume/subscribe?from=start").expect("subscribed");
    let received: Vec<_> = (0..3).map(|_| first.next()).collect();
    let last_id = received[2].id.clone().expect("events carry ids");
    assert_eq!(last_id, "2");
    drop(first);
    let mut again = server
        .subscribe_with("/streams/resume/subscribe?from=start", &[("Last-Event-ID", &last_id)])
        .expect("resubscribed");
    assert_eq!(event_ids(&again.until("caught_up")), vec![3, 4]);

    // `$all`: ids are positions.
    let all = read(&server, "/all");
    let positions = numbers(&all, "position");
    let after = positions[1].to_string();
    let mut resumed = server.subscribe_with("/all/subscribe", &[("Last-Event-ID", &after)]).expect("resubscribed");
    assert_eq!(event_ids(&resumed.until("caught_up")), positions[2..]);
    let last = positions.last().unwrap().to_string();
    let mut at_end = server.subscribe_with("/all/subscribe", &[("Last-Event-ID", &last)]).expect("resubscribed");
    assert_eq!(event_ids(&at_end.until("caught_up")), Vec::<u64>::new());
    // An empty id means "none yet": from the start.
    let mut empty = server.subscribe_with("/all/subscribe", &[("Last-Event-ID", "")]).expect("subscribed");
    assert_eq!(event_ids(&empty.until("caught_up")), positions);

    for bad in ["soon", "é"] {
        let reply = server.subscribe_with("/all/subscribe", &[("Last-Event-ID", bad)]).err().expect("refused");
        assert_eq!((reply.status, reply.error_code()), (400, "invalid_parameter".to_owned()), "{}", reply.text());
    }
    let inside = (positions[1] + 3).to_string();
    let reply = server.subscribe_with("/all/subscribe", &[("Last-Event-ID", &inside)]).err().expect("refused");
    assert_eq!((reply.status, reply.error_code()), (400, "invalid_position".to_owned()), "{}", reply.text());
}

#[test]
fn bad_input_is_a_json_400_and_the_server_carries_on() {
    let server = support::start();
    for body in [&b"{\"type\": \"E\", \"data\": "[..], b"not json", b"", b"\xff\xfe", b"[]", b"42", b"[{\"data\": 1}]"]
    {
        let reply = server.request("POST", "/streams/bad", &[("content-type", "application/json")], body);
        assert_eq!(reply.status, 400, "{:?}: {}", String::from_utf8_lossy(body), reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let code = reply.error_code();
        assert!(["invalid_json", "empty_append", "invalid_event"].contains(&code.as_str()), "{code}");
        assert!(!reply.json()["error"]["message"].as_str().unwrap().is_empty());
    }
    let reply = server.request("POST", "/streams/bad", &[], b"{\"type\": \"E\", \"data\": 1, \"dta\": 2}");
    assert_eq!(reply.error_code(), "invalid_event");
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains("dta"), "the unknown field is named");
    let reply =
        server.post_json("/streams/bad", &json!([typed("E", 0), { "type": "E", "data": 1, "data_base64": "AA==" }]));
    assert_eq!((reply.status, reply.json()["error"]["index"].clone()), (400, json!(1)), "the bad event is named");
    let reply = server.post_json("/streams/bad", &json!({ "type": "E", "data_base64": "not base64!" }));
    assert_eq!(reply.error_code(), "invalid_base64");
    let reply = server.post_json("/streams/bad", &json!({ "type": "", "data": 1 }));
    assert_eq!(reply.error_code(), "invalid_event_type");

    // Malformed HTTP is refused without harm.
    let reply = server.send_raw(b"THIS IS NOT HTTP\r\n\r\n");
    assert_eq!(reply.status, 400);
    assert_eq!(server.get("/health").status, 200, "the server still serves");
    assert_eq!(server.get("/streams/bad").error_code(), "stream_not_found", "nothing was written");

    let reply = server.get("/no/such/route");
    assert_eq!((reply.status, reply.error_code()), (404, "route_not_found".to_owned()));
    let reply = server.request("PUT", "/streams/x", &[], b"{}");
    assert_eq!((reply.status, reply.error_code()), (405, "method_not_allowed".to_owned()));
}

#[test]
fn invalid_stream_names_and_ids() {
    let server = support::start();
    let long = "x".repeat(600);
    for path in ["/streams/%24system", "/streams/%01ctl", &format!("/streams/{long}"), "/streams/%FF%FE"] {
        let reply = server.post_json(path, &typed("E", 0));
        assert_eq!(
            (reply.status, reply.error_code()),
            (400, "invalid_stream_name".to_owned()),
            "{path}: {}",
            reply.text()
        );
    }
    for path in ["/streams/%01ctl", &format!("/streams/{long}"), "/streams/%FF"] {
        let reply = server.get(path);
        assert_eq!((reply.status, reply.error_code()), (400, "invalid_stream_name".to_owned()), "{path}");
    }
    // A name with a slash or spaces is fine when encoded.
    append(&server, "tenant/a b", typed("E", 0));
    assert_eq!(read(&server, "/streams/tenant%2Fa%20b")[0]["stream"], "tenant/a b");

    let reply = server.post_json("/streams/ids", &json!({ "id": "not-a-uuid", "type": "E", "data": 1 }));
    assert_eq!((reply.status, reply.error_code()), (400, "invalid_uuid".to_owned()));
    let reply = server.post_json("/streams/ids", &json!({ "id": 7, "type": "E", "data": 1 }));
    assert_eq!(reply.status, 400);
    assert_eq!(server.get("/streams/ids").status, 404, "nothing was written");
}

#[test]
fn oversized_bodies_get_413() {
    // Declared too large: refused before the body is read.
    let server = support::start();
    let head = format!(
        "POST /streams/big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n[",
        200 * 1024 * 1024
    );
    let reply = server.send_raw(head.as_bytes());
    assert_eq!((reply.status, reply.error_code()), (413, "body_too_large".to_owned()), "{}", reply.text());
    assert!(reply.json()["error"]["limit_bytes"].as_u64().unwrap() >= 64 * 1024 * 1024);
    assert_eq!(server.get("/health").status, 200);
    drop(server);

    let server = support::start_with_config("append_size_bytes_max = 65536\nevent_size_bytes_max = 32768\n");
    let event = |bytes: usize| json!({ "type": "Big", "data": "x".repeat(bytes) });
    let reply = server.post_json("/streams/big", &event(40_000));
    assert_eq!((reply.status, reply.error_code()), (413, "event_too_large".to_owned()));
    assert_eq!(reply.json()["error"]["limit_bytes"], 32768);
    let reply = server.post_json("/streams/big", &json!([event(30_000), event(30_000), event(30_000)]));
    assert_eq!((reply.status, reply.error_code()), (413, "append_too_large".to_owned()));
    assert_eq!(reply.json()["error"]["limit_bytes"], 65536);
    // Streamed without a length, past the body limit: cut off part-way.
    let head = "POST /streams/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let reply = support::send_streaming(server.address(), head, 8 * 1024 * 1024, b' ');
    assert_eq!((reply.status, reply.error_code()), (413, "body_too_large".to_owned()), "{}", reply.text());
    // Under the limits all is well, and nothing refused was written.
    append(&server, "big", event(30_000));
    assert_eq!(read(&server, "/streams/big").len(), 1);
}

#[test]
fn health_and_metrics() {
    let server = support::start();
    let health = server.get("/health").json();
    assert_eq!(health, json!({ "status": "ok", "end_position": 0 }));
    for n in 0..3 {
        append(&server, "m", typed("E", n));
    }
    append(&server, "m2", json!([typed("E", 0), typed("E", 1)]));
    assert_eq!(server.post_json("/streams/m?expected=no_stream", &typed("E", 9)).status, 409);
    let health = server.get("/health").json();
    assert!(health["end_position"].as_u64().unwrap() > 0);

    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("text/plain"));
    let text = reply.text();
    assert_eq!(metric(&text, "stele_appends_total"), Some(4.0), "{text}");
    assert_eq!(metric(&text, "stele_append_events_total"), Some(5.0));
    assert!(text.contains("stele_append_errors_total{reason=\"wrong_expected_revision\"} 1"), "{text}");
}

/// While index tables cannot be written, a bounded backlog waits in memory;
/// past it appends are refused with 503 `index_backlog` and nothing is
/// written, reads go on, and appends resume on their own once the cause
/// is gone.
#[test]
fn a_full_index_backlog_is_a_503_and_clears_by_itself() {
    let memtable_entries_max = 4;
    let server = support::start_with_config(&format!("index_memtable_entries_max = {memtable_entries_max}\n"));
    let event = |n: u64| json!({ "id": format!("00000000-0000-4000-8000-{n:012}"), "type": "Sized", "data": {} });
    append(&server, "s", event(0));
    let record_bytes = server.get("/health").json()["end_position"].as_u64().unwrap();
    // The first table, covering the first four records, cannot be created.
    let blocker = server.data_dir().join("index").join(format!("{:020}-{:020}.idx.tmp", 0, 4 * record_bytes));
    std::fs::create_dir(&blocker).unwrap();
    let backlog_max = steledb::limits::INDEX_BACKLOG_MEMTABLES_MAX * memtable_entries_max;
    let accepted = (memtable_entries_max + backlog_max) as u64;
    for n in 1..accepted {
        let reply = server.post_json("/streams/s", &event(n));
        assert_eq!(reply.status, 201, "append {n}: {}", reply.text());
    }
    let refused = server.post_json("/streams/s", &event(accepted));
    assert_eq!((refused.status, refused.error_code()), (503, "index_backlog".to_owned()), "{}", refused.text());
    assert!(refused.text().contains("idx.tmp"), "the cause is named: {}", refused.text());
    let health = server.get("/health").json();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(numbers(&read(&server, "/streams/s?limit=1000"), "revision"), (0..accepted).collect::<Vec<_>>());

    std::fs::remove_dir(&blocker).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reply = server.post_json("/streams/s", &event(accepted));
        if reply.status == 201 {
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(std::time::Instant::now() < deadline, "appends did not resume");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(numbers(&read(&server, "/streams/s?limit=1000"), "revision").len() as u64, accepted + 1);
}

#[test]
fn sigterm_exits_cleanly_and_the_data_survives() {
    let mut server = support::start();
    let appended: Vec<Value> = (0..5).map(|n| typed("Kept", n)).collect();
    append(&server, "kept", Value::Array(appended));
    let mut subscription = server.subscribe("/all/subscribe").expect("subscribed");
    assert_eq!(subscription.until("caught_up").len(), 6);

    let status = server.stop_with_sigterm();
    assert!(status.success(), "stele serve exits 0 on SIGTERM, got {status:?}");
    assert_eq!(subscription.next_or_end(), None, "open subscriptions end at shutdown");

    let server = support::restart(server);
    let events = read(&server, "/streams/kept");
    assert_eq!(numbers(&events, "revision"), [0, 1, 2, 3, 4]);
    assert_eq!(events[4]["data"], json!({ "n": 4 }));
    append(&server, "kept", json!({ "type": "After", "data": {} }));
    assert_eq!(read(&server, "/streams/kept?from=end&direction=backward&limit=1")[0]["revision"], 5);
}

#[test]
fn connections_past_the_limit_wait_until_one_closes() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    let server = support::start_with_config("connections_max = 2\n");
    // Two idle connections take both places (a served request shows each
    // was accepted).
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(server.address()).unwrap();
            stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
            let mut reply = [0u8; 12];
            stream.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"HTTP/1.1 200");
            stream
        })
        .collect();
    // A third client connects (the kernel's backlog) but is not served...
    let mut waiting = TcpStream::connect(server.address()).unwrap();
    waiting.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    waiting.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut first = [0u8; 1];
    let early = waiting.read(&mut first);
    assert!(early.is_err(), "served past the limit: {early:?}");
    // ...until one of the others closes.
    drop(held.pop());
    waiting.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reply = Vec::new();
    waiting.read_to_end(&mut reply).unwrap();
    assert!(reply.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&reply));
    // Open now: the one still held and the one asking.
    let open_now = || metric(&server.get("/metrics").text(), "stele_connections_open");
    let settled = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        open_now() == Some(2.0)
    });
    assert!(settled, "stele_connections_open is {:?}", open_now());
    drop(held);
}

#[test]
fn a_connection_that_sends_nothing_is_closed_and_frees_its_place() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Duration;

    let server = support::start_with_config("connections_max = 1\nfirst_bytes_timeout_ms = 300\n");
    let mut silent = TcpStream::connect(server.address()).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The one place is taken by a socket that never speaks; the server
    // closes it after 300 ms and serves the next client.
    let mut closed = [0u8; 1];
    assert_eq!(silent.read(&mut closed).unwrap(), 0, "the silent connection is closed");
    assert_eq!(server.get("/health").status, 200);
}
