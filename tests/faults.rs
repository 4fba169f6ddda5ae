//! The simulator's fault knobs, seen through mcpvisor: a process that exits
//! mid-run, calls that hang, and tool errors.

mod common;

use common::Daemon;
use serde_json::json;

fn solo(sim_args: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[router]
wait_for_service_ms = 20000
[[services]]
name = "solo"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", {sim_args}]
manifest = "builtin:asana"
[services.restart]
backoff_initial_ms = 20
{extra}
"#
    )
}

fn outcome(events: &[common::SseEvent]) -> (String, serde_json::Value) {
    let e = events
        .iter()
        .find(|e| e.event == "result" || e.event == "error")
        .expect("an outcome");
    (e.event.clone(), e.data.clone())
}

#[test]
fn a_process_that_exits_mid_call_is_restarted_and_the_read_is_retried() {
    let d = Daemon::start(&solo("\"--exit-after\", \"2\"", ""));
    let (kind, _) = outcome(&d.stream("asana_list_workspaces", json!({})));
    assert_eq!(kind, "result");
    // The second call kills the process; the read is safe to repeat.
    let events = d.stream("asana_list_workspaces", json!({}));
    let (kind, data) = outcome(&events);
    assert_eq!(kind, "result", "{data}");
    assert_eq!(data["attempts"], 2);
    assert!(
        events.iter().any(|e| e.data["stage"] == "waiting"),
        "it waited for the restart"
    );
    let s = d.service("solo");
    assert_eq!(s["restarts"], 1);
    assert!(
        s["lastExit"].as_str().unwrap().contains("exit status: 3"),
        "{s}"
    );
}

#[test]
fn a_hanging_call_times_out_and_is_cancelled_upstream() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "web"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{port}", "--hang-rate", "1.0"]
url = "http://127.0.0.1:{port}/mcp"
manifest = "builtin:asana"
[services.limits]
attempt_timeout_ms = 300
"#;
    let d = Daemon::start(config);
    let stats_url = d.service("web")["endpoint"]
        .as_str()
        .unwrap()
        .replace("/mcp", "/sim/stats");
    let cancelled = || -> serde_json::Value {
        let stats: serde_json::Value = common::client()
            .get(&stats_url)
            .send()
            .unwrap()
            .json()
            .unwrap();
        stats["cancelled"].clone()
    };

    // A read that times out is retried once in place (retry.timeout allows
    // two attempts); each deadline sends notifications/cancelled upstream.
    let events = d.stream("asana_list_workspaces", json!({}));
    let (kind, data) = outcome(&events);
    assert_eq!(kind, "error");
    assert_eq!(data["category"], "timeout", "{data}");
    assert_eq!(data["retryable"], true);
    assert!(events.iter().any(|e| e.data["stage"] == "retrying"));
    d.wait_until(
        "both attempts cancelled upstream",
        std::time::Duration::from_secs(5),
        |_| cancelled() == 2,
    );

    // A write that timed out may have run: it is not sent again.
    let events = d.stream(
        "asana_create_task",
        json!({"project_id": common::PROJECT, "name": "x"}),
    );
    let (kind, data) = outcome(&events);
    assert_eq!(kind, "error");
    assert!(
        data["message"]
            .as_str()
            .unwrap()
            .contains("outcome unknown"),
        "{data}"
    );
    assert!(events.iter().all(|e| e.data["stage"] != "retrying"));
    d.wait_until(
        "the one attempt cancelled upstream",
        std::time::Duration::from_secs(5),
        |_| cancelled() == 3,
    );
    assert_eq!(d.service("web")["inFlight"], 0);
}

#[test]
fn tool_errors_are_results_not_failures() {
    let d = Daemon::start(&solo("\"--error-rate\", \"1.0\"", ""));
    let (kind, data) = outcome(&d.stream("asana_list_workspaces", json!({})));
    assert_eq!(kind, "result");
    assert_eq!(data["isError"], true);
    assert!(
        data["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("simulated")
    );
    // The service answered: it is not blamed.
    assert_eq!(d.service("solo")["consecutiveFailures"], 0);
}
