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

use rmcp::model::JsonObject;
use serde_json::Value;

mod attempts;
pub mod passthrough;

use crate::cache::{CacheUse, ResultCache};
use crate::error::{CallError, ErrorCategory};
use crate::hedge::{HedgeConfig, Hedging};
use crate::metrics::Metrics;
use crate::model::{Directory, HealthStatus, ServiceHandle, ServiceState};
use crate::registry::{Registry, ToolEntry};
pub use crate::reply::CallOutcome;
use crate::retry::RetryConfig;
use crate::service::Caller;
use crate::stream::EventSink;

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Most attempts one call may make across replicas.
    pub max_attempts: u32,
    /// How long a call may wait for a restarting replica to come back.
    pub wait_for_service: Duration,
    /// Retry strategies per error category.
    pub retry: Arc<RetryConfig>,
    /// When safe calls go to a second replica.
    pub hedge: HedgeConfig,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            wait_for_service: Duration::from_secs(10),
            retry: Arc::default(),
            hedge: HedgeConfig::default(),
        }
    }
}

/// One tool call to run somewhere.
pub struct Execute {
    /// Tool name as clients know it.
    pub tool: String,
    /// Arguments (validated against the schema before anything is sent).
    pub arguments: Option<JsonObject>,
    /// The caller validated the arguments already (the HTTP handlers do,
    /// to refuse bad ones before a stream starts).
    pub validated: bool,
    /// Where progress and status events go.
    pub events: EventSink,
    /// What the caller brings besides the arguments.
    pub caller: Caller,
    /// Only this service may take the call (the continuation of an
    /// `input_required` round it started).
    pub service: Option<String>,
    /// The call's span (`request_id`, `tool`; `service` and `attempt` are
    /// recorded as the call goes): every log line of the call is in it.
    pub span: tracing::Span,
    /// Whether the result cache may answer, and for whom.
    pub cache: CacheUse,
}

/// The span of one call: its request id and tool now, the service and
/// attempt once routed.
pub fn call_span(request_id: &str, tool: &str) -> tracing::Span {
    tracing::info_span!(
        "call",
        request_id = %request_id,
        tool = %tool,
        service = tracing::field::Empty,
        attempt = tracing::field::Empty,
    )
}

/// The router: a plain shared structure, not an actor — it owns no
/// mutable state, so a call is routed on the thread that received it, with
/// no mailbox hop. Cheap to clone.
#[derive(Clone)]
pub struct Router(Arc<Tables>);

/// What routing reads.
struct Tables {
    registry: Arc<Registry>,
    directory: Arc<Directory>,
    config: RouterConfig,
    metrics: Arc<Metrics>,
    hedging: Hedging,
    cache: Arc<ResultCache>,
}

impl Router {
    /// A router over the given tools and services.
    pub fn new(
        registry: Arc<Registry>,
        directory: Arc<Directory>,
        config: RouterConfig,
        metrics: Arc<Metrics>,
        cache: Arc<ResultCache>,
    ) -> Self {
        let hedging = Hedging::new(config.hedge.clone());
        Self(Arc::new(Tables {
            registry,
            directory,
            config,
            metrics,
            hedging,
            cache,
        }))
    }

    /// The result cache calls go through.
    pub fn cache(&self) -> &Arc<ResultCache> {
        &self.0.cache
    }

    /// The replica a call of `tool` would go to now, if any can take it.
    pub fn preferred(&self, tool: &str) -> Option<String> {
        let table = self.0.registry.snapshot();
        let entry = table.get(tool)?;
        best_first(
            entry
                .providers
                .iter()
                .filter_map(|n| self.0.directory.get(n)),
        )
        .first()
        .map(|h| h.name().to_owned())
    }

    /// Runs one call to its outcome, in the call's span. The future owns
    /// what it needs, so it can be spawned.
    pub fn execute(
        &self,
        msg: Execute,
    ) -> impl std::future::Future<Output = Result<CallOutcome, CallError>> + use<> {
        let tables = self.0.clone();
        let span = msg.span.clone();
        tracing::Instrument::instrument(tables.run(msg), span)
    }
}

impl Tables {
    async fn run(self: Arc<Self>, msg: Execute) -> Result<CallOutcome, CallError> {
        let table = self.registry.snapshot();
        let entry = table.get(&msg.tool).cloned().ok_or_else(|| {
            CallError::new(
                ErrorCategory::NotFound,
                format!("no tool named `{}`", msg.tool),
            )
        })?;
        if !msg.validated {
            let empty = Value::Object(JsonObject::new());
            match &msg.arguments {
                Some(a) => check_arguments(&entry, &Value::Object(a.clone()))?,
                None => check_arguments(&entry, &empty)?,
            }
        }
        // A continuation of an input round, or a call pinned to one
        // replica, depends on more than the tool and its arguments.
        let plain = msg.service.is_none()
            && msg.caller.input_responses.is_none()
            && msg.caller.request_state.is_none();
        // A bypassing call goes upstream itself: no lookup, no store, and
        // no sharing of an identical call already in flight.
        let policy = if plain && !msg.cache.bypass {
            self.cache.policy(&entry)
        } else {
            None
        };
        let Some(policy) = policy else {
            let writes = !entry.annotations().read_only_hint.unwrap_or(false);
            let outcome = self.attempt(&entry, msg).await;
            if writes && self.cache.enabled() && may_have_run(&outcome) {
                self.cache.wrote(&entry);
            }
            return outcome;
        };
        let key = self.cache.key(
            &entry,
            policy,
            msg.arguments.as_ref(),
            msg.cache.client.clone(),
        );
        let started = Instant::now();
        if let Some(hit) = self.cache.lookup(&key) {
            let seconds = started.elapsed().as_secs_f64();
            self.metrics.call(
                &hit.service,
                entry.tool.name.as_ref(),
                Ok(hit.result.is_error()),
                seconds,
            );
            return Ok(hit);
        }
        let events = msg.events.clone();
        let tables = self.clone();
        let shared = entry.clone();
        self.cache
            .clone()
            .run(key, policy, events, move |sink| {
                // The shared call hears no one's questions: it answers
                // everyone waiting.
                let msg = Execute {
                    events: sink,
                    ..msg
                };
                let span = msg.span.clone();
                tracing::Instrument::instrument(
                    async move { tables.attempt(&shared, msg).await },
                    span,
                )
            })
            .await
    }

    /// Routes the call to a replica and runs it (no cache involved).
    async fn attempt(&self, entry: &ToolEntry, msg: Execute) -> Result<CallOutcome, CallError> {
        let started = Instant::now();
        let outcome = attempts::execute(
            entry,
            msg.arguments,
            msg.events,
            Assignment {
                caller: msg.caller,
                service: msg.service,
            },
            attempts::Engine {
                directory: &self.directory,
                config: &self.config,
                metrics: &self.metrics,
                hedging: &self.hedging,
            },
        )
        .await;
        let tool = entry.tool.name.as_ref();
        let seconds = started.elapsed().as_secs_f64();
        match &outcome {
            Ok(done) => self
                .metrics
                .call(&done.service, tool, Ok(done.result.is_error()), seconds),
            Err(e) => {
                let service = e.services.last().map_or("none", String::as_str);
                self.metrics.call(service, tool, Err(e.category), seconds);
            }
        }
        outcome
    }
}

/// Whether a finished call may have changed something upstream.
fn may_have_run(outcome: &Result<CallOutcome, CallError>) -> bool {
    match outcome {
        Ok(_) => true,
        Err(e) => e.delivery != crate::error::Delivery::NeverSent,
    }
}

/// Validates arguments (a JSON object, `{}` when absent) against the
/// tool's input schema.
pub fn check_arguments(entry: &ToolEntry, arguments: &Value) -> Result<(), CallError> {
    entry.validate(arguments).map_err(|errors| {
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
/// still connected, then a suspect one, are the last resorts.
fn rank(h: &ServiceHandle) -> Option<u8> {
    if h.state() != ServiceState::Ready {
        return None;
    }
    // Not answering: only when nothing else can take the call.
    if h.is_suspect() {
        return Some(4);
    }
    match h.health() {
        HealthStatus::Healthy => Some(0),
        HealthStatus::Degraded => Some(1),
        HealthStatus::Unknown => Some(2),
        HealthStatus::Unhealthy => Some(3),
        HealthStatus::Disabled | HealthStatus::Failed => None,
    }
}

/// The usable services among `services` (ready, breaker admitting), best
/// first: not throttled by a Retry-After, then healthy over degraded over
/// unknown, then priority, then the lowest in-flight count and latency.
pub(crate) fn best_first<H: std::borrow::Borrow<Arc<ServiceHandle>>>(
    services: impl Iterator<Item = H>,
) -> Vec<Arc<ServiceHandle>> {
    // Each key is read once: they are live figures other threads update.
    let mut c: Vec<(RouteKey, Arc<ServiceHandle>)> = services
        .filter(|h| h.borrow().breaker_admits())
        .filter_map(|h| {
            let h = h.borrow();
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

/// Who a call is for and where it must go.
pub(crate) struct Assignment {
    pub(crate) caller: Caller,
    /// The one service allowed to take it, if any.
    pub(crate) service: Option<String>,
}
