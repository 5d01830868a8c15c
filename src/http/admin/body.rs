//! A JSON body extractor whose rejection is a 400 naming the field at fault
//! (`traffic_percent: invalid type: string "x", expected f64`), in the OpenAI error shape. A
//! body above [`MAX_BODY_BYTES`] is a 413, one not received within `server.body_read_timeout`
//! a 408.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use super::AdminError;
use crate::http::BodyReadTimeout;

/// The largest admin API request body (1 MiB; every admin body is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Like `axum::Json`, with errors that name the field.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, AdminError> {
        let limit = MAX_BODY_BYTES;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(AdminError::TooLarge { limit });
        }
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                if let Some(BodyReadTimeout(after)) = BodyReadTimeout::find(&e) {
                    AdminError::BodyTimeout(after)
                } else if std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                {
                    AdminError::TooLarge { limit }
                } else {
                    AdminError::InvalidBody {
                        param: None,
                        message: "the request body could not be read".to_owned(),
                    }
                }
            })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Parses `bytes` as a `T`; the error names the field (or `body` when the JSON itself is bad).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AdminError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let text = clean(&e.into_inner());
        let param = if path == "." || path.is_empty() {
            missing_field(&text)
        } else {
            Some(path)
        };
        let message = match &param {
            Some(p) => format!("invalid request body: `{p}`: {text}"),
            None => format!("invalid request body: {text}"),
        };
        AdminError::InvalidBody { param, message }
    })?;
    de.end().map_err(|e| AdminError::InvalidBody {
        param: None,
        message: format!("invalid request body: {}", clean(&e)),
    })?;
    Ok(value)
}

/// serde_json's message without its position suffix.
fn clean(e: &serde_json::Error) -> String {
    let text = e.to_string();
    text.split(" at line ").next().unwrap_or(&text).to_owned()
}

/// `missing field `x`` → `x`.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// A 400 naming `field`.
pub fn bad_field(field: &str, message: impl std::fmt::Display) -> AdminError {
    AdminError::InvalidBody {
        param: Some(field.to_owned()),
        message: format!("invalid request body: `{field}`: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        name: String,
        #[allow(dead_code)]
        pct: f64,
    }

    fn param(bytes: &[u8]) -> Option<String> {
        match parse::<Body>(bytes) {
            Err(AdminError::InvalidBody { param, .. }) => param,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(param(br#"{"name": "x"}"#).as_deref(), Some("pct"));
        assert_eq!(
            param(br#"{"name": "x", "pct": "a"}"#).as_deref(),
            Some("pct")
        );
        assert_eq!(param(br#"{"name": 3, "pct": 1}"#).as_deref(), Some("name"));
        assert_eq!(param(b"not json"), None);
        assert_eq!(param(br#"{"name": "x", "pct": 1} trailing"#), None);
        assert!(parse::<Body>(br#"{"name": "x", "pct": 1}"#).is_ok());
    }
}
