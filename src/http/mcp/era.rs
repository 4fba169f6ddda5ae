//! Which protocol era a request belongs to, and the rules each era's
//! Streamable HTTP transport imposes on headers.

use super::jsonrpc;
use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest};
use base64::Engine as _;
use serde_json::{Value, json};

/// The revision that is stateless (no initialize, no sessions).
pub const STATELESS: &str = "2026-07-28";
/// Revisions that use `initialize` and sessions, newest first.
pub const SESSION_ERAS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// `_meta` keys of 2026-07-28 requests.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// Every revision mcpvisor serves, newest first.
pub fn supported() -> Vec<&'static str> {
    std::iter::once(STATELESS).chain(SESSION_ERAS).collect()
}

/// The version an `initialize` is answered with.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| SESSION_ERAS.iter().find(|v| **v == r).copied())
        .unwrap_or(SESSION_ERAS[0])
}

/// A protocol rule broken by a request: status, JSON-RPC code, message.
#[derive(Debug)]
pub struct Violation {
    pub status: StatusCode,
    pub code: i32,
    pub message: String,
    pub data: Option<Value>,
}

impl Violation {
    pub fn new(status: StatusCode, code: i32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            data: None,
        }
    }

    fn header_mismatch(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            jsonrpc::HEADER_MISMATCH,
            format!("Header mismatch: {}", message.into()),
        )
    }
}

/// The `_meta` object of a request's params, if any.
pub fn meta(params: Option<&Value>) -> Option<&serde_json::Map<String, Value>> {
    params?.get("_meta")?.as_object()
}

/// Whether a session-less request speaks 2026-07-28 (by body or header).
pub fn is_stateless(req: &HttpRequest, params: Option<&Value>) -> bool {
    meta(params).is_some_and(|m| m.contains_key(META_VERSION))
        || header(req, "mcp-protocol-version").is_some_and(|v| v.as_str() >= STATELESS)
}

/// Checks a 2026-07-28 request: required `_meta` keys, a supported
/// version, and the standard headers mirroring the body.
pub fn check_stateless(
    req: &HttpRequest,
    method: &str,
    params: Option<&Value>,
) -> Result<(), Violation> {
    let meta = meta(params);
    let version = meta
        .and_then(|m| m.get(META_VERSION))
        .and_then(Value::as_str);
    let Some(version) = version else {
        return Err(Violation::new(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_PARAMS,
            format!("missing `_meta[\"{META_VERSION}\"]`"),
        ));
    };
    // A header that contradicts the body is a mismatch, whatever either
    // names; only then is the version itself judged.
    let header_version = header(req, "mcp-protocol-version");
    if let Some(h) = &header_version
        && h != version
    {
        return Err(Violation::header_mismatch(format!(
            "MCP-Protocol-Version header `{h}` does not match _meta version `{version}`"
        )));
    }
    if version != STATELESS {
        let mut v = Violation::new(
            StatusCode::BAD_REQUEST,
            jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
        );
        v.data = Some(json!({"supported": supported(), "requested": version}));
        return Err(v);
    }
    if !meta.is_some_and(|m| m.get(META_CAPABILITIES).is_some_and(Value::is_object)) {
        return Err(Violation::new(
            StatusCode::BAD_REQUEST,
            jsonrpc::INVALID_PARAMS,
            format!("missing `_meta[\"{META_CAPABILITIES}\"]`"),
        ));
    }
    if header_version.is_none() {
        return Err(Violation::header_mismatch(
            "MCP-Protocol-Version header is missing",
        ));
    }
    match header(req, "mcp-method") {
        Some(h) if h == method => {}
        Some(h) => {
            return Err(Violation::header_mismatch(format!(
                "Mcp-Method header `{h}` does not match body method `{method}`"
            )));
        }
        None => return Err(Violation::header_mismatch("Mcp-Method header is missing")),
    }
    let name_field = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(field) = name_field {
        let body = params
            .and_then(|p| p.get(field))
            .and_then(Value::as_str)
            .unwrap_or("");
        match header(req, "mcp-name").map(|h| decode(&h)) {
            Some(Some(h)) if h == body => {}
            Some(Some(h)) => {
                return Err(Violation::header_mismatch(format!(
                    "Mcp-Name header `{h}` does not match body value `{body}`"
                )));
            }
            Some(None) => return Err(Violation::header_mismatch("Mcp-Name header is not valid")),
            None => return Err(Violation::header_mismatch("Mcp-Name header is missing")),
        }
    }
    Ok(())
}

/// Checks a session-era request's `MCP-Protocol-Version` header: when
/// present it must name a session revision mcpvisor supports. Like the
/// official SDKs, a session accepts any of them (clients that negotiated
/// one revision are known to send another); an unknown or stateless
/// version is a 400.
pub fn check_session_header(req: &HttpRequest, negotiated: &str) -> Result<(), Violation> {
    match header(req, "mcp-protocol-version") {
        Some(h) if !SESSION_ERAS.contains(&h.as_str()) => {
            let mut v = Violation::new(
                StatusCode::BAD_REQUEST,
                jsonrpc::INVALID_REQUEST,
                format!(
                    "MCP-Protocol-Version `{h}` is not a session revision (this session negotiated `{negotiated}`)"
                ),
            );
            v.data = Some(json!({"supported": SESSION_ERAS, "requested": h}));
            Err(v)
        }
        _ => Ok(()),
    }
}

/// A header as text.
pub fn header(req: &HttpRequest, name: &str) -> Option<String> {
    header_of(req.headers(), name)
}

/// A header of a request or response as text.
pub fn header_of(headers: &actix_web::http::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

/// Decodes a header value that may use the `=?base64?...?=` form.
fn decode(v: &str) -> Option<String> {
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(v.to_owned()),
    }
}

/// Whether the client accepts an SSE response.
pub fn accepts_sse(req: &HttpRequest) -> bool {
    if req.extensions().get::<Framed>().is_some() {
        return true;
    }
    req.extensions().get::<JsonOnly>().is_none()
        && header(req, "accept").is_some_and(|a| a.contains("text/event-stream"))
}

/// The legacy session a request belongs to: its `Mcp-Session-Id`, or the
/// session of the HTTP+SSE stream it was posted to.
pub fn session_id(req: &HttpRequest) -> Option<String> {
    if let Some(framed) = req.extensions().get::<Framed>() {
        return framed.session.clone();
    }
    header(req, "mcp-session-id")
}

/// Marks a message posted on the HTTP+SSE transport: it belongs to that
/// stream's session (if `initialize` made one yet), and whatever answers it
/// is re-framed onto that stream, so streamed answers are always welcome.
#[derive(Debug, Clone)]
pub struct Framed {
    pub session: Option<String>,
}

/// Marks a request whose answers must be JSON, never a stream (the
/// messages of a JSON-RPC batch).
#[derive(Debug, Clone, Copy)]
pub struct JsonOnly;

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn params() -> Value {
        json!({"name": "t", "_meta": {META_VERSION: STATELESS, META_CAPABILITIES: {}}})
    }

    #[test]
    fn negotiation_echoes_known_and_falls_back() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2024-11-05")), "2024-11-05");
        assert_eq!(negotiate(Some("2026-07-28")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
    }

    #[test]
    fn stateless_headers_must_mirror_the_body() {
        let ok = TestRequest::default()
            .insert_header(("MCP-Protocol-Version", STATELESS))
            .insert_header(("Mcp-Method", "tools/call"))
            .insert_header(("Mcp-Name", "=?base64?dA==?="))
            .to_http_request();
        assert!(check_stateless(&ok, "tools/call", Some(&params())).is_ok());
        let wrong = TestRequest::default()
            .insert_header(("MCP-Protocol-Version", STATELESS))
            .insert_header(("Mcp-Method", "tools/list"))
            .to_http_request();
        let v = check_stateless(&wrong, "tools/call", Some(&params())).unwrap_err();
        assert_eq!((v.status.as_u16(), v.code), (400, jsonrpc::HEADER_MISMATCH));
    }

    #[test]
    fn unsupported_version_lists_supported_ones() {
        let req = TestRequest::default().to_http_request();
        let p = json!({"_meta": {META_VERSION: "1999-01-01", META_CAPABILITIES: {}}});
        let v = check_stateless(&req, "tools/list", Some(&p)).unwrap_err();
        assert_eq!(v.code, jsonrpc::UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(v.data.unwrap()["requested"], "1999-01-01");
    }
}
