//! Why a benchmark step failed, kept apart by system so the report can
//! say which system misbehaved and carry on with the others.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("{system}: I/O error: {source}")]
    Io { system: &'static str, source: std::io::Error },
    #[error("{system}: protocol error: {message}")]
    Protocol { system: &'static str, message: String },
    #[error("{system}: the server refused: {message}")]
    Refused { system: &'static str, message: String },
    #[error("postgresql: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("steledb: gRPC status {code:?}: {message}")]
    Grpc { code: tonic::Code, message: String },
    #[error("steledb: cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("steledb (embedded): {0}")]
    Store(String),
    #[error("{system}: {what} took longer than {seconds} s")]
    Timeout { system: &'static str, what: &'static str, seconds: u64 },
    #[error("{system}: wrong result: {message}")]
    Wrong { system: &'static str, message: String },
}

impl From<tonic::Status> for BenchError {
    fn from(status: tonic::Status) -> Self {
        Self::Grpc { code: status.code(), message: status.message().to_owned() }
    }
}

/// `map_err` helper for I/O on one system's connection.
pub fn io(system: &'static str) -> impl Fn(std::io::Error) -> BenchError {
    move |source| BenchError::Io { system, source }
}
