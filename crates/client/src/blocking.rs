//! The client for synchronous callers (the toolkit's repositories and
//! timers), on a runtime it owns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use steledb::{AppendResult, EventFilter, ExpectedRevision, NewEvent, RecordedEvent, StreamAppend};
use tokio::runtime::{Handle, Runtime};

use crate::{Client, ClientError, Subscription, SubscriptionReply, SubscriptionStart};

/// [`Client`] with blocking calls. Share it between threads (`Arc`): calls
/// from several threads run concurrently over one connection.
///
/// Calls block their thread. Inside an async runtime use [`Client`]; a call
/// made there anyway (from a `spawn_blocking` closure, say) runs on a
/// helper thread, because blocking on a runtime from inside another one
/// panics.
#[derive(Debug)]
pub struct BlockingClient {
    /// One worker thread drives the connection in the background, so any
    /// number of caller threads can block on their own calls at once; a
    /// current-thread runtime would only make progress while some caller
    /// is inside `block_on`, and callers would take turns driving it.
    /// Shared with the client's subscriptions, which outlive it if they must.
    runtime: Arc<OwnedRuntime>,
    client: Client,
}

/// A runtime that shuts down without waiting for its worker: a runtime
/// dropped the usual way panics when that happens inside an async context.
#[derive(Debug)]
struct OwnedRuntime(Option<Runtime>);

impl OwnedRuntime {
    fn block_on<T: Send>(&self, call: impl Future<Output = Result<T, ClientError>> + Send) -> Result<T, ClientError> {
        let runtime = self.0.as_ref().expect("the runtime is only taken on drop");
        if Handle::try_current().is_err() {
            return runtime.block_on(call);
        }
        // Inside some runtime's context (a `spawn_blocking` closure, say),
        // where `block_on` may panic: block on a helper thread instead.
        std::thread::scope(|scope| scope.spawn(|| runtime.block_on(call)).join())
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl BlockingClient {
    /// Connects to `connection_string` (`kurrentdb://host:port?tls=false`).
    pub fn connect(connection_string: &str) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("steledb-client")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ClientError::Runtime { message: e.to_string() })?;
        let runtime = Arc::new(OwnedRuntime(Some(runtime)));
        let client = runtime.block_on(Client::connect(connection_string))?;
        Ok(Self { runtime, client })
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

    /// See [`Client::subscribe_all`].
    pub fn subscribe_all(
        &self,
        start: SubscriptionStart,
        filter: Option<&EventFilter>,
        checkpoint_every_records: u32,
    ) -> Result<BlockingSubscription, ClientError> {
        let subscription = self.block_on(self.client.subscribe_all(start, filter, checkpoint_every_records))?;
        Ok(BlockingSubscription { runtime: self.runtime.clone(), subscription })
    }

    /// See [`Client::subscribe_stream`].
    pub fn subscribe_stream(
        &self,
        stream: &str,
        start: SubscriptionStart,
    ) -> Result<BlockingSubscription, ClientError> {
        let subscription = self.block_on(self.client.subscribe_stream(stream, start))?;
        Ok(BlockingSubscription { runtime: self.runtime.clone(), subscription })
    }

    /// See [`Client::last_position`].
    pub fn last_position(&self) -> Result<Option<u64>, ClientError> {
        self.block_on(self.client.last_position())
    }

    fn block_on<T: Send>(&self, call: impl Future<Output = Result<T, ClientError>> + Send) -> Result<T, ClientError> {
        self.runtime.block_on(call)
    }
}

/// A [`Subscription`] for synchronous callers.
#[derive(Debug)]
pub struct BlockingSubscription {
    runtime: Arc<OwnedRuntime>,
    subscription: Subscription,
}

impl BlockingSubscription {
    /// The next message, or `None` when none came within `timeout`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<SubscriptionReply>, ClientError> {
        let next = self.subscription.next();
        // `next` is cancel-safe, so a timeout loses nothing.
        self.runtime.block_on(async move {
            match tokio::time::timeout(timeout, next).await {
                Ok(reply) => reply.map(Some),
                Err(_) => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_an_async_runtime_calls_still_work() {
        // A `spawn_blocking` closure of an application's runtime, where the
        // client's own `block_on` would panic.
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("a runtime");
        let call = runtime.spawn_blocking(|| BlockingClient::connect("kurrentdb://127.0.0.1:1?tls=false"));
        let error = runtime.block_on(call).expect("no panic").expect_err("nothing listens there");
        assert!(matches!(&error, ClientError::Connect { uri, .. } if uri == "http://127.0.0.1:1"), "{error:?}");
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
