//! `POST /streams/{stream}` (append) and `DELETE /streams/{stream}`.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use steledb::StreamAppend;

use super::body::parse_events;
use super::params::{stream_name, Params, RawQuery};
use super::{body_limit_bytes, ApiError};
use crate::bridge::{self, blocking};
use crate::state::SharedState;

pub async fn append(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
    request: Request,
) -> Response {
    match append_inner(state, path, query, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn append_inner(
    state: SharedState,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let stream = stream_name(path)?;
    let params = Params::parse(query, &["expected"], &[])?;
    let expected = params.expected(request.headers())?;
    let body = read_body(&state, request).await?;
    let events = parse_events(&body, state.config.limits.append_events_max)?;
    drop(body);
    let mut results = bridge::append(&state, vec![StreamAppend::new(stream, expected, events)]).await?;
    let result = results.pop().ok_or_else(|| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the store returned no result for the append")
    })?;
    let status = if result.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let reply = json!({
        "first_revision": result.first_revision,
        "last_revision": result.last_revision,
        "first_position": result.first_position,
        "last_position": result.last_position,
        "duplicate": result.duplicate,
    });
    Ok((status, Json(reply)).into_response())
}

/// The whole body, refused with 413 beyond the limit: at once when the
/// declared length is too large (before reading any of it), else as soon as
/// the bytes read pass the limit.
async fn read_body(state: &SharedState, request: Request) -> Result<Bytes, ApiError> {
    let limit = body_limit_bytes(state.config.limits.append_size_bytes_max);
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
        .with("limit_bytes", limit)
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad_request(
                "body_read_failed",
                format!("reading the request body failed: {}", rejection.body_text()),
            )
        }
    })
}

pub async fn delete(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
    headers: HeaderMap,
) -> Response {
    match delete_inner(state, path, query, headers).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn delete_inner(
    state: SharedState,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let stream = stream_name(path)?;
    let params = Params::parse(query, &["expected", "tombstone"], &[])?;
    let expected = params.expected(&headers)?;
    let tombstone = params.flag("tombstone")?;
    let store = state.store.clone();
    let result = blocking(move || {
        if tombstone {
            store.tombstone_stream(&stream, expected)
        } else {
            store.delete_stream(&stream, expected)
        }
    })
    .await?;
    Ok((StatusCode::OK, Json(json!({ "position": result.last_position }))).into_response())
}
