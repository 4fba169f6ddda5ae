//! Change notifications: `subscriptions/listen` for 2026-07-28 clients and
//! the GET stream of legacy sessions. Both send
//! `notifications/tools/list_changed` whenever the merged tool table
//! changes (a service came or went, or an upstream's list changed).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Responder, web};
use actix_web_lab::sse;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::super::AppState;
use super::{era, reply, rpc_error};

/// `subscriptions/listen` (2026-07-28): an SSE stream that opens with an
/// acknowledgement and carries the list changes the client asked for.
pub fn subscriptions_listen(
    state: web::Data<AppState>,
    req: &HttpRequest,
    id: Value,
    params: Value,
) -> HttpResponse {
    let wanted = params
        .get("notifications")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let tools = wanted
        .get("toolsListChanged")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let honoured = if tools {
        json!({"toolsListChanged": true})
    } else {
        json!({})
    };
    let ack = json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": {era::META_SUBSCRIPTION: id}, "notifications": honoured},
    });
    let change = tools.then(|| {
        json!({
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
            "params": {"_meta": {era::META_SUBSCRIPTION: id}},
        })
    });
    stream(&state, req, Some(ack), change)
}

/// `GET /mcp`: the server-to-client stream of a legacy session.
pub async fn get_stream(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let Some(sid) = era::header(&req, "mcp-session-id") else {
        return HttpResponse::MethodNotAllowed()
            .insert_header(("Allow", "POST"))
            .finish();
    };
    if state.sessions.get(&sid).is_none() {
        return reply(
            StatusCode::NOT_FOUND,
            rpc_error(None, -32001, "Session not found", None),
        );
    }
    if !era::accepts_sse(&req) {
        return HttpResponse::NotAcceptable().finish();
    }
    let change = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
    stream(&state, &req, None, Some(change))
}

fn stream(
    state: &AppState,
    req: &HttpRequest,
    first: Option<Value>,
    change: Option<Value>,
) -> HttpResponse {
    let (tx, rx) = mpsc::channel::<sse::Event>(16);
    let registry = state.registry.clone();
    let open = state.metrics.stream_opened("mcp_listen");
    actix_web::rt::spawn(async move {
        let _open = open;
        if let Some(first) = first
            && let Ok(d) = sse::Data::new_json(first)
            && tx.send(d.event("message").into()).await.is_err()
        {
            return;
        }
        let mut seen = registry.version();
        loop {
            let changed = registry.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = registry.version();
            if now != seen {
                seen = now;
                if let Some(c) = &change
                    && let Ok(d) = sse::Data::new_json(c.clone())
                    && tx.send(d.event("message").into()).await.is_err()
                {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = changed => {}
                () = tx.closed() => return,
            }
        }
    });
    sse::Sse::from_infallible_receiver(rx)
        .with_keep_alive(state.heartbeat())
        .customize()
        .insert_header(("X-Accel-Buffering", "no"))
        .respond_to(req)
        .map_into_boxed_body()
}
