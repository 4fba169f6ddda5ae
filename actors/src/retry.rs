//! Retry strategies, one per error category.
//!
//! A strategy says how often and how patiently a failed call may be tried
//! again; whether it *may* be tried again at all is the safety rule's
//! business (see [`crate::router`]). Delays grow exponentially with jitter
//! on top, and never undercut an upstream's `Retry-After`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCategory;

/// How one category of failure is retried.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles for each further one.
    pub base_backoff_ms: u64,
    /// Largest delay (a `Retry-After` may ask for more, and gets it).
    pub max_backoff_ms: u64,
    /// Random extra delay, as a fraction of the backoff (0..1).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(3, 200, 5_000)
    }
}

impl RetryPolicy {
    const fn new(max_attempts: u32, base_backoff_ms: u64, max_backoff_ms: u64) -> Self {
        Self {
            max_attempts,
            base_backoff_ms,
            max_backoff_ms,
            jitter: 0.2,
        }
    }

    /// Delay before retry number `retry` (1 = the first retry), given the
    /// upstream's `Retry-After` and a random draw in `0..1`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, draw: f64) -> Duration {
        let exp = self
            .base_backoff_ms
            .saturating_mul(1u64 << retry.saturating_sub(1).min(20))
            .min(self.max_backoff_ms);
        let jittered = exp as f64 * (1.0 + self.jitter.clamp(0.0, 1.0) * draw.clamp(0.0, 1.0));
        let backoff = Duration::from_millis(jittered as u64);
        // Jitter only ever adds: a Retry-After is a floor, never undercut.
        backoff.max(retry_after.unwrap_or_default())
    }
}

/// The `[retry]` section: a strategy per retryable category and the
/// bounds of every service's retry mailbox.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// A call's retries all end by this long after it started.
    pub deadline_ms: u64,
    /// Calls waiting to be retried per service; more fail at once.
    pub max_waiting: usize,
    /// The upstream asked us to slow down (429); retried on the same
    /// service, after at least its `Retry-After`.
    pub rate_limit: RetryPolicy,
    /// The upstream said it is unavailable (503); retried on the same service.
    pub service_unavailable: RetryPolicy,
    /// No answer in time; retried on the same service if safe.
    pub timeout: RetryPolicy,
    /// The connection failed; retried elsewhere (failover).
    pub network: RetryPolicy,
    /// A service's queue was full; retried elsewhere.
    pub overload: RetryPolicy,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 120_000,
            max_waiting: 1_024,
            rate_limit: RetryPolicy::new(4, 500, 30_000),
            service_unavailable: RetryPolicy::new(3, 500, 10_000),
            timeout: RetryPolicy::new(2, 200, 5_000),
            network: RetryPolicy::new(3, 100, 2_000),
            overload: RetryPolicy::new(3, 100, 2_000),
        }
    }
}

impl RetryConfig {
    /// The strategy for a category; `None` for categories never retried.
    pub fn policy(&self, category: ErrorCategory) -> Option<&RetryPolicy> {
        match category {
            ErrorCategory::RateLimit => Some(&self.rate_limit),
            ErrorCategory::ServiceUnavailable => Some(&self.service_unavailable),
            ErrorCategory::Timeout => Some(&self.timeout),
            ErrorCategory::Network => Some(&self.network),
            ErrorCategory::Overload => Some(&self.overload),
            _ => None,
        }
    }

    /// Whether the service itself retries this category (the upstream is
    /// alive but asked for patience), rather than the router failing over.
    pub fn retried_in_place(category: ErrorCategory) -> bool {
        matches!(
            category,
            ErrorCategory::RateLimit | ErrorCategory::ServiceUnavailable | ErrorCategory::Timeout
        )
    }

    /// The call deadline.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitter_only_adds() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_backoff_ms: 100,
            max_backoff_ms: 1_000,
            jitter: 0.5,
        };
        assert_eq!(p.delay(1, None, 0.0), Duration::from_millis(100));
        assert_eq!(p.delay(2, None, 0.0), Duration::from_millis(200));
        assert_eq!(p.delay(3, None, 1.0), Duration::from_millis(600));
        assert_eq!(p.delay(9, None, 0.0), Duration::from_millis(1_000));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::new(4, 100, 1_000);
        let d = p.delay(1, Some(Duration::from_secs(2)), 0.0);
        assert_eq!(d, Duration::from_secs(2));
        assert!(p.delay(1, Some(Duration::from_millis(10)), 0.5) >= Duration::from_millis(100));
    }

    #[test]
    fn only_transient_categories_have_a_policy() {
        let c = RetryConfig::default();
        assert!(c.policy(ErrorCategory::RateLimit).is_some());
        assert!(c.policy(ErrorCategory::Validation).is_none());
        assert!(c.policy(ErrorCategory::UpstreamToolError).is_none());
    }
}
