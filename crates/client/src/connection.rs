//! Connection strings as the official KurrentDB clients write them
//! (`kurrentdb://host:port?tls=false`, `esdb://...`), and opening a channel.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::ClientError;

/// The connection string to use when given none: a local server.
pub const DEFAULT_CONNECTION_STRING: &str = "kurrentdb://127.0.0.1:2113?tls=false";

/// How long connecting may take before giving up: long enough for a server
/// that is still opening its store, short enough that a wrong address fails
/// a command instead of hanging it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an idle connection is pinged, and how long a ping may go
/// unanswered before the connection counts as dead: a subscription on a
/// half-open connection (a server host that vanished) fails within
/// `KEEP_ALIVE_INTERVAL + KEEP_ALIVE_TIMEOUT` instead of waiting for ever.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest reply message accepted. A read reply carries one event, and
/// the server refuses events larger than its append limit (16 MiB by
/// default), so 64 MiB leaves room for any configured limit.
pub const REPLY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Schemes the official clients accept, plus plain `http://`.
const SCHEMES: [&str; 5] = ["kurrentdb://", "kurrent://", "esdb://", "kdb://", "http://"];

/// A connection string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("'{connection_string}' is not a connection string like kurrentdb://127.0.0.1:2113?tls=false")]
    UnknownScheme { connection_string: String },
    #[error("TLS is not supported yet; use ?tls=false")]
    TlsUnsupported,
    #[error("'{connection_string}' names no host")]
    NoHost { connection_string: String },
    #[error("'{connection_string}' does not name a valid address: {reason}")]
    InvalidAddress { connection_string: String, reason: String },
}

/// `kurrentdb://host:port?tls=false`, `esdb://...` or `http://host:port`
/// as the endpoint URI to dial (`http://host:port`). User info
/// (`user:password@`) is dropped: the server has no authentication yet.
///
/// ```
/// use steledb_client::connection::endpoint_uri;
/// assert_eq!(endpoint_uri("esdb://admin:changeit@db:2113?tls=false").unwrap(), "http://db:2113");
/// ```
pub fn endpoint_uri(connection_string: &str) -> Result<String, ConnectionStringError> {
    let rest = SCHEMES
        .iter()
        .find_map(|scheme| connection_string.strip_prefix(scheme))
        .ok_or_else(|| ConnectionStringError::UnknownScheme { connection_string: connection_string.to_owned() })?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    if query.split('&').any(|pair| pair.eq_ignore_ascii_case("tls=true")) {
        return Err(ConnectionStringError::TlsUnsupported);
    }
    let authority = authority.trim_end_matches('/');
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if authority.is_empty() {
        return Err(ConnectionStringError::NoHost { connection_string: connection_string.to_owned() });
    }
    Ok(format!("http://{authority}"))
}

/// Connects (eagerly, so a wrong address fails here and not at the first
/// call) within [`CONNECT_TIMEOUT`].
pub async fn connect_channel(connection_string: &str) -> Result<Channel, ClientError> {
    let uri = endpoint_uri(connection_string)?;
    let endpoint = Endpoint::from_shared(uri.clone()).map_err(|e| ConnectionStringError::InvalidAddress {
        connection_string: connection_string.to_owned(),
        reason: e.to_string(),
    })?;
    endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| ClientError::Connect { uri, message: error_chain(&e) })
}

/// An error and its causes as one line ("transport error: ...: Connection
/// refused"): tonic's own message alone does not say what failed.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_maps_to_plain_http() {
        for scheme in ["kurrentdb", "kurrent", "esdb", "kdb", "http"] {
            assert_eq!(endpoint_uri(&format!("{scheme}://127.0.0.1:2113?tls=false")).unwrap(), "http://127.0.0.1:2113");
        }
        assert_eq!(endpoint_uri("kurrentdb://localhost:2113/").unwrap(), "http://localhost:2113");
        assert_eq!(endpoint_uri("kurrentdb://u:p@h:1?tlsVerifyCert=false&tls=false").unwrap(), "http://h:1");
    }

    #[test]
    fn unusable_strings_are_refused_with_the_reason() {
        assert_eq!(endpoint_uri("kurrentdb://h:1?tls=true"), Err(ConnectionStringError::TlsUnsupported));
        assert_eq!(endpoint_uri("kurrentdb://h:1?TLS=TRUE"), Err(ConnectionStringError::TlsUnsupported));
        assert!(matches!(endpoint_uri("ftp://h:1"), Err(ConnectionStringError::UnknownScheme { .. })));
        assert!(matches!(endpoint_uri("kurrentdb://?tls=false"), Err(ConnectionStringError::NoHost { .. })));
        assert!(matches!(endpoint_uri("esdb://user@"), Err(ConnectionStringError::NoHost { .. })));
    }
}
