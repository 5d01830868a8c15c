//! [`AdaptiveConcurrency`]: how many judge calls may be in flight at once, cut in half on every
//! 429 and grown back by one after every `grow_every` successes (AIMD, like TCP congestion
//! control), never above the configured maximum or below one.
//!
//! Owns: the limit and the count of calls in flight. Never: sleeps or talks to the network.
//! A std `Mutex` guards the state and is never held across an `.await`.

use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    successes: u32,
}

/// The adaptive limit on calls in flight.
#[derive(Debug)]
pub struct AdaptiveConcurrency {
    max: usize,
    grow_every: u32,
    state: Mutex<State>,
    notify: Notify,
}

/// A call slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot<'a> {
    owner: &'a AdaptiveConcurrency,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        {
            let mut s = self.owner.lock();
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.owner.notify.notify_waiters();
    }
}

impl AdaptiveConcurrency {
    /// Starts at `max` (at least 1); grows by one after `grow_every` (at least 1) successes.
    pub fn new(max: usize, grow_every: u32) -> Self {
        let max = max.max(1);
        Self {
            max,
            grow_every: grow_every.max(1),
            state: Mutex::new(State {
                limit: max,
                in_flight: 0,
                successes: 0,
            }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a free slot. Returns the slot and whether it had to wait.
    pub async fn acquire(&self) -> (Slot<'_>, bool) {
        let mut waited = false;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the check and the await
            // still wakes us.
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return (Slot { owner: self }, waited);
                }
            }
            waited = true;
            notified.await;
        }
    }

    /// A 429: halve the limit (at least 1) and start counting successes again.
    pub fn on_rate_limited(&self) -> usize {
        let mut s = self.lock();
        s.limit = (s.limit / 2).max(1);
        s.successes = 0;
        s.limit
    }

    /// A successful call: after `grow_every` of them in a row, the limit grows by one.
    pub fn on_success(&self) -> usize {
        let grew = {
            let mut s = self.lock();
            s.successes += 1;
            if s.successes >= self.grow_every && s.limit < self.max {
                s.limit += 1;
                s.successes = 0;
                true
            } else {
                false
            }
        };
        if grew {
            self.notify.notify_waiters();
        }
        self.limit()
    }

    pub fn limit(&self) -> usize {
        self.lock().limit
    }

    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn halves_on_429_and_grows_back_one_per_n_successes() {
        let c = AdaptiveConcurrency::new(8, 3);
        assert_eq!(c.limit(), 8);
        assert_eq!(c.on_rate_limited(), 4);
        assert_eq!(c.on_rate_limited(), 2);
        assert_eq!(c.on_rate_limited(), 1);
        assert_eq!(c.on_rate_limited(), 1, "never below one");
        assert_eq!(c.on_success(), 1);
        assert_eq!(c.on_success(), 1);
        assert_eq!(c.on_success(), 2, "grows after 3 successes");
        for _ in 0..100 {
            c.on_success();
        }
        assert_eq!(c.limit(), 8, "never above the maximum");
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_in_flight_than_the_limit() {
        let c = Arc::new(AdaptiveConcurrency::new(3, 1));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (c, peak) = (c.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let (_slot, _) = c.acquire().await;
                peak.fetch_max(c.in_flight(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(c.in_flight(), 0);
    }
}
