//! Test harness: a real mcpvisor daemon on an ephemeral loopback port,
//! supervising real simulator processes, and small clients for its APIs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_mcpvisor");
/// Seeded ids of the simulator's default workspace.
pub const PROJECT: &str = "1200000000000023";
pub const WORKSPACE: &str = "1200000000000009";
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A config with the two simulator replicas of the default setup, fast
/// health checks, and `extra` appended to the sim's arguments.
pub fn two_replicas(extra_stdio: &[&str], extra_http: &[&str]) -> String {
    let quote = |args: &[&str]| {
        args.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut stdio_args = vec!["sim", "--stdio", "--unit-latency-ms", "2"];
    stdio_args.extend_from_slice(extra_stdio);
    let mut http_args = vec![
        "sim",
        "--http",
        "127.0.0.1:{port}",
        "--unit-latency-ms",
        "2",
    ];
    http_args.extend_from_slice(extra_http);
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN_TOKEN}"
heartbeat_ms = 500

[router]
wait_for_service_ms = 15000

[[services]]
name = "asana-stdio"
group = "asana"
priority = "high"
transport = "stdio"
command = "@self"
args = [{stdio}]
manifest = "builtin:asana"
[services.health]
interval_ms = 200
timeout_ms = 1000
[services.restart]
backoff_initial_ms = 50
max_restarts = 20

[[services]]
name = "asana-http"
group = "asana"
priority = "medium"
transport = "streamable_http"
command = "@self"
args = [{http}]
url = "http://127.0.0.1:{{port}}/mcp"
manifest = "builtin:asana"
[services.health]
interval_ms = 200
timeout_ms = 1000
[services.restart]
backoff_initial_ms = 50
max_restarts = 20
"#,
        stdio = quote(&stdio_args),
        http = quote(&http_args),
    )
}

/// A running daemon; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Daemon {
    child: Child,
    pub base: String,
    /// The bearer token the helpers send, where clients need one.
    pub token: Option<String>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts a daemon with the given config and waits until every
    /// service is ready.
    pub fn start(config: &str) -> Daemon {
        Self::start_with(config, true)
    }

    /// Starts a daemon; `wait_ready` false returns once it listens.
    /// Starts a daemon with extra environment, its log (at `info`) in
    /// `log.txt` of its directory; the helpers send `token`. Waits until
    /// every service is ready.
    pub fn start_logged(config: &str, env: &[(&str, &str)], token: Option<&str>) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mcpvisor.toml");
        std::fs::write(&path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("log.txt")).expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(&path)
            .envs(env.iter().copied())
            .env("MCPVISOR_LOG", "info")
            .stderr(log);
        Self::launch_as(cmd, dir, true, token)
    }

    /// The log of a daemon started with [`Daemon::start_logged`].
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("log.txt")).unwrap_or_default()
    }

    /// The directory the daemon's config lives in.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn start_with(config: &str, wait_ready: bool) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mcpvisor.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"]).arg(&path);
        Self::launch(cmd, dir, wait_ready)
    }

    /// Starts `serve --config NAME` on a file called `name` that holds
    /// `text` (any format the daemon reads), on an ephemeral port; waits
    /// until every service is ready.
    pub fn start_file(name: &str, text: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_file_in(tempfile::tempdir().expect("tempdir"), name, text, env)
    }

    /// [`Daemon::start_file`] in a directory the caller prepared (with
    /// files the config refers to); its log (at `info`) in `log.txt`.
    pub fn start_file_in(
        dir: tempfile::TempDir,
        name: &str,
        text: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let log = std::fs::File::create(dir.path().join("log.txt")).expect("log file");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(&path)
            .env("MCPVISOR_LISTEN", "127.0.0.1:0")
            .env("MCPVISOR_LOG", "info")
            .envs(env.iter().copied())
            .stderr(log);
        Self::launch(cmd, dir, true)
    }

    /// Starts the daemon exactly as `cargo run` does — no arguments, the
    /// embedded default config — but on an ephemeral port.
    pub fn start_default() -> Daemon {
        Self::start_default_with(&[])
    }

    /// The default daemon with extra environment (e.g. the admin token).
    pub fn start_default_with(env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.env("MCPVISOR_LISTEN", "127.0.0.1:0");
        cmd.envs(env.iter().copied());
        Self::launch(cmd, tempfile::tempdir().expect("tempdir"), true)
    }

    fn launch(cmd: Command, dir: tempfile::TempDir, wait_ready: bool) -> Daemon {
        Self::launch_as(cmd, dir, wait_ready, None)
    }

    fn launch_as(
        mut cmd: Command,
        dir: tempfile::TempDir,
        wait_ready: bool,
        token: Option<&str>,
    ) -> Daemon {
        // Unless the caller chose, the log goes to the test's output.
        let chosen = cmd.get_envs().any(|(k, _)| k == "MCPVISOR_LOG");
        if !chosen {
            cmd.env(
                "MCPVISOR_LOG",
                std::env::var("MCPVISOR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(Stdio::inherit());
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn mcpvisor");
        // The daemon prints one line once it is bound.
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listen line");
        let base = line
            .trim()
            .strip_prefix("mcpvisor listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        let daemon = Daemon {
            child,
            base,
            token: token.map(str::to_owned),
            _dir: dir,
        };
        if wait_ready {
            daemon.wait_until("every service ready", Duration::from_secs(30), |d| {
                let (_, body) = d.get("/api/services");
                body["services"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(|s| s["state"] == "ready"))
            });
        }
        daemon
    }

    /// The `/metrics` page as text.
    pub fn metrics_text(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .expect("GET /metrics")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Polls `cond` until it holds; panics with `what` after `limit`.
    pub fn wait_until(&self, what: &str, limit: Duration, cond: impl Fn(&Daemon) -> bool) {
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_millis(10);
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    fn authed(&self, r: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .authed(client().get(self.url(path)))
            .send()
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .authed(client().post(self.url(path)))
            .json(body)
            .send()
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn admin_post(&self, path: &str) -> u16 {
        client()
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .expect("admin POST")
            .status()
            .as_u16()
    }

    /// `/api/services` entry of one service.
    /// Tool calls the simulator behind HTTP service `name` has received
    /// (its `/sim/stats`).
    pub fn sim_calls(&self, name: &str) -> u64 {
        let url = self.service(name)["endpoint"]
            .as_str()
            .expect("endpoint")
            .replace("/mcp", "/sim/stats");
        let stats: Value = client()
            .get(url)
            .send()
            .and_then(|r| r.json())
            .expect("sim stats");
        stats["calls"].as_u64().expect("calls")
    }

    pub fn service(&self, name: &str) -> Value {
        let (_, body) = self.get("/api/services");
        body["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// Runs a call through `/api/mcp/stream` and returns its events.
    pub fn stream(&self, tool: &str, arguments: Value) -> Vec<SseEvent> {
        let body = json!({"toolName": tool, "arguments": arguments,
            "streamingOptions": {"enableProgress": true, "enableStatusUpdates": true}});
        let r = self
            .authed(client().post(self.url("/api/mcp/stream")))
            .json(&body)
            .send()
            .expect("stream POST");
        assert_eq!(r.status().as_u16(), 200, "stream call refused");
        parse_sse(&r.text().expect("stream body"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One launched simulator over Streamable HTTP, service `web` of logical
/// service `asana` (its `/sim/stats` counts the calls it gets, see
/// [`Daemon::sim_calls`]), answering after `latency_ms`; `sections` (TOML)
/// go after `[server]`, which has the admin token.
pub fn web_sim(latency_ms: u64, sections: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{ADMIN_TOKEN}"
{sections}
[[services]]
name = "web"
group = "asana"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{{port}}", "--latency-ms", "{latency_ms}"]
url = "http://127.0.0.1:{{port}}/mcp"
manifest = "builtin:asana"
"#
    )
}

/// `mcpvisor check-config PATH`: whether it passed, its stdout and stderr.
pub fn check_config_file(path: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// One SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// Parses a complete SSE body (comments skipped).
pub fn parse_sse(body: &str) -> Vec<SseEvent> {
    body.split("\n\n")
        .filter_map(|frame| {
            let mut id = None;
            let mut event = "message".to_owned();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            (!data.is_empty()).then(|| SseEvent {
                id,
                event,
                data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
            })
        })
        .collect()
}

/// Sends SIGKILL to a process.
pub fn kill9(pid: u64) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -9 {pid} failed");
}

/// The conformance target (`tests/conformance-target`): an MCP server with
/// test fixtures in every area (tools, resources with updates, prompts,
/// completion, sampling, elicitation). Built next to mcpvisor on demand.
pub fn conformance_target() -> std::path::PathBuf {
    let path = std::path::Path::new(BIN).with_file_name("conformance-target");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "mcpvisor-conformance-target"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the conformance target failed");
    }
    path
}

impl Daemon {
    /// One 2026-07-28 request to `/mcp` (JSON answer), with the `_meta` and
    /// headers that revision requires (`Mcp-Name` from `name` or `uri`);
    /// the JSON-RPC reply.
    pub fn mcp(&self, method: &str, mut params: Value, capabilities: Value) -> Value {
        let name = params
            .get("name")
            .or_else(|| params.get("uri"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": capabilities});
        let mut request = client()
            .post(self.url("/mcp"))
            .header("accept", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        if let Some(name) =
            name.filter(|_| matches!(method, "tools/call" | "prompts/get" | "resources/read"))
        {
            request = request.header("mcp-name", name);
        }
        request
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .expect("POST /mcp")
            .json()
            .expect("JSON reply")
    }
}

impl Daemon {
    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`-TERM`, `-9`, …) to the daemon and waits for it to exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args([signal, &pid]).status();
        self.child.wait().expect("wait for mcpvisor")
    }
}

/// Live processes (zombies excluded) whose environment holds `KEY=value`.
pub fn processes_with_env(key: &str, value: &str) -> Vec<u32> {
    let needle = format!("{key}={value}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("Z");
            state != "Z"
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .collect()
}

/// Polls `cond` until it holds, at most `limit`; whether it did.
pub fn eventually(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
