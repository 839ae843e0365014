//! [`EventStore`] over a running server, through the blocking gRPC client
//! (feature `remote`). The errors the toolkit acts on (a concurrency
//! conflict, a deleted stream) come back typed as from the embedded store.

use std::time::Duration;

use steledb::{AppendResult, RecordedEvent, StreamAppend};
use steledb_client::{BlockingClient, BlockingSubscription, ClientError, SubscriptionReply, SubscriptionStart};

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
        let after = |last: Option<u64>| last.map_or(SubscriptionStart::Start, SubscriptionStart::After);
        let subscription = match to {
            SubscribeTo::All { after_position, filter } => {
                let every = u32::try_from(FILTER_CHECKPOINT_INTERVAL_RECORDS).unwrap_or(u32::MAX);
                self.subscribe_all(after(after_position), filter, every)?
            }
            SubscribeTo::Stream { stream, after_revision } => self.subscribe_stream(stream, after(after_revision))?,
        };
        Ok(Box::new(subscription))
    }

    fn last_position(&self) -> Result<Option<u64>, StoreError> {
        Ok(BlockingClient::last_position(self)?)
    }
}

impl EventSubscription for BlockingSubscription {
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Delivery>, StoreError> {
        loop {
            return Ok(match BlockingSubscription::next_timeout(self, timeout)? {
                Some(SubscriptionReply::Event(event)) => Some(Delivery::Event(event)),
                Some(SubscriptionReply::Checkpoint { position }) => Some(Delivery::Scanned { position }),
                Some(SubscriptionReply::CaughtUp) => Some(Delivery::CaughtUp),
                // The server reads from disk again; nothing for a consumer to do.
                Some(SubscriptionReply::FellBehind) => continue,
                None => None,
            });
        }
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
