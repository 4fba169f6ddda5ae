//! The safety rule under fire: a steady stream of reads and writes while a
//! replica is killed. No read is lost, no write runs twice (the simulators'
//! execution logs survive the kill and are counted), and every failed write
//! says whether it may have run.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Daemon, kill9};
use serde_json::{Value, json};

fn config(dir: &std::path::Path) -> String {
    let log = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[router]
wait_for_service_ms = 15000
[[services]]
name = "asana-stdio"
group = "asana"
priority = "high"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", "--latency-ms", "40", "--unit-latency-ms", "1", "--exec-log", "{stdio}"]
manifest = "builtin:asana"
[services.restart]
backoff_initial_ms = 200
[[services]]
name = "asana-http"
group = "asana"
priority = "medium"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{{port}}", "--latency-ms", "40", "--unit-latency-ms", "1", "--exec-log", "{http}"]
url = "http://127.0.0.1:{{port}}/mcp"
manifest = "builtin:asana"
"#,
        stdio = log("stdio.log"),
        http = log("http.log"),
    )
}

/// How often each task name was created, across both replicas' logs.
fn executions(dir: &std::path::Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for file in ["stdio.log", "http.log"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("a complete log line");
            if v["tool"] == "asana_create_task" {
                *counts
                    .entry(v["arguments"]["name"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    counts
}

#[test]
fn reads_survive_a_kill_and_writes_never_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(dir.path()));
    let base = d.base.clone();
    const CALLERS: usize = 4;
    const PER_CALLER: usize = 16;

    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let base = base.clone();
            std::thread::spawn(move || {
                (0..PER_CALLER)
                    .map(|i| {
                        // Half the callers start with a write, so reads and
                        // writes are both in flight at any moment.
                        let write = (i + c) % 2 == 1;
                        let name = format!("task-{c}-{i}");
                        let body = if write {
                            json!({"toolName": "asana_create_task",
                                   "arguments": {"project_id": common::PROJECT, "name": name}})
                        } else {
                            json!({"toolName": "asana_get_project", "arguments": {"project_id": common::PROJECT}})
                        };
                        let text = common::client()
                            .post(format!("{base}/api/mcp/stream"))
                            .json(&body)
                            .send()
                            .and_then(|r| r.text())
                            .expect("the stream call itself");
                        let outcome = common::parse_sse(&text)
                            .into_iter()
                            .find(|e| e.event == "result" || e.event == "error")
                            .expect("an outcome");
                        (write, name, outcome)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();

    // Kill the preferred replica while calls are in flight on it.
    d.wait_until(
        "calls in flight on the stdio replica",
        Duration::from_secs(10),
        |d| {
            let s = d.service("asana-stdio");
            s["callsOk"].as_u64() >= Some(6) && s["inFlight"].as_u64() >= Some(1)
        },
    );
    kill9(d.service("asana-stdio")["pid"].as_u64().unwrap());

    let outcomes: Vec<_> = callers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let counts = executions(dir.path());
    let (mut reads, mut writes_ok, mut writes_unknown, mut writes_never_sent) = (0, 0, 0, 0);
    for (write, name, outcome) in &outcomes {
        match (write, outcome.event.as_str()) {
            (false, "result") => reads += 1,
            (false, _) => panic!("a read was lost: {}", outcome.data),
            (true, "result") => {
                writes_ok += 1;
                assert_eq!(
                    counts.get(name),
                    Some(&1),
                    "{name} succeeded, so it ran exactly once"
                );
            }
            (true, _) => {
                let e = &outcome.data;
                if e["delivery"] == "never_sent" {
                    writes_never_sent += 1;
                    assert_eq!(counts.get(name), None, "{name} was never sent, yet ran");
                } else {
                    assert!(
                        e["message"].as_str().unwrap().contains("outcome unknown"),
                        "{e}"
                    );
                    writes_unknown += 1;
                }
            }
        }
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "a write ran twice: {counts:?}"
    );
    assert_eq!(reads, CALLERS * PER_CALLER / 2, "no read lost");
    assert_eq!(
        writes_ok + writes_unknown + writes_never_sent,
        CALLERS * PER_CALLER / 2
    );
    assert_eq!(d.service("asana-stdio")["restarts"], 1);
    eprintln!(
        "reads {reads}, writes ok {writes_ok}, outcome unknown {writes_unknown}, never sent {writes_never_sent}"
    );
}
