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
        .route("/metrics", web::get().to(metrics_text))
        .route("/api/metrics", web::get().to(metrics_json))
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

/// `GET /metrics`: Prometheus / OpenMetrics text.
async fn metrics_text(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render(&state.directory))
}

/// `GET /api/metrics`: the same figures as JSON, one entry per series.
async fn metrics_json(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.render(&state.directory);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines)
        .map_err(|e| CallError::new(ErrorCategory::Internal, format!("metrics unreadable: {e}")))?;
    let mut out = serde_json::Map::new();
    for sample in scrape.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => json!(v),
            prometheus_parse::Value::Histogram(buckets) => json!(
                buckets
                    .iter()
                    .map(|b| json!({"le": b.less_than, "count": b.count}))
                    .collect::<Vec<_>>()
            ),
            prometheus_parse::Value::Summary(q) => json!(
                q.iter()
                    .map(|q| json!({"quantile": q.quantile, "value": q.count}))
                    .collect::<Vec<_>>()
            ),
        };
        let labels: serde_json::Map<String, serde_json::Value> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let series = out.entry(sample.metric).or_insert_with(|| json!([]));
        if let Some(a) = series.as_array_mut() {
            a.push(json!({"labels": labels, "value": value}));
        }
    }
    Ok(HttpResponse::Ok().json(out))
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
