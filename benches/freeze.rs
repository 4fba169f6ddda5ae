//! A frozen preferred replica under load, on the default daemon: eight
//! clients call `asana_list_workspaces` over `/mcp` while the stdio
//! replica's process group is stopped (SIGSTOP) for FREEZE_SECS (default 8),
//! then continued. Prints calls ok / failed and latency before, during and
//! after the freeze — the figures a hang costs callers.
//!
//! `cargo bench --bench freeze` (env: FREEZE_SECS, FREEZE_CLIENTS).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mcpvisor");

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn call(http: &reqwest::blocking::Client, base: &str) -> Option<String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "asana_list_workspaces",
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {},
                  // Every call must reach a replica.
                  "io.mcpvisor/noCache": true}}});
    let v: Value = http
        .post(format!("{base}/mcp"))
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "asana_list_workspaces")
        .json(&body)
        .send()
        .and_then(|r| r.json())
        .ok()?;
    (v["result"].is_object() && v["result"]["isError"] != true).then(|| {
        v["result"]["_meta"]["io.mcpvisor/service"]
            .as_str()
            .unwrap_or("?")
            .to_owned()
    })
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    let freeze = Duration::from_secs(env_or("FREEZE_SECS", 8));
    let clients = env_or("FREEZE_CLIENTS", 8) as usize;
    let mut child = Command::new(BIN)
        .env("MCPVISOR_LISTEN", "127.0.0.1:0")
        .env("MCPVISOR_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start mcpvisor");
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
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let services = |http: &reqwest::blocking::Client| -> Value {
        http.get(format!("{base}/api/services"))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let pgid = loop {
        let s = services(&http);
        let all_ready = s["services"]
            .as_array()
            .is_some_and(|a| a.iter().all(|s| s["state"] == "ready"));
        if all_ready {
            break s["services"][0]["pid"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "daemon never ready");
        std::thread::sleep(Duration::from_millis(50));
    };

    // 0 before, 1 frozen, 2 after.
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (base, phase, stop) = (base.clone(), phase.clone(), stop.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let p = phase.load(Ordering::Relaxed);
                    let started = Instant::now();
                    let ok = call(&http, &base).is_some();
                    seen.push((p, ok, started.elapsed().as_secs_f64() * 1000.0));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, "--", &format!("-{pgid}")])
            .status()
            .unwrap();
    };
    phase.store(1, Ordering::Relaxed);
    signal("-STOP");
    std::thread::sleep(freeze);
    signal("-CONT");
    phase.store(2, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<(u8, bool, f64)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    println!(
        "default daemon, {clients} clients of asana_list_workspaces over /mcp; stdio replica SIGSTOPped for {} s",
        freeze.as_secs()
    );
    for (p, name) in [(0u8, "before"), (1, "frozen"), (2, "after")] {
        let mut ms: Vec<f64> = seen.iter().filter(|s| s.0 == p).map(|s| s.2).collect();
        let failed = seen.iter().filter(|s| s.0 == p && !s.1).count();
        ms.sort_by(f64::total_cmp);
        println!(
            "{name:<7} {:>6} calls  {failed:>3} failed   p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
            ms.len(),
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN),
        );
    }
    let s = services(&http);
    for svc in s["services"].as_array().into_iter().flatten() {
        println!(
            "{:<12} state {} restarts {} suspect {}",
            svc["name"].as_str().unwrap_or("?"),
            svc["state"],
            svc["restarts"],
            svc["suspect"]
        );
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
