//! The client for synchronous callers (the toolkit's repositories and
//! timers), on a runtime it owns.

use std::future::Future;
use std::time::Duration;

use steledb::{AppendResult, ExpectedRevision, NewEvent, RecordedEvent, StreamAppend};
use tokio::runtime::{Handle, Runtime};

use crate::{Client, ClientError};

/// [`Client`] with blocking calls. Share it between threads (`Arc`): calls
/// from several threads run concurrently over one connection.
///
/// Not for use inside an async runtime: there, calls return
/// [`ClientError::InsideAsyncRuntime`] instead of blocking a runtime thread;
/// use [`Client`] instead.
#[derive(Debug)]
pub struct BlockingClient {
    /// One worker thread drives the connection in the background, so any
    /// number of caller threads can block on their own calls at once; a
    /// current-thread runtime would only make progress while some caller
    /// is inside `block_on`, and callers would take turns driving it.
    /// An `Option` only so that `Drop` can take it.
    runtime: Option<Runtime>,
    client: Client,
}

impl BlockingClient {
    /// Connects to `connection_string` (`kurrentdb://host:port?tls=false`).
    pub fn connect(connection_string: &str) -> Result<Self, ClientError> {
        refuse_inside_async_runtime()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("steledb-client")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ClientError::Runtime { message: e.to_string() })?;
        let client = runtime.block_on(Client::connect(connection_string))?;
        Ok(Self { runtime: Some(runtime), client })
    }

    /// Sets how long each call may take (default [`crate::REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(mut self, request_timeout: Duration) -> Self {
        self.client = self.client.clone().with_request_timeout(request_timeout);
        self
    }

    /// The async client underneath, for calls from async code.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// See [`Client::append`].
    pub fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, ClientError> {
        self.block_on(self.client.append(stream, expected, events))
    }

    /// See [`Client::append_multi`].
    pub fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, ClientError> {
        self.block_on(self.client.append_multi(parts))
    }

    /// See [`Client::read_forward`].
    pub fn read_forward(
        &self,
        stream: &str,
        from_revision: u64,
        count: u64,
    ) -> Result<Vec<RecordedEvent>, ClientError> {
        self.block_on(self.client.read_forward(stream, from_revision, count))
    }

    /// See [`Client::read_last`].
    pub fn read_last(&self, stream: &str) -> Result<RecordedEvent, ClientError> {
        self.block_on(self.client.read_last(stream))
    }

    fn block_on<T>(&self, call: impl Future<Output = Result<T, ClientError>>) -> Result<T, ClientError> {
        refuse_inside_async_runtime()?;
        let runtime = self.runtime.as_ref().expect("the runtime is only taken on drop");
        runtime.block_on(call)
    }
}

impl Drop for BlockingClient {
    fn drop(&mut self) {
        // A runtime dropped the usual way waits for its worker, which
        // panics when the client is dropped inside an async context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `block_on` panics inside a runtime; an error says what to do instead.
fn refuse_inside_async_runtime() -> Result<(), ClientError> {
    match Handle::try_current() {
        Ok(_) => Err(ClientError::InsideAsyncRuntime),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_an_async_runtime_it_refuses_instead_of_panicking() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let refused = runtime.block_on(async { BlockingClient::connect("kurrentdb://127.0.0.1:1?tls=false") });
        assert_eq!(refused.err(), Some(ClientError::InsideAsyncRuntime));
    }

    #[test]
    fn a_refused_connection_names_the_address() {
        // Port 1 is privileged and unused: the connection is refused at once.
        let error = BlockingClient::connect("esdb://127.0.0.1:1?tls=false").expect_err("nothing listens there");
        assert!(matches!(&error, ClientError::Connect { uri, .. } if uri == "http://127.0.0.1:1"), "{error:?}");
        let error = BlockingClient::connect("kurrentdb://127.0.0.1:1?tls=true").expect_err("refused");
        assert_eq!(error, ClientError::ConnectionString(crate::ConnectionStringError::TlsUnsupported));
    }
}
