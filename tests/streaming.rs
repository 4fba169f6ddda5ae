//! `/api/mcp/stream` end to end: a daemon, two simulator replicas, SSE.

mod common;

use common::{Daemon, PROJECT, WORKSPACE, two_replicas};
use serde_json::json;

#[test]
fn progress_events_arrive_before_the_result() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    let events = d.stream(
        "asana_get_project_hierarchy",
        json!({"project_id": PROJECT}),
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let first_progress = kinds
        .iter()
        .position(|k| *k == "progress")
        .expect("progress events");
    let result = kinds.iter().position(|k| *k == "result").expect("a result");
    assert!(first_progress < result, "progress after result: {kinds:?}");
    assert_eq!(kinds.last(), Some(&"done"));
    assert_eq!(kinds[0], "status");

    // Progress is the upstream's own: 106 simulated requests for the default project.
    let progress: Vec<_> = events.iter().filter(|e| e.event == "progress").collect();
    assert_eq!(progress.len(), 106);
    assert_eq!(progress.last().unwrap().data["percentage"], json!(100.0));
    assert!(
        progress
            .windows(2)
            .all(|w| w[0].data["progress"].as_f64() < w[1].data["progress"].as_f64())
    );

    // Timestamps show the events were written as they happened, not at the end.
    let ts = |i: usize| events[i].data["timestamp"].as_u64().unwrap();
    assert!(
        ts(first_progress) < ts(result),
        "first progress not earlier than the result"
    );
    // Ids increase by one.
    let ids: Vec<u64> = events
        .iter()
        .map(|e| e.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));

    let r = &events[result].data;
    assert_eq!(r["isError"], false);
    assert_eq!(
        r["service"], "asana-stdio",
        "the high-priority replica serves first"
    );
    assert_eq!(r["structuredContent"]["data"]["project"]["gid"], PROJECT);
}

#[test]
fn incremental_tools_deliver_large_lists_in_chunks() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    let events = d.stream("asana_search_tasks", json!({"workspace": WORKSPACE}));
    let chunks: Vec<_> = events.iter().filter(|e| e.event == "chunk").collect();
    assert!(
        chunks.len() > 5,
        "expected many chunks, got {}",
        chunks.len()
    );
    let total: usize = chunks
        .iter()
        .map(|c| c.data["items"].as_array().unwrap().len())
        .sum();
    assert!(
        chunks
            .iter()
            .all(|c| c.data["items"].as_array().unwrap().len() <= 100)
    );
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.data["index"], json!(i));
    }
    let result = events.iter().find(|e| e.event == "result").unwrap();
    assert_eq!(result.data["chunked"]["items"], json!(total));
    assert_eq!(result.data["structuredContent"]["data"], json!([]));
    // A search over a workspace with 600 top-level tasks and 1,200 subtasks.
    assert_eq!(total, 1800);
}

#[test]
fn streaming_tools_are_listed_with_their_metadata() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    let (status, body) = d.get("/api/mcp/stream");
    assert_eq!(status, 200);
    let tools = body["tools"].as_array().unwrap();
    let h = tools
        .iter()
        .find(|t| t["name"] == "asana_get_project_hierarchy")
        .unwrap();
    assert_eq!(h["streaming"]["mode"], "progress");
    assert_eq!(h["category"], "project_management");
    assert_eq!(h["providers"], json!(["asana-stdio", "asana-http"]));
    assert!(tools.iter().all(|t| !t["streaming"].is_null()));
}

#[test]
fn status_updates_can_be_switched_off() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    let body = json!({"toolName": "asana_get_task", "arguments": {"task_id": "nope"},
        "streamingOptions": {"enableProgress": false, "enableStatusUpdates": false}});
    let r = common::client()
        .post(d.url("/api/mcp/stream"))
        .json(&body)
        .send()
        .unwrap();
    let events = common::parse_sse(&r.text().unwrap());
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, vec!["result", "done"]);
    // An unknown task is the tool's own error, not a transport failure.
    assert_eq!(events[0].data["isError"], true);
}

/// One managed HTTP simulator replica with extra simulator arguments.
fn http_only(sim_args: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
heartbeat_ms = 200
[[services]]
name = "web"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{{port}}", {sim_args}]
url = "http://127.0.0.1:{{port}}/mcp"
manifest = "builtin:asana"
"#
    )
}

#[test]
fn closing_the_stream_cancels_the_upstream_call() {
    use std::io::Read;
    // 106 steps of 100 ms: about ten seconds if nobody cancels.
    let d = Daemon::start(&http_only("\"--unit-latency-ms\", \"100\""));
    let endpoint = d.service("web")["endpoint"].as_str().unwrap().to_owned();
    let stats_url = endpoint.replace("/mcp", "/sim/stats");
    let stats = || -> serde_json::Value {
        common::client()
            .get(&stats_url)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };

    let body =
        json!({"toolName": "asana_get_project_hierarchy", "arguments": {"project_id": PROJECT}});
    let mut response = common::client()
        .post(d.url("/api/mcp/stream"))
        .json(&body)
        .send()
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("event: progress") {
        let n = response.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended before any progress");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(response);

    d.wait_until(
        "the upstream to see the cancellation",
        std::time::Duration::from_secs(5),
        |_| stats()["cancelled"] == 1,
    );
    let s = stats();
    assert_eq!(s["completed"], 0, "{s}");
    d.wait_until(
        "no call in flight",
        std::time::Duration::from_secs(5),
        |d| d.service("web")["inFlight"] == 0,
    );
}

#[test]
fn status_mode_tools_report_that_they_are_still_working() {
    let d = Daemon::start(&http_only("\"--latency-ms\", \"1500\""));
    let events = d.stream(
        "asana_create_task",
        json!({"project_id": PROJECT, "name": "slow write"}),
    );
    let working: Vec<_> = events
        .iter()
        .filter(|e| e.event == "status" && e.data["stage"] == "working")
        .collect();
    assert!(!working.is_empty(), "{events:?}");
    assert!(working[0].data["elapsedMs"].as_u64().unwrap() >= 900);
    let result = events
        .iter()
        .find(|e| e.event == "result")
        .expect("a result");
    assert_eq!(
        result.data["structuredContent"]["data"]["name"],
        "slow write"
    );
}
