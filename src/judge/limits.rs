//! The limits one judge endpoint is called under: requests per minute and tokens per minute
//! (`governor`, on tokio's clock so that tests run with paused time), calls in flight
//! ([`AdaptiveConcurrency`]), a shared back-off after a 429 (`Retry-After` / `retry-after-ms`,
//! plus jitter), and the spend per rollout stage against the judge's cap.
//!
//! Owns: waiting. Never: calls the judge. Fails closed: when in doubt it waits longer or
//! refuses (spend cap), it never sends a request above the configured rate.
//!
//! Requests per minute follow a fixed start schedule ([`StartSchedule`]): each call reserves the
//! next start time, one period (60 s / rpm) after the previous reservation, then sleeps until
//! it. So in any 60-second window at most `rpm` requests start, and a call that wakes a little
//! late (timer granularity, a busy runtime) does not push every later start back: throughput is
//! the limit, not the limit minus the accumulated lateness (a burst-1 GCRA, which re-anchors
//! on the late wake-up, reached 97.7% of a 1,200/min limit). Tokens per minute are estimated before a call and corrected after it with the usage
//! the judge reported: extra tokens are taken from the limiter before the next call, tokens
//! estimated but not used are credited to the next calls. The token limiter allows a burst of
//! a tenth of a minute's budget (at least one large request).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http::HeaderMap;
use tokio::time::Instant;

use super::concurrency::{AdaptiveConcurrency, Slot};

/// A governor clock that reads tokio's clock (paused and advanced in tests).
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// Configured limits of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSettings {
    pub requests_per_minute: u32,
    pub tokens_per_minute: Option<u32>,
    pub max_in_flight: usize,
    /// Successes in a row after which the in-flight limit grows by one.
    pub grow_every: u32,
    /// USD per rollout stage; `None`: no cap.
    pub spend_cap_usd: Option<f64>,
}

/// What a wait for a call slot cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waited {
    pub backoff: bool,
    pub concurrency: bool,
    pub rate: bool,
}

impl Waited {
    pub fn any(&self) -> bool {
        self.backoff || self.concurrency || self.rate
    }
}

/// The limits of one judge endpoint, shared by every task calling it.
pub struct Limits {
    settings: LimitSettings,
    clock: TokioClock,
    rpm: StartSchedule,
    tpm: Option<(Direct, u32)>,
    /// Tokens estimated but not used, available to the next calls.
    token_credit: Mutex<u64>,
    concurrency: AdaptiveConcurrency,
    backoff_until: Mutex<Option<Instant>>,
    spend: Mutex<HashMap<String, f64>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn per_unit(per_minute: u32) -> Quota {
    let n = per_minute.max(1);
    let period = Duration::from_nanos((60_000_000_000u64 / u64::from(n)).max(1));
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Self {
        let clock = TokioClock::default();
        let rpm = StartSchedule::per_minute(settings.requests_per_minute);
        let tpm = settings.tokens_per_minute.map(|t| {
            let burst = (t / 10).max(8192).min(t.max(1));
            let burst_nz = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            let quota = per_unit(t).allow_burst(burst_nz);
            (RateLimiter::direct_with_clock(quota, clock.clone()), burst)
        });
        Self {
            concurrency: AdaptiveConcurrency::new(settings.max_in_flight, settings.grow_every),
            settings,
            clock,
            rpm,
            tpm,
            token_credit: Mutex::new(0),
            backoff_until: Mutex::new(None),
            spend: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    pub fn concurrency(&self) -> &AdaptiveConcurrency {
        &self.concurrency
    }

    /// Waits until a call estimated at `tokens` may start: after any back-off, with a free
    /// in-flight slot, within requests and tokens per minute.
    pub async fn acquire(&self, tokens: u64) -> (Slot<'_>, Waited) {
        let mut waited = Waited {
            backoff: self.wait_backoff().await,
            ..Waited::default()
        };
        let (slot, concurrency) = self.concurrency.acquire().await;
        waited.concurrency = concurrency;
        waited.rate = self.rpm.wait_turn().await;
        let tokens = self.take_credit(tokens);
        if let (Some((tpm, burst)), true) = (&self.tpm, tokens > 0) {
            let n = u32::try_from(tokens).unwrap_or(u32::MAX).min(*burst);
            waited.rate |= until_ready(tpm, &self.clock, n).await;
        }
        // A 429 that arrived while this call waited for its turn applies to it too.
        waited.backoff |= self.wait_backoff().await;
        (slot, waited)
    }

    /// Corrects the token estimate of a finished call with the tokens it actually used.
    pub async fn correct_tokens(&self, estimated: u64, actual: u64) {
        let Some((tpm, burst)) = &self.tpm else {
            return;
        };
        if actual > estimated {
            let extra = u32::try_from(actual - estimated).unwrap_or(u32::MAX);
            until_ready(tpm, &self.clock, extra.min(*burst)).await;
        } else {
            let mut credit = self.token_credit.lock().unwrap_or_else(|p| p.into_inner());
            *credit = (*credit + (estimated - actual)).min(u64::from(*burst));
        }
    }

    fn take_credit(&self, tokens: u64) -> u64 {
        let mut credit = self.token_credit.lock().unwrap_or_else(|p| p.into_inner());
        let used = (*credit).min(tokens);
        *credit -= used;
        tokens - used
    }

    async fn wait_backoff(&self) -> bool {
        let mut waited = false;
        loop {
            let until = *self.backoff_until.lock().unwrap_or_else(|p| p.into_inner());
            match until {
                Some(t) if t > Instant::now() => {
                    waited = true;
                    tokio::time::sleep_until(t).await;
                }
                _ => return waited,
            }
        }
    }

    /// A 429: halves the calls in flight and makes every caller wait `retry_after` (or an
    /// exponential back-off from `attempt` when the judge gave none) plus up to 10% jitter.
    /// Returns the wait.
    pub fn on_rate_limited(&self, retry_after: Option<Duration>, attempt: u32) -> Duration {
        self.concurrency.on_rate_limited();
        let base = retry_after.unwrap_or_else(|| backoff(attempt));
        let wait = base + jitter(base);
        let until = Instant::now() + wait;
        let mut slot = self.backoff_until.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none_or(|t| t < until) {
            *slot = Some(until);
        }
        wait
    }

    pub fn on_success(&self) {
        self.concurrency.on_success();
    }

    /// Whether the spend of `stage` has reached the cap.
    pub fn spend_exhausted(&self, stage: &str) -> bool {
        let Some(cap) = self.settings.spend_cap_usd else {
            return false;
        };
        let spend = self.spend.lock().unwrap_or_else(|p| p.into_inner());
        spend.get(stage).copied().unwrap_or(0.0) >= cap
    }

    pub fn add_spend(&self, stage: &str, usd: f64) {
        let mut spend = self.spend.lock().unwrap_or_else(|p| p.into_inner());
        *spend.entry(stage.to_owned()).or_insert(0.0) += usd;
    }

    /// Total spend over all stages, in USD.
    pub fn spent(&self) -> f64 {
        let spend = self.spend.lock().unwrap_or_else(|p| p.into_inner());
        spend.values().sum()
    }
}

/// Request starts at a fixed pace: reservations one period apart, never earlier than now.
#[derive(Debug)]
struct StartSchedule {
    period: Duration,
    next: Mutex<Option<Instant>>,
}

impl StartSchedule {
    fn per_minute(n: u32) -> Self {
        Self {
            period: Duration::from_nanos((60_000_000_000u64 / u64::from(n.max(1))).max(1)),
            next: Mutex::new(None),
        }
    }

    /// Reserves the next start and sleeps until it; returns whether it had to wait. A caller
    /// cancelled while it sleeps gives up its start (the schedule only ever errs slow).
    async fn wait_turn(&self) -> bool {
        let now = Instant::now();
        let start = self.reserve(now);
        if start > now {
            tokio::time::sleep_until(start).await;
            true
        } else {
            false
        }
    }

    /// The next start at or after `now`, one period after the previous reservation.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let start = next.map_or(now, |n| n.max(now));
        *next = Some(start + self.period);
        start
    }
}

/// Waits until `n` units are available; returns whether it had to wait.
async fn until_ready(limiter: &Direct, clock: &TokioClock, n: u32) -> bool {
    let Some(mut n) = NonZeroU32::new(n) else {
        return false;
    };
    let mut waited = false;
    loop {
        match limiter.check_n(n) {
            Ok(Ok(())) => return waited,
            Ok(Err(not_until)) => {
                waited = true;
                let wait = not_until.wait_time_from(clock.now());
                if wait.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(wait).await;
                }
            }
            Err(governor::InsufficientCapacity(cap)) => {
                n = NonZeroU32::new(cap).unwrap_or(NonZeroU32::MIN);
            }
        }
    }
}

/// 1 s, 2 s, 4 s … capped at 60 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60))
}

/// Up to 10% of `base` (at most 1 s), never negative: a wait is never shorter than asked.
fn jitter(base: Duration) -> Duration {
    let max = (base / 10).min(Duration::from_secs(1));
    max.mul_f64(rand::random_range(0.0..1.0))
}

/// The wait a rate-limited response asks for: `retry-after-ms` (milliseconds), else
/// `retry-after` in seconds or as an HTTP date (RFC 9110; a date in the past means no wait).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, std::time::SystemTime::now())
}

fn retry_after_at(headers: &HeaderMap, now: std::time::SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name)?.to_str().ok().map(str::trim);
    let number = |name: &str| -> Option<f64> {
        let v: f64 = text(name)?.parse().ok()?;
        (v.is_finite() && v >= 0.0).then_some(v)
    };
    number("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| number("retry-after").map(Duration::from_secs_f64))
        .or_else(|| {
            let at = httpdate::parse_http_date(text("retry-after")?).ok()?;
            Some(at.duration_since(now).unwrap_or(Duration::ZERO))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn settings(rpm: u32, tpm: Option<u32>, in_flight: usize) -> LimitSettings {
        LimitSettings {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            max_in_flight: in_flight,
            grow_every: 5,
            spend_cap_usd: Some(1.0),
        }
    }

    #[test]
    fn retry_after_reads_ms_then_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None, "neither seconds nor a date");
    }

    #[test]
    fn retry_after_honours_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:30 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after_at(&h, now), Some(Duration::from_secs(30)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:27:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after_at(&h, now), Some(Duration::ZERO), "in the past");
    }

    /// Starts are reserved one period apart when they are asked for, so a caller that wakes
    /// late for its start does not move the next caller's start (a GCRA re-anchored on the late
    /// wake-up would); after an idle spell the schedule starts again from now, without a burst.
    #[test]
    fn starts_are_reserved_one_period_apart() {
        let schedule = StartSchedule::per_minute(1_200); // 50 ms apart
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Three callers ask at once: 0, 50, 100 ms, whenever each one actually wakes up.
        assert_eq!(
            [t0, t0, t0].map(|t| schedule.reserve(t)),
            [ms(0), ms(50), ms(100)]
        );
        // One asking at 120 ms (after the second woke late, at 51 ms) starts at 150, not 151.
        assert_eq!(schedule.reserve(ms(120)), ms(150));
        // After an idle second: now, and the period after that.
        assert_eq!(schedule.reserve(ms(1_200)), ms(1_200));
        assert_eq!(schedule.reserve(ms(1_200)), ms(1_250));
    }

    /// Counts starts per 60 s window with paused time: never above the rate, and the rate is
    /// reached (throughput equals the limit).
    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_is_never_exceeded_in_any_window() {
        let limits = Arc::new(Limits::new(settings(30, None, 64)));
        let start = Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (limits, starts) = (limits.clone(), starts.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..3 {
                    let (_slot, _) = limits.acquire(0).await;
                    starts.lock().unwrap().push(start.elapsed());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut starts = starts.lock().unwrap().clone();
        starts.sort();
        assert_eq!(starts.len(), 192);
        for (i, s) in starts.iter().enumerate() {
            let in_window = starts[i..]
                .iter()
                .take_while(|t| **t < *s + Duration::from_secs(60))
                .count();
            assert!(
                in_window <= 30,
                "{in_window} starts in the minute after {s:?}"
            );
        }
        // 192 requests at 30/min with a burst of one: the last starts at 191 × 2 s.
        assert_eq!(starts[191], Duration::from_secs(382));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_holds_and_is_corrected_by_usage() {
        // 60,000 tokens/min, burst 8,192: 1,000 tokens per second after the burst.
        let limits = Limits::new(settings(100_000, Some(60_000), 8));
        let start = Instant::now();
        for _ in 0..8 {
            let _ = limits.acquire(1_000).await;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "within the burst");
        // The judge reported 5,000 more tokens than estimated: they are taken before the next
        // call can start (at 1,000 tokens/s, about 5 s of budget).
        let before = Instant::now();
        limits.correct_tokens(1_000, 6_000).await;
        let _ = limits.acquire(1_000).await;
        assert!(
            before.elapsed() >= Duration::from_secs(5),
            "{:?}",
            before.elapsed()
        );
        // Over-estimates are credited: a call of 500 after a 1,000 estimate that used nothing
        // starts at once although the token bucket is empty.
        limits.correct_tokens(1_000, 0).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        let before = Instant::now();
        let (_, waited) = limits.acquire(500).await;
        assert!(!waited.rate, "{waited:?}");
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_makes_everyone_wait_at_least_retry_after_and_halves_concurrency() {
        let limits = Limits::new(settings(100_000, None, 8));
        let wait = limits.on_rate_limited(Some(Duration::from_secs(3)), 0);
        assert!(wait >= Duration::from_secs(3) && wait <= Duration::from_millis(3300));
        assert_eq!(limits.concurrency().limit(), 4);
        let before = Instant::now();
        let (_, waited) = limits.acquire(0).await;
        assert!(waited.backoff);
        assert!(before.elapsed() >= Duration::from_secs(3));
    }

    #[test]
    fn spend_cap_per_stage() {
        let limits = Limits::new(settings(60, None, 1));
        limits.add_spend("shadow", 0.6);
        assert!(!limits.spend_exhausted("shadow"));
        limits.add_spend("shadow", 0.5);
        assert!(limits.spend_exhausted("shadow"));
        assert!(!limits.spend_exhausted("canary-1"), "caps are per stage");
        assert!((limits.spent() - 1.1).abs() < 1e-9);
    }
}
