//! Server settings: defaults, then an optional TOML file, then environment
//! variables, then command-line flags (later wins; the CLI applies the last
//! two).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use steledb::Limits;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:2113";
pub const DEFAULT_DATA_DIR: &str = "./stele-data";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The address clients are told to use (gossip); defaults to `listen`.
    pub advertise: Option<String>,
    pub segment_size_bytes: u64,
    /// Index entries kept in memory before they are written as a table.
    pub index_memtable_entries_max: usize,
    pub limits: Limits,
    /// Connections open at once; more wait in the kernel's backlog.
    pub connections_max: usize,
    /// A connection that sends nothing for this long after it is accepted
    /// is closed.
    pub first_bytes_timeout_ms: u64,
}

pub const DEFAULT_FIRST_BYTES_TIMEOUT_MS: u64 = 10_000;

/// Enough for many clients, each with a connection pool, on a small
/// machine; every connection costs a task and its buffers.
pub const DEFAULT_CONNECTIONS_MAX: usize = 4096;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.parse().expect("a valid default address"),
            advertise: None,
            segment_size_bytes: steledb::StoreConfig::new("").segment_size_bytes,
            index_memtable_entries_max: steledb::StoreConfig::new("").index_memtable_entries_max,
            limits: Limits::default(),
            connections_max: DEFAULT_CONNECTIONS_MAX,
            first_bytes_timeout_ms: DEFAULT_FIRST_BYTES_TIMEOUT_MS,
        }
    }
}

/// The TOML file's shape: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub segment_size_bytes: Option<u64>,
    pub index_memtable_entries_max: Option<usize>,
    pub event_size_bytes_max: Option<usize>,
    pub append_size_bytes_max: Option<usize>,
    pub append_events_max: Option<usize>,
    pub append_streams_max: Option<usize>,
    pub queue_requests_max: Option<usize>,
    pub connections_max: Option<usize>,
    pub first_bytes_timeout_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl ServerConfig {
    /// Applies a TOML config file over the current values.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let file: FileConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })?;
        let limits = &mut self.limits;
        macro_rules! set {
            ($target:expr, $value:expr) => {
                if let Some(value) = $value {
                    $target = value;
                }
            };
        }
        set!(self.data_dir, file.data_dir);
        set!(self.listen, file.listen);
        set!(self.segment_size_bytes, file.segment_size_bytes);
        if file.index_memtable_entries_max == Some(0) {
            let message = "index_memtable_entries_max must be at least 1".to_owned();
            return Err(ConfigError::Invalid { path: path.into(), message });
        }
        set!(self.index_memtable_entries_max, file.index_memtable_entries_max);
        set!(limits.event_size_bytes_max, file.event_size_bytes_max);
        set!(limits.append_size_bytes_max, file.append_size_bytes_max);
        set!(limits.append_events_max, file.append_events_max);
        set!(limits.append_streams_max, file.append_streams_max);
        set!(limits.queue_requests_max, file.queue_requests_max);
        if file.connections_max == Some(0) {
            return Err(ConfigError::Invalid {
                path: path.into(),
                message: "connections_max must be at least 1".into(),
            });
        }
        set!(self.connections_max, file.connections_max);
        set!(self.first_bytes_timeout_ms, file.first_bytes_timeout_ms);
        if file.advertise.is_some() {
            self.advertise = file.advertise;
        }
        if self.limits.event_size_bytes_max > self.limits.append_size_bytes_max {
            let message = "event_size_bytes_max must not exceed append_size_bytes_max".to_owned();
            return Err(ConfigError::Invalid { path: path.into(), message });
        }
        Ok(())
    }

    /// `host:port` that clients should connect to.
    pub fn advertised(&self) -> String {
        self.advertise.clone().unwrap_or_else(|| self.listen.to_string())
    }
}
