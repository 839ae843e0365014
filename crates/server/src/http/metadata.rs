//! `GET` and `PUT /streams/{stream}/metadata`: a stream's metadata (`$maxCount`,
//! `$maxAge` in seconds, `$tb`, `$cacheControl` and any custom keys) as one
//! JSON object, stored as the newest event of `$$stream` as KurrentDB does.
//! `expected` (query or `Stele-Expected-Revision`) is checked against the
//! metadata stream's revision, which `GET` returns as `revision`.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use steledb::StreamMetadata;

use super::params::{stream_name, Params, RawQuery};
use super::ApiError;
use crate::bridge::blocking;
use crate::state::SharedState;

/// Metadata is a small JSON object; this is far above any real one.
const METADATA_BYTES_MAX: usize = 1024 * 1024;

pub async fn get_metadata(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
) -> Response {
    let reply = async {
        let stream = stream_name(path)?;
        Params::parse(query, &[], &[])?;
        let store = state.store.clone();
        // The revision first: a write landing between the two reads then
        // makes a PUT with this revision fail (409), instead of letting it
        // overwrite metadata the client never saw.
        let (metadata, revision) = blocking(move || -> Result<_, ApiError> {
            let revision = store.stream_metadata_revision(&stream)?;
            Ok((store.stream_metadata(&stream)?, revision))
        })
        .await?;
        let metadata: Value = serde_json::from_slice(&metadata.to_json()).expect("metadata is written as JSON");
        Ok::<_, ApiError>(Json(json!({ "revision": revision, "metadata": metadata })))
    };
    match reply.await {
        Ok(reply) => reply.into_response(),
        Err(error) => error.into_response(),
    }
}

pub async fn put_metadata(
    State(state): State<SharedState>,
    path: Result<Path<String>, PathRejection>,
    query: RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = async {
        let stream = stream_name(path)?;
        let params = Params::parse(query, &["expected"], &[])?;
        let expected = params.expected(&headers)?;
        if body.len() > METADATA_BYTES_MAX {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("stream metadata is limited to {METADATA_BYTES_MAX} bytes"),
            )
            .with("limit_bytes", METADATA_BYTES_MAX));
        }
        let metadata = StreamMetadata::from_json(&body).map_err(|reason| {
            ApiError::bad_request("invalid_metadata", format!("invalid stream metadata: {reason}"))
        })?;
        let store = state.store.clone();
        let result = blocking(move || store.set_stream_metadata(&stream, expected, metadata)).await?;
        Ok(Json(json!({ "revision": result.last_revision, "position": result.last_position })))
    };
    match reply.await {
        Ok(reply) => reply.into_response(),
        Err(error) => error.into_response(),
    }
}
