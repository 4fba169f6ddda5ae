//! The shared, always-readable face of one service.
//!
//! A [`ServiceHandle`] outlives every restart of its service actor: the
//! supervisor creates it once from the spec, swaps the live incarnation's
//! parts in and out (its actor's address, its lane for calls — kept here
//! without their types, which the `service` module owns; see
//! `service::Incarnation`), and the actor and its lane write their state
//! here. The router and the HTTP layer read it on every request without
//! sending a message.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use tokio::sync::Notify;

use super::breaker::{Breaker, BreakerState};
use super::state::{HealthStatus, ServiceState};
use crate::process::ProcessSlot;
use crate::spec::ServiceSpec;

/// A part of the live incarnation that the read model keeps without
/// knowing its type, tagged with the incarnation it belongs to.
pub struct Part {
    generation: u64,
    value: Arc<dyn std::any::Any + Send + Sync>,
}

impl Part {
    /// `value`, of incarnation `generation`.
    pub fn new<T: std::any::Any + Send + Sync>(generation: u64, value: Arc<T>) -> Self {
        Self { generation, value }
    }

    /// The incarnation it belongs to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The value, if it is a `T`.
    pub fn get<T: std::any::Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.value.clone().downcast::<T>().ok()
    }
}

/// Shared state of one service.
pub struct ServiceHandle {
    /// The service's spec.
    pub spec: Arc<ServiceSpec>,
    state: AtomicU8,
    /// The current incarnation's actor address.
    actor: ArcSwapOption<Part>,
    /// The current incarnation's lane, while it is connected.
    lane: ArcSwapOption<Part>,
    generation: AtomicU64,
    restarts: AtomicU32,
    in_flight: AtomicUsize,
    queued: AtomicUsize,
    consecutive_failures: AtomicU32,
    calls_ok: AtomicU64,
    calls_failed: AtomicU64,
    last_latency_us: AtomicU64,
    latency_ewma_us: AtomicU64,
    pid: AtomicU32,
    health: AtomicU8,
    unavailable_since: Mutex<Option<Instant>>,
    /// Until when the upstream asked (429 + Retry-After) to be left alone.
    throttled_until: Mutex<Option<Instant>>,
    breaker: Mutex<Breaker>,
    detail: Mutex<Detail>,
    /// Fires whenever the service becomes ready (for callers waiting on a restart).
    ready: Arc<Notify>,
    /// The service's launched process group, if it launches one.
    process: Arc<ProcessSlot>,
    /// Stopped answering (a probe failed, a stdio child fell silent, or its
    /// calls kept losing hedge races): routed to only as a last resort.
    suspect: AtomicBool,
    suspect_reason: Mutex<Option<String>>,
    suspect_notify: Notify,
    /// Hedge races lost in a row.
    hedge_losses: AtomicU32,
    /// Until when the upstream is to be treated as unreachable (an outage
    /// drill): connection attempts fail at once.
    unreachable_until: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Detail {
    protocol: Option<String>,
    server: Option<String>,
    endpoint: Option<String>,
    last_error: Option<String>,
    last_exit: Option<String>,
    up_since: Option<(Instant, u64)>,
}

impl std::fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("name", &self.spec.name)
            .field("state", &self.state())
            .finish()
    }
}

impl ServiceHandle {
    /// A handle for a service that has not started yet. `ready` is shared by
    /// all services, so a caller can wait for "any replica came up".
    pub fn new(spec: Arc<ServiceSpec>, ready: Arc<Notify>) -> Self {
        let breaker = Breaker::new(spec.breaker.clone());
        let state = if spec.enabled {
            ServiceState::Starting
        } else {
            ServiceState::Disabled
        };
        Self {
            spec,
            state: AtomicU8::new(state as u8),
            actor: ArcSwapOption::empty(),
            lane: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            restarts: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            calls_ok: AtomicU64::new(0),
            calls_failed: AtomicU64::new(0),
            last_latency_us: AtomicU64::new(0),
            latency_ewma_us: AtomicU64::new(0),
            pid: AtomicU32::new(0),
            health: AtomicU8::new(HealthStatus::Unknown as u8),
            breaker: Mutex::new(breaker),
            unavailable_since: Mutex::new(None),
            throttled_until: Mutex::new(None),
            detail: Mutex::new(Detail::default()),
            ready,
            process: Arc::default(),
            suspect: AtomicBool::new(false),
            suspect_reason: Mutex::new(None),
            suspect_notify: Notify::new(),
            hedge_losses: AtomicU32::new(0),
            unreachable_until: Mutex::new(None),
        }
    }

    /// Service name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Current state.
    pub fn state(&self) -> ServiceState {
        ServiceState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// The live incarnation's actor address, untyped (see
    /// `service::Incarnation`).
    pub fn actor_part(&self) -> Option<Arc<Part>> {
        self.actor.load_full()
    }

    /// The live incarnation's lane, untyped, while it is connected.
    pub fn lane_part(&self) -> Option<Arc<Part>> {
        self.lane.load_full()
    }

    /// Publishes the connected incarnation's lane.
    pub fn set_lane_part(&self, part: Part) {
        self.lane.store(Some(Arc::new(part)));
    }

    /// Takes the lane of incarnation `generation` out, if it is the
    /// current one.
    pub fn take_lane_part(&self, generation: u64) -> Option<Arc<Part>> {
        let current = self.lane.load_full()?;
        if current.generation() != generation {
            return None;
        }
        let previous = self.lane.compare_and_swap(&current, None);
        arc_swap::Guard::into_inner(previous).filter(|p| Arc::ptr_eq(p, &current))
    }

    /// Which incarnation of the actor is current (increases on restart).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Calls sent upstream and not yet answered.
    /// Holds calls back from the upstream until `until` (it answered 429
    /// with a Retry-After); a later deadline wins.
    pub fn throttle(&self, until: Instant) {
        let mut t = self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if t.is_none_or(|old| old < until) {
            *t = Some(until);
        }
    }

    /// How much longer the upstream asked to be left alone, if at all.
    pub fn throttled_for(&self) -> Option<Duration> {
        let t = *self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        t.and_then(|until| until.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Failed calls or probes in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Smoothed call latency in microseconds (0 before the first call).
    pub fn latency_ewma_us(&self) -> u64 {
        self.latency_ewma_us.load(Ordering::Relaxed)
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The circuit breaker's position.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker().state(Instant::now())
    }

    /// Whether the breaker would let a call through now.
    pub fn breaker_admits(&self) -> bool {
        self.breaker().admits(Instant::now())
    }

    /// Lets a call through the breaker (taking the half-open trial).
    pub fn breaker_acquire(&self) -> bool {
        self.breaker().acquire(Instant::now())
    }

    /// Gives back an admission that led to no outcome.
    pub fn breaker_release(&self) {
        self.breaker().release();
    }

    pub(crate) fn breaker_record(&self, ok: bool) {
        let mut b = self.breaker();
        let before = b.opened();
        b.record(ok, Instant::now());
        if b.opened() > before {
            tracing::warn!(service = %self.spec.name, "circuit breaker opened");
        }
    }

    /// Health status, as the health monitor last derived it.
    pub fn health(&self) -> HealthStatus {
        HealthStatus::from_u8(self.health.load(Ordering::Acquire))
    }

    pub(crate) fn set_health(&self, status: HealthStatus) {
        self.health.store(status as u8, Ordering::Release);
        let mut since = self
            .unavailable_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match status {
            HealthStatus::Unhealthy | HealthStatus::Failed | HealthStatus::Disabled => {
                since.get_or_insert_with(Instant::now);
            }
            _ => *since = None,
        }
    }

    /// Whether the service's tools belong in `tools/list`: it is serving,
    /// or has been unavailable for less than the grace period.
    pub fn listable(&self) -> bool {
        let since = *self
            .unavailable_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        since.is_none_or(|t| t.elapsed() < Duration::from_millis(self.spec.health.tools_grace_ms))
    }

    /// Whether the service is suspected of hanging.
    pub fn is_suspect(&self) -> bool {
        self.suspect.load(Ordering::Acquire)
    }

    /// Resolves once the service is marked suspect (check
    /// [`Self::is_suspect`] after creating the future, before awaiting it).
    pub fn suspected(&self) -> tokio::sync::futures::Notified<'_> {
        self.suspect_notify.notified()
    }

    /// Marks the service suspect; true if it was not already.
    pub(crate) fn mark_suspect(&self, reason: &str) -> bool {
        *self
            .suspect_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reason.to_owned());
        let newly = !self.suspect.swap(true, Ordering::AcqRel);
        if newly {
            self.suspect_notify.notify_waiters();
        }
        newly
    }

    /// Clears a suspicion (the service answered); true if there was one.
    pub(crate) fn clear_suspect(&self) -> bool {
        self.hedge_losses.store(0, Ordering::Relaxed);
        if !self.suspect.swap(false, Ordering::AcqRel) {
            return false;
        }
        *self
            .suspect_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        true
    }

    /// Counts a hedge race this service lost; the count so far.
    pub(crate) fn hedge_lost(&self) -> u32 {
        self.hedge_losses.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Its call won a hedge race (or was never raced): it answers.
    pub(crate) fn hedge_won(&self) {
        self.hedge_losses.store(0, Ordering::Relaxed);
    }

    /// Treats the upstream as unreachable until `until` (`None`: reachable).
    pub fn set_unreachable(&self, until: Option<Instant>) {
        *self
            .unreachable_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = until;
    }

    /// How much longer the upstream is unreachable, if it is.
    pub fn unreachable_for(&self) -> Option<Duration> {
        let until = *self
            .unreachable_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until
            .and_then(|u| u.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    /// The process group this service launches (one instance at a time).
    pub fn process(&self) -> &Arc<ProcessSlot> {
        &self.process
    }

    /// Resolves the next time any service becomes ready.
    pub fn ready_notify(&self) -> &Arc<Notify> {
        &self.ready
    }

    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- written by the supervisor ----

    /// A new incarnation's actor (its address, untyped) is starting.
    pub fn attach(&self, actor: Part) {
        self.generation.store(actor.generation(), Ordering::Release);
        self.actor.store(Some(Arc::new(actor)));
        self.set_state(ServiceState::Starting);
    }

    pub(crate) fn detach(&self, state: ServiceState, exit: &str) {
        self.actor.store(None);
        self.clear_suspect();
        self.set_state(state);
        self.pid.store(0, Ordering::Relaxed);
        self.in_flight.store(0, Ordering::Relaxed);
        self.queued.store(0, Ordering::Relaxed);
        let mut d = self.detail();
        d.last_exit = Some(exit.to_owned());
        d.up_since = None;
    }

    /// How long the current incarnation has been ready, if it is.
    pub fn up_for(&self) -> Option<Duration> {
        self.detail().up_since.map(|(at, _)| at.elapsed())
    }

    pub(crate) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_state(&self, state: ServiceState) {
        self.state.store(state as u8, Ordering::Release);
    }

    // ---- written by the service actor ----

    pub(crate) fn mark_ready(
        &self,
        protocol: &str,
        server: Option<String>,
        pid: Option<u32>,
        endpoint: Option<String>,
    ) {
        {
            let mut d = self.detail();
            d.protocol = Some(protocol.to_owned());
            d.server = server;
            d.endpoint = endpoint;
            d.up_since = Some((Instant::now(), unix_ms()));
        }
        self.pid.store(pid.unwrap_or(0), Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        // The failures that opened the breaker were the old instance's.
        self.breaker().reset();
        self.set_state(ServiceState::Ready);
        self.ready.notify_waiters();
    }

    pub(crate) fn set_load(&self, in_flight: usize, queued: usize) {
        self.in_flight.store(in_flight, Ordering::Relaxed);
        self.queued.store(queued, Ordering::Relaxed);
    }

    pub(crate) fn record_success(&self, latency: std::time::Duration, is_call: bool) {
        let us = latency.as_micros().min(u64::MAX as u128) as u64;
        if is_call {
            self.calls_ok.fetch_add(1, Ordering::Relaxed);
            self.last_latency_us.store(us, Ordering::Relaxed);
            let old = self.latency_ewma_us.load(Ordering::Relaxed);
            let new = if old == 0 { us } else { (old * 4 + us) / 5 };
            self.latency_ewma_us.store(new, Ordering::Relaxed);
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    pub(crate) fn record_failure(&self, error: &str, is_call: bool) -> u32 {
        if is_call {
            self.calls_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.detail().last_error = Some(error.to_owned());
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A serialisable picture of the service.
    pub fn snapshot(&self) -> ServiceSnapshot {
        let d = self.detail();
        ServiceSnapshot {
            name: self.spec.name.clone(),
            group: self.spec.group().to_owned(),
            transport: self.spec.transport,
            priority: self.spec.priority,
            state: self.state(),
            health: self.health(),
            breaker: self.breaker_state(),
            breaker_opened: self.breaker().opened(),
            throttled_for_ms: self.throttled_for().map(|d| d.as_millis() as u64),
            suspect: self.is_suspect(),
            suspect_reason: self
                .suspect_reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            protocol: d.protocol.clone(),
            server: d.server.clone(),
            endpoint: d.endpoint.clone(),
            pid: match self.pid.load(Ordering::Relaxed) {
                0 => None,
                p => Some(p),
            },
            restarts: self.restarts(),
            generation: self.generation(),
            in_flight: self.in_flight(),
            queued: self.queued.load(Ordering::Relaxed),
            calls_ok: self.calls_ok.load(Ordering::Relaxed),
            calls_failed: self.calls_failed.load(Ordering::Relaxed),
            consecutive_failures: self.consecutive_failures(),
            last_latency_ms: self.last_latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
            latency_ewma_ms: self.latency_ewma_us() as f64 / 1000.0,
            up_since_ms: d.up_since.map(|(_, ms)| ms),
            uptime_secs: d.up_since.map(|(at, _)| at.elapsed().as_secs()),
            last_error: d.last_error.clone(),
            last_exit: d.last_exit.clone(),
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What `/api/services` shows for one service.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSnapshot {
    pub name: String,
    pub group: String,
    pub transport: crate::spec::TransportKind,
    pub priority: crate::manifest::Priority,
    pub state: ServiceState,
    pub health: HealthStatus,
    pub breaker: BreakerState,
    pub breaker_opened: u64,
    /// Milliseconds left of an upstream's Retry-After, while calls are held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled_for_ms: Option<u64>,
    /// It stopped answering: new calls go elsewhere, calls in flight on it
    /// are hedged, and its queue moved.
    pub suspect: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspect_reason: Option<String>,
    pub protocol: Option<String>,
    pub server: Option<String>,
    /// The URL actually connected to (with `{port}` filled in).
    pub endpoint: Option<String>,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub generation: u64,
    pub in_flight: usize,
    pub queued: usize,
    pub calls_ok: u64,
    pub calls_failed: u64,
    pub consecutive_failures: u32,
    pub last_latency_ms: f64,
    pub latency_ewma_ms: f64,
    pub up_since_ms: Option<u64>,
    pub uptime_secs: Option<u64>,
    pub last_error: Option<String>,
    pub last_exit: Option<String>,
}
