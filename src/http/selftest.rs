//! Self-tests of the running daemon, under the names the original system
//! gave them. Each one checks the live engine and fails when what it
//! checks is broken.
//!
//! `GET /api/test-mcp-architecture`: the live actor tree (supervisor, each
//! service actor with its state, the router, the health monitor), the tool
//! → replicas table with each tool's routing target, and the invariants
//! that tie them: every configured service has a live actor or a stated
//! reason not to, and every listed tool has a ready provider.

use actix_web::{HttpResponse, web};
use mcpvisor_actors::service::ServiceState;
use serde::Serialize;
use serde_json::{Value, json};

use super::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/test-mcp-architecture", web::get().to(architecture));
}

/// One invariant and whether it holds.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, passed: bool, detail: impl Into<String>) -> Self {
        Self {
            name,
            passed,
            detail: detail.into(),
        }
    }
}

async fn architecture(state: web::Data<AppState>) -> HttpResponse {
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
