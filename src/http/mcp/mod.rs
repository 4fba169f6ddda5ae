//! `/mcp`: mcpvisor as an MCP Streamable HTTP server, for every era.
//!
//! A 2026-07-28 client is served statelessly: no handshake, the version and
//! capabilities in each request's `_meta`, headers that mirror the body.
//! A 2025/2024 client runs `initialize`, gets an `Mcp-Session-Id`, and may
//! open a GET stream. Both see the same tools — every service's, merged
//! across replicas — and both get a call's progress on the call's own SSE
//! response. The upstream behind a tool may speak any era; translation is
//! the engine's job, so nothing here depends on it.

mod calls;
pub mod era;
mod forwarded;
pub mod jsonrpc;
mod legacy_sse;
mod listen;
mod session;

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use mcpvisor_actors::stream::AskError;
use rmcp::model::{Implementation, InitializeResult, ServerCapabilities};
use serde_json::{Map, Value, json};

pub use jsonrpc::{rpc_error, rpc_result};
pub use legacy_sse::Links;
pub use session::Sessions;

use super::AppState;
use super::guard::client_of;
use era::Violation;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/mcp")
            .route(web::post().to(post))
            .route(web::get().to(listen::get_stream))
            .route(web::delete().to(delete)),
    )
    .configure(legacy_sse::routes);
}

/// How an id that JSON numbers in memory cannot hold exactly (an integer
/// beyond 64 bits, a number with a fraction) travels inside mcpvisor: as
/// this prefix and its text as the client wrote it, put back by [`wire`].
const RAW_ID: &str = "\u{0}mcpvisor-raw-id:";

/// The id of `message` as the client wrote it. Numbers that fit 64 bits
/// are kept as they are; others keep their text.
fn exact_id(id: &Value, body: &[u8]) -> Value {
    if !id.is_number() || id.is_i64() || id.is_u64() {
        return id.clone();
    }
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        id: &'a serde_json::value::RawValue,
    }
    match serde_json::from_slice::<Raw>(body) {
        Ok(raw) => Value::String(format!("{RAW_ID}{}", raw.id.get())),
        Err(_) => id.clone(),
    }
}

/// A JSON-RPC message as text for the wire, with an exact id written back
/// as the client sent it.
pub fn wire(message: &Value) -> String {
    let text = message.to_string();
    match message.get("id").and_then(Value::as_str) {
        Some(id) if id.starts_with(RAW_ID) => {
            let quoted = Value::String(id.to_owned()).to_string();
            text.replacen(&quoted, &id[RAW_ID.len()..], 1)
        }
        _ => text,
    }
}

/// A JSON-RPC id as text for the wire: an exact id as the client wrote it.
pub fn id_text(id: &Value) -> String {
    match id.as_str() {
        Some(raw) if raw.starts_with(RAW_ID) => raw[RAW_ID.len()..].to_owned(),
        _ => id.to_string(),
    }
}

fn reply(status: StatusCode, body: Value) -> HttpResponse {
    reply_text(status, wire(&body))
}

fn reply_text(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

fn violation(id: Option<&Value>, v: Violation) -> HttpResponse {
    reply(v.status, rpc_error(id, v.code, &v.message, v.data))
}

/// How the request being served relates to sessions.
pub enum Era {
    /// 2026-07-28: nothing is remembered between requests.
    Stateless,
    /// A 2025/2024 session.
    Session(std::sync::Arc<session::Session>),
}

impl Era {
    /// Adapts a result object to the client's era: `resultType` is a
    /// 2026-07-28 field that older clients must not see.
    pub fn finish(&self, mut result: Value) -> Value {
        if let Value::Object(o) = &mut result {
            match self {
                Era::Stateless => {
                    o.entry("resultType").or_insert_with(|| json!("complete"));
                }
                Era::Session(_) => {
                    o.remove("resultType");
                }
            }
        }
        result
    }
}

/// The revision whose sessions may send JSON-RPC batches (later ones
/// removed them).
const BATCH_ERA: &str = "2025-03-26";

/// `POST /mcp`: a JSON-RPC message, or a batch of them from a session of
/// the revision that has batches.
async fn post(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return batch(state, req, body).await;
    }
    post_one(state, req, body).await
}

/// A JSON-RPC batch: each message handled as if sent alone, the answers to
/// its requests gathered into one JSON array (notifications and responses
/// get none; a batch of only those is a 202).
async fn batch(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let refuse = |message: &str| {
        reply(
            StatusCode::BAD_REQUEST,
            rpc_error(
                None,
                jsonrpc::INVALID_REQUEST,
                &format!("Invalid Request: {message}"),
                None,
            ),
        )
    };
    let session =
        era::session_id(&req).and_then(|sid| state.sessions.get_for(&sid, &client_of(&req).name));
    if session.is_none_or(|s| s.version != BATCH_ERA) {
        return refuse("batches are not supported (only sessions of 2025-03-26 may send them)");
    }
    let messages: Vec<&serde_json::value::RawValue> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                rpc_error(
                    None,
                    jsonrpc::PARSE_ERROR,
                    &format!("Parse error: {e}"),
                    None,
                ),
            );
        }
    };
    if messages.is_empty() {
        return refuse("an empty batch");
    }
    // Answers go in the array, never on streams of their own.
    req.extensions_mut().insert(era::JsonOnly);
    let answers = futures::future::join_all(messages.into_iter().map(|m| {
        let bytes = web::Bytes::copy_from_slice(m.get().as_bytes());
        let initialize = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .is_some_and(|v| v.get("method").and_then(Value::as_str) == Some("initialize"));
        let (state, req) = (state.clone(), req.clone());
        async move {
            if initialize {
                let e = rpc_error(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "Invalid Request: initialize cannot be part of a batch",
                    None,
                );
                return Some(web::Bytes::from(wire(&e)));
            }
            let response = post_one(state, req, bytes).await;
            if response.status() == StatusCode::ACCEPTED {
                return None;
            }
            // Kept as written: exact ids stay exact.
            actix_web::body::to_bytes(response.into_body())
                .await
                .ok()
                .filter(|b| !b.is_empty())
        }
    }))
    .await;
    let answers: Vec<web::Bytes> = answers.into_iter().flatten().collect();
    if answers.is_empty() {
        return HttpResponse::Accepted().finish();
    }
    let mut out = Vec::with_capacity(answers.iter().map(|a| a.len() + 1).sum::<usize>() + 2);
    out.push(b'[');
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(a);
    }
    out.push(b']');
    HttpResponse::Ok()
        .content_type("application/json")
        .body(out)
}

/// `POST /mcp`: one JSON-RPC message.
async fn post_one(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                rpc_error(
                    None,
                    jsonrpc::PARSE_ERROR,
                    &format!("Parse error: {e}"),
                    None,
                ),
            );
        }
    };
    let Value::Object(message) = message else {
        let what = if message.is_array() {
            "batches are not supported"
        } else {
            "not a JSON-RPC object"
        };
        return reply(
            StatusCode::BAD_REQUEST,
            rpc_error(
                None,
                jsonrpc::INVALID_REQUEST,
                &format!("Invalid Request: {what}"),
                None,
            ),
        );
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return reply(
            StatusCode::BAD_REQUEST,
            rpc_error(
                message.get("id"),
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: jsonrpc must be \"2.0\"",
                None,
            ),
        );
    }
    // An id is a string or a number; anything else (null, a boolean, an
    // array, an object) makes the message invalid, not a notification.
    let id = match message.get("id") {
        None => None,
        // (A string that looks like mcpvisor's own exact-id marker is
        // refused: written back, it would not be the string sent.)
        Some(i) if i.is_number() || i.as_str().is_some_and(|s| !s.starts_with(RAW_ID)) => {
            Some(exact_id(i, &body))
        }
        Some(_) => {
            return reply(
                StatusCode::BAD_REQUEST,
                rpc_error(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "Invalid Request: id must be a string or a number",
                    None,
                ),
            );
        }
    };
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let params = message.get("params").cloned();
    if params.as_ref().is_some_and(|p| !p.is_object()) {
        return reply(
            StatusCode::BAD_REQUEST,
            rpc_error(
                id.as_ref(),
                jsonrpc::INVALID_PARAMS,
                "params must be an object",
                None,
            ),
        );
    }
    let Some(method) = method else {
        // A response to a request sent on an upstream's behalf.
        return if message.contains_key("result") || message.contains_key("error") {
            answer(&state, &req, &message)
        } else {
            reply(
                StatusCode::BAD_REQUEST,
                rpc_error(
                    id.as_ref(),
                    jsonrpc::INVALID_REQUEST,
                    "Invalid Request: no method",
                    None,
                ),
            )
        };
    };

    if method == "initialize" && era::is_stateless(&req, params.as_ref()) {
        // 2026-07-28 removed the handshake: an unknown method there.
        return reply(
            StatusCode::NOT_FOUND,
            rpc_error(
                id.as_ref(),
                jsonrpc::METHOD_NOT_FOUND,
                "Method not found: initialize (2026-07-28 is stateless; use server/discover)",
                None,
            ),
        );
    }
    if method == "initialize" {
        return match id {
            Some(id) => initialize(&state, &req, &id, params.as_ref()),
            None => reply(
                StatusCode::BAD_REQUEST,
                rpc_error(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "initialize needs an id",
                    None,
                ),
            ),
        };
    }

    // Which era is this request from?
    let era = match era::session_id(&req) {
        Some(sid) if !era::is_stateless(&req, params.as_ref()) => {
            match state.sessions.get_for(&sid, &client_of(&req).name) {
                Some(s) => {
                    if let Err(v) = era::check_session_header(&req, &s.version) {
                        return violation(id.as_ref(), v);
                    }
                    Era::Session(s)
                }
                None => {
                    return reply(
                        StatusCode::NOT_FOUND,
                        rpc_error(
                            id.as_ref(),
                            jsonrpc::SESSION_NOT_FOUND,
                            "Session not found: initialize again",
                            None,
                        ),
                    );
                }
            }
        }
        _ if era::is_stateless(&req, params.as_ref()) || method == "server/discover" => {
            // `server/discover` exists only in 2026-07-28, so it carries
            // that era's `_meta` like every other request of it.
            if let Err(v) = era::check_stateless(&req, &method, params.as_ref()) {
                return violation(id.as_ref(), v);
            }
            Era::Stateless
        }
        _ => {
            return reply(
                StatusCode::BAD_REQUEST,
                rpc_error(
                    id.as_ref(),
                    jsonrpc::INVALID_REQUEST,
                    "Bad Request: no Mcp-Session-Id (initialize first) and no 2026-07-28 _meta",
                    None,
                ),
            );
        }
    };

    let Some(id) = id else {
        return notification(&era, &method, params.as_ref());
    };
    dispatch(
        state,
        req,
        era,
        id,
        method,
        params.unwrap_or_else(|| json!({})),
    )
    .await
}

/// A client's response to a request mcpvisor relayed to it: handed to the
/// upstream that asked. 202 either way (a late answer to a request given
/// up on has nowhere to go).
fn answer(state: &AppState, req: &HttpRequest, message: &Map<String, Value>) -> HttpResponse {
    let session =
        era::session_id(req).and_then(|sid| state.sessions.get_for(&sid, &client_of(req).name));
    let id = message.get("id").map(|i| match i {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    if let (Some(session), Some(id)) = (session, id) {
        let outcome = match message.get("error") {
            Some(e) => Err(AskError {
                code: e
                    .get("code")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::from(jsonrpc::INTERNAL_ERROR)) as i32,
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned(),
                data: e.get("data").cloned(),
            }),
            None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
        };
        if !session.answer(&id, outcome) {
            tracing::debug!(%id, "a response nothing waits for");
        }
    }
    HttpResponse::Accepted().finish()
}

/// Client notifications: acknowledged, and `notifications/cancelled` acted on.
fn notification(era: &Era, method: &str, params: Option<&Value>) -> HttpResponse {
    if method == "notifications/cancelled"
        && let Era::Session(s) = era
        && let Some(rid) = params.and_then(|p| p.get("requestId"))
    {
        let key = calls::request_key(rid);
        if s.cancel(&key) {
            tracing::debug!(request = %key, "call cancelled by client");
        }
    }
    HttpResponse::Accepted().finish()
}

async fn dispatch(
    state: web::Data<AppState>,
    req: HttpRequest,
    era: Era,
    id: Value,
    method: String,
    params: Value,
) -> HttpResponse {
    let stateless = matches!(era, Era::Stateless);
    match method.as_str() {
        "ping" if !stateless => reply(StatusCode::OK, rpc_result(&id, json!({}))),
        "server/discover" => reply(StatusCode::OK, rpc_result(&id, discover())),
        "tools/list" => {
            let client = client_of(&req);
            let tools: Vec<Value> = state
                .registry
                .snapshot()
                .tools()
                .iter()
                .filter(|e| state.listed(e) && client.may_use(&e.tool.name))
                .filter_map(|e| serde_json::to_value(&e.tool).ok())
                .collect();
            let mut result = json!({"tools": tools});
            if stateless {
                result["ttlMs"] = json!(0);
                // A client with limited access sees a list of its own.
                let scope = if client.tools.unrestricted() {
                    "public"
                } else {
                    "private"
                };
                result["cacheScope"] = json!(scope);
            }
            reply(StatusCode::OK, rpc_result(&id, era.finish(result)))
        }
        "tools/call" => calls::tools_call(state, req, era, id, params).await,
        "subscriptions/listen" if stateless => {
            listen::subscriptions_listen(state, &req, id, params).await
        }
        // Removed in 2026-07-28 (stateless): unknown methods there.
        "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe" if stateless => reply(
            StatusCode::NOT_FOUND,
            rpc_error(
                Some(&id),
                jsonrpc::METHOD_NOT_FOUND,
                &format!("Method not found: {method} (not part of 2026-07-28)"),
                None,
            ),
        ),
        m if forwarded::handles(m) => forwarded::dispatch(state, era, id, m, params).await,
        _ => {
            // 2026-07-28 wants 404 for an unknown method; older eras 200.
            let status = if stateless {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            reply(
                status,
                rpc_error(
                    Some(&id),
                    jsonrpc::METHOD_NOT_FOUND,
                    &format!("Method not found: {method}"),
                    None,
                ),
            )
        }
    }
}

fn server_info() -> Implementation {
    Implementation::new("mcpvisor", env!("CARGO_PKG_VERSION"))
}

/// What the endpoint serves. Sessions also get `logging` (their
/// `logging/setLevel`); 2026-07-28 has no such method.
#[allow(deprecated)] // logging: deprecated in 2026-07-28, current in sessions
fn capabilities(session: bool) -> ServerCapabilities {
    let builder = ServerCapabilities::builder()
        .enable_tools()
        .enable_tool_list_changed()
        .enable_prompts()
        .enable_resources()
        .enable_resources_subscribe()
        .enable_completions();
    if session {
        builder.enable_logging().build()
    } else {
        builder.build()
    }
}

const INSTRUCTIONS: &str =
    "mcpvisor fronts several MCP services; every tool they offer is listed here.";

fn initialize(
    state: &AppState,
    req: &HttpRequest,
    id: &Value,
    params: Option<&Value>,
) -> HttpResponse {
    let requested = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str);
    let version = era::negotiate(requested);
    let client_capabilities = params
        .and_then(|p| p.get("capabilities"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let (sid, _) =
        match state
            .sessions
            .create(version.to_owned(), client_capabilities, client_of(req).name)
        {
            Ok(s) => s,
            Err(e) => {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    rpc_error(Some(id), jsonrpc::INTERNAL_ERROR, &e.to_string(), None),
                );
            }
        };
    let mut result = InitializeResult::new(capabilities(true))
        .with_server_info(server_info())
        .with_instructions(INSTRUCTIONS);
    result.protocol_version = serde_json::from_value(json!(version)).unwrap_or_default();
    let body = serde_json::to_value(&result).unwrap_or_else(|_| json!({}));
    tracing::info!(session = %sid, %version, "MCP session opened");
    HttpResponse::Ok()
        .insert_header(("Mcp-Session-Id", sid))
        .json(rpc_result(id, body))
}

fn discover() -> Value {
    json!({
        "resultType": "complete",
        "supportedVersions": era::supported(),
        "capabilities": capabilities(false),
        "instructions": INSTRUCTIONS,
        "ttlMs": 0,
        "cacheScope": "public",
        "_meta": { era::META_SERVER_INFO: server_info() },
    })
}

/// `DELETE /mcp`: ends a legacy session.
async fn delete(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match era::session_id(&req) {
        Some(sid)
            if state
                .sessions
                .get_for(&sid, &client_of(&req).name)
                .is_some()
                && state.sessions.remove(&sid) =>
        {
            HttpResponse::NoContent().finish()
        }
        Some(_) => reply(
            StatusCode::NOT_FOUND,
            rpc_error(None, jsonrpc::SESSION_NOT_FOUND, "Session not found", None),
        ),
        None => HttpResponse::MethodNotAllowed()
            .insert_header(("Allow", "POST"))
            .finish(),
    }
}
