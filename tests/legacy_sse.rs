//! Upstreams on the legacy HTTP+SSE transport (2024-11-05), which remote
//! servers still use: mcpvisor connects, negotiates down, streams progress.

mod common;

use common::{Daemon, PROJECT};
use serde_json::json;

#[test]
fn a_2024_11_05_sse_upstream_serves_calls_with_progress() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "legacy"
transport = "sse"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{port}", "--protocols", "2024-11-05", "--unit-latency-ms", "1"]
url = "http://127.0.0.1:{port}/sse"
manifest = "builtin:asana"
[services.health]
interval_ms = 200
"#;
    let d = Daemon::start(config);
    let s = d.service("legacy");
    assert_eq!(s["protocol"], "2024-11-05", "{s}");
    assert!(s["endpoint"].as_str().unwrap().ends_with("/sse"));

    let events = d.stream(
        "asana_get_project_hierarchy",
        json!({"project_id": PROJECT}),
    );
    let progress = events.iter().filter(|e| e.event == "progress").count();
    assert_eq!(progress, 106, "progress travels the SSE stream");
    let result = events
        .iter()
        .find(|e| e.event == "result")
        .expect("a result");
    assert_eq!(
        result.data["structuredContent"]["data"]["project"]["gid"],
        PROJECT
    );

    // Health probes (ping) keep the session healthy.
    d.wait_until("a few probes", std::time::Duration::from_secs(10), |d| {
        let (_, h) = d.get("/api/health/legacy/history");
        h["samples"].as_array().is_some_and(|s| {
            s.iter()
                .filter(|x| x["source"] == "probe" && x["ok"] == true)
                .count()
                >= 3
        })
    });
}

#[test]
fn a_429_on_the_legacy_message_endpoint_is_honoured() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "legacy"
transport = "sse"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{port}", "--protocols", "2024-11-05", "--unit-latency-ms", "1"]
url = "http://127.0.0.1:{port}/sse"
manifest = "builtin:asana"
"#;
    let d = Daemon::start(config);
    let base = d.service("legacy")["endpoint"]
        .as_str()
        .unwrap()
        .replace("/sse", "");
    let r = common::client()
        .post(format!("{base}/sim/faults"))
        .json(&json!({"rateLimitNextCalls": 1, "retryAfterSecs": 1}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let events = d.stream("asana_list_workspaces", json!({}));
    let result = events
        .iter()
        .find(|e| e.event == "result")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(
        result.data["attempts"], 1,
        "retried in place, not failed over"
    );
    assert!(
        events.iter().any(|e| e.data["stage"] == "retrying"),
        "{events:?}"
    );
    let stats: serde_json::Value = common::client()
        .get(format!("{base}/sim/stats"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let refused = stats["rateLimitedAtMs"][0].as_u64().expect("a 429");
    let arrived = stats["callTimesMs"][0].as_u64().expect("the retry");
    assert!(arrived >= refused + 1_000, "{stats}");
}
