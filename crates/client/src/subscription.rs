//! Catch-up subscriptions: what came before the start point from disk,
//! then live appends, over one `Streams.Read` call that stays open.

use steledb::RecordedEvent;
use tonic::Streaming;

use crate::read_codec::ReadItem;
use crate::ClientError;

/// One message of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionReply {
    Event(RecordedEvent),
    /// A filtered `$all` subscription examined every record up to and
    /// including the one at `position` (those that matched came before
    /// this). Resuming after `position` misses nothing.
    Checkpoint {
        position: u64,
    },
    /// The subscription reached the end of the log; live from here.
    CaughtUp,
    /// The subscription fell behind the live end and reads from disk again.
    FellBehind,
}

/// A running subscription. Dropping it ends the call.
#[derive(Debug)]
pub struct Subscription {
    replies: Streaming<ReadItem>,
    /// The stream subscribed to (empty for `$all`), for errors.
    stream: String,
}

impl Subscription {
    pub(crate) fn new(replies: Streaming<ReadItem>, stream: &str) -> Self {
        Self { replies, stream: stream.to_owned() }
    }

    /// The next message, waiting as long as it takes. Cancel-safe: a
    /// message is taken off the connection only when it is returned, so
    /// the call may be raced against a timeout.
    pub async fn next(&mut self) -> Result<SubscriptionReply, ClientError> {
        loop {
            let reply =
                self.replies.message().await.map_err(|status| ClientError::from_status(&status, &self.stream))?;
            let Some(reply) = reply else { return Err(ClientError::SubscriptionEnded) };
            match reply {
                ReadItem::Event(event) => return Ok(SubscriptionReply::Event(event)),
                ReadItem::Checkpoint { commit_position } => {
                    return Ok(SubscriptionReply::Checkpoint { position: commit_position })
                }
                ReadItem::CaughtUp => return Ok(SubscriptionReply::CaughtUp),
                ReadItem::FellBehind => return Ok(SubscriptionReply::FellBehind),
                ReadItem::StreamNotFound => return Err(ClientError::StreamNotFound { stream: self.stream.clone() }),
                ReadItem::Invalid { message } => return Err(ClientError::Protocol { message }),
                // The confirmation, and positions only reads carry.
                ReadItem::Other => {}
            }
        }
    }
}
