//! Self-tests of the running daemon, under the names the original system
//! gave them. Each one checks the live engine and fails when what it
//! checks is broken.
//!
//! `POST /api/test-mcp-integration {"testType"}`: `full` runs every check,
//! `quick` those that make no call, or one check by name (`discovery`,
//! `health`, `registry`, `streaming`, `routing`, `cache`, `errors`). Calls
//! go through the router like any client's, to read-only tools only.
//!
//! `POST /api/test-mcp-streaming {toolName?, arguments?}`: a real
//! streaming call, streamed back as it happens (`status`, `progress`,
//! `result`), then a `verdict`: result ok, progress seen (for a tool that
//! reports it) with every progress event before the result and rising,
//! and the latencies. Default: the longest-running read-only streaming tool
//! that has example arguments in its manifest (or needs none).
//!
//! `POST /api/test-mcp-performance {"iterations", "concurrency"}`: timings
//! of the tool table, `iterations` concurrent calls of a read-only tool
//! going upstream (success %, p50/p95/max, throughput, per replica), the
//! same calls through the result cache (hit rate), resident memory before
//! and after, and a `score` 0–100 with `recommendations` drawn from those
//! figures.
//!
//! Runs are rate-limited (two a second, bursts of four): each makes real
//! upstream calls.
//!
//! `GET /api/test-mcp-architecture`: the live actor tree (supervisor, each
//! service actor with its state, the router, the health monitor), the tool
//! → replicas table with each tool's routing target, and the invariants
//! that tie them: every configured service has a live actor or a stated
//! reason not to, and every listed tool has a ready provider.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::{HttpResponse, web};
use actix_web_lab::sse;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use mcpvisor_actors::cache::CacheUse;
use mcpvisor_actors::manifest::Streaming;
use mcpvisor_actors::registry::ToolEntry;
use mcpvisor_actors::service::{Incarnation, ServiceState};
use mcpvisor_actors::{
    CallError, CallOutcome, ErrorCategory, EventSink, HealthStatus, StreamEvent,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/test-mcp-architecture", web::get().to(architecture))
        .route("/api/test-mcp-integration", web::post().to(integration))
        .route("/api/test-mcp-streaming", web::post().to(streaming_test))
        .route("/api/test-mcp-performance", web::post().to(performance));
}

/// Body of `POST /api/test-mcp-performance`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PerformanceRequest {
    /// Calls to make (default 50, at most 1000).
    #[serde(default)]
    iterations: Option<usize>,
    /// Calls at once (default 8, at most 64).
    #[serde(default)]
    concurrency: Option<usize>,
}

/// The `q` quantile (0..1) of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn performance(
    state: web::Data<AppState>,
    body: Option<web::Json<PerformanceRequest>>,
) -> HttpResponse {
    use futures::StreamExt;
    if let Some(r) = limited() {
        return r;
    }
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let iterations = body.iterations.unwrap_or(50).clamp(1, 1000);
    let concurrency = body.concurrency.unwrap_or(8).clamp(1, 64);
    let Some(entry) = probe_tool(&state, false) else {
        return HttpResponse::BadRequest().json(json!({"error": {"category": "validation",
            "message": "no read-only tool that takes no arguments to call", "retryable": false}}));
    };
    let tool = entry.tool.name.to_string();
    let rss_before = mcpvisor_actors::process::usage().map(|u| u.rss_bytes);

    // The tool table, as tools/list reads it.
    let t = Instant::now();
    let table = state.registry.snapshot();
    let listed = serde_json::to_vec(&table.tools().iter().map(|e| &e.tool).collect::<Vec<_>>())
        .map_or(0, |v| v.len());
    let registry_ms = ms(t.elapsed());

    // Upstream: every call goes to a replica.
    let run = |bypass: bool| {
        let state = state.clone();
        let tool = tool.clone();
        async move {
            let started = Instant::now();
            let outcomes: Vec<(std::time::Duration, Result<CallOutcome, CallError>)> =
                futures::stream::iter(0..iterations)
                    .map(|_| {
                        let (state, tool) = (state.clone(), tool.clone());
                        async move {
                            let t = Instant::now();
                            let (o, _) = call(&state, &tool, None, bypass).await;
                            (t.elapsed(), o)
                        }
                    })
                    .buffer_unordered(concurrency)
                    .collect()
                    .await;
            (started.elapsed(), outcomes)
        }
    };
    let (wall, upstream) = run(true).await;
    let ok: Vec<&CallOutcome> = upstream
        .iter()
        .filter_map(|(_, o)| o.as_ref().ok())
        .filter(|o| !o.result.is_error())
        .collect();
    let success = ok.len() as f64 * 100.0 / iterations as f64;
    let mut lat: Vec<f64> = upstream.iter().map(|(d, _)| ms(*d)).collect();
    lat.sort_by(f64::total_cmp);
    let mut by_service: Vec<(String, Vec<f64>)> = Vec::new();
    for (d, o) in &upstream {
        if let Ok(o) = o {
            match by_service.iter_mut().find(|(s, _)| *s == o.service) {
                Some((_, v)) => v.push(ms(*d)),
                None => by_service.push((o.service.clone(), vec![ms(*d)])),
            }
        }
    }
    let mut replicas = Vec::new();
    let mut score: f64 = 100.0;
    let mut recommendations: Vec<String> = Vec::new();
    for (service, mut v) in by_service {
        v.sort_by(f64::total_cmp);
        let p95 = quantile(&v, 0.95);
        let limit = state
            .directory
            .get(&service)
            .map_or(1_000, |h| h.spec.health.degraded_latency_ms) as f64;
        if p95 > limit {
            score -= 15.0;
            recommendations.push(format!(
                "{service}: p95 {p95:.0} ms is over its degraded threshold of {limit:.0} ms; \
                 look at the upstream, or raise health.degraded_latency_ms if that is its normal pace"
            ));
        }
        replicas.push(json!({"service": service, "calls": v.len(),
            "p50Ms": quantile(&v, 0.5), "p95Ms": p95, "degradedAboveMs": limit}));
    }
    if success < 100.0 {
        score -= (100.0 - success).min(50.0);
        let failed: Vec<String> = upstream
            .iter()
            .filter_map(|(_, o)| o.as_ref().err().map(ToString::to_string))
            .take(3)
            .collect();
        recommendations.push(format!(
            "{:.1} % of calls failed (first errors: {}); see /api/health and /api/alerts",
            100.0 - success,
            failed.join("; ")
        ));
    }

    // Through the cache.
    let cache = state.router.cache();
    let cached = if cache.enabled() && cache.policy(&entry).is_some() {
        let (_, through) = run(false).await;
        let hits = through
            .iter()
            .filter(|(_, o)| o.as_ref().is_ok_and(|o| o.cached || o.coalesced))
            .count();
        let rate = hits as f64 / iterations as f64;
        if rate < 0.5 {
            score -= 10.0;
            recommendations.push(format!(
                "cache hit rate {:.0} % for repeated identical calls of `{tool}`: raise its cache.ttlMs or [cache] default_ttl_ms",
                rate * 100.0
            ));
        }
        json!({"enabled": true, "hitRate": rate, "stats": cache.stats()})
    } else {
        score -= 10.0;
        recommendations.push(
            "the result cache is off: [cache] enabled = true serves repeated reads without an upstream call".into(),
        );
        json!({"enabled": cache.enabled(), "hitRate": null})
    };

    // Replicas to fail over to.
    let groups = {
        let mut g: Vec<(String, usize)> = Vec::new();
        for h in state.directory.all() {
            let ready = usize::from(h.state() == ServiceState::Ready);
            match g.iter_mut().find(|(n, _)| n == h.spec.group()) {
                Some((_, n)) => *n += ready,
                None => g.push((h.spec.group().to_owned(), ready)),
            }
        }
        g
    };
    for (group, ready) in &groups {
        if *ready < 2 {
            score -= 15.0;
            recommendations.push(format!(
                "{group} has {ready} ready replica(s): add a second so a failure fails over instead of failing calls"
            ));
        }
    }
    let rss_after = mcpvisor_actors::process::usage().map(|u| u.rss_bytes);
    if let (Some(b), Some(a)) = (rss_before, rss_after)
        && a > b + 64 * 1024 * 1024
    {
        score -= 10.0;
        recommendations.push(format!(
            "resident memory grew by {} MiB during the test",
            (a - b) / (1024 * 1024)
        ));
    }
    if recommendations.is_empty() {
        recommendations.push("nothing to improve in these figures".into());
    }
    HttpResponse::Ok().json(json!({
        "tool": tool,
        "iterations": iterations,
        "concurrency": concurrency,
        "registry": {"tools": table.len(), "listMs": registry_ms, "listBytes": listed},
        "calls": {
            "successPercent": success,
            "p50Ms": quantile(&lat, 0.5),
            "p95Ms": quantile(&lat, 0.95),
            "maxMs": lat.last().copied().unwrap_or(0.0),
            "perSecond": iterations as f64 / wall.as_secs_f64().max(1e-9),
            "replicas": replicas,
        },
        "cache": cached,
        "memory": {"rssBeforeBytes": rss_before, "rssAfterBytes": rss_after},
        "score": score.clamp(0.0, 100.0).round(),
        "recommendations": recommendations,
    }))
}

/// Body of `POST /api/test-mcp-streaming`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StreamingRequest {
    #[serde(default)]
    tool_name: Option<String>,
    #[serde(default)]
    arguments: Option<serde_json::Map<String, Value>>,
}

/// The tool the streaming self-test calls by default, with its arguments.
fn default_streaming_call(
    state: &AppState,
) -> Option<(String, Option<serde_json::Map<String, Value>>)> {
    let table = state.registry.snapshot();
    table
        .tools()
        .iter()
        .filter(|e| e.annotations().read_only_hint == Some(true))
        .filter_map(|e| {
            let m = e.manifest.as_ref()?;
            m.streaming.as_ref()?;
            let needs = e
                .tool
                .input_schema
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| !r.is_empty());
            let arguments = match (&m.example, needs) {
                (Some(ex), _) => Some(Some(ex.clone())),
                (None, false) => Some(None),
                (None, true) => None,
            }?;
            let reports_progress = matches!(m.streaming, Some(Streaming::Progress));
            Some((
                (
                    reports_progress,
                    m.performance.estimated_duration_ms.unwrap_or(0),
                ),
                e.tool.name.to_string(),
                arguments,
            ))
        })
        .max_by_key(|(rank, _, _)| *rank)
        .map(|(_, name, args)| (name, args))
}

async fn streaming_test(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: Option<web::Json<StreamingRequest>>,
) -> HttpResponse {
    if let Some(r) = limited() {
        return r;
    }
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let (tool, arguments) = match body.tool_name {
        Some(t) => (t, body.arguments),
        None => match default_streaming_call(&state) {
            Some(c) => c,
            None => {
                return HttpResponse::BadRequest().json(json!({"error": {"category": "validation",
                    "message": "no read-only streaming tool with example arguments; name one with toolName and arguments",
                    "retryable": false}}));
            }
        },
    };
    let table = state.registry.snapshot();
    let Some(entry) = table.get(&tool).cloned() else {
        return HttpResponse::NotFound().json(json!({"error": {"category": "not_found",
            "message": format!("no tool named `{tool}`"), "retryable": false}}));
    };
    if entry.annotations().read_only_hint != Some(true) {
        return HttpResponse::BadRequest().json(json!({"error": {"category": "validation",
            "message": format!("`{tool}` is not read-only; self-tests call read-only tools only"),
            "retryable": false}}));
    }
    let client = super::guard::client_of(&req);
    if !client.may_use(&tool) {
        return HttpResponse::Forbidden().json(json!({"error": {"category": "auth",
            "message": format!("client `{}` may not use the tool `{tool}`", client.name),
            "retryable": false}}));
    }
    let reports_progress = matches!(
        entry.manifest.as_ref().and_then(|m| m.streaming.as_ref()),
        Some(Streaming::Progress)
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<sse::Event>(64);
    let router = state.router.clone();
    actix_web::rt::spawn(async move {
        let send = |name: &'static str, data: Value| {
            let tx = tx.clone();
            async move {
                if let Ok(d) = sse::Data::new_json(data) {
                    let _ = tx.send(d.event(name).into()).await;
                }
            }
        };
        send(
            "status",
            json!({"stage": "accepted", "tool": tool, "arguments": arguments}),
        )
        .await;
        let started = Instant::now();
        let (sink, mut events) = EventSink::channel(256);
        let call = router.execute(super::unaskable_call(
            tool.clone(),
            arguments,
            false,
            sink,
            mcpvisor_actors::router::call_span("self-test", &tool),
            CacheUse {
                bypass: true,
                client: Some(client.name.clone()),
            },
        ));
        tokio::pin!(call);
        let mut progress: Vec<f64> = Vec::new();
        let mut first_ms = None;
        let mut forward = |e: StreamEvent| -> Option<(&'static str, Value)> {
            first_ms.get_or_insert(started.elapsed().as_millis());
            match e {
                StreamEvent::Progress {
                    progress: p,
                    total,
                    message,
                } => {
                    progress.push(p);
                    Some((
                        "progress",
                        json!({"progress": p, "total": total, "message": message}),
                    ))
                }
                StreamEvent::Status {
                    stage,
                    message,
                    service,
                } => Some((
                    "status",
                    json!({"stage": stage, "message": message, "service": service}),
                )),
                StreamEvent::Log { .. } => None,
            }
        };
        let outcome = loop {
            tokio::select! {
                biased;
                Some(e) = events.recv() => {
                    if let Some((name, data)) = forward(e) {
                        send(name, data).await;
                    }
                }
                o = &mut call => break o,
                () = tx.closed() => return,
            }
        };
        // Progress still queued counts as arriving before the result.
        while let Ok(e) = events.try_recv() {
            if let Some((name, data)) = forward(e) {
                send(name, data).await;
            }
        }
        let latency = started.elapsed().as_millis();
        let (ok, detail) = match &outcome {
            Ok(done) if !done.result.is_error() => {
                send(
                    "result",
                    json!({"service": done.service, "attempts": done.attempts,
                    "durationMs": u64::try_from(latency).unwrap_or(u64::MAX)}),
                )
                .await;
                (true, format!("answered by {}", done.service))
            }
            Ok(_) => {
                send("result", json!({"isError": true})).await;
                (false, "the tool reported an error".to_owned())
            }
            Err(e) => {
                send(
                    "error",
                    json!({"category": e.category, "message": e.message}),
                )
                .await;
                (false, e.to_string())
            }
        };
        let rising = progress.windows(2).all(|w| w[1] > w[0]);
        let progress_ok = !reports_progress || !progress.is_empty();
        let passed = ok && rising && progress_ok;
        send(
            "verdict",
            json!({
                "passed": passed,
                "tool": tool,
                "detail": detail,
                "progressEvents": progress.len(),
                "progressExpected": reports_progress,
                "progressOrdered": rising,
                "firstEventMs": first_ms.map(|m| u64::try_from(m).unwrap_or(u64::MAX)),
                "latencyMs": u64::try_from(latency).unwrap_or(u64::MAX),
            }),
        )
        .await;
    });
    state.sse_response(rx, &req)
}

/// The self-tests' shared rate limit.
fn limiter() -> &'static DefaultDirectRateLimiter {
    static LIMIT: OnceLock<DefaultDirectRateLimiter> = OnceLock::new();
    LIMIT.get_or_init(|| {
        let quota = Quota::per_second(std::num::NonZeroU32::MIN.saturating_add(1))
            .allow_burst(std::num::NonZeroU32::MIN.saturating_add(3));
        RateLimiter::direct(quota)
    })
}

/// 429 when the self-tests run too often.
fn limited() -> Option<HttpResponse> {
    limiter().check().err().map(|_| {
        HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "1"))
            .json(json!({"error": {"category": "rate_limit",
                "message": "self-tests run at most twice a second", "retryable": true}}))
    })
}

/// One invariant and whether it holds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, passed: bool, detail: impl Into<String>) -> Self {
        Self {
            name,
            passed,
            duration_ms: None,
            detail: detail.into(),
        }
    }

    fn timed(mut self, started: Instant) -> Self {
        self.duration_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        self
    }
}

/// Body of `POST /api/test-mcp-integration`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IntegrationRequest {
    #[serde(default)]
    test_type: Option<String>,
}

/// The checks of the integration self-test, by name; whether each makes calls.
const CHECKS: [(&str, bool); 7] = [
    ("discovery", false),
    ("health", false),
    ("registry", false),
    ("routing", false),
    ("streaming", true),
    ("cache", true),
    ("errors", true),
];

async fn integration(
    state: web::Data<AppState>,
    body: Option<web::Json<IntegrationRequest>>,
) -> HttpResponse {
    if let Some(r) = limited() {
        return r;
    }
    let wanted = body
        .and_then(|b| b.into_inner().test_type)
        .unwrap_or_else(|| "full".into());
    let run: Vec<&str> = match wanted.as_str() {
        "full" => CHECKS.iter().map(|(n, _)| *n).collect(),
        "quick" => CHECKS.iter().filter(|(_, c)| !c).map(|(n, _)| *n).collect(),
        one if CHECKS.iter().any(|(n, _)| *n == one) => vec![one],
        other => {
            let names: Vec<&str> = CHECKS.iter().map(|(n, _)| *n).collect();
            return HttpResponse::BadRequest().json(json!({"error": {"category": "validation",
                "message": format!("unknown testType `{other}`: full, quick, or one of {}", names.join(", ")),
                "retryable": false}}));
        }
    };
    let started = Instant::now();
    let mut checks = Vec::new();
    for name in run {
        let t = Instant::now();
        let check = match name {
            "discovery" => discovery(&state),
            "health" => health(&state),
            "registry" => registry(&state),
            "routing" => routing(&state),
            "streaming" => streaming(&state).await,
            "cache" => cache(&state).await,
            _ => errors(&state).await,
        };
        checks.push(check.timed(t));
    }
    let passed = checks.iter().all(|c| c.passed);
    HttpResponse::Ok().json(json!({
        "passed": passed,
        "testType": wanted,
        "durationMs": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "checks": checks,
    }))
}

fn discovery(state: &AppState) -> Check {
    let all = state.directory.all();
    let ready: Vec<&str> = all
        .iter()
        .filter(|h| h.state() == ServiceState::Ready)
        .map(|h| h.name())
        .collect();
    Check::new(
        "service discovery",
        !ready.is_empty(),
        format!(
            "{} of {} configured services connected: {}",
            ready.len(),
            all.len(),
            ready.join(", ")
        ),
    )
}

fn health(state: &AppState) -> Check {
    let bad: Vec<String> = state
        .directory
        .all()
        .iter()
        .filter(|h| {
            matches!(
                h.health(),
                HealthStatus::Unhealthy | HealthStatus::Failed | HealthStatus::Disabled
            )
        })
        .map(|h| format!("{} {:?}", h.name(), h.health()).to_lowercase())
        .collect();
    Check::new(
        "health",
        bad.is_empty(),
        if bad.is_empty() {
            "every service healthy, degraded or not yet probed".to_owned()
        } else {
            format!("not healthy: {}", bad.join(", "))
        },
    )
}

fn registry(state: &AppState) -> Check {
    let table = state.registry.snapshot();
    let gaps = state.registry.unoffered();
    let passed = !table.is_empty() && gaps.is_empty();
    Check::new(
        "registry and manifests",
        passed,
        if table.is_empty() {
            "no tool is listed".to_owned()
        } else if gaps.is_empty() {
            format!("{} tools; every manifest tool has a provider", table.len())
        } else {
            let named: Vec<String> = gaps.iter().map(|(g, t)| format!("{g}.{t}")).collect();
            format!("manifest tools no replica offers: {}", named.join(", "))
        },
    )
}

fn routing(state: &AppState) -> Check {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for h in state.directory.all() {
        let ready = usize::from(h.state() == ServiceState::Ready);
        match groups.iter_mut().find(|(g, _)| g == h.spec.group()) {
            Some((_, n)) => *n += ready,
            None => groups.push((h.spec.group().to_owned(), ready)),
        }
    }
    let thin: Vec<String> = groups
        .iter()
        .filter(|(_, n)| *n < 2)
        .map(|(g, n)| format!("{g} ({n} ready)"))
        .collect();
    Check::new(
        "routing and failover readiness",
        thin.is_empty(),
        if thin.is_empty() {
            format!(
                "every logical service has a second ready replica to fail over to ({} services)",
                groups.len()
            )
        } else {
            format!("no replica to fail over to: {}", thin.join(", "))
        },
    )
}

/// A read-only tool callable without arguments, streaming ones first.
fn probe_tool(state: &AppState, streaming: bool) -> Option<std::sync::Arc<ToolEntry>> {
    let table = state.registry.snapshot();
    table
        .tools()
        .iter()
        .filter(|e| e.annotations().read_only_hint == Some(true))
        .filter(|e| {
            e.tool
                .input_schema
                .get("required")
                .and_then(Value::as_array)
                .is_none_or(|r| r.is_empty())
        })
        .find(|e| !streaming || e.manifest.as_ref().is_some_and(|m| m.streaming.is_some()))
        .cloned()
}

/// Runs `tool` with no arguments through the router; its outcome and the
/// events it produced.
async fn call(
    state: &AppState,
    tool: &str,
    arguments: Option<serde_json::Map<String, Value>>,
    bypass: bool,
) -> (Result<CallOutcome, CallError>, Vec<StreamEvent>) {
    let (sink, mut rx) = EventSink::channel(256);
    let outcome = state
        .router
        .execute(super::unaskable_call(
            tool.to_owned(),
            arguments,
            false,
            sink,
            mcpvisor_actors::router::call_span("self-test", tool),
            CacheUse {
                bypass,
                client: Some("self-test".into()),
            },
        ))
        .await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (outcome, events)
}

async fn streaming(state: &AppState) -> Check {
    let Some(entry) = probe_tool(state, true).or_else(|| probe_tool(state, false)) else {
        return Check::new(
            "streaming",
            false,
            "no read-only tool that takes no arguments to call",
        );
    };
    let started = Instant::now();
    let (outcome, events) = call(state, &entry.tool.name, None, true).await;
    let elapsed = started.elapsed().as_millis();
    match outcome {
        Ok(done) if !done.result.is_error() => Check::new(
            "streaming",
            true,
            format!(
                "`{}` answered by {} in {elapsed} ms after {} events",
                entry.tool.name,
                done.service,
                events.len()
            ),
        ),
        Ok(_) => Check::new(
            "streaming",
            false,
            format!("`{}` reported a tool error", entry.tool.name),
        ),
        Err(e) => Check::new("streaming", false, format!("`{}`: {e}", entry.tool.name)),
    }
}

async fn cache(state: &AppState) -> Check {
    let cache = state.router.cache();
    if !cache.enabled() {
        return Check::new(
            "cache",
            false,
            "the result cache is off ([cache] enabled = false)",
        );
    }
    let Some(entry) = probe_tool(state, false).filter(|e| cache.policy(e).is_some()) else {
        return Check::new(
            "cache",
            false,
            "no cached read-only tool that takes no arguments to call",
        );
    };
    let name = entry.tool.name.to_string();
    let (first, _) = call(state, &name, None, false).await;
    let (second, _) = call(state, &name, None, false).await;
    match (first, second) {
        (Ok(_), Ok(again)) if again.cached => Check::new(
            "cache",
            true,
            format!(
                "a second call of `{name}` was a hit (hit rate {:.2})",
                cache.stats().hit_rate
            ),
        ),
        (Ok(_), Ok(_)) => Check::new(
            "cache",
            false,
            format!("a second call of `{name}` went upstream again"),
        ),
        (Err(e), _) | (_, Err(e)) => Check::new("cache", false, format!("`{name}`: {e}")),
    }
}

async fn errors(state: &AppState) -> Check {
    let (unknown, _) = call(state, "mcpvisor.self-test.no-such-tool", None, true).await;
    let unknown_ok = unknown
        .as_ref()
        .err()
        .is_some_and(|e| e.category == ErrorCategory::NotFound);
    // A tool with a required argument, called without it.
    let table = state.registry.snapshot();
    let strict = table.tools().iter().find(|e| {
        e.tool
            .input_schema
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty())
    });
    let invalid_ok = match strict {
        Some(e) => {
            let (invalid, _) = call(state, &e.tool.name, None, true).await;
            invalid
                .as_ref()
                .err()
                .is_some_and(|e| e.category == ErrorCategory::Validation)
        }
        None => true,
    };
    Check::new(
        "error handling",
        unknown_ok && invalid_ok,
        format!(
            "unknown tool refused as not_found: {unknown_ok}; missing required arguments refused as validation: {invalid_ok}"
        ),
    )
}

async fn architecture(state: web::Data<AppState>) -> HttpResponse {
    if let Some(r) = limited() {
        return r;
    }
    HttpResponse::Ok().json(architecture_report(&state))
}

/// The actor tree, the tool table and the invariants, as JSON.
pub fn architecture_report(state: &AppState) -> Value {
    let services = state.directory.all();
    let mut checks = Vec::new();

    let supervisor_alive = state.supervisor.connected();
    checks.push(Check::new(
        "supervisor running",
        supervisor_alive,
        if supervisor_alive {
            "the supervisor actor is running"
        } else {
            "the supervisor actor has stopped: nothing restarts failed services"
        },
    ));
    let monitor_alive = state.monitor.connected();
    checks.push(Check::new(
        "health monitor running",
        monitor_alive,
        if monitor_alive {
            "the health monitor actor is running"
        } else {
            "the health monitor actor has stopped: no health or alerts"
        },
    ));

    // Every configured service: a live actor, or a reason it has none.
    let mut unexplained = Vec::new();
    let actors: Vec<Value> = services
        .iter()
        .map(|h| {
            let snap = h.snapshot();
            let alive = h.addr().is_some_and(|a| a.connected());
            let reason = match snap.state {
                ServiceState::Disabled => Some("disabled by an operator".to_owned()),
                ServiceState::Failed => Some(
                    snap.last_error
                        .clone()
                        .unwrap_or_else(|| "restart intensity exceeded".into()),
                ),
                ServiceState::Restarting | ServiceState::Starting if !alive => Some(
                    snap.last_error
                        .clone()
                        .unwrap_or_else(|| "being (re)started".into()),
                ),
                _ => None,
            };
            if !alive && reason.is_none() {
                unexplained.push(format!("{} ({:?})", snap.name, snap.state).to_lowercase());
            }
            json!({
                "actor": "service",
                "name": snap.name,
                "group": snap.group,
                "state": snap.state,
                "health": snap.health,
                "generation": snap.generation,
                "pid": snap.pid,
                "alive": alive,
                "reason": reason,
            })
        })
        .collect();
    checks.push(Check::new(
        "every service has an actor or a reason",
        unexplained.is_empty(),
        if unexplained.is_empty() {
            format!("{} services accounted for", services.len())
        } else {
            format!("no actor and no reason: {}", unexplained.join(", "))
        },
    ));

    // Every listed tool: a ready provider, and where a call would go.
    let table = state.registry.snapshot();
    let mut unserved = Vec::new();
    let tools: Vec<Value> = table
        .tools()
        .iter()
        .map(|e| {
            let providers: Vec<Value> = e
                .providers
                .iter()
                .map(|p| {
                    let st = state.directory.get(p).map(|h| h.state());
                    json!({"service": p, "state": st})
                })
                .collect();
            let ready = e.providers.iter().any(|p| {
                state
                    .directory
                    .get(p)
                    .is_some_and(|h| h.state() == ServiceState::Ready)
            });
            if !ready {
                unserved.push(e.tool.name.to_string());
            }
            json!({
                "tool": e.tool.name,
                "group": e.group,
                "providers": providers,
                "target": state.router.preferred(&e.tool.name),
            })
        })
        .collect();
    checks.push(Check::new(
        "every listed tool has a ready provider",
        unserved.is_empty() && !table.is_empty(),
        if table.is_empty() {
            "no tool is listed".to_owned()
        } else if unserved.is_empty() {
            format!("{} tools, each with a ready replica", table.len())
        } else {
            format!("no ready replica for: {}", unserved.join(", "))
        },
    ));

    let passed = checks.iter().all(|c| c.passed);
    json!({
        "passed": passed,
        "tree": {
            "supervisor": {"alive": supervisor_alive, "children": actors},
            "router": {"kind": "shared structure (no actor)", "tools": table.len()},
            "healthMonitor": {"alive": monitor_alive},
        },
        "tools": tools,
        "checks": checks,
    })
}
