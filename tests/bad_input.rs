//! Bad input gets a clear error, and the daemon keeps serving.

mod common;

use common::{Daemon, client, two_replicas};
use serde_json::{Value, json};

fn raw_post(d: &Daemon, path: &str, body: &'static str) -> (u16, Value) {
    let r = client()
        .post(d.url(path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn still_serving(d: &Daemon) {
    assert_eq!(d.get("/healthz").0, 200);
    let events = d.stream("asana_list_workspaces", json!({}));
    assert!(events.iter().any(|e| e.event == "result"), "{events:?}");
}

#[test]
fn stream_api_rejects_bad_requests_before_streaming() {
    let config = two_replicas(&[], &[]).replace(
        "heartbeat_ms = 500",
        "heartbeat_ms = 500\nmax_body_bytes = 4096",
    );
    let d = Daemon::start(&config);

    let (status, body) = raw_post(&d, "/api/mcp/stream", "{\"toolName\": ");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["category"], "validation");

    let (status, body) = d.post(
        "/api/mcp/stream",
        &json!({"toolName": "asana_no_such_tool"}),
    );
    assert_eq!(status, 404);
    assert_eq!(body["error"]["category"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("asana_no_such_tool")
    );

    let (status, body) = d.post(
        "/api/mcp/stream",
        &json!({"toolName": "asana_get_task", "arguments": {"task_id": 42}}),
    );
    assert_eq!(status, 400);
    assert_eq!(body["error"]["category"], "validation");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/task_id"),
        "{body}"
    );
    assert_eq!(body["error"]["delivery"], "never_sent");

    let (status, body) = d.post(
        "/api/mcp/stream",
        &json!({"toolName": "asana_get_task", "arguments": {}}),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("task_id"),
        "{body}"
    );

    let (status, _) = d.post(
        "/api/mcp/stream",
        &json!({"toolName": "asana_list_workspaces", "bogus": 1}),
    );
    assert_eq!(status, 400, "unknown fields are refused");

    let big = "x".repeat(10_000);
    let (status, body) = d.post(
        "/api/mcp/stream",
        &json!({"toolName": "asana_get_task", "arguments": {"task_id": big}}),
    );
    assert_eq!(status, 413);
    assert_eq!(body["error"]["category"], "validation");

    still_serving(&d);
}

fn mcp_post(d: &Daemon, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let mut req = client()
        .post(d.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn modern(method: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
}

#[test]
fn mcp_endpoint_rejects_bad_messages_with_json_rpc_errors() {
    let d = Daemon::start(&two_replicas(&[], &[]));

    let (status, body) = raw_post(&d, "/mcp", "{not json");
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32700))
    );

    let (status, body) = raw_post(
        &d,
        "/mcp",
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
    );
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600))
    );

    // A session-era request without a session, and with an unknown one.
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _) = mcp_post(&d, &[], &ping);
    assert_eq!(status, 400);
    let (status, body) = mcp_post(&d, &[("mcp-session-id", "no-such-session")], &ping);
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Session not found")
    );

    // 2026-07-28: headers must mirror the body; versions must be supported.
    let call = modern("tools/call", json!({"name": "asana_list_workspaces"}));
    let v = ("mcp-protocol-version", "2026-07-28");
    let (status, body) = mcp_post(
        &d,
        &[
            v,
            ("mcp-method", "tools/list"),
            ("mcp-name", "asana_list_workspaces"),
        ],
        &call,
    );
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32020))
    );
    let (status, body) = mcp_post(
        &d,
        &[v, ("mcp-method", "tools/call"), ("mcp-name", "other")],
        &call,
    );
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32020))
    );
    let mut old = call.clone();
    old["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2020-01-01");
    let (status, body) = mcp_post(
        &d,
        &[
            ("mcp-protocol-version", "2020-01-01"),
            ("mcp-method", "tools/call"),
        ],
        &old,
    );
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32022))
    );
    assert_eq!(body["error"]["data"]["requested"], "2020-01-01");

    let heads = [v, ("mcp-method", "tools/call"), ("mcp-name", "asana_nope")];
    let (status, body) = mcp_post(
        &d,
        &heads,
        &modern("tools/call", json!({"name": "asana_nope"})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (200, Some(-32602))
    );

    // Schema-invalid arguments: a tool error the model can read, nothing sent upstream.
    let heads = [
        v,
        ("mcp-method", "tools/call"),
        ("mcp-name", "asana_get_task"),
    ];
    let (status, body) = mcp_post(
        &d,
        &heads,
        &modern(
            "tools/call",
            json!({"name": "asana_get_task", "arguments": {}}),
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert_eq!(body["result"]["resultType"], "complete");
    assert_eq!(
        body["result"]["_meta"]["io.mcpvisor/error"]["category"],
        "validation"
    );

    let (status, body) = mcp_post(
        &d,
        &[v, ("mcp-method", "nope/nope")],
        &modern("nope/nope", json!({})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (404, Some(-32601))
    );

    // A foreign browser origin is refused.
    let (status, _) = mcp_post(&d, &[("origin", "https://evil.example")], &ping);
    assert_eq!(status, 403);

    still_serving(&d);
}

#[test]
fn a_dead_upstream_is_a_clear_service_unavailable_error() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
[router]
wait_for_service_ms = 300
[[services]]
name = "ghost"
transport = "stdio"
command = "/nonexistent/mcp-server"
manifest = "builtin:asana"
[services.restart]
backoff_initial_ms = 20
max_restarts = 2
"#;
    let d = Daemon::start_with(config, false);
    d.wait_until(
        "the service to be given up",
        std::time::Duration::from_secs(10),
        |d| d.service("ghost")["state"] == "failed",
    );
    let s = d.service("ghost");
    assert!(
        s["lastExit"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/mcp-server"),
        "{s}"
    );
    assert_eq!(d.get("/readyz").0, 503);

    let events = d.stream("asana_list_workspaces", json!({}));
    let error = events
        .iter()
        .find(|e| e.event == "error")
        .expect("an error event");
    assert_eq!(
        error.data["category"], "service_unavailable",
        "{}",
        error.data
    );
    assert_eq!(error.data["retryable"], true);
    assert_eq!(events.last().unwrap().data["ok"], false);
    assert_eq!(d.get("/healthz").0, 200);
}
