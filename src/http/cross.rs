//! A variant on the other API: whether a variant's provider can answer the client's surface
//! (it speaks it, or `upstream::translate` translates to it), the body it is sent, and its
//! answer in the client's API.
//!
//! A translation applies to any variant whose provider speaks the other API — a candidate on
//! Anthropic's Messages API behind a Chat Completions client, or the reverse — and the same
//! way to a mirrored call, so that the pair compares like with like. What cannot be translated
//! is refused: `400 unsupported_api` when no translation exists (a Responses, completions or
//! embeddings request to an `api: anthropic` variant), `400 untranslatable_parameter` naming
//! the field when the request has one without an equivalent.

use bytes::Bytes;

use crate::config::Variant;
use crate::upstream::request::ClientRequest;
use crate::upstream::shape::WireShape;
use crate::upstream::translate::{self, Direction};

use super::{ApiError, Gateway};

/// How a variant on `provider` is called for a request on `shape`: `Ok(None)` directly,
/// `Ok(Some(direction))` through a translation, or `400 unsupported_api` when its provider
/// speaks another API and nothing translates to it (an unknown provider is the upstream
/// call's error).
pub(super) fn wire(
    gw: &Gateway,
    shape: &dyn WireShape,
    model: &str,
    provider: &str,
) -> Result<Option<Direction>, ApiError> {
    let Some(p) = gw.upstreams.provider(provider) else {
        return Ok(None);
    };
    if p.api == shape.api() {
        return Ok(None);
    }
    Direction::between(shape.endpoint(), p.api)
        .map(Some)
        .ok_or_else(|| ApiError::UnsupportedApi {
            model: model.to_owned(),
            provider: provider.to_owned(),
            api: p.api.as_str(),
            path: shape.route(),
        })
}

/// Whether a variant on `provider` can answer a request on `shape` (directly or translated).
pub(super) fn reachable(gw: &Gateway, shape: &dyn WireShape, provider: &str) -> bool {
    wire(gw, shape, "", provider).is_ok()
}

/// Whether `variant` can answer `req` (route phase): its provider speaks the surface's API
/// (nothing else is done: the hot path pays nothing), or the request translates to its API.
pub(super) fn check(
    gw: &Gateway,
    shape: &dyn WireShape,
    req: &ClientRequest<'_>,
    variant: &Variant,
) -> Result<(), ApiError> {
    match wire(gw, shape, &req.model, &variant.provider)? {
        None => Ok(()),
        Some(direction) => translate::request::translate(direction, &req.to_json())
            .map(drop)
            .map_err(|error| ApiError::Untranslatable {
                model: req.model.clone(),
                error,
            }),
    }
}

/// The body `variant` is sent for `req`, and the translation it goes through, if any.
pub(super) fn body_for(
    gw: &Gateway,
    shape: &dyn WireShape,
    req: &ClientRequest<'_>,
    variant: &Variant,
) -> Result<(Option<Direction>, Vec<u8>), ApiError> {
    match wire(gw, shape, &req.model, &variant.provider)? {
        None => Ok((None, shape.body_for(req, variant))),
        Some(direction) => translate::body_for(direction, req, variant)
            .map(|body| (Some(direction), body))
            .map_err(|error| ApiError::Untranslatable {
                model: req.model.clone(),
                error,
            }),
    }
}

/// The client's body for a whole answer (`status`, `bytes` in the variant's API) that went
/// through `direction`: a success translated into the client's API, a provider's error into
/// the client's error shape; bytes that are not JSON pass as they came.
pub(super) fn client_body(direction: Direction, status: u16, bytes: Bytes) -> Bytes {
    let Ok(upstream) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return bytes;
    };
    let translated = if (200..300).contains(&status) {
        Some(translate::answer::translate(
            direction,
            &upstream,
            chrono::Utc::now().timestamp(),
        ))
    } else {
        translate::answer::error(direction, &upstream)
    };
    match translated {
        Some(v) => Bytes::from(v.to_string()),
        None => bytes,
    }
}
