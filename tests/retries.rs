//! The retry mailbox: rate limits are honoured, and only safe calls are
//! repeated.

mod common;

use common::{Daemon, client};
use serde_json::{Value, json};

fn http_only() -> &'static str {
    r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "web"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{port}", "--unit-latency-ms", "1"]
url = "http://127.0.0.1:{port}/mcp"
manifest = "builtin:asana"
[retry.rate_limit]
max_attempts = 3
base_backoff_ms = 100
"#
}

fn sim(d: &Daemon, path: &str) -> String {
    d.service("web")["endpoint"]
        .as_str()
        .unwrap()
        .replace("/mcp", path)
}

#[test]
fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let d = Daemon::start(http_only());
    let r = client()
        .post(sim(&d, "/sim/faults"))
        .json(&json!({"rateLimitNextCalls": 1, "retryAfterSecs": 2}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // A write: a 429 proves it never ran, so even a write is safe to retry.
    let events = d.stream(
        "asana_create_task",
        json!({"project_id": common::PROJECT, "name": "after the rate limit"}),
    );
    let result = events
        .iter()
        .find(|e| e.event == "result")
        .expect("the retried call succeeds");
    assert_eq!(result.data["isError"], false);
    let retrying = events
        .iter()
        .find(|e| e.data["stage"] == "retrying")
        .expect("a retrying status");
    assert!(
        retrying.data["message"]
            .as_str()
            .unwrap()
            .contains("rate_limit")
    );

    let stats: Value = client()
        .get(sim(&d, "/sim/stats"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let refused = stats["rateLimitedAtMs"][0].as_u64().unwrap();
    let arrived = stats["callTimesMs"][0].as_u64().unwrap();
    assert_eq!(stats["calls"], 1, "executed exactly once");
    assert!(
        arrived >= refused + 2_000,
        "retried after {} ms, before the 2 s Retry-After",
        arrived - refused
    );
}

#[test]
fn a_rate_limited_replica_takes_no_other_call_before_its_retry_after() {
    let d = Daemon::start(http_only());
    client()
        .post(sim(&d, "/sim/faults"))
        .json(&json!({"rateLimitNextCalls": 1, "retryAfterSecs": 2}))
        .send()
        .unwrap();
    let stats = |d: &Daemon| -> Value {
        client()
            .get(sim(d, "/sim/stats"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    std::thread::scope(|scope| {
        let first = scope.spawn(|| d.stream("asana_list_workspaces", json!({})));
        d.wait_until("the 429", std::time::Duration::from_secs(10), |d| {
            stats(d)["rateLimitedAtMs"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        });
        assert!(
            d.service("web")["throttledForMs"].as_u64().unwrap_or(0) > 0,
            "{}",
            d.service("web")
        );
        // A second call while the Retry-After lasts waits it out too.
        let second = d.stream("asana_list_workspaces", json!({}));
        assert!(second.iter().any(|e| e.event == "result"), "{second:?}");
        let first = first.join().unwrap();
        assert!(first.iter().any(|e| e.event == "result"), "{first:?}");
    });
    let stats = stats(&d);
    let refused = stats["rateLimitedAtMs"][0].as_u64().unwrap();
    let arrivals: Vec<u64> = stats["callTimesMs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(arrivals.len(), 2, "{stats}");
    assert!(
        arrivals.iter().all(|&at| at >= refused + 2_000),
        "a call reached the upstream before its Retry-After: {arrivals:?} vs {refused}"
    );
}

#[test]
fn a_rate_limit_that_outlasts_the_attempts_is_reported_with_its_category() {
    let d = Daemon::start(http_only());
    client()
        .post(sim(&d, "/sim/faults"))
        .json(&json!({"rateLimitNextCalls": 10, "retryAfterSecs": 0}))
        .send()
        .unwrap();
    let events = d.stream("asana_list_workspaces", json!({}));
    let error = events
        .iter()
        .find(|e| e.event == "error")
        .expect("an error");
    assert_eq!(error.data["category"], "rate_limit", "{}", error.data);
    assert_eq!(error.data["delivery"], "never_sent");
    assert_eq!(error.data["retryable"], true);
    let retries = events
        .iter()
        .filter(|e| e.data["stage"] == "retrying")
        .count();
    assert_eq!(retries, 2, "three attempts in all");
    let stats: Value = client()
        .get(sim(&d, "/sim/stats"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(stats["rateLimitedAtMs"].as_array().unwrap().len(), 3);
}
