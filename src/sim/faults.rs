//! Fault knobs of the simulator: latency, errors, hangs, crashes and rate
//! limiting, so supervision, failover and retries can be shown working.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;

/// Fault settings (flags or `SIM_*` environment variables).
#[derive(Debug, Clone, Args)]
pub struct FaultOptions {
    /// Added to every call.
    #[arg(long, default_value_t = 0, env = "SIM_LATENCY_MS")]
    pub latency_ms: u64,
    /// Per simulated Asana API request a call makes (a call reports one
    /// progress step per request).
    #[arg(long, default_value_t = 10, env = "SIM_UNIT_LATENCY_MS")]
    pub unit_latency_ms: u64,
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
}

/// Live fault state shared by every request.
#[derive(Debug)]
pub struct Faults {
    opts: FaultOptions,
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

impl Faults {
    /// Fault state from options.
    pub fn new(opts: FaultOptions) -> Self {
        Self {
            opts,
            calls: AtomicU64::new(0),
            posts: AtomicU64::new(0),
        }
    }

    /// Decides a call's fate; exits the process when the call budget is spent.
    pub fn on_call(&self) -> Verdict {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.opts.exit_after > 0 && n >= self.opts.exit_after {
            tracing::warn!(calls = n, "exit-after reached; exiting");
            std::process::exit(3);
        }
        if self.opts.hang_rate > 0.0 && fastrand::f64() < self.opts.hang_rate {
            return Verdict::Hang;
        }
        if self.opts.error_rate > 0.0 && fastrand::f64() < self.opts.error_rate {
            return Verdict::Fail;
        }
        Verdict::Run
    }

    /// HTTP: whether this POST should be refused with 429, and the delay to ask for.
    pub fn rate_limited(&self) -> Option<u64> {
        let every = self.opts.rate_limit_every;
        if every == 0 {
            return None;
        }
        let n = self.posts.fetch_add(1, Ordering::SeqCst) + 1;
        n.is_multiple_of(every)
            .then_some(self.opts.retry_after_secs)
    }

    /// Fixed latency per call.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.opts.latency_ms)
    }

    /// Latency per simulated API request.
    pub fn unit_latency(&self) -> Duration {
        Duration::from_millis(self.opts.unit_latency_ms)
    }
}
