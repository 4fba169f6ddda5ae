//! Drills against a live daemon: every kind runs under load and reports
//! numbers that hold — no call lost or failed where another replica could
//! serve, the target back, processes and file descriptors back to their
//! baseline — and the default daemon passes `mcpvisor drill failover`.

mod common;

use std::time::Duration;

use common::{ADMIN_TOKEN, BIN, Daemon, two_replicas};
use serde_json::{Value, json};

/// Two replicas with quick health checks and a quick slow-retry, so a
/// restart storm recovers within a drill.
fn config() -> String {
    two_replicas(&[], &[])
        .replace(
            "max_restarts = 20",
            "max_restarts = 3\nfailed_retry_ms = 500",
        )
        .replace("timeout_ms = 1000", "timeout_ms = 500")
}

fn drill(d: &Daemon, kind: &str, body: Value) -> (u16, Value) {
    let r = common::client()
        .post(d.url(&format!("/api/drills/{kind}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .expect("POST /api/drills");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn assert_passed(report: &Value) {
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["passed"] != true).collect())
        .unwrap_or_default();
    assert_eq!(
        report["verdict"], "pass",
        "failed checks: {failed:?}\n{report:#}"
    );
    assert!(report["calls"]["sent"].as_u64() >= Some(20), "{report:#}");
    assert_eq!(report["calls"]["lost"], 0);
    assert_eq!(report["calls"]["failed"], 0);
    assert!(
        report["processes"]["after"].as_u64() <= report["processes"]["before"].as_u64(),
        "{report:#}"
    );
}

#[test]
fn every_drill_kind_passes_and_reports_its_figures() {
    let d = Daemon::start(&config());
    let brief = json!({"duration": "1s", "load": 3});

    let (status, r) = drill(&d, "upstream-kill", brief.clone());
    assert_eq!(status, 200, "{r}");
    assert_passed(&r);
    assert_eq!(
        r["service"], "asana-stdio",
        "the preferred replica is the default target"
    );
    for t in ["detect", "failover", "restart", "recover"] {
        assert!(r["timings_ms"][t].is_u64(), "{t} missing: {r:#}");
    }
    assert!(r["restarts"].as_u64() >= Some(1));

    let (_, r) = drill(&d, "actor-panic", brief.clone());
    assert_passed(&r);
    assert!(r["timings_ms"]["restart"].is_u64());

    let (_, r) = drill(&d, "upstream-hang", brief.clone());
    assert_passed(&r);
    assert!(r["timings_ms"]["detect"].as_u64() < Some(1000), "{r:#}");
    assert_eq!(r["fault_ms"], 1000);

    let (_, r) = drill(&d, "failover", brief.clone());
    assert_passed(&r);
    // Held down for the duration, then a new instance.
    assert!(r["timings_ms"]["restart"].as_u64() >= Some(1000), "{r:#}");

    let (_, r) = drill(&d, "outage", brief.clone());
    assert_passed(&r);

    let (_, r) = drill(&d, "poison", brief.clone());
    assert_passed(&r);
    let quarantined = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "poison call quarantined" && c["passed"] == true);
    assert!(quarantined, "{r:#}");
    // Nothing it broke stays broken: the quarantine is lifted.
    let events = d.stream(
        "asana_get_my_tasks",
        json!({"workspace": common::WORKSPACE}),
    );
    assert!(events.iter().any(|e| e.event == "result"), "{events:?}");

    let (_, r) = drill(&d, "restart-storm", brief);
    assert_passed(&r);
    assert!(
        r["alerts"]["raised"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "failed:asana-stdio"),
        "{r:#}"
    );
    assert!(
        r["alerts"]["resolved"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "failed:asana-stdio"),
        "{r:#}"
    );

    // Every report is kept.
    let (_, list) = d.get("/api/drills");
    assert_eq!(list["reports"].as_array().map(Vec::len), Some(7));
    d.wait_until(
        "both replicas ready after the drills",
        Duration::from_secs(20),
        |d| {
            ["asana-stdio", "asana-http"]
                .iter()
                .all(|s| d.service(s)["state"] == "ready")
        },
    );
}

#[test]
fn drills_need_the_admin_token_and_run_one_at_a_time() {
    let d = Daemon::start(&config());
    let r = common::client()
        .post(d.url("/api/drills/upstream-kill"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (status, body) = drill(&d, "nope", json!({}));
    assert_eq!(status, 404, "{body}");
    let (status, _) = drill(&d, "failover", json!({"duration": "soon"}));
    assert_eq!(status, 400);

    let base = d.base.clone();
    let long = std::thread::spawn(move || {
        common::client()
            .post(format!("{base}/api/drills/upstream-hang"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"duration": "2s", "load": 1}))
            .send()
            .map(|r| r.status().as_u16())
    });
    d.wait_until("the first drill running", Duration::from_secs(10), |d| {
        d.get("/api/drills").1["running"] == true
    });
    let (status, body) = drill(&d, "upstream-kill", json!({}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(long.join().unwrap().unwrap(), 200);
}

#[test]
fn the_default_daemon_passes_a_failover_drill_from_the_cli() {
    let d = Daemon::start_default_with(&[("MCPVISOR_ADMIN_TOKEN", ADMIN_TOKEN)]);
    let out = std::process::Command::new(BIN)
        .args([
            "drill",
            "failover",
            "--json",
            "--duration",
            "2s",
            "--url",
            &d.base,
        ])
        .env("MCPVISOR_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run mcpvisor drill");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("one JSON report");
    assert_passed(&report);
    assert_eq!(report["kind"], "failover");
    assert_eq!(report["service"], "asana-stdio");
    assert!(report["timings_ms"]["restart"].is_u64());
    // The readable form of the same drill.
    let out = std::process::Command::new(BIN)
        .args(["drill", "upstream-kill", "--url", &d.base])
        .env("MCPVISOR_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run mcpvisor drill");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("drill upstream-kill on asana-stdio (asana): PASS"),
        "{text}"
    );
    assert!(text.contains("[ok] no call lost"), "{text}");
}
