//! The command line: config checking names file, line and field.

mod common;

use std::process::Command;

fn check_config(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    common::check_config_file(&path)
}

#[test]
fn check_config_explains_the_default() {
    let out = Command::new(common::BIN)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("asana-stdio") && text.contains("asana-http"),
        "{text}"
    );
    assert!(text.contains("42 tools"), "{text}");
}

#[test]
fn check_config_names_file_line_and_field() {
    let (ok, _, err) = check_config(
        "[server]\nlisten = \"127.0.0.1:3000\"\n\n[[services]]\nname = \"a\"\ntransport = \"stdio\"\ncommand = \"x\"\n[services.health]\ninterval_ms = \"often\"\n",
    );
    assert!(!ok);
    assert!(err.contains("bad.toml:9"), "{err}");
    assert!(err.contains("services[0].health.interval_ms"), "{err}");

    let (ok, _, err) = check_config("[[services]]\nname = \"a\"\ntransport = \"carrier-pigeon\"\n");
    assert!(!ok);
    assert!(
        err.contains("bad.toml:3") && err.contains("services[0].transport"),
        "{err}"
    );

    let (ok, _, err) = check_config(
        "[[services]]\nname = \"a\"\ntransport = \"stdio\"\ncommand = \"x\"\nmanifest = \"builtin:notion\"\n",
    );
    assert!(!ok);
    assert!(
        err.contains("bad.toml:2") && err.contains("services[0].manifest"),
        "{err}"
    );
}

#[test]
fn a_broken_manifest_is_reported_with_its_own_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.json"),
        "{\n  \"service\": \"x\",\n  \"tools\": [\n    {\"name\": \"t\", \"description\": \"d\",\n     \"inputSchema\": {\"type\": \"object\"},\n     \"category\": \"nonsense\"}\n  ]\n}\n",
    )
    .unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[[services]]\nname = \"a\"\ntransport = \"stdio\"\ncommand = \"x\"\nmanifest = \"m.json\"\n").unwrap();
    let out = Command::new(common::BIN)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("m.json:6:"), "{err}");
    assert!(err.contains("tools[0].category"), "{err}");
}

#[test]
fn the_default_config_serves_out_of_the_box() {
    let started = std::time::Instant::now();
    let d = common::Daemon::start_default();
    // Both simulator replicas are up (stdio child and managed HTTP process).
    for name in ["asana-stdio", "asana-http"] {
        assert_eq!(d.service(name)["state"], "ready", "{}", d.service(name));
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?} to become ready",
        started.elapsed()
    );
    let events = d.stream(
        "asana_get_project",
        serde_json::json!({"project_id": common::PROJECT}),
    );
    let result = events
        .iter()
        .find(|e| e.event == "result")
        .expect("a result");
    assert_eq!(
        result.data["structuredContent"]["data"]["gid"],
        common::PROJECT
    );
}

/// `mcpvisor ARGS`: its output, once it has exited.
fn mcpvisor(args: &[&str]) -> std::process::Output {
    Command::new(common::BIN).args(args).output().unwrap()
}

/// `mcpvisor ARGS`, which must succeed: its stdout as JSON, and its stderr.
fn mcpvisor_json(args: &[&str]) -> (serde_json::Value, String) {
    let out = mcpvisor(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

#[test]
fn call_and_tools_talk_to_a_running_daemon() {
    let d = common::Daemon::start(&common::two_replicas(&[], &[]));
    let (tools, _) = mcpvisor_json(&["tools", "--url", &d.base, "--json"]);
    assert_eq!(tools.as_array().unwrap().len(), 42);

    let args = format!("{{\"project_id\":\"{}\"}}", common::PROJECT);
    let (result, _) = mcpvisor_json(&[
        "call",
        "asana_get_project_hierarchy",
        "--url",
        &d.base,
        "--args",
        &args,
    ]);
    assert_eq!(
        result["structuredContent"]["data"]["project"]["gid"],
        common::PROJECT
    );

    // An incremental tool: its chunks are counted, and the list is whole
    // again in the printed result.
    let args = format!("{{\"workspace\":\"{}\"}}", common::WORKSPACE);
    let (result, stderr) = mcpvisor_json(&[
        "call",
        "asana_search_tasks",
        "--url",
        &d.base,
        "--args",
        &args,
    ]);
    let chunked = &result["chunked"];
    let items = result["structuredContent"]["data"].as_array().unwrap();
    assert!(chunked["chunks"].as_u64().unwrap() > 5, "{chunked}");
    assert_eq!(items.len() as u64, chunked["items"].as_u64().unwrap());
    assert!(
        stderr.contains(&format!(
            "chunk {0} of {0}, {1} items",
            chunked["chunks"],
            items.len()
        )),
        "{stderr}"
    );

    let out = mcpvisor(&["call", "asana_get_task", "--url", &d.base, "--args", "{}"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("task_id"));
}

#[test]
fn two_services_with_one_tool_name_follow_the_naming_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = |policy: &str| {
        format!(
            "[router]\ntool_names = \"{policy}\"\n\
             [[services]]\nname = \"asana\"\ntransport = \"stdio\"\ncommand = \"x\"\nmanifest = \"builtin:asana\"\n\
             [[services]]\nname = \"mirror\"\ntransport = \"stdio\"\ncommand = \"x\"\nmanifest = \"builtin:asana\"\n"
        )
    };
    let run = |policy: &str| {
        let path = dir.path().join(format!("{policy}.toml"));
        std::fs::write(&path, config(policy)).unwrap();
        Command::new(common::BIN)
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = run("never");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("router.tool_names") && err.contains("asana and mirror"),
        "{err}"
    );
    let out = run("prefix_on_conflict");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tools       84 (naming: PrefixOnConflict)"),
        "{text}"
    );
}

#[test]
fn the_real_asana_example_configs_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, var) in [
        ("asana-remote.toml", "ASANA_TOKEN"),
        ("asana-npm.toml", "ASANA_ACCESS_TOKEN"),
    ] {
        let path = root.join("config/examples").join(file);
        let out = Command::new(common::BIN)
            .arg("check-config")
            .arg(&path)
            .env(var, "dummy-token")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("42 tools"));
        // Without the secret, the error names the variable.
        let out = Command::new(common::BIN)
            .arg("check-config")
            .arg(&path)
            .env_remove(var)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(var));
    }
}

/// A simulator on its own, on an ephemeral loopback port; killed on drop.
struct Sim(std::process::Child, String);

impl Sim {
    fn start(extra: &[&str]) -> Sim {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(common::BIN)
            .args(["sim", "--http", "127.0.0.1:0", "--unit-latency-ms", "1"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("mcpvisor-sim listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Sim(child, url)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn probe_negotiates_each_era_and_calls_a_tool() {
    for (protocols, expected) in [
        (None, "2026-07-28"),
        (Some("2025-06-18"), "2025-06-18"),
        (Some("2024-11-05"), "2024-11-05"),
    ] {
        let extra: Vec<&str> = protocols.map_or(vec![], |p| vec!["--protocols", p]);
        let sim = Sim::start(&extra);
        let out = Command::new(common::BIN)
            .args(["probe", &sim.1, "--tool", "asana_get_project"])
            .args([
                "--args",
                &format!(r#"{{"project_id": "{}"}}"#, common::PROJECT),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.starts_with(&format!("protocol {expected} ")), "{text}");
        assert!(text.contains("tools (42):"), "{text}");
        assert!(text.contains(common::PROJECT), "{text}");
    }

    // A server that is not there: a clear error, exit 1.
    let out = Command::new(common::BIN)
        .args(["probe", "http://127.0.0.1:9/mcp", "--timeout-ms", "2000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connect to http://127.0.0.1:9/mcp"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    // `mcpvisor check-config | head -0`: the pipe is closed before the
    // command writes anything.
    let mut child = Command::new(common::BIN)
        .arg("check-config")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(13), "ended by SIGPIPE: {stderr}");
    }
}

/// Runs `mcpvisor import` on a file `name` holding `json`; the TOML.
fn import(dir: &std::path::Path, name: &str, json: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    let out = Command::new(common::BIN)
        .arg("import")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn desktop_server_lists_are_imported_checked_and_served() {
    let web = Sim::start(&[]);
    let legacy = Sim::start(&["--protocols", "2024-11-05"]);
    let legacy_sse = legacy.1.replace("/mcp", "/sse");
    let stdio = serde_json::json!({"command": common::BIN,
        "args": ["sim", "--stdio", "--unit-latency-ms", "0"], "env": {"SIM_NOTE": "imported"}});
    // Claude Desktop (stdio), Cursor (remote with headers; legacy SSE),
    // and VS Code's mcp.json (typed servers, an ${env:} reference).
    let shapes = [
        (
            "claude_desktop_config.json",
            serde_json::json!({"mcpServers": {"asana": stdio}}),
            vec!["asana"],
        ),
        (
            "cursor-mcp.json",
            serde_json::json!({"mcpServers": {
                "remote": {"url": web.1, "headers": {"Authorization": "Bearer abc123"}},
                "old-sse": {"type": "sse", "url": legacy_sse}}}),
            vec!["remote", "old-sse"],
        ),
        (
            "mcp.json",
            serde_json::json!({"servers": {
                "asana": {"type": "stdio", "command": common::BIN,
                    "args": ["sim", "--stdio", "--unit-latency-ms", "0"],
                    "env": {"TOKEN": "${env:SIM_TOKEN}"}},
                "web": {"type": "http", "url": web.1}},
                "inputs": []}),
            vec!["asana", "web"],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, json, services) in shapes {
        let json = serde_json::to_string_pretty(&json).unwrap();
        let toml = import(dir.path(), name, &json);
        let toml_path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&toml_path, &toml).unwrap();
        let out = Command::new(common::BIN)
            .arg("check-config")
            .arg(&toml_path)
            .env("SIM_TOKEN", "t0ken")
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}\n{toml}",
            String::from_utf8_lossy(&out.stderr)
        );
        for s in &services {
            assert!(report.contains(&format!("- {s} ")), "{name}: {report}");
        }
        // The JSON file itself is a config `serve` runs.
        let d = common::Daemon::start_file(name, &json, &[("SIM_TOKEN", "t0ken")]);
        let (_, body) = d.get("/api/services");
        let names: Vec<&str> = body["services"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["name"].as_str())
            .collect();
        assert_eq!(names.len(), services.len(), "{name}: {body}");
        assert!(body["tools"].as_u64().unwrap() >= 42, "{name}: {body}");
        // Two services with the same tools: the names are prefixed.
        let tool = match services.as_slice() {
            [_] => "asana_list_workspaces".to_owned(),
            [first, ..] => format!("{first}.asana_list_workspaces"),
            [] => unreachable!(),
        };
        let events = d.stream(&tool, serde_json::json!({}));
        assert!(
            events.iter().any(|e| e.event == "result"),
            "{name}: {events:?}"
        );
        drop(d);
        // And so is the TOML `import` printed for it.
        let d =
            common::Daemon::start_file(&format!("{name}.toml"), &toml, &[("SIM_TOKEN", "t0ken")]);
        let events = d.stream(&tool, serde_json::json!({}));
        assert!(
            events.iter().any(|e| e.event == "result"),
            "{name}.toml: {events:?}"
        );
    }
}

/// `mcpvisor status ARGS` against `url`: the output.
fn status(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(common::BIN)
        .args(["status", "--url", url])
        .args(args)
        .env_remove("MCPVISOR_ADMIN_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn status_shows_the_services_and_alerts_of_a_running_daemon() {
    let d = common::Daemon::start_default();
    let out = status(&d.base, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = text.lines().next().unwrap_or_default();
    assert!(header.contains(&d.base), "{text}");
    assert!(header.contains("2/2 services ready, 42 tools"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("NAME ")
            && [
                "STATE",
                "HEALTH",
                "BREAKER",
                "RESTARTS",
                "IN-FLIGHT",
                "TOOLS"
            ]
            .iter()
            .all(|c| l.contains(c))),
        "{text}"
    );
    for name in ["asana-stdio", "asana-http"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            &cells[1..5],
            ["asana", "ready", "healthy", "closed"],
            "{row}"
        );
    }
    assert!(
        text.contains("no active alerts") || text.contains("active alert(s)\nSEVERITY "),
        "{text}"
    );

    let out = status(&d.base, &["--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["asana-stdio", "asana-http"], "{v}");
    assert_eq!(v["tools"], 42, "{v}");
    assert!(v["alerts"].is_array(), "{v}");
    assert_eq!(v["url"], d.base.as_str(), "{v}");
}

#[test]
fn status_of_a_daemon_that_is_not_there_names_its_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    // Watching too: the first snapshot must come.
    for args in [&[][..], &["--watch", "1"]] {
        let out = status(&url, args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("cannot reach mcpvisor at {url}")),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let d = common::Daemon::start_logged(
        &common::two_replicas(&[], &[]),
        &[("MCPVISOR_LOG_FORMAT", "json")],
        None,
    );
    let log = d.log();
    // A line still being written when the file was read is left out.
    let lines: Vec<&str> = log
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "no log");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""message":"mcpvisor serving""#)),
        "{log}"
    );
}

#[test]
fn status_watch_redraws_as_a_replica_falls_and_comes_back() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let d = common::Daemon::start_default();
    let mut watch = Command::new(common::BIN)
        .args(["status", "--url", &d.base, "--watch", "0.2"])
        .env_remove("MCPVISOR_ADMIN_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines, rx) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Reads frames (a header line each) until asana-stdio's row satisfies
    // `want`; how many frames that took.
    let mut frames = 0;
    let mut until = |what: &str, want: &dyn Fn(&[&str]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no frame with {what} within 20 s"));
            if line.starts_with("mcpvisor at ") {
                frames += 1;
            }
            if let Some(row) = line.strip_prefix("asana-stdio ") {
                let cells: Vec<&str> = row.split_whitespace().collect();
                if want(&cells) {
                    return;
                }
            }
        }
    };
    // Columns after the name: service, state, health, breaker, restarts.
    until("asana-stdio ready", &|c| c[1] == "ready" && c[4] == "0");
    let pid = d.service("asana-stdio")["pid"].as_u64().unwrap();
    common::kill9(pid);
    until("asana-stdio restarted and ready", &|c| {
        c[1] == "ready" && c[4].parse::<u32>().is_ok_and(|n| n >= 1)
    });
    assert!(frames >= 2, "the table was drawn {frames} time(s)");

    // Ctrl-C ends the watch cleanly.
    let sent = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = watch.wait().unwrap();
    assert!(status.success(), "{status}");
}
