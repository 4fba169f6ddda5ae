//! Hedging: a read-only or idempotent call that lingers on one replica is
//! sent to a second; the first answer wins and the other is cancelled.
//!
//! "Lingers" is measured against what the replica usually takes for that
//! tool: the delay is the smoothed latency plus four deviations (the TCP
//! retransmission-timeout recipe, RFC 6298), never under `min_ms`, unless
//! `after_ms` fixes it. Progress reported by the call restarts the clock:
//! a long call that is visibly working is not stuck. A replica that turns
//! suspect while the call is on it is hedged at once.
//!
//! Hedges cost upstream work, so they are budgeted: each call earns
//! `budget_percent`/100 of a hedge, up to `burst` saved, and a call is
//! hedged at most once.

use std::sync::Mutex;
use std::time::Duration;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

/// The `[router.hedge]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HedgeConfig {
    /// Whether safe calls are hedged at all.
    pub enabled: bool,
    /// A fixed hedge delay in ms (0: from the replica's recent latency).
    pub after_ms: u64,
    /// The shortest adaptive delay.
    pub min_ms: u64,
    /// The delay before a tool's latency is known.
    pub initial_ms: u64,
    /// Hedges allowed per 100 calls, over time.
    pub budget_percent: u32,
    /// Hedges that may be spent at once.
    pub burst: u32,
    /// Hedge races lost in a row after which a replica is suspect.
    pub suspect_after_losses: u32,
}

impl Default for HedgeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            after_ms: 0,
            min_ms: 50,
            initial_ms: 1_000,
            budget_percent: 20,
            burst: 20,
            suspect_after_losses: 3,
        }
    }
}

/// Smoothed latency and its deviation, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Rtt {
    srtt: f64,
    rttvar: f64,
}

impl Rtt {
    fn first(us: f64) -> Self {
        Self {
            srtt: us,
            rttvar: us / 2.0,
        }
    }

    fn update(&mut self, us: f64) {
        self.rttvar = 0.75 * self.rttvar + 0.25 * (self.srtt - us).abs();
        self.srtt = 0.875 * self.srtt + 0.125 * us;
    }

    fn timeout(&self) -> Duration {
        Duration::from_micros((self.srtt + 4.0 * self.rttvar).max(0.0) as u64)
    }
}

/// Latency estimates per replica and tool, and the hedge budget.
#[derive(Debug)]
pub struct Hedging {
    config: HedgeConfig,
    latency: DashMap<(String, String), Rtt>,
    /// Hedges that may be spent now.
    budget: Mutex<f64>,
}

impl Hedging {
    /// Hedging with the given settings and a full budget.
    pub fn new(config: HedgeConfig) -> Self {
        let burst = f64::from(config.burst);
        Self {
            config,
            latency: DashMap::new(),
            budget: Mutex::new(burst),
        }
    }

    /// The settings.
    pub fn config(&self) -> &HedgeConfig {
        &self.config
    }

    /// How long a call of `tool` on `service` may go without news before
    /// it is hedged.
    pub fn delay(&self, service: &str, tool: &str) -> Duration {
        if self.config.after_ms > 0 {
            return Duration::from_millis(self.config.after_ms);
        }
        let known = self
            .latency
            .get(&(service.to_owned(), tool.to_owned()))
            .map(|r| r.timeout());
        known
            .unwrap_or(Duration::from_millis(self.config.initial_ms))
            .max(Duration::from_millis(self.config.min_ms))
    }

    /// Learns from a successful attempt.
    pub fn observe(&self, service: &str, tool: &str, latency: Duration) {
        let us = latency.as_secs_f64() * 1e6;
        self.latency
            .entry((service.to_owned(), tool.to_owned()))
            .and_modify(|r| r.update(us))
            .or_insert_with(|| Rtt::first(us));
    }

    /// A call started: it earns its share of the budget.
    pub fn earn(&self) {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        *b = (*b + f64::from(self.config.budget_percent) / 100.0).min(f64::from(self.config.burst));
    }

    /// Spends one hedge, if the budget has one.
    pub fn spend(&self) -> bool {
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        if *b >= 1.0 {
            *b -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_follows_latency_and_its_spread() {
        let h = Hedging::new(HedgeConfig::default());
        assert_eq!(h.delay("a", "t"), Duration::from_millis(1_000));
        for _ in 0..50 {
            h.observe("a", "t", Duration::from_millis(100));
        }
        let steady = h.delay("a", "t");
        assert!(
            steady >= Duration::from_millis(100) && steady < Duration::from_millis(130),
            "{steady:?}"
        );
        // A fast tool still waits the minimum.
        h.observe("a", "fast", Duration::from_millis(1));
        assert_eq!(h.delay("a", "fast"), Duration::from_millis(50));
        // Jitter widens the delay.
        for i in 0..50 {
            h.observe(
                "a",
                "jittery",
                Duration::from_millis(if i % 2 == 0 { 50 } else { 250 }),
            );
        }
        assert!(h.delay("a", "jittery") > Duration::from_millis(400));
    }

    #[test]
    fn a_fixed_delay_wins() {
        let h = Hedging::new(HedgeConfig {
            after_ms: 300,
            ..Default::default()
        });
        h.observe("a", "t", Duration::from_millis(1));
        assert_eq!(h.delay("a", "t"), Duration::from_millis(300));
    }

    #[test]
    fn the_budget_is_earned_by_calls() {
        let h = Hedging::new(HedgeConfig {
            burst: 2,
            budget_percent: 50,
            ..Default::default()
        });
        assert!(h.spend() && h.spend());
        assert!(!h.spend());
        h.earn();
        assert!(!h.spend());
        h.earn();
        assert!(h.spend());
    }
}
