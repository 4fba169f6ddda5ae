//! `ServiceActor`: one upstream MCP service, owned by one actor.
//!
//! The actor owns its connection, its health timer and its call queue. It
//! starts by connecting (calls that arrive meanwhile wait in the queue), then
//! dispatches calls up to its in-flight limit. Anything that breaks the
//! connection — the child exiting, the session closing, health probes
//! failing in a row, a panic in a handler — ends the actor; its
//! [`ExitNotice`] tells the supervisor why, and the supervisor starts a fresh
//! actor from the spec. Calls still queued at that moment were never sent,
//! and the router re-dispatches them (see [`call::Ticket`]).

pub mod breaker;
pub mod call;
pub mod forward;
mod handle;
mod probe;
mod retry;
pub mod suspect;
mod tools;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use rmcp::service::{Peer, RoleClient};
use tokio::sync::{mpsc, oneshot};

pub use call::{CallJob, CallReply, Caller, Ticket, ToolResult};
pub use handle::{ServiceHandle, ServiceSnapshot, ServiceState};

use crate::error::{CallError, Delivery, ErrorCategory};
use crate::health::history::Source;
use crate::health::{self, ReportSample};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::transport::{self, Connection, UpstreamEvent, UpstreamHandler};

/// Why a service actor ended, as the supervisor hears it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ServiceDown {
    /// The service.
    pub service: String,
    /// The incarnation that ended.
    pub generation: u64,
    /// What happened.
    pub reason: String,
    /// Whether a handler panicked.
    pub panicked: bool,
    /// Whether the stop was asked for (shutdown, disable): no restart.
    pub requested: bool,
    /// A quarantined call caused the crash: it does not count towards the
    /// restart intensity.
    pub poison: bool,
}

/// Sends [`ServiceDown`] when the actor is dropped — including when a
/// panic unwinds through it, where actix runs no `stopped()` hook.
struct ExitNotice {
    supervisor: Recipient<ServiceDown>,
    service: String,
    generation: u64,
    reason: Option<String>,
    requested: bool,
    /// The crash was a quarantined call's doing.
    poison: bool,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        let reason = match (&self.reason, panicked) {
            (_, true) => "panic in a service actor handler".to_owned(),
            (Some(r), false) => r.clone(),
            (None, false) => "actor stopped".to_owned(),
        };
        self.supervisor.do_send(ServiceDown {
            service: self.service.clone(),
            generation: self.generation,
            reason,
            panicked,
            requested: self.requested && !panicked,
            poison: self.poison && !panicked,
        });
    }
}

/// Asks the service to run one tool call. The outcome arrives on `reply`;
/// if the actor dies first, `reply` is dropped and `ticket` says whether
/// the call had been sent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CallTool {
    /// The call.
    pub job: CallJob,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<CallReply, CallError>>,
}

/// The error of a call whose caller left before it was sent.
fn gone() -> CallError {
    CallError::new(
        ErrorCategory::Cancelled,
        "the caller went away before the call was sent",
    )
}

/// The error of a call whose hedge won before it was sent.
fn super_seded() -> CallError {
    CallError::new(
        ErrorCategory::Cancelled,
        "another replica answered first; the call was not sent",
    )
}

/// Makes the next message handler panic: the restart drill's fault.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// Drops the connection as a failure would (an outage drill): the
/// supervisor restarts the service as after a crash.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Sever {
    /// Why.
    pub reason: String,
}

impl Handler<Sever> for ServiceActor {
    type Result = ();

    fn handle(&mut self, msg: Sever, ctx: &mut Context<Self>) {
        self.crash(ctx, msg.reason);
    }
}

/// Stops the service for good (shutdown or disable).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// Why.
    pub reason: String,
}

/// How long a call whose connection broke waits for the upstream's death
/// to be reported before it is answered anyway: the output of a dying
/// process ends before its exit is known (the warden reaps it first), and a
/// stdio session that ended waits that long for the exit status itself.
const BROKEN_HOLD: Duration = Duration::from_millis(2_500);

/// How long a call given up on still counts as possibly running upstream.
const ABANDONED_FOR: Duration = Duration::from_secs(2);

/// A call whose connection broke under it.
struct BrokenCall {
    at: Instant,
    call: (crate::quarantine::Fingerprint, String),
    attempt: call::Attempt,
    reply: oneshot::Sender<Result<CallReply, CallError>>,
}

/// What a connected service reports once its tools are known.
struct PendingReady {
    protocol: String,
    server: Option<String>,
    pid: Option<u32>,
    endpoint: Option<String>,
}

struct Live {
    /// What calls take to the upstream.
    upstream: call::Upstream,
    peer: Peer<RoleClient>,
    handler: UpstreamHandler,
    stateless: bool,
    capabilities: rmcp::model::ServerCapabilities,
}

/// The actor owning one upstream.
pub struct ServiceActor {
    handle: Arc<ServiceHandle>,
    registry: Arc<Registry>,
    directory: Arc<crate::directory::Directory>,
    monitor: Recipient<ReportSample>,
    metrics: Arc<Metrics>,
    connecting_since: Instant,
    live: Option<Live>,
    queue: VecDeque<CallTool>,
    in_flight: usize,
    probe_in_flight: bool,
    probe_failures: u32,
    /// Calls in the retry mailbox, waiting out their backoff.
    waiting: usize,
    /// Open `subscriptions/listen` streams for watched resources (2026-07-28
    /// upstreams), by URI.
    resource_listens: std::collections::HashMap<String, (u64, SpawnHandle)>,
    /// Numbers the listen streams, so one that ended is told from its successor.
    listen_seq: u64,
    /// A dispatch is scheduled for when the upstream's Retry-After ends.
    throttle_timer: bool,
    /// Connected, waiting for the first tool listing.
    pending_ready: Option<PendingReady>,
    /// When a stdio server last wrote anything.
    liveness: Option<Arc<transport::tap::Seen>>,
    /// Since when calls have been outstanding without a break.
    busy_since: Option<Instant>,
    /// Calls in flight upstream: fingerprint and tool, by dispatch number.
    running: std::collections::HashMap<u64, (crate::quarantine::Fingerprint, String)>,
    call_seq: u64,
    /// Calls whose connection broke under them, held until the upstream's
    /// death is reported (or a moment has passed).
    broke_under: Vec<BrokenCall>,
    /// Calls given up on that the upstream may still be running.
    abandoned: Vec<(Instant, (crate::quarantine::Fingerprint, String))>,
    /// A suspected poison call is in flight, alone.
    solo_in_flight: bool,
    /// A recheck of a suspect service is scheduled.
    rechecking: bool,
    exit: ExitNotice,
}

impl ServiceActor {
    /// A new incarnation of a service (started by the supervisor).
    pub fn new(
        handle: Arc<ServiceHandle>,
        registry: Arc<Registry>,
        directory: Arc<crate::directory::Directory>,
        supervisor: Recipient<ServiceDown>,
        monitor: Recipient<ReportSample>,
        metrics: Arc<Metrics>,
        generation: u64,
    ) -> Self {
        let service = handle.name().to_owned();
        Self {
            handle,
            registry,
            directory,
            monitor,
            metrics,
            connecting_since: Instant::now(),
            live: None,
            queue: VecDeque::new(),
            in_flight: 0,
            probe_in_flight: false,
            probe_failures: 0,
            waiting: 0,
            resource_listens: std::collections::HashMap::new(),
            listen_seq: 0,
            throttle_timer: false,
            pending_ready: None,
            liveness: None,
            busy_since: None,
            running: std::collections::HashMap::new(),
            call_seq: 0,
            broke_under: Vec::new(),
            abandoned: Vec::new(),
            solo_in_flight: false,
            rechecking: false,
            exit: ExitNotice {
                supervisor,
                service,
                generation,
                reason: None,
                requested: false,
                poison: false,
            },
        }
    }

    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Ends this incarnation; the supervisor decides what comes next.
    fn crash(&mut self, ctx: &mut Context<Self>, reason: String) {
        let reason = crate::secrets::scrub(&reason);
        if self.exit.reason.is_none() {
            if self.exit.requested {
                tracing::info!(service = %self.name(), %reason, "service stopping");
            } else {
                tracing::warn!(service = %self.name(), %reason, "service down");
                self.report(false, None, Source::Lifecycle, Some(reason.clone()));
            }
            self.exit.reason = Some(reason);
        }
        ctx.stop();
    }

    /// The upstream went away. If its process died by itself with calls
    /// in flight, those calls are suspects — or, for one that already was
    /// and ran alone, the cause (see [`crate::quarantine`]).
    fn connection_closed(&mut self, ctx: &mut Context<Self>, closed: transport::Closed) {
        let mut reason = closed.reason.clone();
        // Their answers are dropped with the actor: the router reads the
        // tickets, and sees the quarantine recorded below.
        let mut in_flight: Vec<_> = std::mem::take(&mut self.broke_under)
            .into_iter()
            .map(|b| b.call)
            .collect();
        in_flight.extend(self.running.values().cloned());
        in_flight.extend(
            self.abandoned
                .iter()
                .filter(|(at, _)| at.elapsed() < ABANDONED_FOR)
                .map(|(_, call)| call.clone()),
        );
        if closed.self_inflicted() && !self.exit.requested && !in_flight.is_empty() {
            let blamed = self
                .directory
                .quarantine()
                .crashed(self.handle.spec.group(), &in_flight);
            if !blamed.is_empty() {
                for tool in &blamed {
                    self.metrics.quarantined(self.name(), tool);
                }
                tracing::warn!(service = %self.name(), tools = ?blamed, "a call crashed its upstream twice; quarantined");
                reason = format!(
                    "{reason}; caused by a call of {} (quarantined)",
                    blamed.join(", ")
                );
                self.exit.poison = true;
            }
        }
        self.crash(ctx, reason);
    }

    fn remember_abandoned(&mut self, call: (crate::quarantine::Fingerprint, String)) {
        self.abandoned
            .retain(|(at, _)| at.elapsed() < ABANDONED_FOR);
        if self.abandoned.len() < 64 {
            self.abandoned.push((Instant::now(), call));
        }
    }

    fn hold_broken(
        &mut self,
        ctx: &mut Context<Self>,
        call: (crate::quarantine::Fingerprint, String),
        attempt: call::Attempt,
        reply: oneshot::Sender<Result<CallReply, CallError>>,
    ) {
        self.broke_under.push(BrokenCall {
            at: Instant::now(),
            call,
            attempt,
            reply,
        });
        ctx.run_later(BROKEN_HOLD, |act, ctx| {
            let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut act.broke_under)
                .into_iter()
                .partition(|b| b.at.elapsed() >= BROKEN_HOLD);
            act.broke_under = keep;
            for b in due {
                act.settle(ctx, b.attempt, b.reply);
            }
            // The connection lived on: carry on with the queue.
            act.dispatch(ctx);
        });
    }

    /// Tells the health monitor what was just observed.
    fn report(&self, ok: bool, latency: Option<Duration>, source: Source, error: Option<String>) {
        self.monitor.do_send(ReportSample {
            service: self.name().to_owned(),
            sample: health::sample(ok, latency, source, error),
        });
    }

    fn connected(
        &mut self,
        ctx: &mut Context<Self>,
        conn: Connection,
        events: mpsc::UnboundedReceiver<UpstreamEvent>,
        handler: UpstreamHandler,
    ) {
        let protocol = conn.protocol().to_string();
        let server = conn
            .info
            .server_info
            .as_ref()
            .map(|i| format!("{} {}", i.name, i.version));
        tracing::info!(service = %self.name(), %protocol, server = server.as_deref().unwrap_or("?"), pid = ?conn.pid, "service connected");
        let announces_changes = conn.stateless()
            && conn
                .info
                .capabilities
                .tools
                .as_ref()
                .and_then(|t| t.list_changed)
                == Some(true);
        self.live = Some(Live {
            upstream: call::Upstream::new(&conn, handler.clone()),
            peer: conn.peer.clone(),
            handler,
            stateless: conn.stateless(),
            capabilities: conn.info.capabilities.clone(),
        });
        // The connection's resources live in this future; it resolves when
        // the upstream goes away.
        ctx.spawn(
            conn.closed
                .into_actor(self)
                .map(|closed, act, ctx| act.connection_closed(ctx, closed)),
        );
        ctx.add_stream(futures::stream::unfold(events, |mut rx| async move {
            rx.recv().await.map(|e| (e, rx))
        }));
        if announces_changes {
            self.listen_for_tool_changes(ctx, conn.peer.clone());
        }
        // Ready once its tools are known: a router that picked it before
        // would not know what it offers.
        self.liveness = conn.liveness.clone();
        self.pending_ready = Some(PendingReady {
            protocol,
            server,
            pid: conn.pid,
            endpoint: conn.endpoint.clone(),
        });
        self.refresh_tools(ctx);
        self.refresh_offer(ctx);
        // Resource subscriptions clients held before a restart carry on.
        for uri in self.registry.catalog().watched(self.name()) {
            self.watch_upstream(ctx, uri, true, None);
        }
        self.dispatch(ctx);
    }

    /// Marks the service ready, the first time its tools are listed (or
    /// the listing failed: the manifest's tools still stand).
    pub(super) fn become_ready(&mut self, ctx: &mut Context<Self>) {
        let Some(r) = self.pending_ready.take() else {
            return;
        };
        self.handle
            .mark_ready(&r.protocol, r.server, r.pid, r.endpoint);
        self.report(
            true,
            Some(self.connecting_since.elapsed()),
            Source::Lifecycle,
            None,
        );
        self.dispatch(ctx);
    }

    /// Sends queued calls upstream while there is room — none while the
    /// upstream's Retry-After lasts; they go when it ends.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        if let Some(wait) = self.handle.throttled_for() {
            // Callers who gave up while the upstream's Retry-After lasts are
            // answered now, and their breaker admissions handed back.
            for c in std::mem::take(&mut self.queue) {
                if c.reply.is_closed() || c.job.events.is_closed() {
                    self.handle.breaker_release();
                    let _ = c.reply.send(Err(gone()));
                } else {
                    self.queue.push_back(c);
                }
            }
            if !self.throttle_timer {
                self.throttle_timer = true;
                ctx.run_later(wait, |act, ctx| {
                    act.throttle_timer = false;
                    act.dispatch(ctx);
                });
            }
            self.handle
                .set_load(self.in_flight, self.queue.len() + self.waiting);
            return;
        }
        let limit = self.handle.spec.limits.max_in_flight.max(1);
        // Nothing more goes down a connection that just broke under a call.
        while self.in_flight < limit && !self.solo_in_flight && self.broke_under.is_empty() {
            let Some(live) = &self.live else { break };
            // A suspected poison call goes alone: if the upstream dies
            // under it, nothing else is to blame.
            if self.in_flight > 0 && self.queue.front().is_some_and(|c| c.job.solo) {
                break;
            }
            let Some(CallTool { job, reply }) = self.queue.pop_front() else {
                break;
            };
            if reply.is_closed() || job.events.is_closed() {
                // The caller gave up while the call waited: it must not run,
                // and the breaker admission it held is handed back.
                self.handle.breaker_release();
                let _ = reply.send(Err(gone()));
                continue;
            }
            if job.cancel.is_cancelled() {
                // Another replica answered first: nothing to send.
                self.handle.breaker_release();
                let _ = reply.send(Err(super_seded()));
                continue;
            }
            self.in_flight += 1;
            self.busy_since.get_or_insert_with(Instant::now);
            self.call_seq += 1;
            let seq = self.call_seq;
            let solo = job.solo;
            let fingerprint = job.fingerprint;
            self.solo_in_flight = solo;
            self.running.insert(seq, (fingerprint, job.name.clone()));
            let span = job.span.clone();
            let fut = tracing::Instrument::instrument(call::run(live.upstream.clone(), job), span);
            ctx.spawn(fut.into_actor(self).map(move |attempt, act, ctx| {
                act.in_flight -= 1;
                let call = act.running.remove(&seq);
                // Its connection broke under a call it had sent: the
                // upstream may have died of it.
                let broken = attempt.outcome.as_ref().is_err_and(|e| {
                    e.category == ErrorCategory::Network && e.delivery == Delivery::MaybeSent
                });
                // A call given up on (timed out, cancelled) may still be
                // running upstream: remembered a moment for the blame.
                let abandoned = attempt.outcome.as_ref().is_err_and(|e| {
                    matches!(
                        e.category,
                        ErrorCategory::Timeout | ErrorCategory::Cancelled
                    ) && e.delivery == Delivery::MaybeSent
                });
                if act.in_flight == 0 {
                    act.busy_since = None;
                }
                if solo {
                    act.solo_in_flight = false;
                    if attempt.outcome.is_ok() {
                        act.directory
                            .quarantine()
                            .cleared(act.handle.spec.group(), fingerprint);
                    }
                }
                act.observe_call(&attempt.outcome, attempt.latency);
                act.metrics
                    .upstream_attempt(act.name(), attempt.latency.as_secs_f64());
                let launched = act.handle.process().pgid().is_some();
                match call {
                    // The connection broke under it: the process probably
                    // died, and whether this call is to blame is known once
                    // that is reported. Its answer waits a moment for that.
                    Some(call) if broken && launched => act.hold_broken(ctx, call, attempt, reply),
                    Some(call) if abandoned && launched => {
                        act.remember_abandoned(call);
                        act.settle(ctx, attempt, reply)
                    }
                    _ => act.settle(ctx, attempt, reply),
                }
                act.dispatch(ctx);
            }));
        }
        self.handle
            .set_load(self.in_flight, self.queue.len() + self.waiting);
    }

    fn observe_call(&mut self, outcome: &Result<CallReply, CallError>, latency: Duration) {
        match outcome {
            Ok(_) => {
                self.cleared();
                self.handle.hedge_won();
                self.handle.breaker_record(true);
                self.handle.record_success(latency, true);
                self.report(true, Some(latency), Source::Call, None);
            }
            Err(e) if e.category == ErrorCategory::Cancelled => self.handle.breaker_release(),
            // The call's own deadline passed before it was sent: nothing
            // about the service was learnt.
            Err(e) if e.category == ErrorCategory::Timeout && e.delivery == Delivery::NeverSent => {
                self.handle.breaker_release()
            }
            Err(e) if e.category.blames_service() => {
                self.handle.breaker_record(false);
                self.handle.record_failure(&e.to_string(), true);
                // A broken connection is reported (with the process's exit
                // status) by the connection's own watcher, which ends the actor.
                self.report(false, None, Source::Call, Some(e.to_string()));
            }
            Err(_) => {
                // The service answered; the call itself failed.
                self.handle.breaker_record(true);
                self.handle.record_success(latency, false);
                self.report(true, Some(latency), Source::Call, None);
            }
        }
    }
}

impl Actor for ServiceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.handle.spec.limits.max_queue.max(16));
        if let Some(left) = self.handle.unreachable_for() {
            self.crash(
                ctx,
                format!(
                    "connect failed: network: upstream unreachable (outage drill, {} ms left)",
                    left.as_millis()
                ),
            );
            return;
        }
        let spec = self.handle.spec.clone();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let handler = UpstreamHandler::new(events_tx);
        let timeout = spec.limits.connect_timeout();
        let connect_handler = handler.clone();
        let slot = self.handle.process().clone();
        ctx.spawn(
            async move { transport::connect(&spec, &slot, connect_handler, timeout).await }
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(conn) => act.connected(ctx, conn, events_rx, handler),
                    Err(e) => act.crash(ctx, format!("connect failed: {e}")),
                }),
        );
        let interval = Duration::from_millis(self.handle.spec.health.interval_ms.max(10));
        ctx.run_interval(interval, |act, ctx| act.probe(ctx));
        // The stdio watchdog looks a few times per probe timeout.
        let watch = Duration::from_millis((self.handle.spec.health.timeout_ms / 4).clamp(10, 500));
        ctx.run_interval(watch, |act, ctx| act.watch_output(ctx));
    }
}

impl Handler<CallTool> for ServiceActor {
    type Result = ();

    fn handle(&mut self, msg: CallTool, ctx: &mut Context<Self>) {
        // The queue is bounded whatever keeps calls in it (no connection
        // yet, the in-flight limit, an upstream's Retry-After).
        if self.queue.len() >= self.handle.spec.limits.max_queue {
            let err = CallError::new(
                ErrorCategory::Overload,
                format!(
                    "{} calls already waiting for {}",
                    self.queue.len(),
                    self.name()
                ),
            );
            // Refused unsent: the breaker learnt nothing about the service.
            self.handle.breaker_release();
            let _ = msg.reply.send(Err(err));
            return;
        }
        self.queue.push_back(msg);
        self.dispatch(ctx);
    }
}

impl Handler<InjectPanic> for ServiceActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        panic!(
            "injected panic in service actor `{}` (restart drill)",
            self.name()
        );
    }
}

impl Handler<Shutdown> for ServiceActor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.exit.requested = true;
        self.crash(ctx, msg.reason);
    }
}

impl StreamHandler<UpstreamEvent> for ServiceActor {
    fn handle(&mut self, event: UpstreamEvent, ctx: &mut Context<Self>) {
        match event {
            UpstreamEvent::ToolsChanged => self.refresh_tools(ctx),
            UpstreamEvent::ResourcesChanged | UpstreamEvent::PromptsChanged => {
                self.refresh_offer(ctx)
            }
            UpstreamEvent::ResourceUpdated(uri) => self.resource_updated(uri),
        }
    }

    /// The event stream ends with the connection; the connection's own
    /// watcher reports that, so nothing to do here.
    fn finished(&mut self, _: &mut Context<Self>) {}
}
