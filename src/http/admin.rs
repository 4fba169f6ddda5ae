//! Operator routes: services, liveness, readiness, and fault injection.

use actix_web::{HttpResponse, web};
use mcpvisor_actors::service::ServiceState;
use mcpvisor_actors::supervisor::{InjectFault, SetEnabled};
use mcpvisor_actors::{CallError, ErrorCategory};
use serde_json::json;

use super::AppState;
use super::errors::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/services", web::get().to(services))
        .route(
            "/api/services/{name}/inject-panic",
            web::post().to(inject_panic),
        )
        .route("/api/services/{name}/enable", web::post().to(enable))
        .route("/api/services/{name}/disable", web::post().to(disable))
        .service(
            web::resource("/api/cache")
                .route(web::get().to(cache_stats))
                .route(web::delete().to(cache_clear)),
        )
        .route("/api/reload", web::post().to(reload))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// `GET /api/services`: every service's state, restarts, load and latency,
/// and the tools it offers now — counted as `tools/list` shows them (a
/// service down past its grace period offers none).
async fn services(state: web::Data<AppState>) -> HttpResponse {
    let table = state.registry.snapshot();
    let mut offered: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut listed = 0;
    for entry in table.tools().iter().filter(|e| state.listed(e)) {
        listed += 1;
        for provider in &entry.providers {
            *offered.entry(provider.as_str()).or_default() += 1;
        }
    }
    let services: Vec<_> = state
        .directory
        .all()
        .iter()
        .map(|h| {
            let mut v = serde_json::to_value(h.snapshot()).unwrap_or_default();
            let tools = if h.listable() {
                offered.get(h.name()).copied().unwrap_or(0)
            } else {
                0
            };
            v["tools"] = json!(tools);
            v
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "services": services,
        "tools": listed,
        "mcpSessions": state.sessions.len(),
    }))
}

/// `POST /api/reload` (admin): reads the config file again and applies its
/// services; 422 with the file, line and field when the file is refused.
async fn reload(state: web::Data<AppState>) -> HttpResponse {
    match state.reloader.reload("POST /api/reload").await {
        Ok(applied) => HttpResponse::Ok().json(applied),
        Err(e @ crate::reload::ReloadError::Invalid(_)) => {
            HttpResponse::UnprocessableEntity().json(json!({"error": e.to_string()}))
        }
        Err(e) => HttpResponse::ServiceUnavailable().json(json!({"error": e.to_string()})),
    }
}

/// `GET /api/cache`: the result cache's size, bounds and hit figures.
async fn cache_stats(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.router.cache().stats())
}

/// `DELETE /api/cache` (admin): drops every cached result.
async fn cache_clear(state: web::Data<AppState>) -> HttpResponse {
    let cleared = state.router.cache().clear();
    tracing::info!(cleared, "result cache cleared");
    HttpResponse::Ok().json(json!({"cleared": cleared}))
}

/// `GET /healthz`: the process is alive and answering.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: every logical service has at least one ready replica.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut groups: std::collections::BTreeMap<&str, bool> = Default::default();
    let all = state.directory.all();
    for h in &all {
        if h.state() == ServiceState::Disabled {
            continue;
        }
        *groups.entry(h.spec.group()).or_default() |= h.state() == ServiceState::Ready;
    }
    let ready = !groups.is_empty() && groups.values().all(|r| *r);
    let body = json!({"ready": ready, "services": groups});
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn enable(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(&state, name.into_inner(), true).await
}

async fn disable(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(&state, name.into_inner(), false).await
}

/// `POST /api/services/{name}/enable|disable`: switches a service on or off
/// at run time (enabling also revives a service the supervisor gave up on).
async fn set_enabled(
    state: &AppState,
    service: String,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    match state
        .supervisor
        .send(SetEnabled {
            service: service.clone(),
            enabled,
        })
        .await
    {
        Ok(Ok(now)) => {
            Ok(HttpResponse::Ok()
                .json(json!({"service": service, "enabled": enabled, "state": now})))
        }
        Ok(Err(message)) => Err(CallError::new(ErrorCategory::NotFound, message).into()),
        Err(e) => Err(CallError::new(ErrorCategory::Internal, e.to_string()).into()),
    }
}

/// `POST /api/services/{name}/inject-panic`: makes the service actor's next
/// handler panic, to prove the supervisor restarts it.
async fn inject_panic(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let service = name.into_inner();
    match state
        .supervisor
        .send(InjectFault {
            service: service.clone(),
        })
        .await
    {
        Ok(Ok(())) => {
            Ok(HttpResponse::Accepted().json(json!({"injected": "panic", "service": service})))
        }
        Ok(Err(message)) => Err(CallError::new(ErrorCategory::NotFound, message).into()),
        Err(e) => Err(CallError::new(ErrorCategory::Internal, e.to_string()).into()),
    }
}
