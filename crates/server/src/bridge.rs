//! Between the async front ends and the store: appends through the
//! writer's callback (no thread blocks), reads on the blocking pool, and
//! subscriptions driven batch by batch with back-pressure from the client.

use steledb::{AppendError, AppendResult, ReadError, StreamAppend, Subscription, SubscriptionMessage};
use tokio::sync::{mpsc, oneshot};

use crate::state::SharedState;

/// Appends and waits for the durable outcome.
pub async fn append(state: &SharedState, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, AppendError> {
    let events: usize = parts.iter().map(|p| p.events.len()).sum();
    let bytes: usize = parts.iter().flat_map(|p| &p.events).map(|e| e.size_bytes()).sum();
    let (sender, receiver) = oneshot::channel();
    // The parts come back to be freed here rather than on the writer thread.
    state.store.append_with(parts, move |result, parts| {
        let _ = sender.send((result, parts));
    });
    let result = receiver
        .await
        .map(|(result, _parts)| result)
        .unwrap_or_else(|_| Err(AppendError::WriterStopped { cause: "the writer exited".to_owned() }));
    match &result {
        Ok(results) if results.iter().all(|r| r.duplicate) => {}
        Ok(_) => state.metrics.record_append(events, bytes),
        Err(error) => state.metrics.record_append_error(error),
    }
    result
}

/// Runs store work that may touch the disk on the blocking pool.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Messages handed to the client at most this many at a time per step.
const STEP_MESSAGES_MAX: usize = 256;

pub type Feed = Result<SubscriptionMessage, ReadError>;

/// Drives `subscription` on the blocking pool and sends what it yields,
/// converted by `convert` on the blocking thread, in batches into a bounded
/// channel of `capacity` batches. A slow client fills the channel and the
/// driver waits, holding no more than that in memory; the writer never
/// waits for it. Ends when the receiver is dropped, after an error, or at
/// shutdown.
pub fn drive_batches<T, F>(
    state: SharedState,
    subscription: Subscription,
    capacity: usize,
    convert: F,
) -> mpsc::Receiver<Vec<T>>
where
    T: Send + 'static,
    F: FnMut(Feed) -> T + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    tokio::spawn(async move {
        let _guard = state.metrics.subscription();
        let mut commits = state.commits.clone();
        let mut shutdown = state.shutdown.clone();
        let mut parked = Some((subscription, convert));
        loop {
            // Mark the current commit seen before reading, so a commit that
            // lands after the read wakes the wait below.
            commits.borrow_and_update();
            let (mut current, mut convert) = parked.take().expect("the subscription is put back after each step");
            let (current, convert, batch, failed) = blocking(move || {
                let mut batch = Vec::new();
                let mut failed = false;
                while batch.len() < STEP_MESSAGES_MAX {
                    match current.try_next() {
                        Ok(Some(message)) => batch.push(convert(Ok(message))),
                        Ok(None) => break,
                        Err(error) => {
                            batch.push(convert(Err(error)));
                            failed = true;
                            break;
                        }
                    }
                }
                (current, convert, batch, failed)
            })
            .await;
            parked = Some((current, convert));
            let idle = batch.is_empty();
            if !idle && (sender.send(batch).await.is_err() || failed) {
                return;
            }
            if *shutdown.borrow() {
                return;
            }
            if idle {
                tokio::select! {
                    changed = commits.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                    _ = sender.closed() => return,
                }
            }
        }
    });
    receiver
}

/// `drive_batches` delivered one message at a time, for consumers that
/// handle each message on its own (Server-Sent Events).
pub fn drive(state: SharedState, subscription: Subscription, capacity: usize) -> mpsc::Receiver<Feed> {
    let mut batches = drive_batches(state, subscription, capacity.div_ceil(STEP_MESSAGES_MAX), |feed| feed);
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    tokio::spawn(async move {
        while let Some(batch) = batches.recv().await {
            for item in batch {
                if sender.send(item).await.is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

/// A response stream fed in batches: one channel operation per batch, and
/// every message of a batch is ready at once, so the encoder can fill a
/// whole write with them.
pub struct Batched<T> {
    receiver: mpsc::Receiver<Vec<T>>,
    current: std::vec::IntoIter<T>,
}

impl<T> Batched<T> {
    pub fn new(receiver: mpsc::Receiver<Vec<T>>) -> Self {
        Self { receiver, current: Vec::new().into_iter() }
    }
}

impl<T: Unpin> tokio_stream::Stream for Batched<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        loop {
            if let Some(item) = self.current.next() {
                return std::task::Poll::Ready(Some(item));
            }
            match self.receiver.poll_recv(context) {
                std::task::Poll::Ready(Some(batch)) => self.current = batch.into_iter(),
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}
