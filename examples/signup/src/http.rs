//! The HTTP API: sign-ups and activations go to the command side (answered
//! when the log has them), reads come from the read model (which lags).
//!
//! | request                        | success                  | errors                          |
//! |--------------------------------|--------------------------|---------------------------------|
//! | `POST /signups {name, email}`  | 201 `{"id"}`             | 400/409 `{"field","code"}`      |
//! | `POST /users/{id}/activate`    | 200 `{"id","status"}`    | 404 `{"code":"user_not_found"}` |
//! | `GET /users/{id}`              | 200 user                 | 404                             |
//! | `GET /users?email=...`         | 200 user                 | 400 (no email), 404             |

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use steledb::Clock;
use steledb_sdk::Context;
use uuid::Uuid;

use crate::commands::{ActivateError, SignUpError, UserCommands};
use crate::read_model::{ReadModelError, UserQueries};
use crate::user::{Field, FieldCode, FieldError};

/// What the handlers share.
pub struct ApiState {
    pub commands: UserCommands,
    pub queries: UserQueries,
    pub clock: Arc<dyn Clock>,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/signups", post(sign_up))
        .route("/users", get(user_by_email))
        .route("/users/{id}", get(user_by_id))
        .route("/users/{id}/activate", post(activate))
        .with_state(state)
}

/// A failed request, as the client sees it.
#[derive(Debug)]
enum ApiError {
    Field(FieldError),
    /// The body is not the JSON object expected.
    BadBody(String),
    NotFound(&'static str),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::Field(FieldError { field, code }) => {
                let status = if code == FieldCode::Taken { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
                (status, json!({ "field": field, "code": code }))
            }
            Self::BadBody(message) => {
                (StatusCode::BAD_REQUEST, json!({ "field": null, "code": "invalid_body", "message": message }))
            }
            Self::NotFound(code) => (StatusCode::NOT_FOUND, json!({ "code": code })),
            Self::Internal(message) => {
                // The details go to the operator, not to the client.
                eprintln!("signup api: internal error: {message}");
                (StatusCode::INTERNAL_SERVER_ERROR, json!({ "code": "internal" }))
            }
        };
        (status, Json(body)).into_response()
    }
}

impl From<ReadModelError> for ApiError {
    fn from(error: ReadModelError) -> Self {
        Self::Internal(error.to_string())
    }
}

/// Missing fields read as blank, so they get the same field error.
#[derive(Debug, Deserialize)]
struct SignUpRequest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
}

async fn sign_up(
    State(state): State<Arc<ApiState>>,
    body: Result<Json<SignUpRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|rejection| ApiError::BadBody(rejection.body_text()))?;
    // One intent per request: a client retrying after a lost reply would
    // need an idempotency key to reuse the id (not offered here).
    let ctx = Context::new(state.clock.now_us(), Uuid::new_v4());
    let signed_up = blocking(move || state.commands.sign_up(&request.name, &request.email, &ctx)).await?;
    match signed_up {
        Ok(signed_up) => {
            let location = format!("/users/{}", signed_up.user_id);
            let body = Json(json!({ "id": signed_up.user_id, "email": signed_up.email }));
            Ok((StatusCode::CREATED, [(header::LOCATION, location)], body).into_response())
        }
        Err(SignUpError::Field(error)) => Err(ApiError::Field(error)),
        Err(other) => Err(ApiError::Internal(other.to_string())),
    }
}

async fn activate(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let user_id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("user_not_found"))?;
    let ctx = Context::new(state.clock.now_us(), Uuid::new_v4());
    match blocking(move || state.commands.activate(user_id, &ctx)).await? {
        Ok(()) => Ok(Json(json!({ "id": user_id, "status": "active" })).into_response()),
        Err(ActivateError::NotFound { .. }) => Err(ApiError::NotFound("user_not_found")),
        Err(other) => Err(ApiError::Internal(other.to_string())),
    }
}

async fn user_by_id(State(state): State<Arc<ApiState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let user_id = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("user_not_found"))?;
    let user = blocking(move || state.queries.by_id(user_id)).await??;
    let user = user.ok_or(ApiError::NotFound("user_not_found"))?;
    Ok(Json(user).into_response())
}

#[derive(Debug, Deserialize)]
struct EmailQuery {
    #[serde(default)]
    email: String,
}

async fn user_by_email(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<EmailQuery>,
) -> Result<Response, ApiError> {
    if query.email.trim().is_empty() {
        return Err(ApiError::Field(FieldError { field: Field::Email, code: FieldCode::Blank }));
    }
    let user = blocking(move || state.queries.by_email(&query.email)).await??;
    let user = user.ok_or(ApiError::NotFound("user_not_found"))?;
    Ok(Json(user).into_response())
}

/// Runs store appends and SQLite reads on the blocking pool: both wait on
/// disk (an append waits for its fsync).
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::Internal(format!("handler task failed: {e}")))
}
