//! Drill routes: `POST /api/drills/{kind}` runs a drill against this
//! daemon (admin), streaming its steps as SSE (`phase`, `progress`, then
//! `report`) or answering with the report as JSON; `GET /api/drills` lists
//! the reports of past drills.
//!
//! A drill runs in a task of its own: a client that disconnects does not
//! stop it half way, so whatever it broke is always mended.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use mcpvisor_actors::drill::{
    DEFAULT_DURATION, DEFAULT_LOAD, DrillError, DrillEvent, DrillKind, DrillRequest, DrillTarget,
    parse_duration,
};
use mcpvisor_actors::{CallError, ErrorCategory};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::AppState;
use super::errors::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/drills", web::get().to(list))
        .route("/api/drills/{kind}", web::post().to(start));
}

/// The body of `POST /api/drills/{kind}` (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DrillBody {
    service: Option<String>,
    load: Option<usize>,
    /// `8s`, `500ms`, or a number of milliseconds.
    duration: Option<Value>,
    tool: Option<String>,
}

async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "running": state.drills.busy(),
        "kinds": DrillKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "reports": state.drills.reports(),
    }))
}

fn bad(message: String) -> ApiError {
    CallError::new(ErrorCategory::Validation, message).into()
}

fn request(kind: &str, body: Option<web::Json<DrillBody>>) -> Result<DrillRequest, ApiError> {
    let kind = DrillKind::parse(kind).ok_or_else(|| {
        let kinds: Vec<_> = DrillKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError(
            CallError::new(
                ErrorCategory::NotFound,
                format!("no drill `{kind}`; kinds: {}", kinds.join(", ")),
            ),
            None,
        )
    })?;
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let duration = match &body.duration {
        None => DEFAULT_DURATION,
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| bad("`duration` must be a whole number of milliseconds".into()))?,
        Some(Value::String(s)) => parse_duration(s)
            .ok_or_else(|| bad(format!("`duration`: cannot read `{s}` (try 8s or 500ms)")))?,
        Some(_) => return Err(bad("`duration` must be a string or a number".into())),
    };
    if duration > Duration::from_secs(600) {
        return Err(bad("`duration` is at most 10 minutes".into()));
    }
    let load = body.load.unwrap_or(DEFAULT_LOAD);
    if !(1..=256).contains(&load) {
        return Err(bad("`load` is between 1 and 256 clients".into()));
    }
    Ok(DrillRequest {
        kind,
        service: body.service,
        load,
        duration,
        tool: body.tool,
    })
}

fn refusal(e: DrillError) -> ApiError {
    let (category, status) = match &e {
        DrillError::Busy => (ErrorCategory::Overload, StatusCode::CONFLICT),
        DrillError::UnknownService(_) | DrillError::UnknownTool(_) => {
            (ErrorCategory::NotFound, StatusCode::NOT_FOUND)
        }
        DrillError::NotReady(..) => (ErrorCategory::ServiceUnavailable, StatusCode::CONFLICT),
        DrillError::Unsupported(_) | DrillError::NoLoadTool(_) => {
            (ErrorCategory::Validation, StatusCode::UNPROCESSABLE_ENTITY)
        }
    };
    ApiError(CallError::new(category, e.to_string()), Some(status))
}

/// `POST /api/drills/{kind}`.
async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    kind: web::Path<String>,
    body: Option<web::Json<DrillBody>>,
) -> Result<HttpResponse, ApiError> {
    let request = request(&kind, body)?;
    if state.drills.busy() {
        return Err(refusal(DrillError::Busy));
    }
    let streaming = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    let target = DrillTarget {
        router: state.router.clone(),
        supervisor: state.supervisor.clone(),
        monitor: state.monitor.clone(),
        directory: state.directory.clone(),
        registry: state.registry.clone(),
    };
    let (events_tx, mut events_rx) = mpsc::channel::<DrillEvent>(64);
    let drills = state.drills.clone();
    let task = actix_web::rt::spawn(async move { drills.run(&target, request, events_tx).await });
    if !streaming {
        // Nobody reads the steps; the report is the answer.
        actix_web::rt::spawn(async move { while events_rx.recv().await.is_some() {} });
        return match task.await {
            Ok(Ok(report)) => Ok(HttpResponse::Ok().json(report)),
            Ok(Err(e)) => Err(refusal(e)),
            Err(e) => {
                Err(CallError::new(ErrorCategory::Internal, format!("drill task: {e}")).into())
            }
        };
    }
    let (tx, rx) = mpsc::channel::<sse::Event>(64);
    actix_web::rt::spawn(async move {
        let send = |event: &'static str, data: Value| {
            let tx = tx.clone();
            async move {
                if let Ok(d) = sse::Data::new_json(data) {
                    let _ = tx.send(d.event(event).into()).await;
                }
            }
        };
        while let Some(e) = events_rx.recv().await {
            let name = match e {
                DrillEvent::Phase { .. } => "phase",
                DrillEvent::Progress { .. } => "progress",
            };
            send(name, serde_json::to_value(&e).unwrap_or_default()).await;
        }
        match task.await {
            Ok(Ok(report)) => {
                send("report", serde_json::to_value(&report).unwrap_or_default()).await
            }
            Ok(Err(e)) => {
                let e = refusal(e);
                send("error", super::errors::body_of(&e.0)["error"].clone()).await
            }
            Err(e) => {
                send(
                    "error",
                    json!({"category": "internal", "message": e.to_string()}),
                )
                .await
            }
        }
    });
    Ok(state.sse_response(rx, &req))
}
