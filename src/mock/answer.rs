//! What the mock answers, decided purely from a profile, the dataset and a few seeded draws.
//!
//! Owns: the random draws, the outcome of a request (hang, injected error, answer and its
//! faults), answer text, token estimates, stream chunking and embedding vectors. Pure: no I/O,
//! no clocks, no global RNG, so all of it is unit-tested here.
//!
//! # What is deterministic
//! Every draw of a request is a hash (xxh3) of `(seed, model, prompt, unit)`, where `prompt` is
//! the last user message (chat) or the prompt string (completions) and `unit` is the
//! `x-canarist-unit` header, else the request's `user` field, else the request's position among
//! the requests this server received for that model (0, 1, 2, …). From that hash, independent
//! uniform draws decide, in this order: hang (from the profile, no draw), injected error,
//! latency, time to first token, degraded answer, truncated stream, malformed body or chunk.
//! Hence: with a unit key, the same request gets the same outcome and the same words on every
//! run with the same `--seed`, whatever the concurrency; without one, the n-th request to a
//! model gets the same outcome, so sequential runs replay exactly and concurrent runs replay the
//! same set of outcomes but not necessarily in the same order. Answer text depends only on the
//! prompt and the good/degraded draw; embeddings only on the input text and dimension. Not
//! deterministic: `created` timestamps, and the actual wall-clock delays (sleeps are exact draws,
//! but the scheduler adds its own jitter).

use std::borrow::Cow;
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::config::{ErrorStatus, Latency, Profile};
use super::dataset::Dataset;

/// The unit a request's draws are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKey<'a> {
    /// `x-canarist-unit` header or `user` field.
    Unit(&'a str),
    /// The request's position among this model's requests.
    Counter(u64),
}

/// The seeded draws of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draws {
    base: u64,
}

#[derive(Debug, Clone, Copy)]
#[repr(u64)]
enum Stream {
    Error = 1,
    Latency = 2,
    Ttft = 3,
    Quality = 4,
    Truncate = 5,
    Malformed = 6,
}

impl Draws {
    pub fn new(seed: u64, model: &str, prompt: &str, unit: UnitKey<'_>) -> Self {
        let mut material = Vec::with_capacity(model.len() + prompt.len() + 32);
        material.extend_from_slice(model.as_bytes());
        material.push(0);
        material.extend_from_slice(prompt.as_bytes());
        material.push(0);
        match unit {
            UnitKey::Unit(u) => {
                material.push(b'u');
                material.extend_from_slice(u.as_bytes());
            }
            UnitKey::Counter(n) => {
                material.push(b'n');
                material.extend_from_slice(&n.to_le_bytes());
            }
        }
        Self {
            base: xxh3_64_with_seed(&material, seed),
        }
    }

    /// A uniform draw in (0, 1), independent across streams.
    fn uniform(&self, stream: Stream) -> f64 {
        let h = xxh3_64_with_seed(&self.base.to_le_bytes(), stream as u64);
        ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A short id derived from the draws, e.g. for `chatcmpl-…`.
    pub fn id(&self) -> String {
        format!("mock{:016x}", self.base)
    }
}

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Never answer.
    Hang,
    /// Answer `status` after `latency`.
    Error {
        status: ErrorStatus,
        latency: Duration,
    },
    Answer(AnswerPlan),
}

/// How an answer is delivered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerPlan {
    pub degraded: bool,
    /// Streams only: stop half-way without finish_reason or `[DONE]`.
    pub truncated: bool,
    /// Plain body, or one stream chunk, is invalid JSON.
    pub malformed: bool,
    /// Delay before a plain response.
    pub latency: Duration,
    /// Delay before a stream's first chunk.
    pub ttft: Duration,
}

/// Decides the outcome of one request.
pub fn decide(profile: &Profile, draws: &Draws) -> Outcome {
    if profile.hang {
        return Outcome::Hang;
    }
    let latency = sample_latency(&profile.latency, draws.uniform(Stream::Latency));
    if draws.uniform(Stream::Error) < profile.error_rate {
        return Outcome::Error {
            status: profile.error_status,
            latency,
        };
    }
    let ttft = match &profile.ttft {
        Some(l) => sample_latency(l, draws.uniform(Stream::Ttft)),
        None => latency,
    };
    Outcome::Answer(AnswerPlan {
        degraded: is_degraded(profile, draws),
        truncated: draws.uniform(Stream::Truncate) < profile.truncate_rate,
        malformed: draws.uniform(Stream::Malformed) < profile.malformed_rate,
        latency,
        ttft,
    })
}

/// The profile a request is answered with: `profile` itself, or a copy whose `degraded_rate`
/// is the `degraded_when` rate when the request's `metadata` matches that rule.
pub fn for_request<'p>(
    profile: &'p Profile,
    body: &serde_json::Map<String, serde_json::Value>,
) -> Cow<'p, Profile> {
    let Some(rule) = &profile.degraded_when else {
        return Cow::Borrowed(profile);
    };
    let value = body
        .get("metadata")
        .and_then(|m| m.get(&rule.key))
        .and_then(serde_json::Value::as_str);
    if value == Some(rule.value.as_str()) {
        let mut p = profile.clone();
        p.degraded_rate = rule.rate;
        Cow::Owned(p)
    } else {
        Cow::Borrowed(profile)
    }
}

/// `text` padded with filler words to at least `bytes` bytes (the hostile `answer_bytes`).
pub fn padded(text: &str, bytes: usize) -> String {
    const FILLER: &str = "filler ";
    let mut out = String::with_capacity(bytes.max(text.len()));
    out.push_str(text);
    while out.len() < bytes {
        out.push_str(FILLER);
    }
    out
}

/// The good/degraded draw alone (used per prompt when one request carries several).
pub fn is_degraded(profile: &Profile, draws: &Draws) -> bool {
    draws.uniform(Stream::Quality) < profile.degraded_rate
}

/// z-score of the 95th percentile of the standard normal.
const Z95: f64 = 1.644_853_626_951_472_2;

/// A draw from `latency` given a uniform `u` in (0, 1) (inverse-CDF sampling).
pub fn sample_latency(latency: &Latency, u: f64) -> Duration {
    match *latency {
        Latency::Fixed(d) => d,
        Latency::LogNormal { median, p95 } => {
            let m = median.as_secs_f64();
            let sigma = (p95.as_secs_f64() / m).ln() / Z95;
            let u = u.clamp(1e-12, 1.0 - 1e-12);
            let z = statrs::function::erf::erf_inv(2.0 * u - 1.0) * std::f64::consts::SQRT_2;
            Duration::from_secs_f64(m * (sigma * z).exp())
        }
    }
}

/// The answer to `prompt`: the dataset's good or degraded answer when the prompt is in it,
/// otherwise a generic answer built from the prompt.
pub fn answer_text<'d>(dataset: &'d Dataset, prompt: &str, degraded: bool) -> Cow<'d, str> {
    match dataset.lookup(prompt) {
        Some(e) if degraded => Cow::Borrowed(&e.degraded),
        Some(e) => Cow::Borrowed(&e.good),
        None => Cow::Owned(generic_answer(prompt, degraded)),
    }
}

/// A deterministic answer for prompts the dataset does not know.
pub fn generic_answer(prompt: &str, degraded: bool) -> String {
    if degraded {
        return "Sorry, I am not sure. Please contact support.".to_owned();
    }
    let words: Vec<&str> = prompt.split_whitespace().take(12).collect();
    let ellipsis = if prompt.split_whitespace().nth(12).is_some() {
        " …"
    } else {
        ""
    };
    format!(
        "Thanks for your message. You asked: \"{}{ellipsis}\". This is a mock answer from \
         canarist's test upstream: the same question always gets the same words, and the \
         answer is long enough to be streamed in several chunks.",
        words.join(" ")
    )
}

/// Token estimate: whitespace-separated words × 1.3, rounded.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as f64 * 1.3).round() as u64
}

/// Splits `text` into pieces of `words_per_chunk` words whose concatenation is exactly `text`
/// (whitespace stays at the end of the piece before the next word).
pub fn split_chunks(text: &str, words_per_chunk: usize) -> Vec<&str> {
    let per = words_per_chunk.max(1);
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut words = 0;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if !space && prev_space {
            if words > 0 && words % per == 0 {
                pieces.push(&text[start..i]);
                start = i;
            }
            words += 1;
        }
        prev_space = space;
    }
    if start < text.len() || pieces.is_empty() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// A unit-length vector of `dims` components derived from a hash of `input`.
pub fn embedding(input: &str, dims: usize) -> Vec<f32> {
    let raw: Vec<f64> = (0..dims as u64)
        .map(|i| {
            let h = xxh3_64_with_seed(input.as_bytes(), i);
            (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    raw.iter().map(|x| (x / norm) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(n: u64) -> Draws {
        Draws::new(7, "m", "hello", UnitKey::Counter(n))
    }

    #[test]
    fn draws_depend_on_every_input() {
        let a = Draws::new(1, "m", "p", UnitKey::Unit("u"));
        assert_eq!(a, Draws::new(1, "m", "p", UnitKey::Unit("u")));
        assert_ne!(a, Draws::new(2, "m", "p", UnitKey::Unit("u")));
        assert_ne!(a, Draws::new(1, "n", "p", UnitKey::Unit("u")));
        assert_ne!(a, Draws::new(1, "m", "q", UnitKey::Unit("u")));
        assert_ne!(a, Draws::new(1, "m", "p", UnitKey::Unit("v")));
        assert_ne!(a, Draws::new(1, "m", "p", UnitKey::Counter(0)));
    }

    #[test]
    fn rates_match_profile_within_binomial_bound() {
        let p = Profile {
            error_rate: 0.2,
            degraded_rate: 0.3,
            ..Profile::default()
        };
        let n = 20_000u64;
        let (mut errors, mut degraded, mut answers) = (0u64, 0u64, 0u64);
        for i in 0..n {
            match decide(&p, &draws(i)) {
                Outcome::Error { .. } => errors += 1,
                Outcome::Answer(a) => {
                    answers += 1;
                    degraded += u64::from(a.degraded);
                }
                Outcome::Hang => panic!("no hang"),
            }
        }
        // 99.9% two-sided normal bound: |k - np| <= 3.29 sqrt(np(1-p)).
        let within = |k: u64, n: u64, p: f64| {
            let n = n as f64;
            (k as f64 - n * p).abs() <= 3.29 * (n * p * (1.0 - p)).sqrt()
        };
        assert!(within(errors, n, 0.2), "errors {errors}");
        assert!(
            within(degraded, answers, 0.3),
            "degraded {degraded}/{answers}"
        );
    }

    #[test]
    fn lognormal_quantiles_are_the_configured_ones() {
        let l = Latency::LogNormal {
            median: Duration::from_millis(30),
            p95: Duration::from_millis(60),
        };
        let ms = |u| sample_latency(&l, u).as_secs_f64() * 1000.0;
        assert!((ms(0.5) - 30.0).abs() < 1e-6);
        assert!((ms(0.95) - 60.0).abs() < 1e-6);
        assert!(ms(0.05) < 30.0 && ms(0.05) > 10.0);
        let f = Latency::Fixed(Duration::from_millis(50));
        assert_eq!(sample_latency(&f, 0.99), Duration::from_millis(50));
    }

    #[test]
    fn hang_and_always_error() {
        let hang = Profile {
            hang: true,
            ..Profile::default()
        };
        assert_eq!(decide(&hang, &draws(0)), Outcome::Hang);
        let err = Profile {
            error_rate: 1.0,
            error_status: ErrorStatus::RateLimited429,
            ..Profile::default()
        };
        assert!((0..100).all(|i| matches!(
            decide(&err, &draws(i)),
            Outcome::Error {
                status: ErrorStatus::RateLimited429,
                ..
            }
        )));
        let clean = decide(&Profile::default(), &draws(0));
        let Outcome::Answer(a) = clean else { panic!() };
        assert!(!a.degraded && !a.truncated && !a.malformed);
        assert_eq!(a.latency, Duration::ZERO);
    }

    #[test]
    fn degraded_when_applies_only_to_matching_metadata() {
        let p = Profile {
            degraded_rate: 0.0,
            degraded_when: Some(super::super::config::CohortRate {
                key: "tier".into(),
                value: "enterprise".into(),
                rate: 1.0,
            }),
            ..Profile::default()
        };
        let body = |tier: &str| {
            serde_json::json!({"metadata": {"tier": tier}})
                .as_object()
                .cloned()
                .unwrap()
        };
        let degraded = |b| match decide(&for_request(&p, &b), &draws(0)) {
            Outcome::Answer(a) => a.degraded,
            other => panic!("{other:?}"),
        };
        assert!(degraded(body("enterprise")));
        assert!(!degraded(body("pro")));
        assert!(!degraded(serde_json::Map::new()));
    }

    #[test]
    fn chunks_reassemble_exactly() {
        let text = "  Hello there,  how are\nyou today? Fine ";
        for per in 1..6 {
            let pieces = split_chunks(text, per);
            assert_eq!(pieces.concat(), text);
            assert!(pieces.iter().all(|p| p.split_whitespace().count() <= per));
        }
        assert_eq!(split_chunks("a b c d", 2), vec!["a b ", "c d"]);
        assert_eq!(split_chunks("", 3), vec![""]);
    }

    #[test]
    fn tokens_and_embeddings() {
        assert_eq!(
            estimate_tokens("one two three four five six seven eight nine ten"),
            13
        );
        assert_eq!(estimate_tokens(""), 0);
        let e = embedding("hello", 8);
        assert_eq!(e.len(), 8);
        assert_eq!(e, embedding("hello", 8));
        assert_ne!(e, embedding("hellp", 8));
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }

    #[test]
    fn dataset_prompts_get_their_answers() {
        let d = Dataset::builtin().unwrap();
        let e = &d.entries()[3];
        assert_eq!(answer_text(&d, &e.prompt, false), e.good.as_str());
        assert_eq!(answer_text(&d, &e.prompt, true), e.degraded.as_str());
        let g = answer_text(&d, "What is the meaning of life?", false);
        assert!(g.contains("What is the meaning of life?"));
        assert_eq!(g, answer_text(&d, "What is the meaning of life?", false));
    }
}
