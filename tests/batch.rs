//! `POST /api/mcp/batch`: many calls, one stream. Every call's outcome
//! carries its id, bad calls fail alone, `done` counts them, concurrency is
//! bounded, `stopOnError` skips what had not started, and a malformed
//! batch is refused before any stream starts.

mod common;

use std::collections::HashMap;

use common::{Daemon, SseEvent, client, parse_sse};
use serde_json::{Value, json};

fn config(latency_ms: u64) -> String {
    common::web_sim(latency_ms, "")
}

fn batch(d: &Daemon, body: Value) -> (u16, Vec<SseEvent>, String) {
    let r = client()
        .post(d.url("/api/mcp/batch"))
        .json(&body)
        .send()
        .expect("POST /api/mcp/batch");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (status, parse_sse(&text), text)
}

fn get_task(id: &str, task: &str) -> Value {
    json!({"id": id, "toolName": "asana_get_task", "arguments": {"task_id": task}})
}

/// Each call's final event (`result` or `error`), by id.
fn outcomes(events: &[SseEvent]) -> HashMap<String, SseEvent> {
    let mut by_id = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.event == "result" || e.event == "error")
    {
        let id = match &e.data["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert!(
            by_id.insert(id.clone(), e.clone()).is_none(),
            "two outcomes for {id}"
        );
    }
    by_id
}

#[test]
fn a_mixed_batch_streams_every_outcome_with_its_id_and_bad_calls_fail_alone() {
    let d = Daemon::start(&config(0));
    let (status, events, text) = batch(
        &d,
        json!({"calls": [
            get_task("a", "1200000000000100"),
            {"id": "b", "toolName": "asana_list_workspaces"},
            {"id": "c", "toolName": "asana_no_such_tool", "arguments": {}},
            {"id": "d", "toolName": "asana_get_task", "arguments": {"task_id": 12}},
            get_task("e", "1299999999999999"),
            {"id": 6, "toolName": "asana_list_workspaces"},
        ], "concurrency": 3}),
    );
    assert_eq!(status, 200, "{text}");
    let by_id = outcomes(&events);
    assert_eq!(by_id.len(), 6, "{text}");
    assert_eq!(by_id["a"].event, "result");
    assert_eq!(by_id["a"].data["isError"], false);
    assert_eq!(by_id["b"].event, "result");
    assert_eq!(by_id["6"].event, "result");
    assert_eq!(by_id["c"].event, "error");
    assert_eq!(by_id["c"].data["category"], "not_found", "{text}");
    assert_eq!(by_id["d"].event, "error");
    assert_eq!(by_id["d"].data["category"], "validation", "{text}");
    // A tool error is the tool's answer, and counts as a failure.
    assert_eq!(by_id["e"].event, "result");
    assert_eq!(by_id["e"].data["isError"], true);
    // Status events of a call carry its id too.
    assert!(
        events
            .iter()
            .any(|e| e.event == "status" && e.data["id"] == "a"),
        "{text}"
    );
    let done = events.last().expect("events");
    assert_eq!(done.event, "done", "{text}");
    assert_eq!(done.data["calls"], 6);
    assert_eq!(done.data["succeeded"], 3, "{text}");
    assert_eq!(done.data["failed"], 3, "{text}");
    assert_eq!(done.data["skipped"], 0);
    assert_eq!(done.data["ok"], false);
}

#[test]
fn concurrency_is_bounded_and_stop_on_error_skips_the_rest() {
    let d = Daemon::start(&config(300));
    // (No cache here: identical calls each go upstream.)
    let calls: Vec<Value> = (0..6)
        .map(|i| get_task(&format!("t{i}"), "1200000000000100"))
        .collect();
    let (status, events, text) = batch(
        &d,
        json!({"calls": calls, "concurrency": 2, "noMerge": true}),
    );
    assert_eq!(status, 200, "{text}");
    let done = events.last().expect("events");
    assert_eq!(done.data["succeeded"], 6, "{text}");
    // Two at a time, 300 ms each: three rounds at least.
    assert!(done.data["durationMs"].as_u64() >= Some(900), "{text}");

    let mut calls = vec![json!({"id": "bad", "toolName": "asana_no_such_tool"})];
    calls.extend((0..4).map(|i| get_task(&format!("t{i}"), "1200000000000100")));
    let (_, events, text) = batch(
        &d,
        json!({"calls": calls, "concurrency": 1, "stopOnError": true}),
    );
    let done = events.last().expect("events");
    assert_eq!(done.data["failed"], 1, "{text}");
    assert_eq!(done.data["skipped"], 4, "{text}");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event == "status" && e.data["stage"] == "skipped")
            .count(),
        4,
        "{text}"
    );
}

#[test]
fn a_malformed_batch_is_refused_before_any_stream() {
    let d = Daemon::start(&config(0));
    for (body, what) in [
        (json!({"calls": []}), "empty"),
        (
            json!({"calls": [get_task("x", "1200000000000100"), get_task("x", "1200000000000101")]}),
            "used twice",
        ),
        (
            json!({"calls": [{"id": {"no": 1}, "toolName": "asana_list_workspaces"}]}),
            "string or a number",
        ),
        (
            json!({"calls": (0..101).map(|i| get_task(&i.to_string(), "1200000000000100")).collect::<Vec<_>>()}),
            "at most 100",
        ),
    ] {
        let r = client()
            .post(d.url("/api/mcp/batch"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{what}");
        let v: Value = r.json().unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap_or("").contains(what),
            "{what}: {v}"
        );
    }
    // Not JSON at all.
    let r = client()
        .post(d.url("/api/mcp/batch"))
        .header("content-type", "application/json")
        .body("{calls: ")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

/// Opens a session of `version` on `/mcp`; its id.
fn session(d: &Daemon, version: &str) -> String {
    let r = client()
        .post(d.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "batch-test", "version": "1"}}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let r = client()
        .post(d.url("/mcp"))
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", version)
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    sid
}

fn post_raw(d: &Daemon, sid: &str, version: &str, body: &str) -> (u16, String) {
    let r = client()
        .post(d.url("/mcp"))
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", version)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned())
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

#[test]
fn a_2025_03_26_session_may_send_json_rpc_batches_and_later_ones_may_not() {
    let d = Daemon::start(&config(0));
    let sid = session(&d, "2025-03-26");
    let (status, text) = post_raw(
        &d,
        &sid,
        "2025-03-26",
        r#"[
          {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
          {"jsonrpc": "2.0", "id": "two", "method": "tools/call",
           "params": {"name": "asana_get_task", "arguments": {"task_id": "1200000000000100"}}},
          {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}},
          {"jsonrpc": "2.0", "id": 18446744073709551617, "method": "ping"},
          {"jsonrpc": "2.0", "id": 5, "method": "no/such/method"}
        ]"#,
    );
    assert_eq!(status, 200, "{text}");
    // The big id comes back exactly as sent.
    assert!(text.contains("18446744073709551617"), "{text}");
    let answers: Vec<Value> = serde_json::from_str(&text).expect("a JSON array");
    assert_eq!(answers.len(), 4, "notifications get no answer: {text}");
    let by_id = |id: &Value| {
        answers
            .iter()
            .find(|a| &a["id"] == id)
            .unwrap_or_else(|| panic!("no answer for {id}: {text}"))
    };
    assert!(
        by_id(&json!(1))["result"]["tools"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(by_id(&json!("two"))["result"]["isError"], false, "{text}");
    assert_eq!(by_id(&json!(5))["error"]["code"], -32601, "{text}");

    // Only notifications: nothing to answer.
    let (status, _) = post_raw(
        &d,
        &sid,
        "2025-03-26",
        r#"[{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}]"#,
    );
    assert_eq!(status, 202);

    // Later revisions removed batches.
    let newer = session(&d, "2025-06-18");
    let (status, text) = post_raw(
        &d,
        &newer,
        "2025-06-18",
        r#"[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]"#,
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("batches are not supported"), "{text}");
}

/// Gids of tasks in the seeded project.
fn task_gids(d: &Daemon, n: usize) -> Vec<String> {
    let text = client()
        .post(d.url("/api/mcp/stream"))
        .json(&json!({"toolName": "asana_get_tasks_for_project",
                      "arguments": {"project_id": common::PROJECT},
                      "streamingOptions": {"enableChunks": false}}))
        .send()
        .and_then(|r| r.text())
        .expect("list tasks");
    let result = parse_sse(&text)
        .into_iter()
        .find(|e| e.event == "result")
        .unwrap_or_else(|| panic!("no result: {text}"));
    let gids: Vec<String> = result.data["structuredContent"]["data"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["gid"].as_str().map(str::to_owned))
                .take(n)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(gids.len(), n, "{text}");
    gids
}

fn task_of(result: &Value) -> Value {
    let text = result["content"][0]["text"].as_str().unwrap_or("{}");
    serde_json::from_str::<Value>(text).unwrap_or(Value::Null)["data"].clone()
}

#[test]
fn single_task_reads_fold_into_one_multi_get_and_a_bad_one_fails_alone() {
    let d = Daemon::start(&config(0));
    let gids = task_gids(&d, 3);
    let before = d.sim_calls("web");
    let calls: Vec<Value> = gids
        .iter()
        .enumerate()
        .map(|(i, g)| get_task(&format!("t{i}"), g))
        .collect();
    let (status, events, text) = batch(&d, json!({"calls": calls}));
    assert_eq!(status, 200, "{text}");
    assert_eq!(d.sim_calls("web"), before + 1, "one multi-get call: {text}");
    let by_id = outcomes(&events);
    for (i, g) in gids.iter().enumerate() {
        let r = &by_id[&format!("t{i}")];
        assert_eq!(r.event, "result", "{text}");
        assert_eq!(task_of(&r.data)["gid"], g.as_str(), "{text}");
        assert_eq!(r.data["merged"]["into"], "asana_get_multiple_tasks_by_gid");
        assert_eq!(r.data["merged"]["calls"], 3);
    }

    // An unknown task sinks the multi-get: each call is then made alone,
    // and only the bad one fails.
    let before = d.sim_calls("web");
    let mut calls: Vec<Value> = gids
        .iter()
        .take(2)
        .enumerate()
        .map(|(i, g)| get_task(&format!("t{i}"), g))
        .collect();
    calls.push(get_task("missing", "1299999999999999"));
    let (_, events, text) = batch(&d, json!({"calls": calls}));
    let by_id = outcomes(&events);
    assert_eq!(
        task_of(&by_id["t0"].data)["gid"],
        gids[0].as_str(),
        "{text}"
    );
    assert_eq!(
        task_of(&by_id["t1"].data)["gid"],
        gids[1].as_str(),
        "{text}"
    );
    assert_eq!(by_id["missing"].data["isError"], true, "{text}");
    assert_eq!(d.sim_calls("web"), before + 4, "{text}");
    let done = events.last().expect("events");
    assert_eq!(done.data["succeeded"], 2, "{text}");
    assert_eq!(done.data["failed"], 1, "{text}");

    // Asked not to, it does not fold.
    let before = d.sim_calls("web");
    let calls: Vec<Value> = gids
        .iter()
        .enumerate()
        .map(|(i, g)| get_task(&format!("t{i}"), g))
        .collect();
    batch(&d, json!({"calls": calls, "noMerge": true}));
    assert_eq!(d.sim_calls("web"), before + 3);
}
