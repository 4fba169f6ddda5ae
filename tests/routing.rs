//! Routing around trouble: an operator switching a replica off and on, and
//! a circuit breaker that stops sending calls to a replica that keeps
//! failing them.

mod common;

use std::time::Duration;

use common::{ADMIN_TOKEN, Daemon, client};
use serde_json::{Value, json};

fn config() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN_TOKEN}"
[[services]]
name = "fast"
group = "asana"
priority = "high"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{{port}}", "--unit-latency-ms", "1"]
url = "http://127.0.0.1:{{port}}/mcp"
manifest = "builtin:asana"
[services.limits]
attempt_timeout_ms = 300
[services.health]
interval_ms = 200
[services.breaker]
consecutive_failures = 2
open_ms = 1500
[[services]]
name = "backup"
group = "asana"
priority = "low"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", "--unit-latency-ms", "1"]
manifest = "builtin:asana"
"#
    )
}

fn served_by(d: &Daemon) -> (String, u64) {
    let events = d.stream("asana_list_workspaces", json!({}));
    let r = events
        .iter()
        .find(|e| e.event == "result")
        .unwrap_or_else(|| panic!("{events:?}"));
    (
        r.data["service"].as_str().unwrap().to_owned(),
        r.data["attempts"].as_u64().unwrap(),
    )
}

#[test]
fn an_operator_can_switch_a_replica_off_and_on() {
    let d = Daemon::start(&config());
    assert_eq!(served_by(&d).0, "fast");

    let unauthorised = client()
        .post(d.url("/api/services/fast/disable"))
        .send()
        .unwrap();
    assert_eq!(unauthorised.status().as_u16(), 401);
    assert_eq!(d.admin_post("/api/services/fast/disable"), 200);
    d.wait_until("fast disabled", Duration::from_secs(10), |d| {
        d.service("fast")["state"] == "disabled"
    });
    assert_eq!(d.service("fast")["health"], "disabled");
    assert_eq!(
        d.service("fast")["pid"],
        Value::Null,
        "its process is stopped"
    );
    assert_eq!(served_by(&d).0, "backup");
    let (_, alerts) = d.get("/api/alerts?active=true");
    let note = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "disabled:fast")
        .cloned();
    assert_eq!(note.expect("an info alert")["severity"], "info");

    assert_eq!(d.admin_post("/api/services/fast/enable"), 200);
    d.wait_until("fast back", Duration::from_secs(20), |d| {
        d.service("fast")["state"] == "ready"
    });
    assert_eq!(served_by(&d).0, "fast");
    // Being switched off and on is no failure: no unhealthy alert, ever.
    let (_, history) = d.get("/api/alerts");
    let keys: Vec<&str> = history["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["key"].as_str())
        .collect();
    assert!(!keys.contains(&"unhealthy:fast"), "{keys:?}");
    assert_eq!(d.admin_post("/api/services/nope/enable"), 404);
}

#[test]
fn a_breaker_opens_on_repeated_failures_and_closes_after_a_good_trial() {
    let d = Daemon::start(&config());
    let faults = d.service("fast")["endpoint"]
        .as_str()
        .unwrap()
        .replace("/mcp", "/sim/faults");
    client()
        .post(&faults)
        .json(&json!({"hangRate": 1.0}))
        .send()
        .unwrap();

    // Two timeouts on `fast` (one attempt and its retry) open its breaker;
    // the read fails over to the backup.
    let (service, attempts) = served_by(&d);
    assert_eq!((service.as_str(), attempts), ("backup", 2));
    assert_eq!(d.service("fast")["breaker"], "open");
    // While open, calls go straight to the backup: one attempt, no timeout.
    let (service, attempts) = served_by(&d);
    assert_eq!((service.as_str(), attempts), ("backup", 1));

    client()
        .post(&faults)
        .json(&json!({"hangRate": 0.0}))
        .send()
        .unwrap();
    // Its probes pass again (it is healthy), and the breaker's pause ends.
    d.wait_until(
        "the breaker to allow a trial",
        Duration::from_secs(10),
        |d| {
            let s = d.service("fast");
            s["breaker"] == "half_open" && s["health"] == "healthy"
        },
    );
    assert_eq!(served_by(&d).0, "fast", "the trial call");
    assert_eq!(d.service("fast")["breaker"], "closed");
    assert_eq!(d.service("fast")["breakerOpened"], 1);
}

#[test]
fn an_unavailable_service_keeps_its_tools_listed_for_a_grace_period() {
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN_TOKEN}"
[[services]]
name = "solo"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio"]
manifest = "builtin:asana"
[services.health]
tools_grace_ms = 1500
"#
    );
    let d = Daemon::start(&config);
    let count = |d: &Daemon| {
        let body: Value = client()
            .post(d.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/list")
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}}}}),
            )
            .send()
            .unwrap()
            .json()
            .unwrap();
        body["result"]["tools"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(count(&d), 42);
    assert_eq!(d.admin_post("/api/services/solo/disable"), 200);
    d.wait_until("solo disabled", Duration::from_secs(5), |d| {
        d.service("solo")["health"] == "disabled"
    });
    assert_eq!(count(&d), 42, "still listed within the grace period");
    d.wait_until(
        "the tools to leave the list",
        Duration::from_secs(10),
        |d| count(d) == 0,
    );
    assert_eq!(d.admin_post("/api/services/solo/enable"), 200);
    d.wait_until("the tools to come back", Duration::from_secs(20), |d| {
        count(d) == 42
    });
}
