//! The SteleDB server: the embedded store behind a KurrentDB-compatible
//! gRPC API and an HTTP/JSON API, both on one port.

mod bridge;
pub mod config;
pub mod event_json;
mod grpc;
mod http;
mod listener;
mod metrics;
/// The generated wire types, from `stele-proto` (re-exported so
/// `stele_server::proto::...` paths keep working).
pub use stele_proto as proto;
mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use steledb::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::ServerConfig;
pub use grpc::PROTOCOL_VERSION;

use crate::metrics::Metrics;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening the store failed: {0}")]
    Open(#[from] steledb::OpenError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: std::net::SocketAddr, source: std::io::Error },
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
}

/// How long shutdown waits for open connections to finish before closing anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Opens the store and serves until `shutdown` completes; then stops
/// accepting, ends subscriptions, lets in-flight appends finish and closes
/// the store (which syncs and flushes the index).
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
    let store_config = StoreConfig {
        limits: config.limits,
        segment_size_bytes: config.segment_size_bytes,
        index_memtable_entries_max: config.index_memtable_entries_max,
        ..StoreConfig::new(&config.data_dir)
    };
    let store = tokio::task::spawn_blocking(move || Store::open_with(store_config))
        .await
        .expect("opening the store panicked")?;
    let report = store.open_report().clone();
    tracing::info!(
        data_dir = %config.data_dir.display(),
        open_ms = report.open_ms,
        end_position = report.log.end_position,
        truncated_bytes = report.log.truncated_bytes,
        replayed_events = report.replayed_events,
        "store opened"
    );
    let store = Arc::new(store);
    let (commit_sender, commits) = watch::channel(store.end_position());
    store.add_commit_listener(move |end| {
        commit_sender.send_replace(end);
    });
    let (shutdown_sender, shutdown_receiver) = watch::channel(false);
    let state = Arc::new(AppState {
        store: store.clone(),
        metrics: Arc::new(Metrics::default()),
        commits,
        shutdown: shutdown_receiver,
        config: config.clone(),
    });
    // The fallback answers gRPC clients as tonic would and everyone else with JSON.
    let app = grpc::router(state.clone()).fallback(http::fallback).merge(http::router(state.clone()));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind { address: config.listen, source })?;
    let address = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::warn!("insecure mode: no TLS and no authentication; bind to a trusted interface only");
    tracing::info!(%address, advertise = %config.advertised(), "serving gRPC (KurrentDB protocol) and HTTP");
    // Printed plainly too, so scripts and tests can wait for it.
    println!("stele listening on {address}");

    let signal = {
        let shutdown_sender = shutdown_sender.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; ending subscriptions");
            let _ = shutdown_sender.send(true);
        }
    };
    let first_bytes_timeout = std::time::Duration::from_millis(config.first_bytes_timeout_ms);
    let listener =
        listener::LimitedListener::new(listener, config.connections_max, first_bytes_timeout, state.metrics.clone());
    let server = axum::serve(listener, app).with_graceful_shutdown(signal);
    let mut stopping = state.shutdown.clone();
    tokio::select! {
        result = server => result.map_err(ServerError::Serve)?,
        _ = async {
            let _ = stopping.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing anyway"),
    }
    drop(state);
    // The last handle closes the store: queued appends finish, the index is flushed.
    tokio::task::spawn_blocking(move || drop(store)).await.expect("closing the store panicked");
    tracing::info!("stopped");
    Ok(())
}
