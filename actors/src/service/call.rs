//! One call on one service: the [`Lane`] a service incarnation's calls take
//! to its upstream.
//!
//! The service actor owns the connection; when it is up, the actor opens a
//! lane on it and publishes the lane in the service's handle. The router
//! hands a call to the lane from the thread that received it — no message
//! to the actor — and the lane runs it as a task of its own: it waits for
//! a slot (the in-flight limit, an upstream's Retry-After, or every slot
//! for a suspected poison call), sends it, keeps what the service learns
//! from the outcome (breaker, health, latency, what the upstream may have
//! died of), and puts a call whose upstream asked for patience in its
//! retry mailbox. When the incarnation ends the actor closes the lane:
//! calls still waiting leave unsent, so the router can send them on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Recipient;
use rmcp::model::JsonObject;
use tokio::sync::{Semaphore, SemaphorePermit, oneshot};
use tokio_util::sync::CancellationToken;

pub use crate::reply::{CallReply, ToolResult};
pub use crate::transport::line::{Caller, Ticket, Upstream};

use crate::error::{CallError, Delivery, ErrorCategory};
use crate::health::history::Source;
use crate::health::{self, ReportSample};
use crate::metrics::Metrics;
use crate::model::Directory;
use crate::model::{ServiceHandle, ServiceState};
use crate::quarantine::Fingerprint;
use crate::retry::RetryConfig;
use crate::stream::EventSink;
use crate::transport::line::Outgoing;

/// One call for one service.
pub struct CallJob {
    /// The tool's name upstream.
    pub name: String,
    pub arguments: Option<JsonObject>,
    /// What the caller brings besides the arguments.
    pub caller: Caller,
    pub events: EventSink,
    pub ticket: Ticket,
    pub timeout: Duration,
    /// The tool is read-only or idempotent: re-sending is safe.
    pub safe: bool,
    /// Attempts made on this service so far.
    pub attempt: u32,
    /// When every retry of the call must have ended.
    pub deadline: Instant,
    /// Retry strategies.
    pub retry: Arc<RetryConfig>,
    /// Fired when another replica answered this call first (a hedge):
    /// the attempt is cancelled upstream, or never sent.
    pub cancel: CancellationToken,
    /// The call's span: log lines about it carry its request id.
    pub span: tracing::Span,
    /// The call's identity, for poison-call detection.
    pub fingerprint: Fingerprint,
    /// It is a suspected poison call: send it with nothing else in flight.
    pub solo: bool,
    /// Ask the upstream for progress (someone shows it, or it tells a
    /// long call that works from one that is stuck).
    pub progress: bool,
    /// The tool's input schema.
    pub schema: Arc<JsonObject>,
}

/// How long a call whose connection broke waits for the upstream's death
/// to be examined (was it this call?) before it is answered anyway: the
/// output of a dying process ends before its exit is known (the warden
/// reaps it first), and a stdio session that ended waits that long for the
/// exit status itself.
const BROKEN_HOLD: Duration = Duration::from_millis(2_500);

/// How long a call given up on still counts as possibly running upstream.
const ABANDONED_FOR: Duration = Duration::from_secs(2);

/// Calls given up on that are remembered for the blame.
const ABANDONED_KEPT: usize = 64;

/// What a call is known by when its upstream dies: its fingerprint and tool.
pub type Suspect = (Fingerprint, String);

/// A service incarnation's calls to its upstream.
pub struct Lane {
    upstream: Upstream,
    handle: Arc<ServiceHandle>,
    directory: Arc<Directory>,
    monitor: Recipient<ReportSample>,
    metrics: Arc<Metrics>,
    /// The incarnation it belongs to.
    generation: u64,
    /// One permit per call in flight (`limits.max_in_flight`).
    permits: Semaphore,
    limit: u32,
    /// Calls waiting for a slot or for the upstream's Retry-After.
    waiting: AtomicUsize,
    /// Calls in the retry mailbox, waiting out their backoff.
    retrying: AtomicUsize,
    in_flight: AtomicUsize,
    /// What is outstanding upstream, and since when without a break.
    running: Mutex<Running>,
    /// The incarnation ended: calls still waiting leave, unsent.
    closed: CancellationToken,
    /// Its end was examined (which call did the upstream die of?): calls
    /// held on a broken connection may answer.
    examined: CancellationToken,
}

#[derive(Default)]
struct Running {
    calls: HashMap<u64, Suspect>,
    next: u64,
    /// Calls given up on that the upstream may still be running.
    abandoned: Vec<(Instant, Suspect)>,
    busy_since: Option<Instant>,
}

impl Lane {
    /// A lane on a fresh connection of incarnation `generation`.
    pub fn new(
        upstream: Upstream,
        handle: Arc<ServiceHandle>,
        directory: Arc<Directory>,
        monitor: Recipient<ReportSample>,
        metrics: Arc<Metrics>,
        generation: u64,
    ) -> Arc<Self> {
        let limit = u32::try_from(handle.spec.limits.max_in_flight.max(1)).unwrap_or(u32::MAX);
        Arc::new(Self {
            upstream,
            handle,
            directory,
            monitor,
            metrics,
            generation,
            permits: Semaphore::new(limit as usize),
            limit,
            waiting: AtomicUsize::new(0),
            retrying: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            running: Mutex::new(Running::default()),
            closed: CancellationToken::new(),
            examined: CancellationToken::new(),
        })
    }

    /// The incarnation the lane belongs to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Runs `job` as a task of its own; its outcome arrives on the
    /// receiver (which sees its sender dropped only if the task itself was
    /// dropped, the runtime ending).
    pub fn submit(
        self: &Arc<Self>,
        job: CallJob,
    ) -> oneshot::Receiver<Result<CallReply, CallError>> {
        let (tx, rx) = oneshot::channel();
        let span = job.span.clone();
        let lane = self.clone();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let outcome = lane.serve(job).await;
                let _ = tx.send(outcome);
            },
            span,
        ));
        rx
    }

    /// Ends the lane: calls still waiting leave unsent.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// The upstream's death was examined: calls held on a broken
    /// connection may answer now.
    pub fn examined(&self) {
        self.examined.cancel();
    }

    /// Calls outstanding upstream, and those given up on a moment ago:
    /// what the upstream may have died of.
    pub fn suspects(&self) -> Vec<Suspect> {
        let running = self.running();
        running
            .calls
            .values()
            .cloned()
            .chain(
                running
                    .abandoned
                    .iter()
                    .filter(|(at, _)| at.elapsed() < ABANDONED_FOR)
                    .map(|(_, s)| s.clone()),
            )
            .collect()
    }

    /// Calls sent upstream and not answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// How long calls have been outstanding without a break, if they are.
    pub fn busy_for(&self) -> Option<Duration> {
        self.running().busy_since.map(|at| at.elapsed())
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_load(&self) {
        self.handle.set_load(
            self.in_flight(),
            self.waiting.load(Ordering::Relaxed) + self.retrying.load(Ordering::Relaxed),
        );
    }

    /// A call from its first attempt to its outcome, through the retry
    /// mailbox when its upstream asks for patience.
    async fn serve(&self, mut job: CallJob) -> Result<CallReply, CallError> {
        loop {
            let outcome = self.attempt(&mut job).await;
            let Err(e) = &outcome else {
                return outcome;
            };
            let Some(delay) = self.retry_delay(&job, e) else {
                return outcome;
            };
            tracing::info!(
                service = %self.name(),
                tool = %job.name,
                category = %e.category,
                attempt = job.attempt,
                delay_ms = delay.as_millis() as u64,
                "retrying"
            );
            job.events.status(
                "retrying",
                || {
                    format!(
                        "{}: retrying on {} in {} ms (attempt {} of {})",
                        e.category,
                        self.name(),
                        delay.as_millis(),
                        job.attempt + 1,
                        job.retry.policy(e.category).map_or(0, |p| p.max_attempts),
                    )
                },
                Some(self.name()),
            );
            self.metrics.retry(self.name(), e.category);
            self.retrying.fetch_add(1, Ordering::Relaxed);
            self.publish_load();
            let waited = tokio::select! {
                () = tokio::time::sleep(delay) => Ok(()),
                () = self.closed.cancelled() => Err(self.stopped()),
                () = job.events.closed() => Err(gone()),
                () = job.cancel.cancelled() => Err(superseded()),
            };
            self.retrying.fetch_sub(1, Ordering::Relaxed);
            self.publish_load();
            if let Err(left) = waited {
                // Not sent again: what the upstream did with the last one
                // stays as the ticket says.
                let mut left = left;
                left.delivery = job.ticket.delivery();
                return Err(left);
            }
        }
    }

    /// Whether (and when) a failed attempt goes to the retry mailbox: the
    /// category is retried in place, re-sending is safe, its strategy has
    /// attempts left, the mailbox has room, and the wait fits the deadline.
    fn retry_delay(&self, job: &CallJob, e: &CallError) -> Option<Duration> {
        if !RetryConfig::retried_in_place(e.category) {
            return None;
        }
        if e.delivery == Delivery::MaybeSent && !job.safe {
            return None;
        }
        let policy = job.retry.policy(e.category)?;
        if job.attempt >= policy.max_attempts
            || self.retrying.load(Ordering::Relaxed) >= job.retry.max_waiting
        {
            return None;
        }
        let delay = policy.delay(job.attempt, e.retry_after, fastrand::f64());
        Instant::now()
            .checked_add(delay)
            .is_some_and(|at| at <= job.deadline)
            .then_some(delay)
    }

    /// One attempt: a slot, the call, and what the service learns from it.
    async fn attempt(&self, job: &mut CallJob) -> Result<CallReply, CallError> {
        let queued = self.waiting.load(Ordering::Relaxed) + self.retrying.load(Ordering::Relaxed);
        if queued >= self.handle.spec.limits.max_queue {
            // Refused unsent: the breaker learnt nothing about the service.
            self.handle.breaker_release();
            return Err(CallError::new(
                ErrorCategory::Overload,
                format!("{queued} calls already waiting for {}", self.name()),
            ));
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.publish_load();
        let admitted = self.admit(job).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let permit = match admitted {
            Ok(p) => p,
            Err(e) => {
                self.publish_load();
                self.handle.breaker_release();
                return Err(e);
            }
        };
        job.attempt += 1;
        // A retry waited in the mailbox: it has only what is left of the call.
        let started = Instant::now();
        let timeout = job
            .timeout
            .min(job.deadline.saturating_duration_since(started));
        if timeout.is_zero() {
            self.publish_load();
            self.handle.breaker_release();
            return Err(CallError::new(
                ErrorCategory::Timeout,
                "the call's deadline passed before it could be sent",
            ));
        }
        let seq = {
            let mut running = self.running();
            running.next += 1;
            let seq = running.next;
            running
                .calls
                .insert(seq, (job.fingerprint, job.name.clone()));
            running.busy_since.get_or_insert(started);
            seq
        };
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.publish_load();
        let outcome = self
            .upstream
            .call(&Outgoing {
                name: &job.name,
                arguments: job.arguments.as_ref(),
                caller: &job.caller,
                events: &job.events,
                ticket: &job.ticket,
                timeout,
                cancel: &job.cancel,
                progress: job.progress,
                schema: &job.schema,
            })
            .await;
        let latency = started.elapsed();
        if let Err(e) = &outcome
            && e.delivery == Delivery::NeverSent
        {
            job.ticket.mark_unsent();
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.settle(job, seq, &outcome, latency).await;
        drop(permit);
        self.publish_load();
        if let Err(e) = &outcome
            && let Some(wait) = e.retry_after
        {
            // Every call waits, not only this one: the upstream asked. No
            // longer than a call may last, whatever it asked for.
            let wait = wait.min(job.retry.deadline());
            if let Some(until) = Instant::now().checked_add(wait) {
                self.handle.throttle(until);
            }
        }
        outcome
    }

    /// Waits for a slot: one, or all of them for a suspected poison call
    /// (if the upstream dies under it, nothing else is to blame); none while
    /// the upstream's Retry-After lasts. A call leaves unsent when the
    /// incarnation ends, its caller goes, another replica answered, its
    /// deadline passes, or the service turns suspect while another
    /// replica can take it.
    async fn admit(&self, job: &CallJob) -> Result<SemaphorePermit<'_>, CallError> {
        let wanted = if job.solo { self.limit } else { 1 };
        let deadline = tokio::time::Instant::from_std(job.deadline);
        loop {
            let suspected = self.handle.suspected();
            tokio::pin!(suspected);
            suspected.as_mut().enable();
            if self.handle.is_suspect() && self.another_replica_serves() {
                return Err(CallError::new(
                    ErrorCategory::ServiceUnavailable,
                    format!(
                        "{} stopped answering; the call moves to another replica",
                        self.name()
                    ),
                ));
            }
            let throttled = self.handle.throttled_for();
            let acquired = tokio::select! {
                biased;
                () = self.closed.cancelled() => return Err(self.stopped()),
                () = job.events.closed() => return Err(gone()),
                () = job.cancel.cancelled() => return Err(superseded()),
                () = tokio::time::sleep_until(deadline) => return Err(CallError::new(
                    ErrorCategory::Timeout,
                    format!("the call's deadline passed while it waited for {}", self.name()),
                )),
                () = &mut suspected => None,
                () = tokio::time::sleep(throttled.unwrap_or_default()), if throttled.is_some() => None,
                permit = self.permits.acquire_many(wanted), if throttled.is_none() => Some(permit),
            };
            match acquired {
                // A Retry-After that came while it waited holds it too.
                Some(Ok(permit)) if self.handle.throttled_for().is_none() => {
                    // The caller may have left, or another replica answered,
                    // while it waited.
                    if job.events.is_closed() {
                        return Err(gone());
                    }
                    if job.cancel.is_cancelled() {
                        return Err(superseded());
                    }
                    return Ok(permit);
                }
                Some(Ok(_)) | None => continue,
                Some(Err(_)) => return Err(self.stopped()),
            }
        }
    }

    /// What the service learns from an attempt; a call whose connection
    /// broke under it stays among the suspects until the upstream's death
    /// is examined (or a moment has passed).
    async fn settle(
        &self,
        job: &CallJob,
        seq: u64,
        outcome: &Result<CallReply, CallError>,
        latency: Duration,
    ) {
        // Its connection broke under a call it had sent: the process
        // probably died, and whether this call is to blame is known once
        // that is examined.
        let broken = outcome.as_ref().is_err_and(|e| {
            e.category == ErrorCategory::Network && e.delivery == Delivery::MaybeSent
        });
        // A call given up on (timed out, cancelled) may still be running
        // upstream: remembered a moment for the blame.
        let abandoned = outcome.as_ref().is_err_and(|e| {
            matches!(
                e.category,
                ErrorCategory::Timeout | ErrorCategory::Cancelled
            ) && e.delivery == Delivery::MaybeSent
        });
        if job.solo && outcome.is_ok() {
            self.directory
                .quarantine()
                .cleared(self.handle.spec.group(), job.fingerprint);
        }
        self.observe(outcome, latency);
        self.metrics
            .upstream_attempt(self.name(), latency.as_secs_f64());
        let launched = self.handle.process().pgid().is_some();
        if broken && launched {
            let _ = tokio::time::timeout(BROKEN_HOLD, self.examined.cancelled()).await;
        }
        let mut running = self.running();
        let call = running.calls.remove(&seq);
        if running.calls.is_empty() {
            running.busy_since = None;
        }
        if let Some(call) = call
            && abandoned
            && launched
        {
            running
                .abandoned
                .retain(|(at, _)| at.elapsed() < ABANDONED_FOR);
            if running.abandoned.len() < ABANDONED_KEPT {
                running.abandoned.push((Instant::now(), call));
            }
        }
    }

    /// Breaker, health and latency after an attempt.
    fn observe(&self, outcome: &Result<CallReply, CallError>, latency: Duration) {
        let handle = &self.handle;
        match outcome {
            Ok(_) => {
                if handle.clear_suspect() {
                    tracing::info!(service = %self.name(), "service answers again: back in rotation");
                }
                handle.hedge_won();
                handle.breaker_record(true);
                handle.record_success(latency, true);
                self.report(true, Some(latency), None);
            }
            Err(e) if e.category == ErrorCategory::Cancelled => handle.breaker_release(),
            // The call's own deadline passed before it was sent: nothing
            // about the service was learnt.
            Err(e) if e.category == ErrorCategory::Timeout && e.delivery == Delivery::NeverSent => {
                handle.breaker_release()
            }
            Err(e) if e.category.blames_service() => {
                handle.breaker_record(false);
                handle.record_failure(&e.to_string(), true);
                // A broken connection is reported (with the process's exit
                // status) by the connection's own watcher, which ends the actor.
                self.report(false, None, Some(e.to_string()));
            }
            Err(_) => {
                // The service answered; the call itself failed.
                handle.breaker_record(true);
                handle.record_success(latency, false);
                self.report(true, Some(latency), None);
            }
        }
    }

    /// Tells the health monitor what a call showed.
    fn report(&self, ok: bool, latency: Option<Duration>, error: Option<String>) {
        self.monitor.do_send(ReportSample {
            service: self.name().to_owned(),
            sample: health::sample(ok, latency, Source::Call, error),
        });
    }

    fn another_replica_serves(&self) -> bool {
        let me = self.name();
        let group = self.handle.spec.group();
        self.directory.all().iter().any(|h| {
            h.name() != me
                && h.spec.group() == group
                && h.state() == ServiceState::Ready
                && !h.is_suspect()
        })
    }

    /// The error of a call the incarnation ended under before it was sent:
    /// a network failure, so the router waits for the next incarnation or
    /// sends it elsewhere.
    fn stopped(&self) -> CallError {
        CallError::new(
            ErrorCategory::Network,
            format!("service {} went down before the call was sent", self.name()),
        )
    }
}

/// The error of a call whose caller left before it was sent.
fn gone() -> CallError {
    CallError::new(
        ErrorCategory::Cancelled,
        "the caller went away before the call was sent",
    )
}

/// The error of a call whose hedge won before it was sent.
fn superseded() -> CallError {
    CallError::new(
        ErrorCategory::Cancelled,
        "another replica answered first; the call was not sent",
    )
}
