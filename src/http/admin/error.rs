//! The admin API's error type and its OpenAI-shaped body
//! (`{"error": {"message", "type", "param", "code"}}`, built by [`crate::http::error_body`]).
//! Storage and internal failures are logged here, once, and never echoed to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 401: no credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403.
    #[error("insufficient role for this operation")]
    Forbidden,
    /// 429.
    #[error("rate limit exceeded for this key; retry after {retry_after} seconds")]
    RateLimited { retry_after: u64 },
    /// 429: the client address failed to authenticate too often.
    #[error("too many failed authentications from this address; retry after {retry_after} seconds")]
    AuthRateLimited { retry_after: u64 },
    /// 413.
    #[error("request body is larger than the {limit}-byte limit of the admin API")]
    TooLarge { limit: usize },
    /// 408.
    #[error("the request body was not received within {} ms", .0.as_millis())]
    BodyTimeout(std::time::Duration),
    /// 400: the body fails the schema.
    #[error("{message}")]
    InvalidBody {
        param: Option<String>,
        message: String,
    },
    /// 422 `invalid_traffic_config`.
    #[error("{message}")]
    InvalidTraffic {
        param: Option<String>,
        message: String,
    },
    /// 404 `deployment_not_found`.
    #[error("deployment `{0}` not found")]
    DeploymentNotFound(String),
    /// 404 with another code (`model_not_found`, `key_not_found`, `rollout_not_found`).
    #[error("{message}")]
    NotFound {
        code: &'static str,
        param: Option<&'static str>,
        message: String,
    },
    /// 409: the operation does not apply in the current state, or lost a race.
    #[error("{0}")]
    Conflict(String),
    /// 503: the gateway runs without a database.
    #[error("this operation needs the gateway's database, which is not configured")]
    NoStore,
    /// 500; the detail goes to the log only.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Internal(format!("store: {e}"))
    }
}

impl AdminError {
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden => StatusCode::FORBIDDEN,
            AdminError::RateLimited { .. } | AdminError::AuthRateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            AdminError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AdminError::InvalidBody { .. } => StatusCode::BAD_REQUEST,
            AdminError::InvalidTraffic { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::DeploymentNotFound(_) | AdminError::NotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::NoStore => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// (type, param, code) of the body.
    fn kind(&self) -> (&'static str, Option<&str>, &'static str) {
        match self {
            AdminError::Unauthorized(_) => ("authentication_error", None, "invalid_api_key"),
            AdminError::Forbidden => ("permission_error", None, "insufficient_role"),
            AdminError::RateLimited { .. } | AdminError::AuthRateLimited { .. } => {
                ("rate_limit_error", None, "rate_limit_exceeded")
            }
            AdminError::TooLarge { .. } => ("invalid_request_error", None, "request_too_large"),
            AdminError::BodyTimeout(_) => ("invalid_request_error", None, "request_timeout"),
            AdminError::InvalidBody { param, .. } => {
                ("invalid_request_error", param.as_deref(), "invalid_body")
            }
            AdminError::InvalidTraffic { param, .. } => (
                "invalid_request_error",
                param.as_deref(),
                "invalid_traffic_config",
            ),
            AdminError::DeploymentNotFound(_) => (
                "invalid_request_error",
                Some("slug"),
                "deployment_not_found",
            ),
            AdminError::NotFound { code, param, .. } => ("invalid_request_error", *param, code),
            AdminError::Conflict(_) => ("invalid_request_error", None, "conflict"),
            AdminError::NoStore => ("server_error", None, "store_unavailable"),
            AdminError::Internal(_) => ("server_error", None, "internal_error"),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        if let AdminError::Internal(detail) = &self {
            tracing::error!(error = %detail, "admin request failed");
        }
        let (kind, param, code) = self.kind();
        let body = crate::http::error_body(&self.to_string(), kind, param, Some(code));
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let AdminError::RateLimited { retry_after } | AdminError::AuthRateLimited { retry_after } =
            self
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// The error body, for the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// e.g. `invalid_request_error`, `authentication_error`, `permission_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// e.g. `invalid_body`, `invalid_traffic_config`, `deployment_not_found`.
    pub code: Option<String>,
}
