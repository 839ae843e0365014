//! A small gRPC client for the CLI's commands against a running server,
//! speaking the same KurrentDB protocol as the official clients (the
//! generated client of our own `.proto` files).

use std::collections::HashMap;

use stele_server::proto::event_store::client::streams::{
    append_req, append_resp, read_req, read_resp, streams_client::StreamsClient, AppendReq, ReadReq,
};
use stele_server::proto::event_store::client::{uuid, Empty, StreamIdentifier, Uuid as WireUuid};
use tonic::transport::{Channel, Endpoint};

/// `kurrentdb://host:port?tls=false`, `esdb://...` or `http://host:port` to an endpoint URI.
pub fn endpoint_uri(target: &str) -> Result<String, String> {
    let rest = ["kurrentdb://", "kurrent://", "esdb://", "kdb://", "http://"]
        .iter()
        .find_map(|scheme| target.strip_prefix(scheme))
        .ok_or_else(|| format!("'{target}' is not a connection string like kurrentdb://127.0.0.1:2113?tls=false"))?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    if query.split('&').any(|pair| pair.eq_ignore_ascii_case("tls=true")) {
        return Err("TLS is not supported yet; use ?tls=false".to_owned());
    }
    let authority = authority.trim_end_matches('/');
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if authority.is_empty() {
        return Err(format!("'{target}' names no host"));
    }
    Ok(format!("http://{authority}"))
}

pub async fn connect(target: &str) -> Result<StreamsClient<Channel>, String> {
    let uri = endpoint_uri(target)?;
    let channel = Endpoint::from_shared(uri.clone())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {uri}: {e}"))?;
    Ok(StreamsClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

fn identifier(stream: &str) -> Option<StreamIdentifier> {
    Some(StreamIdentifier { stream_name: stream.as_bytes().to_vec() })
}

/// One proposed event as the Append call carries it.
pub fn proposed(id: ::uuid::Uuid, event_type: &str, data: Vec<u8>) -> AppendReq {
    let metadata = HashMap::from([
        ("type".to_owned(), event_type.to_owned()),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]);
    AppendReq {
        content: Some(append_req::Content::ProposedMessage(append_req::ProposedMessage {
            id: Some(WireUuid { value: Some(uuid::Value::String(id.to_string())) }),
            metadata,
            custom_metadata: Vec::new(),
            data,
        })),
    }
}

/// Appends with expected revision `any`; returns the stream's new revision.
pub async fn append_any(
    client: &mut StreamsClient<Channel>,
    stream: &str,
    events: Vec<AppendReq>,
) -> Result<u64, String> {
    let options = AppendReq {
        content: Some(append_req::Content::Options(append_req::Options {
            stream_identifier: identifier(stream),
            expected_stream_revision: Some(append_req::options::ExpectedStreamRevision::Any(Empty {})),
        })),
    };
    let requests = std::iter::once(options).chain(events);
    let reply = client.append(tokio_stream::iter(requests)).await.map_err(|e| e.to_string())?.into_inner();
    match reply.result {
        Some(append_resp::Result::Success(success)) => match success.current_revision_option {
            Some(append_resp::success::CurrentRevisionOption::CurrentRevision(revision)) => Ok(revision),
            _ => Err("append succeeded without a revision".to_owned()),
        },
        Some(append_resp::Result::WrongExpectedVersion(_)) => Err("wrong expected version".to_owned()),
        None => Err("empty append reply".to_owned()),
    }
}

fn read_options(
    stream_option: read_req::options::StreamOption,
    count_option: read_req::options::CountOption,
) -> ReadReq {
    use read_req::options::{uuid_option, FilterOption, UuidOption};
    ReadReq {
        options: Some(read_req::Options {
            read_direction: 0,
            resolve_links: false,
            uuid_option: Some(UuidOption { content: Some(uuid_option::Content::String(Empty {})) }),
            control_option: None,
            stream_option: Some(stream_option),
            count_option: Some(count_option),
            filter_option: Some(FilterOption::NoFilter(Empty {})),
        }),
    }
}

/// Reads up to `count` events of a stream from the start; returns how many came.
pub async fn read_stream_count(client: &mut StreamsClient<Channel>, stream: &str, count: u64) -> Result<u64, String> {
    use read_req::options::{stream_options::RevisionOption, CountOption, StreamOption, StreamOptions};
    let stream_option = StreamOption::Stream(StreamOptions {
        stream_identifier: identifier(stream),
        revision_option: Some(RevisionOption::Start(Empty {})),
    });
    let request = read_options(stream_option, CountOption::Count(count));
    let mut replies = client.read(request).await.map_err(|e| e.to_string())?.into_inner();
    let mut events = 0;
    while let Some(reply) = replies.message().await.map_err(|e| e.to_string())? {
        match reply.content {
            Some(read_resp::Content::Event(_)) => events += 1,
            Some(read_resp::Content::StreamNotFound(_)) => return Err(format!("stream '{stream}' not found")),
            _ => {}
        }
    }
    Ok(events)
}

/// Subscribes to `$all` from the start and counts events until caught up.
pub async fn catch_up_all(client: &mut StreamsClient<Channel>) -> Result<u64, String> {
    use read_req::options::{all_options::AllOption, AllOptions, CountOption, StreamOption, SubscriptionOptions};
    let stream_option = StreamOption::All(AllOptions { all_option: Some(AllOption::Start(Empty {})) });
    let request = read_options(stream_option, CountOption::Subscription(SubscriptionOptions {}));
    let mut replies = client.read(request).await.map_err(|e| e.to_string())?.into_inner();
    let mut events = 0;
    while let Some(reply) = replies.message().await.map_err(|e| e.to_string())? {
        match reply.content {
            Some(read_resp::Content::Event(_)) => events += 1,
            Some(read_resp::Content::CaughtUp(_)) => return Ok(events),
            _ => {}
        }
    }
    Err("the subscription ended before catching up".to_owned())
}
