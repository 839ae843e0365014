//! [`EventStore`] over a running server, through the blocking gRPC client
//! (feature `remote`). The errors the toolkit acts on (a concurrency
//! conflict, a deleted stream) come back typed as from the embedded store.
//!
//! Subscriptions outlive the server's restarts: when the connection drops
//! or the server ends the call, [`ResumingSubscription`] subscribes again
//! after the last event or checkpoint it delivered, with back-off while the
//! server is away. A consumer only sees a pause, as it would on an
//! embedded store that had nothing new.

use std::time::{Duration, Instant};

use steledb::{AppendResult, EventFilter, RecordedEvent, StreamAppend};
use steledb_client::{BlockingClient, BlockingSubscription, ClientError, Code, SubscriptionReply, SubscriptionStart};

use crate::limits::FILTER_CHECKPOINT_INTERVAL_RECORDS;
use crate::store::{Delivery, EventSubscription, SubscribeTo};
use crate::{EventStore, StoreError};

impl From<ClientError> for StoreError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::WrongExpectedRevision { stream, expected, actual } => {
                Self::WrongExpectedRevision { stream, expected, actual }
            }
            ClientError::StreamDeleted { stream } => Self::StreamDeleted { stream },
            other => Self::Backend(Box::new(other)),
        }
    }
}

impl EventStore for BlockingClient {
    fn read_forward(&self, stream: &str, from_revision: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        // As on the embedded store, a stream that is not there reads as empty.
        match BlockingClient::read_forward(self, stream, from_revision, limit as u64) {
            Err(ClientError::StreamNotFound { .. }) => Ok(Vec::new()),
            other => Ok(other?),
        }
    }

    fn read_last(&self, stream: &str) -> Result<Option<RecordedEvent>, StoreError> {
        match BlockingClient::read_last(self, stream) {
            Err(ClientError::StreamNotFound { .. }) => Ok(None),
            other => Ok(Some(other?)),
        }
    }

    fn append_multi(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>, StoreError> {
        Ok(BlockingClient::append_multi(self, parts)?)
    }

    fn subscribe(&self, to: SubscribeTo<'_>) -> Result<Box<dyn EventSubscription>, StoreError> {
        let resume = match to {
            SubscribeTo::All { after_position, filter } => Resume::All { after_position, filter: filter.cloned() },
            SubscribeTo::Stream { stream, after_revision } => {
                Resume::Stream { stream: stream.to_owned(), after_revision }
            }
        };
        // The first call's failure (a refused start, an unreachable server)
        // is the caller's to see; later ones are retried.
        let current = resume.open(self)?;
        Ok(Box::new(ResumingSubscription {
            client: self.clone(),
            resume,
            current: Some(current),
            retry_at: Instant::now(),
            backoff: RESUBSCRIBE_BACKOFF_MIN,
        }))
    }

    fn last_position(&self) -> Result<Option<u64>, StoreError> {
        Ok(BlockingClient::last_position(self)?)
    }
}

/// The first wait before subscribing again after a failure; it doubles up
/// to [`RESUBSCRIBE_BACKOFF_MAX`] while the server stays away.
const RESUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RESUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Where a remote subscription goes on from.
enum Resume {
    All { after_position: Option<u64>, filter: Option<EventFilter> },
    Stream { stream: String, after_revision: Option<u64> },
}

impl Resume {
    fn open(&self, client: &BlockingClient) -> Result<BlockingSubscription, ClientError> {
        let after = |last: Option<u64>| last.map_or(SubscriptionStart::Start, SubscriptionStart::After);
        match self {
            Self::All { after_position, filter } => {
                let every = u32::try_from(FILTER_CHECKPOINT_INTERVAL_RECORDS).unwrap_or(u32::MAX);
                client.subscribe_all(after(*after_position), filter.as_ref(), every)
            }
            Self::Stream { stream, after_revision } => client.subscribe_stream(stream, after(*after_revision)),
        }
    }

    fn note_event(&mut self, event: &RecordedEvent) {
        match self {
            Self::All { after_position, .. } => *after_position = (*after_position).max(Some(event.position)),
            Self::Stream { after_revision, .. } => *after_revision = Some(event.revision),
        }
    }

    fn note_scanned(&mut self, position: u64) {
        if let Self::All { after_position, .. } = self {
            *after_position = (*after_position).max(Some(position));
        }
    }
}

/// A remote subscription that subscribes again after the connection or
/// the server's call ends (see the module documentation).
struct ResumingSubscription {
    client: BlockingClient,
    resume: Resume,
    /// `None` between a failure and the next successful subscribe.
    current: Option<BlockingSubscription>,
    retry_at: Instant,
    backoff: Duration,
}

impl EventSubscription for ResumingSubscription {
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Delivery>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let Some(current) = self.current.as_mut() else {
                if now < self.retry_at {
                    if now >= deadline {
                        return Ok(None);
                    }
                    std::thread::sleep(self.retry_at.min(deadline) - now);
                    continue;
                }
                match self.resume.open(&self.client) {
                    Ok(subscription) => {
                        self.current = Some(subscription);
                        self.backoff = RESUBSCRIBE_BACKOFF_MIN;
                    }
                    Err(error) if is_transient(&error) => {
                        self.retry_at = Instant::now() + self.backoff;
                        self.backoff = (self.backoff * 2).min(RESUBSCRIBE_BACKOFF_MAX);
                    }
                    Err(error) => return Err(error.into()),
                }
                continue;
            };
            match current.next_timeout(deadline.saturating_duration_since(now)) {
                Ok(Some(SubscriptionReply::Event(event))) => {
                    self.resume.note_event(&event);
                    return Ok(Some(Delivery::Event(event)));
                }
                Ok(Some(SubscriptionReply::Checkpoint { position })) => {
                    self.resume.note_scanned(position);
                    return Ok(Some(Delivery::Scanned { position }));
                }
                Ok(Some(SubscriptionReply::CaughtUp)) => return Ok(Some(Delivery::CaughtUp)),
                // The server reads from disk again; nothing for a consumer to do.
                Ok(Some(SubscriptionReply::FellBehind)) => {}
                Ok(None) => return Ok(None),
                Err(error) if is_transient(&error) => {
                    // Straight away once: a server that restarted is back.
                    self.current = None;
                    self.retry_at = now;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Failures of the connection or of the server's availability, after
/// which subscribing again can succeed; a refused request (a tombstoned
/// stream, a position that is not an event) cannot.
pub(crate) fn is_transient(error: &ClientError) -> bool {
    match error {
        ClientError::Connect { .. }
        | ClientError::Transport { .. }
        | ClientError::Timeout { .. }
        | ClientError::SubscriptionEnded => true,
        ClientError::Status { code, .. } => {
            matches!(code, Code::Unknown | Code::Unavailable | Code::Cancelled | Code::Aborted)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use steledb::{CurrentRevision, ExpectedRevision};

    use super::*;

    #[test]
    fn conflicts_and_deleted_streams_stay_typed_and_the_rest_keeps_the_client_error() {
        let wrong = ClientError::WrongExpectedRevision {
            stream: "a-1".to_owned(),
            expected: ExpectedRevision::Exact(2),
            actual: CurrentRevision::Current(3),
        };
        assert!(matches!(
            StoreError::from(wrong),
            StoreError::WrongExpectedRevision {
                expected: ExpectedRevision::Exact(2),
                actual: CurrentRevision::Current(3),
                ..
            }
        ));
        let deleted = StoreError::from(ClientError::StreamDeleted { stream: "a-1".to_owned() });
        assert!(matches!(deleted, StoreError::StreamDeleted { stream } if stream == "a-1"));
        let timeout = StoreError::from(ClientError::Timeout { timeout_ms: 30_000 });
        let StoreError::Backend(inner) = timeout else { panic!("a timeout is a backend error") };
        assert_eq!(inner.downcast_ref::<ClientError>(), Some(&ClientError::Timeout { timeout_ms: 30_000 }));
    }
}
