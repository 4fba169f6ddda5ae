//! Running one drill: baseline load, the fault, the wait for recovery,
//! the load after, mending what was broken, and the verdict.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::load::{Load, Phase, Sample, latency};
use super::report::{
    AlertSummary, BeforeAfter, Calls, Check, DrillReport, Latencies, Thresholds, Timings,
};
use super::{DrillError, DrillEvent, DrillKind, DrillRequest, DrillTarget};
use crate::cache::CacheUse;
use crate::error::ErrorCategory;
use crate::health::alerts::Severity;
use crate::health::{GetAlerts, now_ms};
use crate::model::{ServiceHandle, ServiceState};
use crate::process::{self, Signal};
use crate::registry::ToolEntry;
use crate::router::Execute;
use crate::service::{Caller, Incarnation, Sever};
use crate::stream::EventSink;
use crate::supervisor::{ForgetRestarts, HoldRestart, InjectFault, SetEnabled};

/// Load before the fault, and after recovery.
const BASELINE: Duration = Duration::from_millis(1500);
const AFTER: Duration = Duration::from_millis(1500);
/// How long calls in flight get to finish at the end.
const PATIENCE: Duration = Duration::from_secs(10);
/// File descriptors a drill may leave open (pooled connections to a new
/// upstream instance, for one).
const FD_SLACK: usize = 16;
/// How often the target's state is looked at.
const POLL: Duration = Duration::from_millis(10);

/// Milestones of the target, as a watcher saw them.
#[derive(Debug, Default, Clone)]
struct Milestones {
    /// Out of rotation: not ready, a new generation, or suspect.
    out: Option<Instant>,
    /// Ready as a new instance.
    restarted: Option<Instant>,
    /// Ready, answering and (for a fault with an end) after that end.
    back: Option<Instant>,
    /// Marked failed by the supervisor at some point.
    failed: Option<Instant>,
    /// Any replica of the group failed at some point.
    group_failed: bool,
    /// Suspect at some point.
    suspect: bool,
}

struct Watch {
    seen: Arc<Mutex<Milestones>>,
    /// The fault's end (`back` only counts after it).
    release: Arc<Mutex<Option<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    fn start(
        target: Arc<ServiceHandle>,
        group: Vec<Arc<ServiceHandle>>,
        needs_restart: bool,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Milestones::default()));
        let release: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(Some(Instant::now())));
        let generation = target.generation();
        let task = {
            let (seen, release) = (seen.clone(), release.clone());
            actix::spawn(async move {
                loop {
                    let now = Instant::now();
                    let state = target.state();
                    let fresh = target.generation() != generation;
                    let suspect = target.is_suspect();
                    let ready = state == ServiceState::Ready;
                    let released = release
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_some_and(|at| now >= at);
                    {
                        let mut m = seen.lock().unwrap_or_else(|p| p.into_inner());
                        if m.out.is_none() && (!ready || fresh || suspect) {
                            m.out = Some(now);
                        }
                        m.suspect |= suspect;
                        if state == ServiceState::Failed && m.failed.is_none() {
                            m.failed = Some(now);
                        }
                        m.group_failed |= group.iter().any(|h| h.state() == ServiceState::Failed);
                        if fresh && ready && m.restarted.is_none() {
                            m.restarted = Some(now);
                        }
                        if m.back.is_none()
                            && m.out.is_some()
                            && ready
                            && !suspect
                            && released
                            && (fresh || !needs_restart)
                        {
                            m.back = Some(now);
                        }
                    }
                    tokio::time::sleep(POLL).await;
                }
            })
        };
        Self {
            seen,
            release,
            task,
        }
    }

    fn seen(&self) -> Milestones {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The fault lasts until further notice.
    fn hold(&self) {
        *self.release.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The fault ended now.
    fn released(&self) {
        *self.release.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Emits drill events; a gone listener does not stop the drill.
struct Say<'a> {
    events: &'a mpsc::Sender<DrillEvent>,
    started: Instant,
}

impl Say<'_> {
    fn phase(&self, name: &'static str, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(phase = name, %detail, "drill");
        let _ = self.events.try_send(DrillEvent::Phase {
            name,
            at_ms: self.started.elapsed().as_millis() as u64,
            detail,
        });
    }

    fn progress(&self, load: &Load) {
        let (ok, failed) = load.counts();
        let _ = self.events.try_send(DrillEvent::Progress {
            at_ms: self.started.elapsed().as_millis() as u64,
            sent: load.sent(),
            ok,
            failed,
        });
    }

    /// Waits `d`, reporting progress on the way.
    async fn pause(&self, load: &Load, d: Duration) {
        let end = tokio::time::Instant::now() + d;
        while tokio::time::Instant::now() < end {
            tokio::time::sleep_until(
                end.min(tokio::time::Instant::now() + Duration::from_millis(500)),
            )
            .await;
            self.progress(load);
        }
    }

    /// Waits until `cond` holds or `limit` passes; whether it held.
    async fn until(&self, load: &Load, limit: Duration, cond: impl Fn() -> bool) -> bool {
        let end = tokio::time::Instant::now() + limit;
        let mut last = tokio::time::Instant::now();
        loop {
            if cond() {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            if last.elapsed() >= Duration::from_millis(500) {
                self.progress(load);
                last = tokio::time::Instant::now();
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn check(checks: &mut Vec<Check>, name: &str, passed: bool, detail: impl Into<String>) {
    checks.push(Check {
        name: name.to_owned(),
        passed,
        detail: detail.into(),
    });
}

fn ms_since(from: Instant, to: Option<Instant>) -> Option<u64> {
    to.map(|t| t.saturating_duration_since(from).as_millis() as u64)
}

/// The replica a drill breaks: the one named, or the preferred ready
/// replica of the first logical service.
fn pick_target(t: &DrillTarget, req: &DrillRequest) -> Result<Arc<ServiceHandle>, DrillError> {
    if let Some(name) = &req.service {
        return t
            .directory
            .get(name)
            .ok_or_else(|| DrillError::UnknownService(name.clone()));
    }
    let all = t.directory.all();
    let first = all
        .first()
        .ok_or_else(|| DrillError::UnknownService("(none configured)".into()))?;
    let group = first.spec.group();
    crate::router::best_first(all.iter().filter(|h| h.spec.group() == group))
        .into_iter()
        .next()
        .ok_or_else(|| DrillError::NotReady(first.name().to_owned(), "no ready replica".into()))
}

/// The tool the load calls: named, or the first read-only tool of the
/// target without required arguments.
fn load_tool(
    t: &DrillTarget,
    req: &DrillRequest,
    target: &ServiceHandle,
) -> Result<String, DrillError> {
    let table = t.registry.snapshot();
    if let Some(tool) = &req.tool {
        return table
            .get(tool)
            .map(|e| e.tool.name.to_string())
            .ok_or_else(|| DrillError::UnknownTool(tool.clone()));
    }
    table
        .tools()
        .iter()
        .filter(|e| e.providers.iter().any(|p| p == target.name()))
        .filter(|e| e.annotations().read_only_hint == Some(true))
        .find(|e| required(e).is_empty())
        .map(|e| e.tool.name.to_string())
        .ok_or_else(|| DrillError::NoLoadTool(target.name().to_owned()))
}

fn required(e: &ToolEntry) -> Vec<String> {
    e.tool
        .input_schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A call that crashes the simulated upstream: a read-only tool whose
/// required arguments are all strings, each set to the simulator's crash
/// marker.
fn poison_call(
    t: &DrillTarget,
    target: &ServiceHandle,
) -> Option<(String, serde_json::Map<String, serde_json::Value>)> {
    let table = t.registry.snapshot();
    table
        .tools()
        .iter()
        .filter(|e| e.providers.iter().any(|p| p == target.name()))
        .filter(|e| e.annotations().read_only_hint == Some(true))
        .find_map(|e| {
            let req = required(e);
            let props = e.tool.input_schema.get("properties")?.as_object()?;
            let all_strings = !req.is_empty()
                && req.iter().all(|r| {
                    props
                        .get(r)
                        .and_then(|p| p.get("type"))
                        .and_then(|t| t.as_str())
                        == Some("string")
                });
            all_strings.then(|| {
                let args = req
                    .into_iter()
                    .map(|r| (r, serde_json::Value::from(POISON_MARKER)))
                    .collect();
                (e.tool.name.to_string(), args)
            })
        })
}

/// What the simulator takes as a poison call (`sim --crash-marker`).
const POISON_MARKER: &str = "sim:crash";

pub(super) async fn run(
    t: &DrillTarget,
    req: DrillRequest,
    events: mpsc::Sender<DrillEvent>,
) -> Result<DrillReport, DrillError> {
    let started = Instant::now();
    let started_at_ms = now_ms();
    let say = Say {
        events: &events,
        started,
    };
    let target = pick_target(t, &req)?;
    let name = target.name().to_owned();
    if target.state() != ServiceState::Ready {
        return Err(DrillError::NotReady(
            name,
            format!("{:?}", target.state()).to_lowercase(),
        ));
    }
    let group_name = target.spec.group().to_owned();
    let group: Vec<Arc<ServiceHandle>> = t
        .directory
        .all()
        .iter()
        .filter(|h| h.spec.group() == group_name)
        .cloned()
        .collect();
    let others_ready = group
        .iter()
        .any(|h| h.name() != name && h.state() == ServiceState::Ready);
    let tool = load_tool(t, &req, &target)?;
    let has_process = target.process().pgid().is_some();
    if matches!(req.kind, DrillKind::UpstreamKill | DrillKind::UpstreamHang) && !has_process {
        return Err(DrillError::Unsupported(format!(
            "{} needs a process mcpvisor launched; `{name}` is a remote server (try `outage`)",
            req.kind
        )));
    }
    let poison = if req.kind == DrillKind::Poison {
        Some(poison_call(t, &target).ok_or_else(|| {
            DrillError::Unsupported(format!(
                "no read-only tool of `{name}` takes only string arguments to carry the crash marker"
            ))
        })?)
    } else {
        None
    };
    let d = req.duration;
    let policy = &target.spec.restart;
    let recover_limit = match req.kind {
        DrillKind::ActorPanic | DrillKind::UpstreamKill | DrillKind::Poison => {
            Duration::from_secs(30)
        }
        DrillKind::UpstreamHang | DrillKind::Failover => d + Duration::from_secs(30),
        DrillKind::Outage => {
            d + Duration::from_millis(policy.failed_retry_ms) + Duration::from_secs(30)
        }
        DrillKind::RestartStorm => {
            Duration::from_millis(policy.failed_retry_ms * 2) + Duration::from_secs(60)
        }
    };
    let needs_restart = !matches!(req.kind, DrillKind::UpstreamHang | DrillKind::Poison);

    let processes_before = process::descendants();
    let fds_before = process::open_fds();
    let restarts_before = target.restarts();
    let alerts_before: HashSet<u64> = active_alerts(t).await.into_iter().map(|a| a.id).collect();

    say.phase(
        "baseline",
        format!(
            "{} clients calling `{tool}`; target {name} ({group_name})",
            req.load
        ),
    );
    let load = Load::start(t.router.clone(), tool.clone(), req.load);
    say.pause(&load, BASELINE).await;

    load.enter(Phase::During);
    let fault_at = Instant::now();
    let watch = Watch::start(target.clone(), group.clone(), needs_restart);
    let mut checks = Vec::new();
    let mut fault_ms = None;
    match req.kind {
        DrillKind::ActorPanic => {
            say.phase("fault", format!("making the actor of {name} panic"));
            let _ = t
                .supervisor
                .send(InjectFault {
                    service: name.clone(),
                })
                .await;
        }
        DrillKind::UpstreamKill => {
            say.phase("fault", format!("SIGKILL to the processes of {name}"));
            let _ = target.process().signal(Signal::Kill);
        }
        DrillKind::UpstreamHang => {
            watch.hold();
            say.phase(
                "fault",
                format!(
                    "SIGSTOP to the processes of {name} for {} ms",
                    d.as_millis()
                ),
            );
            let _ = target.process().signal(Signal::Stop);
            say.pause(&load, d).await;
            let _ = target.process().signal(Signal::Cont);
            watch.released();
            fault_ms = Some(d.as_millis() as u64);
            say.phase("thawed", format!("SIGCONT to {name}"));
        }
        DrillKind::Failover => {
            watch.hold();
            let until = Instant::now() + d;
            let _ = t
                .supervisor
                .send(HoldRestart {
                    service: name.clone(),
                    until,
                })
                .await;
            say.phase("fault", format!("{name} down for {} ms", d.as_millis()));
            knock_down(t, &target, "failover drill").await;
            say.pause(&load, d).await;
            watch.released();
            fault_ms = Some(d.as_millis() as u64);
            say.phase("released", format!("{name} may come back"));
        }
        DrillKind::Outage => {
            watch.hold();
            target.set_unreachable(Some(Instant::now() + d));
            say.phase(
                "fault",
                format!("{name} unreachable for {} ms", d.as_millis()),
            );
            if let Some(addr) = target.addr() {
                addr.do_send(Sever {
                    reason: "connection cut (outage drill)".into(),
                });
            }
            say.pause(&load, d).await;
            target.set_unreachable(None);
            watch.released();
            fault_ms = Some(d.as_millis() as u64);
            say.phase("reachable", format!("{name} reachable again"));
        }
        DrillKind::RestartStorm => {
            watch.hold();
            say.phase("fault", format!("crashing {name} each time it comes up"));
            let mut crashes = 0u32;
            let limit = policy.max_restarts + 5;
            while crashes < limit {
                let up = say
                    .until(&load, Duration::from_secs(30), || {
                        matches!(target.state(), ServiceState::Ready | ServiceState::Failed)
                    })
                    .await;
                if !up || target.state() == ServiceState::Failed {
                    break;
                }
                knock_down(t, &target, "restart-storm drill").await;
                crashes += 1;
                // Wait for it to leave `ready` before looking again.
                say.until(&load, Duration::from_secs(5), || {
                    target.state() != ServiceState::Ready
                })
                .await;
            }
            let failed = say
                .until(&load, Duration::from_secs(10), || {
                    target.state() == ServiceState::Failed
                })
                .await;
            check(
                &mut checks,
                "intensity tripped",
                failed,
                format!("{crashes} crashes; {name} is {:?}", target.state()).to_lowercase(),
            );
            watch.released();
            say.phase(
                "storm over",
                format!("{crashes} crashes; waiting for {name} to come back by itself"),
            );
        }
        DrillKind::Poison => {
            let (poison_tool, args) = poison.clone().unwrap_or_default();
            say.phase(
                "fault",
                format!("calling `{poison_tool}` with a crashing argument"),
            );
            let outcome = t
                .router
                .execute(Execute {
                    tool: poison_tool.clone(),
                    arguments: Some(args),
                    validated: false,
                    events: EventSink::discard(),
                    caller: Caller::default(),
                    service: None,
                    span: tracing::info_span!("drill_poison"),
                    cache: CacheUse {
                        bypass: true,
                        client: None,
                    },
                })
                .await;
            let category = outcome.as_ref().err().map(|e| e.category);
            check(
                &mut checks,
                "poison call quarantined",
                category == Some(ErrorCategory::Quarantined),
                match outcome {
                    Err(e) => e.to_string(),
                    Ok(_) => "it succeeded".into(),
                },
            );
            // Every replica it crashed comes back.
            say.until(&load, recover_limit, || {
                group.iter().all(|h| h.state() == ServiceState::Ready)
            })
            .await;
        }
    }

    let back = say
        .until(&load, recover_limit, || watch.seen().back.is_some())
        .await;
    say.phase(
        if back { "recovered" } else { "not recovered" },
        format!("{name} is {:?}", target.state()).to_lowercase(),
    );
    // Calls routed back to a preferred target show it serving again.
    let back_at = watch.seen().back;
    let preferred = crate::router::best_first(group.iter())
        .first()
        .is_some_and(|h| h.name() == name);
    if let Some(back_at) = back_at.filter(|_| preferred) {
        say.until(&load, Duration::from_secs(3), || {
            load.served_by_since(&name, back_at)
        })
        .await;
    }
    load.enter(Phase::After);
    say.phase("after", "load after recovery");
    say.pause(&load, AFTER).await;
    let (samples, lost) = load.finish(PATIENCE).await;
    let seen = watch.seen();
    drop(watch);

    // Mend whatever is still broken.
    let _ = target.process().signal(Signal::Cont);
    target.set_unreachable(None);
    t.directory.quarantine().release_group(&group_name);
    // The drill's crashes are not held against the service afterwards.
    for h in &group {
        let _ = t
            .supervisor
            .send(ForgetRestarts {
                service: h.name().to_owned(),
            })
            .await;
    }
    if matches!(target.state(), ServiceState::Failed) {
        say.phase("mending", format!("{name} did not come back; enabling it"));
        let _ = t
            .supervisor
            .send(SetEnabled {
                service: name.clone(),
                enabled: true,
            })
            .await;
    }
    // Old instances' processes and connections take a moment to go.
    let mut processes_after = process::descendants();
    let mut fds_after = process::open_fds();
    let settle = Instant::now();
    while (processes_after > processes_before || fds_after > fds_before + FD_SLACK)
        && settle.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        processes_after = process::descendants();
        fds_after = process::open_fds();
    }

    let calls = tally(&samples, lost);
    let max_failed = if others_ready
        || matches!(
            req.kind,
            DrillKind::ActorPanic | DrillKind::UpstreamKill | DrillKind::Poison
        ) {
        0
    } else {
        usize::MAX
    };
    check(
        &mut checks,
        "no call lost",
        lost == 0,
        format!(
            "{lost} calls unanswered {} s after the drill",
            PATIENCE.as_secs()
        ),
    );
    check(
        &mut checks,
        "no call failed",
        calls.failed <= max_failed,
        if max_failed == 0 {
            format!("{} of {} failed", calls.failed, calls.sent)
        } else {
            format!(
                "{} of {} failed (allowed: no other replica of {group_name} was ready)",
                calls.failed, calls.sent
            )
        },
    );
    check(
        &mut checks,
        "recovered",
        back,
        match ms_since(fault_at, seen.back) {
            Some(ms) => format!(
                "{name} back {ms} ms after the fault (limit {} ms)",
                recover_limit.as_millis()
            ),
            None => format!("{name} not back within {} ms", recover_limit.as_millis()),
        },
    );
    if needs_restart {
        check(
            &mut checks,
            "restarted",
            seen.restarted.is_some(),
            format!("{} restarts", target.restarts() - restarts_before),
        );
    }
    match req.kind {
        DrillKind::UpstreamHang => check(
            &mut checks,
            "taken out of rotation while frozen",
            seen.suspect || seen.restarted.is_some(),
            ms_since(fault_at, seen.out).map_or_else(
                || "never suspect".into(),
                |ms| format!("suspect after {ms} ms"),
            ),
        ),
        DrillKind::Poison
        | DrillKind::ActorPanic
        | DrillKind::UpstreamKill
        | DrillKind::Failover => check(
            &mut checks,
            "never failed",
            !seen.group_failed,
            if seen.group_failed {
                format!("a replica of {group_name} was marked failed")
            } else {
                "no replica marked failed".into()
            },
        ),
        _ => {}
    }
    if others_ready && req.kind != DrillKind::Poison {
        check(
            &mut checks,
            "failed over",
            first_elsewhere(&samples, fault_at, &name).is_some(),
            "another replica answered while the target was out",
        );
    }
    check(
        &mut checks,
        "processes back to baseline",
        processes_after <= processes_before,
        format!("{processes_before} before, {processes_after} after"),
    );
    check(
        &mut checks,
        "file descriptors back to baseline",
        fds_after <= fds_before + FD_SLACK,
        format!("{fds_before} before, {fds_after} after (slack {FD_SLACK})"),
    );
    let alerts = alert_summary(t, &alerts_before, started_at_ms).await;
    let critical_left: Vec<&String> = alerts.1.iter().collect();
    check(
        &mut checks,
        "no critical alert left",
        critical_left.is_empty(),
        if critical_left.is_empty() {
            "every critical alert the drill raised was resolved".to_owned()
        } else {
            format!("still active: {critical_left:?}")
        },
    );

    let recover = samples
        .iter()
        .filter(|s| s.ok && s.service.as_deref() == Some(name.as_str()))
        .filter(|s| seen.back.is_some_and(|b| s.started >= b))
        .map(|s| s.finished)
        .min()
        .or(seen.back);
    let verdict = if checks.iter().all(|c| c.passed) {
        "pass"
    } else {
        "fail"
    };
    let report = DrillReport {
        kind: req.kind,
        service: name.clone(),
        group: group_name,
        verdict: verdict.to_owned(),
        tool,
        started_at_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        fault_ms,
        calls,
        timings_ms: Timings {
            detect: ms_since(fault_at, seen.out),
            failover: first_elsewhere(&samples, fault_at, &name)
                .map(|at| at.saturating_duration_since(fault_at).as_millis() as u64),
            restart: ms_since(fault_at, seen.restarted),
            recover: ms_since(fault_at, recover),
        },
        latency_ms: Latencies {
            before: latency(&samples, Phase::Before),
            during: latency(&samples, Phase::During),
            after: latency(&samples, Phase::After),
        },
        alerts: alerts.0,
        processes: BeforeAfter {
            before: processes_before,
            after: processes_after,
        },
        fds: BeforeAfter {
            before: fds_before,
            after: fds_after,
        },
        thresholds: Thresholds {
            max_failed: max_failed.min(1_000_000),
            max_lost: 0,
            recover_within_ms: recover_limit.as_millis() as u64,
            fd_slack: FD_SLACK,
        },
        checks,
        restarts: target.restarts() - restarts_before,
        errors: samples
            .iter()
            .filter_map(|s| s.error.clone())
            .take(5)
            .collect(),
    };
    say.phase("done", format!("verdict: {verdict}"));
    tracing::info!(kind = %report.kind, service = %report.service, verdict, "drill finished");
    Ok(report)
}

/// Takes the target down as a crash would: its process group killed, or
/// its connection cut when it has no process.
async fn knock_down(t: &DrillTarget, target: &ServiceHandle, why: &str) {
    if target.process().signal(Signal::Kill).is_err() {
        match target.addr() {
            Some(addr) => addr.do_send(Sever {
                reason: format!("connection cut ({why})"),
            }),
            None => {
                let _ = t
                    .supervisor
                    .send(InjectFault {
                        service: target.name().to_owned(),
                    })
                    .await;
            }
        }
    }
}

/// When a call was first answered by a replica other than `target` after
/// the fault.
fn first_elsewhere(samples: &[Sample], fault_at: Instant, target: &str) -> Option<Instant> {
    samples
        .iter()
        .filter(|s| s.ok && s.finished >= fault_at)
        .filter(|s| s.service.as_deref().is_some_and(|svc| svc != target))
        .map(|s| s.finished)
        .min()
}

fn tally(samples: &[Sample], lost: usize) -> Calls {
    let ok = samples.iter().filter(|s| s.ok).count();
    Calls {
        sent: samples.len() + lost,
        ok,
        failed: samples.len() - ok,
        lost,
        hedged: samples.iter().filter(|s| s.hedged).count(),
        retried: samples.iter().filter(|s| s.retried).count(),
    }
}

async fn active_alerts(t: &DrillTarget) -> Vec<crate::health::alerts::Alert> {
    t.monitor
        .send(GetAlerts { active_only: true })
        .await
        .unwrap_or_default()
}

/// Alerts raised since the drill began, those resolved, and the critical
/// ones among them still active.
async fn alert_summary(
    t: &DrillTarget,
    before: &HashSet<u64>,
    since_ms: u64,
) -> (AlertSummary, Vec<String>) {
    let all = t
        .monitor
        .send(GetAlerts { active_only: false })
        .await
        .unwrap_or_default();
    let mut summary = AlertSummary::default();
    let mut critical = Vec::new();
    for a in all
        .iter()
        .filter(|a| a.raised_at_ms >= since_ms && !before.contains(&a.id))
    {
        summary.raised.push(a.key.clone());
        if a.active {
            summary.still_active.push(a.key.clone());
            if a.severity == Severity::Critical {
                critical.push(a.key.clone());
            }
        } else {
            summary.resolved.push(a.key.clone());
        }
    }
    (summary, critical)
}
