//! Health monitoring and alerts against live replicas whose faults change
//! while they run: slow, killed, all down, back.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Daemon, client, kill9};
use serde_json::{Value, json};

fn config(webhook: &str, backoff_ms: u64) -> String {
    let service = |name: &str, priority: &str, transport: &str| {
        let wire = if transport == "stdio" {
            "transport = \"stdio\"\nargs = [\"sim\", \"--stdio\", \"--unit-latency-ms\", \"1\"]"
                .to_owned()
        } else {
            "transport = \"streamable_http\"\nargs = [\"sim\", \"--http\", \"127.0.0.1:{port}\", \"--unit-latency-ms\", \"1\"]\nurl = \"http://127.0.0.1:{port}/mcp\"".to_owned()
        };
        format!(
            r#"
[[services]]
name = "{name}"
group = "asana"
priority = "{priority}"
command = "@self"
manifest = "builtin:asana"
{wire}
[services.health]
interval_ms = 100
timeout_ms = 2000
degraded_latency_ms = 150
unhealthy_after = 2
[services.restart]
backoff_initial_ms = {backoff_ms}
max_restarts = 20
"#
        )
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[router]
wait_for_service_ms = 100
[alerts]
webhook_url = "{webhook}"
{}{}"#,
        service("asana-stdio", "high", "stdio"),
        service("asana-http", "medium", "http"),
    )
}

/// A webhook receiver on loopback that records every JSON body posted to it.
fn webhook_sink() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let record = record.clone();
            std::thread::spawn(move || serve_webhook(stream, &record));
        }
    });
    (url, seen)
}

fn serve_webhook(stream: std::net::TcpStream, record: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(v) = serde_json::from_slice(&body) {
            record.lock().unwrap().push(v);
        }
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

fn health_of(d: &Daemon, service: &str) -> Value {
    let (_, body) = d.get("/api/health");
    body["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["service"] == service).cloned())
        .unwrap_or(Value::Null)
}

fn active_alert(d: &Daemon, key: &str) -> Option<Value> {
    let (_, body) = d.get("/api/alerts?active=true");
    body["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .cloned()
}

fn set_faults(d: &Daemon, service: &str, faults: Value) {
    let endpoint = d.service(service)["endpoint"].as_str().unwrap().to_owned();
    let r = client()
        .post(endpoint.replace("/mcp", "/sim/faults"))
        .json(&faults)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn a_slow_replica_is_degraded_with_a_warning_that_resolves_itself() {
    let (url, hooks) = webhook_sink();
    let d = Daemon::start(&config(&url, 100));
    d.wait_until("both healthy", WAIT, |d| {
        health_of(d, "asana-http")["status"] == "healthy"
            && health_of(d, "asana-stdio")["status"] == "healthy"
    });

    set_faults(&d, "asana-http", json!({"slowMs": 400}));
    d.wait_until("the degraded warning", WAIT, |d| {
        active_alert(d, "degraded:asana-http").is_some()
    });
    let alert = active_alert(&d, "degraded:asana-http").unwrap();
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["service"], "asana-http");
    let h = health_of(&d, "asana-http");
    assert_eq!(h["status"], "degraded");
    assert!(h["recentP50Ms"].as_f64().unwrap() > 150.0, "{h}");

    set_faults(&d, "asana-http", json!({"slowMs": 0}));
    d.wait_until("the warning to resolve", WAIT, |d| {
        active_alert(d, "degraded:asana-http").is_none()
    });
    assert_eq!(health_of(&d, "asana-http")["status"], "healthy");
    let (_, all) = d.get("/api/alerts");
    let closed = all["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "degraded:asana-http")
        .unwrap()
        .clone();
    assert_eq!(closed["active"], false);
    assert!(closed["durationMs"].as_u64().unwrap() > 0);

    // The webhook heard both.
    d.wait_until("webhook deliveries", WAIT, |_| {
        hooks.lock().unwrap().len() >= 2
    });
    let events: Vec<(String, String)> = hooks
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        events.contains(&("raised".into(), "degraded:asana-http".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&("resolved".into(), "degraded:asana-http".into())),
        "{events:?}"
    );

    // The history shows the samples behind it.
    let (status, history) = d.get("/api/health/asana-http/history");
    assert_eq!(status, 200);
    let samples = history["samples"].as_array().unwrap();
    let latency = |s: &Value| s["latencyMs"].as_f64().unwrap_or(0.0);
    let first_slow = samples
        .iter()
        .position(|s| latency(s) >= 400.0)
        .expect("slow samples in the history");
    // A slow verdict needs three successful samples in the recent window.
    assert!(samples.len() >= 3, "{samples:?}");
    let fast_after = samples[first_slow..]
        .iter()
        .filter(|s| s["ok"] == true && latency(s) < 150.0)
        .count();
    assert!(fast_after >= 1, "{samples:?}");
    assert_eq!(d.get("/api/health/nope/history").0, 404);
}

#[test]
fn replicas_down_raise_error_then_critical_and_everything_resolves_on_recovery() {
    let (url, _hooks) = webhook_sink();
    // Restarts wait 3 s, so a killed replica stays down long enough to look at.
    let d = Daemon::start(&config(&url, 3000));
    d.wait_until("both healthy", WAIT, |d| {
        health_of(d, "asana-http")["status"] == "healthy"
            && health_of(d, "asana-stdio")["status"] == "healthy"
    });

    kill9(d.service("asana-stdio")["pid"].as_u64().unwrap());
    d.wait_until("stdio unhealthy", WAIT, |d| {
        active_alert(d, "unhealthy:asana-stdio").is_some()
    });
    assert_eq!(
        active_alert(&d, "unhealthy:asana-stdio").unwrap()["severity"],
        "error"
    );
    assert_eq!(health_of(&d, "asana-stdio")["status"], "unhealthy");
    let events = d.stream("asana_list_workspaces", json!({}));
    let result = events
        .iter()
        .find(|e| e.event == "result")
        .expect("failover result");
    assert_eq!(result.data["service"], "asana-http");

    kill9(d.service("asana-http")["pid"].as_u64().unwrap());
    d.wait_until("the group-down alert", WAIT, |d| {
        active_alert(d, "group_down:asana").is_some()
    });
    assert_eq!(
        active_alert(&d, "group_down:asana").unwrap()["severity"],
        "critical"
    );
    let events = d.stream("asana_list_workspaces", json!({}));
    let error = events
        .iter()
        .find(|e| e.event == "error")
        .expect("an error while all are down");
    assert_eq!(
        error.data["category"], "service_unavailable",
        "{}",
        error.data
    );

    d.wait_until("every alert resolved", Duration::from_secs(30), |d| {
        let (_, body) = d.get("/api/alerts?active=true");
        body["count"] == 0
    });
    assert_eq!(health_of(&d, "asana-stdio")["status"], "healthy");
    assert_eq!(health_of(&d, "asana-http")["status"], "healthy");
    let (_, overall) = d.get("/api/health");
    assert_eq!(overall["status"], "healthy");
}
