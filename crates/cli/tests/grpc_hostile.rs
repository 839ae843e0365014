//! Bad input over gRPC: bytes that are not protobuf, and a client that goes
//! away in the middle of a batch append. Each gets an error or is cleaned
//! up; nothing is partially written and the server keeps serving.

mod support;

use std::time::Duration;

use bytes::{Buf, BufMut};
use stele_server::proto::event_store::client::streams::{
    batch_append_req, streams_client::StreamsClient, BatchAppendReq,
};
use stele_server::proto::event_store::client::{uuid, StreamIdentifier, Uuid as WireUuid};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// Sends and receives raw bytes as gRPC messages, whatever the method.
#[derive(Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut bytes = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn channel(server: &support::Server) -> Channel {
    Channel::from_shared(format!("http://{}", server.address())).unwrap().connect().await.unwrap()
}

async fn raw_unary(channel: Channel, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_protobuf_get_an_error_and_the_server_serves_on() {
    let server = support::start();
    let garbage: Vec<Vec<u8>> = vec![
        vec![0xff; 64],                           // invalid wire types and lengths
        vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], // a length prefix far past the end
        (0..=255u8).collect(),
    ];
    for body in garbage {
        let status = raw_unary(channel(&server).await, "/event_store.client.streams.Streams/Delete", body)
            .await
            .expect_err("garbage is not a DeleteReq");
        assert!(
            matches!(status.code(), tonic::Code::Internal | tonic::Code::InvalidArgument),
            "unexpected status {status:?}"
        );
    }
    // A well-formed but empty request is a clear error, not a crash.
    let status = raw_unary(channel(&server).await, "/event_store.client.streams.Streams/Tombstone", Vec::new())
        .await
        .expect_err("a tombstone needs options");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("options"), "{}", status.message());
    // Still serving.
    let health = server.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["end_position"], 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_append_cut_off_before_its_final_message_writes_nothing() {
    let server = support::start();
    let mut client = StreamsClient::new(channel(&server).await);
    let correlation = WireUuid { value: Some(uuid::Value::String(::uuid::Uuid::new_v4().to_string())) };
    let event = |n: u8| batch_append_req::ProposedMessage {
        id: Some(WireUuid { value: Some(uuid::Value::String(::uuid::Uuid::new_v4().to_string())) }),
        metadata: [("type".to_owned(), "Half".to_owned()), ("content-type".to_owned(), "application/json".to_owned())]
            .into(),
        custom_metadata: Vec::new(),
        data: format!("{{\"n\":{n}}}").into_bytes(),
    };
    let first_half = BatchAppendReq {
        correlation_id: Some(correlation.clone()),
        options: Some(batch_append_req::Options {
            stream_identifier: Some(StreamIdentifier { stream_name: b"half-written".to_vec() }),
            expected_stream_position: Some(batch_append_req::options::ExpectedStreamPosition::Any(())),
            deadline_option: None,
        }),
        proposed_messages: vec![event(1), event(2)],
        is_final: false,
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(first_half).await.unwrap();
    let call = tokio::spawn(async move {
        client.batch_append(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The client goes away without the final message.
    drop(sender);
    call.abort();
    let _ = call.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read = server.get("/streams/half-written");
    assert_eq!(read.status, 404, "a batch without its final message is never written: {}", read.text());
    let all = server.get("/all");
    assert_eq!(all.json()["events"].as_array().map(Vec::len), Some(0));
    assert_eq!(server.get("/health").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_append_call_cannot_open_unfinished_batches_without_end() {
    let server = support::start();
    let mut client = StreamsClient::new(channel(&server).await);
    let unfinished = |n: usize| BatchAppendReq {
        correlation_id: Some(WireUuid { value: Some(uuid::Value::String(::uuid::Uuid::new_v4().to_string())) }),
        options: Some(batch_append_req::Options {
            stream_identifier: Some(StreamIdentifier { stream_name: format!("never-{n}").into_bytes() }),
            expected_stream_position: Some(batch_append_req::options::ExpectedStreamPosition::Any(())),
            deadline_option: None,
        }),
        proposed_messages: Vec::new(),
        is_final: false,
    };
    let requests: Vec<BatchAppendReq> = (0..200).map(unfinished).collect();
    let outcome = async {
        let mut replies = client.batch_append(tokio_stream::iter(requests)).await?.into_inner();
        while replies.message().await?.is_some() {}
        Ok::<(), tonic::Status>(())
    };
    let status = tokio::time::timeout(Duration::from_secs(10), outcome)
        .await
        .expect("the server ends the call")
        .expect_err("200 unfinished batches are refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("unfinished batches"), "{status:?}");
    assert_eq!(server.get("/health").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_do_not_stop_the_server() {
    let server = support::start();
    // Both ends live on this machine: stay well inside the open-files limit.
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?.to_owned();
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .unwrap_or(1024);
    let count = 2000.min(limit.saturating_sub(256) / 2);
    assert!(count >= 300, "the open-files limit ({limit}) is too low for this test");
    let mut idle = Vec::new();
    for _ in 0..count {
        idle.push(std::net::TcpStream::connect(server.address()).expect("connect"));
    }
    // Half of them start an HTTP request and never finish it.
    for stream in idle.iter_mut().step_by(2) {
        use std::io::Write;
        let _ = stream.write_all(b"POST /streams/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ty");
    }
    let mut client = StreamsClient::new(channel(&server).await);
    let read = client
        .read(stele_server::proto::event_store::client::streams::ReadReq { options: None })
        .await
        .expect_err("a read without options is refused");
    assert_eq!(read.code(), tonic::Code::InvalidArgument);
    let health = server.get("/health");
    assert_eq!(health.status, 200, "the server serves others while {count} connections idle");
    drop(idle);
    assert_eq!(server.get("/streams/slow").status, 404, "the half-sent appends wrote nothing");
}
