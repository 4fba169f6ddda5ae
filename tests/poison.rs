//! Poison calls: a read-only call that makes its upstream exit is not
//! retried onto every fresh instance until the service fails. It crashes
//! one instance (a suspect), is sent alone to the next, crashes that too,
//! and is then quarantined: refused with its own category, counted, and
//! the service it crashed stays up. Calls around it are not blamed.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Daemon, two_replicas};
use serde_json::{Value, json};

fn outcome(events: &[common::SseEvent]) -> (String, Value) {
    let e = events
        .iter()
        .find(|e| e.event == "result" || e.event == "error")
        .unwrap_or_else(|| panic!("no outcome: {events:?}"));
    (e.event.clone(), e.data.clone())
}

fn restarts(d: &Daemon) -> u64 {
    ["asana-stdio", "asana-http"]
        .iter()
        .map(|s| d.service(s)["restarts"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn a_call_that_crashes_two_instances_is_quarantined_and_the_service_survives() {
    // A low intensity: without quarantine, the retries alone would fail it.
    let config = two_replicas(&[], &[]).replace("max_restarts = 20", "max_restarts = 3");
    let d = Daemon::start(&config);
    let poison = json!({"task_id": "sim:crash"});

    // Calls around the poison keep going and are never blamed.
    let stop = Arc::new(AtomicBool::new(false));
    let bystander = {
        let (base, stop) = (d.base.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let text = common::client()
                    .post(format!("{base}/api/mcp/stream"))
                    .json(&json!({"toolName": "asana_list_workspaces", "arguments": {}}))
                    .send()
                    .and_then(|r| r.text())
                    .unwrap_or_default();
                outcomes.push(outcome(&common::parse_sse(&text)));
            }
            outcomes
        })
    };

    let (kind, data) = outcome(&d.stream("asana_get_task", poison.clone()));
    assert_eq!(kind, "error");
    assert_eq!(data["category"], "quarantined", "{data}");
    assert_eq!(data["retryable"], false);
    // It crashed each replica once.
    assert_eq!(restarts(&d), 2);

    // Again, with the same arguments: refused before anything is sent.
    for _ in 0..4 {
        let (kind, data) = outcome(&d.stream("asana_get_task", poison.clone()));
        assert_eq!(
            (kind.as_str(), data["category"].as_str()),
            ("error", Some("quarantined"))
        );
    }
    d.wait_until("both replicas ready", Duration::from_secs(20), |d| {
        ["asana-stdio", "asana-http"]
            .iter()
            .all(|s| d.service(s)["state"] == "ready")
    });
    assert_eq!(restarts(&d), 2, "a quarantined call was sent again");

    // Other arguments of the same tool are fine.
    let (kind, _) = outcome(&d.stream("asana_get_task", json!({"task_id": "1200000000000100"})));
    assert_eq!(kind, "result");
    stop.store(true, Ordering::Relaxed);
    let seen = bystander.join().expect("bystander");
    assert!(!seen.is_empty());
    let blamed: Vec<_> = seen
        .iter()
        .filter(|(_, d)| d["category"] == "quarantined")
        .collect();
    assert!(blamed.is_empty(), "bystanders quarantined: {blamed:?}");

    let (_, metrics) = d.get("/api/metrics");
    assert!(
        metrics.to_string().contains("quarantined_calls"),
        "no quarantine metric"
    );
}
