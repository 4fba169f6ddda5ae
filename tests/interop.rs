//! Interoperability with MCP implementations mcpvisor did not write: the
//! npm `server-everything` and `mcp-server-asana`, the Python SDK's
//! `mcp-server-time` and a Python SDK 2.x server upstream; the Python SDK
//! 1.x and 2.x clients downstream; and protocol eras translated between them.
//!
//! The peers are installed from the pinned files in `tests/peers/` by
//! `scripts/peers.sh`. Without them these tests say so and pass, unless
//! `MCPVISOR_REQUIRE_PEERS=1` (set by `scripts/interop.sh` and CI), which
//! turns a missing peer into a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Daemon, PROJECT, two_replicas};
use serde_json::{Value, json};

/// The MCP Inspector's launcher (`--cli` runs its command-line client).
const INSPECTOR: &str =
    "node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js";

/// The installed peers, or `None` (and a note) when they are not installed.
fn peers() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let needed = [
        "node_modules/.bin/node",
        "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
        "node_modules/@roychri/mcp-server-asana/dist/index.js",
        ".venv-mcp1/bin/python",
        ".venv-mcp2/bin/python",
        ".venv-mcp2/bin/mcp-server-time",
        "node_modules/@modelcontextprotocol/sdk/dist/esm/client/sse.js",
        INSPECTOR,
    ];
    let missing: Vec<_> = needed.iter().filter(|p| !dir.join(p).exists()).collect();
    if missing.is_empty() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("MCPVISOR_REQUIRE_PEERS").is_none(),
        "interop peers missing ({missing:?}): run scripts/peers.sh"
    );
    eprintln!("interop peers not installed (scripts/peers.sh): skipped");
    None
}

fn path(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// A `[[services]]` table running server-everything in `mode`
/// (`stdio`, `streamableHttp` or `sse`), listening on loopback only.
fn everything(peers: &Path, name: &str, mode: &str) -> String {
    let node = path(&peers.join("node_modules/.bin/node"));
    let script =
        path(&peers.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"));
    let shim = path(&peers.join("loopback-only.cjs"));
    let wire = match mode {
        "stdio" => "transport = \"stdio\"".to_owned(),
        "streamableHttp" => format!(
            "transport = \"streamable_http\"\nurl = \"http://127.0.0.1:{{port}}/mcp\"\nenv = {{ PORT = \"{{port}}\", NODE_OPTIONS = \"--require {shim}\" }}"
        ),
        "sse" => format!(
            "transport = \"sse\"\nurl = \"http://127.0.0.1:{{port}}/sse\"\nenv = {{ PORT = \"{{port}}\", NODE_OPTIONS = \"--require {shim}\" }}"
        ),
        other => panic!("unknown mode {other}"),
    };
    format!(
        r#"
[[services]]
name = "{name}"
command = "{node}"
args = ["{script}", "{mode}"]
{wire}
[services.health]
interval_ms = 500
"#
    )
}

fn daemon(services: &str) -> Daemon {
    Daemon::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[router]\nwait_for_service_ms = 5000\n{services}"
    ))
}

/// Runs server-everything's long-running tool through `/api/mcp/stream`
/// and checks that its progress reached the client step by step, as the
/// upstream sent it, before the result.
fn long_running_streams_progress(d: &Daemon, service: &str) {
    let events = d.stream(
        "trigger-long-running-operation",
        json!({"duration": 2, "steps": 4}),
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| &e.data)
        .collect();
    assert_eq!(progress.len(), 4, "{kinds:?}");
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["progress"], (i + 1) as f64, "{p}");
        assert_eq!(p["total"], 4.0, "{p}");
    }
    let result = events
        .iter()
        .find(|e| e.event == "result")
        .expect("a result");
    assert_eq!(result.data["service"], service);
    assert_eq!(result.data["isError"], false, "{}", result.data);
    // Event by event: the upstream spaces its steps 500 ms apart, and so
    // are the events mcpvisor emitted; the last one precedes the result.
    let at = |v: &Value| v["timestamp"].as_u64().expect("timestamp");
    let first = at(progress[0]);
    let last = at(progress[3]);
    assert!(
        last - first >= 1000,
        "progress arrived in one burst: {progress:?}"
    );
    let position = |k: &str| kinds.iter().position(|e| *e == k).unwrap();
    assert!(kinds.iter().rposition(|e| *e == "progress").unwrap() < position("result"));
}

fn call_text(d: &Daemon, tool: &str, arguments: Value) -> String {
    let events = d.stream(tool, arguments);
    let result = events
        .iter()
        .find(|e| e.event == "result")
        .unwrap_or_else(|| panic!("no result from {tool}: {events:?}"));
    assert_eq!(result.data["isError"], false, "{}", result.data);
    result.data["content"][0]["text"]
        .as_str()
        .expect("text content")
        .to_owned()
}

#[test]
fn server_everything_over_stdio() {
    let Some(peers) = peers() else { return };
    let d = daemon(&everything(&peers, "everything", "stdio"));
    let s = d.service("everything");
    assert_eq!(s["protocol"], "2025-11-25", "{s}");
    assert!(s["server"].as_str().unwrap().contains("everything"), "{s}");
    assert!(call_text(&d, "echo", json!({"message": "hi"})).contains("hi"));
    assert!(call_text(&d, "get-sum", json!({"a": 2, "b": 3})).contains('5'));
    long_running_streams_progress(&d, "everything");
}

#[test]
fn server_everything_over_streamable_http() {
    let Some(peers) = peers() else { return };
    let d = daemon(&everything(&peers, "everything", "streamableHttp"));
    let s = d.service("everything");
    assert_eq!(s["protocol"], "2025-11-25", "{s}");
    let endpoint = s["endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{s}");
    assert!(call_text(&d, "echo", json!({"message": "over http"})).contains("over http"));
    long_running_streams_progress(&d, "everything");
}

#[test]
fn server_everything_over_legacy_sse() {
    let Some(peers) = peers() else { return };
    let d = daemon(&everything(&peers, "everything", "sse"));
    let s = d.service("everything");
    assert!(s["endpoint"].as_str().unwrap().ends_with("/sse"), "{s}");
    assert!(call_text(&d, "echo", json!({"message": "legacy"})).contains("legacy"));
    long_running_streams_progress(&d, "everything");
}

#[test]
fn python_mcp_server_time_over_stdio() {
    let Some(peers) = peers() else { return };
    let d = daemon(&format!(
        "[[services]]\nname = \"time\"\ntransport = \"stdio\"\ncommand = \"{}\"\n",
        path(&peers.join(".venv-mcp2/bin/mcp-server-time"))
    ));
    let s = d.service("time");
    assert_eq!(s["protocol"], "2026-07-28", "{s}");
    let text = call_text(&d, "get_current_time", json!({"timezone": "UTC"}));
    let v: Value = serde_json::from_str(&text).expect("JSON time");
    assert_eq!(v["timezone"], "UTC", "{v}");
    // Schema-invalid arguments never reach it.
    let (status, error) = call_refused(&d, "get_current_time", json!({"timezone": 7}));
    assert_eq!(status, 400, "{error}");
    assert!(error.to_string().contains("validation"), "{error}");
}

#[test]
fn python_sdk_2_http_server_speaks_2026_07_28_with_progress() {
    let Some(peers) = peers() else { return };
    let d = daemon(&format!(
        r#"[[services]]
name = "py2"
transport = "streamable_http"
command = "{}"
args = ["{}", "http", "{{port}}"]
url = "http://127.0.0.1:{{port}}/mcp"
"#,
        path(&peers.join(".venv-mcp2/bin/python")),
        path(&peers.join("servers/mcp2_server.py")),
    ));
    let s = d.service("py2");
    assert_eq!(s["protocol"], "2026-07-28", "{s}");
    assert_eq!(call_text(&d, "add", json!({"a": 2, "b": 40})), "42.0");
    let events = d.stream("slow", json!({"steps": 3, "delay": 0.2}));
    let progress: Vec<_> = events.iter().filter(|e| e.event == "progress").collect();
    assert_eq!(progress.len(), 3, "{events:?}");
    assert_eq!(progress[2].data["message"], "step 3/3");
}

#[test]
fn real_asana_server_negotiates_2024_11_05_and_gets_manifest_metadata() {
    let Some(peers) = peers() else { return };
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/asana.json");
    let d = daemon(&format!(
        r#"[[services]]
name = "asana-npm"
transport = "stdio"
command = "{}"
args = ["{}"]
env = {{ ASANA_ACCESS_TOKEN = "offline-dummy-token" }}
manifest = "{}"
"#,
        path(&peers.join("node_modules/.bin/node")),
        path(&peers.join("node_modules/@roychri/mcp-server-asana/dist/index.js")),
        path(&manifest),
    ));
    let s = d.service("asana-npm");
    assert_eq!(s["protocol"], "2024-11-05", "{s}");

    let tools = mcp_tool_names(&d);
    assert_eq!(
        tools.len(),
        41,
        "the live server's 41 tools, no more: {tools:?}"
    );
    // Our manifest's tool that this server lacks is not offered.
    assert!(!tools.iter().any(|t| t == "asana_get_project_hierarchy"));
    let (_, listing) = d.get("/api/mcp/stream");
    let tools = listing["tools"].as_array().unwrap();
    let workspaces = tools
        .iter()
        .find(|t| t["name"] == "asana_list_workspaces")
        .unwrap();
    assert_eq!(workspaces["service"], "asana-npm");
    assert_eq!(workspaces["category"], "workspace", "{workspaces}");
    assert_eq!(workspaces["annotations"]["readOnlyHint"], true);
    assert_eq!(workspaces["streaming"]["mode"], "incremental");

    // A call missing a required argument is refused against the live
    // schema before anything is sent (the server is offline: it would
    // otherwise fail on the network).
    let (status, error) = call_refused(&d, "asana_get_task", json!({}));
    assert_eq!(status, 400, "{error}");
    assert!(error.to_string().contains("task_id"), "{error}");
}

/// Tool names a 2026-07-28 client sees in `tools/list` on `/mcp`.
fn mcp_tool_names(d: &Daemon) -> Vec<String> {
    let body = d.mcp("tools/list", json!({}), json!({}));
    body["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {body}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A `/api/mcp/stream` call refused before streaming: status and body.
fn call_refused(d: &Daemon, tool: &str, arguments: Value) -> (u16, Value) {
    d.post(
        "/api/mcp/stream",
        &json!({"toolName": tool, "arguments": arguments}),
    )
}

/// Runs one of the Python SDK client scripts against the daemon's `/mcp`.
fn python_client(
    peers: &Path,
    venv: &str,
    script: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> String {
    let out = Command::new(peers.join(venv).join("bin/python"))
        .arg(peers.join("clients").join(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Checks a client's printout: a tool listing, progress lines, then the
/// result after the last of them.
fn progress_then_result(out: &str, min_progress: usize) {
    let lines: Vec<&str> = out.lines().collect();
    let progress: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("progress "))
        .collect();
    assert!(progress.len() >= min_progress, "{out}");
    let result = lines
        .iter()
        .position(|l| l.starts_with("result["))
        .expect("a result line");
    assert!(progress.iter().all(|&i| i < result), "{out}");
}

#[test]
fn python_sdk_1_client_uses_a_session() {
    let Some(peers) = peers() else { return };
    let d = Daemon::start(&two_replicas(&[], &[]));
    let url = d.url("/mcp");
    let args = json!({"project_id": PROJECT}).to_string();
    let out = python_client(
        &peers,
        ".venv-mcp1",
        "mcp1_client.py",
        &[],
        &[&url, "asana_get_project_hierarchy", &args],
    );
    assert!(out.contains("protocolVersion=2025-11-25"), "{out}");
    assert!(out.contains("tools(42):"), "{out}");
    assert!(!out.contains("session-id=None"), "{out}");
    progress_then_result(&out, 100);
}

#[test]
fn python_sdk_2_client_in_both_eras() {
    let Some(peers) = peers() else { return };
    let d = Daemon::start(&two_replicas(&[], &[]));
    let url = d.url("/mcp");
    let args = json!({"project_id": PROJECT}).to_string();
    for (mode, version) in [
        ("2026-07-28", "2026-07-28"),
        ("auto", "2026-07-28"),
        ("legacy", "2025-11-25"),
    ] {
        let out = python_client(
            &peers,
            ".venv-mcp2",
            "mcp2_client.py",
            &[("MCP_MODE", mode)],
            &[&url, "asana_get_project_hierarchy", &args],
        );
        assert!(
            out.contains(&format!("protocolVersion={version}")),
            "{mode}: {out}"
        );
        assert!(out.contains("tools(42):"), "{mode}: {out}");
        progress_then_result(&out, 100);
    }
}

#[test]
fn eras_are_translated_both_ways() {
    let Some(peers) = peers() else { return };
    // A 2025-11-25 session upstream (server-everything) and a 2026-07-28
    // stateless one (mcp-server-time), behind one endpoint.
    let d = daemon(&format!(
        "{}[[services]]\nname = \"time\"\ntransport = \"stdio\"\ncommand = \"{}\"\n",
        everything(&peers, "everything", "stdio"),
        path(&peers.join(".venv-mcp2/bin/mcp-server-time"))
    ));
    let url = d.url("/mcp");
    let long = json!({"duration": 1, "steps": 3}).to_string();
    // A stateless 2026-07-28 client reaches the session-era upstream, with
    // progress; and the stateless upstream.
    let out = python_client(
        &peers,
        ".venv-mcp2",
        "mcp2_client.py",
        &[("MCP_MODE", "2026-07-28")],
        &[&url, "trigger-long-running-operation", &long],
    );
    assert!(out.contains("protocolVersion=2026-07-28"), "{out}");
    progress_then_result(&out, 3);
    let tz = json!({"timezone": "UTC"}).to_string();
    let out = python_client(
        &peers,
        ".venv-mcp2",
        "mcp2_client.py",
        &[("MCP_MODE", "2026-07-28")],
        &[&url, "get_current_time", &tz],
    );
    assert!(out.contains("\"timezone\": \"UTC\""), "{out}");
    // A 2025-era session client reaches the stateless upstream, and the
    // session one with progress.
    let out = python_client(
        &peers,
        ".venv-mcp1",
        "mcp1_client.py",
        &[],
        &[&url, "get_current_time", &tz],
    );
    assert!(out.contains("protocolVersion=2025-11-25"), "{out}");
    assert!(out.contains("\"timezone\": \"UTC\""), "{out}");
    let out = python_client(
        &peers,
        ".venv-mcp1",
        "mcp1_client.py",
        &[],
        &[&url, "trigger-long-running-operation", &long],
    );
    progress_then_result(&out, 3);
}

#[test]
fn resources_prompts_and_completion_are_relayed() {
    let Some(peers) = peers() else { return };
    // server-everything speaks 2025-11-25 sessions; the client here speaks
    // 2026-07-28: everything below crosses eras too.
    let d = daemon(&everything(&peers, "everything", "stdio"));
    d.wait_until("the catalog", std::time::Duration::from_secs(10), |d| {
        d.mcp("prompts/list", json!({}), json!({}))["result"]["prompts"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    });
    let resources = d.mcp("resources/list", json!({}), json!({}));
    let listed = resources["result"]["resources"].as_array().unwrap();
    assert!(!listed.is_empty(), "{resources}");
    let uri = listed[0]["uri"].as_str().unwrap();
    let read = d.mcp("resources/read", json!({"uri": uri}), json!({}));
    assert_eq!(read["result"]["contents"][0]["uri"], uri, "{read}");

    let templates = d.mcp("resources/templates/list", json!({}), json!({}));
    let template = templates["result"]["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["uriTemplate"] == "demo://resource/dynamic/text/{resourceId}")
        .unwrap_or_else(|| panic!("{templates}"))
        .clone();
    assert_eq!(template["mimeType"], "text/plain");
    let uri = "demo://resource/dynamic/text/7";
    let read = d.mcp("resources/read", json!({"uri": uri}), json!({}));
    let text = read["result"]["contents"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Resource 7"), "{read}");

    // The upstream's own error comes back as it sent it.
    let missing = d.mcp("resources/read", json!({"uri": "demo://nope"}), json!({}));
    assert_eq!(missing["error"]["code"], -32602, "{missing}");

    let prompt = d.mcp(
        "prompts/get",
        json!({"name": "args-prompt", "arguments": {"city": "Oslo"}}),
        json!({}),
    );
    let said = prompt["result"]["messages"][0]["content"]["text"]
        .as_str()
        .unwrap();
    assert!(said.contains("Oslo"), "{prompt}");
    let unknown = d.mcp("prompts/get", json!({"name": "nope"}), json!({}));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");

    let completion = d.mcp(
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "completable-prompt"},
               "argument": {"name": "department", "value": "E"}}),
        json!({}),
    );
    assert_eq!(
        completion["result"]["completion"]["values"],
        json!(["Engineering"]),
        "{completion}"
    );
}

/// Runs the MCP Inspector's CLI against `url`; its JSON output.
fn inspector(peers: &Path, url: &str, args: &[&str]) -> Value {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(peers.join("node_modules/.bin/node"))
        .arg(peers.join(INSPECTOR))
        .args(["--cli", url])
        .args(args)
        // It keeps a catalog under $HOME: a throwaway one.
        .env("HOME", home.path())
        .output()
        .expect("run the Inspector CLI");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn mcp_inspector_cli_lists_calls_and_reads() {
    let Some(peers) = peers() else { return };
    let d = Daemon::start(&format!(
        "{}\n{}",
        two_replicas(&[], &[]),
        everything(&peers, "everything", "stdio")
    ));
    let url = d.url("/mcp");
    let listed = inspector(&peers, &url, &["--method", "tools/list"]);
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"asana_get_project"), "{names:?}");
    assert!(names.contains(&"echo"), "{names:?}");

    let project = format!("project_id=\"{PROJECT}\"");
    let called = inspector(
        &peers,
        &url,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "asana_get_project",
            "--tool-arg",
            &project,
        ],
    );
    let text = called["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Website Redesign"), "{called}");

    let resources = inspector(&peers, &url, &["--method", "resources/list"]);
    assert!(
        resources["resources"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{resources}"
    );
    let prompt = inspector(
        &peers,
        &url,
        &[
            "--method",
            "prompts/get",
            "--prompt-name",
            "args-prompt",
            "--prompt-args",
            "city=Oslo",
        ],
    );
    assert!(prompt.to_string().contains("Oslo"), "{prompt}");
}

#[test]
fn python_clients_cancel_a_call_and_the_upstream_stops_it() {
    let Some(peers) = peers() else { return };
    let (d, stats_url) = web_replica(50);
    let cancelled = |_: &Daemon| cancelled_calls(&stats_url);
    let url = d.url("/mcp");
    let args = json!({"project_id": PROJECT}).to_string();
    let cancel = [("MCP_CANCEL_AFTER_PROGRESS", "2")];
    let runs = [
        (".venv-mcp1", "mcp1_client.py", None),
        (".venv-mcp2", "mcp2_client.py", Some("2026-07-28")),
        (".venv-mcp2", "mcp2_client.py", Some("legacy")),
    ];
    for (n, (venv, script, mode)) in runs.into_iter().enumerate() {
        let env: Vec<(&str, &str)> = mode
            .map(|m| ("MCP_MODE", m))
            .into_iter()
            .chain(cancel)
            .collect();
        let out = python_client(
            &peers,
            venv,
            script,
            &env,
            &[&url, "asana_get_project_hierarchy", &args],
        );
        assert!(out.contains("cancelled"), "{script} {mode:?}: {out}");
        assert!(!out.contains("completed before"), "{out}");
        d.wait_until(
            "the upstream to stop the call",
            std::time::Duration::from_secs(10),
            |d| cancelled(d) > n as u64,
        );
    }
}

/// A daemon in front of one HTTP replica, slow enough per step
/// (`unit_latency_ms`) for a cancellation to land mid-call, and the URL of
/// the replica's `/sim/stats` (which counts calls cancelled by the client).
fn web_replica(unit_latency_ms: u64) -> (Daemon, String) {
    let d = Daemon::start(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "web"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{{port}}", "--unit-latency-ms", "{unit_latency_ms}"]
url = "http://127.0.0.1:{{port}}/mcp"
manifest = "builtin:asana"
"#
    ));
    let stats_url = d.service("web")["endpoint"]
        .as_str()
        .unwrap()
        .replace("/mcp", "/sim/stats");
    (d, stats_url)
}

/// Calls the replica behind `stats_url` saw cancelled by its client.
fn cancelled_calls(stats_url: &str) -> u64 {
    let stats: Value = common::client()
        .get(stats_url)
        .send()
        .unwrap()
        .json()
        .unwrap();
    stats["cancelled"].as_u64().unwrap_or(0)
}

/// Runs the TypeScript SDK's `SSEClientTransport` client against `url`.
fn ts_sse_client(peers: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = Command::new(peers.join("node_modules/.bin/node"))
        .arg(peers.join("clients/ts_sse_client.mjs"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(peers)
        .output()
        .expect("run the TypeScript client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ts_sse_client failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn legacy_sse_clients_list_call_with_progress_and_cancel() {
    let Some(peers) = peers() else { return };
    // The 2024-11-05 HTTP+SSE transport, as the Python SDK's `sse_client`
    // and the TypeScript SDK's `SSEClientTransport` speak it.
    let (d, stats_url) = web_replica(5);
    let url = d.url("/sse");
    let args = json!({"project_id": PROJECT}).to_string();
    let sse = [("MCP_TRANSPORT", "sse")];
    let python = |env: &[(&str, &str)]| {
        let env: Vec<_> = sse.iter().chain(env).copied().collect();
        python_client(
            &peers,
            ".venv-mcp1",
            "mcp1_client.py",
            &env,
            &[&url, "asana_get_project_hierarchy", &args],
        )
    };
    let typescript = |env: &[(&str, &str)]| {
        ts_sse_client(&peers, env, &[&url, "asana_get_project_hierarchy", &args])
    };
    for (n, client) in [&python as &dyn Fn(&[(&str, &str)]) -> String, &typescript]
        .into_iter()
        .enumerate()
    {
        let out = client(&[]);
        assert!(out.contains("tools(42):"), "{out}");
        progress_then_result(&out, 100);
        assert!(out.contains("Website Redesign"), "{out}");

        let out = client(&[("MCP_CANCEL_AFTER_PROGRESS", "2")]);
        assert!(out.contains("cancelled"), "{out}");
        assert!(!out.contains("completed before"), "{out}");
        d.wait_until(
            "the upstream to stop the call",
            std::time::Duration::from_secs(10),
            |_| cancelled_calls(&stats_url) > n as u64,
        );
    }
    // Each stream's end ended its session.
    d.wait_until("sessions to end", std::time::Duration::from_secs(10), |d| {
        d.get("/api/services").1["mcpSessions"] == 0
    });
}
