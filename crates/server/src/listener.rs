//! The accept loop's listener: at most `connections_max` connections open
//! at once, `TCP_NODELAY` on each, and a gauge of open connections.
//!
//! At the limit the server stops accepting: further clients wait in the
//! kernel's backlog (their connect succeeds, their first request waits)
//! until a connection closes, instead of each costing the server a task and
//! buffers. A connection that sends nothing within `first_bytes_timeout`
//! of being accepted is closed, so silent sockets cannot hold every place;
//! after its first bytes a connection is never dropped (an SSE subscriber
//! may send nothing more for hours).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// How long to pause after an `accept` error (out of file descriptors,
/// say) before trying again, so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    first_bytes_timeout: Duration,
}

impl LimitedListener {
    pub fn new(
        inner: TcpListener,
        connections_max: usize,
        first_bytes_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        assert!(connections_max > 0);
        Self { inner, permits: Arc::new(Semaphore::new(connections_max)), metrics, first_bytes_timeout }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                tracing::warn!("connection limit reached; new connections wait until one closes");
                self.permits.clone().acquire_owned().await.expect("the semaphore is never closed")
            }
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, address)) => {
                    // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs
                    // stall small replies (a read's last frames) by ~40 ms.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::warn!(%error, "cannot set TCP_NODELAY");
                    }
                    self.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
                    let silence = Box::pin(tokio::time::sleep(self.first_bytes_timeout));
                    let metrics = self.metrics.clone();
                    let connection = Connection { stream, _permit: permit, metrics, silence: Some(silence) };
                    return (connection, address);
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; it gives its place back when dropped.
pub struct Connection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
    /// Until the first bytes arrive: when it fires, reads end (EOF) and
    /// the server closes the connection.
    silence: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let filled_before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if self.silence.is_none() {
            return result;
        }
        if result.is_ready() {
            if buf.filled().len() > filled_before {
                self.silence = None;
            }
            return result;
        }
        let silence = self.silence.as_mut().expect("checked above");
        if silence.as_mut().poll(cx).is_ready() {
            tracing::debug!("closing a connection that sent nothing");
            return Poll::Ready(Ok(())); // end of stream
        }
        result
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
