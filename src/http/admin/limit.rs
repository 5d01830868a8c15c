//! Per-caller rate limits of the admin API: one GCRA bucket per key id or token subject
//! (governor's keyed limiter), `admin.rate_limit_per_minute` with `admin.rate_limit_burst`.
//! Over the limit is a 429 with `Retry-After` (whole seconds, at least 1). The map holds one
//! entry per caller seen; entries idle long enough to be full again are pruned every 1,024 checks.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::AdminError;

pub struct RateLimits {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl RateLimits {
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Charges one request to `caller`; 429 when over the limit.
    pub fn check(&self, caller: &str) -> Result<(), AdminError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&caller.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                AdminError::RateLimited {
                    retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_429_per_key() {
        let limits = RateLimits::new(
            NonZeroU32::new(1).unwrap_or(NonZeroU32::MIN),
            NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
        );
        assert!(limits.check("a").is_ok());
        assert!(limits.check("a").is_ok());
        match limits.check("a") {
            Err(AdminError::RateLimited { retry_after }) => {
                assert!((1..=60).contains(&retry_after), "{retry_after}");
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // Another key has its own bucket.
        assert!(limits.check("b").is_ok());
    }
}
