//! The dashboard at `/`: a page, its script and its style, compiled into
//! the binary (nothing is loaded from the network, there is no build step),
//! and `GET /api/dashboard/events`, the SSE stream that keeps it live.
//!
//! The page's shell holds no data, so it is served like the probes: Host
//! and Origin are checked, a token is not asked for. Everything it shows
//! comes from the API (this stream, `/api/mcp/stream`, `/api/drills`) under
//! the API's rules: with client authentication on, the page asks for a
//! token and sends it as a bearer token.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use mcpvisor_actors::health::{GetAlerts, GetHealth, GetHistory};
use serde_json::{Value, json};

use super::AppState;
use super::guard::client_of;

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

/// How often the stream looks for changes.
const TICK: Duration = Duration::from_millis(1000);
/// Health samples per service in a sparkline.
const SPARK: usize = 40;
/// Closed alerts shown besides the active ones.
const RECENT_ALERTS: usize = 20;

/// Where the page and its assets live: open routes (no data in them).
pub const ASSET_PATHS: [&str; 3] = ["/", "/dashboard/app.js", "/dashboard/style.css"];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(page))
        .route("/dashboard/app.js", web::get().to(script))
        .route("/dashboard/style.css", web::get().to(style))
        .route("/api/dashboard/events", web::get().to(events));
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", PAGE)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /api/dashboard/events`: a `state` event whenever services, health
/// or alerts change (looked at every second), and a `tools` event whenever
/// the tools or their routing targets do — each a whole picture, so a page that joins late
/// or misses one loses nothing.
async fn events(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let client = client_of(&req);
    let watcher = Watcher {
        state: state.clone(),
        client,
        last_state: String::new(),
        last_tools: String::new(),
        pending: Vec::new(),
        first: true,
    };
    let events = futures::stream::unfold(watcher, |mut w| async move {
        loop {
            if let Some(event) = w.pending.pop() {
                return Some((event, w));
            }
            if !w.first {
                tokio::time::sleep(TICK).await;
            }
            w.first = false;
            w.look().await;
        }
    });
    state.sse_stream(events, &req)
}

struct Watcher {
    state: web::Data<AppState>,
    client: crate::auth::Client,
    last_state: String,
    last_tools: String,
    /// Events to send, last first.
    pending: Vec<sse::Event>,
    first: bool,
}

impl Watcher {
    async fn look(&mut self) {
        let now = self.snapshot().await.to_string();
        if now != self.last_state {
            self.pending
                .push(sse::Data::new(now.clone()).event("state").into());
            self.last_state = now;
        }
        // Routing targets move with health, so tools are looked at too.
        let tools = self.tools().to_string();
        if tools != self.last_tools {
            self.pending
                .push(sse::Data::new(tools.clone()).event("tools").into());
            self.last_tools = tools;
        }
    }

    async fn snapshot(&self) -> Value {
        let state = &self.state;
        let services: Vec<_> = state.directory.all().iter().map(|h| h.snapshot()).collect();
        let health = state.monitor.send(GetHealth).await.unwrap_or_default();
        let alerts = state
            .monitor
            .send(GetAlerts { active_only: false })
            .await
            .unwrap_or_default();
        let (active, closed): (Vec<_>, Vec<_>) = alerts.into_iter().partition(|a| a.active);
        let mut sparks = serde_json::Map::new();
        for h in state.directory.all().iter() {
            let history = state
                .monitor
                .send(GetHistory {
                    service: h.name().to_owned(),
                })
                .await
                .ok()
                .flatten();
            if let Some((_, samples)) = history {
                let tail = samples.len().saturating_sub(SPARK);
                let points: Vec<Value> = samples[tail..]
                    .iter()
                    .map(|s| {
                        if s.ok {
                            json!(s.latency_ms)
                        } else {
                            Value::Null
                        }
                    })
                    .collect();
                sparks.insert(h.name().to_owned(), Value::Array(points));
            }
        }
        json!({
            "services": services,
            "health": health,
            "sparklines": sparks,
            "alerts": {
                "active": active,
                "recent": closed.into_iter().take(RECENT_ALERTS).collect::<Vec<_>>(),
            },
            "drills": {
                "running": state.drills.busy(),
                "kinds": mcpvisor_actors::drill::DrillKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>(),
                "reports": state.drills.reports(),
            },
            "cache": state.router.cache().stats(),
            "adminApi": !state.server.admin_token.is_empty(),
        })
    }

    /// The tools this client may call, as `tools/list` shows them, each
    /// with the replica a call would go to now.
    fn tools(&self) -> Value {
        let state = &self.state;
        let table = state.registry.snapshot();
        let tools: Vec<Value> = table
            .tools()
            .iter()
            .filter(|e| state.listed(e) && self.client.may_use(&e.tool.name))
            .map(|e| {
                json!({
                    "name": e.tool.name,
                    "description": e.tool.description,
                    "service": e.group,
                    "providers": e.providers,
                    "target": state.router.preferred(&e.tool.name),
                    "readOnly": e.annotations().read_only_hint,
                    "inputSchema": e.tool.input_schema,
                })
            })
            .collect();
        json!({"count": tools.len(), "tools": tools})
    }
}
