//! `/mcp` at the wire level: session lifecycle of the 2025 revisions,
//! 2026-07-28 subscriptions, and cancellation by notification.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{Daemon, PROJECT, client, two_replicas};
use serde_json::{Value, json};

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

fn post(d: &Daemon, headers: &[(&str, &str)], body: &Value) -> reqwest::blocking::Response {
    let mut req = client().post(d.url("/mcp")).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().unwrap()
}

fn initialize(d: &Daemon, version: &str) -> String {
    let r = post(
        d,
        &[ACCEPT],
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    assert_eq!(r.status().as_u16(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let body: Value = r.json().unwrap();
    assert_eq!(body["result"]["protocolVersion"], version);
    assert_eq!(body["result"]["serverInfo"]["name"], "mcpvisor");
    assert!(body["result"]["capabilities"]["tools"].is_object());
    sid
}

#[test]
fn a_2025_session_lives_from_initialize_to_delete() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    let sid = initialize(&d, "2025-06-18");
    let session = ("mcp-session-id", sid.as_str());
    let version = ("mcp-protocol-version", "2025-06-18");

    let r = post(
        &d,
        &[ACCEPT, session, version],
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!(r.status().as_u16(), 202);

    let r = post(
        &d,
        &[ACCEPT, session, version],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    );
    let body: Value = r.json().unwrap();
    assert_eq!(body["result"]["tools"].as_array().unwrap().len(), 42);
    assert!(
        body["result"].get("resultType").is_none(),
        "2026 fields stay out of older sessions"
    );

    let r = post(
        &d,
        &[ACCEPT, session, version],
        &json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
    );
    assert_eq!(r.json::<Value>().unwrap()["result"], json!({}));

    // Another session revision in the header is accepted, as the official
    // SDKs do; an unknown or stateless one is refused.
    let r = post(
        &d,
        &[ACCEPT, session, ("mcp-protocol-version", "2025-03-26")],
        &json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}),
    );
    assert_eq!(r.status().as_u16(), 200);
    for bad in ["1999-01-01", "2026-07-28"] {
        let r = post(
            &d,
            &[ACCEPT, session, ("mcp-protocol-version", bad)],
            &json!({"jsonrpc": "2.0", "id": 3, "method": "ping"}),
        );
        assert_eq!(r.status().as_u16(), 400, "{bad}");
    }

    // The session's server-to-client stream opens as SSE.
    let r = client()
        .get(d.url("/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(r);

    let r = client()
        .delete(d.url("/mcp"))
        .header("mcp-session-id", &sid)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = post(
        &d,
        &[ACCEPT, session, version],
        &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
    );
    assert_eq!(r.status().as_u16(), 404, "a deleted session is gone");
    let (_, services) = d.get("/api/services");
    assert_eq!(services["mcpSessions"], 0);
}

fn modern_headers<'a>(method: &'a str, name: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ACCEPT,
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(n) = name {
        h.push(("mcp-name", n));
    }
    h
}

fn modern_meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
           "io.modelcontextprotocol/clientCapabilities": {}})
}

#[test]
fn a_2026_client_discovers_and_subscribes_without_a_session() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    let r = post(
        &d,
        &modern_headers("server/discover", None),
        &json!({"jsonrpc": "2.0", "id": "d", "method": "server/discover", "params": {"_meta": modern_meta()}}),
    );
    assert!(r.headers().get("mcp-session-id").is_none());
    let body: Value = r.json().unwrap();
    let result = &body["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["supportedVersions"][0], "2026-07-28");
    assert!(
        result["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2024-11-05"))
    );
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcpvisor"
    );
    assert!(result["ttlMs"].is_u64() && result["cacheScope"].is_string());

    let r = post(
        &d,
        &modern_headers("tools/list", None),
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": modern_meta()}}),
    );
    let body: Value = r.json().unwrap();
    assert_eq!(body["result"]["resultType"], "complete");
    assert_eq!(body["result"]["cacheScope"], "public");
    assert!(body["result"]["ttlMs"].is_u64());

    // subscriptions/listen: an SSE stream that opens with the acknowledgement.
    let mut r = post(
        &d,
        &modern_headers("subscriptions/listen", None),
        &json!({"jsonrpc": "2.0", "id": 7, "method": "subscriptions/listen",
                "params": {"_meta": modern_meta(), "notifications": {"toolsListChanged": true, "promptsListChanged": true}}}),
    );
    assert_eq!(r.status().as_u16(), 200);
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains("\n\n") || !seen.contains("data:") {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let first = common::parse_sse(&seen)
        .into_iter()
        .next()
        .expect("a first message");
    assert_eq!(
        first.data["method"],
        "notifications/subscriptions/acknowledged"
    );
    assert_eq!(
        first.data["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        7
    );
    assert_eq!(
        first.data["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "only what we can honour"
    );
}

#[test]
fn notifications_cancelled_stops_a_call_of_a_2025_session() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "web"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{port}", "--unit-latency-ms", "100"]
url = "http://127.0.0.1:{port}/mcp"
manifest = "builtin:asana"
"#;
    let d = Daemon::start(config);
    let stats_url = d.service("web")["endpoint"]
        .as_str()
        .unwrap()
        .replace("/mcp", "/sim/stats");
    let stats = || -> Value { client().get(&stats_url).send().unwrap().json().unwrap() };
    let sid = initialize(&d, "2025-11-25");

    let base = d.url("/mcp");
    let sid2 = sid.clone();
    let call = std::thread::spawn(move || {
        client()
            .post(base)
            .header("accept", "application/json")
            .header("mcp-session-id", sid2)
            .json(&json!({"jsonrpc": "2.0", "id": "long-1", "method": "tools/call",
                "params": {"name": "asana_get_project_hierarchy", "arguments": {"project_id": PROJECT}}}))
            .send()
            .unwrap()
            .status()
            .as_u16()
    });
    d.wait_until(
        "the call to reach the upstream",
        Duration::from_secs(5),
        |_| stats()["calls"] == 1,
    );
    let r = post(
        &d,
        &[ACCEPT, ("mcp-session-id", sid.as_str())],
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "long-1", "reason": "user"}}),
    );
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(
        call.join().unwrap(),
        202,
        "a cancelled call gets no JSON-RPC answer"
    );
    d.wait_until(
        "the upstream to see the cancellation",
        Duration::from_secs(5),
        |_| stats()["cancelled"] == 1,
    );
    assert_eq!(stats()["completed"], 0);
}
