//! The JSON-RPC 2.0 envelope of `/mcp`: reply and error bodies, and the
//! error codes mcpvisor answers with, by name.

use serde_json::{Value, json};

/// The body is not JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON, but not a JSON-RPC request (or not one this session may send).
pub const INVALID_REQUEST: i32 = -32600;
/// No such method here.
pub const METHOD_NOT_FOUND: i32 = -32601;
/// The method's parameters are wrong (an unknown tool or resource among them).
pub const INVALID_PARAMS: i32 = -32602;
/// mcpvisor or an upstream failed inside.
pub const INTERNAL_ERROR: i32 = -32603;
/// The `Mcp-Session-Id` names no live session of this client.
pub const SESSION_NOT_FOUND: i32 = -32001;
/// A 2026-07-28 request's headers disagree with its body.
pub const HEADER_MISMATCH: i32 = -32020;
/// The call needs a capability the client did not declare.
pub const MISSING_CLIENT_CAPABILITY: i32 = -32021;
/// The protocol revision asked for is not one mcpvisor speaks.
pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;

/// A JSON-RPC reply body.
pub fn rpc_result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// A JSON-RPC reply as text, around a result that already is: `id` as
/// written on the wire, `result` a JSON object's text.
pub fn result_text(id: &str, result: &[u8]) -> String {
    // (Text an upstream wrote is checked UTF-8 already; the check here is
    // cheaper than the lossy conversion's walk.)
    let result = std::str::from_utf8(result).map_or_else(
        |_| String::from_utf8_lossy(result),
        std::borrow::Cow::Borrowed,
    );
    let mut text = String::with_capacity(result.len() + id.len() + 36);
    text.push_str(r#"{"jsonrpc":"2.0","id":"#);
    text.push_str(id);
    text.push_str(r#","result":"#);
    text.push_str(&result);
    text.push('}');
    text
}

/// A JSON-RPC error body.
pub fn rpc_error(id: Option<&Value>, code: i32, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = data {
        error["data"] = d;
    }
    json!({"jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error})
}
