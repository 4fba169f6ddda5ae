//! `/mcp` methods other than tools: resources, resource templates, prompts,
//! completion and log levels, answered from the catalog of what every
//! service offers or forwarded to the service that owns the resource,
//! template or prompt named in the request.

use super::jsonrpc;
use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::web;
use mcpvisor_actors::catalog::Capability;
use mcpvisor_actors::passthrough::{self, RelayError};
use rmcp::model::ClientRequest;
use serde_json::{Map, Value, json};

use super::{Era, reply, rpc_error, rpc_result};
use crate::http::AppState;

/// Methods this module answers.
pub fn handles(method: &str) -> bool {
    matches!(
        method,
        "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "prompts/list"
            | "prompts/get"
            | "completion/complete"
            | "logging/setLevel"
    )
}

pub async fn dispatch(
    state: web::Data<AppState>,
    era: Era,
    id: Value,
    method: &str,
    params: Value,
) -> HttpResponse {
    let stateless = matches!(era, Era::Stateless);
    // Services that are down (past their grace period) are not listed or
    // routed to; their catalog entries come back with them.
    let services: Vec<String> = passthrough::service_names(&state.directory)
        .into_iter()
        .filter(|n| state.directory.get(n).is_some_and(|h| h.listable()))
        .collect();
    let catalog = state.registry.catalog();
    let listing = |key: &str, items: Value| {
        let mut result = Map::new();
        result.insert(key.into(), items);
        if stateless {
            result.insert("ttlMs".into(), json!(0));
            result.insert("cacheScope".into(), json!("public"));
        }
        reply(
            StatusCode::OK,
            rpc_result(&id, era.finish(Value::Object(result))),
        )
    };
    let text = |field: &str| params.get(field).and_then(Value::as_str).map(str::to_owned);
    let (candidates, what) = match method {
        "resources/list" => return listing("resources", json!(catalog.resources(&services))),
        "resources/templates/list" => {
            return listing("resourceTemplates", json!(catalog.templates(&services)));
        }
        "prompts/list" => return listing("prompts", json!(catalog.prompts(&services))),
        "resources/subscribe" | "resources/unsubscribe" => {
            // Session revisions only (removed in 2026-07-28, refused before).
            let Era::Session(session) = &era else {
                return invalid(&id, "resource subscriptions need a session");
            };
            let Some(uri) = text("uri") else {
                return invalid(&id, "`uri` must be a string");
            };
            if method == "resources/unsubscribe" {
                session.unwatch(&uri);
                return reply(StatusCode::OK, rpc_result(&id, era.finish(json!({}))));
            }
            if !session.watches(&uri) {
                let able = catalog.with(&services, Capability::Subscribe);
                let mut owners = catalog.owners_of_uri(&services, &uri);
                owners.retain(|s| able.contains(s));
                match passthrough::watch(&state.registry, &state.directory, &owners, &uri).await {
                    Ok(watch) => session.add_watch(watch),
                    Err(e) => return relay_error(&id, e),
                }
            }
            return reply(StatusCode::OK, rpc_result(&id, era.finish(json!({}))));
        }
        "resources/read" => {
            let Some(uri) = text("uri") else {
                return invalid(&id, "`uri` must be a string");
            };
            let owners = catalog.owners_of_uri(&services, &uri);
            if owners.is_empty() {
                return reply(
                    StatusCode::OK,
                    rpc_error(
                        Some(&id),
                        jsonrpc::INVALID_PARAMS,
                        &format!("Resource not found: {uri}"),
                        Some(json!({"uri": uri})),
                    ),
                );
            }
            (owners, format!("resource `{uri}`"))
        }
        "prompts/get" => {
            let Some(name) = text("name") else {
                return invalid(&id, "`name` must be a string");
            };
            let owners = catalog.owners_of_prompt(&services, &name);
            if owners.is_empty() {
                return invalid(&id, &format!("Unknown prompt: {name}"));
            }
            (owners, format!("prompt `{name}`"))
        }
        "completion/complete" => {
            let reference = params.get("ref");
            let kind = reference
                .and_then(|r| r.get("type"))
                .and_then(Value::as_str);
            let able = catalog.with(&services, Capability::Completions);
            let owners = match kind {
                Some("ref/prompt") => {
                    let name = reference
                        .and_then(|r| r.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    catalog.owners_of_prompt(&services, name)
                }
                Some("ref/resource") => {
                    let uri = reference
                        .and_then(|r| r.get("uri"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    catalog.owners_of_uri(&services, uri)
                }
                _ => return invalid(&id, "`ref` must be a ref/prompt or ref/resource"),
            };
            let owners: Vec<String> = owners.into_iter().filter(|s| able.contains(s)).collect();
            if owners.is_empty() {
                // Nothing to complete from: an empty completion.
                let empty = json!({"completion": {"values": [], "hasMore": false}});
                return reply(StatusCode::OK, rpc_result(&id, era.finish(empty)));
            }
            (owners, "completion".to_owned())
        }
        "logging/setLevel" => {
            // Upstreams are shared, so their level is not the client's to
            // set: the session keeps its level, and its calls' log messages
            // are filtered by it.
            let Era::Session(session) = &era else {
                return invalid(&id, "logging/setLevel needs a session");
            };
            let Some(level) = text("level").and_then(|l| log_severity(&l).map(|_| l)) else {
                return invalid(&id, "`level` must be a syslog level (debug ... emergency)");
            };
            session.set_log_level(level);
            return reply(StatusCode::OK, rpc_result(&id, era.finish(json!({}))));
        }
        _ => {
            return reply(
                StatusCode::OK,
                rpc_error(
                    Some(&id),
                    jsonrpc::METHOD_NOT_FOUND,
                    &format!("Method not found: {method}"),
                    None,
                ),
            );
        }
    };
    let request = match request(method, &params) {
        Ok(r) => r,
        Err(e) => return invalid(&id, &e),
    };
    match passthrough::forward(&state.directory, &candidates, request, &what).await {
        Ok(result) => {
            let mut value = serde_json::to_value(&result).unwrap_or_else(|_| json!({}));
            // 2026-07-28 reads carry caching hints; a session-era upstream
            // gives none, so say "do not cache" unless it said otherwise.
            if stateless
                && method == "resources/read"
                && let Some(o) = value.as_object_mut()
            {
                o.entry("ttlMs").or_insert(json!(0));
                o.entry("cacheScope").or_insert(json!("private"));
            }
            reply(StatusCode::OK, rpc_result(&id, era.finish(value)))
        }
        Err(e) => relay_error(&id, e),
    }
}

/// A relayed request's failure as the client sees it: the upstream's own
/// JSON-RPC error as sent, or mcpvisor's, with its category in `data`.
fn relay_error(id: &Value, e: RelayError) -> HttpResponse {
    match e {
        RelayError::Upstream(e) => reply(
            StatusCode::OK,
            rpc_error(Some(id), e.code.0, &e.message, e.data),
        ),
        RelayError::Failed(e) => {
            let body = crate::http::errors::body_of(&e);
            reply(
                StatusCode::OK,
                rpc_error(
                    Some(id),
                    jsonrpc::INTERNAL_ERROR,
                    &e.to_string(),
                    Some(body["error"].clone()),
                ),
            )
        }
    }
}

/// The rank of an MCP (syslog) log level, lowest first.
pub fn log_severity(level: &str) -> Option<u8> {
    [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ]
    .iter()
    .position(|l| *l == level)
    .map(|p| p as u8)
}

fn invalid(id: &Value, message: &str) -> HttpResponse {
    reply(
        StatusCode::OK,
        rpc_error(Some(id), jsonrpc::INVALID_PARAMS, message, None),
    )
}

/// The request to send upstream: the client's params without the
/// 2026-07-28 `_meta` keys of mcpvisor's own session with the client
/// (the upstream connection carries its own).
fn request(method: &str, params: &Value) -> Result<ClientRequest, String> {
    let mut params = params.clone();
    if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.retain(|k, _| !k.starts_with("io.modelcontextprotocol/"));
        if meta.is_empty()
            && let Some(p) = params.as_object_mut()
        {
            p.remove("_meta");
        }
    }
    serde_json::from_value(json!({"method": method, "params": params}))
        .map_err(|e| format!("invalid params for {method}: {e}"))
}
