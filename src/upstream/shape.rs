//! The wire shape of one API surface: how a client body is parsed, how the body a variant
//! receives is written, and how an answer is read from a whole response body or a stream.
//!
//! The request path (`http::proxy`) is the same for every surface; it asks the shape only these
//! questions. A new surface (e.g. `/v1/responses`, `/v1/messages`) implements [`WireShape`] and
//! gets a route; it does not copy the handler. The surfaces are OpenAI's chat completions,
//! completions and embeddings ([`OpenAi`]), OpenAI's Responses API ([`Responses`]) and
//! Anthropic's Messages API ([`Messages`]).

use crate::capture::Endpoint;
use crate::config::Variant;

use super::request::{self, ClientRequest, RequestError};
use super::sse::StreamAssembler;
use super::whole::{self, BodyError, WholeAnswer};
use crate::config::{ProviderApi, UpstreamLimits};

pub use super::messages::Messages;
pub use super::responses::Responses;

/// What the request path needs to know about one API surface.
pub trait WireShape: Send + Sync + std::fmt::Debug {
    /// The endpoint observations are recorded under; its path is appended to a provider's base URL.
    fn endpoint(&self) -> Endpoint;

    /// Reads a client body once, checking the fields the surface requires.
    fn parse<'a>(&self, body: &'a [u8]) -> Result<ClientRequest<'a>, RequestError>;

    /// The body `variant` receives (model, overrides, system prompt, usage for streams).
    fn body_for(&self, request: &ClientRequest<'_>, variant: &Variant) -> Vec<u8>;

    /// Text, finish reason, usage, `model` and `id` of a whole (non-streamed) answer, read from
    /// its bytes without building a value; an answer with more choices, tool calls, output
    /// items or content blocks than `limits` allow is refused.
    fn read_body(&self, body: &[u8], limits: &UpstreamLimits) -> Result<WholeAnswer, BodyError> {
        whole::read(whole::Api::of(self.endpoint()), body, limits)
    }

    /// A fresh assembler for one streamed answer.
    fn stream_assembler(&self, limits: UpstreamLimits) -> StreamAssembler;

    /// Whether answers are text that can be checked and judged: only such requests go to the A/A
    /// arm, and only such requests are mirrored unless the deployment mirrors embeddings too.
    fn has_text_answer(&self) -> bool;

    /// The API a provider must speak to answer this surface (`providers.*.api`).
    fn api(&self) -> ProviderApi {
        ProviderApi::Openai
    }

    /// The gateway's route of this surface (`/v1/chat/completions`, …), for messages.
    fn route(&self) -> &'static str {
        match self.endpoint() {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Messages => "/v1/messages",
        }
    }
}

/// The OpenAI surfaces: `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAi(Endpoint);

impl OpenAi {
    pub const CHAT_COMPLETIONS: OpenAi = OpenAi(Endpoint::ChatCompletions);
    pub const COMPLETIONS: OpenAi = OpenAi(Endpoint::Completions);
    pub const EMBEDDINGS: OpenAi = OpenAi(Endpoint::Embeddings);
}

impl WireShape for OpenAi {
    fn endpoint(&self) -> Endpoint {
        self.0
    }

    fn parse<'a>(&self, body: &'a [u8]) -> Result<ClientRequest<'a>, RequestError> {
        request::parse(self.0, body)
    }

    fn body_for(&self, request: &ClientRequest<'_>, variant: &Variant) -> Vec<u8> {
        request.body_for(variant)
    }

    fn stream_assembler(&self, limits: UpstreamLimits) -> StreamAssembler {
        StreamAssembler::with_limits(self.0 == Endpoint::ChatCompletions, limits)
    }

    fn has_text_answer(&self) -> bool {
        self.0 != Endpoint::Embeddings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_openai_surface_parses_its_own_required_field() {
        let chat = br#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#;
        let prompt = br#"{"model": "m", "prompt": "hi"}"#;
        let input = br#"{"model": "m", "input": "hi"}"#;
        for (shape, ok, endpoint) in [
            (
                OpenAi::CHAT_COMPLETIONS,
                &chat[..],
                Endpoint::ChatCompletions,
            ),
            (OpenAi::COMPLETIONS, &prompt[..], Endpoint::Completions),
            (OpenAi::EMBEDDINGS, &input[..], Endpoint::Embeddings),
        ] {
            assert_eq!(shape.endpoint(), endpoint);
            assert_eq!(shape.parse(ok).unwrap().endpoint, endpoint);
            for other in [&chat[..], &prompt[..], &input[..]] {
                if other != ok {
                    assert!(shape.parse(other).is_err(), "{shape:?}");
                }
            }
        }
        assert!(OpenAi::CHAT_COMPLETIONS.has_text_answer());
        assert!(OpenAi::COMPLETIONS.has_text_answer());
        assert!(!OpenAi::EMBEDDINGS.has_text_answer());
    }
}
