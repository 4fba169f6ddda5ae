//! The 2024-11-05 HTTP+SSE transport, served to the clients that still
//! speak it: `GET /sse` opens the client's one stream and announces where
//! to post (`endpoint` event); `POST /message?sessionId=…` carries each
//! JSON-RPC message and is answered `202 Accepted`.
//!
//! It is a framing of a 2025/2024 session and nothing more. Each posted
//! message is handled exactly as a `POST /mcp` of that session is, and
//! whatever that answers — a JSON reply, or a call's stream of progress,
//! requests to the client and the result — is re-framed as `message`
//! events on the client's stream; so are the session's list changes and
//! resource updates. Tools, relays, limits, authentication and Origin rules
//! are therefore those of `/mcp`. The session ends with the stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use serde_json::Value;
use tokio::sync::mpsc;

use super::super::AppState;
use super::super::guard::client_of;
use super::session::Sessions;
use super::{era, jsonrpc, reply, rpc_error};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sse", web::get().to(open))
        .route("/message", web::post().to(post));
}

/// The open HTTP+SSE streams, by the `sessionId` they announced.
#[derive(Debug)]
pub struct Links {
    map: Mutex<HashMap<String, Arc<Link>>>,
    max: usize,
}

/// One client's stream: where its messages' answers go.
#[derive(Debug)]
struct Link {
    /// The client that opened it: only that client may post to it.
    owner: Arc<str>,
    events: mpsc::Sender<sse::Event>,
    /// The session `initialize` made, once it has.
    session: OnceLock<String>,
}

impl Links {
    pub fn new(max: usize) -> Self {
        Self {
            map: Mutex::default(),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Link>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_for(&self, id: &str, client: &str) -> Option<Arc<Link>> {
        self.lock().get(id).filter(|l| &*l.owner == client).cloned()
    }
}

/// Held by a stream: its end forgets the link and ends its session.
struct Open {
    id: String,
    links: Arc<Links>,
    sessions: Arc<Sessions>,
}

impl Drop for Open {
    fn drop(&mut self) {
        let link = self.links.lock().remove(&self.id);
        if let Some(sid) = link.as_ref().and_then(|l| l.session.get()) {
            self.sessions.remove(sid);
            tracing::info!(session = %sid, "MCP HTTP+SSE stream closed; session ended");
        }
    }
}

fn message(data: String) -> sse::Event {
    sse::Event::from(sse::Data::new(data).event("message"))
}

/// `GET /sse`: opens a client's stream.
async fn open(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let links = state.legacy_links.clone();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (events, rx) = mpsc::channel(state.server.event_buffer.max(16));
    {
        let mut map = links.lock();
        if map.len() >= links.max {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                rpc_error(
                    None,
                    jsonrpc::INTERNAL_ERROR,
                    &format!("too many HTTP+SSE streams (at most {})", links.max),
                    None,
                ),
            );
        }
        let link = Link {
            owner: client_of(&req).name,
            events,
            session: OnceLock::new(),
        };
        map.insert(id.clone(), Arc::new(link));
    }
    let endpoint =
        sse::Event::from(sse::Data::new(format!("/message?sessionId={id}")).event("endpoint"));
    let open = Open {
        id,
        links,
        sessions: state.sessions.clone(),
    };
    let rest = futures::stream::unfold((rx, open), |(mut rx, open)| async move {
        rx.recv().await.map(|event| (event, (rx, open)))
    });
    state.sse_stream(
        futures::StreamExt::chain(futures::stream::once(async { endpoint }), rest),
        &req,
    )
}

#[derive(serde::Deserialize)]
struct Target {
    #[serde(rename = "sessionId")]
    session_id: String,
}

/// `POST /message?sessionId=…`: one JSON-RPC message (or a batch) for the
/// stream `sessionId` names.
async fn post(
    state: web::Data<AppState>,
    req: HttpRequest,
    target: Option<web::Query<Target>>,
    body: web::Bytes,
) -> HttpResponse {
    let client = client_of(&req).name;
    let Some(link) = target.and_then(|t| state.legacy_links.get_for(&t.session_id, &client)) else {
        return reply(
            StatusCode::NOT_FOUND,
            rpc_error(
                None,
                jsonrpc::SESSION_NOT_FOUND,
                "Session not found (open GET /sse first and post to the endpoint it announces)",
                None,
            ),
        );
    };
    req.extensions_mut().insert(era::Framed {
        session: link.session.get().cloned(),
    });
    let response = super::post(state.clone(), req, body).await;
    let status = response.status();
    if status == StatusCode::ACCEPTED {
        return HttpResponse::Accepted().finish();
    }
    if let Some(sid) = era::header_of(response.headers(), "mcp-session-id")
        && link.session.set(sid.clone()).is_ok()
        && let Some(session) = state.sessions.get(&sid)
    {
        let listener = super::listen::Listener::of_session(&state, session);
        actix_web::rt::spawn(relay_changes(listener, link.events.clone()));
    }
    let streamed = era::header_of(response.headers(), "content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let body = response.into_body();
    if streamed {
        // The call's events go to the client's stream as they come; its
        // end (the client leaving) drops the call's stream, as on `/mcp`.
        actix_web::rt::spawn(reframe(body, link.events.clone()));
        return HttpResponse::Accepted().finish();
    }
    let Ok(bytes) = actix_web::body::to_bytes(body).await else {
        return HttpResponse::InternalServerError().finish();
    };
    // An answer to a request belongs on the stream, errors included;
    // what answers nothing (a message too broken to have an id) is the
    // POST's own error.
    let answers_a_request = status.is_success()
        || serde_json::from_slice::<Value>(&bytes)
            .ok()
            .is_some_and(|v| v.get("id").is_some_and(|id| !id.is_null()));
    if !answers_a_request {
        return HttpResponse::build(status)
            .content_type("application/json")
            .body(bytes);
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if link.events.send(message(text)).await.is_err() {
        return reply(
            StatusCode::NOT_FOUND,
            rpc_error(
                None,
                jsonrpc::SESSION_NOT_FOUND,
                "Session not found (its stream closed)",
                None,
            ),
        );
    }
    HttpResponse::Accepted().finish()
}

/// Carries a session's change notifications to its HTTP+SSE stream until
/// the stream closes.
async fn relay_changes(mut listener: super::listen::Listener, events: mpsc::Sender<sse::Event>) {
    loop {
        let next = tokio::select! {
            m = listener.next() => m,
            () = events.closed() => return,
        };
        let Some(m) = next else { return };
        if events.send(message(super::wire(&m))).await.is_err() {
            return;
        }
    }
}

/// Re-frames an SSE response body as `message` events on a client's
/// stream: each event's `data` lines, joined, are one JSON-RPC message;
/// comments (heartbeats), ids and event names are the inner stream's own.
async fn reframe(body: BoxBody, events: mpsc::Sender<sse::Event>) {
    let mut body = std::pin::pin!(body);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::select! {
            c = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)) => c,
            () = events.closed() => return,
        };
        let Some(Ok(chunk)) = chunk else { return };
        pending.extend_from_slice(&chunk);
        while let Some(end) = find_event_end(&pending) {
            let raw: Vec<u8> = pending.drain(..end).collect();
            if let Some(data) = event_data(&raw)
                && events.send(message(data)).await.is_err()
            {
                return;
            }
        }
    }
}

/// Where the first complete event in `buf` ends (after its blank line).
fn find_event_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// The `data` of one SSE event, if it has any.
fn event_data(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_and_their_data_joined() {
        let buf = b": keep-alive\n\nevent: message\nid: 3\ndata: {\"a\":\ndata: 1}\n\nevent: mes";
        let end = find_event_end(buf).unwrap();
        assert_eq!(event_data(&buf[..end]), None, "a comment carries nothing");
        let rest = &buf[end..];
        let end = find_event_end(rest).unwrap();
        assert_eq!(event_data(&rest[..end]).as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(
            find_event_end(&rest[end..]),
            None,
            "an unfinished event waits"
        );
    }
}
