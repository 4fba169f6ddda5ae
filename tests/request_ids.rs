//! A call's request id: given by the client (`X-Request-Id`) or made by
//! mcpvisor, it comes back in the response header, in every
//! `/api/mcp/stream` event and error body, and on every log line of the
//! call — here the retry of a timed-out attempt, logged by the service
//! actor that runs it.

mod common;

use common::{Daemon, client, parse_sse};
use serde_json::json;

fn config() -> String {
    r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "slow"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", "--hang-rate", "1"]
manifest = "builtin:asana"
[services.limits]
attempt_timeout_ms = 200
call_timeout_ms = 2000
"#
    .to_owned()
}

#[test]
fn a_calls_request_id_reaches_its_events_header_and_log_lines() {
    let d = Daemon::start_logged(&config(), &[], None);
    let r = client()
        .post(d.url("/api/mcp/stream"))
        .header("x-request-id", "req-trace-42")
        .json(&json!({"toolName": "asana_list_workspaces", "arguments": {}}))
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-trace-42");
    let events = parse_sse(&r.text().unwrap());
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e.data["requestId"], "req-trace-42", "{e:?}");
    }
    assert!(events.iter().any(|e| e.event == "error"), "{events:?}");
    // The retry was logged inside the call's span.
    let log = d.log();
    let retry = log
        .lines()
        .find(|l| l.contains("retrying"))
        .unwrap_or_else(|| panic!("no retry logged:\n{log}"));
    assert!(retry.contains("request_id=req-trace-42"), "{retry}");
    assert!(retry.contains("tool=asana_list_workspaces"), "{retry}");
    assert!(retry.contains("service=slow"), "{retry}");

    // An error before the stream starts names the request too, and an id
    // is made when the client gives none.
    let r = client()
        .post(d.url("/api/mcp/stream"))
        .json(&json!({"toolName": "no_such_tool", "arguments": {}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let made = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!made.is_empty());
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["requestId"], made.as_str());
}
