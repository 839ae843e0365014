//! Choosing the store by configuration: the embedded engine on a data
//! directory, or a running server through the gRPC client. Application
//! code takes an `Arc<dyn EventStore>` and never knows which.

use std::path::PathBuf;
use std::sync::Arc;

use crate::EventStore;

/// Where the events live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The embedded engine, on this data directory (opened by this process,
    /// which then must be the only one using it).
    Embedded(PathBuf),
    /// A running `stele serve`: `kurrentdb://host:port?tls=false` or
    /// `esdb://...`. Needs the `remote` feature.
    Remote(String),
}

impl Backend {
    /// A setting as a backend: a connection string (anything with `://`)
    /// is a server, anything else a data directory.
    ///
    /// ```
    /// use steledb_sdk::Backend;
    /// assert_eq!(Backend::parse("./stele-data"), Backend::Embedded("./stele-data".into()));
    /// assert_eq!(
    ///     Backend::parse("kurrentdb://127.0.0.1:2113?tls=false"),
    ///     Backend::Remote("kurrentdb://127.0.0.1:2113?tls=false".to_owned())
    /// );
    /// ```
    pub fn parse(setting: &str) -> Self {
        if setting.contains("://") {
            Self::Remote(setting.to_owned())
        } else {
            Self::Embedded(PathBuf::from(setting))
        }
    }
}

/// The chosen backend could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot open the store in '{}': {source}", path.display())]
    Embedded { path: PathBuf, source: steledb::OpenError },
    #[cfg(feature = "remote")]
    #[error(transparent)]
    Remote(steledb_client::ClientError),
    #[error("'{connection_string}' names a server, but steledb-sdk was built without its `remote` feature")]
    RemoteNotBuilt { connection_string: String },
}

/// Opens or connects to `backend`.
///
/// Everything in the toolkit runs on the result: repositories, timers,
/// and the consumers that subscribe (projections, process managers,
/// gateways).
pub fn connect(backend: &Backend) -> Result<Arc<dyn EventStore>, ConnectError> {
    match backend {
        Backend::Embedded(path) => match steledb::Store::open(path) {
            Ok(store) => Ok(Arc::new(store)),
            Err(source) => Err(ConnectError::Embedded { path: path.clone(), source }),
        },
        #[cfg(feature = "remote")]
        Backend::Remote(connection_string) => match steledb_client::BlockingClient::connect(connection_string) {
            Ok(client) => Ok(Arc::new(client)),
            Err(error) => Err(ConnectError::Remote(error)),
        },
        #[cfg(not(feature = "remote"))]
        Backend::Remote(connection_string) => {
            Err(ConnectError::RemoteNotBuilt { connection_string: connection_string.clone() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedded_backend_is_a_working_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = connect(&Backend::Embedded(dir.path().join("data"))).expect("open");
        let event = steledb::NewEvent::json(uuid::Uuid::from_u128(1), "Happened", b"{}".to_vec());
        store.append("s-1", steledb::ExpectedRevision::NoStream, vec![event]).expect("append");
        assert_eq!(store.read_last("s-1").expect("read").map(|e| e.revision), Some(0));
    }

    #[test]
    fn an_unreachable_server_is_a_connect_error() {
        // Port 1 is privileged and unused: the connection is refused at once.
        let error = connect(&Backend::Remote("kurrentdb://127.0.0.1:1?tls=false".to_owned())).err().expect("no server");
        #[cfg(feature = "remote")]
        assert!(
            matches!(&error, ConnectError::Remote(steledb_client::ClientError::Connect { uri, .. }) if uri == "http://127.0.0.1:1"),
            "{error:?}"
        );
        #[cfg(not(feature = "remote"))]
        assert!(matches!(error, ConnectError::RemoteNotBuilt { .. }), "{error:?}");
    }
}
