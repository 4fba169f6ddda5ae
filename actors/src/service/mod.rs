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
mod handle;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rmcp::model::{
    CallToolResult, ClientRequest, DiscoverRequest, DiscoverRequestParams, PingRequest,
    ServerNotification, SubscriptionFilter,
};
use rmcp::service::{Peer, RoleClient, ServiceError};
use tokio::sync::{mpsc, oneshot};

pub use call::{CallJob, Ticket};
pub use handle::{ServiceHandle, ServiceSnapshot, ServiceState};

use crate::error::{CallError, Delivery, ErrorCategory};
use crate::health::history::Source;
use crate::health::{self, ReportSample};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::retry::RetryConfig;
use crate::stream::StreamEvent;
use crate::transport::errors::from_service_error;
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
}

/// Sends [`ServiceDown`] when the actor is dropped — including when a
/// panic unwinds through it, where actix runs no `stopped()` hook.
struct ExitNotice {
    supervisor: Recipient<ServiceDown>,
    service: String,
    generation: u64,
    reason: Option<String>,
    requested: bool,
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
    pub reply: oneshot::Sender<Result<CallToolResult, CallError>>,
}

/// The error of a call whose caller left before it was sent.
fn gone() -> CallError {
    CallError::new(
        ErrorCategory::Cancelled,
        "the caller went away before the call was sent",
    )
}

/// Makes the next message handler panic: the restart drill's fault.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// Stops the service for good (shutdown or disable).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// Why.
    pub reason: String,
}

struct Live {
    peer: Peer<RoleClient>,
    handler: UpstreamHandler,
    stateless: bool,
}

/// The actor owning one upstream.
pub struct ServiceActor {
    handle: Arc<ServiceHandle>,
    registry: Arc<Registry>,
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
    exit: ExitNotice,
}

impl ServiceActor {
    /// A new incarnation of a service (started by the supervisor).
    pub fn new(
        handle: Arc<ServiceHandle>,
        registry: Arc<Registry>,
        supervisor: Recipient<ServiceDown>,
        monitor: Recipient<ReportSample>,
        metrics: Arc<Metrics>,
        generation: u64,
    ) -> Self {
        let service = handle.name().to_owned();
        Self {
            handle,
            registry,
            monitor,
            metrics,
            connecting_since: Instant::now(),
            live: None,
            queue: VecDeque::new(),
            in_flight: 0,
            probe_in_flight: false,
            probe_failures: 0,
            waiting: 0,
            exit: ExitNotice {
                supervisor,
                service,
                generation,
                reason: None,
                requested: false,
            },
        }
    }

    fn name(&self) -> &str {
        self.handle.name()
    }

    /// Ends this incarnation; the supervisor decides what comes next.
    fn crash(&mut self, ctx: &mut Context<Self>, reason: String) {
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
            peer: conn.peer.clone(),
            handler,
            stateless: conn.stateless(),
        });
        // The connection's resources live in this future; it resolves when
        // the upstream goes away.
        ctx.spawn(
            conn.closed
                .into_actor(self)
                .map(|reason, act, ctx| act.crash(ctx, reason)),
        );
        ctx.add_stream(futures::stream::unfold(events, |mut rx| async move {
            rx.recv().await.map(|e| (e, rx))
        }));
        if announces_changes {
            self.listen_for_tool_changes(ctx, conn.peer.clone());
        }
        self.handle
            .mark_ready(&protocol, server, conn.pid, conn.endpoint.clone());
        self.report(
            true,
            Some(self.connecting_since.elapsed()),
            Source::Lifecycle,
            None,
        );
        self.refresh_tools(ctx);
        self.dispatch(ctx);
    }

    /// 2026-07-28 servers announce list changes only on a
    /// `subscriptions/listen` stream; hold one open for the connection's life.
    fn listen_for_tool_changes(&mut self, ctx: &mut Context<Self>, peer: Peer<RoleClient>) {
        let Some(live) = &self.live else { return };
        let handler = live.handler.clone();
        let service = self.name().to_owned();
        ctx.spawn(
            async move {
                let filter = SubscriptionFilter::builder().tools_list_changed().build();
                let mut sub = match peer.listen(filter).await {
                    Ok(sub) => sub,
                    Err(e) => {
                        tracing::debug!(%service, error = %e, "subscriptions/listen refused");
                        return;
                    }
                };
                loop {
                    match sub.next().await {
                        Ok(Some(ServerNotification::ToolListChangedNotification(_))) => {
                            handler.tools_changed()
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
                tracing::debug!(%service, "tool change subscription ended");
            }
            .into_actor(self),
        );
    }

    fn refresh_tools(&mut self, ctx: &mut Context<Self>) {
        let Some(live) = &self.live else { return };
        let peer = live.peer.clone();
        let timeout = self.handle.spec.limits.call_timeout();
        ctx.spawn(
            async move { tokio::time::timeout(timeout, peer.list_all_tools()).await }
                .into_actor(self)
                .map(|result, act, _ctx| match result {
                    Ok(Ok(tools)) => {
                        tracing::debug!(service = %act.name(), tools = tools.len(), "tools listed");
                        act.registry.set_live_tools(act.name(), tools);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(service = %act.name(), error = %e, "tools/list failed")
                    }
                    Err(_) => tracing::warn!(service = %act.name(), "tools/list timed out"),
                }),
        );
    }

    /// Sends queued calls upstream while there is room.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let limit = self.handle.spec.limits.max_in_flight.max(1);
        while self.in_flight < limit {
            let Some(live) = &self.live else { break };
            let Some(CallTool { job, reply }) = self.queue.pop_front() else {
                break;
            };
            if reply.is_closed() || job.events.is_closed() {
                // The caller gave up while the call waited: it must not run.
                let _ = reply.send(Err(gone()));
                continue;
            }
            self.in_flight += 1;
            let fut = call::run(live.peer.clone(), live.handler.clone(), job);
            ctx.spawn(fut.into_actor(self).map(move |attempt, act, ctx| {
                act.in_flight -= 1;
                act.observe_call(&attempt.outcome, attempt.latency);
                act.metrics
                    .upstream_attempt(act.name(), attempt.latency.as_secs_f64());
                act.settle(ctx, attempt, reply);
                act.dispatch(ctx);
            }));
        }
        self.handle
            .set_load(self.in_flight, self.queue.len() + self.waiting);
    }

    /// Answers a finished attempt, or puts the call in the retry mailbox.
    fn settle(
        &mut self,
        ctx: &mut Context<Self>,
        attempt: call::Attempt,
        reply: oneshot::Sender<Result<CallToolResult, CallError>>,
    ) {
        let call::Attempt { job, outcome, .. } = attempt;
        let Err(e) = &outcome else {
            let _ = reply.send(outcome);
            return;
        };
        let Some(delay) = self.retry_delay(&job, e) else {
            let _ = reply.send(outcome);
            return;
        };
        tracing::info!(
            service = %self.name(),
            tool = %job.name,
            category = %e.category,
            attempt = job.attempt,
            delay_ms = delay.as_millis() as u64,
            "retrying"
        );
        job.events.emit(StreamEvent::status(
            "retrying",
            format!(
                "{}: retrying on {} in {} ms (attempt {} of {})",
                e.category,
                self.name(),
                delay.as_millis(),
                job.attempt + 1,
                job.retry.policy(e.category).map_or(0, |p| p.max_attempts),
            ),
            Some(self.name()),
        ));
        self.metrics.retry(self.name(), e.category);
        self.waiting += 1;
        ctx.run_later(delay, move |act, ctx| {
            act.waiting -= 1;
            act.queue.push_front(CallTool { job, reply });
            act.dispatch(ctx);
        });
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
        if job.attempt >= policy.max_attempts || self.waiting >= job.retry.max_waiting {
            return None;
        }
        let delay = policy.delay(job.attempt, e.retry_after, fastrand::f64());
        (Instant::now() + delay <= job.deadline).then_some(delay)
    }

    fn observe_call(&mut self, outcome: &Result<CallToolResult, CallError>, latency: Duration) {
        match outcome {
            Ok(_) => {
                self.handle.breaker_record(true);
                self.handle.record_success(latency, true);
                self.report(true, Some(latency), Source::Call, None);
            }
            Err(e) if e.category == ErrorCategory::Cancelled => self.handle.breaker_release(),
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

    /// One health probe: the cheapest round-trip the upstream's era has.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        let Some(live) = &self.live else { return };
        if self.probe_in_flight {
            return;
        }
        self.probe_in_flight = true;
        let peer = live.peer.clone();
        let request = if live.stateless {
            ClientRequest::DiscoverRequest(DiscoverRequest::new(DiscoverRequestParams {}))
        } else {
            ClientRequest::PingRequest(PingRequest::default())
        };
        let timeout = Duration::from_millis(self.handle.spec.health.timeout_ms);
        let started = Instant::now();
        ctx.spawn(
            async move { tokio::time::timeout(timeout, peer.send_request(request)).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.probe_in_flight = false;
                    let failure = match result {
                        // Any answer, even a JSON-RPC error (a server without
                        // `ping`), shows the session is alive.
                        Ok(Ok(_)) | Ok(Err(ServiceError::McpError(_))) => None,
                        Ok(Err(e)) => Some(from_service_error(e, true).to_string()),
                        Err(_) => Some(format!("probe timed out after {} ms", timeout.as_millis())),
                    };
                    match failure {
                        None => {
                            act.probe_failures = 0;
                            act.handle.record_success(started.elapsed(), false);
                            act.report(true, Some(started.elapsed()), Source::Probe, None);
                        }
                        Some(reason) => {
                            // Only the probes decide a restart: failed calls
                            // may be the calls' own fault.
                            act.probe_failures += 1;
                            let n = act.probe_failures;
                            act.handle.record_failure(&reason, false);
                            act.report(false, None, Source::Probe, Some(reason.clone()));
                            tracing::warn!(service = %act.name(), failures = n, %reason, "health probe failed");
                            if n >= act.handle.spec.health.restart_after_failures.max(1) {
                                act.crash(ctx, format!("{n} health probes failed in a row ({reason})"));
                            }
                        }
                    }
                }),
        );
    }
}

impl Actor for ServiceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.handle.spec.limits.max_queue.max(16));
        let spec = self.handle.spec.clone();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let handler = UpstreamHandler::new(events_tx);
        let timeout = spec.limits.connect_timeout();
        let connect_handler = handler.clone();
        ctx.spawn(
            async move { transport::connect(&spec, connect_handler, timeout).await }
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(conn) => act.connected(ctx, conn, events_rx, handler),
                    Err(e) => act.crash(ctx, format!("connect failed: {e}")),
                }),
        );
        let interval = Duration::from_millis(self.handle.spec.health.interval_ms.max(10));
        ctx.run_interval(interval, |act, ctx| act.probe(ctx));
    }
}

impl Handler<CallTool> for ServiceActor {
    type Result = ();

    fn handle(&mut self, msg: CallTool, ctx: &mut Context<Self>) {
        let busy =
            self.live.is_none() || self.in_flight >= self.handle.spec.limits.max_in_flight.max(1);
        if busy && self.queue.len() >= self.handle.spec.limits.max_queue {
            let err = CallError::new(
                ErrorCategory::Overload,
                format!(
                    "{} calls already waiting for {}",
                    self.queue.len(),
                    self.name()
                ),
            );
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
        }
    }

    /// The event stream ends with the connection; the connection's own
    /// watcher reports that, so nothing to do here.
    fn finished(&mut self, _: &mut Context<Self>) {}
}
