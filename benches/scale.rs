//! Scale figures of a live daemon, each the median of several runs:
//! - start-up: from spawning `mcpvisor serve` to `/readyz` saying ready,
//!   with the 42 Asana tools and with 10,042 (the simulator's
//!   `--extra-tools 10000`, offered live);
//! - the tool registry taking in those lists, in process (the table
//!   rebuilt from a replica's `tools/list`);
//! - `tools/list` through the daemon for both, in a 2025 session;
//! - the daemon's resident memory holding 10,000 idle SSE streams (2025
//!   sessions, each with its `GET /mcp` stream open).
//!
//! `cargo bench --bench scale` (env: SCALE_STREAMS, default 10000;
//! SCALE_RUNS, default 5). Prints a Markdown table. Loopback only.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use mcpvisor_actors::manifest::Manifest;
use mcpvisor_actors::registry::{Registry, tool_from_manifest};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_mcpvisor");
const ASANA: &str = include_str!("../manifests/asana.json");
const VERSION: &str = "2025-06-18";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A configuration with one stdio simulator offering `extra` synthetic
/// tools beside the Asana ones.
fn config(dir: &Path, extra: usize) -> PathBuf {
    let path = dir.join(format!("scale-{extra}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
max_sessions = 20000
[auth.limits]
max_streams = 20000
[[services]]
name = "asana"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", "--unit-latency-ms", "0", "--extra-tools", "{extra}"]
manifest = "builtin:asana"
"#
        ),
    )
    .expect("write config");
    path
}

/// Starts a daemon; returns it, its address and the time to ready.
fn start(config: &Path, http: &reqwest::blocking::Client) -> (Proc, SocketAddr, Duration) {
    let began = Instant::now();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("MCPVISOR_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn mcpvisor");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the listening line");
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("mcpvisor listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    let proc = Proc(child);
    let deadline = began + Duration::from_secs(60);
    loop {
        let ready = http
            .get(format!("http://{addr}/readyz"))
            .send()
            .and_then(|r| r.json::<Value>())
            .is_ok_and(|v| v["ready"] == true);
        if ready {
            return (proc, addr, began.elapsed());
        }
        assert!(Instant::now() < deadline, "daemon never ready");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Opens a 2025 session; returns its id.
async fn session(http: &reqwest::Client, addr: SocketAddr) -> String {
    let url = format!("http://{addr}/mcp");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {},
        "clientInfo": {"name": "scale-bench", "version": "1"}}});
    let resp = http
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .expect("initialize");
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .expect("a session id")
        .to_owned();
    let _ = resp.bytes().await;
    http.post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", VERSION)
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .expect("initialized");
    sid
}

/// `tools/list` in a session: its duration, the body's size and the count.
async fn tools_list(
    http: &reqwest::Client,
    addr: SocketAddr,
    sid: &str,
) -> (Duration, usize, usize) {
    let began = Instant::now();
    let body = http
        .post(format!("http://{addr}/mcp"))
        .header("accept", "application/json")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", VERSION)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .expect("tools/list")
        .bytes()
        .await
        .expect("tools/list body");
    let took = began.elapsed();
    let text = String::from_utf8_lossy(&body);
    // JSON, or one SSE event carrying it.
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(&text);
    let v: Value = serde_json::from_str(json.trim()).expect("a JSON-RPC answer");
    let count = v["result"]["tools"].as_array().map_or(0, Vec::len);
    (took, body.len(), count)
}

/// A session's standalone SSE stream, open, its headers read.
async fn open_stream(addr: SocketAddr, sid: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /mcp HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Mcp-Session-Id: {sid}\r\nMcp-Protocol-Version: {VERSION}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "stream closed before its headers");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "stream refused: {}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// The registry taking in a replica's list of `n` extra tools.
fn registry_load(extra: usize, runs: usize) -> Duration {
    let manifest = Manifest::parse(Path::new("builtin:asana"), ASANA).expect("manifest");
    let mut tools: Vec<_> = manifest.tools.iter().map(tool_from_manifest).collect();
    tools.extend(mcpvisor::sim::extra_tools(extra));
    let times = (0..runs)
        .map(|_| {
            let registry = Registry::new();
            registry.add_service("asana", "asana", Some(manifest.clone()));
            let list = tools.clone();
            let began = Instant::now();
            registry.set_live_tools("asana", list);
            let took = began.elapsed();
            assert_eq!(registry.snapshot().len(), tools.len());
            took
        })
        .collect();
    median(times)
}

fn main() {
    let streams = env_usize("SCALE_STREAMS", 10_000);
    let runs = env_usize("SCALE_RUNS", 5).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let blocking = reqwest::blocking::Client::new();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let http = reqwest::Client::new();
    let mut rows = Vec::new();

    for extra in [0, 10_000] {
        let cfg = config(dir.path(), extra);
        let mut starts = Vec::new();
        let mut lists = Vec::new();
        let (mut bytes, mut count) = (0, 0);
        for _ in 0..runs {
            let (daemon, addr, ready) = start(&cfg, &blocking);
            starts.push(ready);
            rt.block_on(async {
                let sid = session(&http, addr).await;
                for _ in 0..10 {
                    let (took, b, c) = tools_list(&http, addr, &sid).await;
                    lists.push(took);
                    (bytes, count) = (b, c);
                }
            });
            drop(daemon);
        }
        let load = registry_load(extra, runs.max(5));
        eprintln!(
            "{count} tools: start-up {}, registry {}, tools/list {}",
            ms(median(starts.clone())),
            ms(load),
            ms(median(lists.clone()))
        );
        rows.push(format!(
            "| start-up to ready, {count} tools | {} |",
            ms(median(starts))
        ));
        rows.push(format!(
            "| registry load, {count} tools (in process) | {} |",
            ms(load)
        ));
        rows.push(format!(
            "| `tools/list`, {count} tools ({} KiB) | {} |",
            bytes / 1024,
            ms(median(lists))
        ));
    }

    // Idle streams.
    let cfg = config(dir.path(), 0);
    let (daemon, addr, _) = start(&cfg, &blocking);
    let pid = daemon.0.id();
    let base = rss_kib(pid);
    let began = Instant::now();
    let sids: Vec<String> = rt.block_on(
        futures::stream::iter(0..streams)
            .map(|_| session(&http, addr))
            .buffer_unordered(32)
            .collect(),
    );
    let with_sessions = rss_kib(pid);
    let open: Vec<TcpStream> = rt.block_on(
        futures::stream::iter(sids.iter())
            .map(|sid| open_stream(addr, sid))
            .buffer_unordered(64)
            .collect(),
    );
    let opened_in = began.elapsed();
    // Let allocations settle: the daemon is idle from here.
    std::thread::sleep(Duration::from_secs(1));
    let with_streams = rss_kib(pid);
    eprintln!(
        "{} streams: RSS {base} KiB idle, {with_sessions} KiB with sessions, {with_streams} KiB with streams ({:.1} s to open)",
        open.len(),
        opened_in.as_secs_f64()
    );
    rows.push(format!(
        "| RSS, no clients | {:.1} MiB |",
        base as f64 / 1024.0
    ));
    rows.push(format!(
        "| RSS, {streams} sessions with an idle SSE stream each | {:.1} MiB ({:.1} KiB per stream) |",
        with_streams as f64 / 1024.0,
        (with_streams.saturating_sub(base)) as f64 / streams as f64
    ));
    drop(open);
    drop(daemon);

    println!("| figure | median of {runs} |");
    println!("|---|---|");
    for row in rows {
        println!("{row}");
    }
}
