//! Translation between OpenAI's Chat Completions and Anthropic's Messages API, so that a
//! variant on a provider of the other API can answer (or shadow) a client's request.
//!
//! Owns: which surface translates to which provider API ([`Direction::between`]), the request
//! body (`request`), the whole answer and the provider's error body (`answer`), and the event
//! stream, event by event (`stream`). Pure: JSON in, JSON (or SSE bytes) out; no I/O, no clock
//! (the caller passes `created`).
//! Never: drops a field silently. A request field with no equivalent in the other API is an
//! [`Untranslatable`] naming it (the gateway answers 400 in the client's error shape, or skips
//! the mirror and counts it); what is deliberately not sent on (canarist's own routing fields,
//! caching hints) is listed in `request`'s docs and the README.
//!
//! The Responses API is not translated: its items, built-in tools and provider-held state
//! (`previous_response_id`, `conversation`) have no Messages equivalent, so a Responses request
//! to an `api: anthropic` variant stays `400 unsupported_api` (and its mirror is skipped as
//! `api_mismatch`).

pub mod answer;
pub mod request;
pub mod stream;

use crate::capture::Endpoint;
use crate::config::{ProviderApi, Variant};

use super::request::ClientRequest;
use super::shape::{Messages, OpenAi, WireShape};

pub use stream::StreamTranslator;

/// A client surface and the other API its variant speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A Chat Completions client, a variant on Anthropic's Messages API: the request goes
    /// chat → messages, the answer messages → chat.
    ChatToMessages,
    /// A Messages client, a variant on OpenAI's Chat Completions: the request goes messages →
    /// chat, the answer chat → messages.
    MessagesToChat,
}

impl Direction {
    /// The translation a request to `surface` needs for a provider of `api`: `None` when the
    /// provider speaks the surface's API, or when no translation exists (see
    /// [`Direction::translatable`]).
    pub fn between(surface: Endpoint, api: ProviderApi) -> Option<Direction> {
        match (surface, api) {
            (Endpoint::ChatCompletions, ProviderApi::Anthropic) => Some(Self::ChatToMessages),
            (Endpoint::Messages, ProviderApi::Openai) => Some(Self::MessagesToChat),
            _ => None,
        }
    }

    /// Whether a provider of `api` can answer `surface`: it speaks it, or a translation exists.
    pub fn translatable(surface: Endpoint, surface_api: ProviderApi, api: ProviderApi) -> bool {
        surface_api == api || Self::between(surface, api).is_some()
    }

    /// The endpoint the variant's provider is called on.
    pub fn upstream_endpoint(self) -> Endpoint {
        match self {
            Self::ChatToMessages => Endpoint::Messages,
            Self::MessagesToChat => Endpoint::ChatCompletions,
        }
    }

    /// The wire shape of the variant's API (its answers are read, checked and captured in it).
    pub fn upstream_shape(self) -> &'static dyn WireShape {
        match self {
            Self::ChatToMessages => &Messages,
            Self::MessagesToChat => &OpenAi::CHAT_COMPLETIONS,
        }
    }

    /// The API the request is translated into, for messages (`Anthropic Messages`).
    pub fn target_name(self) -> &'static str {
        match self {
            Self::ChatToMessages => "Anthropic's Messages API",
            Self::MessagesToChat => "OpenAI's Chat Completions",
        }
    }
}

/// A request field that has no equivalent in the other API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` cannot be translated to {target}: {reason}")]
pub struct Untranslatable {
    /// The field's path in the client's body (`n`, `messages[2].content[0].type`).
    pub field: String,
    pub target: &'static str,
    pub reason: String,
}

impl Untranslatable {
    pub(crate) fn new(direction: Direction, field: impl Into<String>, reason: &str) -> Self {
        Self {
            field: field.into(),
            target: direction.target_name(),
            reason: reason.to_owned(),
        }
    }
}

/// The body `variant` receives for the client's request `req`, translated in `direction`:
/// the client's fields in the other API's words, then the variant's model, params and system
/// prompt applied as that API has them (a variant's `params` are its own API's fields).
pub fn body_for(
    direction: Direction,
    req: &ClientRequest<'_>,
    variant: &Variant,
) -> Result<Vec<u8>, Untranslatable> {
    let mut fields = request::translate(direction, &req.to_json())?;
    // A variant's own limit, under either of chat's names, replaces the translated one.
    if direction == Direction::MessagesToChat && variant.params.contains_key("max_tokens") {
        fields.remove("max_completion_tokens");
    }
    let bytes = serde_json::to_vec(&fields)
        .map_err(|e| Untranslatable::new(direction, "messages", &e.to_string()))?;
    let translated = super::request::parse(direction.upstream_endpoint(), &bytes).map_err(|e| {
        Untranslatable::new(direction, e.param().unwrap_or("messages"), &e.to_string())
    })?;
    Ok(translated.body_for(variant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chat_and_messages_translate() {
        use Endpoint::*;
        use ProviderApi::*;
        assert_eq!(
            Direction::between(ChatCompletions, Anthropic),
            Some(Direction::ChatToMessages)
        );
        assert_eq!(
            Direction::between(Messages, Openai),
            Some(Direction::MessagesToChat)
        );
        for (surface, api) in [
            (ChatCompletions, Openai),
            (Messages, Anthropic),
            (Responses, Anthropic),
            (Completions, Anthropic),
            (Embeddings, Anthropic),
        ] {
            assert_eq!(
                Direction::between(surface, api),
                None,
                "{surface:?} {api:?}"
            );
        }
        assert!(!Direction::translatable(Responses, Openai, Anthropic));
        assert!(Direction::translatable(ChatCompletions, Openai, Anthropic));
    }
}
