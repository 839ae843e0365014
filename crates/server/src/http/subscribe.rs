//! Subscriptions as Server-Sent Events.
//!
//! Each event is an SSE `event: event` whose data is the event's JSON (as
//! in reads) and whose id is its revision (stream subscriptions) or its
//! position (`$all`). `caught_up` is sent once when the subscription first
//! reaches the end of what was written; filtered `$all` subscriptions also
//! send `checkpoint` (`{"position": n}`: everything before `n` has been
//! examined). A failure is sent as `event: error` with the JSON error
//! object as data, and ends the response. Start points are inclusive.
//!
//! A client that reconnects with `Last-Event-ID` (as a browser's
//! `EventSource` does on its own) resumes after that event: the header
//! takes the place of `from`, so nothing is sent twice and nothing skipped.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use steledb::{AllStart, StreamStart, Subscription, SubscriptionMessage};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::params::{stream_name, Params, RawQuery};
use super::ApiError;
use crate::bridge::{self, blocking};
use crate::event_json::event_line;
use crate::state::SharedState;

/// Messages buffered per subscriber before the store side waits for it.
const SUBSCRIPTION_BUFFER: usize = 256;
/// A comment line is sent when nothing else was for this long, so proxies
/// and clients can tell a quiet subscription from a dead connection.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Records a filtered `$all` subscription examines between checkpoints.
const CHECKPOINT_INTERVAL: u64 = 1_000;

/// The `Last-Event-ID` header: the id of the last event a reconnecting
/// client received (a revision or a position, as this module sends them).
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    let text = value
        .to_str()
        .map_err(|_| {
            ApiError::bad_request("invalid_parameter", "header Last-Event-ID is not visible ASCII")
                .with("parameter", "Last-Event-ID")
        })?
        .trim();
    if text.is_empty() {
        // The SSE standard's way of saying "no event yet".
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("header Last-Event-ID: '{text}' is not an event id this server sent (a number)"),
        )
        .with("parameter", "Last-Event-ID")
    })
}

pub async fn subscribe_stream(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: RawQuery,
) -> Response {
    let started = async {
        let stream = stream_name(path)?;
        let params = Params::parse(query, &["from"], &[])?;
        let from = params.stream_start(StreamStart::Start)?;
        let start = match last_event_id(&headers)? {
            Some(revision) => StreamStart::Revision(revision.saturating_add(1)),
            None => from,
        };
        let store = state.store.clone();
        // The store refuses a tombstoned stream up front and starts no
        // earlier than a read would (after a soft delete or truncation).
        let subscription = blocking(move || store.subscribe_stream(&stream, start)).await?;
        Ok::<_, ApiError>(subscription)
    };
    match started.await {
        Ok(subscription) => sse(state, subscription, Id::Revision),
        Err(error) => error.into_response(),
    }
}

pub async fn subscribe_all(State(state): State<SharedState>, headers: HeaderMap, query: RawQuery) -> Response {
    let started = async {
        let params = Params::parse(
            query,
            &["from", "stream_prefix", "type_prefix", "stream_regex", "type_regex"],
            &["stream_prefix", "type_prefix"],
        )?;
        let start = params.all_start(AllStart::Start)?;
        let resume_after = last_event_id(&headers)?;
        let filter = params.filter()?;
        let store = state.store.clone();
        let subscription = blocking(move || -> Result<Subscription, ApiError> {
            let start = match resume_after {
                Some(position) => AllStart::Position(store.resume_after(position)?),
                None => start,
            };
            Ok(store.subscribe_all(start, filter, CHECKPOINT_INTERVAL)?)
        })
        .await?;
        Ok::<_, ApiError>(subscription)
    };
    match started.await {
        Ok(subscription) => sse(state, subscription, Id::Position),
        Err(error) => error.into_response(),
    }
}

#[derive(Clone, Copy)]
enum Id {
    Revision,
    Position,
}

fn sse(state: SharedState, subscription: Subscription, id: Id) -> Response {
    let feed = bridge::drive(state, subscription, SUBSCRIPTION_BUFFER);
    let events = ReceiverStream::new(feed).map(move |item| -> Result<Event, Infallible> {
        Ok(match item {
            Ok(SubscriptionMessage::Event(event)) => {
                let id = match id {
                    Id::Revision => event.revision,
                    Id::Position => event.position,
                };
                Event::default().event("event").id(id.to_string()).data(event_line(&event))
            }
            Ok(SubscriptionMessage::CaughtUp { position }) => {
                Event::default().event("caught_up").data(json!({ "position": position }).to_string())
            }
            Ok(SubscriptionMessage::Checkpoint { position, .. }) => {
                Event::default().event("checkpoint").data(json!({ "position": position }).to_string())
            }
            Err(error) => {
                let error = ApiError::from(error);
                if error.status.is_server_error() {
                    tracing::warn!(code = error.code, "subscription ended: {}", error.message);
                }
                Event::default().event("error").data(error.body())
            }
        })
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE_INTERVAL).text("keep-alive")).into_response()
}
