//! A circuit breaker per service: stop sending calls to a service that keeps
//! failing them, and try one again after a pause.
//!
//! Closed: calls flow; the last `window` outcomes are remembered. Too many
//! failures in a row, or too high a failure rate over enough calls, opens
//! it. Open: the router skips the service until `open_ms` has passed.
//! Half-open: exactly one trial call goes through; its success closes the
//! breaker, its failure opens it again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::spec::BreakerSpec;

/// The breaker's position, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum Position {
    Closed,
    Open { until: Instant },
    HalfOpen { trial_out: bool },
}

/// One service's breaker.
#[derive(Debug)]
pub struct Breaker {
    spec: BreakerSpec,
    position: Position,
    outcomes: VecDeque<bool>,
    consecutive_failures: u32,
    opened: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(spec: BreakerSpec) -> Self {
        Self {
            position: Position::Closed,
            outcomes: VecDeque::with_capacity(spec.window.min(1024)),
            consecutive_failures: 0,
            opened: 0,
            spec,
        }
    }

    /// Its position now.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.position {
            Position::Closed => BreakerState::Closed,
            Position::Open { until } if now >= until => BreakerState::HalfOpen,
            Position::Open { .. } => BreakerState::Open,
            Position::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Times it has opened.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Whether a call could be admitted now (without taking the trial).
    pub fn admits(&self, now: Instant) -> bool {
        match self.position {
            Position::Closed => true,
            Position::Open { until } => now >= until,
            Position::HalfOpen { trial_out } => !trial_out,
        }
    }

    /// Admits a call, taking the half-open trial if that is what is left.
    pub fn acquire(&mut self, now: Instant) -> bool {
        match self.position {
            Position::Closed => true,
            Position::Open { until } if now >= until => {
                self.position = Position::HalfOpen { trial_out: true };
                true
            }
            Position::Open { .. } => false,
            Position::HalfOpen { trial_out: false } => {
                self.position = Position::HalfOpen { trial_out: true };
                true
            }
            Position::HalfOpen { trial_out: true } => false,
        }
    }

    /// Closes the breaker and forgets past outcomes: a new instance of
    /// the service starts with a clean record.
    pub fn reset(&mut self) {
        self.position = Position::Closed;
        self.outcomes.clear();
        self.consecutive_failures = 0;
    }

    /// Gives back an admission that produced no outcome (the call was
    /// cancelled or never handed over), so a half-open trial is not lost.
    pub fn release(&mut self) {
        if let Position::HalfOpen { trial_out: true } = self.position {
            self.position = Position::HalfOpen { trial_out: false };
        }
    }

    /// Records a call's outcome (failures are those that blame the service).
    pub fn record(&mut self, ok: bool, now: Instant) {
        if self.outcomes.len() == self.spec.window.max(1) {
            self.outcomes.pop_front();
        }
        self.outcomes.push_back(ok);
        self.consecutive_failures = if ok { 0 } else { self.consecutive_failures + 1 };
        match self.position {
            Position::HalfOpen { .. } if ok => self.close(),
            Position::HalfOpen { .. } => self.open(now),
            Position::Closed if !ok && self.tripped() => self.open(now),
            _ => {}
        }
    }

    fn tripped(&self) -> bool {
        if self.consecutive_failures >= self.spec.consecutive_failures.max(1) {
            return true;
        }
        let n = self.outcomes.len();
        let failed = self.outcomes.iter().filter(|ok| !**ok).count();
        n >= self.spec.min_calls.max(1) && failed as f64 / n as f64 >= self.spec.failure_rate
    }

    fn open(&mut self, now: Instant) {
        self.position = Position::Open {
            until: now + Duration::from_millis(self.spec.open_ms),
        };
        self.opened += 1;
    }

    fn close(&mut self) {
        self.position = Position::Closed;
        self.outcomes.clear();
        self.consecutive_failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BreakerSpec {
        BreakerSpec {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_calls: 6,
            window: 10,
            open_ms: 1_000,
        }
    }

    #[test]
    fn consecutive_failures_open_then_one_trial_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(spec());
        for _ in 0..3 {
            assert!(b.acquire(t0));
            b.record(false, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.acquire(t0 + Duration::from_millis(500)));
        let later = t0 + Duration::from_millis(1_001);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.acquire(later), "the trial");
        assert!(!b.acquire(later), "only one trial at a time");
        b.record(true, later);
        assert_eq!(b.state(later), BreakerState::Closed);
        assert_eq!(b.opened(), 1);
    }

    #[test]
    fn a_failed_trial_opens_it_again() {
        let t0 = Instant::now();
        let mut b = Breaker::new(spec());
        for _ in 0..3 {
            b.record(false, t0);
        }
        let later = t0 + Duration::from_millis(1_001);
        assert!(b.acquire(later));
        b.record(false, later);
        assert_eq!(b.state(later), BreakerState::Open);
        assert_eq!(b.opened(), 2);
    }

    #[test]
    fn failure_rate_opens_once_enough_calls_are_seen() {
        let t0 = Instant::now();
        let mut b = Breaker::new(spec());
        // Alternating: never 3 in a row, but 50 % failures.
        for i in 0..5 {
            b.record(i % 2 == 0, t0);
        }
        assert_eq!(b.state(t0), BreakerState::Closed, "too few calls yet");
        b.record(false, t0);
        assert_eq!(b.state(t0), BreakerState::Open);
    }
}
