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
    state.store.append_with(parts, move |result| {
        let _ = sender.send(result);
    });
    let result =
        receiver.await.unwrap_or_else(|_| Err(AppendError::WriterStopped { cause: "the writer exited".to_owned() }));
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

/// Drives `subscription` on the blocking pool and sends what it yields into
/// a bounded channel; a slow client fills the channel and the driver waits,
/// holding no more than the channel's capacity in memory. The writer never
/// waits for it. Ends when the receiver is dropped, after an error, or at
/// shutdown.
pub fn drive(state: SharedState, subscription: Subscription, capacity: usize) -> mpsc::Receiver<Feed> {
    let (sender, receiver) = mpsc::channel(capacity);
    tokio::spawn(async move {
        let _guard = state.metrics.subscription();
        let mut commits = state.commits.clone();
        let mut shutdown = state.shutdown.clone();
        let mut subscription = Some(subscription);
        loop {
            // Mark the current commit seen before reading, so a commit that
            // lands after the read wakes the wait below.
            commits.borrow_and_update();
            let mut current = subscription.take().expect("the subscription is put back after each step");
            let (current, batch) = blocking(move || {
                let mut batch = Vec::new();
                while batch.len() < STEP_MESSAGES_MAX {
                    match current.try_next() {
                        Ok(Some(message)) => batch.push(Ok(message)),
                        Ok(None) => break,
                        Err(error) => {
                            batch.push(Err(error));
                            break;
                        }
                    }
                }
                (current, batch)
            })
            .await;
            subscription = Some(current);
            let idle = batch.is_empty();
            for item in batch {
                let failed = item.is_err();
                if sender.send(item).await.is_err() || failed {
                    return;
                }
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
