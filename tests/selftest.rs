//! The self-test endpoints check the live daemon: they pass on a healthy
//! one and fail when what they check is broken.

mod common;

use std::time::Duration;

use common::{Daemon, two_replicas};
use serde_json::Value;

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"))
}

#[test]
fn the_architecture_self_test_shows_the_live_tree_and_fails_without_replicas() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    let (status, report) = d.get("/api/test-mcp-architecture");
    assert_eq!(status, 200);
    assert_eq!(report["passed"], true, "{report:#}");
    let children = report["tree"]["supervisor"]["children"]
        .as_array()
        .expect("service actors");
    assert_eq!(children.len(), 2);
    assert!(children.iter().all(|c| c["alive"] == true), "{report:#}");
    assert_eq!(report["tree"]["healthMonitor"]["alive"], true);
    let tools = report["tools"].as_array().expect("tools");
    assert!(tools.len() > 10);
    let workspaces = tools
        .iter()
        .find(|t| t["tool"] == "asana_list_workspaces")
        .expect("asana_list_workspaces");
    assert_eq!(workspaces["target"], "asana-stdio", "the preferred replica");
    assert_eq!(workspaces["providers"].as_array().map(Vec::len), Some(2));

    // Both replicas switched off: the tools have nowhere to go.
    for s in ["asana-stdio", "asana-http"] {
        assert_eq!(d.admin_post(&format!("/api/services/{s}/disable")), 200);
    }
    d.wait_until("both disabled", Duration::from_secs(10), |d| {
        ["asana-stdio", "asana-http"]
            .iter()
            .all(|s| d.service(s)["state"] == "disabled")
    });
    let (_, report) = d.get("/api/test-mcp-architecture");
    assert_eq!(report["passed"], false, "{report:#}");
    assert_eq!(
        check(&report, "every listed tool has a ready provider")["passed"],
        false,
        "{report:#}"
    );
    // Disabled is a reason: the actors are accounted for.
    assert_eq!(
        check(&report, "every service has an actor or a reason")["passed"],
        true,
        "{report:#}"
    );
}

fn integration(d: &Daemon, test_type: &str) -> Value {
    let (status, report) = d.post(
        "/api/test-mcp-integration",
        &serde_json::json!({"testType": test_type}),
    );
    assert_eq!(status, 200, "{report}");
    report
}

#[test]
fn the_integration_self_test_passes_on_a_whole_daemon_and_names_what_broke() {
    let with_cache =
        two_replicas(&[], &[]).replace("[router]", "[cache]\nenabled = true\n\n[router]");
    let d = Daemon::start(&with_cache);
    let report = integration(&d, "full");
    assert_eq!(report["passed"], true, "{report:#}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "service discovery",
            "health",
            "registry and manifests",
            "routing and failover readiness",
            "streaming",
            "cache",
            "error handling"
        ]
    );
    assert!(report["checks"][0]["durationMs"].is_u64());
    let quick = integration(&d, "quick");
    assert_eq!(quick["checks"].as_array().map(Vec::len), Some(4));

    // One replica down: nothing to fail over to.
    assert_eq!(d.admin_post("/api/services/asana-http/disable"), 200);
    d.wait_until("asana-http disabled", Duration::from_secs(10), |d| {
        d.service("asana-http")["state"] == "disabled"
    });
    let report = integration(&d, "routing");
    assert_eq!(report["passed"], false, "{report:#}");
    assert!(
        check(&report, "routing and failover readiness")["detail"]
            .as_str()
            .unwrap_or("")
            .contains("asana (1 ready)"),
        "{report:#}"
    );

    // The cache off: its check fails, the rest of a quick run does not care.
    let off = Daemon::start(&two_replicas(&[], &[]));
    let report = integration(&off, "cache");
    assert_eq!(report["passed"], false, "{report:#}");
    assert_eq!(integration(&off, "errors")["passed"], true);
    let (status, _) = off.post(
        "/api/test-mcp-integration",
        &serde_json::json!({"testType": "everything"}),
    );
    assert_eq!(status, 400);
}

fn streaming_test(d: &Daemon, body: Value) -> Vec<common::SseEvent> {
    let text = common::client()
        .post(d.url("/api/test-mcp-streaming"))
        .json(&body)
        .send()
        .and_then(|r| r.text())
        .expect("streaming self-test");
    common::parse_sse(&text)
}

#[test]
fn the_streaming_self_test_streams_a_real_call_then_its_verdict() {
    let d = Daemon::start(&two_replicas(&[], &[]));
    let events = streaming_test(&d, serde_json::json!({}));
    let verdict = events.last().expect("events");
    assert_eq!(verdict.event, "verdict", "{events:?}");
    assert_eq!(verdict.data["passed"], true, "{events:?}");
    assert_eq!(verdict.data["tool"], "asana_get_project_hierarchy");
    let progress = events.iter().filter(|e| e.event == "progress").count();
    assert!(progress >= 1, "{events:?}");
    assert_eq!(verdict.data["progressEvents"], progress);
    let result_at = events
        .iter()
        .position(|e| e.event == "result")
        .expect("a result");
    let last_progress = events.iter().rposition(|e| e.event == "progress").unwrap();
    assert!(last_progress < result_at, "progress before the result");

    // A call that fails fails the test.
    let events = streaming_test(
        &d,
        serde_json::json!({"toolName": "asana_get_task", "arguments": {"task_id": "1299999999999999"}}),
    );
    let verdict = events.last().expect("events");
    assert_eq!(verdict.data["passed"], false, "{events:?}");
    // Only read-only tools.
    let r = common::client()
        .post(d.url("/api/test-mcp-streaming"))
        .json(&serde_json::json!({"toolName": "asana_delete_task", "arguments": {"task_id": "1"}}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[test]
fn the_performance_self_test_scores_the_figures_and_says_what_to_improve() {
    let with_cache =
        two_replicas(&[], &[]).replace("[router]", "[cache]\nenabled = true\n\n[router]");
    let d = Daemon::start(&with_cache);
    let (status, r) = d.post(
        "/api/test-mcp-performance",
        &serde_json::json!({"iterations": 40, "concurrency": 4}),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["calls"]["successPercent"], 100.0, "{r:#}");
    assert!(r["calls"]["p95Ms"].as_f64() > Some(0.0));
    assert!(r["cache"]["hitRate"].as_f64() >= Some(0.5), "{r:#}");
    assert!(r["registry"]["tools"].as_u64() > Some(10));
    assert!(r["memory"]["rssAfterBytes"].as_u64() > Some(0));
    assert!(r["score"].as_f64() >= Some(85.0), "{r:#}");

    // No cache and a single replica: a lower score, and why.
    let off = Daemon::start(&two_replicas(&[], &[]));
    assert_eq!(off.admin_post("/api/services/asana-http/disable"), 200);
    off.wait_until("asana-http disabled", Duration::from_secs(10), |d| {
        d.service("asana-http")["state"] == "disabled"
    });
    let (_, r) = off.post(
        "/api/test-mcp-performance",
        &serde_json::json!({"iterations": 20}),
    );
    assert!(r["score"].as_f64() <= Some(75.0), "{r:#}");
    let advice = r["recommendations"].to_string();
    assert!(advice.contains("cache is off"), "{advice}");
    assert!(advice.contains("add a second"), "{advice}");
}

#[test]
fn the_integration_self_test_names_a_manifest_tool_no_replica_offers() {
    // The builtin manifest plus a tool the simulator does not have.
    let dir = tempfile::tempdir().unwrap();
    let mut manifest: Value =
        serde_json::from_str(include_str!("../manifests/asana.json")).unwrap();
    let mut extra = manifest["tools"][0].clone();
    extra["name"] = "asana_not_in_the_server".into();
    manifest["tools"].as_array_mut().unwrap().push(extra);
    let path = dir.path().join("asana.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let config = two_replicas(&[], &[]).replace(
        "manifest = \"builtin:asana\"",
        &format!("manifest = {:?}", path.display().to_string()),
    );
    let d = Daemon::start(&config);
    let report = integration(&d, "registry");
    assert_eq!(report["passed"], false, "{report:#}");
    assert!(
        check(&report, "registry and manifests")["detail"]
            .as_str()
            .unwrap_or("")
            .contains("asana.asana_not_in_the_server"),
        "{report:#}"
    );
}
