//! Compiles our .proto files with protox (pure Rust), so building needs no
//! `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/kurrentdb/shared.proto",
        "proto/kurrentdb/rpc_status.proto",
        "proto/kurrentdb/streams.proto",
        "proto/kurrentdb/gossip.proto",
        "proto/kurrentdb/server_features.proto",
        "proto/kurrentdb/persistent.proto",
        "proto/stele/multi_append.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        // Read replies carry event data as shared buffers straight from the
        // engine's `RecordedEvent`, with no copy before encoding.
        .bytes([".event_store.client.streams.ReadResp.ReadEvent.RecordedEvent"])
        .compile_fds(descriptors)?;
    Ok(())
}
