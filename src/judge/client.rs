//! One judge endpoint behind async-openai: builds the chat-completion request (strict JSON-schema
//! response format, temperature, seed, max tokens from the rubric's judge) and classifies what
//! went wrong.
//!
//! async-openai's own transport retries 429s and 5xx by itself and drops the response headers;
//! the judge needs both under its own control (its limits decide when to retry, `Retry-After`
//! decides how long). So the client is installed with [`Transport`], a tower service that sends
//! the request with reqwest once and turns a non-2xx answer into an [`HttpFailure`] that keeps
//! the status, the error code and the `Retry-After` the judge asked for.
//!
//! Never: retries or sleeps (the caller does, see `call`). Fails closed: anything unexpected is
//! a [`CallFailure`], never an answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::{OpenAIError, WrappedError};
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{CreateChatCompletionRequest, CreateChatCompletionResponse};
use serde_json::{Value, json};

use crate::rubric::JudgeModel;

use super::limits::retry_after;

/// A non-2xx answer from the judge endpoint, headers included.
#[derive(Debug, Clone, thiserror::Error)]
#[error("HTTP {status}: {message}")]
pub struct HttpFailure {
    pub status: u16,
    /// `error.code`, else `error.type` of the OpenAI error body.
    pub code: Option<String>,
    pub message: String,
    pub retry_after: Option<Duration>,
}

/// Sends each request once with reqwest; see the module docs.
#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
}

impl tower::Service<HttpRequestFactory> for Transport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let request = factory.build().await?;
            let response = client.execute(request).await?;
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status().as_u16();
            let retry_after = retry_after(response.headers());
            let bytes = response.bytes().await.unwrap_or_default();
            let (code, message) = match serde_json::from_slice::<WrappedError>(&bytes) {
                Ok(w) => (w.error.code.or(w.error.r#type), w.error.message),
                Err(_) => (
                    None,
                    String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                ),
            };
            Err(OpenAIError::Boxed(Box::new(HttpFailure {
                status,
                code,
                message,
                retry_after,
            })))
        })
    }
}

/// Why a call produced no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallFailure {
    /// 429 (other than `insufficient_quota`): back off and retry.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// A timeout, a connection error, a 5xx, a 2xx body that is not a chat completion: retry.
    #[error("transient: {0}")]
    Transient(String),
    /// 400, 401, 403, 404, `insufficient_quota`: retrying cannot help.
    #[error("rejected ({code}): {message}")]
    Permanent { code: String, message: String },
}

impl CallFailure {
    /// The abstention reason code for a permanent failure, e.g. `judge_rejected_401`.
    pub fn reason_code(&self) -> String {
        match self {
            CallFailure::Permanent { code, .. } => format!("judge_rejected_{code}"),
            CallFailure::RateLimited { .. } => "judge_rate_limited".to_owned(),
            CallFailure::Transient(_) => "judge_unavailable".to_owned(),
        }
    }

    fn from_openai(e: OpenAIError) -> Self {
        match e {
            OpenAIError::Boxed(b) => match b.downcast::<HttpFailure>() {
                Ok(f) => Self::from_http(*f),
                Err(other) => CallFailure::Transient(other.to_string()),
            },
            OpenAIError::Reqwest(e) => CallFailure::Transient(e.to_string()),
            OpenAIError::JSONDeserialize(e, _) => {
                CallFailure::Transient(format!("the response is not a chat completion: {e}"))
            }
            OpenAIError::ApiError(a) => Self::from_http(HttpFailure {
                status: a.status_code.as_u16(),
                code: a.api_error.code.or(a.api_error.r#type),
                message: a.api_error.message,
                retry_after: None,
            }),
            other => CallFailure::Permanent {
                code: "invalid_request".to_owned(),
                message: other.to_string(),
            },
        }
    }

    fn from_http(f: HttpFailure) -> Self {
        let quota = f.code.as_deref() == Some("insufficient_quota");
        match f.status {
            429 if quota => CallFailure::Permanent {
                code: "insufficient_quota".to_owned(),
                message: f.message,
            },
            429 => CallFailure::RateLimited {
                retry_after: f.retry_after,
            },
            408 | 409 | 500..=599 => CallFailure::Transient(f.to_string()),
            status => CallFailure::Permanent {
                code: status.to_string(),
                message: f.message,
            },
        }
    }
}

/// One message of the judge conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    System(String),
    User(String),
    Assistant(String),
}

/// The judge's reply and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A client for one judge model.
#[derive(Debug, Clone)]
pub struct JudgeClient {
    model: JudgeModel,
    client: async_openai::Client<OpenAIConfig>,
}

#[derive(Debug, thiserror::Error)]
#[error("judge `{judge}`: cannot build its HTTP client: {source}")]
pub struct ClientError {
    judge: String,
    source: reqwest::Error,
}

impl JudgeClient {
    /// A client for `model`, its key read from the variable `api_key_env` (none when unset:
    /// local judges need no key; a hosted one answers 401, a permanent failure).
    pub fn new(model: &JudgeModel, timeout: Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|source| ClientError {
                judge: model.name.clone(),
                source,
            })?;
        let mut config = OpenAIConfig::new().with_api_base(model.base_url.trim_end_matches('/'));
        if let Ok(key) = std::env::var(&model.api_key_env) {
            config = config.with_api_key(key);
        }
        let client =
            async_openai::Client::with_config(config).with_http_service(Transport { client: http });
        Ok(Self {
            model: model.clone(),
            client,
        })
    }

    pub fn model(&self) -> &JudgeModel {
        &self.model
    }

    /// The request body: the rubric's judge settings and the strict response format. The token
    /// limit goes in the judge's `token_limit_field`, and `temperature` only when the judge
    /// sends it (reasoning models take `max_completion_tokens` and no temperature).
    pub fn request_body(&self, messages: &[Message], response_format: &Value) -> Value {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| match m {
                Message::System(t) => json!({"role": "system", "content": t}),
                Message::User(t) => json!({"role": "user", "content": t}),
                Message::Assistant(t) => json!({"role": "assistant", "content": t}),
            })
            .collect();
        let mut body = serde_json::Map::new();
        body.insert("model".into(), json!(self.model.model));
        body.insert("messages".into(), Value::Array(messages));
        if self.model.send_temperature {
            body.insert("temperature".into(), json!(self.model.temperature));
        }
        body.insert(
            self.model.token_limit_field.as_str().into(),
            json!(self.model.max_tokens),
        );
        body.insert("response_format".into(), response_format.clone());
        if let Some(seed) = self.model.seed {
            body.insert("seed".into(), json!(seed));
        }
        Value::Object(body)
    }

    /// One call, no retry.
    pub async fn complete(
        &self,
        messages: &[Message],
        response_format: &Value,
    ) -> Result<Completion, CallFailure> {
        let request: CreateChatCompletionRequest =
            serde_json::from_value(self.request_body(messages, response_format)).map_err(|e| {
                CallFailure::Permanent {
                    code: "invalid_request".to_owned(),
                    message: e.to_string(),
                }
            })?;
        let response: CreateChatCompletionResponse = self
            .client
            .chat()
            .create(request)
            .await
            .map_err(CallFailure::from_openai)?;
        let text = response
            .choices
            .first()
            .and_then(|c| c.message.content.clone())
            .unwrap_or_default();
        let (prompt_tokens, completion_tokens) = response.usage.map_or((0, 0), |u| {
            (u64::from(u.prompt_tokens), u64::from(u.completion_tokens))
        });
        Ok(Completion {
            text,
            prompt_tokens,
            completion_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, code: Option<&str>) -> CallFailure {
        CallFailure::from_http(HttpFailure {
            status,
            code: code.map(str::to_owned),
            message: "m".into(),
            retry_after: Some(Duration::from_secs(2)),
        })
    }

    #[test]
    fn classifies_statuses() {
        assert_eq!(
            failure(429, Some("rate_limit_exceeded")),
            CallFailure::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            failure(429, Some("insufficient_quota")).reason_code(),
            "judge_rejected_insufficient_quota"
        );
        assert_eq!(failure(401, None).reason_code(), "judge_rejected_401");
        assert_eq!(failure(400, None).reason_code(), "judge_rejected_400");
        assert!(matches!(failure(503, None), CallFailure::Transient(_)));
        assert!(matches!(failure(500, None), CallFailure::Transient(_)));
    }
}
