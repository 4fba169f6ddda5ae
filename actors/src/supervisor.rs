//! The supervisor: starts every service actor and restarts the ones that die.
//!
//! Restarts follow the OTP recipe: each restart waits an exponentially
//! growing backoff, and more than `max_restarts` inside `window_secs` marks
//! the service `failed` — a crash loop is a state to report, not to repeat
//! at full speed. A failed service is still tried every `failed_retry_ms`
//! (a remote server's redeploy must not become a permanent outage) unless
//! `give_up` says otherwise, and comes back by itself once it answers. An
//! incarnation that stayed up `stable_after_secs` resets the count. A
//! restart always builds a fresh actor from the service's spec.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::health::{Evaluate, Forget, HealthMonitor};
use crate::manifest::Manifest;
use crate::metrics::Metrics;
use crate::model::Directory;
use crate::model::{ServiceHandle, ServiceState};
use crate::registry::Registry;
use crate::service::{Incarnation, InjectPanic, ServiceActor, ServiceDown, Shutdown};
use crate::spec::ServiceSpec;

/// Starts, watches and restarts the service actors.
pub struct Supervisor {
    directory: Arc<Directory>,
    registry: Arc<Registry>,
    monitor: Addr<HealthMonitor>,
    metrics: Arc<Metrics>,
    restarts: HashMap<String, VecDeque<Instant>>,
    /// Services switched off (by config or an operator).
    disabled: HashSet<String>,
    /// Failed services being retried at the slow cadence.
    recovering: HashSet<String>,
    /// Services whose next restart waits until then (a failover drill).
    holds: HashMap<String, Instant>,
    /// Services a reload removed or changed, stopping: by name, the
    /// incarnation being stopped and what replaces it.
    leaving: HashMap<String, Leaving>,
    /// Service names in the order of the last configuration.
    order: Vec<String>,
    stopping: bool,
    /// Where service actors run, by turns (none: beside the supervisor).
    homes: Vec<ArbiterHandle>,
}

/// A service on its way out of the configuration.
struct Leaving {
    generation: u64,
    replacement: Option<(ServiceSpec, Option<Manifest>)>,
}

impl Supervisor {
    /// A supervisor for every service in the directory.
    pub fn new(
        directory: Arc<Directory>,
        registry: Arc<Registry>,
        monitor: Addr<HealthMonitor>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            directory,
            registry,
            monitor,
            metrics,
            restarts: HashMap::new(),
            disabled: HashSet::new(),
            recovering: HashSet::new(),
            holds: HashMap::new(),
            leaving: HashMap::new(),
            order: Vec::new(),
            stopping: false,
            homes: Vec::new(),
        }
    }

    /// Runs the service actors on these arbiters, by turns in the order of
    /// the configuration (see [`crate::homes`]).
    pub fn with_homes(mut self, homes: Vec<ArbiterHandle>) -> Self {
        self.homes = homes;
        self
    }

    /// The arbiter a service's actor runs on, if it is not the supervisor's.
    fn home_of(&self, service: &str) -> Option<&ArbiterHandle> {
        if self.homes.is_empty() {
            return None;
        }
        let index = self
            .order
            .iter()
            .position(|n| n == service)
            .unwrap_or(self.order.len());
        self.homes.get(index % self.homes.len())
    }

    fn start_service(&mut self, handle: &Arc<ServiceHandle>, ctx: &mut Context<Self>) {
        if self.stopping || self.leaving.contains_key(handle.name()) {
            return;
        }
        // A restart scheduled for an incarnation a reload has replaced.
        if !self
            .directory
            .get(handle.name())
            .is_some_and(|current| Arc::ptr_eq(&current, handle))
        {
            return;
        }
        let generation = handle.generation() + 1;
        let actor = ServiceActor::new(
            handle.clone(),
            self.registry.clone(),
            self.directory.clone(),
            ctx.address().recipient(),
            self.monitor.clone().recipient(),
            self.metrics.clone(),
            generation,
        );
        let addr = match self.home_of(handle.name()) {
            Some(home) => ServiceActor::start_in_arbiter(home, move |_| actor),
            None => actor.start(),
        };
        handle.attach(crate::model::Part::new(generation, Arc::new(addr)));
        self.evaluate(handle.name());
        tracing::info!(service = %handle.name(), generation, "service started");
    }
}

impl Supervisor {
    /// Marks a service failed; unless `restart.give_up` (for services
    /// failed by their restart intensity), it is tried again every
    /// `restart.failed_retry_ms` and comes back once it answers.
    fn fail(
        &mut self,
        handle: Arc<ServiceHandle>,
        reason: &str,
        by_intensity: bool,
        ctx: &mut Context<Self>,
    ) {
        handle.detach(ServiceState::Failed, reason);
        self.evaluate(handle.name());
        let policy = &handle.spec.restart;
        if by_intensity && policy.give_up {
            return;
        }
        let every = Duration::from_millis(policy.failed_retry_ms.max(100));
        self.recovering.insert(handle.name().to_owned());
        ctx.run_later(every, move |act, ctx| {
            // Still failed (not enabled, disabled or stopped meanwhile).
            if handle.state() == ServiceState::Failed && !act.disabled.contains(handle.name()) {
                handle.count_restart();
                act.start_service(&handle, ctx);
            }
        });
    }

    fn evaluate(&self, service: &str) {
        self.monitor.do_send(Evaluate {
            service: service.to_owned(),
        });
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let directory = self.directory.clone();
        self.order = directory
            .all()
            .iter()
            .map(|h| h.name().to_owned())
            .collect();
        for handle in directory.all() {
            if handle.spec.enabled {
                self.start_service(&handle, ctx);
            } else {
                self.disabled.insert(handle.name().to_owned());
            }
        }
    }
}

impl Handler<ServiceDown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ServiceDown, ctx: &mut Context<Self>) {
        let Some(handle) = self.directory.get(&msg.service) else {
            return;
        };
        if msg.generation != handle.generation() {
            return; // a stale notice from an incarnation already replaced
        }
        if self
            .leaving
            .get(&msg.service)
            .is_some_and(|l| l.generation == msg.generation)
            && let Some(leaving) = self.leaving.remove(&msg.service)
        {
            handle.detach(ServiceState::Stopped, &msg.reason);
            self.finish_leaving(&handle, leaving.replacement, ctx);
            return;
        }
        // A service an operator has just disabled stays down even if it
        // crashed before the stop reached it.
        if msg.requested || self.stopping || self.disabled.contains(&msg.service) {
            let state = if self.disabled.contains(&msg.service) {
                ServiceState::Disabled
            } else {
                ServiceState::Stopped
            };
            handle.detach(state, &msg.reason);
            self.evaluate(&msg.service);
            return;
        }
        let policy = &handle.spec.restart;
        if let Some(until) = self.holds.remove(&msg.service)
            && until > Instant::now()
        {
            // Held down on purpose: back when the hold ends, not counted.
            handle.count_restart();
            handle.detach(ServiceState::Restarting, &msg.reason);
            self.evaluate(&msg.service);
            tracing::warn!(service = %msg.service, reason = %msg.reason, hold_ms = until.duration_since(Instant::now()).as_millis() as u64, "service held down until the drill ends");
            ctx.run_later(until.duration_since(Instant::now()), move |act, ctx| {
                if handle.state() == ServiceState::Restarting {
                    act.start_service(&handle, ctx);
                }
            });
            return;
        }
        if msg.poison {
            // The service did nothing wrong: a quarantined call crashed it.
            // Restart it at once, without counting towards the intensity.
            handle.count_restart();
            handle.detach(ServiceState::Restarting, &msg.reason);
            self.evaluate(&msg.service);
            tracing::warn!(service = %msg.service, reason = %msg.reason, "restarting service after a poison call");
            let backoff = Duration::from_millis(policy.backoff_initial_ms);
            ctx.run_later(backoff, move |act, ctx| {
                if handle.state() == ServiceState::Restarting {
                    act.start_service(&handle, ctx);
                }
            });
            return;
        }
        if msg.refused {
            // Restarting would meet the same refusal: failed, and tried
            // again at the slow cadence in case what caused it went away.
            tracing::error!(service = %msg.service, reason = %msg.reason, "service refused; marked failed");
            self.fail(handle, &msg.reason, false, ctx);
            return;
        }
        let window = Duration::from_secs(policy.window_secs);
        let history = self.restarts.entry(msg.service.clone()).or_default();
        let now = Instant::now();
        // An incarnation that served for a while was no crash loop.
        if handle
            .up_for()
            .is_some_and(|up| up >= Duration::from_secs(policy.stable_after_secs))
        {
            history.clear();
        }
        while history
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            history.pop_front();
        }
        let count = history.len();
        // A failed service's retry that never got ready stays on the slow
        // cadence; one that got ready has recovered.
        let was_failed = self.recovering.contains(&msg.service);
        let still_failing = was_failed && handle.up_for().is_none();
        if still_failing || count >= policy.max_restarts as usize {
            if was_failed {
                tracing::info!(service = %msg.service, reason = %msg.reason, "failed service still down");
            } else {
                tracing::error!(
                    service = %msg.service,
                    reason = %msg.reason,
                    restarts = count,
                    window_secs = policy.window_secs,
                    give_up = policy.give_up,
                    "restart intensity exceeded; service marked failed"
                );
            }
            self.fail(handle, &msg.reason, true, ctx);
            return;
        }
        self.recovering.remove(&msg.service);
        // ±20 % jitter keeps replicas that died together from restarting in lockstep.
        let backoff = policy
            .backoff(count as u32)
            .mul_f64(0.8 + fastrand::f64() * 0.4);
        self.restarts
            .entry(msg.service.clone())
            .or_default()
            .push_back(now);
        handle.count_restart();
        handle.detach(ServiceState::Restarting, &msg.reason);
        self.evaluate(&msg.service);
        tracing::warn!(
            service = %msg.service,
            reason = %msg.reason,
            panicked = msg.panicked,
            backoff_ms = backoff.as_millis() as u64,
            restarts = handle.restarts(),
            "restarting service"
        );
        ctx.run_later(backoff, move |act, ctx| {
            if handle.state() == ServiceState::Restarting {
                act.start_service(&handle, ctx);
            }
        });
    }
}

/// A new set of services, from a reloaded configuration. Services not in
/// it are stopped and forgotten; new ones are started; a service whose spec
/// changed in any field is stopped and started afresh from the new spec;
/// the others (and the calls and streams they serve) are left alone.
#[derive(Debug, Message)]
#[rtype(result = "ReloadOutcome")]
pub struct Reload {
    /// Every service of the new configuration, with its manifest.
    pub services: Vec<(ServiceSpec, Option<Manifest>)>,
}

/// What a reload did, by service name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadOutcome {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
}

impl ReloadOutcome {
    /// Whether the reload changed nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.restarted.is_empty()
    }
}

impl std::fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return write!(f, "no service changed ({} unchanged)", self.unchanged.len());
        }
        let parts: Vec<String> = [
            ("added", &self.added),
            ("removed", &self.removed),
            ("restarted", &self.restarted),
        ]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what} {}", names.join(", ")))
        .collect();
        write!(
            f,
            "{}; {} unchanged",
            parts.join("; "),
            self.unchanged.len()
        )
    }
}

/// Whether two specs describe the same service in every field.
fn same_spec(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl Supervisor {
    /// Adds a service to the set and starts it (unless disabled).
    fn add_service(
        &mut self,
        spec: ServiceSpec,
        manifest: Option<Manifest>,
        ctx: &mut Context<Self>,
    ) {
        let handle = self.directory.new_handle(spec);
        let (name, group) = (handle.name().to_owned(), handle.spec.group().to_owned());
        self.registry.add_service(&name, &group, manifest);
        self.directory.insert(handle.clone());
        self.directory
            .reorder(&self.order.iter().map(String::as_str).collect::<Vec<_>>());
        if handle.spec.enabled {
            self.start_service(&handle, ctx);
        } else {
            self.disabled.insert(name.clone());
            handle.set_state(ServiceState::Disabled);
            self.evaluate(&name);
        }
    }

    /// Takes a service out: stops its actor if it has one (the rest
    /// happens once it is down), else at once.
    fn retire(
        &mut self,
        handle: &Arc<ServiceHandle>,
        replacement: Option<(ServiceSpec, Option<Manifest>)>,
        ctx: &mut Context<Self>,
    ) {
        let name = handle.name().to_owned();
        self.restarts.remove(&name);
        self.recovering.remove(&name);
        self.holds.remove(&name);
        self.disabled.remove(&name);
        match handle.addr() {
            Some(addr) => {
                let reason = if replacement.is_some() {
                    "changed in the configuration"
                } else {
                    "removed from the configuration"
                };
                self.leaving.insert(
                    name,
                    Leaving {
                        generation: handle.generation(),
                        replacement,
                    },
                );
                addr.do_send(Shutdown {
                    reason: reason.into(),
                });
            }
            None => {
                handle.detach(ServiceState::Stopped, "removed from the configuration");
                self.finish_leaving(handle, replacement, ctx);
            }
        }
    }

    fn finish_leaving(
        &mut self,
        handle: &Arc<ServiceHandle>,
        replacement: Option<(ServiceSpec, Option<Manifest>)>,
        ctx: &mut Context<Self>,
    ) {
        let name = handle.name().to_owned();
        self.registry.remove_service(&name);
        self.directory.remove(&name);
        self.monitor.do_send(Forget {
            service: name.clone(),
            group: handle.spec.group().to_owned(),
        });
        tracing::info!(service = %name, replaced = replacement.is_some(), "service left the configuration");
        if let Some((spec, manifest)) = replacement {
            self.add_service(spec, manifest, ctx);
        }
    }
}

impl Handler<Reload> for Supervisor {
    type Result = MessageResult<Reload>;

    fn handle(&mut self, msg: Reload, ctx: &mut Context<Self>) -> Self::Result {
        let mut outcome = ReloadOutcome::default();
        if self.stopping {
            return MessageResult(outcome);
        }
        self.order = msg.services.iter().map(|(s, _)| s.name.clone()).collect();
        for handle in self.directory.all() {
            if !self.order.iter().any(|n| n == handle.name()) {
                outcome.removed.push(handle.name().to_owned());
                match self.leaving.get_mut(handle.name()) {
                    Some(leaving) => leaving.replacement = None,
                    None => self.retire(&handle, None, ctx),
                }
            }
        }
        for (spec, manifest) in msg.services {
            let name = spec.name.clone();
            if let Some(leaving) = self.leaving.get_mut(&name) {
                // Still stopping from an earlier reload: this spec replaces it.
                leaving.replacement = Some((spec, manifest));
                outcome.restarted.push(name);
                continue;
            }
            match self.directory.get(&name) {
                None => {
                    outcome.added.push(name);
                    self.add_service(spec, manifest, ctx);
                }
                Some(h) if same_spec(&h.spec, &spec) => outcome.unchanged.push(name),
                Some(h) => {
                    outcome.restarted.push(name);
                    self.retire(&h, Some((spec, manifest)), ctx);
                }
            }
        }
        self.directory
            .reorder(&self.order.iter().map(String::as_str).collect::<Vec<_>>());
        MessageResult(outcome)
    }
}

/// Stops every service (daemon shutdown). Resolves once each has been told.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopAll;

impl Handler<StopAll> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: StopAll, _: &mut Context<Self>) {
        self.stopping = true;
        for handle in self.directory.all() {
            if let Some(addr) = handle.addr() {
                addr.do_send(Shutdown {
                    reason: "daemon shutting down".into(),
                });
            }
        }
    }
}

/// Switches a service off (stopping its actor and its process) or on
/// (starting it afresh, even after the supervisor gave up on it).
#[derive(Debug, Message)]
#[rtype(result = "Result<ServiceState, String>")]
pub struct SetEnabled {
    /// The service.
    pub service: String,
    /// On or off.
    pub enabled: bool,
}

impl Handler<SetEnabled> for Supervisor {
    type Result = Result<ServiceState, String>;

    fn handle(&mut self, msg: SetEnabled, ctx: &mut Context<Self>) -> Self::Result {
        let handle = self
            .directory
            .get(&msg.service)
            .ok_or_else(|| format!("no service named `{}`", msg.service))?;
        if msg.enabled {
            self.disabled.remove(&msg.service);
            self.restarts.remove(&msg.service);
            self.recovering.remove(&msg.service);
            if matches!(
                handle.state(),
                ServiceState::Disabled | ServiceState::Failed | ServiceState::Stopped
            ) {
                tracing::info!(service = %msg.service, "service enabled");
                self.start_service(&handle, ctx);
            }
        } else if self.disabled.insert(msg.service.clone()) {
            tracing::info!(service = %msg.service, "service disabled");
            handle.set_state(ServiceState::Disabled);
            match handle.addr() {
                Some(addr) => addr.do_send(Shutdown {
                    reason: "disabled by an operator".into(),
                }),
                None => handle.detach(ServiceState::Disabled, "disabled by an operator"),
            }
            self.evaluate(&msg.service);
        }
        Ok(handle.state())
    }
}

/// Injects a fault into a running service (the restart drill).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct InjectFault {
    /// The service.
    pub service: String,
}

impl Handler<InjectFault> for Supervisor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: InjectFault, _: &mut Context<Self>) -> Self::Result {
        let handle = self
            .directory
            .get(&msg.service)
            .ok_or_else(|| format!("no service named `{}`", msg.service))?;
        let addr = handle
            .addr()
            .ok_or_else(|| format!("service `{}` is not running", msg.service))?;
        addr.do_send(InjectPanic);
        Ok(())
    }
}

/// Holds a service's next restart until `until` (a failover drill keeps
/// the preferred replica down for a while, then lets it come back).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct HoldRestart {
    /// The service.
    pub service: String,
    /// When it may start again.
    pub until: Instant,
}

impl Handler<HoldRestart> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: HoldRestart, _: &mut Context<Self>) {
        self.holds.insert(msg.service, msg.until);
    }
}

/// Forgets a service's recent restarts (after a restart-storm drill, so
/// the next real crash is not held against it).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ForgetRestarts {
    /// The service.
    pub service: String,
}

impl Handler<ForgetRestarts> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: ForgetRestarts, _: &mut Context<Self>) {
        self.restarts.remove(&msg.service);
        self.recovering.remove(&msg.service);
    }
}
