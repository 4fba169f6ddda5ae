//! Fault knobs of the simulator: latency, errors, hangs, crashes and rate
//! limiting, so supervision, failover and retries can be shown working.
//!
//! Each knob starts from a flag (or `SIM_*` variable) and, over HTTP, can be
//! changed while the simulator runs (`POST /sim/faults`), so a test can make
//! a live replica slow and then fast again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

/// Fault settings (flags or `SIM_*` environment variables).
#[derive(Debug, Clone, Args)]
pub struct FaultOptions {
    /// Added to every tool call.
    #[arg(long, default_value_t = 0, env = "SIM_LATENCY_MS")]
    pub latency_ms: u64,
    /// Per simulated Asana API request a call makes (a call reports one
    /// progress step per request).
    #[arg(long, default_value_t = 10, env = "SIM_UNIT_LATENCY_MS")]
    pub unit_latency_ms: u64,
    /// HTTP only: added to every request, health probes included (a slow
    /// network or an overloaded host).
    #[arg(long, default_value_t = 0, env = "SIM_SLOW_MS")]
    pub slow_ms: u64,
    /// Fraction of calls (0..1) that fail with a tool error.
    #[arg(long, default_value_t = 0.0, env = "SIM_ERROR_RATE")]
    pub error_rate: f64,
    /// Fraction of calls (0..1) that never answer.
    #[arg(long, default_value_t = 0.0, env = "SIM_HANG_RATE")]
    pub hang_rate: f64,
    /// Exit the process when this many calls have arrived (0: never).
    #[arg(long, default_value_t = 0, env = "SIM_EXIT_AFTER")]
    pub exit_after: u64,
    /// HTTP only: answer every Nth POST with 429 (0: never).
    #[arg(long, default_value_t = 0, env = "SIM_RATE_LIMIT_EVERY")]
    pub rate_limit_every: u64,
    /// HTTP only: the Retry-After (seconds) sent with a 429.
    #[arg(long, default_value_t = 1, env = "SIM_RETRY_AFTER_SECS")]
    pub retry_after_secs: u64,
    /// A call whose arguments contain this string makes the process exit
    /// (code 70) as it arrives: a poison call (empty: never).
    #[arg(long, default_value = "sim:crash", env = "SIM_CRASH_MARKER")]
    pub crash_marker: String,
}

/// A change of knobs at run time (`POST /sim/faults`); absent fields keep
/// their value.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultUpdate {
    pub latency_ms: Option<u64>,
    pub unit_latency_ms: Option<u64>,
    pub slow_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub hang_rate: Option<f64>,
    pub rate_limit_every: Option<u64>,
    pub retry_after_secs: Option<u64>,
    /// Answer the next N `tools/call` POSTs with 429.
    pub rate_limit_next_calls: Option<u64>,
}

/// The knobs' current values.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultState {
    pub latency_ms: u64,
    pub unit_latency_ms: u64,
    pub slow_ms: u64,
    pub error_rate: f64,
    pub hang_rate: f64,
    pub rate_limit_every: u64,
    pub retry_after_secs: u64,
    pub rate_limit_next_calls: u64,
}

/// Live fault state shared by every request.
#[derive(Debug)]
pub struct Faults {
    latency_ms: AtomicU64,
    unit_latency_ms: AtomicU64,
    slow_ms: AtomicU64,
    error_rate: AtomicU64,
    hang_rate: AtomicU64,
    exit_after: u64,
    crash_marker: String,
    rate_limit_every: AtomicU64,
    retry_after_secs: AtomicU64,
    rate_limit_next_calls: AtomicU64,
    calls: AtomicU64,
    posts: AtomicU64,
}

/// What to do with one call.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Run it normally.
    Run,
    /// Return a tool error.
    Fail,
    /// Never answer.
    Hang,
}

fn rate(v: &AtomicU64) -> f64 {
    f64::from_bits(v.load(Ordering::Relaxed))
}

impl Faults {
    /// Fault state from options.
    pub fn new(opts: FaultOptions) -> Self {
        Self {
            latency_ms: AtomicU64::new(opts.latency_ms),
            unit_latency_ms: AtomicU64::new(opts.unit_latency_ms),
            slow_ms: AtomicU64::new(opts.slow_ms),
            error_rate: AtomicU64::new(opts.error_rate.to_bits()),
            hang_rate: AtomicU64::new(opts.hang_rate.to_bits()),
            exit_after: opts.exit_after,
            crash_marker: opts.crash_marker,
            rate_limit_every: AtomicU64::new(opts.rate_limit_every),
            retry_after_secs: AtomicU64::new(opts.retry_after_secs),
            rate_limit_next_calls: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            posts: AtomicU64::new(0),
        }
    }

    /// Applies a run-time change.
    pub fn update(&self, u: FaultUpdate) {
        let set = |slot: &AtomicU64, v: Option<u64>| {
            if let Some(v) = v {
                slot.store(v, Ordering::Relaxed);
            }
        };
        set(&self.latency_ms, u.latency_ms);
        set(&self.unit_latency_ms, u.unit_latency_ms);
        set(&self.slow_ms, u.slow_ms);
        set(
            &self.error_rate,
            u.error_rate.map(|r| r.clamp(0.0, 1.0).to_bits()),
        );
        set(
            &self.hang_rate,
            u.hang_rate.map(|r| r.clamp(0.0, 1.0).to_bits()),
        );
        set(&self.rate_limit_every, u.rate_limit_every);
        set(&self.retry_after_secs, u.retry_after_secs);
        set(&self.rate_limit_next_calls, u.rate_limit_next_calls);
    }

    /// The knobs' current values.
    pub fn state(&self) -> FaultState {
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        FaultState {
            latency_ms: get(&self.latency_ms),
            unit_latency_ms: get(&self.unit_latency_ms),
            slow_ms: get(&self.slow_ms),
            error_rate: rate(&self.error_rate),
            hang_rate: rate(&self.hang_rate),
            rate_limit_every: get(&self.rate_limit_every),
            retry_after_secs: get(&self.retry_after_secs),
            rate_limit_next_calls: get(&self.rate_limit_next_calls),
        }
    }

    /// Decides a call's fate; exits the process when the call budget is
    /// spent or the arguments carry the crash marker.
    pub fn on_call(
        &self,
        arguments: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Verdict {
        if !self.crash_marker.is_empty()
            && arguments.is_some_and(|a| {
                a.values()
                    .any(|v| v.to_string().contains(self.crash_marker.as_str()))
            })
        {
            tracing::warn!(marker = %self.crash_marker, "poison call; exiting");
            std::process::exit(70);
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.exit_after > 0 && n >= self.exit_after {
            tracing::warn!(calls = n, "exit-after reached; exiting");
            std::process::exit(3);
        }
        let hang = rate(&self.hang_rate);
        if hang > 0.0 && fastrand::f64() < hang {
            return Verdict::Hang;
        }
        let error = rate(&self.error_rate);
        if error > 0.0 && fastrand::f64() < error {
            return Verdict::Fail;
        }
        Verdict::Run
    }

    /// HTTP: whether this POST should be refused with 429, and the delay
    /// (seconds) to ask for. `tool_call` says the POST carries `tools/call`.
    pub fn rate_limited(&self, tool_call: bool) -> Option<u64> {
        let retry_after = self.retry_after_secs.load(Ordering::Relaxed);
        if tool_call
            && self
                .rate_limit_next_calls
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
        {
            return Some(retry_after);
        }
        let every = self.rate_limit_every.load(Ordering::Relaxed);
        if every == 0 {
            return None;
        }
        let n = self.posts.fetch_add(1, Ordering::SeqCst) + 1;
        n.is_multiple_of(every).then_some(retry_after)
    }

    /// Fixed latency per call.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }

    /// Latency per simulated API request.
    pub fn unit_latency(&self) -> Duration {
        Duration::from_millis(self.unit_latency_ms.load(Ordering::Relaxed))
    }

    /// Delay before answering any HTTP request.
    pub fn slow(&self) -> Duration {
        Duration::from_millis(self.slow_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        faults: FaultOptions,
    }

    fn faults(args: &[&str]) -> Faults {
        let mut argv = vec!["sim"];
        argv.extend_from_slice(args);
        Faults::new(Cli::parse_from(argv).faults)
    }

    #[test]
    fn next_calls_are_rate_limited_then_released() {
        let f = faults(&["--retry-after-secs", "2"]);
        f.update(FaultUpdate {
            rate_limit_next_calls: Some(2),
            ..Default::default()
        });
        assert_eq!(f.rate_limited(false), None, "only tools/call POSTs count");
        assert_eq!(f.rate_limited(true), Some(2));
        assert_eq!(f.rate_limited(true), Some(2));
        assert_eq!(f.rate_limited(true), None);
    }

    #[test]
    fn runtime_updates_change_knobs() {
        let f = faults(&["--slow-ms", "5"]);
        assert_eq!(f.slow(), Duration::from_millis(5));
        f.update(FaultUpdate {
            slow_ms: Some(0),
            error_rate: Some(3.0),
            ..Default::default()
        });
        assert_eq!(f.slow(), Duration::ZERO);
        assert_eq!(f.state().error_rate, 1.0);
        assert_eq!(f.on_call(None), Verdict::Fail);
    }
}
