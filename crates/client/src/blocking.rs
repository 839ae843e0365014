//! The client for synchronous callers (the toolkit's repositories and
//! timers), on a runtime it owns.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use steledb::{AppendResult, EventFilter, ExpectedRevision, NewEvent, RecordedEvent, StreamAppend};
use tokio::runtime::Runtime;

use crate::{Client, ClientError, Subscription, SubscriptionReply, SubscriptionStart};

/// [`Client`] with blocking calls. Share it between threads (`Arc`): calls
/// from several threads run concurrently over one connection.
///
/// Calls block their thread, from any thread: a plain one, a
/// `spawn_blocking` closure, even an async task of another runtime (which
/// then stalls that runtime's worker: use [`Client`] there). Clones share
/// the connection and the runtime.
#[derive(Debug, Clone)]
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
    /// Runs `call` to completion on the calling thread, parking it while
    /// the call waits. The runtime's worker drives the connection and wakes
    /// the thread. Unlike `Runtime::block_on`, which panics on a thread
    /// that is running another runtime's tasks, this works on any thread.
    fn block_on<T>(&self, call: impl Future<Output = T>) -> T {
        let runtime = self.0.as_ref().expect("the runtime is only taken on drop");
        // Timers and sockets the call creates register with this runtime.
        let _entered = runtime.enter();
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut context = Context::from_waker(&waker);
        let mut call = std::pin::pin!(call);
        loop {
            if let Poll::Ready(value) = call.as_mut().poll(&mut context) {
                return value;
            }
            // A wake before the park makes the park return at once;
            // a spurious return only polls again.
            std::thread::park();
        }
    }
}

/// Wakes a parked caller thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
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

    fn block_on<T>(&self, call: impl Future<Output = Result<T, ClientError>>) -> Result<T, ClientError> {
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
    fn calls_work_from_inside_another_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let refused =
            |error: ClientError| matches!(&error, ClientError::Connect { uri, .. } if uri == "http://127.0.0.1:1");
        // An async task of another runtime, where `Runtime::block_on` panics.
        let error = runtime
            .block_on(async { BlockingClient::connect("kurrentdb://127.0.0.1:1?tls=false") })
            .expect_err("nothing listens there");
        assert!(refused(error.clone()), "{error:?}");
        // A `spawn_blocking` closure.
        let call = runtime.spawn_blocking(|| BlockingClient::connect("kurrentdb://127.0.0.1:1?tls=false"));
        let error = runtime.block_on(call).expect("no panic").expect_err("nothing listens there");
        assert!(refused(error.clone()), "{error:?}");
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
