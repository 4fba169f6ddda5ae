//! Tool names two logical services both offer, known only from their live
//! `tools/list` (no manifests, so `check-config` cannot see them): under
//! `router.tool_names = "never"` the later service in the configuration is
//! refused — failed, with the names and the holder in its error and a
//! critical alert, never ready — and what `/api/services` counts is what
//! `tools/list` lists.

mod common;

use std::time::Duration;

use common::Daemon;
use serde_json::{Value, json};

fn config(policy: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[router]
tool_names = "{policy}"
[[services]]
name = "first"
group = "alpha"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio"]
[[services]]
name = "second"
group = "beta"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio"]
[services.restart]
failed_retry_ms = 60000
"#
    )
}

fn listed(d: &Daemon) -> usize {
    d.mcp("tools/list", json!({}), json!({}))["result"]["tools"]
        .as_array()
        .expect("tools")
        .len()
}

fn counted(d: &Daemon) -> (u64, Value) {
    let (_, body) = d.get("/api/services");
    (body["tools"].as_u64().expect("a count"), body)
}

#[test]
fn under_never_the_later_service_is_refused_and_counts_match_the_list() {
    let d = Daemon::start_with(&config("never"), false);
    d.wait_until("second refused", Duration::from_secs(20), |d| {
        d.service("second")["state"] == "failed"
    });
    d.wait_until("first ready", Duration::from_secs(20), |d| {
        d.service("first")["state"] == "ready"
    });
    let second = d.service("second");
    let why = second["lastExit"].as_str().unwrap_or_default();
    assert!(
        why.contains("refused") && why.contains("held by `alpha`") && why.contains("never"),
        "{second}"
    );
    assert!(second["upSinceMs"].is_null(), "never ready: {second}");
    let (_, alerts) = d.get("/api/alerts?active=true");
    assert!(
        alerts.to_string().contains("second"),
        "no alert for the refused service: {alerts}"
    );
    // Only the first service's tools, under their own names; the counts
    // say the same.
    assert_eq!(listed(&d), 42);
    let (total, body) = counted(&d);
    assert_eq!(total, 42, "{body}");
    let per_service: Vec<(String, u64)> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["tools"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per_service,
        [("first".to_owned(), 42), ("second".to_owned(), 0)]
    );
}

#[test]
fn with_prefixes_both_serve_and_counts_match_the_list() {
    let d = Daemon::start(&config("prefix_on_conflict"));
    assert_eq!(listed(&d), 84);
    let (total, body) = counted(&d);
    assert_eq!(total, 84, "{body}");
    assert!(
        body["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["tools"] == 42),
        "{body}"
    );
}

#[test]
fn check_config_probe_lists_live_tools_and_the_names_in_dispute() {
    let dir = tempfile::tempdir().unwrap();
    let run = |policy: &str| {
        let path = dir.path().join(format!("{policy}.toml"));
        std::fs::write(&path, config(policy)).unwrap();
        let out = std::process::Command::new(common::BIN)
            .args(["check-config", "--probe"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The static check passes (no manifests); the probe sees the dispute.
    let (ok, out, err) = run("never");
    assert!(!ok, "{out}");
    assert!(
        out.contains("first: protocol") && out.contains("42 live tools"),
        "{out}"
    );
    assert!(out.contains("conflicts   42 tool name(s)"), "{out}");
    assert!(
        out.contains("asana_add_project_to_task: alpha, beta"),
        "{out}"
    );
    assert!(
        err.contains("would be refused") && err.contains("beta"),
        "{err}"
    );
    let (ok, out, err) = run("prefix_on_conflict");
    assert!(ok, "{out}{err}");
    assert!(out.contains("live tools  84"), "{out}");
}

#[test]
fn an_upstreams_stderr_is_logged_under_its_service() {
    // A launched HTTP simulator says where it listens on stderr as it
    // starts; the line reaches the daemon's log under the service's name.
    let d = Daemon::start_logged(
        r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "web"
transport = "streamable_http"
command = "@self"
args = ["sim", "--http", "127.0.0.1:{port}"]
url = "http://127.0.0.1:{port}/mcp"
manifest = "builtin:asana"
"#,
        &[],
        None,
    );
    let log = d.log();
    let tagged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("mcpvisor::upstream"))
        .collect();
    assert!(
        tagged
            .iter()
            .any(|l| l.contains("simulator listening") && l.contains("service=web")),
        "no tagged stderr line:\n{log}"
    );
    assert!(
        tagged.iter().all(|l| l.contains("service=web")),
        "{tagged:#?}"
    );
}
