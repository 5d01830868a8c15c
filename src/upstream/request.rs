//! Reading a client's request body once and writing the body a variant receives.
//!
//! The body is parsed into top-level keys with raw (unparsed) values, so every field the gateway
//! does not own passes through byte for byte, unknown fields included. Only `model`, the
//! variant's parameter overrides, its system prompt and (for streams) `stream_options` change.

use indexmap::IndexMap;
use serde_json::value::RawValue;

use crate::capture::Endpoint;
use crate::config::Variant;
use crate::routing::UnitFields;

/// Why a client's body was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("We could not parse the JSON body of your request: {0}")]
    InvalidJson(String),
    #[error("The request body must be a JSON object.")]
    NotAnObject,
    #[error("Missing required parameter: '{0}'.")]
    Missing(&'static str),
    #[error("Invalid type for '{field}': expected {expected}.")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
}

impl RequestError {
    /// The request field the error is about, for the OpenAI error's `param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            RequestError::Missing(f) => Some(f),
            RequestError::WrongType { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// A client request body, parsed once.
#[derive(Debug)]
pub struct ClientRequest<'a> {
    fields: IndexMap<String, &'a RawValue>,
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    pub user: Option<String>,
    /// `safety_identifier` and `prompt_cache_key`, OpenAI's successors to `user` (unit keys).
    pub safety_identifier: Option<String>,
    pub prompt_cache_key: Option<String>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// The client asked for the usage chunk (`stream_options.include_usage: true`).
    pub client_wants_usage: bool,
    /// The field that refers to state a provider holds (`previous_response_id` or
    /// `conversation` of a Responses request), when the request has one: only a variant on the
    /// same provider can resolve it.
    pub provider_state: Option<&'static str>,
    /// A Responses request with `background: true`: a non-streamed one is answered `queued`,
    /// before the model has answered.
    pub background: bool,
}

fn decode<'a, T: serde::Deserialize<'a>>(
    raw: &'a RawValue,
    field: &'static str,
    expected: &'static str,
) -> Result<T, RequestError> {
    serde_json::from_str(raw.get()).map_err(|_| RequestError::WrongType { field, expected })
}

/// Parses `body` for `endpoint`, checking the fields the endpoint requires.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<ClientRequest<'_>, RequestError> {
    let value: &RawValue =
        serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
    if !value.get().trim_start().starts_with('{') {
        return Err(RequestError::NotAnObject);
    }
    let fields: IndexMap<String, &RawValue> =
        serde_json::from_str(value.get()).map_err(|e| RequestError::InvalidJson(e.to_string()))?;

    let model: String = match fields.get("model") {
        None => return Err(RequestError::Missing("model")),
        Some(raw) => decode(raw, "model", "a string")?,
    };
    if model.is_empty() {
        return Err(RequestError::Missing("model"));
    }
    let required = match endpoint {
        Endpoint::ChatCompletions | Endpoint::Messages => Some("messages"),
        Endpoint::Completions => Some("prompt"),
        Endpoint::Embeddings => Some("input"),
        // `input` may be absent (a stored prompt, a conversation): the provider decides.
        Endpoint::Responses => None,
    };
    if let Some(required) = required {
        match fields.get(required) {
            None => return Err(RequestError::Missing(required)),
            Some(raw) if raw.get() == "null" => return Err(RequestError::Missing(required)),
            Some(raw) if required == "messages" && !raw.get().starts_with('[') => {
                return Err(RequestError::WrongType {
                    field: "messages",
                    expected: "an array",
                });
            }
            Some(_) => {}
        }
    }
    let stream = match fields.get("stream") {
        None => false,
        Some(raw) if raw.get() == "null" => false,
        Some(raw) => decode(raw, "stream", "a boolean")?,
    };
    let optional_string = |field: &'static str| match fields.get(field) {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => decode::<String>(raw, field, "a string").map(Some),
    };
    let user = optional_string("user")?;
    let safety_identifier = optional_string("safety_identifier")?;
    let prompt_cache_key = optional_string("prompt_cache_key")?;
    let metadata = match fields.get("metadata") {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => Some(decode(raw, "metadata", "an object")?),
    };
    let client_wants_usage = fields
        .get("stream_options")
        .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).ok())
        .and_then(|v| v.get("include_usage").and_then(serde_json::Value::as_bool))
        .unwrap_or(false);
    let provider_state = match endpoint {
        Endpoint::Responses => ["previous_response_id", "conversation"]
            .into_iter()
            .find(|f| fields.get(*f).is_some_and(|raw| raw.get() != "null")),
        _ => None,
    };
    let background = endpoint == Endpoint::Responses
        && fields
            .get("background")
            .is_some_and(|raw| raw.get().trim() == "true");
    Ok(ClientRequest {
        background,
        fields,
        endpoint,
        model,
        stream,
        user,
        safety_identifier,
        prompt_cache_key,
        metadata,
        client_wants_usage,
        provider_state,
    })
}

/// Where a variant's `system_prompt` goes in a body of `endpoint`: the first system message of
/// `messages` (chat), or a top-level string field (`instructions` of the Responses API,
/// `system` of Anthropic's Messages API). Completions and embeddings have none.
fn system_prompt_field(endpoint: Endpoint) -> Option<&'static str> {
    match endpoint {
        Endpoint::ChatCompletions => Some("messages"),
        Endpoint::Responses => Some("instructions"),
        Endpoint::Messages => Some("system"),
        Endpoint::Completions | Endpoint::Embeddings => None,
    }
}

/// Whether a stream of `endpoint` carries usage only when asked (`stream_options`): chat
/// completions and completions. Responses and Messages streams always carry it.
pub fn usage_on_request(endpoint: Endpoint) -> bool {
    matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Completions)
}

impl ClientRequest<'_> {
    /// The body's top-level keys and values, parsed (what a translation reads).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.fields
            .iter()
            .filter_map(|(k, raw)| Some((k.clone(), serde_json::from_str(raw.get()).ok()?)))
            .collect()
    }

    /// Whether the gateway asked the upstream for the usage chunk that the client did not ask
    /// for (chat and completions streams), so that the tee withholds it.
    pub fn withhold_usage(&self) -> bool {
        usage_on_request(self.endpoint) && !self.client_wants_usage
    }

    /// The body with only `model` replaced (and the variant's system prompt, which counts
    /// tokens): what `/messages/count_tokens` of the deployment's provider receives, since it
    /// accepts no sampling parameters.
    pub fn body_with_model(&self, variant: &Variant) -> Vec<u8> {
        let bare = Variant {
            params: serde_json::Map::new(),
            ..variant.clone()
        };
        self.body_for(&bare)
    }

    /// The unit key candidates this request carries, with the `x-canarist-unit` header's and
    /// the tenant header's values from the caller.
    pub fn unit_fields<'s>(
        &'s self,
        header: Option<&'s str>,
        tenant: Option<&'s str>,
    ) -> UnitFields<'s> {
        UnitFields {
            header,
            safety_identifier: self.safety_identifier.as_deref(),
            user: self.user.as_deref(),
            prompt_cache_key: self.prompt_cache_key.as_deref(),
            metadata_user_id: self
                .metadata
                .as_ref()
                .and_then(|m| m.get("user_id"))
                .and_then(serde_json::Value::as_str),
            tenant,
        }
    }

    /// The body `variant` receives: the client's body with `model` replaced, the variant's
    /// overrides applied, and, for streams, usage requested from the upstream.
    pub fn body_for(&self, variant: &Variant) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.fields
                .values()
                .map(|v| v.get().len() + 16)
                .sum::<usize>()
                + 64,
        );
        out.push(b'{');
        let mut first = true;
        let mut put = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Keys are plain strings; serde_json escapes them correctly.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(value);
        };
        let wants_usage_upstream = self.stream && usage_on_request(self.endpoint);
        let system_field = system_prompt_field(self.endpoint);
        let system = variant.system_prompt.as_deref().zip(system_field);
        for (key, raw) in &self.fields {
            match key.as_str() {
                "model" => {
                    let model = serde_json::to_vec(&variant.model).unwrap_or_default();
                    put(&mut out, key, &model);
                }
                "messages" if system.is_some_and(|(_, f)| f == "messages") => {
                    let messages = with_system_prompt(raw, variant.system_prompt.as_deref());
                    put(&mut out, key, &messages);
                }
                k if system.is_some_and(|(_, f)| f == k) => {
                    let prompt = system.map(|(p, _)| p).unwrap_or_default();
                    put(
                        &mut out,
                        key,
                        &serde_json::to_vec(prompt).unwrap_or_default(),
                    );
                }
                "stream_options" if wants_usage_upstream => {
                    put(&mut out, key, &with_usage(raw));
                }
                k if variant.params.contains_key(k) => {}
                _ => put(&mut out, key, raw.get().as_bytes()),
            }
        }
        if let Some((prompt, field)) = system.filter(|(_, f)| !self.fields.contains_key(*f)) {
            put(
                &mut out,
                field,
                &serde_json::to_vec(prompt).unwrap_or_default(),
            );
        }
        if wants_usage_upstream && !self.fields.contains_key("stream_options") {
            put(&mut out, "stream_options", br#"{"include_usage":true}"#);
        }
        for (key, value) in &variant.params {
            let value = serde_json::to_vec(value).unwrap_or_default();
            put(&mut out, key, &value);
        }
        out.push(b'}');
        out
    }
}

/// `messages` with the first system message's content replaced by `prompt`, or a system
/// message inserted first when there is none.
fn with_system_prompt(raw: &RawValue, prompt: Option<&str>) -> Vec<u8> {
    let Some(prompt) = prompt else {
        return raw.get().as_bytes().to_vec();
    };
    let Ok(mut messages) = serde_json::from_str::<Vec<serde_json::Value>>(raw.get()) else {
        return raw.get().as_bytes().to_vec();
    };
    let system = messages.iter_mut().find(|m| {
        let role = m.get("role").and_then(serde_json::Value::as_str);
        role == Some("system") || role == Some("developer")
    });
    match system {
        Some(m) => m["content"] = serde_json::Value::String(prompt.to_owned()),
        None => messages.insert(0, serde_json::json!({"role": "system", "content": prompt})),
    }
    serde_json::to_vec(&messages).unwrap_or_else(|_| raw.get().as_bytes().to_vec())
}

/// `stream_options` with `include_usage: true`.
fn with_usage(raw: &RawValue) -> Vec<u8> {
    let mut options = serde_json::from_str::<serde_json::Value>(raw.get())
        .ok()
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    options["include_usage"] = serde_json::Value::Bool(true);
    serde_json::to_vec(&options).unwrap_or_else(|_| br#"{"include_usage":true}"#.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn variant(model: &str) -> Variant {
        Variant {
            name: "stable".into(),
            provider: "p".into(),
            model: model.into(),
            system_prompt: None,
            params: serde_json::Map::new(),
        }
    }

    fn rewrite(body: Value, v: &Variant) -> Value {
        let bytes = serde_json::to_vec(&body).unwrap();
        let req = parse(Endpoint::ChatCompletions, &bytes).unwrap();
        serde_json::from_slice(&req.body_for(v)).unwrap()
    }

    #[test]
    fn model_is_rewritten_and_everything_else_passes_through() {
        let body = json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}],
                          "x_unknown": {"nested": [1, 2.50, "é"]}, "temperature": 0.7});
        let out = rewrite(body.clone(), &variant("gpt-x"));
        assert_eq!(out["model"], "gpt-x");
        assert_eq!(out["x_unknown"], body["x_unknown"]);
        assert_eq!(out["temperature"], 0.7);
        assert_eq!(out["messages"], body["messages"]);
    }

    #[test]
    fn raw_values_are_forwarded_byte_for_byte() {
        let body = br#"{"model":"a","messages":[{"role":"user","content":"x"}],"n_odd":1.50e0}"#;
        let req = parse(Endpoint::ChatCompletions, body).unwrap();
        let out = String::from_utf8(req.body_for(&variant("b"))).unwrap();
        assert!(out.contains(r#""n_odd":1.50e0"#), "{out}");
    }

    #[test]
    fn overrides_and_system_prompt_apply() {
        let mut v = variant("m");
        v.params.insert("temperature".into(), json!(0.1));
        v.params.insert("max_tokens".into(), json!(64));
        v.system_prompt = Some("Be brief.".into());
        let out = rewrite(
            json!({"model": "a", "temperature": 1.0, "messages": [{"role": "user", "content": "q"}]}),
            &v,
        );
        assert_eq!(out["temperature"], 0.1);
        assert_eq!(out["max_tokens"], 64);
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(out["messages"][1]["content"], "q");
        let replaced = rewrite(
            json!({"model": "a", "messages": [{"role": "system", "content": "old"}, {"role": "user", "content": "q"}]}),
            &v,
        );
        assert_eq!(replaced["messages"].as_array().unwrap().len(), 2);
        assert_eq!(replaced["messages"][0]["content"], "Be brief.");
    }

    #[test]
    fn streams_request_usage_upstream() {
        let out = rewrite(
            json!({"model": "a", "messages": [], "stream": true}),
            &variant("m"),
        );
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        let body = serde_json::to_vec(&json!({"model": "a", "messages": [], "stream": true,
            "stream_options": {"include_usage": true}}))
        .unwrap();
        assert!(
            parse(Endpoint::ChatCompletions, &body)
                .unwrap()
                .client_wants_usage
        );
        let plain = rewrite(json!({"model": "a", "messages": []}), &variant("m"));
        assert!(plain.get("stream_options").is_none());
    }

    #[test]
    fn bad_bodies_name_the_problem() {
        let p = |b: &[u8]| parse(Endpoint::ChatCompletions, b).unwrap_err();
        assert!(matches!(p(b"{not json"), RequestError::InvalidJson(_)));
        assert_eq!(p(b"[1]"), RequestError::NotAnObject);
        assert_eq!(p(br#"{"messages": []}"#), RequestError::Missing("model"));
        assert_eq!(p(br#"{"model": "m"}"#), RequestError::Missing("messages"));
        assert_eq!(p(br#"{"model": 3, "messages": []}"#).param(), Some("model"));
        assert_eq!(
            p(br#"{"model": "m", "messages": [], "stream": "yes"}"#).param(),
            Some("stream")
        );
        let e = parse(Endpoint::Embeddings, br#"{"model": "m"}"#).unwrap_err();
        assert_eq!(e, RequestError::Missing("input"));
    }
}
