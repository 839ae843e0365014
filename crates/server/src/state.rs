use std::sync::Arc;

use steledb::Store;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// What every request handler shares.
pub struct AppState {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    /// The store's end position, updated after every commit.
    pub commits: watch::Receiver<u64>,
    /// Turns true when the server is shutting down; long-lived streams end.
    pub shutdown: watch::Receiver<bool>,
    pub config: ServerConfig,
}

pub type SharedState = Arc<AppState>;
