//! The health monitor: what each service's samples add up to, and the
//! alerts that follow from it.
//!
//! Service actors report every probe and call as a [`ReportSample`]; the
//! supervisor reports lifecycle changes with [`Evaluate`]. The monitor
//! keeps a bounded history per service, derives its status (healthy /
//! degraded when slow / unhealthy when failing or down / disabled /
//! failed), writes it to the service's shared handle for the router, and
//! raises or resolves alerts on every transition.

pub mod alerts;
pub mod history;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::model::HealthStatus;
use crate::model::{Directory, ServiceHandle, ServiceState};
use alerts::{Alert, AlertBook, AlertEvent, Raise, Severity};
use history::{History, Sample, Source, Summary};

pub use webhook::Webhook;

/// Monitor settings (the `[alerts]` section).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Closed alerts kept.
    pub history_size: usize,
    /// Restarts within `restart_storm_window_secs` that raise a warning.
    pub restart_storm: u32,
    /// See `restart_storm`.
    pub restart_storm_window_secs: u64,
    /// POST every raised and resolved alert to this URL (empty: off).
    pub webhook_url: String,
    /// Deadline of one webhook delivery.
    pub webhook_timeout_ms: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            history_size: 500,
            restart_storm: 3,
            restart_storm_window_secs: 60,
            webhook_url: String::new(),
            webhook_timeout_ms: 5_000,
        }
    }
}

/// A sample from a service actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReportSample {
    pub service: String,
    pub sample: Sample,
}

/// Re-derive a service's status now (its lifecycle state changed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Evaluate {
    pub service: String,
}

/// One service's health, as `/api/health` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealth {
    pub service: String,
    pub group: String,
    pub status: HealthStatus,
    pub state: ServiceState,
    /// Unix ms of the last status change.
    pub since_ms: u64,
    pub restarts: u32,
    pub degraded_latency_ms: u64,
    #[serde(flatten)]
    pub summary: Summary,
}

/// Every service's health.
#[derive(Debug, Message)]
#[rtype(result = "Vec<ServiceHealth>")]
pub struct GetHealth;

/// One service's health and its samples (oldest first).
#[derive(Debug, Message)]
#[rtype(result = "Option<(ServiceHealth, Vec<Sample>)>")]
pub struct GetHistory {
    pub service: String,
}

/// Alerts, newest first.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Alert>")]
pub struct GetAlerts {
    pub active_only: bool,
}

struct Tracked {
    history: History,
    status: HealthStatus,
    since_ms: u64,
    restarts_seen: u32,
    restart_times: Vec<Instant>,
}

impl Tracked {
    fn new(h: &ServiceHandle) -> Self {
        Self {
            history: History::new(h.spec.health.history_size),
            status: HealthStatus::Unknown,
            since_ms: now_ms(),
            restarts_seen: 0,
            restart_times: Vec::new(),
        }
    }
}

/// The health monitor actor.
pub struct HealthMonitor {
    directory: Arc<Directory>,
    config: AlertConfig,
    services: HashMap<String, Tracked>,
    alerts: AlertBook,
    webhook: Option<Webhook>,
}

/// Re-evaluation period for time-based transitions (restart storms ending).
const TICK: Duration = Duration::from_millis(500);

impl HealthMonitor {
    /// A monitor over the given services.
    pub fn new(directory: Arc<Directory>, config: AlertConfig) -> Self {
        let services = directory
            .all()
            .iter()
            .map(|h| (h.name().to_owned(), Tracked::new(h)))
            .collect();
        Self {
            alerts: AlertBook::new(config.history_size),
            directory,
            config,
            services,
            webhook: None,
        }
    }

    fn publish(&self, event: Option<AlertEvent>) {
        let Some(event) = event else { return };
        match &event {
            AlertEvent::Raised(a) => {
                tracing::warn!(key = %a.key, severity = ?a.severity, message = %a.message, "alert raised")
            }
            AlertEvent::Resolved(a) => {
                tracing::info!(key = %a.key, duration_ms = a.duration_ms, "alert resolved")
            }
        }
        if let Some(w) = &self.webhook {
            w.send(event);
        }
    }

    fn raise(
        &mut self,
        key: String,
        severity: Severity,
        h: &ServiceHandle,
        per_service: bool,
        message: String,
    ) {
        let event = self.alerts.raise(
            Raise {
                key,
                severity,
                service: per_service.then(|| h.name()),
                group: h.spec.group(),
                message,
            },
            now_ms(),
        );
        self.publish(event);
    }

    fn resolve(&mut self, key: &str) {
        let event = self.alerts.resolve(key, now_ms());
        self.publish(event);
    }

    /// Derives a service's status from its lifecycle state and samples.
    fn derive(h: &ServiceHandle, t: &Tracked) -> HealthStatus {
        match h.state() {
            ServiceState::Disabled | ServiceState::Stopped => HealthStatus::Disabled,
            ServiceState::Failed => HealthStatus::Failed,
            // A failed service being tried again is failed until it serves.
            ServiceState::Starting if t.status == HealthStatus::Failed => HealthStatus::Failed,
            // A first start, or one an operator asked for after a stop, is
            // not a failure: nothing is known yet.
            ServiceState::Starting
                if matches!(t.status, HealthStatus::Unknown | HealthStatus::Disabled) =>
            {
                HealthStatus::Unknown
            }
            ServiceState::Starting | ServiceState::Restarting => HealthStatus::Unhealthy,
            ServiceState::Ready => {
                let (recent_p50_ms, recent_samples) = t.history.recent_p50_ms();
                if t.history.consecutive_failures() >= h.spec.health.unhealthy_after.max(1) {
                    HealthStatus::Unhealthy
                } else if recent_samples >= history::MIN_RECENT_FOR_SLOW
                    && recent_p50_ms.is_some_and(|p| p > h.spec.health.degraded_latency_ms as f64)
                {
                    HealthStatus::Degraded
                } else {
                    HealthStatus::Healthy
                }
            }
        }
    }

    fn evaluate(&mut self, name: &str) {
        let Some(h) = self.directory.get(name) else {
            return;
        };
        // A service added by a reload is tracked from its first notice.
        self.services
            .entry(name.to_owned())
            .or_insert_with(|| Tracked::new(&h));
        self.track_restarts(&h);
        let Some(t) = self.services.get(name) else {
            return;
        };
        let old = t.status;
        let new = Self::derive(&h, t);
        if old != new {
            // The whole summary (a sort of the ring) only for a transition.
            let summary = t.history.summary();
            if let Some(t) = self.services.get_mut(name) {
                t.status = new;
                t.since_ms = now_ms();
            }
            h.set_health(new);
            tracing::info!(service = %name, from = ?old, to = ?new, "health status changed");
            self.on_transition(&h, new, &summary);
            self.evaluate_group(h.spec.group());
        }
    }

    fn on_transition(&mut self, h: &ServiceHandle, new: HealthStatus, s: &Summary) {
        let name = h.name();
        let (degraded, unhealthy, failed) = (
            format!("degraded:{name}"),
            format!("unhealthy:{name}"),
            format!("failed:{name}"),
        );
        if new != HealthStatus::Degraded {
            self.resolve(&degraded);
        }
        if new != HealthStatus::Unhealthy {
            self.resolve(&unhealthy);
        }
        if new != HealthStatus::Failed {
            self.resolve(&failed);
        }
        match new {
            HealthStatus::Degraded => self.raise(
                degraded,
                Severity::Warning,
                h,
                true,
                format!(
                    "{name} is slow: recent median latency {:.0} ms over the {} ms threshold",
                    s.recent_p50_ms.unwrap_or_default(),
                    h.spec.health.degraded_latency_ms
                ),
            ),
            HealthStatus::Unhealthy => {
                let why = match h.state() {
                    ServiceState::Ready => format!("{} failures in a row", s.consecutive_failures),
                    _ => h.snapshot().last_exit.unwrap_or_else(|| "down".into()),
                };
                self.raise(
                    unhealthy,
                    Severity::Error,
                    h,
                    true,
                    format!("{name} is unhealthy: {why}"),
                );
            }
            HealthStatus::Failed => self.raise(
                failed,
                Severity::Critical,
                h,
                true,
                if h.spec.restart.give_up {
                    format!("{name} failed: restarted too often; not retried (restart.give_up)")
                } else {
                    format!(
                        "{name} failed: restarted too often; retried every {} ms until it answers",
                        h.spec.restart.failed_retry_ms
                    )
                },
            ),
            // An operator's choice, worth a note; a shutdown is not.
            HealthStatus::Disabled if h.state() == ServiceState::Disabled => {
                let event = self.alerts.raise(
                    Raise {
                        key: format!("disabled:{name}"),
                        severity: Severity::Info,
                        service: Some(name),
                        group: h.spec.group(),
                        message: format!("{name} is disabled"),
                    },
                    now_ms(),
                );
                self.publish(event);
            }
            _ => {}
        }
        if new != HealthStatus::Disabled {
            self.resolve(&format!("disabled:{name}"));
        }
    }

    /// The last replica of a logical service going down is critical:
    /// callers of its tools now get errors.
    fn evaluate_group(&mut self, group: &str) {
        let replicas: Vec<Arc<ServiceHandle>> = self
            .directory
            .all()
            .iter()
            .filter(|h| h.spec.group() == group && h.state() != ServiceState::Stopped)
            .cloned()
            .collect();
        let Some(first) = replicas.first().cloned() else {
            return;
        };
        let statuses: Vec<HealthStatus> = replicas.iter().map(|h| h.health()).collect();
        let any_serving = statuses.iter().any(|s| s.serving());
        let all_known = statuses.iter().all(|s| *s != HealthStatus::Unknown);
        let key = format!("group_down:{group}");
        if !any_serving && all_known {
            let message = format!(
                "no replica of {group} can serve ({}): its tools are unavailable",
                replicas
                    .iter()
                    .map(|h| format!("{} {:?}", h.name(), h.health()).to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.raise(key, Severity::Critical, &first, false, message);
        } else if any_serving {
            self.resolve(&key);
        }
    }

    /// Notices restarts and raises (or resolves) a restart-storm warning.
    fn track_restarts(&mut self, h: &ServiceHandle) {
        let window = Duration::from_secs(self.config.restart_storm_window_secs);
        let storm = self.config.restart_storm.max(1) as usize;
        let Some(t) = self.services.get_mut(h.name()) else {
            return;
        };
        let restarts = h.restarts();
        for _ in t.restarts_seen..restarts {
            t.restart_times.push(Instant::now());
        }
        t.restarts_seen = restarts;
        t.restart_times.retain(|at| at.elapsed() <= window);
        let count = t.restart_times.len();
        let key = format!("restart_storm:{}", h.name());
        if count >= storm {
            let message = format!(
                "{} restarted {count} times in the last {} s",
                h.name(),
                window.as_secs()
            );
            self.raise(key, Severity::Warning, h, true, message);
        } else if count == 0 {
            self.resolve(&key);
        }
    }

    fn health_of(&self, h: &ServiceHandle) -> Option<ServiceHealth> {
        let t = self.services.get(h.name())?;
        Some(ServiceHealth {
            service: h.name().to_owned(),
            group: h.spec.group().to_owned(),
            status: t.status,
            state: h.state(),
            since_ms: t.since_ms,
            restarts: h.restarts(),
            degraded_latency_ms: h.spec.health.degraded_latency_ms,
            summary: t.history.summary(),
        })
    }
}

impl Actor for HealthMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.config.webhook_url.is_empty() {
            self.webhook = Some(Webhook::spawn(
                self.config.webhook_url.clone(),
                Duration::from_millis(self.config.webhook_timeout_ms.max(100)),
            ));
        }
        ctx.run_interval(TICK, |act, _| {
            let names: Vec<String> = act.services.keys().cloned().collect();
            for name in names {
                act.evaluate(&name);
            }
        });
    }
}

impl Handler<ReportSample> for HealthMonitor {
    type Result = ();

    fn handle(&mut self, msg: ReportSample, _: &mut Context<Self>) {
        if let Some(t) = self.services.get_mut(&msg.service) {
            t.history.push(msg.sample);
        }
        self.evaluate(&msg.service);
    }
}

/// A service left the configuration: its history goes, its alerts close.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Forget {
    pub service: String,
    pub group: String,
}

impl Handler<Forget> for HealthMonitor {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        self.services.remove(&msg.service);
        let suffix = format!(":{}", msg.service);
        let keys: Vec<String> = self
            .alerts
            .active(now_ms())
            .into_iter()
            .map(|a| a.key)
            .filter(|k| k.ends_with(&suffix))
            .collect();
        for key in keys {
            self.resolve(&key);
        }
        self.evaluate_group(&msg.group);
    }
}

/// The outcome of a configuration reload, for the alert book: a refused
/// file raises an error alert that stays until a reload succeeds; an
/// applied one is recorded as an informational alert, closed at once.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum ConfigNotice {
    Applied(String),
    Refused(String),
}

impl Handler<ConfigNotice> for HealthMonitor {
    type Result = ();

    fn handle(&mut self, msg: ConfigNotice, _: &mut Context<Self>) {
        const REFUSED: &str = "config_refused";
        let now = now_ms();
        let (key, severity, message) = match msg {
            ConfigNotice::Refused(m) => (REFUSED.to_owned(), Severity::Error, m),
            ConfigNotice::Applied(m) => {
                self.resolve(REFUSED);
                (format!("config_reloaded:{now}"), Severity::Info, m)
            }
        };
        let event = self.alerts.raise(
            Raise {
                key: key.clone(),
                severity,
                service: None,
                group: "config",
                message,
            },
            now,
        );
        self.publish(event);
        if severity == Severity::Info {
            self.resolve(&key);
        }
    }
}

impl Handler<Evaluate> for HealthMonitor {
    type Result = ();

    fn handle(&mut self, msg: Evaluate, _: &mut Context<Self>) {
        self.evaluate(&msg.service);
    }
}

impl Handler<GetHealth> for HealthMonitor {
    type Result = MessageResult<GetHealth>;

    fn handle(&mut self, _: GetHealth, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.directory
                .all()
                .iter()
                .filter_map(|h| self.health_of(h))
                .collect(),
        )
    }
}

impl Handler<GetHistory> for HealthMonitor {
    type Result = MessageResult<GetHistory>;

    fn handle(&mut self, msg: GetHistory, _: &mut Context<Self>) -> Self::Result {
        let h = self.directory.get(&msg.service);
        MessageResult(h.and_then(|h| {
            let health = self.health_of(&h)?;
            let samples = self
                .services
                .get(h.name())?
                .history
                .samples()
                .cloned()
                .collect();
            Some((health, samples))
        }))
    }
}

impl Handler<GetAlerts> for HealthMonitor {
    type Result = MessageResult<GetAlerts>;

    fn handle(&mut self, msg: GetAlerts, _: &mut Context<Self>) -> Self::Result {
        let now = now_ms();
        MessageResult(if msg.active_only {
            self.alerts.active(now)
        } else {
            self.alerts.all(now)
        })
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A sample stamped now.
pub fn sample(
    ok: bool,
    latency: Option<Duration>,
    source: Source,
    error: Option<String>,
) -> Sample {
    Sample {
        at_ms: now_ms(),
        ok,
        latency_ms: latency.map(|d| d.as_secs_f64() * 1000.0),
        source,
        error,
    }
}
