//! Health and alerts: `/api/health`, `/api/health/{service}/history`,
//! `/api/alerts`.

use actix_web::{HttpResponse, web};
use mcpvisor_actors::health::{GetAlerts, GetHealth, GetHistory};
use mcpvisor_actors::{CallError, ErrorCategory};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::errors::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/health", web::get().to(health))
        .route("/api/health/{service}/history", web::get().to(history))
        .route("/api/alerts", web::get().to(alerts));
}

fn unavailable(e: actix::MailboxError) -> ApiError {
    CallError::new(
        ErrorCategory::Internal,
        format!("health monitor unavailable: {e}"),
    )
    .into()
}

/// `GET /api/health`: every service's status, uptime and latency, and an
/// overall verdict.
async fn health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let services = state.monitor.send(GetHealth).await.map_err(unavailable)?;
    let active = state
        .monitor
        .send(GetAlerts { active_only: true })
        .await
        .map_err(unavailable)?;
    let worst = services.iter().map(|s| s.status).max_by_key(|s| *s as u8);
    let overall = if services.iter().all(|s| s.status.serving()) {
        "healthy"
    } else if services.iter().any(|s| s.status.serving()) {
        "degraded"
    } else {
        "unhealthy"
    };
    Ok(HttpResponse::Ok().json(json!({
        "status": overall,
        "worst": worst,
        "activeAlerts": active.len(),
        "services": services,
    })))
}

/// `GET /api/health/{service}/history`: the samples behind the figures.
async fn history(
    state: web::Data<AppState>,
    service: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let service = service.into_inner();
    let found = state
        .monitor
        .send(GetHistory {
            service: service.clone(),
        })
        .await
        .map_err(unavailable)?;
    let (health, samples) = found.ok_or_else(|| {
        CallError::new(
            ErrorCategory::NotFound,
            format!("no service named `{service}`"),
        )
    })?;
    Ok(HttpResponse::Ok().json(json!({"health": health, "samples": samples})))
}

#[derive(Debug, Deserialize)]
struct AlertQuery {
    #[serde(default)]
    active: bool,
}

/// `GET /api/alerts[?active=true]`: alerts, newest first.
async fn alerts(
    state: web::Data<AppState>,
    query: web::Query<AlertQuery>,
) -> Result<HttpResponse, ApiError> {
    let alerts = state
        .monitor
        .send(GetAlerts {
            active_only: query.active,
        })
        .await
        .map_err(unavailable)?;
    Ok(HttpResponse::Ok().json(json!({"count": alerts.len(), "alerts": alerts})))
}
