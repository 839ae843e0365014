//! The small services clients call besides Streams: gossip (cluster
//! discovery), server features, and persistent-subscription listing.

use std::time::{SystemTime, UNIX_EPOCH};

use steledb::Uuid;
use tonic::{Request, Response, Status, Streaming};

use super::convert::uuid_to_proto;
use crate::proto::event_store::client::gossip::{self, gossip_server::Gossip, member_info::VNodeState};
use crate::proto::event_store::client::persistent_subscriptions as persistent;
use crate::proto::event_store::client::server_features::{
    server_features_server::ServerFeatures, SupportedMethod, SupportedMethods,
};
use crate::proto::event_store::client::Empty;
use crate::state::SharedState;

/// The KurrentDB protocol level we implement. Clients parse this as
/// `major.minor.patch` and refuse to connect if it does not parse; some gate
/// protocol features on it.
pub const PROTOCOL_VERSION: &str = "24.10.0";

pub struct GossipService {
    pub state: SharedState,
    pub instance_id: Uuid,
}

#[tonic::async_trait]
impl Gossip for GossipService {
    async fn read(&self, _: Request<Empty>) -> Result<Response<gossip::ClusterInfo>, Status> {
        let advertised = self.state.config.advertised();
        let (host, port) = advertised
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse::<u32>().ok()?)))
            .ok_or_else(|| Status::internal(format!("advertised address '{advertised}' is not host:port")))?;
        let now_ticks = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64 * 10);
        let member = gossip::MemberInfo {
            instance_id: Some(uuid_to_proto(self.instance_id, false)),
            time_stamp: now_ticks,
            state: VNodeState::Leader as i32,
            is_alive: true,
            http_end_point: Some(gossip::EndPoint { address: host, port }),
        };
        Ok(Response::new(gossip::ClusterInfo { members: vec![member] }))
    }
}

pub struct FeaturesService;

fn method(service: &str, name: &str, features: &[&str]) -> SupportedMethod {
    SupportedMethod {
        method_name: name.to_owned(),
        service_name: service.to_owned(),
        features: features.iter().map(|f| (*f).to_owned()).collect(),
    }
}

#[tonic::async_trait]
impl ServerFeatures for FeaturesService {
    async fn get_supported_methods(&self, _: Request<Empty>) -> Result<Response<SupportedMethods>, Status> {
        const STREAMS: &str = "event_store.client.streams.streams";
        const PERSISTENT: &str = "event_store.client.persistent_subscriptions.persistentsubscriptions";
        // Clients manage persistent subscriptions over gRPC only when all of
        // list, getinfo, replayparked and restartsubsystem are listed; we
        // answer the last three with UNIMPLEMENTED until they exist.
        let methods = vec![
            method(STREAMS, "read", &["position", "events"]),
            method(STREAMS, "append", &[]),
            method(STREAMS, "batchappend", &["deadline_duration"]),
            method(STREAMS, "delete", &[]),
            method(STREAMS, "tombstone", &[]),
            method("event_store.client.gossip.gossip", "read", &[]),
            method("event_store.client.server_features.serverfeatures", "getsupportedmethods", &[]),
            method(PERSISTENT, "list", &["stream", "all"]),
            method(PERSISTENT, "getinfo", &["stream", "all"]),
            method(PERSISTENT, "replayparked", &["stream", "all"]),
            method(PERSISTENT, "restartsubsystem", &[]),
            method("stele.streams.v1.multistreamappend", "append", &[]),
        ];
        Ok(Response::new(SupportedMethods { methods, event_store_server_version: PROTOCOL_VERSION.to_owned() }))
    }
}

pub struct PersistentService;

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("persistent subscriptions: {what} is not implemented yet"))
}

#[tonic::async_trait]
impl persistent::persistent_subscriptions_server::PersistentSubscriptions for PersistentService {
    type ReadStream = tokio_stream::Empty<Result<persistent::ReadResp, Status>>;

    async fn create(&self, _: Request<persistent::CreateReq>) -> Result<Response<persistent::CreateResp>, Status> {
        Err(not_yet("create"))
    }
    async fn update(&self, _: Request<persistent::UpdateReq>) -> Result<Response<persistent::UpdateResp>, Status> {
        Err(not_yet("update"))
    }
    async fn delete(&self, _: Request<persistent::DeleteReq>) -> Result<Response<persistent::DeleteResp>, Status> {
        Err(not_yet("delete"))
    }
    async fn read(&self, _: Request<Streaming<persistent::ReadReq>>) -> Result<Response<Self::ReadStream>, Status> {
        Err(not_yet("read"))
    }
    async fn get_info(&self, _: Request<persistent::GetInfoReq>) -> Result<Response<persistent::GetInfoResp>, Status> {
        Err(not_yet("get info"))
    }
    async fn replay_parked(
        &self,
        _: Request<persistent::ReplayParkedReq>,
    ) -> Result<Response<persistent::ReplayParkedResp>, Status> {
        Err(not_yet("replay parked"))
    }
    /// No persistent subscriptions exist yet, so the list is empty.
    async fn list(&self, _: Request<persistent::ListReq>) -> Result<Response<persistent::ListResp>, Status> {
        Ok(Response::new(persistent::ListResp { subscriptions: Vec::new() }))
    }
    async fn restart_subsystem(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        Err(not_yet("restart subsystem"))
    }
}
