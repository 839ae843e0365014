//! The HTTP/JSON API, on the same port as gRPC.
//!
//! | Route | |
//! |---|---|
//! | `POST /streams/{stream}` | append one event or an array of them |
//! | `GET /streams/{stream}` | read a stream |
//! | `DELETE /streams/{stream}` | soft-delete or tombstone a stream |
//! | `GET /streams/{stream}/subscribe` | Server-Sent Events: catch up, then live |
//! | `GET /all` | read `$all`, optionally filtered |
//! | `GET /all/subscribe` | Server-Sent Events over `$all` |
//! | `GET /health`, `GET /metrics` | liveness and Prometheus counters |
//!
//! Every error is JSON: `{"error": {"code": "<stable_snake_case>", "message": "...", ...}}`.

mod body;
mod error;
mod metadata;
mod params;
mod read;
mod subscribe;
mod write;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::state::SharedState;

pub use error::ApiError;

/// Room in a request body beyond the store's append limit: base64 makes
/// binary data 4/3 as large, and every event carries JSON framing.
const BODY_SLACK_BYTES: usize = 4 * 1024 * 1024;

/// The largest request body accepted for an append, from the store's limit.
pub fn body_limit_bytes(append_size_bytes_max: usize) -> usize {
    append_size_bytes_max.saturating_add(append_size_bytes_max / 3).saturating_add(BODY_SLACK_BYTES)
}

pub fn router(state: SharedState) -> Router {
    let body_limit = body_limit_bytes(state.config.limits.append_size_bytes_max);
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/streams/{stream}", get(read::read_stream).post(write::append).delete(write::delete))
        .route("/streams/{stream}/subscribe", get(subscribe::subscribe_stream))
        .route("/streams/{stream}/metadata", get(metadata::get_metadata).put(metadata::put_metadata))
        .route("/all", get(read::read_all))
        .route("/all/subscribe", get(subscribe::subscribe_all))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// For requests no route matches: gRPC clients get gRPC's "unimplemented"
/// (as tonic would answer), everyone else a JSON 404.
pub async fn fallback(request: Request) -> Response {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("").into_http::<()>().into_parts();
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    let message = format!("no route for {} {}", request.method(), request.uri().path());
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", message).into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    let message = format!("{} is not supported on {}", request.method(), request.uri().path());
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message).into_response()
}

async fn health(State(state): State<SharedState>) -> impl IntoResponse {
    match state.store.writer_stopped() {
        None => {
            let end_position = state.store.end_position();
            // Appends still work while index flushes fail; say so, still 200.
            let body = match state.store.index_error() {
                None => serde_json::json!({ "status": "ok", "end_position": end_position }),
                Some(error) => {
                    serde_json::json!({ "status": "degraded", "end_position": end_position, "index_error": error })
                }
            };
            (StatusCode::OK, Json(body))
        }
        Some(cause) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "writer_stopped", "cause": cause })))
        }
    }
}

async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let body = state.metrics.render(&state.store);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// A JSON response from bytes already serialized.
fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
