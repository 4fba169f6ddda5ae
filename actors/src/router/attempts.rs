//! Running one call: choosing a replica, handing the call to it, hedging a
//! safe call that lingers, and failing over when an attempt fails.
//!
//! Failover is immediate on a connection-level failure, and governed by one
//! safety rule: a call goes out again only if it provably never reached the
//! upstream, or the tool is read-only or idempotent. Otherwise the caller
//! gets an "outcome unknown" error rather than a possible double execution.
//! The same rule decides hedging: only safe calls are ever sent to two
//! replicas at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::JsonObject;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Assignment, CallOutcome, RouterConfig, best_first};
use crate::error::{CallError, Delivery, ErrorCategory};
use crate::hedge::Hedging;
use crate::metrics::Metrics;
use crate::model::Directory;
use crate::model::{ServiceHandle, ServiceState};
use crate::quarantine::{Fingerprint, fingerprint};
use crate::registry::ToolEntry;
use crate::service::suspect::Suspect;
use crate::service::{CallJob, CallReply, Incarnation, Ticket};
use crate::stream::EventSink;

/// The shared parts a call runs against.
#[derive(Clone, Copy)]
pub(crate) struct Engine<'a> {
    pub directory: &'a Directory,
    pub config: &'a RouterConfig,
    pub metrics: &'a Metrics,
    pub hedging: &'a Hedging,
}

/// The error of a call whose service has no lane: it is down or being
/// replaced.
fn no_lane(service: &str) -> CallError {
    CallError::new(
        ErrorCategory::ServiceUnavailable,
        format!("service {service} is not accepting calls"),
    )
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
            ServiceState::Ready => excluded.iter().any(|x| x.crashed && x.covers(&h)),
            _ => false,
        })
}

/// How many replica crashes a safe call may live through: each replica
/// twice, and one more.
fn crash_allowance(entry: &ToolEntry) -> u32 {
    u32::try_from(entry.providers.len())
        .unwrap_or(u32::MAX)
        .saturating_mul(2)
        .saturating_add(1)
}

/// Whether a tool's calls may run long enough for progress to matter
/// beyond its caller: a call that reports progress is working, not stuck,
/// and is not hedged. So the upstream is asked for it unless the manifest
/// says the tool is not a progress-streaming one.
fn reports_progress(entry: &ToolEntry) -> bool {
    entry
        .manifest
        .as_ref()
        .is_none_or(|m| matches!(m.streaming, Some(crate::manifest::Streaming::Progress)))
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

/// One call being run: what stays the same across its attempts.
struct Call<'a> {
    entry: &'a ToolEntry,
    arguments: Option<JsonObject>,
    events: EventSink,
    assignment: Assignment,
    safe: bool,
    call_timeout: Duration,
    deadline: Instant,
    /// Tool and canonical arguments: how poison calls are recognised.
    fingerprint: Fingerprint,
    engine: Engine<'a>,
}

/// An attempt handed to a service actor.
struct Dispatched {
    target: Arc<ServiceHandle>,
    service: String,
    generation: u64,
    ticket: Ticket,
    cancel: CancellationToken,
    rx: oneshot::Receiver<Result<CallReply, CallError>>,
    started: Instant,
}

/// What an attempt came to.
struct Settled {
    outcome: Result<CallReply, CallError>,
    service: String,
    generation: u64,
    /// Its service died or its connection broke under it.
    crashed: bool,
}

impl Call<'_> {
    /// Hands an attempt to `target`; the error if it could not take it.
    fn dispatch(&self, target: &Arc<ServiceHandle>) -> Result<Dispatched, Box<Settled>> {
        let service = target.name().to_owned();
        let ticket = Ticket::new();
        let cancel = CancellationToken::new();
        let config = self.engine.config;
        let job = CallJob {
            name: self.entry.upstream_name.clone(),
            arguments: self.arguments.clone(),
            caller: self.assignment.caller.clone(),
            events: self.events.clone(),
            ticket: ticket.clone(),
            timeout: target
                .spec
                .limits
                .attempt_timeout()
                .unwrap_or(self.call_timeout)
                .min(self.deadline.saturating_duration_since(Instant::now())),
            safe: self.safe,
            attempt: 0,
            deadline: self.deadline,
            retry: config.retry.clone(),
            cancel: cancel.clone(),
            span: tracing::Span::current(),
            fingerprint: self.fingerprint,
            solo: self
                .engine
                .directory
                .quarantine()
                .is_suspect(&self.entry.group, self.fingerprint),
            progress: self.events.wants_progress() || reports_progress(self.entry),
            schema: self.entry.tool.input_schema.clone(),
        };
        let generation = target.generation();
        // Handed to the service's lane from this thread: no message to its
        // actor; the lane runs the call as a task of its own.
        if let Some(lane) = target.lane() {
            return Ok(Dispatched {
                target: target.clone(),
                service,
                generation,
                ticket,
                cancel,
                rx: lane.submit(job),
                started: Instant::now(),
            });
        }
        // The call never reached the service: the breaker learnt nothing.
        target.breaker_release();
        Err(Box::new(Settled {
            outcome: Err(no_lane(&service)),
            service,
            generation,
            crashed: true,
        }))
    }

    /// Waits for an attempt's answer.
    async fn settle(&self, d: Dispatched) -> Settled {
        // The service answers by the deadline itself (cancelling the call
        // upstream); the margin only covers a call it never got to.
        let until = tokio::time::Instant::from_std(self.deadline) + DEADLINE_MARGIN;
        let (outcome, crashed) = match tokio::time::timeout_at(until, d.rx).await {
            Err(_) => {
                let mut e = CallError::new(
                    ErrorCategory::Timeout,
                    format!("no answer within {} ms", self.call_timeout.as_millis()),
                );
                e.delivery = d.ticket.delivery();
                // The service still holds the call and its breaker
                // admission; cancelled, it settles both.
                d.cancel.cancel();
                (Err(e), false)
            }
            Ok(Ok(outcome)) => (outcome, false),
            // Without an answer the actor died; the ticket says whether the
            // call had left for the upstream.
            Ok(Err(_)) => {
                let mut e = CallError::new(
                    ErrorCategory::Network,
                    format!("service {} stopped while handling the call", d.service),
                );
                e.delivery = d.ticket.delivery();
                // The service died: its actor recorded whatever it saw of
                // the call, and the next instance starts with a fresh
                // breaker.
                (Err(e), true)
            }
        };
        if outcome.is_ok() {
            self.engine
                .hedging
                .observe(&d.service, &self.entry.upstream_name, d.started.elapsed());
        }
        Settled {
            outcome,
            service: d.service,
            generation: d.generation,
            crashed,
        }
    }

    /// A replica to hedge to: another ready, answering one whose breaker
    /// lets the call through.
    fn hedge_target(&self, primary: &str, excluded: &[Exclusion]) -> Option<Arc<ServiceHandle>> {
        candidates(
            self.entry,
            self.engine.directory,
            excluded,
            self.assignment.service.as_deref(),
        )
        .into_iter()
        .filter(|h| h.name() != primary && !h.is_suspect())
        .find(|h| h.breaker_acquire())
    }

    /// Waits for `primary`, hedging it to a second replica if it lingers.
    /// The first settled attempt is the one to act on; a second, if any,
    /// failed too and only matters for what not to try again.
    async fn race(&self, primary: Dispatched, excluded: &[Exclusion]) -> (Vec<Settled>, bool) {
        let hedge_cfg = self.engine.hedging.config();
        // With no second replica there is nothing to hedge to: no timer
        // either (arming one costs the thread a wake-up of its own).
        if !self.safe || !hedge_cfg.enabled || self.entry.providers.len() < 2 {
            return (vec![self.settle(primary).await], false);
        }
        let delay = self
            .engine
            .hedging
            .delay(&primary.service, &self.entry.upstream_name);
        let primary_target = primary.target.clone();
        let primary_name = primary.service.clone();
        let primary_cancel = primary.cancel.clone();
        let mut first = std::pin::pin!(self.settle(primary));
        let timer = tokio::time::sleep(delay);
        tokio::pin!(timer);
        let mut mark = self.events.progress_mark();
        loop {
            let suspected = primary_target.suspected();
            tokio::pin!(suspected);
            suspected.as_mut().enable();
            let now_suspect = primary_target.is_suspect();
            tokio::select! {
                done = &mut first => return (vec![done], false),
                () = &mut timer, if !now_suspect => {
                    // A call that reports progress is working, not stuck.
                    let now = self.events.progress_mark();
                    if now != mark {
                        mark = now;
                        timer.as_mut().reset(tokio::time::Instant::now() + delay);
                        continue;
                    }
                }
                () = &mut suspected, if !now_suspect => {}
                () = std::future::ready(()), if now_suspect => {}
            }
            // Lingering, or its replica stopped answering: hedge once.
            let Some(target) = self.hedge_target(&primary_name, excluded) else {
                return (vec![first.await], false);
            };
            if !self.engine.hedging.spend() {
                target.breaker_release();
                return (vec![first.await], false);
            }
            let second = match self.dispatch(&target) {
                Ok(d) => d,
                Err(_) => return (vec![first.await], false),
            };
            let hedge_name = second.service.clone();
            let hedge_cancel = second.cancel.clone();
            tracing::info!(tool = %self.entry.tool.name, from = %primary_name, to = %hedge_name, suspect = now_suspect, "hedging a lingering call");
            self.events.status(
                "hedged",
                || {
                    format!(
                        "{primary_name} {}; also calling `{}` on {hedge_name}",
                        if now_suspect {
                            "stopped answering"
                        } else {
                            "is slow"
                        },
                        self.entry.upstream_name
                    )
                },
                Some(&hedge_name),
            );
            let mut second = std::pin::pin!(self.settle(second));
            return tokio::select! {
                a = &mut first => {
                    if a.outcome.is_ok() {
                        hedge_cancel.cancel();
                        primary_target.hedge_won();
                        self.engine.metrics.hedge(&hedge_name, false);
                        (vec![a], true)
                    } else {
                        let b = second.await;
                        self.engine.metrics.hedge(&hedge_name, b.outcome.is_ok());
                        (vec![b, a], true)
                    }
                }
                b = &mut second => {
                    if b.outcome.is_ok() {
                        primary_cancel.cancel();
                        self.engine.metrics.hedge(&hedge_name, true);
                        self.lost_race(&primary_target);
                        (vec![b], true)
                    } else {
                        let a = first.await;
                        self.engine.metrics.hedge(&hedge_name, false);
                        (vec![a, b], true)
                    }
                }
            };
        }
    }

    /// The primary lost a hedge race; enough in a row make it suspect.
    fn lost_race(&self, primary: &ServiceHandle) {
        let losses = primary.hedge_lost();
        let limit = self.engine.hedging.config().suspect_after_losses;
        if limit > 0
            && losses >= limit
            && !primary.is_suspect()
            && let Some(addr) = primary.addr()
        {
            addr.do_send(Suspect {
                reason: format!("lost {losses} hedge races in a row"),
            });
        }
    }
}

/// Runs one call to its outcome.
pub(crate) async fn execute(
    entry: &ToolEntry,
    arguments: Option<JsonObject>,
    events: EventSink,
    assignment: Assignment,
    engine: Engine<'_>,
) -> Result<CallOutcome, CallError> {
    let Engine {
        directory,
        config,
        metrics,
        hedging,
    } = engine;
    let started = Instant::now();
    // The caller's deadline bounds everything: attempts, waits and retries.
    let call_timeout = entry
        .providers
        .iter()
        .filter_map(|n| directory.get(n))
        .map(|h| h.spec.limits.call_timeout())
        .max()
        .unwrap_or(Duration::from_secs(60))
        .min(config.retry.deadline());
    let deadline = started + call_timeout;
    let wait_deadline =
        tokio::time::Instant::from_std((started + config.wait_for_service).min(deadline));
    let fingerprint = fingerprint(&entry.upstream_name, arguments.as_ref());
    let quarantined = |tried: &[String]| {
        directory
            .quarantine()
            .refused_for(&entry.group, fingerprint)
            .map(|left| {
                with_tried(
                    CallError::new(
                        ErrorCategory::Quarantined,
                        format!(
                            "this call of `{}` with these arguments crashed the upstream twice; \
                             it is refused for another {} s",
                            entry.tool.name,
                            left.as_secs().max(1)
                        ),
                    ),
                    tried,
                )
            })
    };
    if let Some(e) = quarantined(&[]) {
        return Err(e);
    }
    let call = Call {
        entry,
        arguments,
        events,
        assignment,
        safe: entry.safe_to_repeat(),
        call_timeout,
        deadline,
        fingerprint,
        engine,
    };
    let events = &call.events;
    let mut tried: Vec<String> = Vec::new();
    let mut excluded: Vec<Exclusion> = Vec::new();
    let mut attempts = 0u32;
    let mut crashes = 0u32;
    let mut hedged = false;
    let mut last_error: Option<CallError> = None;
    hedging.earn();
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
        // Quarantined while it waited or failed over: a crash it caused
        // may be reported after its own attempt settled.
        if attempts > 0
            && let Some(q) = quarantined(&tried)
        {
            return Err(q);
        }
        if Instant::now() >= deadline {
            return Err(with_tried(
                past_deadline(call_timeout, last_error, call.safe),
                &tried,
            ));
        }
        // The first candidate whose breaker lets the call through (a
        // half-open breaker admits one trial call at a time).
        let target = candidates(
            entry,
            directory,
            &excluded,
            call.assignment.service.as_deref(),
        )
        .into_iter()
        .find(|h| h.breaker_acquire());
        let Some(target) = target else {
            if any_recovering(entry, directory, &excluded)
                && tokio::time::Instant::now() < wait_deadline
            {
                events.status(
                    "waiting",
                    || format!("no replica of `{}` is ready; waiting for one", entry.group),
                    None,
                );
                tokio::select! {
                    _ = tokio::time::timeout_at(wait_deadline, notified) => {}
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
        let span = tracing::Span::current();
        span.record("service", service.as_str());
        span.record("attempt", attempts);
        events.status(
            if attempts == 1 {
                "dispatched"
            } else {
                "failover"
            },
            || {
                format!(
                    "attempt {attempts}: calling `{}` on {service}",
                    entry.upstream_name
                )
            },
            Some(&service),
        );
        let settled = match call.dispatch(&target) {
            Ok(d) => {
                let (settled, was_hedged) = call.race(d, &excluded).await;
                if was_hedged {
                    hedged = true;
                    attempts += 1;
                }
                settled
            }
            Err(s) => vec![*s],
        };
        let mut settled = settled.into_iter();
        let Some(Settled {
            outcome,
            service,
            generation,
            crashed,
        }) = settled.next()
        else {
            continue;
        };
        if !tried.contains(&service) {
            tried.push(service.clone());
        }
        // A hedge that failed as well is not tried again either.
        for other in settled {
            if !tried.contains(&other.service) {
                tried.push(other.service.clone());
            }
            excluded.push(Exclusion {
                crashed: other.crashed
                    || other
                        .outcome
                        .as_ref()
                        .err()
                        .is_some_and(|e| e.category == ErrorCategory::Network),
                service: other.service,
                generation: other.generation,
            });
        }
        match outcome {
            Ok(result) => {
                return Ok(CallOutcome {
                    result,
                    service,
                    attempts,
                    elapsed: started.elapsed(),
                    hedged,
                    cached: false,
                    coalesced: false,
                });
            }
            Err(e) => {
                // It may just have crashed its upstream a second time.
                if let Some(q) = quarantined(&tried) {
                    return Err(q);
                }
                let e = e.at(&service);
                let repeatable = e.delivery == Delivery::NeverSent || call.safe;
                if e.retryable() && !repeatable {
                    return Err(with_tried(e.outcome_unknown(), &tried));
                }
                let policy_attempts = config
                    .retry
                    .policy(e.category)
                    .map_or(1, |p| p.max_attempts);
                let limit = config.max_attempts.min(policy_attempts.max(1));
                let crash = crashed || e.category == ErrorCategory::Network;
                // A safe call caught by replicas crashing under it (the
                // drill, a poison call of another client, a redeploy) is not
                // the one failing: it may outlast a crash of every replica
                // and one more. Poison calls themselves are stopped by the
                // quarantine, and the deadline bounds it all.
                let exhausted = if crash && call.safe {
                    crashes += 1;
                    crashes >= limit.max(crash_allowance(entry))
                } else {
                    attempts >= limit
                };
                if !e.retryable() || exhausted {
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
