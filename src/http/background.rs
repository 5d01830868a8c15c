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
    if let Some(target) = routed.plan.mirror.filter(|_| mirror_allowed(gw, routed)) {
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
        return Background { pair: Some(pair) };
    }
    // The A/A arm's slot: stable-served requests that no mirror pairs already.
    if routed.plan.serve == Target::Stable && aa_drawn(gw, routed) {
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
        return Background { pair: Some(pair) };
    }
    Background { pair: None }
}

/// Starts one background call to `variant` (as `role`, for `purpose`); returns its pair slot.
fn spawn(
    gw: &AppState,
    routed: &RoutedRequest,
    req: &ClientRequest<'_>,
    variant: &Variant,
    (role, purpose): (Role, Purpose),
    credentials: &ClientCredentials,
) -> PairSlot {
    let slot = PairSlot::new();
    let (side, body) = routed.side(variant, role, purpose, req, Some(slot.clone()));
    let timeout = routed.deployment().shadow_timeout;
    mirror::spawn(gw.clone(), side, body, timeout, credentials.clone());
    slot
}

/// Whether this request may be mirrored: the endpoint is mirrored and the stage's spend cap
/// is not reached (counted and flagged when it is).
fn mirror_allowed(gw: &Gateway, routed: &RoutedRequest) -> bool {
    let dep = routed.deployment();
    if dep.mode == Mode::Off || (!routed.ctx.shape.has_text_answer() && !dep.mirror_embeddings) {
        return false;
    }
    within_spend_cap(gw, routed)
}

/// Whether this stable-served request goes to the A/A arm: drawn at `aa_percent`, an answer to
/// judge (not an embedding), within the stage's spend cap. Any mode: the judge's noise floor is
/// worth knowing before a rollout starts.
fn aa_drawn(gw: &Gateway, routed: &RoutedRequest) -> bool {
    let dep = routed.deployment();
    dep.aa_buckets > 0
        && routed.ctx.shape.has_text_answer()
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
