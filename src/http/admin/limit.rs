//! Per-caller rate limits of the admin API: one GCRA bucket per key id or token subject
//! (governor's keyed limiter), `admin.rate_limit_per_minute` with `admin.rate_limit_burst`.
//! Over the limit is a 429 with `Retry-After` (whole seconds, at least 1). The map holds one
//! entry per caller seen; entries idle long enough to be full again are pruned every 1,024 checks.
//!
//! [`FailureLimits`]: failed authentications per client address
//! (`admin.auth_failures_per_minute`, `admin.auth_failure_burst`). Only failures are charged; an
//! address past its limit is blocked until its bucket has room again, and while blocked every
//! request it makes with a credential is a 429 before any key is looked up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Whole seconds to wait, at least 1.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// Failed authentications per client address.
pub struct FailureLimits {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    /// Addresses past their limit, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    failures: AtomicU64,
}

impl FailureLimits {
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            clock: DefaultClock::default(),
            blocked: Mutex::new(HashMap::new()),
            failures: AtomicU64::new(0),
        }
    }

    /// 429 while `addr` is blocked; called before a credential is looked up.
    pub fn admit(&self, addr: IpAddr) -> Result<(), AdminError> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match blocked.get(&addr) {
            Some(until) if *until > now => Err(AdminError::AuthRateLimited {
                retry_after: retry_after(*until - now),
            }),
            Some(_) => {
                blocked.remove(&addr);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Charges one failed authentication to `addr`; 429 (and `addr` blocked) when that was one
    /// too many.
    pub fn failed(&self, addr: IpAddr) -> Result<(), AdminError> {
        if self.failures.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.limiter.retain_recent();
            let now = Instant::now();
            let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            blocked.retain(|_, until| *until > now);
        }
        let Err(not_until) = self.limiter.check_key(&addr) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(self.clock.now());
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        blocked.insert(addr, Instant::now() + wait);
        Err(AdminError::AuthRateLimited {
            retry_after: retry_after(wait),
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

    #[test]
    fn failures_block_an_address_after_the_burst() {
        let limits = FailureLimits::new(
            NonZeroU32::new(1).unwrap_or(NonZeroU32::MIN),
            NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
        );
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..2 {
            assert!(limits.admit(a).is_ok());
            assert!(limits.failed(a).is_ok());
        }
        assert!(matches!(
            limits.failed(a),
            Err(AdminError::AuthRateLimited { .. })
        ));
        assert!(matches!(
            limits.admit(a),
            Err(AdminError::AuthRateLimited { retry_after }) if (1..=60).contains(&retry_after)
        ));
        assert!(limits.admit(b).is_ok());
    }
}
