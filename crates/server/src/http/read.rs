//! `GET /streams/{stream}` and `GET /all`.

use std::sync::atomic::Ordering;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use steledb::{AllStart, Direction, EventFilter, Store, StreamStart};

use super::params::{stream_name, Params, RawQuery};
use super::{json_bytes, ApiError};
use crate::bridge::blocking;
use crate::event_json::write_event;
use crate::state::SharedState;

/// Events fetched from the store per step; bounds what one step holds.
const PAGE_EVENTS: usize = 64;
/// A reply stops growing past this many bytes (it always holds at least
/// one event); the client continues from where it ends.
pub const REPLY_BYTES_MAX: usize = 16 * 1024 * 1024;

pub async fn read_stream(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
) -> Response {
    match read_stream_inner(state, path, query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn read_stream_inner(
    state: SharedState,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let stream = stream_name(path)?;
    let params = Params::parse(query, &["from", "limit", "direction"], &[])?;
    let direction = params.direction()?;
    let default_start = match direction {
        Direction::Forward => StreamStart::Start,
        Direction::Backward => StreamStart::End,
    };
    let start = params.stream_start(default_start)?;
    let limit = params.limit()?;
    state.metrics.reads.fetch_add(1, Ordering::Relaxed);
    let store = state.store.clone();
    let body = blocking(move || stream_page(&store, &stream, start, direction, limit)).await?;
    Ok(json_bytes(StatusCode::OK, body))
}

/// `{"events": [...]}`: up to `limit` events, read a page at a time.
fn stream_page(
    store: &Store,
    stream: &str,
    mut start: StreamStart,
    direction: Direction,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut out = b"{\"events\":[".to_vec();
    let mut count = 0;
    // Read at least once, even for limit=0, so a missing stream is reported.
    let mut first = true;
    while first || count < limit {
        first = false;
        let page = (limit - count).min(PAGE_EVENTS);
        let events = store.read_stream(stream, start, direction, page)?;
        let fetched = events.len();
        let last = events.last().map(|e| e.revision);
        for event in &events {
            if count > 0 {
                out.push(b',');
            }
            write_event(&mut out, event);
            count += 1;
            if out.len() >= REPLY_BYTES_MAX {
                out.extend_from_slice(b"]}");
                return Ok(out);
            }
        }
        match (last, direction) {
            (Some(last), Direction::Forward) if fetched == page => start = StreamStart::Revision(last + 1),
            (Some(last), Direction::Backward) if fetched == page && last > 0 => start = StreamStart::Revision(last - 1),
            _ => break,
        }
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

pub async fn read_all(State(state): State<SharedState>, query: RawQuery) -> Response {
    match read_all_inner(state, query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn read_all_inner(state: SharedState, query: RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(
        query,
        &["from", "limit", "direction", "stream_prefix", "type_prefix", "stream_regex", "type_regex"],
        &["stream_prefix", "type_prefix"],
    )?;
    let direction = params.direction()?;
    let default_start = match direction {
        Direction::Forward => AllStart::Start,
        Direction::Backward => AllStart::End,
    };
    let start = params.all_start(default_start)?;
    let limit = params.limit()?;
    let filter = params.filter()?;
    state.metrics.reads.fetch_add(1, Ordering::Relaxed);
    let store = state.store.clone();
    let body = blocking(move || {
        check_position(&store, start)?;
        all_page(&store, start, direction, limit, filter.as_ref())
    })
    .await?;
    Ok(json_bytes(StatusCode::OK, body))
}

/// A position from a client must be where an event starts (or 0, or the end).
pub fn check_position(store: &Store, start: AllStart) -> Result<(), ApiError> {
    let AllStart::Position(position) = start else { return Ok(()) };
    Ok(store.check_all_position(position)?)
}

/// `{"events": [...], "next_position": n, "is_end": bool}`.
fn all_page(
    store: &Store,
    mut start: AllStart,
    direction: Direction,
    limit: usize,
    filter: Option<&EventFilter>,
) -> Result<Vec<u8>, ApiError> {
    let mut out = b"{\"events\":[".to_vec();
    let mut count = 0;
    let mut next_position = match start {
        AllStart::Start => 0,
        AllStart::End => store.end_position(),
        AllStart::Position(p) => p,
    };
    let mut is_end = false;
    let mut first = true;
    while first || count < limit {
        first = false;
        let page = (limit - count).min(PAGE_EVENTS);
        let slice = store.read_all(start, direction, page, filter)?;
        next_position = slice.next_position;
        is_end = slice.is_end;
        for event in &slice.events {
            if count > 0 {
                out.push(b',');
            }
            write_event(&mut out, event);
            count += 1;
            if out.len() >= REPLY_BYTES_MAX {
                // Cut short inside a page: continue right after this event.
                let last = event.position;
                next_position = match direction {
                    Direction::Forward => store.position_after(last)?,
                    Direction::Backward => last,
                };
                is_end = false;
                break;
            }
        }
        if is_end || out.len() >= REPLY_BYTES_MAX {
            break;
        }
        start = AllStart::Position(next_position);
    }
    out.extend_from_slice(b"],\"next_position\":");
    out.extend_from_slice(next_position.to_string().as_bytes());
    out.extend_from_slice(if is_end { b",\"is_end\":true}" } else { b",\"is_end\":false}" });
    Ok(out)
}
