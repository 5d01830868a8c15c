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
    /// The variant that would answer is on a provider of another API than the surface's.
    #[error(
        "The model `{model}` is served by provider `{provider}`, which speaks the {api} API: \
         it cannot answer {path}."
    )]
    UnsupportedApi {
        model: String,
        provider: String,
        api: &'static str,
        path: &'static str,
    },
    /// The variant that would answer is on the other API, and a field of the request has no
    /// equivalent there (`upstream::translate`).
    #[error(
        "The model `{model}` is answered here through {}, and `{}` cannot be translated to it: \
         {}.",
        .error.target, .error.field, .error.reason
    )]
    Untranslatable {
        model: String,
        error: crate::upstream::translate::Untranslatable,
    },
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
            ApiError::BadRequest(_)
            | ApiError::TooLong { .. }
            | ApiError::UnsupportedApi { .. }
            | ApiError::Untranslatable { .. } => StatusCode::BAD_REQUEST,
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
            | ApiError::UnsupportedApi { .. }
            | ApiError::Untranslatable { .. }
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
            ApiError::UnsupportedApi { .. } => (
                "invalid_request_error",
                Some("model"),
                Some("unsupported_api"),
            ),
            ApiError::Untranslatable { error, .. } => (
                "invalid_request_error",
                Some(error.field.as_str()),
                Some("untranslatable_parameter"),
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

/// The Anthropic error type of an HTTP status, as Anthropic's API names them.
pub fn anthropic_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The paths whose clients speak Anthropic's API (`/v1/messages`, `/v1/messages/count_tokens`).
pub fn is_anthropic_path(path: &str) -> bool {
    path == "/v1/messages" || path.starts_with("/v1/messages/")
}

/// Middleware: on the Anthropic paths, every error canarist itself answers (OpenAI-shaped:
/// `{"error": {"message", "type", …}}`) is rewritten into Anthropic's shape, `{"type":
/// "error", "error": {"type", "message"}, "request_id"}`, with the same status and headers,
/// so that an Anthropic SDK raises its own typed error. A provider's own error (already
/// Anthropic-shaped) and every success pass untouched.
pub async fn anthropic_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let anthropic = is_anthropic_path(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !anthropic || !json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // canarist's own error bodies are small; a larger body is a provider's, passed as it was.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (parts.status, "").into_response();
    };
    let rewritten = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .filter(|v| v.get("type").is_none())
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .map(|message| {
            let request_id = parts
                .headers
                .get(super::HEADER_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            serde_json::json!({"type": "error",
                "error": {"type": anthropic_error_type(status), "message": message},
                "request_id": request_id})
        });
    let body = match rewritten {
        Some(v) => {
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            axum::body::Body::from(v.to_string())
        }
        None => axum::body::Body::from(bytes),
    };
    Response::from_parts(parts, body)
}
