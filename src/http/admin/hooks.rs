//! Progressive-delivery hooks: what Argo Rollouts' `web` metric provider and Flagger's webhooks
//! call to tie their rollout of a service to canarist's rollout of a model.
//!
//! - `GET|POST /v1/hooks/{slug}/verdict` (viewer): "is this canary healthy?" — the gate's
//!   verdict on the current stage (the same `rollout::actions::status` → `gate_input::decide`
//!   path as `rollout status` and the admin API) with its evidence, as JSON. The HTTP status is
//!   Flagger's contract: 200 when the expectation (`?expect=healthy|promote|rollback`, default
//!   `healthy`) holds, 412 when it does not (Flagger halts; its failed-checks log shows our body).
//!   `?always_ok=true` answers 200 either way, for Argo's `web` provider, which treats any non-2xx
//!   as a measurement *error* and decides on a JSON field (`jsonPath`, `successCondition`).
//! - `POST /v1/hooks/{slug}/promote` (admin): promote canarist's rollout one stage (Flagger
//!   `confirm-promotion`: Flagger promotes the service only once canarist has moved on).
//! - `POST /v1/hooks/{slug}/rollback` (admin): roll canarist's rollout back (Flagger
//!   `post-rollout`, a no-op for phase `Succeeded`, or any caller).
//!
//! The body may be Flagger's webhook payload (`name`, `namespace`, `phase`, `checksum`,
//! `metadata`); it is recorded in the transition's evidence, and a `promote` already made for the
//! same `checksum` is not made twice (Flagger retries). Credentials: `Authorization: Bearer`
//! (Argo sends headers), or — only when that header is absent — `metadata.canarist_key`, because
//! Flagger's webhook client sends no headers but `Content-Type`.
//!
//! Never: decides anything (the gate and the state machine do) or bypasses the rollout actions.
//! Fails closed: no rollout, no key, a wrong role or a refused transition is non-2xx.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Principal, Role, principal_or};
use super::rollouts::ctx;
use super::{AdminError, AdminState};
use crate::gate::Action;
use crate::rollout::actions::{self, Actor};
use crate::rollout::stored;
use crate::rollout::{Event, Manual};

/// The metadata key a Flagger webhook may carry the canarist key in.
pub const METADATA_KEY: &str = "canarist_key";

/// Flagger's webhook payload (every field optional: Argo sends no body or its own).
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
pub struct HookPayload {
    /// The Flagger canary's name.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    /// Flagger's canary phase (`Progressing`, `Waiting`, `Promoting`, `Succeeded`, `Failed`, …).
    #[serde(default)]
    pub phase: Option<String>,
    /// Flagger's hash of the canary's tracked configuration (one per revision).
    #[serde(default)]
    pub checksum: Option<String>,
    /// The webhook's `metadata` (may carry `canarist_key`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: BTreeMap<String, Value>,
}

impl HookPayload {
    fn key(&self) -> Option<&str> {
        self.metadata.get(METADATA_KEY).and_then(Value::as_str)
    }

    /// What is recorded about the caller (never the metadata: it may hold the key).
    fn echo(&self) -> Value {
        json!({
            "canary": match (&self.namespace, &self.name) {
                (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
                (None, Some(n)) => Some(n.clone()),
                _ => None,
            },
            "phase": self.phase,
            "checksum": self.checksum,
        })
    }
}

/// What must hold for a 2xx.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The verdict is not `rollback` (Flagger `rollout`/`pre-rollout` hooks).
    #[default]
    Healthy,
    /// The verdict is `promote` (a promotion gate).
    Promote,
    /// The verdict is `rollback` (Flagger's `rollback` hook: 2xx makes Flagger fail the canary).
    Rollback,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct VerdictQuery {
    /// `healthy` (default), `promote` or `rollback`.
    pub expect: Option<Expect>,
    /// Answer 200 whatever the verdict (Argo's `web` provider reads the JSON instead).
    pub always_ok: Option<bool>,
}

/// The verdict and its evidence.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerdictView {
    pub deployment: String,
    pub rollout_id: String,
    pub candidate: String,
    /// The rollout's stored state (`shadow`, `canary`, `paused`, `promoted`, `rolled_back`, …).
    pub state: String,
    pub stage: u32,
    pub stage_label: String,
    pub candidate_percent: f64,
    /// `promote`, `hold` or `rollback`.
    #[schema(value_type = String)]
    pub verdict: Action,
    /// `verdict != rollback`.
    pub healthy: bool,
    pub expect: Expect,
    /// Whether `expect` holds (the HTTP status says the same unless `always_ok`).
    pub met: bool,
    pub reason: String,
    /// The gate's decision with its evidence per metric and cohort; null without a gate policy
    /// or once the rollout is over.
    pub decision: Option<Value>,
}

fn parse_payload(bytes: &[u8]) -> Result<HookPayload, AdminError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(HookPayload::default());
    }
    let value: Value = super::body::parse(bytes)?;
    if value.is_object() {
        super::body::parse(bytes)
    } else {
        Ok(HookPayload::default())
    }
}

async fn verdict_of(
    admin: &AdminState,
    slug: &str,
    expect: Expect,
) -> Result<VerdictView, AdminError> {
    let status = actions::status(&ctx(admin)?, slug).await?;
    let Some(r) = status.rollout else {
        return Err(AdminError::NotFound {
            code: "rollout_not_found",
            param: Some("slug"),
            message: format!("deployment `{slug}` has no rollout"),
        });
    };
    let (verdict, reason) = match r.state.as_str() {
        stored::ROLLED_BACK => (Action::Rollback, "the rollout was rolled back".to_owned()),
        stored::PROMOTED => (
            Action::Promote,
            "the rollout is promoted: the candidate is the new stable".to_owned(),
        ),
        // The gate's promote is not the model's until a person approves it.
        stored::AWAITING_APPROVAL => (
            Action::Hold,
            format!(
                "stage {} awaits a person's approval (the gate says promote)",
                r.stage
            ),
        ),
        _ => match &status.decision {
            Some(d) => (d.action, d.reason.clone()),
            None => (
                Action::Hold,
                "no gate policy configured: promotion is manual".to_owned(),
            ),
        },
    };
    let healthy = verdict != Action::Rollback;
    let met = match expect {
        Expect::Healthy => healthy,
        Expect::Promote => verdict == Action::Promote,
        Expect::Rollback => verdict == Action::Rollback,
    };
    let decision = status
        .decision
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| AdminError::Internal(format!("serialising the decision: {e}")))?;
    Ok(VerdictView {
        deployment: slug.to_owned(),
        rollout_id: r.id,
        candidate: r.candidate,
        state: r.state,
        stage: r.stage,
        stage_label: r.stage_label,
        candidate_percent: r.candidate_percent,
        verdict,
        healthy,
        expect,
        met,
        reason,
        decision,
    })
}

async fn caller(
    admin: &AdminState,
    parts: &Parts,
    payload: &HookPayload,
    role: Role,
) -> Result<Principal, AdminError> {
    let principal = principal_or(admin, parts, payload.key()).await?;
    principal.require(role)?;
    Ok(principal)
}

/// The gate's verdict on the deployment's current stage.
#[utoipa::path(
    get,
    path = "/v1/hooks/{slug}/verdict",
    tag = "hooks",
    params(("slug" = String, Path, description = "The deployment's slug"), VerdictQuery),
    responses(
        (status = 200, description = "The expectation holds (or `always_ok`)", body = VerdictView),
        (status = 412, description = "The expectation does not hold: Flagger halts", body = VerdictView),
        (status = 400, description = "The payload or the query fails the schema (`invalid_body`)", body = super::ErrorResponse),
        (status = 404, description = "`deployment_not_found` or `rollout_not_found`", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn verdict_get(
    state: State<AdminState>,
    path: Path<String>,
    query: Result<Query<VerdictQuery>, QueryRejection>,
    parts: Parts,
) -> Result<Response, AdminError> {
    verdict(state, path, query, parts, Bytes::new()).await
}

/// The gate's verdict, for a caller that POSTs (Flagger; the body is its webhook payload).
#[utoipa::path(
    post,
    path = "/v1/hooks/{slug}/verdict",
    tag = "hooks",
    params(("slug" = String, Path, description = "The deployment's slug"), VerdictQuery),
    request_body = HookPayload,
    responses(
        (status = 200, description = "The expectation holds (or `always_ok`)", body = VerdictView),
        (status = 412, description = "The expectation does not hold: Flagger halts", body = VerdictView),
        (status = 400, description = "The payload or the query fails the schema (`invalid_body`)", body = super::ErrorResponse),
        (status = 404, description = "`deployment_not_found` or `rollout_not_found`", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn verdict_post(
    state: State<AdminState>,
    path: Path<String>,
    query: Result<Query<VerdictQuery>, QueryRejection>,
    parts: Parts,
    body: Bytes,
) -> Result<Response, AdminError> {
    verdict(state, path, query, parts, body).await
}

async fn verdict(
    State(admin): State<AdminState>,
    Path(slug): Path<String>,
    query: Result<Query<VerdictQuery>, QueryRejection>,
    parts: Parts,
    body: Bytes,
) -> Result<Response, AdminError> {
    let Query(query) = query.map_err(|e| AdminError::InvalidBody {
        param: None,
        message: format!(
            "invalid query: {}; `expect` is one of healthy, promote, rollback and `always_ok` true or false",
            e.body_text()
        ),
    })?;
    let payload = parse_payload(&body)?;
    caller(&admin, &parts, &payload, Role::Viewer).await?;
    let view = verdict_of(&admin, &slug, query.expect.unwrap_or_default()).await?;
    let status = if view.met || query.always_ok == Some(true) {
        StatusCode::OK
    } else {
        StatusCode::PRECONDITION_FAILED
    };
    Ok((status, axum::Json(view)).into_response())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Act {
    Promote,
    Rollback,
}

impl Act {
    fn as_str(self) -> &'static str {
        match self {
            Act::Promote => "promote",
            Act::Rollback => "rollback",
        }
    }
}

/// Whether this hook call was already made: a transition of the latest rollout carries the
/// same action and Flagger checksum.
async fn already_done(
    admin: &AdminState,
    slug: &str,
    act: Act,
    payload: &HookPayload,
) -> Result<bool, AdminError> {
    let store = admin.store()?;
    let Some(r) = store.rollouts(slug).await?.into_iter().next() else {
        return Ok(false);
    };
    if act == Act::Rollback {
        return Ok(r.state == stored::ROLLED_BACK);
    }
    let Some(checksum) = payload.checksum.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(false);
    };
    Ok(store.transitions(r.id).await?.iter().any(|t| {
        t.evidence.get("kind").and_then(Value::as_str) == Some("hook")
            && t.evidence.get("action").and_then(Value::as_str) == Some(act.as_str())
            && t.evidence.get("checksum").and_then(Value::as_str) == Some(checksum)
    }))
}

async fn act(
    admin: AdminState,
    slug: String,
    parts: Parts,
    body: Bytes,
    act: Act,
) -> Result<Response, AdminError> {
    let payload = parse_payload(&body)?;
    let principal = caller(&admin, &parts, &payload, Role::Admin).await?;
    let succeeded = payload.phase.as_deref() == Some("Succeeded");
    let skip =
        (act == Act::Rollback && succeeded) || already_done(&admin, &slug, act, &payload).await?;
    if !skip {
        let mut evidence = payload.echo();
        if let Some(obj) = evidence.as_object_mut() {
            obj.insert("kind".into(), json!("hook"));
            obj.insert("action".into(), json!(act.as_str()));
        }
        let who = evidence["canary"]
            .as_str()
            .map_or_else(String::new, |c| format!(" of {c}"));
        let phase = payload
            .phase
            .as_deref()
            .map_or_else(String::new, |p| format!(" ({p})"));
        let event = Event::Manual {
            action: match act {
                Act::Promote => Manual::Promote,
                Act::Rollback => Manual::Rollback,
            },
            actor: Actor::new(principal.id.clone()).id,
            reason: format!("progressive-delivery hook{who}{phase}: {}", act.as_str()),
        };
        actions::apply(&ctx(&admin)?, &slug, &event, evidence).await?;
        admin
            .gateway
            .traffic
            .reload_after_change(&slug, "a progressive-delivery hook")
            .await;
    }
    let view = verdict_of(&admin, &slug, Expect::Healthy).await?;
    Ok((StatusCode::OK, axum::Json(view)).into_response())
}

/// Promote canarist's rollout one stage (Flagger `confirm-promotion`).
#[utoipa::path(
    post,
    path = "/v1/hooks/{slug}/promote",
    tag = "hooks",
    params(("slug" = String, Path, description = "The deployment's slug")),
    request_body = HookPayload,
    responses(
        (status = 200, description = "Promoted (or already promoted for this checksum); the verdict after it", body = VerdictView),
        (status = 400, description = "The payload or the query fails the schema (`invalid_body`)", body = super::ErrorResponse),
        (status = 404, description = "`deployment_not_found` or `rollout_not_found`", body = super::ErrorResponse),
        (status = 409, description = "The state machine refused (e.g. paused): Flagger keeps waiting", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn promote(
    State(admin): State<AdminState>,
    Path(slug): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Result<Response, AdminError> {
    act(admin, slug, parts, body, Act::Promote).await
}

/// Roll canarist's rollout back (a Flagger `post-rollout` hook: nothing happens for phase
/// `Succeeded`).
#[utoipa::path(
    post,
    path = "/v1/hooks/{slug}/rollback",
    tag = "hooks",
    params(("slug" = String, Path, description = "The deployment's slug")),
    request_body = HookPayload,
    responses(
        (status = 200, description = "Rolled back (or already, or phase `Succeeded`); the verdict after it", body = VerdictView),
        (status = 400, description = "The payload or the query fails the schema (`invalid_body`)", body = super::ErrorResponse),
        (status = 404, description = "`deployment_not_found` or `rollout_not_found`", body = super::ErrorResponse),
        (status = 409, description = "The state machine refused", body = super::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn rollback(
    State(admin): State<AdminState>,
    Path(slug): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Result<Response, AdminError> {
    act(admin, slug, parts, body, Act::Rollback).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_leniently_and_never_echo_the_key() {
        let p = parse_payload(
            br#"{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"abc",
                "metadata":{"canarist_key":"cnr_x","cmd":"hey"},"buildId":"7"}"#,
        )
        .unwrap();
        assert_eq!(p.key(), Some("cnr_x"));
        let echo = p.echo().to_string();
        assert!(
            echo.contains("test/podinfo") && !echo.contains("cnr_x"),
            "{echo}"
        );
        assert!(parse_payload(b"").unwrap().name.is_none());
        assert!(parse_payload(b"[1]").unwrap().name.is_none());
        assert!(parse_payload(b"{nope").is_err());
        assert!(parse_payload(br#"{"name": 3}"#).is_err());
    }
}
