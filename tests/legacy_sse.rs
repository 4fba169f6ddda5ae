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
