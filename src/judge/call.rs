//! Asking one judge one question: cache, spend cap, limits, retries, and the one repair retry.
//!
//! - A 429 halves the calls in flight and makes every caller wait what `Retry-After` asked
//!   (plus jitter); a timeout, connection error or 5xx is retried after an exponential back-off;
//!   both at most `max_retries` times, then the question is [`Unavailable`] (the job is given
//!   back to the queue, nothing is recorded).
//! - A permanent rejection (400, 401, 403, 404, `insufficient_quota`) is never retried: it is an
//!   abstention `judge_rejected_<code>`.
//! - An answer that does not parse gets one repair retry (the reply and the reason it could not
//!   be used are sent back); a second failure is an abstention with the parse reason code.
//!   Never a made-up score.
//! - Only parsed answers go into the cache.

use std::time::Duration;

use crate::config::Price;
use crate::rubric::{Abstain, Criterion, JudgeAnswer, JudgePrompt, parse_answer};

use super::cache::{CacheKey, JudgeCache};
use super::client::{CallFailure, Completion, JudgeClient, Message};
use super::limits::{Limits, backoff};
use super::stats::JudgeStats;

/// A judge endpoint: its client, its limits and its price.
#[derive(Debug)]
pub struct Endpoint {
    pub client: JudgeClient,
    pub limits: Limits,
    /// USD per million tokens, when known (the spend cap needs it).
    pub price: Option<Price>,
}

/// The judge could not be reached within the retries; the job should be retried later.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("judge `{judge}` unavailable after {attempts} attempts: {last}")]
pub struct Unavailable {
    pub judge: String,
    pub attempts: u32,
    pub last: String,
}

/// The outcome of one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Asked {
    Answer { answer: JudgeAnswer, cached: bool },
    Abstain(Abstain),
}

/// What asking needs besides the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct AskContext<'a> {
    pub cache: &'a JudgeCache,
    pub stats: &'a JudgeStats,
    pub max_retries: u32,
    /// The rollout stage the spend is charged to.
    pub stage: &'a str,
}

/// Asks `ep` the question `prompt` for criterion `c`.
pub async fn ask(
    cx: AskContext<'_>,
    ep: &Endpoint,
    c: &Criterion,
    prompt: &JudgePrompt,
    key: CacheKey,
) -> Result<Asked, Unavailable> {
    use std::sync::atomic::Ordering::Relaxed;
    if let Some(answer) = cx.cache.get(&key) {
        cx.stats.cache_hits.fetch_add(1, Relaxed);
        return Ok(Asked::Answer {
            answer,
            cached: true,
        });
    }
    cx.stats.cache_misses.fetch_add(1, Relaxed);
    if ep.limits.spend_exhausted(cx.stage) {
        return Ok(Asked::Abstain(Abstain::new("spend_cap")));
    }
    let mut messages = vec![
        Message::System(prompt.system.clone()),
        Message::User(prompt.user.clone()),
    ];
    let first = match call(cx, ep, &messages, &prompt.response_format).await? {
        Ok(c) => c,
        Err(rejected) => return Ok(Asked::Abstain(Abstain::new(rejected.reason_code()))),
    };
    let failure = match parse_answer(c, &first.text) {
        Ok(answer) => {
            cx.cache.put(key, answer.clone());
            return Ok(Asked::Answer {
                answer,
                cached: false,
            });
        }
        Err(f) => f,
    };
    cx.stats.repairs.fetch_add(1, Relaxed);
    messages.push(Message::Assistant(first.text));
    messages.push(Message::User(failure.repair_message(c)));
    let second = match call(cx, ep, &messages, &prompt.response_format).await? {
        Ok(c) => c,
        Err(rejected) => return Ok(Asked::Abstain(Abstain::new(rejected.reason_code()))),
    };
    Ok(match parse_answer(c, &second.text) {
        Ok(answer) => {
            cx.cache.put(key, answer.clone());
            Asked::Answer {
                answer,
                cached: false,
            }
        }
        Err(f) => Asked::Abstain(f.abstain()),
    })
}

/// Tokens a call is estimated at before it is made: the prompt at ~4 characters per token plus
/// the most the judge may write.
pub fn estimate_tokens(messages: &[Message], max_tokens: u32) -> u64 {
    let chars: usize = messages
        .iter()
        .map(|m| match m {
            Message::System(t) | Message::User(t) | Message::Assistant(t) => t.len(),
        })
        .sum();
    (chars as u64).div_ceil(4) + u64::from(max_tokens)
}

/// One call with retries. `Ok(Err(_))` is a permanent rejection; `Err` means the retries ran out.
async fn call(
    cx: AskContext<'_>,
    ep: &Endpoint,
    messages: &[Message],
    response_format: &serde_json::Value,
) -> Result<Result<Completion, CallFailure>, Unavailable> {
    use std::sync::atomic::Ordering::Relaxed;
    let estimate = estimate_tokens(messages, ep.client.model().max_tokens);
    let mut last = String::new();
    for attempt in 0..=cx.max_retries {
        let result = {
            let (_slot, waited) = ep.limits.acquire(estimate).await;
            for (hit, counter) in [
                (waited.backoff, &cx.stats.waits_backoff),
                (waited.concurrency, &cx.stats.waits_concurrency),
                (waited.rate, &cx.stats.waits_rate),
            ] {
                if hit {
                    counter.fetch_add(1, Relaxed);
                }
            }
            cx.stats.calls.fetch_add(1, Relaxed);
            ep.client.complete(messages, response_format).await
        };
        match result {
            Ok(done) => {
                ep.limits.on_success();
                cx.stats
                    .concurrency_limit
                    .store(ep.limits.concurrency().limit() as u64, Relaxed);
                let used = done.prompt_tokens + done.completion_tokens;
                cx.stats.tokens.fetch_add(used, Relaxed);
                if let Some(price) = ep.price {
                    let usd = price.cost(done.prompt_tokens, done.completion_tokens);
                    ep.limits.add_spend(cx.stage, usd);
                    cx.stats.add_spend(usd);
                }
                if used > 0 {
                    ep.limits.correct_tokens(estimate, used).await;
                }
                return Ok(Ok(done));
            }
            Err(CallFailure::RateLimited { retry_after }) => {
                cx.stats.rate_limited.fetch_add(1, Relaxed);
                let wait = ep.limits.on_rate_limited(retry_after, attempt);
                cx.stats
                    .concurrency_limit
                    .store(ep.limits.concurrency().limit() as u64, Relaxed);
                tracing::warn!(judge = %ep.client.model().model, wait_ms = wait.as_millis() as u64, attempt, "judge rate limited");
                last = format!("rate limited (retry after {retry_after:?})");
            }
            Err(CallFailure::Transient(message)) => {
                cx.stats.transient_errors.fetch_add(1, Relaxed);
                tracing::warn!(judge = %ep.client.model().model, error = %message, attempt, "judge call failed");
                last = message;
                if attempt < cx.max_retries {
                    let wait = backoff(attempt);
                    tokio::time::sleep(wait + wait.mul_f64(rand::random_range(0.0..0.1))).await;
                }
            }
            Err(rejected @ CallFailure::Permanent { .. }) => {
                cx.stats.permanent_errors.fetch_add(1, Relaxed);
                tracing::warn!(judge = %ep.client.model().model, error = %rejected, "judge rejected the request; not retried");
                return Ok(Err(rejected));
            }
        }
    }
    Err(Unavailable {
        judge: ep.client.model().model.clone(),
        attempts: cx.max_retries + 1,
        last,
    })
}

/// The default per-call timeout.
pub fn default_timeout() -> Duration {
    Duration::from_secs(120)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_counts_prompt_and_max_tokens() {
        let m = [
            Message::System("a".repeat(400)),
            Message::User("b".repeat(401)),
        ];
        assert_eq!(estimate_tokens(&m, 300), 201 + 300);
    }
}
