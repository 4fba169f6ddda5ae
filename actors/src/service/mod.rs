//! `ServiceActor`: one upstream MCP service, owned by one actor.
//!
//! The actor owns its connection and its health timer. It starts by
//! connecting; once connected it opens a [`Lane`] on the connection and
//! publishes it in the service's handle, and calls take the lane from
//! there without passing through the actor (see [`call`]). Anything that
//! breaks the connection — the child exiting, the session closing, health
//! probes failing in a row, a panic in a handler — ends the actor: the lane
//! closes (calls still waiting leave unsent, and the router sends them on),
//! its [`ExitNotice`] tells the supervisor why, and the supervisor starts a
//! fresh actor from the spec.

pub mod call;
pub mod forward;
mod probe;
pub mod suspect;
mod tools;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use rmcp::service::{Peer, RoleClient};
use tokio::sync::mpsc;

pub use crate::model::{ServiceHandle, ServiceSnapshot, ServiceState};
pub use call::{CallJob, CallReply, Caller, Lane, Ticket, ToolResult};

use crate::health::history::Source;
use crate::health::{self, ReportSample};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::transport::{self, Connection, UpstreamEvent, UpstreamHandler};

/// The typed parts of a service's live incarnation, read from its handle
/// (the read model keeps them untyped, so that it depends on no actor).
pub trait Incarnation {
    /// The live actor's address, when there is one.
    fn addr(&self) -> Option<Arc<Addr<ServiceActor>>>;
    /// The live incarnation's lane, while it is connected.
    fn lane(&self) -> Option<Arc<Lane>>;
}

impl Incarnation for ServiceHandle {
    fn addr(&self) -> Option<Arc<Addr<ServiceActor>>> {
        self.actor_part()?.get()
    }

    fn lane(&self) -> Option<Arc<Lane>> {
        self.lane_part()?.get()
    }
}

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
    /// The service was refused (its tools collide with another service's
    /// under `router.tool_names = "never"`): it is failed, not restarted,
    /// until a slow retry finds the collision gone.
    pub refused: bool,
}

/// Sends [`ServiceDown`] when the actor is dropped — including when a
/// panic unwinds through it, where actix runs no `stopped()` hook.
struct ExitNotice {
    supervisor: Recipient<ServiceDown>,
    /// The service: its lane closes with the incarnation.
    handle: Arc<ServiceHandle>,
    service: String,
    generation: u64,
    reason: Option<String>,
    requested: bool,
    /// The crash was a quarantined call's doing.
    poison: bool,
    /// The service was refused, not crashed.
    refused: bool,
}

impl Drop for ExitNotice {
    fn drop(&mut self) {
        let panicked = std::thread::panicking();
        if let Some(lane) = self
            .handle
            .take_lane_part(self.generation)
            .and_then(|p| p.get::<Lane>())
        {
            lane.close();
        }
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
            refused: self.refused && !panicked,
        });
    }
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

/// Refuses the service: what it offers cannot be served (see
/// [`ServiceDown::refused`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Refuse {
    /// Why.
    pub reason: String,
}

impl Handler<Refuse> for ServiceActor {
    type Result = ();

    fn handle(&mut self, msg: Refuse, ctx: &mut Context<Self>) {
        self.refuse(ctx, msg.reason);
    }
}

/// Stops the service for good (shutdown or disable).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// Why.
    pub reason: String,
}

/// What a connected service reports once its tools are known.
struct PendingReady {
    protocol: String,
    server: Option<String>,
    pid: Option<u32>,
    endpoint: Option<String>,
}

struct Live {
    peer: Peer<RoleClient>,
    handler: UpstreamHandler,
    stateless: bool,
    capabilities: rmcp::model::ServerCapabilities,
}

/// The actor owning one upstream.
pub struct ServiceActor {
    handle: Arc<ServiceHandle>,
    registry: Arc<Registry>,
    directory: Arc<crate::model::Directory>,
    monitor: Recipient<ReportSample>,
    metrics: Arc<Metrics>,
    connecting_since: Instant,
    live: Option<Live>,
    /// The calls' way to the upstream, while connected.
    lane: Option<Arc<Lane>>,
    probe_in_flight: bool,
    probe_failures: u32,
    /// Open `subscriptions/listen` streams for watched resources (2026-07-28
    /// upstreams), by URI.
    resource_listens: std::collections::HashMap<String, (u64, SpawnHandle)>,
    /// Numbers the listen streams, so one that ended is told from its successor.
    listen_seq: u64,
    /// Connected, waiting for the first tool listing.
    pending_ready: Option<PendingReady>,
    /// When a stdio server last wrote anything.
    liveness: Option<Arc<transport::tap::Seen>>,
    /// A recheck of a suspect service is scheduled.
    rechecking: bool,
    exit: ExitNotice,
}

impl ServiceActor {
    /// A new incarnation of a service (started by the supervisor).
    pub fn new(
        handle: Arc<ServiceHandle>,
        registry: Arc<Registry>,
        directory: Arc<crate::model::Directory>,
        supervisor: Recipient<ServiceDown>,
        monitor: Recipient<ReportSample>,
        metrics: Arc<Metrics>,
        generation: u64,
    ) -> Self {
        let service = handle.name().to_owned();
        Self {
            handle: handle.clone(),
            registry,
            directory,
            monitor,
            metrics,
            connecting_since: Instant::now(),
            live: None,
            lane: None,
            probe_in_flight: false,
            probe_failures: 0,
            resource_listens: std::collections::HashMap::new(),
            listen_seq: 0,
            pending_ready: None,
            liveness: None,
            rechecking: false,
            exit: ExitNotice {
                supervisor,
                handle: handle.clone(),
                service,
                generation,
                reason: None,
                requested: false,
                poison: false,
                refused: false,
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

    /// Ends this incarnation as refused: the supervisor marks the service
    /// failed instead of restarting it.
    fn refuse(&mut self, ctx: &mut Context<Self>, reason: String) {
        self.exit.refused = true;
        self.crash(ctx, reason);
    }

    /// The upstream went away. If its process died by itself with calls
    /// in flight, those calls are suspects — or, for one that already was
    /// and ran alone, the cause (see [`crate::quarantine`]).
    fn connection_closed(&mut self, ctx: &mut Context<Self>, closed: transport::Closed) {
        let mut reason = closed.reason.clone();
        let in_flight = self.lane.as_ref().map(|l| l.suspects()).unwrap_or_default();
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
        // Calls held on the broken connection may answer now.
        if let Some(lane) = &self.lane {
            lane.examined();
        }
        self.crash(ctx, reason);
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
        let lane = Lane::new(
            call::Upstream::new(&conn, handler.clone()),
            self.handle.clone(),
            self.directory.clone(),
            self.monitor.clone(),
            self.metrics.clone(),
            self.exit.generation,
        );
        self.handle
            .set_lane_part(crate::model::Part::new(self.exit.generation, lane.clone()));
        self.lane = Some(lane);
        self.live = Some(Live {
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
    }

    /// Marks the service ready, the first time its tools are listed (or
    /// the listing failed: the manifest's tools still stand).
    pub(super) fn become_ready(&mut self) {
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
