//! The one error type of the HTTP layer and its OpenAI-shaped JSON body:
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::capture::ErrorClass;
use crate::upstream::UpstreamError;
use crate::upstream::request::RequestError;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Client,
    Upstream,
    Gateway,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    #[error("Request body is larger than the {limit}-byte limit.")]
    TooLarge { limit: usize },
    #[error("The request body was not received within {} ms.", .0.as_millis())]
    BodyTimeout(std::time::Duration),
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    /// A unit key or cohort label value above `routing.max_key_bytes`.
    #[error("`{param}` is longer than the {limit}-byte limit.")]
    TooLong { param: String, limit: usize },
    #[error("The upstream provider could not be reached.")]
    Unreachable,
    #[error("The upstream provider did not answer in time.")]
    Timeout,
    #[error("The upstream provider returned an invalid response.")]
    BadUpstream,
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::TooLong { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unreachable | ApiError::BadUpstream => StatusCode::BAD_GATEWAY,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            ApiError::BadRequest(_)
            | ApiError::TooLarge { .. }
            | ApiError::BodyTimeout(_)
            | ApiError::TooLong { .. }
            | ApiError::ModelNotFound(_) => Blame::Client,
            ApiError::Unreachable | ApiError::Timeout | ApiError::BadUpstream => Blame::Upstream,
            ApiError::Internal(_) => Blame::Gateway,
        }
    }

    fn kind(&self) -> (&'static str, Option<&str>, Option<&'static str>) {
        match self {
            ApiError::BadRequest(e) => (
                "invalid_request_error",
                e.param(),
                Some(match e {
                    RequestError::InvalidJson(_) | RequestError::NotAnObject => "invalid_json",
                    RequestError::Missing(_) => "missing_required_parameter",
                    RequestError::WrongType { .. } => "invalid_type",
                }),
            ),
            ApiError::TooLarge { .. } => ("invalid_request_error", None, Some("request_too_large")),
            ApiError::BodyTimeout(_) => ("invalid_request_error", None, Some("request_timeout")),
            ApiError::ModelNotFound(_) => (
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
            ApiError::TooLong { param, .. } => (
                "invalid_request_error",
                Some(param.as_str()),
                Some("string_above_max_length"),
            ),
            ApiError::Unreachable => ("upstream_error", None, Some("upstream_unreachable")),
            ApiError::Timeout => ("upstream_error", None, Some("upstream_timeout")),
            ApiError::BadUpstream => ("upstream_error", None, Some("upstream_invalid_response")),
            ApiError::Internal(_) => ("server_error", None, Some("internal_error")),
        }
    }

    /// The client-facing error for an upstream failure (internals stay in the logs).
    pub fn from_upstream(e: &UpstreamError) -> Self {
        match e.class {
            ErrorClass::Timeout => ApiError::Timeout,
            ErrorClass::Unreachable => ApiError::Unreachable,
            _ => ApiError::BadUpstream,
        }
    }
}

/// An OpenAI-shaped error body.
pub fn error_body(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (kind, param, code) = self.kind();
        if self.blame() != Blame::Client {
            tracing::warn!(error = %self, status = self.status().as_u16(), "request failed");
        }
        let body = error_body(&self.to_string(), kind, param, code);
        (self.status(), axum::Json(body)).into_response()
    }
}
