//! Resource subscriptions through mcpvisor, across eras: a session client
//! and a 2026-07-28 `subscriptions/listen` client both hear an upstream's
//! `notifications/resources/updated`, whether mcpvisor speaks 2026-07-28 to
//! that upstream (its listen stream) or keeps a session with it
//! (`resources/subscribe`).

mod common;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use common::{Daemon, client, conformance_target};
use serde_json::{Value, json};

fn config(protocol: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "target"
transport = "streamable_http"
command = "{}"
args = ["--http", "127.0.0.1:{{port}}"]
url = "http://127.0.0.1:{{port}}/mcp"
protocol = "{protocol}"
"#,
        conformance_target().display()
    )
}

const ACCEPT: &str = "application/json, text/event-stream";

fn initialize(d: &Daemon) -> String {
    let r = client()
        .post(d.url("/mcp"))
        .header("accept", ACCEPT)
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        )
        .send()
        .unwrap();
    r.headers()["mcp-session-id"].to_str().unwrap().to_owned()
}

fn session_rpc(d: &Daemon, sid: &str, method: &str, params: Value) -> Value {
    let body = client()
        .post(d.url("/mcp"))
        .header("accept", "application/json")
        .header("mcp-session-id", sid)
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params}))
        .send()
        .unwrap()
        .text()
        .unwrap();
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

/// Reads an SSE response on a thread; its JSON messages arrive on the channel.
fn messages(response: reqwest::blocking::Response) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(response).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data:")
                && let Ok(v) = serde_json::from_str(data.trim())
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// Waits for the first message with `method`.
fn next_with(rx: &mpsc::Receiver<Value>, method: &str) -> Value {
    loop {
        let m = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {method} within 10 s"));
        if m["method"] == method {
            return m;
        }
    }
}

fn touch(d: &Daemon, sid: &str, uri: &str) {
    let r = session_rpc(
        d,
        sid,
        "tools/call",
        json!({"name": "test_touch_resource", "arguments": {"uri": uri}}),
    );
    assert_eq!(r["result"]["isError"], Value::Null, "{r}");
}

fn updates_reach_both_kinds_of_client(protocol: &str) {
    let d = Daemon::start(&config(protocol));
    let sid = initialize(&d);
    let r = session_rpc(
        &d,
        &sid,
        "resources/subscribe",
        json!({"uri": "test://watched-resource"}),
    );
    assert_eq!(r["result"], json!({}), "{r}");
    let session_stream = messages(
        client()
            .get(d.url("/mcp"))
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sid)
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap(),
    );
    let listen = messages(
        client()
            .post(d.url("/mcp"))
            .header("accept", ACCEPT)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "subscriptions/listen")
            .timeout(Duration::from_secs(30))
            .json(
                &json!({"jsonrpc": "2.0", "id": 7, "method": "subscriptions/listen",
                "params": {"notifications": {"resourceSubscriptions": ["test://static-text"]},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}}}}),
            )
            .send()
            .unwrap(),
    );
    let ack = next_with(&listen, "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!(["test://static-text"]),
        "{ack}"
    );

    // The GET stream is open once its first event could arrive; touching
    // until the update shows up avoids racing the stream's start.
    let mut got = None;
    for _ in 0..50 {
        touch(&d, &sid, "test://watched-resource");
        if let Ok(m) = session_stream.recv_timeout(Duration::from_millis(200))
            && m["method"] == "notifications/resources/updated"
        {
            got = Some(m);
            break;
        }
    }
    let update = got.expect("the session heard the update");
    assert_eq!(update["params"]["uri"], "test://watched-resource");

    touch(&d, &sid, "test://static-text");
    let update = next_with(&listen, "notifications/resources/updated");
    assert_eq!(update["params"]["uri"], "test://static-text");
    assert_eq!(
        update["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        7
    );

    // After unsubscribing, the session hears no more of that resource:
    // with static-text now watched instead, the next update it hears,
    // after touching both in order, is static-text's.
    let r = session_rpc(
        &d,
        &sid,
        "resources/unsubscribe",
        json!({"uri": "test://watched-resource"}),
    );
    assert_eq!(r["result"], json!({}), "{r}");
    let r = session_rpc(
        &d,
        &sid,
        "resources/subscribe",
        json!({"uri": "test://static-text"}),
    );
    assert_eq!(r["result"], json!({}), "{r}");
    touch(&d, &sid, "test://watched-resource");
    touch(&d, &sid, "test://static-text");
    let next = next_with(&session_stream, "notifications/resources/updated");
    assert_eq!(next["params"]["uri"], "test://static-text", "{next}");
}

#[test]
fn resource_updates_through_a_2026_upstream() {
    updates_reach_both_kinds_of_client("2026-07-28");
}

#[test]
fn resource_updates_through_a_session_upstream() {
    updates_reach_both_kinds_of_client("2025-11-25");
}
