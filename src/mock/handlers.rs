//! The mock's HTTP routes: OpenAI-compatible chat completions, legacy completions, embeddings
//! and models, the Responses and Anthropic Messages APIs (`apis`), plus `/_mock/requests` and
//! `/_mock/counts` for inspection.
//!
//! Owns: request handling, delays and the SSE streams (frames are built up front, then paced).
//! Never: logs per request or touches files. Fails closed: anything it cannot understand is
//! answered with an OpenAI-shaped 4xx; a model it does not know is 404 `model_not_found`.

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Map, Value, json};

use super::answer::{self, AnswerPlan, Draws, Outcome, UnitKey};
use super::config::Profile;
use super::server::MockState;
use super::wire::{self, Head, MockHttpError};

/// The mock's routes over `state`.
pub fn router(state: MockState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(super::apis::responses))
        .route("/v1/messages", post(super::apis::messages))
        .route("/v1/messages/count_tokens", post(super::apis::count_tokens))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model_one))
        .route("/_mock/requests", get(recorded))
        .route("/_mock/counts", get(counts))
        .fallback(|uri: Uri| async move { MockHttpError::not_found(uri.path()) })
        .with_state(state)
}

/// A request that named a model this mock serves.
pub(super) struct Admitted {
    pub body: Map<String, Value>,
    pub model: String,
    /// How many requests for this model came before.
    pub counter: u64,
}

impl Admitted {
    fn draws(&self, st: &MockState, headers: &HeaderMap, prompt: &str) -> Draws {
        let unit = match wire::unit(headers, &self.body) {
            Some(u) => UnitKey::Unit(u),
            None => UnitKey::Counter(self.counter),
        };
        Draws::new(st.config().seed, &self.model, prompt, unit)
    }

    pub(super) fn head(&self, st: &MockState, prefix: &str, draws: &Draws) -> Head {
        Head {
            id: format!("{prefix}-{}", draws.id()),
            model: self.model.clone(),
            created: st.config().fixed_created.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            }),
        }
    }
}

/// Parses and records a request, and counts it for its model.
pub(super) fn admit(
    st: &MockState,
    path: &str,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Admitted, MockHttpError> {
    let body = match wire::parse_object(bytes) {
        Ok(b) => b,
        Err(e) => {
            st.record(path, headers, &Value::Null);
            return Err(e);
        }
    };
    let body = Value::Object(body);
    st.record(path, headers, &body);
    let Value::Object(body) = body else {
        return Err(MockHttpError::invalid(
            "The request body must be a JSON object.",
            None,
        ));
    };
    let model = wire::model(&body)?.to_owned();
    if st.profile(&model).is_none() {
        return Err(MockHttpError::model_not_found(&model));
    }
    let counter = st.count_request(&model);
    Ok(Admitted {
        body,
        model,
        counter,
    })
}

/// Applies hang and injected errors; `Err` is the response to send instead of an answer.
async fn settle(
    st: &MockState,
    model: &str,
    profile: &Profile,
    draws: &Draws,
) -> Result<AnswerPlan, Response> {
    match answer::decide(profile, draws) {
        Outcome::Hang => {
            st.shutdown_token().cancelled().await;
            Err(shutting_down())
        }
        Outcome::Error { status, latency } => {
            if !st.pause(latency).await {
                return Err(shutting_down());
            }
            st.count_completed(model);
            Err(MockHttpError::injected(status, profile.retry_after_secs).into_response())
        }
        Outcome::Answer(plan) => Ok(plan),
    }
}

fn shutting_down() -> Response {
    MockHttpError::injected(super::config::ErrorStatus::Unavailable503, 0).into_response()
}

/// A plain JSON answer after the plan's latency; cut in half when the plan says malformed.
async fn plain(st: &MockState, model: &str, plan: &AnswerPlan, body: Value) -> Response {
    if !st.pause(plan.latency).await {
        return shutting_down();
    }
    st.count_completed(model);
    if plan.malformed {
        let text = wire::cut_in_half(&body.to_string());
        return ([(header::CONTENT_TYPE, "application/json")], text).into_response();
    }
    axum::Json(body).into_response()
}

async fn chat(State(st): State<MockState>, headers: HeaderMap, bytes: Bytes) -> Response {
    chat_inner(&st, &headers, &bytes)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn chat_inner(
    st: &MockState,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, MockHttpError> {
    let a = admit(st, "/v1/chat/completions", headers, bytes)?;
    let (prompt, all_text) = wire::chat_prompt(&a.body)?;
    wire::check_n(&a.body)?;
    let (stream, include_usage) = wire::stream_flags(&a.body);
    let Some(profile) = st.profile(&a.model) else {
        return Err(MockHttpError::model_not_found(&a.model));
    };
    let effective = answer::for_request(profile, &a.body);
    let profile: &Profile = &effective;
    let draws = a.draws(st, headers, &prompt);
    if a.counter < profile.fail_first {
        st.count_completed(&a.model);
        let e = MockHttpError::injected(profile.error_status, profile.retry_after_secs);
        return Ok(e.into_response());
    }
    let plan = match settle(st, &a.model, profile, &draws).await {
        Ok(plan) => plan,
        Err(response) => return Ok(response),
    };
    if let Some(call) = (profile.tool_calls && !profile.judge)
        .then(|| super::tools::plan(&a.body, plan.degraded))
        .flatten()
    {
        let head = a.head(st, "chatcmpl", &draws);
        return Ok(chat_tool_call(
            st,
            &a,
            profile,
            &plan,
            head,
            &call,
            &all_text,
            (stream, include_usage),
        )
        .await);
    }
    let text = if profile.judge {
        let garbage = super::judge::garbage_draw(&draws) < profile.judge_garbage_rate;
        std::borrow::Cow::Owned(super::judge::reply(&st.config().dataset, &a.body, garbage))
    } else {
        answer::answer_text(&st.config().dataset, &prompt, plan.degraded)
    };
    let text = match profile.answer_bytes.filter(|_| !stream) {
        Some(n) => std::borrow::Cow::Owned(answer::padded(&text, n)),
        None => text,
    };
    let usage = wire::usage(
        answer::estimate_tokens(&all_text),
        answer::estimate_tokens(&text),
    );
    let head = a.head(st, "chatcmpl", &draws);
    if !stream {
        let body = wire::chat_completion(&head, &text, usage);
        return Ok(plain(st, &a.model, &plan, body).await);
    }
    let spec = StreamSpec {
        kind: Kind::Chat,
        head,
        choices: vec![text.into_owned()],
        usage,
        include_usage,
    };
    Ok(stream_response(st.clone(), a.model, profile, &plan, spec))
}

/// A chat answer that calls a tool (`tool_calls: true` and a request with `tools`): one JSON
/// body, or a stream of the call's id and name, then its arguments in pieces. A truncated
/// stream stops half-way through the arguments, without `finish_reason` or `[DONE]`.
#[allow(clippy::too_many_arguments)]
async fn chat_tool_call(
    st: &MockState,
    a: &Admitted,
    profile: &Profile,
    plan: &AnswerPlan,
    head: Head,
    call: &super::tools::ToolCallPlan,
    all_text: &str,
    (stream, include_usage): (bool, bool),
) -> Response {
    use super::tools;
    let call_id = format!("call_{}", head.id.trim_start_matches("chatcmpl-"));
    let usage = wire::usage(
        answer::estimate_tokens(all_text),
        answer::estimate_tokens(&call.arguments),
    );
    if !stream {
        let body = tools::chat_completion(&head, &call_id, call, usage);
        return plain(st, &a.model, plan, body).await;
    }
    let pieces = tools::argument_pieces(&call.arguments);
    let keep = if plan.truncated {
        pieces.len() / 2
    } else {
        pieces.len()
    };
    let chunk = |piece: Option<&str>, finish: bool| {
        let mut c = tools::chat_chunk(&head, &call_id, call, piece, finish);
        if include_usage {
            c["usage"] = Value::Null;
        }
        wire::sse(&c)
    };
    let mut frames = vec![(plan.ttft, chunk(None, false))];
    for p in pieces.iter().take(keep) {
        frames.push((profile.chunk_delay, chunk(Some(p), false)));
    }
    if !plan.truncated {
        frames.push((Duration::ZERO, chunk(None, true)));
        if include_usage {
            let c = wire::usage_chunk(&head, "chat.completion.chunk", usage);
            frames.push((Duration::ZERO, wire::sse(&c)));
        }
        frames.push((Duration::ZERO, Bytes::from_static(wire::SSE_DONE)));
    }
    let hold_at = profile.hold_after_first_chunk.then_some(1);
    super::apis::paced(st.clone(), a.model.clone(), frames, hold_at)
}

async fn completions(State(st): State<MockState>, headers: HeaderMap, bytes: Bytes) -> Response {
    completions_inner(&st, &headers, &bytes)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn completions_inner(
    st: &MockState,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, MockHttpError> {
    let a = admit(st, "/v1/completions", headers, bytes)?;
    let prompts = wire::string_list(&a.body, "prompt")?;
    wire::check_n(&a.body)?;
    let (stream, include_usage) = wire::stream_flags(&a.body);
    let Some(profile) = st.profile(&a.model) else {
        return Err(MockHttpError::model_not_found(&a.model));
    };
    let draws = a.draws(st, headers, &prompts.join("\n"));
    let plan = match settle(st, &a.model, profile, &draws).await {
        Ok(plan) => plan,
        Err(response) => return Ok(response),
    };
    // Each prompt has its own good/degraded draw (one prompt: the request's own draw).
    let texts: Vec<String> = prompts
        .iter()
        .map(|p| {
            let degraded = answer::is_degraded(profile, &a.draws(st, headers, p));
            answer::answer_text(&st.config().dataset, p, degraded).into_owned()
        })
        .collect();
    let usage = wire::usage(
        prompts.iter().map(|p| answer::estimate_tokens(p)).sum(),
        texts.iter().map(|t| answer::estimate_tokens(t)).sum(),
    );
    let head = a.head(st, "cmpl", &draws);
    if !stream {
        let choices = (texts.iter().enumerate())
            .map(|(i, t)| wire::text_choice(i, t, Some("stop")))
            .collect();
        let body = wire::text_completion(&head, choices, Some(usage));
        return Ok(plain(st, &a.model, &plan, body).await);
    }
    let spec = StreamSpec {
        kind: Kind::Text,
        head,
        choices: texts,
        usage,
        include_usage,
    };
    Ok(stream_response(st.clone(), a.model, profile, &plan, spec))
}

async fn embeddings(State(st): State<MockState>, headers: HeaderMap, bytes: Bytes) -> Response {
    embeddings_inner(&st, &headers, &bytes)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn embeddings_inner(
    st: &MockState,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, MockHttpError> {
    let a = admit(st, "/v1/embeddings", headers, bytes)?;
    let inputs = wire::string_list(&a.body, "input")?;
    let dims = match a.body.get("dimensions") {
        None | Some(Value::Null) => st.config().embedding_dimensions,
        Some(v) => match v.as_u64() {
            Some(d @ 1..=4096) => d as usize,
            _ => {
                return Err(MockHttpError::invalid(
                    "'dimensions' must be an integer in 1..=4096.",
                    Some("dimensions"),
                ));
            }
        },
    };
    let base64 = match a.body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(MockHttpError::invalid(
                "'encoding_format' must be 'float' or 'base64'.",
                Some("encoding_format"),
            ));
        }
    };
    let Some(profile) = st.profile(&a.model) else {
        return Err(MockHttpError::model_not_found(&a.model));
    };
    let draws = a.draws(st, headers, &inputs.join("\n"));
    let plan = match settle(st, &a.model, profile, &draws).await {
        Ok(plan) => plan,
        Err(response) => return Ok(response),
    };
    let data: Vec<Value> = (inputs.iter().enumerate())
        .map(|(i, input)| {
            let v = answer::embedding(input, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|s| answer::estimate_tokens(s)).sum();
    let body = json!({
        "object": "list",
        "data": data,
        "model": a.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    Ok(plain(st, &a.model, &plan, body).await)
}

/// A fixed `created` for model objects.
const MODELS_CREATED: u64 = 1_700_000_000;

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": MODELS_CREATED, "owned_by": "canarist-mock"})
}

async fn models(State(st): State<MockState>) -> Response {
    let data: Vec<Value> = st.config().models.keys().map(|m| model_object(m)).collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

async fn model_one(State(st): State<MockState>, Path(id): Path<String>) -> Response {
    match st.profile(&id) {
        Some(_) => axum::Json(model_object(&id)).into_response(),
        None => MockHttpError::model_not_found(&id).into_response(),
    }
}

async fn recorded(State(st): State<MockState>) -> Response {
    axum::Json(st.requests()).into_response()
}

async fn counts(State(st): State<MockState>) -> Response {
    let map: Map<String, Value> = (st.counts().into_iter())
        .map(|(m, r, c)| (m, json!({"requests": r, "completed": c})))
        .collect();
    axum::Json(map).into_response()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

struct StreamSpec {
    kind: Kind,
    head: Head,
    /// The answer of each choice, streamed one after the other.
    choices: Vec<String>,
    usage: Value,
    include_usage: bool,
}

/// One SSE frame and when to send it.
struct Frame {
    /// Wait for `MockState::release_streams` before this frame.
    hold: bool,
    delay: Duration,
    data: Bytes,
}

/// The frames of a stream, faults applied: a truncated stream stops after half of its content
/// chunks (at least one) without finish_reason, usage or `[DONE]`; a malformed one has its
/// middle content chunk replaced by invalid JSON.
fn frames(spec: &StreamSpec, profile: &Profile, plan: &AnswerPlan) -> Vec<Frame> {
    let pieces: Vec<(usize, Vec<&str>)> = (spec.choices.iter().enumerate())
        .map(|(i, t)| (i, answer::split_chunks(t, profile.words_per_chunk)))
        .collect();
    let total: usize = pieces.iter().map(|(_, p)| p.len()).sum();
    let keep = if plan.truncated {
        (total / 2).max(1)
    } else {
        total
    };
    let malformed_at = plan.malformed.then_some(total / 2);
    // An endless stream never sends its end: no finish reason, usage or `[DONE]`.
    let ends = !plan.truncated && !profile.endless_stream;
    let object = match spec.kind {
        Kind::Chat => "chat.completion.chunk",
        Kind::Text => "text_completion",
    };
    let mut out = Vec::with_capacity(total + 2);
    let flat = pieces.iter().flat_map(|(ci, p)| {
        p.iter()
            .enumerate()
            .map(move |(pi, s)| (*ci, pi + 1 == p.len(), pi == 0, *s))
    });
    for (k, (choice, last, first, piece)) in flat.take(keep).enumerate() {
        let finish = (last && ends).then_some("stop");
        let data = if malformed_at == Some(k) {
            wire::sse_malformed(&spec.head, object)
        } else {
            let chunk = match spec.kind {
                Kind::Chat => {
                    wire::chat_chunk(&spec.head, piece, first, finish, spec.include_usage)
                }
                Kind::Text => wire::text_completion(
                    &spec.head,
                    vec![wire::text_choice(choice, piece, finish)],
                    None,
                ),
            };
            wire::sse(&chunk)
        };
        let delay = if k == 0 {
            plan.ttft
        } else {
            profile.chunk_delay
        };
        out.push(Frame {
            hold: false,
            delay,
            data,
        });
    }
    if spec.kind == Kind::Chat && !out.is_empty() {
        let mut hostile = Vec::new();
        if let Some(index) = profile.huge_tool_index {
            let mut chunk = wire::chat_chunk(&spec.head, "", false, None, false);
            chunk["choices"][0]["delta"] = json!({"tool_calls": [{"index": index, "id": "call_x",
                "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
            hostile.push(wire::sse(&chunk));
        }
        if let Some(n) = profile.answer_bytes {
            let filler = answer::padded("", n);
            hostile.push(wire::sse(&wire::chat_chunk(
                &spec.head, &filler, false, None, false,
            )));
        }
        for (i, data) in hostile.into_iter().enumerate() {
            let frame = Frame {
                hold: false,
                delay: Duration::ZERO,
                data,
            };
            out.insert(1 + i, frame);
        }
    }
    if ends {
        if spec.include_usage {
            let chunk = wire::usage_chunk(&spec.head, object, spec.usage.clone());
            out.push(Frame {
                hold: false,
                delay: Duration::ZERO,
                data: wire::sse(&chunk),
            });
        }
        out.push(Frame {
            hold: false,
            delay: Duration::ZERO,
            data: Bytes::from_static(wire::SSE_DONE),
        });
    }
    if let Some(second) = out.get_mut(1) {
        second.hold = profile.hold_after_first_chunk;
    }
    out
}

/// An SSE response whose frames are paced by their delays; the model's completed counter moves
/// when the last frame is handed to the connection.
fn stream_response(
    st: MockState,
    model: String,
    profile: &Profile,
    plan: &AnswerPlan,
    spec: StreamSpec,
) -> Response {
    let frames = frames(&spec, profile, plan);
    let n = frames.len();
    let endless = profile.endless_stream;
    // An endless stream goes on with the same chunk, every `chunk_delay`, forever.
    let more = endless.then(|| {
        let chunk = match spec.kind {
            Kind::Chat => wire::chat_chunk(&spec.head, " more", false, None, false),
            Kind::Text => {
                wire::text_completion(&spec.head, vec![wire::text_choice(0, " more", None)], None)
            }
        };
        (profile.chunk_delay, wire::sse(&chunk))
    });
    let tail = std::iter::repeat_with(move || more.clone())
        .map_while(|m| m)
        .map(|(delay, data)| {
            let frame = Frame {
                hold: false,
                delay,
                data,
            };
            (usize::MAX, frame)
        });
    let it = frames.into_iter().enumerate().chain(tail);
    let state = (it, st, model);
    let stream = futures::stream::unfold(state, move |(mut it, st, model)| async move {
        let (i, frame) = it.next()?;
        if frame.hold && !st.wait_release().await {
            return None;
        }
        if !st.pause(frame.delay).await {
            return None;
        }
        if i.checked_add(1) == Some(n) && !endless {
            st.count_completed(&model);
        }
        Some((Ok::<_, Infallible>(frame.data), (it, st, model)))
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
