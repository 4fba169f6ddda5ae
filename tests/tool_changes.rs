//! An upstream whose tool list changes while it runs: mcpvisor hears it in
//! either era (a session notification, or a 2026-07-28
//! `subscriptions/listen` stream it holds open), refreshes its table, and
//! tells its own listeners.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{Daemon, client};
use serde_json::{Value, json};

fn config(protocols: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
heartbeat_ms = 200
[[services]]
name = "solo"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", "--protocols", "{protocols}", "--hide-tool", "asana_delete_tag", "--hide-after-calls", "1"]
manifest = "builtin:asana"
"#
    )
}

fn tool_count(d: &Daemon) -> usize {
    let body: Value = client()
        .post(d.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}}}),
        )
        .send()
        .and_then(|r| r.json())
        .unwrap_or(Value::Null);
    body["result"]["tools"].as_array().map_or(0, Vec::len)
}

fn upstream_change_reaches_downstream_listeners(protocols: &str) {
    let d = Daemon::start(&config(protocols));
    assert_eq!(d.service("solo")["protocol"], protocols);
    assert_eq!(tool_count(&d), 42);

    // A 2026 client listens for tool list changes on mcpvisor.
    let mut listen = client()
        .post(d.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(
            &json!({"jsonrpc": "2.0", "id": "L", "method": "subscriptions/listen", "params": {
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}},
            "notifications": {"toolsListChanged": true}}}),
        )
        .send()
        .unwrap();

    // The first call makes the upstream withdraw a tool.
    let events = d.stream("asana_list_workspaces", json!({}));
    assert!(events.iter().any(|e| e.event == "result"));

    let mut seen = String::new();
    let mut buf = [0u8; 2048];
    while !seen.contains("notifications/tools/list_changed") {
        let n = listen.read(&mut buf).unwrap();
        assert!(n > 0, "listen stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let change = common::parse_sse(&seen)
        .into_iter()
        .find(|e| e.data["method"] == "notifications/tools/list_changed")
        .unwrap();
    assert_eq!(
        change.data["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "L"
    );
    d.wait_until("the table to drop the tool", Duration::from_secs(5), |d| {
        tool_count(d) == 41
    });
}

#[test]
fn a_2026_upstream_announces_changes_on_its_listen_stream() {
    upstream_change_reaches_downstream_listeners("2026-07-28");
}

#[test]
fn a_2025_upstream_announces_changes_on_its_session() {
    upstream_change_reaches_downstream_listeners("2025-11-25");
}
