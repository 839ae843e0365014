//! The gRPC front end: KurrentDB-compatible services plus our extension.

// tonic's `Status` (176 bytes) is the error type every handler must return;
// boxing it in helpers would only move the cost.
#![allow(clippy::result_large_err)]

mod convert;
mod misc;
mod multi;
mod read_body;
mod read_reply;
mod streams;

use std::sync::Arc;

use axum::extract::State;
use steledb::Uuid;
use tonic::service::Routes;

use crate::proto::event_store::client::gossip::gossip_server::GossipServer;
use crate::proto::event_store::client::persistent_subscriptions::persistent_subscriptions_server::PersistentSubscriptionsServer;
use crate::proto::event_store::client::server_features::server_features_server::ServerFeaturesServer;
use crate::proto::event_store::client::streams::streams_server::StreamsServer;
use crate::proto::stele::streams::v1::multi_stream_append_server::MultiStreamAppendServer;
use crate::state::SharedState;

pub use misc::PROTOCOL_VERSION;

/// Room for protobuf framing around the largest append we accept.
const MESSAGE_OVERHEAD_BYTES: usize = 1024 * 1024;

/// `Streams.Read` is served by [`read_route`] rather than the generated
/// service, to encode events straight from the store's buffers.
const READ_PATH: &str = crate::proto::STREAMS_READ_PATH;

/// Every gRPC service, as routes of the shared axum router.
pub fn router(state: SharedState) -> axum::Router {
    let message_bytes_max = state.config.limits.append_size_bytes_max + MESSAGE_OVERHEAD_BYTES;
    let reads = Arc::new(streams::StreamsService { state: state.clone() });
    let read =
        axum::Router::new().route(READ_PATH, axum::routing::post(read_route)).with_state((reads, message_bytes_max));
    // A static path takes precedence over the service's `/{*rest}` route.
    routes(state, message_bytes_max).into_axum_router().merge(read)
}

async fn read_route(
    State((service, message_bytes_max)): State<(Arc<streams::StreamsService>, usize)>,
    request: axum::extract::Request,
) -> axum::response::Response {
    read_body::serve(service, request, message_bytes_max).await
}

fn routes(state: SharedState, message_bytes_max: usize) -> Routes {
    let streams = StreamsServer::new(streams::StreamsService { state: state.clone() })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(message_bytes_max);
    let multi = MultiStreamAppendServer::new(multi::MultiAppendService { state: state.clone() })
        .max_decoding_message_size(message_bytes_max);
    let gossip = GossipServer::new(misc::GossipService { state, instance_id: Uuid::new_v4() });
    Routes::new(streams)
        .add_service(multi)
        .add_service(gossip)
        .add_service(ServerFeaturesServer::new(misc::FeaturesService))
        .add_service(PersistentSubscriptionsServer::new(misc::PersistentService))
}
