//! A drill's report: what happened, in figures, and the verdict.

use serde::{Deserialize, Serialize};

use super::DrillKind;
use super::load::Latency;

/// The drill's calls.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Calls {
    pub sent: usize,
    pub ok: usize,
    pub failed: usize,
    /// Started but never answered before the drill ended.
    pub lost: usize,
    /// Sent to a second replica because the first lingered.
    pub hedged: usize,
    /// Failed over to another replica, or retried.
    pub retried: usize,
}

/// Milliseconds from the fault to each milestone (absent where it does not
/// apply or did not happen).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    /// The target was out of rotation (down, restarting or suspect).
    pub detect: Option<u64>,
    /// The first call answered by another replica.
    pub failover: Option<u64>,
    /// The target was ready again as a new instance.
    pub restart: Option<u64>,
    /// The target answered calls again.
    pub recover: Option<u64>,
}

/// Latency of the drill's calls, in ms, by phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latencies {
    pub before: Latency,
    pub during: Latency,
    pub after: Latency,
}

/// Before and after.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct BeforeAfter {
    pub before: usize,
    pub after: usize,
}

/// Alerts raised and resolved while the drill ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AlertSummary {
    pub raised: Vec<String>,
    pub resolved: Vec<String>,
    /// Raised by the drill and still active at its end.
    pub still_active: Vec<String>,
}

/// One thing the verdict checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// The limits the verdict compares against.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Thresholds {
    pub max_failed: usize,
    pub max_lost: usize,
    pub recover_within_ms: u64,
    pub fd_slack: usize,
}

/// Everything a drill found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    pub kind: DrillKind,
    /// The replica broken.
    pub service: String,
    /// Its logical service.
    pub group: String,
    /// `pass` or `fail`.
    pub verdict: String,
    /// The tool the load called.
    pub tool: String,
    /// Unix ms at the start.
    pub started_at_ms: u64,
    pub duration_ms: u64,
    /// How long the fault lasted, where it has a length.
    pub fault_ms: Option<u64>,
    pub calls: Calls,
    pub timings_ms: Timings,
    pub latency_ms: Latencies,
    pub alerts: AlertSummary,
    pub processes: BeforeAfter,
    pub fds: BeforeAfter,
    pub thresholds: Thresholds,
    pub checks: Vec<Check>,
    /// Restarts of the target during the drill.
    pub restarts: u32,
    /// The first errors the load saw (at most five).
    pub errors: Vec<String>,
}

impl DrillReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    /// The report as a readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
        let lat = |l: &Latency| match (l.p50, l.p99) {
            (Some(a), Some(b)) => format!("{a:.1} / {b:.1} ms ({} calls)", l.calls),
            _ => "-".to_owned(),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "drill {} on {} ({}): {}",
            self.kind,
            self.service,
            self.group,
            self.verdict.to_uppercase()
        );
        let c = &self.calls;
        let _ = writeln!(
            out,
            "  calls      {} sent, {} ok, {} failed, {} lost, {} hedged, {} retried",
            c.sent, c.ok, c.failed, c.lost, c.hedged, c.retried
        );
        let t = &self.timings_ms;
        let _ = writeln!(
            out,
            "  timings    detect {}, failover {}, restart {}, recover {}",
            ms(t.detect),
            ms(t.failover),
            ms(t.restart),
            ms(t.recover)
        );
        let l = &self.latency_ms;
        let _ = writeln!(out, "  p50 / p99  before {}", lat(&l.before));
        let _ = writeln!(out, "             during {}", lat(&l.during));
        let _ = writeln!(out, "             after  {}", lat(&l.after));
        let _ = writeln!(
            out,
            "  alerts     raised [{}], resolved [{}]",
            self.alerts.raised.join(", "),
            self.alerts.resolved.join(", ")
        );
        let _ = writeln!(
            out,
            "  processes  {} -> {};  fds {} -> {};  restarts {}",
            self.processes.before,
            self.processes.after,
            self.fds.before,
            self.fds.after,
            self.restarts
        );
        for check in &self.checks {
            let _ = writeln!(
                out,
                "  [{}] {}: {}",
                if check.passed { "ok" } else { "FAIL" },
                check.name,
                check.detail
            );
        }
        out
    }
}
