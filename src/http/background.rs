//! Phase 2 of the request path: start the background calls a routed request needs — the
//! plan's mirror (the candidate's shadow, or stable's live pair sample) or else, for a
//! stable-served request, the A/A arm's second stable call — each a detached task
//! ([`super::mirror`]). Its result is the pair slot the served side completes.

use crate::capture::{AA_VARIANT, PairSlot, Purpose, Role};
use crate::config::{Mode, Variant};
use crate::routing::{self, Target};
use crate::telemetry::{DeploymentLabels, SkipLabels};
use crate::upstream::ClientCredentials;
use crate::upstream::request::ClientRequest;

use super::cross::reachable;
use super::route::{RoutedRequest, role_of};
use super::{AppState, Gateway, mirror};

/// Phase 2's result: the slot of the pair a background call was started for, if one was.
pub(super) struct Background {
    pub pair: Option<PairSlot>,
}

/// Starts the mirror the plan asks for when it is allowed, else the A/A arm when drawn.
pub(super) fn start(
    gw: &AppState,
    routed: &RoutedRequest,
    req: &ClientRequest<'_>,
    credentials: &ClientCredentials,
) -> Background {
    if let Some(target) = (routed.plan.mirror).filter(|t| mirror_allowed(gw, routed, req, *t)) {
        let variant = routed.variant(target);
        let role = role_of(target);
        let pair = spawn(
            gw,
            routed,
            req,
            variant,
            (role, Purpose::Mirrored),
            credentials,
        );
        if pair.is_none() {
            // A field of this request has no equivalent in the mirror's API.
            count_skip(gw, routed, "untranslatable");
        }
        return Background { pair };
    }
    // The A/A arm's slot: stable-served requests that no mirror pairs already.
    if routed.plan.serve == Target::Stable && aa_drawn(gw, routed, req) {
        let again = Variant {
            name: AA_VARIANT.to_owned(),
            ..routed.deployment().stable.clone()
        };
        let pair = spawn(
            gw,
            routed,
            req,
            &again,
            (Role::Candidate, Purpose::Aa),
            credentials,
        );
        return Background { pair };
    }
    Background { pair: None }
}

/// Starts one background call to `variant` (as `role`, for `purpose`); returns its pair slot,
/// or `None` when the request cannot be translated to the variant's API.
fn spawn(
    gw: &AppState,
    routed: &RoutedRequest,
    req: &ClientRequest<'_>,
    variant: &Variant,
    role_purpose: (Role, Purpose),
    credentials: &ClientCredentials,
) -> Option<PairSlot> {
    let slot = PairSlot::new();
    let (side, body) = routed
        .side(gw, variant, role_purpose, req, Some(slot.clone()))
        .ok()?;
    let timeout = routed.deployment().shadow_timeout;
    mirror::spawn(gw.clone(), side, body, timeout, credentials.clone());
    Some(slot)
}

/// Whether this request may be mirrored to `target`: the endpoint is mirrored, the target's
/// provider can answer it (its API or a translation to it, and the provider-held state the
/// request refers to), the
/// request's answer is not left for later (`background`), and the stage's spend cap is not
/// reached. Each refusal but the first is counted by reason.
fn mirror_allowed(
    gw: &Gateway,
    routed: &RoutedRequest,
    req: &ClientRequest<'_>,
    target: Target,
) -> bool {
    let dep = routed.deployment();
    let shape = routed.ctx.shape;
    if dep.mode == Mode::Off || (!shape.has_text_answer() && !dep.mirror_embeddings) {
        return false;
    }
    let provider = &routed.variant(target).provider;
    let serving = &routed.variant(routed.plan.serve).provider;
    let skip = if !reachable(gw, shape, provider) {
        // No translation to the mirror's API exists (a Responses request to `api: anthropic`).
        Some("api_mismatch")
    } else if req.provider_state.is_some() && provider != serving {
        // `previous_response_id` / `conversation` name state only the serving provider holds.
        Some("provider_state")
    } else {
        answered_later(req)
    };
    if let Some(reason) = skip {
        count_skip(gw, routed, reason);
        return false;
    }
    within_spend_cap(gw, routed)
}

/// `background` when the request's answer comes later (a non-streamed `background: true`
/// Responses call answers `queued`): there is nothing to compare.
fn answered_later(req: &ClientRequest<'_>) -> Option<&'static str> {
    (req.background && !req.stream).then_some("background")
}

fn count_skip(gw: &Gateway, routed: &RoutedRequest, reason: &'static str) {
    gw.metrics
        .mirror_skipped
        .get_or_create(&SkipLabels {
            deployment: routed.deployment().slug.clone(),
            reason,
        })
        .inc();
}

/// Whether this stable-served request goes to the A/A arm: drawn at `aa_percent`, an answer to
/// judge (not an embedding, not a `background` one), within the stage's spend cap. Any mode:
/// the judge's noise floor is worth knowing before a rollout starts. Stable asked again is on
/// the same provider, so provider-held state resolves.
fn aa_drawn(gw: &Gateway, routed: &RoutedRequest, req: &ClientRequest<'_>) -> bool {
    let dep = routed.deployment();
    dep.aa_buckets > 0
        && routed.ctx.shape.has_text_answer()
        && answered_later(req).is_none()
        && rand::random_range(0..routing::BUCKETS) < dep.aa_buckets
        && within_spend_cap(gw, routed)
}

/// Whether the stage's mirror spend cap is not reached (counted and flagged when it is).
fn within_spend_cap(gw: &Gateway, routed: &RoutedRequest) -> bool {
    let dep = routed.deployment();
    if !gw.spend.get(&dep.slug, &dep.stage).reached(&dep.spend_cap) {
        return true;
    }
    let labels = DeploymentLabels {
        deployment: dep.slug.clone(),
    };
    gw.metrics.spend_cap_reached.get_or_create(&labels).set(1);
    gw.metrics
        .mirror_skipped
        .get_or_create(&SkipLabels {
            deployment: dep.slug.clone(),
            reason: "spend_cap",
        })
        .inc();
    false
}
