//! Drills: break a live daemon on purpose, under load, and prove it
//! recovers.
//!
//! A drill picks a target replica (the preferred one of a logical service,
//! or the one named), drives its own load of read-only calls through the
//! router — the path clients' calls take — and then injects one fault:
//!
//! | kind | fault |
//! |---|---|
//! | `actor-panic` | the service actor panics |
//! | `upstream-kill` | SIGKILL to the upstream's process group |
//! | `upstream-hang` | SIGSTOP to the group for the duration, then SIGCONT |
//! | `failover` | the preferred replica killed and held down for the duration, then back |
//! | `restart-storm` | killed each time it comes up, until the restart intensity marks it failed; then it must come back by itself |
//! | `outage` | the upstream unreachable for the duration (connection cut, reconnects refused), then back |
//! | `poison` | a call that crashes its upstream; it must be quarantined |
//!
//! It measures detection, failover, restart and recovery times, latency
//! before, during and after, calls lost or failed, alerts, and processes
//! and file descriptors before and after, and compares them with stated
//! thresholds for a verdict. Whatever it broke it mends; one drill runs at
//! a time.

mod load;
mod report;
mod run;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::Addr;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use report::{Calls, Check, DrillReport, Timings};

use crate::health::HealthMonitor;
use crate::model::Directory;
use crate::registry::Registry;
use crate::router::Router;
use crate::supervisor::Supervisor;

/// What a drill breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrillKind {
    ActorPanic,
    UpstreamKill,
    UpstreamHang,
    Failover,
    RestartStorm,
    Outage,
    Poison,
}

impl DrillKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [DrillKind; 7] = [
        Self::ActorPanic,
        Self::UpstreamKill,
        Self::UpstreamHang,
        Self::Failover,
        Self::RestartStorm,
        Self::Outage,
        Self::Poison,
    ];

    /// The kind's name on the command line and in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ActorPanic => "actor-panic",
            Self::UpstreamKill => "upstream-kill",
            Self::UpstreamHang => "upstream-hang",
            Self::Failover => "failover",
            Self::RestartStorm => "restart-storm",
            Self::Outage => "outage",
            Self::Poison => "poison",
        }
    }

    /// A kind by name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for DrillKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to drill, and how hard.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    pub kind: DrillKind,
    /// The replica to break (default: the preferred replica of the first
    /// logical service).
    pub service: Option<String>,
    /// Concurrent callers of the drill's load.
    pub load: usize,
    /// How long a hang, hold or outage lasts.
    pub duration: Duration,
    /// The read-only tool the load calls (default: the first read-only
    /// tool of the target that takes no required arguments).
    pub tool: Option<String>,
}

/// Defaults for a request.
pub const DEFAULT_LOAD: usize = 4;
/// Default fault duration.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(5);

/// Why a drill could not run.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("another drill is running")]
    Busy,
    #[error("no service named `{0}`")]
    UnknownService(String),
    #[error("service `{0}` is not ready ({1}); a drill starts from a working state")]
    NotReady(String, String),
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "no read-only tool without required arguments on `{0}` to drive load with; name one with --tool"
    )]
    NoLoadTool(String),
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
}

/// Something a running drill reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DrillEvent {
    /// A step of the drill.
    Phase {
        name: &'static str,
        at_ms: u64,
        detail: String,
    },
    /// The load so far.
    Progress {
        at_ms: u64,
        sent: usize,
        ok: usize,
        failed: usize,
    },
}

/// What a drill runs against.
#[derive(Clone)]
pub struct DrillTarget {
    pub router: Router,
    pub supervisor: Addr<Supervisor>,
    pub monitor: Addr<HealthMonitor>,
    pub directory: Arc<Directory>,
    pub registry: Arc<Registry>,
}

/// Runs drills one at a time and keeps their reports.
#[derive(Default)]
pub struct Drills {
    running: AtomicBool,
    reports: std::sync::Mutex<VecDeque<DrillReport>>,
}

/// Reports kept.
const KEPT: usize = 20;

impl Drills {
    /// Runs one drill to its report; refused while another runs.
    pub async fn run(
        &self,
        target: &DrillTarget,
        request: DrillRequest,
        events: mpsc::Sender<DrillEvent>,
    ) -> Result<DrillReport, DrillError> {
        if self.running.swap(true, Ordering::AcqRel) {
            return Err(DrillError::Busy);
        }
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _done = Done(&self.running);
        let report = run::run(target, request, events).await?;
        let mut kept = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(report.clone());
        Ok(report)
    }

    /// Whether a drill is running.
    pub fn busy(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Reports of past drills, newest first.
    pub fn reports(&self) -> Vec<DrillReport> {
        let kept = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().rev().cloned().collect()
    }
}

/// Parses `8s`, `500ms`, `1m` or a plain number of milliseconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1_000.0,
        "m" => n * 60_000.0,
        _ => return None,
    };
    Some(Duration::from_millis(ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_names() {
        for k in DrillKind::ALL {
            assert_eq!(DrillKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(DrillKind::parse("nope"), None);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("8s"), Some(Duration::from_secs(8)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("300"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
