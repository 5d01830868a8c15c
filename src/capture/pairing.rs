//! Matching the two sides of one request into a [`Pair`], whichever finishes last.

use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::{Capture, CaptureEvent, Observation, Pair, Role};

/// Shared by the two sides of a paired request. Each side calls [`PairSlot::complete`] with
/// its observation; the second call emits the observation pair. Both observations are always
/// recorded individually too.
#[derive(Clone)]
pub struct PairSlot {
    pair_id: Uuid,
    waiting: Arc<Mutex<Option<Observation>>>,
}

impl PairSlot {
    pub fn new() -> Self {
        Self {
            pair_id: Uuid::new_v4(),
            waiting: Arc::new(Mutex::new(None)),
        }
    }

    pub fn pair_id(&self) -> Uuid {
        self.pair_id
    }

    /// Records `observation` and, when the other side is already in, the pair.
    pub fn complete(&self, mut observation: Observation, capture: &Capture) {
        observation.pair_id = Some(self.pair_id);
        let other = match self.waiting.lock() {
            Ok(mut waiting) => match waiting.take() {
                Some(other) => Some(other),
                None => {
                    *waiting = Some(observation.clone());
                    None
                }
            },
            Err(_) => None,
        };
        let pair = other.and_then(|other| self.build(other, observation.clone()));
        capture.record(CaptureEvent::Observation(Box::new(observation)));
        if let Some(pair) = pair {
            capture.record(CaptureEvent::Pair(Box::new(pair)));
        }
    }

    fn build(&self, a: Observation, b: Observation) -> Option<Pair> {
        let (stable, candidate) = match (a.role, b.role) {
            (Role::Stable, Role::Candidate) => (a, b),
            (Role::Candidate, Role::Stable) => (b, a),
            _ => return None,
        };
        Some(Pair {
            id: self.pair_id,
            request_id: stable.request_id,
            deployment: stable.deployment.clone(),
            stage: stable.stage.clone(),
            config_version: stable.config_version,
            cohort: stable.cohort.clone(),
            stable,
            candidate,
        })
    }
}

impl Default for PairSlot {
    fn default() -> Self {
        Self::new()
    }
}
