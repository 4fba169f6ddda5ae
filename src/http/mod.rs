//! The HTTP face of mcpvisor (actix-web). It parses, authenticates and
//! renders; it never decides routing — every call becomes an `Execute`
//! message to the router, and the call's events are rendered as they come.

mod access_log;
mod admin;
mod batch;
mod dashboard;
mod drills;
mod errors;
pub mod guard;
mod health;
mod mcp;
mod oauth;
mod selftest;
mod stream_api;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::{App, HttpServer, web};
use mcpvisor_actors::metrics::Metrics;
use mcpvisor_actors::registry::ToolEntry;
use mcpvisor_actors::{Directory, HealthMonitor, Registry, Router, Supervisor};

use crate::config::ServerConfig;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Routes calls.
    pub router: Router,
    /// Restarts services; takes drill faults.
    pub supervisor: Addr<Supervisor>,
    /// Reloads the configuration.
    pub reloader: Arc<crate::reload::Reloader>,
    /// Health, history and alerts.
    pub monitor: Addr<HealthMonitor>,
    /// Counters, histograms and gauges.
    pub metrics: Arc<Metrics>,
    /// Tool table.
    pub registry: Arc<Registry>,
    /// Services.
    pub directory: Arc<Directory>,
    /// HTTP settings.
    pub server: Arc<ServerConfig>,
    /// Legacy MCP sessions.
    pub sessions: Arc<mcp::Sessions>,
    /// Streams of clients on the HTTP+SSE transport.
    pub legacy_links: Arc<mcp::Links>,
    /// Drills against this daemon, one at a time.
    pub drills: Arc<mcpvisor_actors::drill::Drills>,
    /// Host, Origin, authentication and per-client limits.
    pub guard: Arc<guard::Guard>,
}

/// The running engine, as the HTTP layer reaches it.
pub struct Engine {
    pub router: Router,
    pub supervisor: Addr<Supervisor>,
    pub reloader: Arc<crate::reload::Reloader>,
    pub monitor: Addr<HealthMonitor>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub directory: Arc<Directory>,
}

impl AppState {
    /// Shared state for the HTTP workers.
    pub fn new(engine: Engine, server: ServerConfig, guard: guard::Guard) -> Self {
        let Engine {
            router,
            supervisor,
            reloader,
            monitor,
            metrics,
            registry,
            directory,
        } = engine;
        let sessions = Arc::new(mcp::Sessions::new(
            Duration::from_secs(server.session_idle_secs),
            server.max_sessions,
        ));
        mcp::Sessions::sweep(&sessions);
        let legacy_links = Arc::new(mcp::Links::new(server.max_sessions));
        Self {
            router,
            supervisor,
            reloader,
            monitor,
            metrics,
            registry,
            directory,
            server: Arc::new(server),
            legacy_links,
            sessions,
            drills: Arc::default(),
            guard: Arc::new(guard),
        }
    }

    /// Whether a tool belongs in listings: some replica offering it is
    /// serving, or went away less than its grace period ago.
    pub fn listed(&self, entry: &ToolEntry) -> bool {
        entry
            .providers
            .iter()
            .filter_map(|p| self.directory.get(p))
            .any(|h| h.listable())
    }

    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.server.heartbeat_ms.max(100))
    }

    /// A `text/event-stream` response of the events `rx` yields, with
    /// heartbeats and no proxy buffering.
    fn sse_response(
        &self,
        rx: tokio::sync::mpsc::Receiver<actix_web_lab::sse::Event>,
        req: &actix_web::HttpRequest,
    ) -> actix_web::HttpResponse {
        let events = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        });
        self.sse_stream(events, req)
    }

    /// A `text/event-stream` response of a stream of events: the one
    /// builder of every SSE route (heartbeats, no proxy buffering).
    fn sse_stream(
        &self,
        events: impl futures::Stream<Item = actix_web_lab::sse::Event> + 'static,
        req: &actix_web::HttpRequest,
    ) -> actix_web::HttpResponse {
        use actix_web::Responder;
        actix_web_lab::sse::Sse::from_infallible_stream(events)
            .with_keep_alive(self.heartbeat())
            .customize()
            .insert_header(("X-Accel-Buffering", "no"))
            .respond_to(req)
            .map_into_boxed_body()
    }
}

/// A tool call from an HTTP API that cannot put questions to its caller
/// (the SSE, batch and self-test APIs): upstreams are told it declares no
/// capabilities.
fn unaskable_call(
    tool: String,
    arguments: Option<serde_json::Map<String, serde_json::Value>>,
    validated: bool,
    events: mcpvisor_actors::EventSink,
    span: tracing::Span,
    cache: mcpvisor_actors::cache::CacheUse,
) -> mcpvisor_actors::Execute {
    mcpvisor_actors::Execute {
        tool,
        arguments,
        validated,
        events,
        caller: mcpvisor_actors::Caller {
            capabilities: Some(serde_json::json!({})),
            ..mcpvisor_actors::Caller::default()
        },
        service: None,
        span,
        cache,
    }
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig, state: &AppState) {
    let json_cfg = web::JsonConfig::default()
        .limit(state.server.max_body_bytes)
        .error_handler(errors::json_payload_error);
    cfg.app_data(web::Data::new(state.clone()))
        .app_data(json_cfg)
        .app_data(web::PayloadConfig::new(state.server.max_body_bytes))
        .configure(mcp::routes)
        .configure(stream_api::routes)
        .configure(batch::routes)
        .configure(selftest::routes)
        .configure(health::routes)
        .configure(admin::routes)
        .configure(drills::routes)
        .configure(oauth::routes)
        .configure(dashboard::routes);
}

/// Binds the listener; returns the server, the address it got and how
/// many worker threads it runs. Each worker registers its arbiter in
/// `homes` as it starts: the engine's actors live there.
pub fn bind(
    state: AppState,
    homes: mcpvisor_actors::homes::Homes,
) -> std::io::Result<(actix_web::dev::Server, std::net::SocketAddr, usize)> {
    let listen = state.server.listen;
    let workers = worker_count(state.server.workers);
    let server = HttpServer::new(move || {
        homes.register_current();
        let state = state.clone();
        App::new()
            // Boxed: the guard's future (with the auth check's inside it) is
            // kilobytes, and a future held inline would sit in every
            // connection's task for as long as the connection lives, idle
            // streams included.
            .wrap(actix_web::middleware::from_fn(|req, next| {
                Box::pin(guard::check(req, next))
            }))
            .wrap(actix_web::middleware::from_fn(access_log::middleware))
            .configure(move |cfg| routes(cfg, &state))
    })
    .workers(workers)
    // Replies are written in small pieces (SSE events): without NODELAY,
    // Nagle's algorithm meets the client's delayed ACK and adds ~40 ms.
    .tcp_nodelay(true)
    // A client that closes its side is gone: notice it at once, so its
    // call is cancelled upstream without waiting for the next write.
    .h1_allow_half_closed(false)
    .shutdown_timeout(5)
    // The daemon stops on its own signal handling: its services must end
    // before the workers they run on (see `cli::serve`).
    .disable_signals()
    .bind(listen)?;
    let addr = server.addrs().first().copied().unwrap_or(listen);
    Ok((server.run(), addr, workers))
}

/// HTTP worker threads: as configured, or one per core but one (the
/// upstream servers and their clients need a core too), at least one, at
/// most 8. The engine's actors run on these same threads.
fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .clamp(1, 8)
}
