//! Process hygiene: every launched server runs in a process group of its
//! own that ends with its service — on restart, on shutdown, and even when
//! the daemon is killed outright — and a service never runs two instances.

mod common;

use std::time::Duration;

use common::{BIN, Daemon, eventually, kill9, processes_with_env};
use serde_json::json;

/// A stdio server behind a wrapper shell whose real work is a background
/// child, as `npx` and `uvx` launch them, beside a helper that never reads
/// stdin (so it cannot notice the daemon going away by itself); every
/// process carries `mark`.
fn wrapped(mark: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_token = "{token}"

[[services]]
name = "wrapped"
transport = "stdio"
command = "sh"
args = ["-c", "exec 3<&0; sleep 300 <&- & '{BIN}' sim --stdio --unit-latency-ms 1 <&3 3<&- & wait"]
env = {{ MCPVISOR_TEST_MARK = "{mark}" }}
manifest = "builtin:asana"
[services.limits]
stop_grace_ms = 1000
[services.health]
interval_ms = 200
timeout_ms = 300
[services.restart]
backoff_initial_ms = 50
max_restarts = 20
"#,
        token = common::ADMIN_TOKEN
    )
}

fn mark(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// The warden, the shell, the helper and the server.
const PER_INSTANCE: usize = 4;

fn assert_serves(d: &Daemon) {
    let events = d.stream("asana_list_workspaces", json!({}));
    assert!(
        events.iter().any(|e| e.event == "result"),
        "no result: {events:?}"
    );
}

#[test]
fn sigterm_of_the_daemon_ends_a_wrapped_server_completely() {
    let mark = mark("term");
    let mut d = Daemon::start(&wrapped(&mark));
    assert_serves(&d);
    assert_eq!(
        processes_with_env("MCPVISOR_TEST_MARK", &mark).len(),
        PER_INSTANCE
    );
    let status = d.signal_and_wait("-TERM");
    assert!(status.success(), "daemon exit: {status}");
    // The daemon waits for the groups it launched before it exits.
    let left = processes_with_env("MCPVISOR_TEST_MARK", &mark);
    assert!(left.is_empty(), "left running after SIGTERM: {left:?}");
}

#[test]
fn kill_9_of_the_daemon_leaves_no_server_running() {
    let mark = mark("kill");
    let mut d = Daemon::start(&wrapped(&mark));
    assert_serves(&d);
    assert_eq!(
        processes_with_env("MCPVISOR_TEST_MARK", &mark).len(),
        PER_INSTANCE
    );
    d.signal_and_wait("-9");
    // Nobody can wait for this: the warden is told by the kernel and ends
    // the group within its grace period.
    let gone = eventually(Duration::from_secs(10), || {
        processes_with_env("MCPVISOR_TEST_MARK", &mark).is_empty()
    });
    assert!(
        gone,
        "left running after kill -9: {:?}",
        processes_with_env("MCPVISOR_TEST_MARK", &mark)
    );
}

#[test]
fn a_restarted_service_never_runs_two_instances() {
    let mark = mark("restart");
    let d = Daemon::start(&wrapped(&mark));
    for round in 1..=3u64 {
        let pids = processes_with_env("MCPVISOR_TEST_MARK", &mark);
        assert_eq!(pids.len(), PER_INSTANCE, "round {round}: {pids:?}");
        // Kill the real server, not its wrapper: the shell and the warden
        // notice, and the rest of the group ends.
        let server = *pids
            .iter()
            .find(|p| {
                // The simulator itself, not the warden or the shell whose
                // command lines name it too.
                std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                    c.contains("sim\0--stdio") && !c.contains("__warden") && !c.starts_with("sh")
                })
            })
            .expect("the server's pid");
        kill9(u64::from(server));
        d.wait_until("service restarted", Duration::from_secs(20), |d| {
            let s = d.service("wrapped");
            s["state"] == "ready" && s["restarts"].as_u64() >= Some(round)
        });
        let now = processes_with_env("MCPVISOR_TEST_MARK", &mark);
        assert_eq!(now.len(), PER_INSTANCE, "after restart {round}: {now:?}");
        assert!(!now.contains(&server));
    }
    assert_serves(&d);
    // Disabling ends the group; enabling starts exactly one again.
    assert_eq!(d.admin_post("/api/services/wrapped/disable"), 200);
    assert!(eventually(Duration::from_secs(10), || {
        processes_with_env("MCPVISOR_TEST_MARK", &mark).is_empty()
    }));
    assert_eq!(d.admin_post("/api/services/wrapped/enable"), 200);
    d.wait_until("re-enabled", Duration::from_secs(20), |d| {
        d.service("wrapped")["state"] == "ready"
    });
    assert_eq!(
        processes_with_env("MCPVISOR_TEST_MARK", &mark).len(),
        PER_INSTANCE
    );
}

#[test]
fn a_warden_killed_outright_takes_its_group_with_it() {
    let mark = mark("warden");
    let d = Daemon::start(&wrapped(&mark));
    let warden = d.service("wrapped")["pid"]
        .as_u64()
        .expect("the group leader's pid");
    let restarts = d.service("wrapped")["restarts"].as_u64().unwrap();
    kill9(warden);
    d.wait_until("service restarted", Duration::from_secs(20), |d| {
        let s = d.service("wrapped");
        s["state"] == "ready" && s["restarts"].as_u64() > Some(restarts)
    });
    // The old group's shell, helper and server are gone, not orphaned.
    assert!(eventually(Duration::from_secs(5), || {
        processes_with_env("MCPVISOR_TEST_MARK", &mark).len() == PER_INSTANCE
    }));
    assert_serves(&d);
}
