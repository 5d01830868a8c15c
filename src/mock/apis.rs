//! The mock's OpenAI Responses API (`POST /v1/responses`) and Anthropic Messages API
//! (`POST /v1/messages`, `POST /v1/messages/count_tokens`), with the same profiles as chat
//! completions: latency and time to first token, injected errors and `fail_first`, hangs,
//! degraded answers (`degraded_when` included), truncated and malformed bodies and streams,
//! held streams. The wire shapes are in [`super::wire_apis`].
//!
//! Owns: these routes. Never: logs per request or touches files. Fails closed: a body it cannot
//! understand is a 400 in the API's own error shape (OpenAI's for Responses, Anthropic's
//! `{"type":"error","error":{…}}` for Messages); an unknown model is 404.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::answer::{self, AnswerPlan, Draws, Outcome, UnitKey};
use super::config::{ErrorStatus, Profile};
use super::handlers::{Admitted, admit};
use super::server::MockState;
use super::tools::{self, ToolCallPlan};
use super::wire::{self, Head, MockHttpError};
use super::wire_apis::{self as w, Api};

/// One answer, whichever API asked: its text, usage and the plan that delivers it.
struct Answer {
    head: Head,
    text: String,
    input_tokens: u64,
    output_tokens: u64,
    plan: AnswerPlan,
    stream: bool,
    /// The tool call the answer makes instead of text (`tool_calls: true`), with its id.
    call: Option<(String, ToolCallPlan)>,
}

pub(super) async fn responses(
    State(st): State<MockState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    match answer(&st, Api::Responses, &headers, &bytes).await {
        Ok((a, model, profile, body)) => {
            deliver(st, Api::Responses, a, model, &profile, &body).await
        }
        Err(e) => e.into_response(),
    }
}

pub(super) async fn messages(
    State(st): State<MockState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    match answer(&st, Api::Messages, &headers, &bytes).await {
        Ok((a, model, profile, body)) => {
            deliver(st, Api::Messages, a, model, &profile, &body).await
        }
        Err(e) => w::anthropic_error(&e),
    }
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": n}` for a Messages body (not counted
/// as a request of the model, and without latency or faults).
pub(super) async fn count_tokens(
    State(st): State<MockState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let counted = (|| {
        let body = wire::parse_object(&bytes)?;
        st.record(
            "/v1/messages/count_tokens",
            &headers,
            &Value::Object(body.clone()),
        );
        let model = wire::model(&body)?;
        if st.profile(model).is_none() {
            return Err(MockHttpError::model_not_found(model));
        }
        let (_, all_text) = w::messages_prompt(&body, false)?;
        Ok(answer::estimate_tokens(&all_text))
    })();
    match counted {
        Ok(n) => axum::Json(serde_json::json!({"input_tokens": n})).into_response(),
        Err(e) => w::anthropic_error(&e),
    }
}

type Answered = (Answer, String, Profile, Map<String, Value>);

/// Admits the request and decides its answer, or the error to send instead.
async fn answer(
    st: &MockState,
    api: Api,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Answered, MockHttpError> {
    let a: Admitted = admit(st, api.path(), headers, bytes)?;
    let (prompt, all_text) = match api {
        Api::Responses => w::responses_prompt(&a.body)?,
        Api::Messages => w::messages_prompt(&a.body, true)?,
    };
    let Some(profile) = st.profile(&a.model) else {
        return Err(MockHttpError::model_not_found(&a.model));
    };
    let profile = answer::for_request(profile, &a.body).into_owned();
    let unit = match w::unit(headers, &a.body) {
        Some(u) => UnitKey::Unit(u),
        None => UnitKey::Counter(a.counter),
    };
    let draws = Draws::new(st.config().seed, &a.model, &prompt, unit);
    if a.counter < profile.fail_first {
        st.count_completed(&a.model);
        return Err(MockHttpError::injected(
            profile.error_status,
            profile.retry_after_secs,
        ));
    }
    let plan = settle(st, &a.model, &profile, &draws).await?;
    let text = answer::answer_text(&st.config().dataset, &prompt, plan.degraded).into_owned();
    let stream = a
        .body
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let head = a.head(st, api.id_prefix(), &draws);
    let call = (profile.tool_calls && !profile.judge)
        .then(|| tools::plan(&a.body, plan.degraded))
        .flatten()
        .map(|c| {
            let prefix = match api {
                Api::Responses => "call",
                Api::Messages => "toolu",
            };
            (format!("{prefix}_{}", draws.id()), c)
        });
    let output_tokens = match &call {
        Some((_, c)) => answer::estimate_tokens(&c.arguments),
        None => answer::estimate_tokens(&text),
    };
    let answered = Answer {
        head,
        input_tokens: answer::estimate_tokens(&all_text),
        output_tokens,
        text,
        plan,
        stream,
        call,
    };
    Ok((answered, a.model, profile, a.body))
}

/// Hang and injected errors, as [`MockHttpError`]s so that each API can shape them.
async fn settle(
    st: &MockState,
    model: &str,
    profile: &Profile,
    draws: &Draws,
) -> Result<AnswerPlan, MockHttpError> {
    let unavailable = || MockHttpError::injected(ErrorStatus::Unavailable503, 0);
    match answer::decide(profile, draws) {
        Outcome::Hang => {
            st.shutdown_token().cancelled().await;
            Err(unavailable())
        }
        Outcome::Error { status, latency } => {
            if !st.pause(latency).await {
                return Err(unavailable());
            }
            st.count_completed(model);
            Err(MockHttpError::injected(status, profile.retry_after_secs))
        }
        Outcome::Answer(plan) => Ok(plan),
    }
}

/// The answer as one JSON body or as a paced event stream.
async fn deliver(
    st: MockState,
    api: Api,
    a: Answer,
    model: String,
    profile: &Profile,
    body: &Map<String, Value>,
) -> Response {
    if a.stream {
        return stream(st, api, a, model, profile, body);
    }
    if !st.pause(a.plan.latency).await {
        return api.error(&MockHttpError::injected(ErrorStatus::Unavailable503, 0));
    }
    st.count_completed(&model);
    let whole = match (api, &a.call) {
        (Api::Responses, call) => w::response_object(
            &a.head,
            "completed",
            vec![match call {
                Some((id, c)) => tools::function_call_item(&a.head, id, c),
                None => w::message_item(&a.head, "completed", Some(&a.text)),
            }],
            Some(w::responses_usage(a.input_tokens, a.output_tokens)),
            body,
        ),
        (Api::Messages, None) => {
            w::message_object(&a.head, &a.text, a.input_tokens, a.output_tokens)
        }
        (Api::Messages, Some((id, c))) => {
            let mut m = w::message_object(&a.head, "", a.input_tokens, a.output_tokens);
            m["content"] = serde_json::json!([tools::tool_use_block(id, c)]);
            m["stop_reason"] = serde_json::json!("tool_use");
            m
        }
    };
    if a.plan.malformed {
        let text = wire::cut_in_half(&whole.to_string());
        return ([(header::CONTENT_TYPE, "application/json")], text).into_response();
    }
    axum::Json(whole).into_response()
}

/// The typed event stream of `api`, paced like a chat stream: the first text delta after the
/// time to first token, each next one after `chunk_delay`. A truncated stream stops after half
/// of its deltas without its closing events; a malformed one has its middle delta cut.
fn stream(
    st: MockState,
    api: Api,
    a: Answer,
    model: String,
    profile: &Profile,
    body: &Map<String, Value>,
) -> Response {
    if let Some((id, call)) = &a.call {
        return tool_stream(st, api, &a, (id.as_str(), call), model, profile, body);
    }
    let pieces = answer::split_chunks(&a.text, profile.words_per_chunk);
    let total = pieces.len();
    let keep = if a.plan.truncated {
        (total / 2).max(1)
    } else {
        total
    };
    let malformed_at = a.plan.malformed.then_some(total / 2);
    let mut events = w::Events::new(api, &a.head, body, a.input_tokens);
    let mut frames: Vec<(Duration, Bytes)> = events
        .opening()
        .into_iter()
        .map(|f| (Duration::ZERO, f))
        .collect();
    for (k, piece) in pieces.iter().take(keep).enumerate() {
        let delay = if k == 0 {
            a.plan.ttft
        } else {
            profile.chunk_delay
        };
        let frame = if malformed_at == Some(k) {
            events.malformed_delta()
        } else {
            events.delta(piece)
        };
        frames.push((delay, frame));
    }
    if !a.plan.truncated {
        let usage = (a.input_tokens, a.output_tokens);
        frames.extend(
            events
                .closing(&a.text, usage)
                .into_iter()
                .map(|f| (Duration::ZERO, f)),
        );
    }
    let hold_at = profile
        .hold_after_first_chunk
        .then_some(frames.len().min(1));
    paced(st, model, frames, hold_at)
}

/// The typed event stream of a tool call: the call's item (or block) opens, its arguments follow
/// in pieces (the first after the time to first token), then the closing events. A truncated
/// stream stops half-way through the arguments.
fn tool_stream(
    st: MockState,
    api: Api,
    a: &Answer,
    (id, call): (&str, &ToolCallPlan),
    model: String,
    profile: &Profile,
    body: &Map<String, Value>,
) -> Response {
    let pieces = tools::argument_pieces(&call.arguments);
    let keep = if a.plan.truncated {
        pieces.len() / 2
    } else {
        pieces.len()
    };
    let mut events = w::Events::new(api, &a.head, body, a.input_tokens);
    let mut frames: Vec<(Duration, Bytes)> = events
        .tool_opening(id, call)
        .into_iter()
        .map(|f| (Duration::ZERO, f))
        .collect();
    for (k, piece) in pieces.iter().take(keep).enumerate() {
        let delay = if k == 0 {
            a.plan.ttft
        } else {
            profile.chunk_delay
        };
        frames.push((delay, events.tool_delta(piece)));
    }
    if !a.plan.truncated {
        let closing = events.tool_closing(id, call, (a.input_tokens, a.output_tokens));
        frames.extend(closing.into_iter().map(|f| (Duration::ZERO, f)));
    }
    let hold_at = profile
        .hold_after_first_chunk
        .then_some(frames.len().min(1));
    paced(st, model, frames, hold_at)
}

/// An SSE response that sends each frame after its delay (and frame `hold_at` only after
/// `MockState::release_streams`); the model's completed counter moves with the last frame.
pub(super) fn paced(
    st: MockState,
    model: String,
    frames: Vec<(Duration, Bytes)>,
    hold_at: Option<usize>,
) -> Response {
    let n = frames.len();
    let it = frames.into_iter().enumerate();
    let stream = futures::stream::unfold((it, st, model), move |(mut it, st, model)| async move {
        let (i, (delay, data)) = it.next()?;
        if hold_at == Some(i) && !st.wait_release().await {
            return None;
        }
        if !st.pause(delay).await {
            return None;
        }
        if i + 1 == n {
            st.count_completed(&model);
        }
        Some((Ok::<_, Infallible>(data), (it, st, model)))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
