//! Recovery without an operator: a remote upstream that goes away long
//! enough to exhaust the restart intensity is `failed`, keeps being tried
//! at a slow cadence, and comes back by itself — its critical alert
//! resolved — once it answers; `restart.give_up` keeps it down.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, Daemon, eventually};
use serde_json::{Value, json};

/// A simulator serving Streamable HTTP on `port`, not launched by mcpvisor
/// (an "external" upstream).
struct External(Child);

impl External {
    fn start(port: u16) -> Self {
        let child = Command::new(BIN)
            .args([
                "sim",
                "--http",
                &format!("127.0.0.1:{port}"),
                "--unit-latency-ms",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the simulator");
        let up = eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "simulator on {port} never listened");
        Self(child)
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn config(port: u16, give_up: bool) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "remote"
transport = "streamable_http"
url = "http://127.0.0.1:{port}/mcp"
manifest = "builtin:asana"
[services.health]
interval_ms = 200
timeout_ms = 500
[services.restart]
backoff_initial_ms = 20
backoff_max_ms = 100
max_restarts = 3
failed_retry_ms = 400
give_up = {give_up}
"#
    )
}

fn active_alerts(d: &Daemon) -> Vec<String> {
    let (_, body) = d.get("/api/alerts?active=true");
    body["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|a| a["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_failed_remote_upstream_comes_back_by_itself_when_it_answers() {
    let port = free_port();
    let upstream = External::start(port);
    let d = Daemon::start(&config(port, false));
    drop(upstream);
    d.wait_until("the service failed", Duration::from_secs(20), |d| {
        d.service("remote")["state"] == "failed"
    });
    assert!(active_alerts(&d).contains(&"failed:remote".to_owned()));
    // While it is down, callers get a clear error at once.
    let events = d.stream("asana_list_workspaces", json!({}));
    let error = events
        .iter()
        .find(|e| e.event == "error")
        .expect("an error");
    assert_eq!(
        error.data["category"], "service_unavailable",
        "{}",
        error.data
    );
    // It keeps being tried: the restart count goes on rising while failed.
    let restarts = d.service("remote")["restarts"].as_u64().unwrap();
    d.wait_until("a slow retry", Duration::from_secs(10), |d| {
        d.service("remote")["restarts"].as_u64() > Some(restarts)
    });
    assert_ne!(d.service("remote")["state"], "ready");

    let _back = External::start(port);
    d.wait_until("the service recovered", Duration::from_secs(20), |d| {
        d.service("remote")["state"] == "ready"
    });
    // (A restart-storm warning stays for its window: restarts did happen.)
    d.wait_until(
        "its failure alerts resolved",
        Duration::from_secs(10),
        |d| {
            let active = active_alerts(d);
            ["failed:remote", "unhealthy:remote", "group_down:remote"]
                .iter()
                .all(|k| !active.iter().any(|a| a == k))
        },
    );
    let events = d.stream("asana_list_workspaces", json!({}));
    let result = events.iter().find(|e| e.event == "result");
    assert!(result.is_some(), "{events:?}");
    assert_eq!(d.service("remote")["health"], "healthy");
}

#[test]
fn give_up_keeps_a_failed_service_down_until_an_operator_acts() {
    let port = free_port();
    let upstream = External::start(port);
    let d = Daemon::start(&config(port, true));
    drop(upstream);
    d.wait_until("the service failed", Duration::from_secs(20), |d| {
        d.service("remote")["state"] == "failed"
    });
    let restarts = d.service("remote")["restarts"].clone();
    let _back = External::start(port);
    // Several slow-retry periods pass without an attempt.
    let retried = eventually(Duration::from_millis(1500), || {
        d.service("remote")["restarts"] != restarts
    });
    assert!(!retried, "a service that gave up was retried");
    assert_eq!(d.service("remote")["state"], Value::from("failed"));
}
