//! Generated protobuf types and service traits, nested as their packages
//! are so the generated relative paths resolve. Protobuf types stay in this
//! crate; conversions to and from the store's types live in `grpc/convert.rs`.

#![allow(clippy::all, missing_docs, clippy::pedantic)]

pub mod event_store {
    pub mod client {
        tonic::include_proto!("event_store.client");
        pub mod streams {
            tonic::include_proto!("event_store.client.streams");
        }
        pub mod gossip {
            tonic::include_proto!("event_store.client.gossip");
        }
        pub mod server_features {
            tonic::include_proto!("event_store.client.server_features");
        }
        pub mod persistent_subscriptions {
            tonic::include_proto!("event_store.client.persistent_subscriptions");
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub mod stele {
    pub mod streams {
        pub mod v1 {
            tonic::include_proto!("stele.streams.v1");
        }
    }
}
