//! Recovery figures of a live daemon, repeated and summarised by median:
//! how long from `kill -9` of the preferred replica to the first successful
//! call (served by failover), and from the replica's recovery (its
//! reconnection) to the resolution of its alert.
//!
//! `cargo bench --bench recovery` (env: RECOVERY_RUNS, default 9). All on
//! loopback; the daemon supervises two simulator replicas as in the
//! default configuration.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mcpvisor");

struct Daemon {
    child: Child,
    base: String,
    http: reqwest::blocking::Client,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    }

    fn service(&self, name: &str) -> Value {
        self.get("/api/services")["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    fn call_ok(&self) -> bool {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "asana_list_workspaces",
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}}}});
        self.http
            .post(format!("{}/mcp", self.base))
            .header("accept", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "asana_list_workspaces")
            .json(&body)
            .send()
            .and_then(|r| r.json::<Value>())
            .is_ok_and(|v| v["result"]["isError"] != true && v["result"].is_object())
    }

    fn wait(&self, what: &str, cond: impl Fn(&Daemon) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn start() -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recovery.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "asana-stdio"
group = "asana"
priority = "high"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio"]
manifest = "builtin:asana"
[services.health]
interval_ms = 1000
[services.restart]
max_restarts = 100
[[services]]
name = "asana-http"
group = "asana"
priority = "medium"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{port}"]
url = "http://127.0.0.1:{port}/mcp"
manifest = "builtin:asana"
"#,
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("MCPVISOR_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("mcpvisor listening on ")
        .unwrap()
        .to_owned();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let d = Daemon { child, base, http };
    d.wait("both replicas ready", |d| {
        d.service("asana-stdio")["state"] == "ready" && d.service("asana-http")["state"] == "ready"
    });
    (d, dir)
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    println!(
        "{name:<44} median {median:>8.1} ms   min {:>8.1}   max {:>8.1}   (n={})",
        v[0],
        v[v.len() - 1],
        v.len()
    );
}

fn main() {
    let runs: usize = std::env::var("RECOVERY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let (d, _dir) = start();
    let mut to_failover = Vec::new();
    let mut to_resolution = Vec::new();
    let mut down_for = Vec::new();
    for run in 0..runs {
        let before = d.service("asana-stdio");
        let pid = before["pid"].as_u64().unwrap();
        let restarts = before["restarts"].as_u64().unwrap();
        let killed = Instant::now();
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        while !d.call_ok() {}
        to_failover.push(killed.elapsed().as_secs_f64() * 1000.0);

        d.wait("the replica back", |d| {
            let s = d.service("asana-stdio");
            s["state"] == "ready" && s["restarts"].as_u64() > Some(restarts)
        });
        down_for.push(killed.elapsed().as_secs_f64() * 1000.0);
        let up_at = d.service("asana-stdio")["upSinceMs"].as_u64().unwrap();
        d.wait("the alert resolved", |d| {
            d.get("/api/alerts")["alerts"].as_array().is_some_and(|a| {
                a.iter().any(|a| {
                    a["key"] == "unhealthy:asana-stdio"
                        && a["active"] == false
                        && a["resolvedAtMs"].as_u64() >= Some(up_at)
                })
            })
        });
        let alerts = d.get("/api/alerts");
        let resolved = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["key"] == "unhealthy:asana-stdio")
            .filter_map(|a| a["resolvedAtMs"].as_u64())
            .max()
            .unwrap();
        to_resolution.push(resolved.saturating_sub(up_at) as f64);
        eprintln!("run {run}: failover {:.1} ms", to_failover[run]);
        // Let the restart backoff history age a little between runs.
        std::thread::sleep(Duration::from_millis(300));
    }
    println!(
        "kill -9 of the preferred (stdio) replica, {runs} runs, daemon at {}",
        d.base
    );
    summary("kill -9 -> first successful call", to_failover);
    summary("kill -9 -> replica restarted and ready", down_for);
    summary("replica ready -> its alert resolved", to_resolution);
}
