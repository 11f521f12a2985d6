//! The one error type of the HTTP API: every failure becomes a JSON `ErrorBody` with a
//! stable code and a message that says what to fix. Internal details (store errors,
//! engine errors) are logged and never sent to the client.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_api::{ErrorBody, ErrorDetail};

#[derive(Debug)]
pub(crate) enum AppError {
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    Invalid(String),
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    NoRoute(String),
    Internal(String),
}

impl AppError {
    fn parts(&self) -> (StatusCode, &'static str, &str) {
        match self {
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            Self::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            Self::Invalid(m) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", m),
            Self::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m),
            Self::UnsupportedMediaType(m) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", m)
            }
            Self::NoRoute(m) => (StatusCode::NOT_FOUND, "no_route", m),
            Self::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        }
    }

    /// An unexpected failure: logged with its detail; the client gets a generic message.
    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error while handling a request");
        Self::Internal(
            "the server failed to handle this request; see the server log for details".into(),
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let body =
            ErrorBody { error: ErrorDetail { code: code.to_owned(), message: message.to_owned() } };
        (status, axum::Json(body)).into_response()
    }
}

impl From<berth_store::StoreError> for AppError {
    fn from(error: berth_store::StoreError) -> Self {
        match error {
            berth_store::StoreError::Conflict(message) => Self::Conflict(message),
            other => Self::internal(other),
        }
    }
}

impl From<berth_engine::EngineError> for AppError {
    fn from(error: berth_engine::EngineError) -> Self {
        Self::internal(error)
    }
}

impl From<berth_domain::NameError> for AppError {
    fn from(error: berth_domain::NameError) -> Self {
        Self::Invalid(error.to_string())
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType(
                "send the body as JSON with the header `Content-Type: application/json`".into(),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge(format!(
                    "the request body is larger than the limit of {} KiB",
                    crate::api::BODY_LIMIT_BYTES / 1024
                ))
            }
            other => Self::Invalid(format!("the request body is not valid: {}", other.body_text())),
        }
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        Self::Invalid(format!("invalid path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for AppError {
    fn from(rejection: QueryRejection) -> Self {
        Self::Invalid(format!("invalid query string: {}", rejection.body_text()))
    }
}

pub(crate) type ApiResult<T> = Result<T, AppError>;
