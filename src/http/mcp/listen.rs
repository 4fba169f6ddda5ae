//! Change notifications: `subscriptions/listen` for 2026-07-28 clients and
//! the GET stream of legacy sessions. Both send
//! `notifications/tools/list_changed` whenever the merged tool table
//! changes (a service came or went, or an upstream's list changed), and
//! `notifications/resources/updated` for the resources the client
//! subscribed to.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_lab::sse;
use std::sync::Arc;

use mcpvisor_actors::catalog::{Capability, ResourceUpdate};
use mcpvisor_actors::passthrough::{self, ResourceWatch};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::super::AppState;
use super::session::Session;
use super::{era, jsonrpc, reply, rpc_error};

/// Resources one `subscriptions/listen` stream may watch; more are not
/// honoured (the acknowledgement lists those that are).
const MAX_RESOURCE_SUBSCRIPTIONS: usize = 64;

/// `subscriptions/listen` (2026-07-28): an SSE stream that opens with an
/// acknowledgement and carries the list changes and resource updates the
/// client asked for. Resource subscriptions last as long as the stream.
pub async fn subscriptions_listen(
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
    let mut watches = Vec::new();
    for uri in wanted
        .get("resourceSubscriptions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .take(MAX_RESOURCE_SUBSCRIPTIONS)
    {
        let services = passthrough::service_names(&state.directory);
        let catalog = state.registry.catalog();
        let able = catalog.with(&services, Capability::Subscribe);
        let mut owners = catalog.owners_of_uri(&services, uri);
        owners.retain(|s| able.contains(s));
        match passthrough::watch(&state.registry, &state.directory, &owners, uri).await {
            Ok(w) => watches.push(w),
            Err(e) => tracing::debug!(%uri, error = ?e, "resource subscription refused"),
        }
    }
    let mut honoured = Map::new();
    if tools {
        honoured.insert("toolsListChanged".into(), json!(true));
    }
    if !watches.is_empty() {
        let uris: Vec<&str> = watches.iter().map(ResourceWatch::uri).collect();
        honoured.insert("resourceSubscriptions".into(), json!(uris));
    }
    let tag = json!({era::META_SUBSCRIPTION: id});
    let ack = json!({
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": tag, "notifications": honoured},
    });
    let change = tools.then(|| {
        Arc::new(json!({
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
            "params": {"_meta": tag},
        }))
    });
    let resources = Resources {
        watching: Watching::Held(watches),
        tag: Some(tag),
    };
    stream(&state, req, Some(ack), change, Some(resources))
}

/// `GET /mcp`: the server-to-client stream of a legacy session: tool list
/// changes, and updates of the resources the session subscribed to.
pub async fn get_stream(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let Some(sid) = era::session_id(&req) else {
        return HttpResponse::MethodNotAllowed()
            .insert_header(("Allow", "POST"))
            .finish();
    };
    let Some(session) = state
        .sessions
        .get_for(&sid, &super::super::guard::client_of(&req).name)
    else {
        return reply(
            StatusCode::NOT_FOUND,
            rpc_error(None, jsonrpc::SESSION_NOT_FOUND, "Session not found", None),
        );
    };
    if !era::accepts_sse(&req) {
        return HttpResponse::NotAcceptable().finish();
    }
    let resources = Resources {
        watching: Watching::Session(session),
        tag: None,
    };
    stream(&state, &req, None, Some(session_change()), Some(resources))
}

/// A legacy session's tool list change notification: one value shared by
/// every open stream.
fn session_change() -> Arc<Value> {
    static CHANGE: std::sync::LazyLock<Arc<Value>> = std::sync::LazyLock::new(|| {
        Arc::new(json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}))
    });
    CHANGE.clone()
}

/// Which resource updates a stream carries.
struct Resources {
    watching: Watching,
    /// `_meta` added to each notification (the 2026 subscription id).
    tag: Option<Value>,
}

enum Watching {
    /// Whatever the session has subscribed to, now.
    Session(Arc<Session>),
    /// These subscriptions, held by the stream itself.
    Held(Vec<ResourceWatch>),
}

impl Resources {
    fn wants(&self, update: &ResourceUpdate) -> bool {
        match &self.watching {
            Watching::Session(s) => s.watching(&update.service, &update.uri),
            Watching::Held(w) => w
                .iter()
                .any(|w| w.service() == update.service && w.uri() == update.uri),
        }
    }

    fn notification(&self, update: &ResourceUpdate) -> Value {
        let mut params = json!({"uri": update.uri});
        if let Some(tag) = &self.tag {
            params["_meta"] = tag.clone();
        }
        json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": params})
    }
}

/// What one change stream holds while it is open: no task and no channel
/// of its own, only this state, polled by the connection that carries it
/// (10,000 idle streams must stay cheap).
pub(super) struct Listener {
    registry: Arc<mcpvisor_actors::Registry>,
    updates: broadcast::Receiver<ResourceUpdate>,
    first: Option<Value>,
    change: Option<Arc<Value>>,
    resources: Option<Resources>,
    seen: u64,
    _open: mcpvisor_actors::metrics::StreamGuard,
}

impl Listener {
    fn new(
        state: &AppState,
        first: Option<Value>,
        change: Option<Arc<Value>>,
        resources: Option<Resources>,
    ) -> Self {
        let registry = state.registry.clone();
        Self {
            updates: registry.catalog().updates(),
            seen: registry.version(),
            registry,
            first,
            change,
            resources,
            _open: state.metrics.stream_opened("mcp_listen"),
        }
    }

    /// What the `GET /mcp` stream of `session` would carry, for a stream
    /// of another transport.
    pub(super) fn of_session(state: &AppState, session: Arc<Session>) -> Self {
        Self::new(
            state,
            None,
            Some(session_change()),
            Some(Resources {
                watching: Watching::Session(session),
                tag: None,
            }),
        )
    }

    /// The next message for the client; `None` ends the stream.
    pub(super) async fn next(&mut self) -> Option<Value> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            let registry = &self.registry;
            let changed = registry.changed();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = registry.version();
            if now != self.seen {
                self.seen = now;
                if let Some(c) = &self.change {
                    return Some(Value::clone(c));
                }
                continue;
            }
            tokio::select! {
                () = changed => {}
                update = self.updates.recv(), if self.resources.is_some() => match update {
                    Ok(u) => {
                        if let Some(r) = &self.resources
                            && r.wants(&u)
                        {
                            return Some(r.notification(&u));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "resource updates dropped for a slow stream");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

fn stream(
    state: &AppState,
    req: &HttpRequest,
    first: Option<Value>,
    change: Option<Arc<Value>>,
    resources: Option<Resources>,
) -> HttpResponse {
    let listener = Listener::new(state, first, change, resources);
    // The client leaving drops the stream, and the listener with it.
    let events = futures::stream::unfold(listener, |mut listener| async move {
        loop {
            let message = listener.next().await?;
            if let Ok(data) = sse::Data::new_json(message) {
                return Some((sse::Event::from(data.event("message")), listener));
            }
        }
    });
    state.sse_stream(events, req)
}
