//! The HTTP/JSON API, on the same port as gRPC.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::state::SharedState;

pub fn router(state: SharedState) -> Router {
    Router::new().route("/health", get(health)).route("/metrics", get(metrics)).with_state(state)
}

async fn health(State(state): State<SharedState>) -> impl IntoResponse {
    match state.store.writer_stopped() {
        None => {
            (StatusCode::OK, Json(serde_json::json!({ "status": "ok", "end_position": state.store.end_position() })))
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
