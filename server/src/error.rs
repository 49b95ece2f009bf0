//! The one error type of the HTTP layer: an engine [`Code`] (every stable code the API can
//! answer, each asserted by a test), its message and details, with the status its
//! [`Kind`] maps to; and the one JSON body extractor, so a malformed body gets the same error
//! shape on every endpoint.
//!
//! The caller's mistakes are 4xx with a stable snake_case `code` and a message that says how to
//! fix them; our failures are a generic 500 and the cause goes to the log. Neither ever carries a
//! record value.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ctstats_query::error::{Code, EngineError, Kind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: programs branch on it.
    pub code: String,
    /// For people: what is wrong and how to fix it.
    pub message: String,
    /// Structured details: the fields at fault, the budget left, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// An error response: an engine error, or one of the HTTP layer's own codes.
#[derive(Debug)]
pub struct ApiError(pub EngineError);

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError(EngineError::new(code, message))
    }

    /// Our failure: log the cause, tell the caller nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError(EngineError::internal(cause))
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(Code::PayloadTooLarge, message)
    }

    pub fn invalid_body(message: impl Into<String>) -> Self {
        ApiError::new(Code::InvalidBody, message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError(e)
    }
}

/// The status of a code's kind.
pub fn status(kind: Kind) -> StatusCode {
    match kind {
        Kind::Invalid => StatusCode::BAD_REQUEST,
        Kind::Unauthenticated => StatusCode::UNAUTHORIZED,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status(self.0.code.kind());
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.0.code.name().to_string(),
                message: self.0.message,
                details: self.0.details,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A body that could not be read: too large, or broken.
pub fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("the request body is too large")
    } else {
        ApiError::invalid_body(e.body_text())
    }
}

/// A query string that does not parse.
pub fn query_string_error(e: QueryRejection) -> ApiError {
    ApiError::new(Code::InvalidParameters, e.body_text())
}

/// The raw body, with the layer's errors for a body that cannot be read.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(RawBody)
            .map_err(body_error)
    }
}

/// A JSON body of type `T`: `invalid_json` (with serde's message) when it does not parse.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError(EngineError::invalid_json(e.to_string())))
    }
}
