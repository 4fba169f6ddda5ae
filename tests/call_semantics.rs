//! What a call means to its caller when things go wrong: a write that may
//! have run is never called retryable, `call_timeout_ms` bounds the whole
//! call, a caller that left before its call was sent leaves nothing behind,
//! and a server that cannot hold a handshake says what it wrote.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Daemon, SseEvent};
use serde_json::{Value, json};

fn solo(sim_args: &str, limits: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[router]
wait_for_service_ms = 20000

[[services]]
name = "solo"
transport = "stdio"
command = "@self"
args = ["sim", "--stdio", "--unit-latency-ms", "1", {sim_args}]
manifest = "builtin:asana"
[services.limits]
{limits}
[services.health]
interval_ms = 200
[services.restart]
backoff_initial_ms = 50
max_restarts = 50
"#
    )
}

fn outcome(events: &[SseEvent]) -> &SseEvent {
    events
        .iter()
        .find(|e| e.event == "result" || e.event == "error")
        .unwrap_or_else(|| panic!("no outcome in {events:?}"))
}

#[test]
fn a_write_whose_upstream_dies_mid_call_is_maybe_sent_and_not_retryable() {
    // The simulator exits as the first call arrives.
    let d = Daemon::start(&solo("\"--exit-after\", \"1\"", ""));
    let events = d.stream(
        "asana_create_task",
        json!({"project_id": common::PROJECT, "name": "once"}),
    );
    let e = outcome(&events);
    assert_eq!(e.event, "error", "{events:?}");
    assert_eq!(e.data["delivery"], "maybe_sent", "{}", e.data);
    assert_eq!(e.data["retryable"], false, "{}", e.data);
    assert!(
        e.data["message"]
            .as_str()
            .is_some_and(|m| m.contains("outcome unknown")),
        "{}",
        e.data
    );
}

#[test]
fn call_timeout_bounds_the_whole_call_not_each_attempt() {
    // Every call hangs; timeouts are retried (twice by default), each
    // attempt used to get the full timeout.
    let d = Daemon::start(&solo("\"--hang-rate\", \"1\"", "call_timeout_ms = 1500"));
    let started = Instant::now();
    let events = d.stream("asana_list_workspaces", json!({}));
    let took = started.elapsed();
    let e = outcome(&events);
    assert_eq!(e.event, "error", "{events:?}");
    assert_eq!(e.data["category"], "timeout", "{}", e.data);
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2500),
        "a 1500 ms call took {took:?}"
    );
}

/// Opens a stream call on a raw socket and returns it once the daemon has
/// accepted the call; dropping it leaves mid-call.
fn open_stream(d: &Daemon, body: &Value) -> std::net::TcpStream {
    let addr = d.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let body = body.to_string();
    write!(
        s,
        "POST /api/mcp/stream HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send request");
    // The first event ("accepted") says the call is in.
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&seen).contains("accepted") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

#[test]
fn a_queued_call_whose_caller_left_is_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("exec.log");
    let d = Daemon::start(&solo(
        &format!(
            "\"--latency-ms\", \"600\", \"--exec-log\", \"{}\"",
            log.display()
        ),
        "max_in_flight = 1",
    ));
    let write = |name: &str| {
        json!({"toolName": "asana_create_task",
               "arguments": {"project_id": common::PROJECT, "name": name}})
    };
    // One write runs; three more queue behind it, and their callers leave.
    let first = {
        let base = d.base.clone();
        let body = write("kept");
        std::thread::spawn(move || {
            common::client()
                .post(format!("{base}/api/mcp/stream"))
                .json(&body)
                .send()
                .and_then(|r| r.text())
                .expect("first call")
        })
    };
    d.wait_until("the first write in flight", Duration::from_secs(10), |d| {
        d.service("solo")["inFlight"] == 1
    });
    let leavers: Vec<_> = (0..3)
        .map(|i| open_stream(&d, &write(&format!("abandoned-{i}"))))
        .collect();
    d.wait_until("three writes queued", Duration::from_secs(10), |d| {
        d.service("solo")["queued"].as_u64() >= Some(3)
    });
    drop(leavers);
    let text = first.join().expect("first caller");
    assert!(text.contains("event: result"), "{text}");
    // A later call queues behind the abandoned ones: once it is answered,
    // they have been dealt with.
    let events = d.stream("asana_list_workspaces", json!({}));
    assert_eq!(outcome(&events).event, "result");
    let executed = std::fs::read_to_string(&log).unwrap_or_default();
    let names: Vec<Value> = executed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("log line")["arguments"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("kept")], "executed: {executed}");
}

#[test]
fn a_server_writing_garbage_in_the_handshake_is_a_protocol_error_naming_it() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "noisy"
transport = "stdio"
command = "sh"
args = ["-c", "echo 'Starting noisy server v1'; read line; echo '{\"jsonrpc\":\"2.0\",\"id\":1000,\"result\":{}}'; read line"]
[services.restart]
backoff_initial_ms = 5000
"#;
    let d = Daemon::start_with(config, false);
    d.wait_until("the handshake failed", Duration::from_secs(10), |d| {
        d.service("noisy")["lastExit"].is_string()
    });
    let exit = d.service("noisy")["lastExit"].as_str().unwrap().to_owned();
    assert!(exit.contains("protocol"), "{exit}");
    assert!(
        exit.contains("non-JSON on stdout: `Starting noisy server v1`"),
        "{exit}"
    );
}

#[test]
fn a_server_that_never_answers_the_handshake_times_out() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "mute"
transport = "stdio"
command = "sh"
args = ["-c", "exec sleep 60"]
[services.limits]
connect_timeout_ms = 300
stop_grace_ms = 200
[services.restart]
backoff_initial_ms = 5000
"#;
    let d = Daemon::start_with(config, false);
    d.wait_until("the handshake timed out", Duration::from_secs(10), |d| {
        d.service("mute")["lastExit"].is_string()
    });
    let exit = d.service("mute")["lastExit"].as_str().unwrap().to_owned();
    assert!(exit.contains("no MCP handshake within 300 ms"), "{exit}");
}

fn misbehaving(mode: &str, extra: &str) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/peers/servers/misbehaving.py"
    );
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[[services]]
name = "odd"
transport = "stdio"
command = "python3"
args = ["{script}", "{mode}"]
[services.limits]
stop_grace_ms = 300
{extra}
[services.health]
interval_ms = 200
timeout_ms = 500
[services.restart]
backoff_initial_ms = 50
max_restarts = 50
"#
    )
}

#[test]
fn a_server_that_drip_feeds_its_answers_is_served_normally() {
    let d = Daemon::start(&misbehaving("drip", ""));
    for i in 0..5 {
        let events = d.stream("echo", json!({"text": format!("slowly {i}")}));
        let e = outcome(&events);
        assert_eq!(e.event, "result", "{events:?}");
        assert_eq!(
            e.data["content"][0]["text"],
            format!("slowly {i}"),
            "{}",
            e.data
        );
    }
    assert_eq!(d.service("odd")["restarts"], 0);
}

#[test]
fn a_server_that_closes_its_output_mid_call_is_restarted_and_the_call_ends() {
    let d = Daemon::start(&misbehaving("close", "call_timeout_ms = 10000"));
    let started = Instant::now();
    let events = d.stream("echo", json!({"text": "hello"}));
    let e = outcome(&events);
    assert_eq!(e.event, "error", "{events:?}");
    // The read is safe to repeat: it is retried on the next instance,
    // which closes too, until the call ends with a clear error.
    assert!(
        started.elapsed() < Duration::from_secs(11),
        "took {:?}",
        started.elapsed()
    );
    d.wait_until("the mute server restarted", Duration::from_secs(10), |d| {
        d.service("odd")["restarts"].as_u64() >= Some(1)
    });
    // Its closed output ended the session (whichever noticed first: the
    // session's end, or the probes that could no longer be sent).
    let exit = d.service("odd")["lastExit"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        exit.contains("the process kept running") || exit.contains("connection closed"),
        "{exit}"
    );
}
