//! Crashes and their recovery: a killed child, a panicking actor, and the
//! rule that a call which may have run is never sent twice.

mod common;

use std::time::Duration;

use common::{Daemon, kill9, two_replicas};
use serde_json::{Value, json};

fn single_stdio(sim_args: &str, limits: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{token}"

[router]
wait_for_service_ms = 20000

[[services]]
name = "solo"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", {sim_args}]
manifest = "builtin:asana"
[services.limits]
{limits}
[services.health]
interval_ms = 200
[services.restart]
backoff_initial_ms = 50
"#,
        token = common::ADMIN_TOKEN
    )
}

fn result_of(events: &[common::SseEvent]) -> &Value {
    match events
        .iter()
        .find(|e| e.event == "result" || e.event == "error")
    {
        Some(e) if e.event == "result" => &e.data,
        Some(e) => panic!("call failed: {}", e.data),
        None => panic!("no outcome in {events:?}"),
    }
}

#[test]
fn killed_stdio_child_fails_over_then_is_restarted() {
    // A slow restart for the stdio replica, so the call right after the
    // kill cannot land on its replacement.
    let config =
        two_replicas(&[], &[]).replacen("backoff_initial_ms = 50", "backoff_initial_ms = 1500", 1);
    let d = Daemon::start(&config);
    let before = d.service("asana-stdio");
    let pid = before["pid"].as_u64().expect("stdio pid");
    assert_eq!(before["restarts"], 0);

    kill9(pid);
    let events = d.stream("asana_list_workspaces", json!({}));
    let result = result_of(&events);
    assert_eq!(
        result["service"], "asana-http",
        "call after the kill: {events:?}"
    );
    assert_eq!(result["isError"], false);

    // The supervisor restarts the child; it serves again, with a new pid.
    d.wait_until("stdio replica restarted", Duration::from_secs(20), |d| {
        let s = d.service("asana-stdio");
        s["state"] == "ready" && s["restarts"].as_u64() >= Some(1)
    });
    let after = d.service("asana-stdio");
    assert_ne!(after["pid"], json!(pid));
    assert!(
        after["lastExit"].as_str().unwrap_or("").contains("exited"),
        "{after}"
    );
    let events = d.stream("asana_list_workspaces", json!({}));
    assert_eq!(result_of(&events)["service"], "asana-stdio");
}

#[test]
fn panic_in_a_handler_restarts_the_actor_and_loses_no_queued_call() {
    // One call at a time, each taking 300 ms: the rest wait in the actor's queue.
    let d = Daemon::start(&single_stdio(
        "\"--latency-ms\", \"300\"",
        "max_in_flight = 1",
    ));
    let base = d.base.clone();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let base = base.clone();
            std::thread::spawn(move || {
                let body = json!({"toolName": "asana_list_workspaces", "arguments": {}});
                let text = common::client()
                    .post(format!("{base}/api/mcp/stream"))
                    .json(&body)
                    .send()
                    .and_then(|r| r.text())
                    .expect("stream call");
                common::parse_sse(&text)
            })
        })
        .collect();
    d.wait_until(
        "calls queued behind the running one",
        Duration::from_secs(10),
        |d| d.service("solo")["queued"].as_u64() >= Some(3),
    );
    assert_eq!(d.admin_post("/api/services/solo/inject-panic"), 202);

    for call in calls {
        let events = call.join().expect("caller thread");
        let result = result_of(&events);
        assert_eq!(result["isError"], false);
        assert_eq!(result["service"], "solo");
    }
    let s = d.service("solo");
    assert_eq!(s["restarts"], 1, "{s}");
    assert!(
        s["lastExit"].as_str().unwrap_or("").contains("panic"),
        "{s}"
    );
    assert_eq!(s["state"], "ready");
}

#[test]
fn a_destructive_call_that_may_have_run_is_not_sent_again() {
    let d = Daemon::start(&single_stdio(
        "\"--latency-ms\", \"2000\"",
        "max_in_flight = 4",
    ));
    let pid = d.service("solo")["pid"].as_u64().unwrap();
    let base = d.base.clone();
    let call = std::thread::spawn(move || {
        let body = json!({"toolName": "asana_create_task",
            "arguments": {"project_id": common::PROJECT, "name": "written once"}});
        let text = common::client()
            .post(format!("{base}/api/mcp/stream"))
            .json(&body)
            .send()
            .and_then(|r| r.text())
            .unwrap();
        common::parse_sse(&text)
    });
    d.wait_until("the create call in flight", Duration::from_secs(10), |d| {
        d.service("solo")["inFlight"].as_u64() == Some(1)
    });
    kill9(pid);
    let events = call.join().unwrap();
    let error = events
        .iter()
        .find(|e| e.event == "error")
        .expect("an error event");
    assert_eq!(error.data["delivery"], "maybe_sent", "{}", error.data);
    assert!(
        error.data["message"]
            .as_str()
            .unwrap()
            .contains("outcome unknown"),
        "{}",
        error.data
    );
    assert!(events.iter().all(|e| e.event != "result"));
}

#[test]
fn a_killed_http_upstream_is_a_broken_session_that_gets_restarted() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    let before = d.service("asana-http");
    let pid = before["pid"].as_u64().expect("managed http pid");
    let endpoint = before["endpoint"].as_str().unwrap().to_owned();
    kill9(pid);
    d.wait_until("http replica restarted", Duration::from_secs(20), |d| {
        let s = d.service("asana-http");
        s["state"] == "ready" && s["restarts"].as_u64() >= Some(1)
    });
    let after = d.service("asana-http");
    assert_ne!(after["pid"], json!(pid));
    assert_ne!(
        after["endpoint"],
        json!(endpoint),
        "a fresh port for the fresh process"
    );
    // Calls were never interrupted: the stdio replica served throughout.
    let events = d.stream("asana_list_workspaces", json!({}));
    assert_eq!(result_of(&events)["isError"], false);
}
