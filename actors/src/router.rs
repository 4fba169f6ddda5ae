//! The router: which service runs a call, and what happens when it fails.
//!
//! Choice: among the replicas offering the tool, healthy (ready, no recent
//! failures) before degraded (ready, failing) — then higher priority, then
//! fewer calls in flight, then lower latency. Services that are restarting,
//! failed or disabled are skipped; if every replica is restarting, the call
//! waits (bounded) for one to come back.
//!
//! Failover is immediate on a connection-level failure, and governed by one
//! safety rule: a call goes out again only if it provably never reached the
//! upstream, or the tool is read-only or idempotent. Otherwise the caller
//! gets an "outcome unknown" error rather than a possible double execution.
//!
//! The router decides and hands the caller's event sink to the chosen
//! service; progress flows from there straight to the caller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::dev::SendError;
use actix::prelude::*;
use rmcp::model::JsonObject;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::directory::Directory;
use crate::error::{CallError, Delivery, ErrorCategory};
use crate::health::HealthStatus;
use crate::metrics::Metrics;
use crate::registry::{Registry, ToolEntry};
use crate::retry::RetryConfig;
use crate::service::{CallJob, CallReply, CallTool, Caller, ServiceHandle, ServiceState, Ticket};
use crate::stream::{EventSink, StreamEvent};

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Most attempts one call may make across replicas.
    pub max_attempts: u32,
    /// How long a call may wait for a restarting replica to come back.
    pub wait_for_service: Duration,
    /// Retry strategies per error category.
    pub retry: Arc<RetryConfig>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            wait_for_service: Duration::from_secs(10),
            retry: Arc::default(),
        }
    }
}

/// Runs one tool call somewhere.
#[derive(Message)]
#[rtype(result = "Result<CallOutcome, CallError>")]
pub struct Execute {
    /// Tool name as clients know it.
    pub tool: String,
    /// Arguments (validated against the schema before anything is sent).
    pub arguments: Option<JsonObject>,
    /// Where progress and status events go.
    pub events: EventSink,
    /// What the caller brings besides the arguments.
    pub caller: Caller,
    /// Only this service may take the call (the continuation of an
    /// `input_required` round it started).
    pub service: Option<String>,
}

/// A completed call.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The upstream's answer (a result, which may itself be a tool error,
    /// or a request for the caller's input).
    pub result: CallReply,
    /// The service that produced it.
    pub service: String,
    /// Attempts it took (1 = no failover).
    pub attempts: u32,
    /// Wall time from routing to result.
    pub elapsed: Duration,
}

/// The routing actor.
pub struct Router {
    registry: Arc<Registry>,
    directory: Arc<Directory>,
    config: RouterConfig,
    metrics: Arc<Metrics>,
}

impl Router {
    /// A router over the given tools and services.
    pub fn new(
        registry: Arc<Registry>,
        directory: Arc<Directory>,
        config: RouterConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            registry,
            directory,
            config,
            metrics,
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;
}

impl Handler<Execute> for Router {
    type Result = ResponseFuture<Result<CallOutcome, CallError>>;

    fn handle(&mut self, msg: Execute, _: &mut Context<Self>) -> Self::Result {
        let table = self.registry.snapshot();
        let entry = table.get(&msg.tool).cloned();
        let directory = self.directory.clone();
        let config = self.config.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let entry = entry.ok_or_else(|| {
                CallError::new(
                    ErrorCategory::NotFound,
                    format!("no tool named `{}`", msg.tool),
                )
            })?;
            check_arguments(&entry, msg.arguments.as_ref())?;
            let started = Instant::now();
            let outcome = execute(
                &entry,
                msg.arguments,
                msg.events,
                Assignment {
                    caller: msg.caller,
                    service: msg.service,
                },
                &directory,
                &config,
                &metrics,
            )
            .await;
            let tool = entry.tool.name.as_ref();
            let seconds = started.elapsed().as_secs_f64();
            match &outcome {
                Ok(done) => metrics.call(&done.service, tool, Ok(done.result.is_error()), seconds),
                Err(e) => {
                    let service = e.services.last().map_or("none", String::as_str);
                    metrics.call(service, tool, Err(e.category), seconds);
                }
            }
            outcome
        })
    }
}

/// Validates arguments against the tool's input schema.
pub fn check_arguments(entry: &ToolEntry, arguments: Option<&JsonObject>) -> Result<(), CallError> {
    let value = Value::Object(arguments.cloned().unwrap_or_default());
    entry.validate(&value).map_err(|errors| {
        CallError::new(
            ErrorCategory::Validation,
            format!(
                "arguments do not match the input schema of `{}`: {}",
                entry.tool.name,
                errors.join("; ")
            ),
        )
    })
}

/// Health rank: lower is better; `None` means "do not route here now".
/// Healthy before degraded before unknown; an unhealthy service that is
/// still connected is the last resort.
fn rank(h: &ServiceHandle) -> Option<u8> {
    if h.state() != ServiceState::Ready {
        return None;
    }
    match h.health() {
        HealthStatus::Healthy => Some(0),
        HealthStatus::Degraded => Some(1),
        HealthStatus::Unknown => Some(2),
        HealthStatus::Unhealthy => Some(3),
        HealthStatus::Disabled | HealthStatus::Failed => None,
    }
}

/// What became of handing a call to a service actor.
enum Handoff {
    /// In its mailbox.
    Taken,
    /// Its mailbox is full: the service is overloaded, not dead.
    Full,
    /// It has no live actor.
    Gone,
}

/// The error, and whether the service is being replaced, for a call that
/// could not be handed to its service actor.
fn handoff_error(handoff: &Handoff, service: &str) -> (Result<CallReply, CallError>, bool) {
    match handoff {
        Handoff::Full => (
            Err(CallError::new(
                ErrorCategory::Overload,
                format!("service {service} has a full mailbox"),
            )),
            false,
        ),
        _ => (
            Err(CallError::new(
                ErrorCategory::ServiceUnavailable,
                format!("service {service} is not accepting calls"),
            )),
            true,
        ),
    }
}

/// A replica incarnation this call will not use again.
struct Exclusion {
    service: String,
    generation: u64,
    /// Its actor died, or its connection broke: a fresh incarnation is
    /// coming, so waiting for it makes sense.
    crashed: bool,
}

impl Exclusion {
    fn covers(&self, h: &ServiceHandle) -> bool {
        self.service == h.name() && self.generation == h.generation()
    }
}

/// Who a call is for and where it must go.
struct Assignment {
    caller: Caller,
    /// The one service allowed to take it, if any.
    service: Option<String>,
}

/// Candidates in routing order, skipping excluded incarnations (and, for
/// a pinned call, every other service).
fn candidates(
    entry: &ToolEntry,
    directory: &Directory,
    excluded: &[Exclusion],
    pinned: Option<&str>,
) -> Vec<Arc<ServiceHandle>> {
    best_first(
        entry
            .providers
            .iter()
            .filter(|name| pinned.is_none_or(|p| p == name.as_str()))
            .filter_map(|name| directory.get(name))
            .filter(|h| !excluded.iter().any(|x| x.covers(h))),
    )
}

/// The usable services among `services` (ready, breaker admitting), best
/// first: not throttled by a Retry-After, then healthy over degraded over
/// unknown, then priority, then the lowest in-flight count and latency.
pub(crate) fn best_first<'a>(
    services: impl Iterator<Item = &'a Arc<ServiceHandle>>,
) -> Vec<Arc<ServiceHandle>> {
    // Each key is read once: they are live figures other threads update.
    let mut c: Vec<(RouteKey, Arc<ServiceHandle>)> = services
        .filter(|h| h.breaker_admits())
        .filter_map(|h| {
            rank(h).map(|r| {
                let key = (
                    h.throttled_for().is_some(),
                    r,
                    std::cmp::Reverse(h.spec.priority),
                    h.in_flight(),
                    h.latency_ewma_us(),
                );
                (key, h.clone())
            })
        })
        .collect();
    c.sort_by_key(|(key, _)| *key);
    c.into_iter().map(|(_, h)| h).collect()
}

/// Routing order of one replica, smallest first: throttled, health rank,
/// priority (highest first), in-flight calls, latency.
type RouteKey = (
    bool,
    u8,
    std::cmp::Reverse<crate::manifest::Priority>,
    usize,
    u64,
);

/// Whether any provider may become usable soon: it is starting or
/// restarting, or its actor just died under this call and the supervisor
/// has yet to replace it.
fn any_recovering(entry: &ToolEntry, directory: &Directory, excluded: &[Exclusion]) -> bool {
    entry
        .providers
        .iter()
        .filter_map(|n| directory.get(n))
        .any(|h| match h.state() {
            ServiceState::Starting | ServiceState::Restarting => true,
            ServiceState::Ready => excluded.iter().any(|x| x.crashed && x.covers(h)),
            _ => false,
        })
}

async fn execute(
    entry: &ToolEntry,
    arguments: Option<JsonObject>,
    events: EventSink,
    assignment: Assignment,
    directory: &Directory,
    config: &RouterConfig,
    metrics: &Metrics,
) -> Result<CallOutcome, CallError> {
    let started = Instant::now();
    let safe = entry.safe_to_repeat();
    // The caller's deadline bounds everything: attempts, waits and retries.
    let call_timeout = entry
        .providers
        .iter()
        .filter_map(|n| directory.get(n))
        .map(|h| h.spec.limits.call_timeout())
        .max()
        .unwrap_or(Duration::from_secs(60))
        .min(config.retry.deadline());
    let call_deadline = started + call_timeout;
    let deadline =
        tokio::time::Instant::from_std((started + config.wait_for_service).min(call_deadline));
    let mut tried: Vec<String> = Vec::new();
    let mut excluded: Vec<Exclusion> = Vec::new();
    let mut attempts = 0u32;
    let mut last_error: Option<CallError> = None;
    loop {
        // Subscribe before looking, so a replica that becomes ready between
        // the look and the wait still wakes us.
        let ready = directory.ready().clone();
        let notified = ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        if events.is_closed() {
            // Nobody is waiting for the answer any more; do not start (or
            // repeat) a call that could still have effects.
            let e = CallError::new(ErrorCategory::Cancelled, "the caller went away");
            return Err(with_tried(e, &tried));
        }
        if Instant::now() >= call_deadline {
            return Err(with_tried(
                past_deadline(call_timeout, last_error, safe),
                &tried,
            ));
        }
        // The first candidate whose breaker lets the call through (a
        // half-open breaker admits one trial call at a time).
        let target = candidates(entry, directory, &excluded, assignment.service.as_deref())
            .into_iter()
            .find(|h| h.breaker_acquire());
        let Some(target) = target else {
            if any_recovering(entry, directory, &excluded) && tokio::time::Instant::now() < deadline
            {
                events.emit(StreamEvent::status(
                    "waiting",
                    format!("no replica of `{}` is ready; waiting for one", entry.group),
                    None,
                ));
                tokio::select! {
                    _ = tokio::time::timeout_at(deadline, notified) => {}
                    () = events.closed() => {}
                }
                continue;
            }
            let mut err = last_error.unwrap_or_else(|| {
                CallError::new(
                    ErrorCategory::ServiceUnavailable,
                    format!("no service offering `{}` is available", entry.tool.name),
                )
            });
            if err.category != ErrorCategory::ServiceUnavailable && err.retryable() {
                err.message = format!("every replica failed; last error: {}", err.message);
            }
            return Err(with_tried(err, &tried));
        };
        attempts += 1;
        let service = target.name().to_owned();
        if !tried.contains(&service) {
            tried.push(service.clone());
        }
        events.emit(StreamEvent::status(
            if attempts == 1 {
                "dispatched"
            } else {
                "failover"
            },
            format!(
                "attempt {attempts}: calling `{}` on {service}",
                entry.upstream_name
            ),
            Some(&service),
        ));
        let ticket = Ticket::new();
        let (tx, rx) = oneshot::channel();
        let job = CallJob {
            name: entry.upstream_name.clone(),
            arguments: arguments.clone(),
            caller: assignment.caller.clone(),
            events: events.clone(),
            ticket: ticket.clone(),
            timeout: target
                .spec
                .limits
                .attempt_timeout()
                .unwrap_or(call_timeout)
                .min(call_deadline.saturating_duration_since(Instant::now())),
            safe,
            attempt: 0,
            deadline: call_deadline,
            retry: config.retry.clone(),
        };
        let generation = target.generation();
        let handoff = match target.addr() {
            Some(addr) => match addr.try_send(CallTool { job, reply: tx }) {
                Ok(()) => Handoff::Taken,
                Err(SendError::Full(_)) => Handoff::Full,
                Err(SendError::Closed(_)) => Handoff::Gone,
            },
            None => Handoff::Gone,
        };
        let (outcome, crashed) = match handoff {
            // The service answers by the deadline itself (cancelling the
            // call upstream); the margin only covers a call it never got to.
            Handoff::Taken => match tokio::time::timeout_at(
                tokio::time::Instant::from_std(call_deadline) + DEADLINE_MARGIN,
                rx,
            )
            .await
            {
                Err(_) => {
                    let mut e = CallError::new(
                        ErrorCategory::Timeout,
                        format!("no answer within {} ms", call_timeout.as_millis()),
                    );
                    e.delivery = ticket.delivery();
                    target.breaker_release();
                    (Err(e), false)
                }
                Ok(Ok(outcome)) => (outcome, false),
                // Without an answer the actor died; the ticket says
                // whether the call had left for the upstream.
                Ok(Err(_)) => {
                    let mut e = CallError::new(
                        ErrorCategory::Network,
                        format!("service {service} stopped while handling the call"),
                    );
                    e.delivery = ticket.delivery();
                    // The service died under a call it had sent: a failure
                    // for its breaker (which settles a half-open trial). A
                    // call still queued learnt nothing: its admission goes back.
                    if e.delivery == Delivery::MaybeSent {
                        target.breaker_record(false);
                    } else {
                        target.breaker_release();
                    }
                    (Err(e), true)
                }
            },
            Handoff::Full | Handoff::Gone => {
                // The call never reached the service: the breaker learnt nothing.
                target.breaker_release();
                handoff_error(&handoff, &service)
            }
        };
        match outcome {
            Ok(result) => {
                return Ok(CallOutcome {
                    result,
                    service,
                    attempts,
                    elapsed: started.elapsed(),
                });
            }
            Err(e) => {
                let e = e.at(&service);
                let repeatable = e.delivery == Delivery::NeverSent || safe;
                if e.retryable() && !repeatable {
                    return Err(with_tried(e.outcome_unknown(), &tried));
                }
                let policy_attempts = config
                    .retry
                    .policy(e.category)
                    .map_or(1, |p| p.max_attempts);
                if !e.retryable() || attempts >= config.max_attempts.min(policy_attempts.max(1)) {
                    return Err(with_tried(e, &tried));
                }
                tracing::info!(tool = %entry.tool.name, %service, error = %e, "failing over");
                metrics.failover(&entry.tool.name, &service);
                excluded.push(Exclusion {
                    service,
                    generation,
                    crashed: crashed || e.category == ErrorCategory::Network,
                });
                last_error = Some(e);
            }
        }
    }
}

/// How long past the call's deadline the router waits for a service's own
/// timeout answer.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// The error of a call whose deadline passed between attempts.
fn past_deadline(timeout: Duration, last: Option<CallError>, safe: bool) -> CallError {
    let mut e = CallError::new(
        ErrorCategory::Timeout,
        format!("no answer within {} ms", timeout.as_millis()),
    );
    if let Some(last) = last {
        e.message = format!("{}; last error: {}", e.message, last.message);
        e.delivery = last.delivery;
        e.services = last.services;
    }
    if e.delivery == Delivery::MaybeSent && !safe {
        e = e.outcome_unknown();
    }
    e
}

fn with_tried(mut e: CallError, tried: &[String]) -> CallError {
    for s in tried {
        e = e.at(s);
    }
    e
}
