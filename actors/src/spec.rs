//! What a service is: the "child spec" the supervisor starts and restarts.
//!
//! A restart always builds a fresh service actor from its [`ServiceSpec`],
//! never from the state a crashed actor left behind. The same structs are
//! the `[[services]]` tables of the config file, so every limit here is a
//! named setting with a default.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::manifest::Priority;

/// The wire an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// A child process speaking MCP on stdin/stdout.
    Stdio,
    /// MCP Streamable HTTP at `url`.
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05): `url` is the SSE stream.
    Sse,
}

/// One configured upstream MCP service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name of this service (one replica).
    pub name: String,
    /// Logical service this replica belongs to; replicas share tools.
    /// Defaults to `name`.
    #[serde(default)]
    pub group: Option<String>,
    /// Routing priority among replicas offering the same tool.
    #[serde(default)]
    pub priority: Priority,
    /// Transport.
    pub transport: TransportKind,
    /// Program to launch: the stdio server, or the process serving `url`
    /// (a managed HTTP upstream). `@self` is the mcpvisor executable.
    #[serde(default)]
    pub command: Option<String>,
    /// Arguments; `{port}` is replaced by the port chosen for `url`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the launched program; `{port}` in a value is
    /// replaced as in `args`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory for the launched program.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Streamable HTTP endpoint. `{port}` picks a free loopback port at
    /// every start of a managed upstream.
    #[serde(default)]
    pub url: Option<String>,
    /// Protocol revision to speak with the upstream: `auto` (the default:
    /// 2026-07-28 if the server offers it, else the newest session
    /// revision it accepts) or one revision, e.g. `2025-11-25` to keep a
    /// session even with a server that also speaks 2026-07-28.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Extra HTTP headers (e.g. `Authorization = "Bearer ${TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Tool manifest: a path relative to the config file, or `builtin:NAME`.
    #[serde(default)]
    pub manifest: Option<String>,
    /// Whether the service starts enabled.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Limits and timeouts.
    #[serde(default)]
    pub limits: LimitSpec,
    /// Health checking.
    #[serde(default)]
    pub health: HealthSpec,
    /// Restart policy.
    #[serde(default)]
    pub restart: RestartSpec,
    /// Circuit breaker.
    #[serde(default)]
    pub breaker: BreakerSpec,
}

fn yes() -> bool {
    true
}

impl ServiceSpec {
    /// The logical service this replica belongs to.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }
}

/// Per-service limits and timeouts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSpec {
    /// Calls sent upstream at once; more wait in the service's queue.
    pub max_in_flight: usize,
    /// Calls waiting in the queue; more are refused as `overload`.
    pub max_queue: usize,
    /// Deadline of one tool call as its caller sees it: every attempt,
    /// wait and retry included.
    pub call_timeout_ms: u64,
    /// Deadline of one attempt upstream (0: the rest of the call's time).
    pub attempt_timeout_ms: u64,
    /// Deadline for connecting (spawn + handshake).
    pub connect_timeout_ms: u64,
    /// How long a launched server's process group has to end after SIGTERM
    /// before it is killed.
    pub stop_grace_ms: u64,
}

impl Default for LimitSpec {
    fn default() -> Self {
        Self {
            max_in_flight: 32,
            max_queue: 512,
            call_timeout_ms: 60_000,
            attempt_timeout_ms: 0,
            connect_timeout_ms: 20_000,
            stop_grace_ms: 2_000,
        }
    }
}

impl LimitSpec {
    /// Whole-call deadline.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
    /// Longest single attempt, if limited apart from the call.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        (self.attempt_timeout_ms > 0).then(|| Duration::from_millis(self.attempt_timeout_ms))
    }
    /// Connect deadline.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    /// Time between SIGTERM and SIGKILL for a launched server.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }
}

/// Active health checking of one service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSpec {
    /// Probe period.
    pub interval_ms: u64,
    /// Probe deadline.
    pub timeout_ms: u64,
    /// Consecutive failed probes after which the connection is treated as
    /// dead and the service restarted.
    pub restart_after_failures: u32,
    /// Consecutive failures (probes or calls) that make the service
    /// `unhealthy`.
    pub unhealthy_after: u32,
    /// Median latency of recent successful samples above which the service
    /// is `degraded`.
    pub degraded_latency_ms: u64,
    /// Samples kept per service (uptime and percentiles are over these).
    pub history_size: usize,
    /// How long an unavailable service's tools stay listed.
    pub tools_grace_ms: u64,
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self {
            interval_ms: 5_000,
            timeout_ms: 2_000,
            restart_after_failures: 3,
            unhealthy_after: 2,
            degraded_latency_ms: 1_000,
            history_size: 120,
            tools_grace_ms: 30_000,
        }
    }
}

/// How the supervisor restarts a crashed service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartSpec {
    /// First restart delay; doubles for each restart inside the window.
    pub backoff_initial_ms: u64,
    /// Largest restart delay.
    pub backoff_max_ms: u64,
    /// Restart intensity: at most this many restarts ...
    pub max_restarts: u32,
    /// ... within this many seconds, or the service is marked failed.
    pub window_secs: u64,
    /// A failed service is still tried this often, and comes back by
    /// itself once its upstream answers.
    pub failed_retry_ms: u64,
    /// Stop trying a failed service until an operator enables it.
    pub give_up: bool,
    /// An incarnation that stayed ready this long was a success: the
    /// restart count (and so the backoff) starts again from zero.
    pub stable_after_secs: u64,
}

impl Default for RestartSpec {
    fn default() -> Self {
        Self {
            backoff_initial_ms: 100,
            backoff_max_ms: 30_000,
            max_restarts: 5,
            window_secs: 60,
            failed_retry_ms: 10_000,
            give_up: false,
            stable_after_secs: 30,
        }
    }
}

impl RestartSpec {
    /// Delay before restart number `n` (0-based) within the window.
    pub fn backoff(&self, n: u32) -> Duration {
        let ms = self
            .backoff_initial_ms
            .saturating_mul(1u64 << n.min(20))
            .min(self.backoff_max_ms);
        Duration::from_millis(ms)
    }
}

/// Breaker settings (`[services.breaker]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSpec {
    /// Failures in a row that open the breaker.
    pub consecutive_failures: u32,
    /// Failure rate (0..1) over the window that opens it...
    pub failure_rate: f64,
    /// ... once at least this many calls are in the window.
    pub min_calls: usize,
    /// Outcomes remembered.
    pub window: usize,
    /// How long it stays open before a trial call.
    pub open_ms: u64,
}

impl Default for BreakerSpec {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_calls: 10,
            window: 20,
            open_ms: 5_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RestartSpec {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(r.backoff(0), Duration::from_millis(100));
        assert_eq!(r.backoff(1), Duration::from_millis(200));
        assert_eq!(r.backoff(3), Duration::from_millis(800));
        assert_eq!(r.backoff(4), Duration::from_millis(1_000));
        assert_eq!(r.backoff(60), Duration::from_millis(1_000));
    }
}
